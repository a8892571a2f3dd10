"""Faces: association of bibs to faces, gallery, matching, enrolment, and real dlib on dev faces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from bench.common import DATA
from dashboard.review_queue import REJECT, Item, decision_rows, pending
from tests.conftest import athlete, photo, read
from transforms.corrections import append_corrections, decisions_by_image, load_corrections
from transforms.course import Settings, parse_course
from transforms.faces import (
    FRONT_FILTER,
    MAX_FACE_CONFIDENCE,
    MEASURE_LEVEL,
    PROPOSAL_THRESHOLD,
    BuildGallery,
    Gallery,
    _level_box_up,
    _level_faces,
    _region_cut,
    _scan,
    _scanned_in,
    _seed_levels,
    _textured_level_faces,
    _whole_level_faces,
    associate,
    boxes_overlap,
    detect_faces,
    detect_portrait_face,
    enrolments,
    face_models,
    faces_enabled,
    find_faces,
    front_windows,
    frontal_detector,
    gallery_of,
    gradient_sums,
    hog_faces,
    match_confidence,
    match_face,
    merged_cuts,
    models_available,
    nearest_whole,
    pyramid,
    reference_photos,
    saved_form,
    scan_regions,
    textured_cuts,
    textured_windows,
    untied_faces,
    with_filters,
)
from transforms.identify import (
    FaceRule,
    IdentifyAthletes,
    identify,
    identify_faces,
    identify_photo,
)
from transforms.records import (
    NO_ATHLETE,
    PASSAGE,
    REVIEW,
    BibSeen,
    FaceSeen,
    Photo,
    PhotoFacts,
    facts_from_json,
    facts_to_json,
)

FACES_DEV = DATA / "faces-dev"
needs_models = pytest.mark.skipif(not models_available(), reason="dlib face models not installed")


def unit(*weights: float) -> tuple[float, ...]:
    """A 128-d descriptor: `weights` on the first axes, the rest zero."""
    return tuple(weights) + (0.0,) * (128 - len(weights))


def face(x: int, y: int, size: int = 60, embedding: tuple[float, ...] = unit(1.0)) -> FaceSeen:
    return FaceSeen(box=(x, y, x + size, y + size), embedding=embedding)


def bib_below(f: FaceSeen, bib: str, confidence: float = 0.95) -> BibSeen:
    """A bib on the chest of the runner whose face is `f`: 3 face heights down."""
    x0, y0, x1, y1 = f.box
    h = y1 - y0
    return BibSeen(bib, confidence, (x0, y0 + 3 * h, x1, y0 + 3 * h + h // 2))


# --- association -------------------------------------------------------------------------------


def test_associate__group_photo_ties_each_bib_to_its_own_face() -> None:
    faces = [face(100, 100), face(300, 110), face(500, 95)]
    bibs = [bib_below(faces[2], "3"), bib_below(faces[0], "1"), bib_below(faces[1], "2")]

    tied = associate([b.box for b in bibs], [f.box for f in faces])

    assert tied == {0: 2, 1: 0, 2: 1}


def test_associate__bib_between_two_faces_is_untied() -> None:
    left, right = face(100, 100), face(180, 100)
    between = BibSeen("1", 0.95, (140, 280, 200, 310))  # under the gap, equally near both

    assert associate([between.box], [left.box, right.box]) == {}


def test_associate__bib_above_or_far_beside_a_face_is_untied() -> None:
    f = face(300, 300)
    above = (300, 150, 360, 180)
    beside = (500, 480, 560, 510)

    assert associate([above, beside], [f.box]) == {}


def test_associate__two_bibs_wanting_one_face_are_both_untied() -> None:
    f = face(300, 100)
    one, two = bib_below(f, "1"), replace(bib_below(f, "2"), box=(300, 300, 360, 330))

    assert associate([one.box, two.box], [f.box]) == {}


def test_untied_faces__face_above_a_read_bib_needs_no_gallery() -> None:
    runner, hidden = face(100, 100), face(400, 100, embedding=unit(0.0, 1.0))

    assert untied_faces([bib_below(runner, "7")], [runner, hidden]) == [hidden]


# --- gallery and matching ----------------------------------------------------------------------


def test_gallery_nearest__per_athlete_their_nearest_descriptor() -> None:
    gallery = Gallery.of([("1", unit(1.0)), ("1", unit(0.0, 1.0)), ("2", unit(0.5, 0.5))])

    ranked = gallery.nearest(unit(0.0, 0.9))

    assert [bib for bib, _ in ranked] == ["1", "2"]
    assert ranked[0][1] == pytest.approx(0.1, abs=1e-6)


def test_match_face__near_and_clear_names_the_athlete() -> None:
    gallery = Gallery.of([("1", unit(1.0)), ("2", unit(0.0, 1.0))])

    m = match_face(unit(0.9, 0.1), gallery, threshold=0.6, margin=0.1)

    assert m.bib == "1"
    assert m.candidates[0] == "1"
    assert 0.75 <= m.confidence <= MAX_FACE_CONFIDENCE


def test_match_face__second_athlete_within_margin_goes_to_review_with_both() -> None:
    gallery = Gallery.of([("1", unit(0.5, 0.0)), ("2", unit(0.0, 0.5))])

    m = match_face(unit(0.27, 0.25), gallery, threshold=0.6, margin=0.1)

    assert m.bib is None
    assert set(m.candidates) == {"1", "2"}


def test_match_face__too_far_from_everyone_is_no_match() -> None:
    gallery = Gallery.of([("1", unit(1.0))])

    m = match_face(unit(0.0, 1.0), gallery, threshold=0.6, margin=0.1)

    assert (m.bib, m.candidates) == (None, ())


def test_match_face__empty_gallery_is_no_match() -> None:
    m = match_face(unit(1.0), Gallery())

    assert (m.bib, m.confidence, m.distance) == (None, 0.0, math.inf)


def test_match_confidence__falls_with_distance_and_with_a_close_second() -> None:
    clear = [match_confidence(d, 0.3, 0.6) for d in (0.3, 0.4, 0.5, 0.6, 0.7)]
    assert clear == sorted(clear, reverse=True)
    assert match_confidence(0.6, math.inf, 0.6) == pytest.approx(0.5)
    assert match_confidence(0.4, 0.0, 0.6) == 0.0
    assert max(clear) <= MAX_FACE_CONFIDENCE


# --- enrolment ---------------------------------------------------------------------------------


def test_enrolments__confident_listed_read_enrols_the_face_above_it() -> None:
    f = face(100, 100, embedding=unit(0.3, 0.4))

    assert enrolments([bib_below(f, "101")], [f], frozenset({"101"}), 0.75) == [
        ("101", f.embedding)
    ]


def test_enrolments__weak_unlisted_or_ambiguous_reads_enrol_nothing() -> None:
    left, right = face(100, 100), face(180, 100)
    between = BibSeen("101", 0.95, (140, 280, 200, 310))
    known = frozenset({"101"})

    assert enrolments([bib_below(left, "101", 0.5)], [left], known, 0.75) == []
    assert enrolments([bib_below(left, "999")], [left], known, 0.75) == []
    assert enrolments([between], [left, right], known, 0.75) == []


def test_build_gallery__clean_enrolments_only() -> None:
    runner = face(100, 100, embedding=unit(0.25, 0.5))
    pair = (face(100, 100, embedding=unit(0.1)), face(180, 100, embedding=unit(0.2)))
    between = BibSeen("102", 0.95, (140, 280, 200, 310))
    photos = [
        with_faces("a", (runner,), bibs=(bib_below(runner, "101"),)),
        with_faces("b", pair, bibs=(between,)),  # ambiguous: enrols no one
        replace(with_faces("c", (runner,), bibs=(bib_below(runner, "103"),)), status="duplicate"),
    ]

    with TestPipeline() as p:
        gallery = (
            p
            | beam.Create(photos)
            | BuildGallery([], KNOWN, 0.75)
            | beam.Map(
                lambda g: [(b, v[:2]) for b, v in zip(g.bibs, g.vectors.tolist(), strict=True)]
            )
        )
        assert_that(gallery, equal_to([[("101", [0.25, 0.5])]]))


def test_gallery_of__in_process_gallery_is_the_pipelines() -> None:
    runner = face(100, 100, embedding=unit(0.25, 0.5))
    photos = [
        with_faces("a", (runner,), bibs=(bib_below(runner, "101"),)),
        replace(with_faces("c", (runner,), bibs=(bib_below(runner, "103"),)), status="duplicate"),
    ]

    gallery = gallery_of(photos, [], KNOWN, 0.75)

    assert gallery.bibs == ("101",)
    assert gallery.vectors[:, :2].tolist() == [[0.25, 0.5]]


@needs_models
def test_build_gallery__reference_photo_with_a_face_enrols_one_without_is_skipped() -> None:
    reference = FACES_DEV / "misc" / "obama_5.jpg"
    if not reference.exists():
        pytest.skip(f"dev faces not found at {FACES_DEV} (set RACELENS_DATA)")

    with TestPipeline() as p:
        gallery = (
            p
            | beam.Create([])
            | BuildGallery([("101", str(reference)), ("102", "/no/such.jpg")], KNOWN, 0.75)
            | beam.Map(lambda g: (g.bibs, g.vectors.shape))
        )
        assert_that(gallery, equal_to([(("101",), (1, 128))]))


def test_facts_json__faces_round_trip_and_none_stays_none() -> None:
    facts = PhotoFacts("x", faces=(face(1, 2, embedding=unit(0.125, -0.5)),))

    assert facts_from_json(facts_to_json(facts)) == facts
    assert facts_from_json(facts_to_json(PhotoFacts("y"))).faces is None


# --- real dlib on dev faces --------------------------------------------------------------------


def _dev(name: str) -> np.ndarray:
    import cv2

    path = FACES_DEV / name
    if not path.exists():
        pytest.skip(f"dev faces not found at {FACES_DEV} (set RACELENS_DATA)")
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


@needs_models
def test_find_faces__group_photo_each_person_named_from_one_reference() -> None:
    models = face_models()
    gallery = Gallery.of(
        (bib, find_faces(_dev(f"misc/{name}"), 1, models)[0].embedding)
        for bib, name in (("1", "kit_harington_1.jpg"), ("2", "rose_leslie_1.jpg"))
    )

    group = find_faces(_dev("misc/group_kit_with_rose.jpg"), 1, models)

    assert sorted(match_face(f.embedding, gallery).bib for f in group) == ["1", "2"]


@needs_models
# 84 and 100 px: only the finer search around a proposal finds its box; 180 and 260 px:
# found best in a whole level (the 6th, 8th); 140, 220, 340 and 380 px: best in the 5th,
# 7th, 9th and 10th, each scanned only around what the nearest whole levels find (without
# that scan, each would be boxed from a level off instead).
@pytest.mark.parametrize("face_px", [84, 100, 140, 180, 220, 260, 340, 380])
def test_hog_faces__face_in_a_large_photo_found_as_the_whole_pyramid_finds_it(
    face_px: int,
) -> None:
    models = face_models()
    photo = photo_with_face(face_px, models.detector)
    expected = hog_boxes(photo, models.detector)

    found = hog_faces(photo, models)

    assert len(expected) == 1
    assert found == expected


@needs_models
def test_hog_faces__colour_photo_found_as_the_whole_pyramid_finds_it() -> None:
    models = face_models()
    grey = photo_with_face(180, models.detector)
    photo = np.dstack([grey, grey, np.full_like(grey, 90)])  # a flat colour around the face
    expected = hog_boxes(photo, models.detector)

    found = hog_faces(photo, models)

    assert len(expected) == 1
    assert found == expected


@needs_models
def test_detect_faces__photo_searched_smaller_gives_boxes_in_its_own_pixels() -> None:
    import cv2

    models = face_models()
    searched = photo_with_face(100, models.detector)  # 2000 px: searched as it is
    [expected] = hog_boxes(searched, models.detector)
    scale = 3000 / 2000  # a 24 MP photo decoded at 1/2, searched at 2000 px
    photo = cv2.resize(searched, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)

    [found] = detect_faces(photo, models)

    assert iou(found, tuple(round(v * scale) for v in expected)) > 0.8


def test_pyramid__dlibs_level_sizes_down_to_the_smallest_it_scans() -> None:
    import cv2
    import dlib

    noise = np.random.default_rng(1).integers(0, 256, (300, 400), np.uint8)
    image = cv2.GaussianBlur(noise, (0, 0), 2)  # a photo's detail, not pixel noise
    expected = [image]
    while min(5 * n // 6 for n in expected[-1].shape) >= 64:
        expected.append(dlib.pyramid_down(6)(expected[-1]))

    levels = pyramid(image)

    assert [level.shape for level in levels] == [level.shape for level in expected]
    # OpenCV's bilinear steps against dlib's: the same picture (they sample 0.1 px apart)
    assert np.abs(levels[1].astype(int) - expected[1]).mean() < 1


def test_gradient_sums__integral_image_of_central_differences() -> None:
    image = np.random.default_rng(2).integers(0, 256, (37, 53), np.uint8)
    pixels = image.astype(int)
    across, along = np.zeros_like(pixels), np.zeros_like(pixels)
    across[:, 1:-1] = np.abs(pixels[:, 2:] - pixels[:, :-2])
    along[1:-1] = np.abs(pixels[2:] - pixels[:-2])
    expected = np.zeros((2, 38, 54), int)
    expected[0, 1:, 1:] = across.cumsum(0).cumsum(1)
    expected[1, 1:, 1:] = along.cumsum(0).cumsum(1)

    assert np.array_equal(gradient_sums(image), expected)


@needs_models
def test_textured_windows__a_flat_photo_textured_only_where_its_face_is() -> None:
    models = face_models()
    photo = photo_with_face(180, models.detector)
    [(x0, y0, x1, y1)] = hog_boxes(photo, models.detector)
    levels = pyramid(photo)
    scale = (5 / 6) ** 3  # the face at the 4th level, where it is ~100 px

    windows = textured_windows(
        levels[3].shape, 3, gradient_sums(levels[MEASURE_LEVEL]), MEASURE_LEVEL
    )

    # window (row, col) spans 80 px from 8 * ((row, col) - 3) - 3
    row, col = (round((v * scale - 40 + 3) / 8) + 3 for v in ((y0 + y1) / 2, (x0 + x1) / 2))
    assert windows[row, col]  # centred on the face
    assert not windows[3:20, 3:20].any()  # the flat grey top left
    assert windows.mean() < 0.3  # the portrait around the face is a third of the photo


def _stripes(axis: int) -> np.ndarray:
    """A 1600 x 1200 photo of 40 px stripes across `axis` (0: horizontal stripes)."""
    return (np.indices((1200, 1600))[axis] // 40 % 2 * 200).astype(np.uint8)


@pytest.mark.parametrize(
    ("image", "textured"),
    [(_stripes(0), False), (_stripes(1), False), (_stripes(0) ^ _stripes(1), True)],
    ids=["horizontal-edges", "vertical-edges", "checks"],
)
def test_textured_windows__edges_in_one_direction_only_are_flat(
    image: np.ndarray, textured: bool
) -> None:
    levels = pyramid(image)

    windows = textured_windows(levels[3].shape, 3, gradient_sums(levels[8]), 8)

    inner = windows[4:-4, 4:-4]  # windows hanging off the photo see its flat padding
    assert inner.all() if textured else not inner.any()


def test_scan_regions__far_apart_patches_each_scanned_alone() -> None:
    windows = np.zeros((100, 120), bool)
    windows[5:10, 4:12] = True
    windows[70:90, 80:115] = True

    regions = scan_regions(windows)

    assert sorted(regions) == [(5, 4, 9, 11), (70, 80, 89, 114)]
    assert scan_regions(np.zeros((10, 10), bool)) == []


def test_scan_regions__near_patches_one_scan_every_window_covered() -> None:
    windows = np.zeros((60, 60), bool)
    windows[10:20, 10:20] = True
    windows[22:30, 15:25] = True  # two cells apart: one scan costs less than two
    windows[40:42, 50] = True

    regions = scan_regions(windows)

    covered = np.zeros_like(windows)
    for r0, c0, r1, c1 in regions:
        covered[r0 : r1 + 1, c0 : c1 + 1] = True
    assert (10, 10, 29, 24) in regions
    assert not (windows & ~covered).any()


@needs_models
@pytest.mark.parametrize("level", [3, 5, 7])
def test_textured_level_faces__the_whole_levels_boxes_and_scores(level: int) -> None:
    import cv2

    models = face_models()
    photo = photo_with_face(200, models.detector)
    photo[100:500, 100:500] = photo[600:1000, 900:1300]  # the face again, far away
    noise = np.random.default_rng(3).integers(0, 256, (400, 900), np.uint8)
    photo[900:1300, 1000:1900] = cv2.GaussianBlur(noise, (0, 0), 3)  # texture beside it
    levels = pyramid(photo)
    windows = textured_windows(
        levels[level].shape, level, gradient_sums(levels[MEASURE_LEVEL]), MEASURE_LEVEL
    )
    threshold = -2.5  # scored windows everywhere in the texture, up to the regions' cuts
    whole = _level_faces(levels[level], level, None, models, threshold)

    cuts = textured_cuts(windows, levels[level].shape)

    found = _textured_level_faces(levels[level], level, cuts, models, threshold)

    assert len(cuts) >= 2
    assert len(whole) >= 10
    assert sorted(box for _, box in found) == sorted(box for _, box in whole)
    # the same sums, but dlib's vector arithmetic may round them differently in a region
    assert sorted(found, key=lambda f: f[1]) == [
        (pytest.approx(score, abs=1e-5), box) for score, box in sorted(whole, key=lambda f: f[1])
    ]


@needs_models
@pytest.mark.parametrize("size", [(81, 80), (97, 301), (203, 157), (164, 180)])
def test_scanned_in__the_windows_dlibs_scan_of_a_cut_scores(size: tuple[int, int]) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (400, 500), np.uint8)
    cut = (48, 64, 48 + size[1], 64 + size[0])
    inner = np.ascontiguousarray(pixels[cut[1] : cut[3], cut[0] : cut[2]])

    rects, _, _ = face_models().window_detector.run(inner, 0, -100.0)

    corners = {(r.right() + cut[0], r.bottom() + cut[1]) for r in rects}
    # windows' right and bottom edges at 8 px steps: those _scanned_in holds
    grid = [(x, y) for x in range(-3, 600, 8) for y in range(-3, 500, 8)]
    assert corners == {(x, y) for x, y in grid if _scanned_in((x - 72, y - 72, x, y), cut)}


class _CountedScans:
    """A level detector that counts its scans."""

    def __init__(self, detector) -> None:
        self.detector, self.scans = detector, 0

    def run(self, *args):
        self.scans += 1
        return self.detector.run(*args)


def _alone(pixels: np.ndarray, level: int, region, models, threshold: float) -> list:
    """What dlib's scan of `region`'s cut alone finds, as _level_faces reports it."""
    cut = _region_cut(region, level, pixels)
    return [
        (score, _level_box_up(box, level))
        for score, box in _scan(pixels, cut, models.level_detector, threshold)
    ]


@needs_models
def test_level_faces__regions_apart_each_as_dlibs_scan_of_it_alone() -> None:
    models = face_models()
    photo = photo_with_face(110, models.detector)  # found in the 2nd level
    photo[100:400, 100:400] = photo[650:950, 880:1180]  # the face again, up left
    levels = pyramid(photo)
    regions = [(60, 60, 440, 440), (840, 610, 1220, 990)]
    counted = replace(models, window_detector=_CountedScans(models.window_detector))

    found = _level_faces(levels[1], 1, regions, counted, -2.5)

    alone = [face for r in regions for face in _alone(levels[1], 1, r, models, -2.5)]
    assert counted.window_detector.scans == 2
    assert len(alone) >= 4
    assert sorted(found) == sorted(alone)


@needs_models
def test_level_faces__overlapping_regions_one_scan_the_same_face() -> None:
    models = face_models()
    levels = pyramid(photo_with_face(110, models.detector))
    regions = [(840, 610, 1220, 990), (880, 650, 1260, 1030)]
    counted = replace(models, window_detector=_CountedScans(models.window_detector))

    found = _level_faces(levels[1], 1, regions, counted, 0.0)

    alone = [face for r in regions for face in _alone(levels[1], 1, r, models, 0.0)]
    assert counted.window_detector.scans == 1
    assert {box for _, box in found} == {box for _, box in alone} != set()


def test_merged_cuts__overlapping_cuts_scanned_once_far_ones_alone() -> None:
    near = [(0, 0, 200, 200), (40, 40, 240, 240)]
    far = (800, 800, 900, 900)

    merged = merged_cuts([*near, far, near[0]])

    assert sorted(merged) == [(0, 0, 240, 240), far]


def test_seed_levels__the_4th_levels_proposals_seed_every_finer_level() -> None:
    # Each finer level is at most three levels above the 4th (session 15: without the 5th's
    # proposals, the same faces on bibs-dev at 12 MP and on the demo's photos).
    assert [list(_seed_levels(level)) for level in range(3)] == [[3], [3], [3]]


def test_nearest_whole__the_whole_levels_either_side_or_the_one_there_is() -> None:
    whole = (3, 5, 7, 10, 13, 16)

    assert nearest_whole(4, whole) == (3, 5)
    assert nearest_whole(8, whole) == (7, 10)
    assert nearest_whole(9, whole) == (7, 10)
    assert nearest_whole(17, whole) == (16,)
    assert nearest_whole(2, whole) == (3,)


def test_boxes_overlap__one_face_when_boxes_nearly_coincide_or_one_holds_the_other() -> None:
    thresholds = (0.33, 0.79)  # the frontal detector's
    box = (0, 0, 99, 99)  # inclusive, as dlib's rectangles

    assert boxes_overlap(box, (10, 10, 109, 109), thresholds)  # 8,100 of 12,100 px spanned
    assert boxes_overlap(box, (20, 20, 59, 59), thresholds)  # held whole
    assert not boxes_overlap(box, (60, 0, 159, 99), thresholds)  # 4,000 of 16,000, 0.4 of each
    assert not boxes_overlap(box, (100, 0, 199, 99), thresholds)  # side by side


@needs_models
def test_face_models__overlap_test_read_from_the_detectors_saved_form() -> None:
    match, covered = face_models().overlap

    assert (round(match, 2), round(covered, 2)) == (0.33, 0.79)


@needs_models
def test_single_level__scans_the_image_and_no_smaller_level_of_it() -> None:
    models = face_models()
    # HOG's window is 80 px: a face boxed 72 px is found in the image itself, 140 px only
    # in a level two or three below it.
    small, large = photo_with_face(72, models.detector), photo_with_face(140, models.detector)

    assert hog_boxes(small, models.level_detector) == hog_boxes(small, models.detector)
    assert hog_boxes(large, models.level_detector) == []
    assert len(hog_boxes(large, models.detector)) == 1


def _scored(rects, scores, filters, numbers: Sequence[int]) -> dict[tuple[int, ...], float]:
    """(left, top, right, filter number): score of each window of a detector's run, its
    filters numbered by `numbers`."""
    return {
        (r.left(), r.top(), r.right(), numbers[f]): s
        for r, s, f in zip(rects, scores, filters, strict=True)
    }


@needs_models
@pytest.mark.parametrize("keep", [[FRONT_FILTER], [4, 1]])
def test_with_filters__each_filter_kept_scores_the_windows_it_scores_in_the_whole_detector(
    keep: list[int],
) -> None:
    models = face_models()
    pixels = pyramid(photo_with_face(110, models.detector))[1]  # the face ~90 px

    every = models.window_detector.run(pixels, 0, -1.5)
    alone = with_filters(models.window_detector, keep).run(pixels, 0, -1.5)

    wanted = {key: s for key, s in _scored(*every, range(5)).items() if key[3] in keep}
    assert len(wanted) >= 3
    assert _scored(*alone, keep) == pytest.approx(wanted, abs=1e-9)


@needs_models
def test_front_windows__those_the_front_filter_scores_whole_or_in_textured_cuts() -> None:
    models = face_models()
    levels = pyramid(photo_with_face(200, models.detector))  # the face ~80 px at the 6th level
    pixels = levels[5]
    windows = textured_windows(pixels.shape, 5, gradient_sums(levels[MEASURE_LEVEL]), MEASURE_LEVEL)
    rects, _, _ = models.front_detector.run(pixels, 0, PROPOSAL_THRESHOLD)

    whole = front_windows(pixels, None, None, models)
    cut = front_windows(pixels, textured_cuts(windows, pixels.shape), windows, models)

    # window (row, col) spans 80 px from 8 * ((row, col) - 3) - 3, its box to the end
    ends = {(r.bottom(), r.right()) for r in rects}
    assert len(ends) >= 3
    assert {
        (8 * (r - 3) - 3 + 80, 8 * (c - 3) - 3 + 80) for r, c in zip(*whole.nonzero(), strict=True)
    } == ends
    assert cut.any()
    assert (cut == whole & windows).all()


@needs_models
def test_whole_level_faces__a_level_scanned_by_its_front_filter_finds_its_faces() -> None:
    models = face_models()
    levels = pyramid(photo_with_face(200, models.detector))
    sums = gradient_sums(levels[MEASURE_LEVEL])

    found = _whole_level_faces(levels[5], 5, sums, MEASURE_LEVEL, models)

    whole = _level_faces(levels[5], 5, None, models, PROPOSAL_THRESHOLD)
    faces = [(score, box) for score, box in whole if score >= 0]
    assert len(faces) == 1
    assert [(score, box) for score, box in found if score >= 0] == [
        (pytest.approx(score, abs=1e-5), box) for score, box in faces
    ]


@needs_models
def test_frontal_detector__built_once_then_loaded_as_the_same_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dlibs = saved_form(dlib.get_frontal_face_detector())

    built = frontal_detector()
    [copy] = (tmp_path / "racelens").iterdir()
    copy.write_bytes(copy.read_bytes() + b"the copy, not dlib's build")  # to tell them apart
    loaded = frontal_detector()

    assert saved_form(built) == dlibs
    assert saved_form(loaded) == dlibs
    assert copy.read_bytes().endswith(b"the copy, not dlib's build")


@needs_models
def test_frontal_detector__damaged_copy_is_built_and_saved_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    copy = Path(frontal_detector_path(tmp_path))
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"\x01\x02half a detector")

    detector = frontal_detector()

    assert saved_form(detector) == copy.read_bytes()
    assert len(detector(np.full((100, 100), 128, np.uint8), 0)) == 0


def frontal_detector_path(cache: Path) -> str:
    import dlib

    return str(cache / "racelens" / f"frontal_face_detector-dlib-{dlib.__version__}.svm")


def photo_with_face(face_px: int, detector) -> np.ndarray:
    """A 12 MP photo as HOG searches it (2000 px, flat grey) with a face about `face_px`
    wide as HOG's whole pyramid boxes it."""
    import cv2

    portrait = _dev("misc/obama_1.jpg")
    [whole] = hog_boxes(portrait, detector)
    scale = face_px / (whole[2] - whole[0])
    face = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    photo = np.full((1333, 2000), 128, np.uint8)
    face = face[: photo.shape[0], : photo.shape[1] - 900]  # a large face's shoulders cut
    top = min(700, photo.shape[0] - face.shape[0])  # and its portrait placed higher up
    photo[top : top + face.shape[0], 900 : 900 + face.shape[1]] = face
    return photo


def hog_boxes(image: np.ndarray, detector) -> list[tuple[int, int, int, int]]:
    """The faces of HOG's whole pyramid."""
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(image, 0)]


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@needs_models
def test_detect_portrait_face__tight_crop_without_detection_is_the_whole_crop() -> None:
    crop = _dev("bbt/amy1.png")[20:130, 20:130]  # tighter than HOG's window allows

    boxes = detect_portrait_face(crop, face_models())

    assert len(boxes) == 1
    assert boxes[0][2] - boxes[0][0] >= 40


# --- identification --------------------------------------------------------------------------

KNOWN = frozenset({"101", "102", "103"})
RULE = FaceRule(threshold=0.6, margin=0.1)
GALLERY = Gallery.of([("101", unit(1.0)), ("102", unit(0.0, 1.0)), ("103", unit(0.0, 0.0, 1.0))])


def with_faces(name: str, faces: tuple[FaceSeen, ...], bibs: tuple[BibSeen, ...] = ()) -> Photo:
    ph = photo(name, bibs=bibs)
    return replace(ph, facts=replace(ph.facts, faces=faces))


def faced(ph: Photo, gallery: Gallery = GALLERY):
    return identify_faces(identify(ph, KNOWN, 0.75), gallery, RULE)


def test_identify_faces__face_without_bib_is_a_confirmed_face_match_passage() -> None:
    ph = with_faces("a", (face(100, 100, embedding=unit(0.95, 0.05)),))

    result = faced(ph)

    assert result.photo.status == PASSAGE
    [s] = result.sightings
    assert (s.bib, s.method, s.confirmed) == ("101", "face_match", True)
    assert 0.75 <= s.confidence <= MAX_FACE_CONFIDENCE
    assert result.review == ()


def test_identify_faces__face_between_two_athletes_goes_to_review_with_both() -> None:
    close = Gallery.of([("101", unit(0.5)), ("102", unit(0.0, 0.5))])
    ph = with_faces("a", (face(100, 100, embedding=unit(0.27, 0.25)),))

    result = faced(ph, close)

    assert (result.photo.status, result.photo.reason) == (REVIEW, "face_uncertain")
    assert result.sightings == ()
    assert [(i.reason, set(i.candidates)) for i in result.review] == [
        ("face_uncertain", {"101", "102"})
    ]


def test_identify_photo__x_on_an_unsure_face_rejects_that_match_not_the_photo(
    tmp_path: Path,
) -> None:
    # A weak read of 103, a face between 101 and 102 and a stranger's face: X on "Face match
    # uncertain" rejected the whole photo, and 103's read (counted where it fits their pace)
    # and the stranger's item went with it (failed before, passes). X says the face is not
    # 101 or 102; the re-timing keeps the rest.
    close = Gallery.of([("101", unit(0.5)), ("102", unit(0.0, 0.5)), ("103", unit(0, 0, 1.0))])
    unsure, stranger = (
        face(100, 100, embedding=unit(0.27, 0.25)),
        face(400, 100, 60, unit(0, 0, 0, 1.0)),
    )
    ph = with_faces("a", (unsure, stranger), bibs=(read("103", 0.55),))
    before = identify_photo(ph, KNOWN, 0.75, {}, close, RULE)
    assert [(i.reason, set(i.candidates)) for i in before.review] == [
        ("low_confidence", {"103"}),
        ("face_uncertain", {"101", "102"}),
        ("unknown_face", set()),
    ]
    items = [
        Item(i.image_id, i.reason, i.station_id, i.candidates, i.taken_at) for i in before.review
    ]
    log = str(tmp_path / "corrections.csv")
    now = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    rows = decision_rows(REJECT, items[1], official="kari", now=now, photo_station="finish")
    append_corrections(log, rows)

    logged = load_corrections(log)
    after = identify_photo(ph, KNOWN, 0.75, decisions_by_image(logged), close, RULE)

    assert sorted((r.action, r.bib) for r in logged) == [
        ("reject_face", "101"),
        ("reject_face", "102"),
    ]
    assert after.photo.status == REVIEW
    assert after.sightings == before.sightings  # 103's weak read still counts
    assert [i.reason for i in after.review] == ["low_confidence", "unknown_face"]
    assert pending(items, logged) == [items[0], items[2]]  # only the face's item is settled
    # A face with another candidate left is asked again about that one only.
    other = Gallery.of([("101", unit(0.5)), ("104", unit(0.0, 0.5))])
    again = identify_photo(ph, KNOWN | {"104"}, 0.75, decisions_by_image(logged), other, RULE)
    assert [(i.reason, i.candidates) for i in again.review if i.reason == "face_uncertain"] == [
        ("face_uncertain", ("104",))
    ]


def test_identify_faces__unknown_faces_review_as_unknown_face_or_several_athletes() -> None:
    stranger = unit(0.0, 0.0, 0.0, 1.0)
    one = faced(with_faces("a", (face(100, 100, embedding=stranger),)))
    two = faced(with_faces("b", (face(100, 100, embedding=stranger), face(400, 100, 60, stranger))))

    assert (one.photo.reason, [i.reason for i in one.review]) == ("unknown_face", ["unknown_face"])
    assert two.photo.reason == "several_athletes"
    assert [i.reason for i in two.review] == ["unknown_face", "unknown_face"]


def test_identify_faces__bib_under_a_face_wins_over_what_the_face_looks_like() -> None:
    runner = face(100, 100, embedding=unit(0.0, 1.0))  # looks like 102, wears 101
    ph = with_faces("a", (runner,), bibs=(bib_below(runner, "101"),))

    result = faced(ph)

    assert [(s.bib, s.method) for s in result.sightings] == [("101", "bib_ocr")]


def test_identify_faces__spectator_on_a_passage_photo_needs_no_review() -> None:
    runner = face(100, 100, embedding=unit(1.0))
    spectator = face(400, 100, embedding=unit(0.0, 0.0, 0.0, 1.0))
    ph = with_faces("a", (runner, spectator), bibs=(bib_below(runner, "101"),))

    result = faced(ph)

    assert result.photo.status == PASSAGE
    assert result.review == ()


def test_identify_faces__no_face_no_bib_stays_no_athlete() -> None:
    assert faced(with_faces("a", ())).photo.status == NO_ATHLETE


def test_identify_athletes__gallery_side_input_names_the_hidden_bib_runner() -> None:
    hidden = with_faces("a", (face(100, 100, embedding=unit(0.0, 0.0, 0.95)),))
    read = photo("b", bibs=(BibSeen("101", 0.95, (10, 10, 60, 40)),))

    with TestPipeline() as p:
        gallery = p | "Gallery" >> beam.Create([GALLERY])
        out = p | beam.Create([hidden, read]) | IdentifyAthletes(KNOWN, 0.75, {}, gallery, RULE)
        assert_that(
            out.sightings | beam.Map(lambda s: (s.bib, s.image_id, s.method, s.confirmed)),
            equal_to([("103", "id-a", "face_match", True), ("101", "id-b", "bib_ocr", True)]),
        )


# --- privacy -----------------------------------------------------------------------------------


def test_privacy__faces_off_in_the_course_turns_face_matching_off() -> None:
    course = parse_course(
        "race: {id: r, timezone: UTC, start: '2026-05-01T10:00:00+00:00'}\n"
        "stations: [{id: a, km: 0}, {id: b, km: 1}]\n"
        "settings: {faces: false}\n"
    )

    assert course.settings.faces is False
    assert not faces_enabled(course.settings)
    assert faces_enabled(Settings()) == models_available()


def test_privacy__faces_setting_must_be_a_boolean() -> None:
    from transforms.course import ConfigError

    with pytest.raises(ConfigError, match="faces must be true or false"):
        parse_course(
            "race: {id: r, timezone: UTC, start: '2026-05-01T10:00:00+00:00'}\n"
            "stations: [{id: a, km: 0}, {id: b, km: 1}]\n"
            "settings: {faces: 'no'}\n"
        )


def test_privacy__analysis_without_face_matching_stores_no_faces(tmp_path: Path) -> None:
    import cv2

    from transforms.photos import FactStore, _AnalyseContent, image_id_of

    image = tmp_path / "images" / "a.jpg"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((200, 300), 128, np.uint8))
    store = FactStore(str(tmp_path / "facts"))
    store.put(PhotoFacts("id-a", faces=(face(1, 1),)))  # from an earlier run with faces on
    off = _AnalyseContent(str(tmp_path / "facts"), str(tmp_path / "images"), faces=False)
    off.setup()

    [reused] = off.process(("id-a", [str(image)]))
    fresh_id = image_id_of(image.read_bytes())  # analysed, under its bytes' id
    [fresh] = off.process((fresh_id, [str(image)]))

    assert reused.facts.faces is None
    assert fresh.facts.faces is None
    assert '"faces":null' in Path(store.path_of(fresh_id)).read_text()


def test_reference_photos__relative_paths_are_read_from_the_start_lists_folder() -> None:
    athletes = [
        replace(athlete("101"), photo="faces/101.jpg"),
        athlete("102"),
        replace(athlete("103"), photo="/abs/103.png"),
    ]

    assert reference_photos(athletes, "/race/startlist.csv") == [
        ("101", "/race/faces/101.jpg"),
        ("103", "/abs/103.png"),
    ]


# --- faces-eval --------------------------------------------------------------------------------


def test_faces_eval__missing_folder_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    from pipeline.cli import main

    assert main(["faces-eval", "/no/such/folder"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@needs_models
def test_faces_eval__two_people_two_photos_each_all_correct(tmp_path: Path) -> None:
    from bench.face_eval import report

    names = ["amy1.png", "amy2.png", "raj1.png", "raj2.png"]
    if not all((FACES_DEV / "bbt" / n).exists() for n in names):
        pytest.skip(f"dev faces not found at {FACES_DEV} (set RACELENS_DATA)")
    folder = tmp_path / "set"
    folder.mkdir()
    for n in names:
        (folder / n).symlink_to(FACES_DEV / "bbt" / n)
    (folder / "labels.csv").write_text("file,person\n" + "".join(f"{n},{n[:3]}\n" for n in names))

    text = report(str(tmp_path), 0.6, 0.1, colour=False)

    assert "4 probes over rotations: correct 100.0 %  wrong   0.0 %" in text
