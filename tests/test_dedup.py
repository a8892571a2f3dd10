"""Duplicates: the same file uploaded twice, and burst frames that show nothing new."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
import imagehash
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import PROPERTY, at, make_course, photo, read
from transforms.corrections import STATION_CONFLICT
from transforms.dedup import (
    DedupPhotos,
    hash_distance,
    is_near_duplicate,
    mark_bursts,
    mark_exact_duplicates,
    mark_near_duplicates,
)
from transforms.records import DUPLICATE, REVIEW, ExifFacts, Photo

GAP_S, BITS = 3.0, 8
COURSE = make_course()
# Five seconds after the gun (10:00 in Oslo), as the camera wrote it.
TEN_AM = ExifFacts(datetime_original="2026:05:01 10:00:05")
HASH = "ffff0000ffff0000"
HASH_1_BIT = "ffff0000ffff0001"
HASH_2_BITS = "ffff0000ffff0003"
OTHER_SCENE = "0000ffff0000ffff"  # 64 bits away


def near_of(dup: Photo, original: Photo) -> Photo:
    return replace(
        dup,
        status=DUPLICATE,
        reason="near_duplicate",
        duplicate_of=original.image_id,
        duplicate_of_path=original.path,
    )


def exact_of(dup: Photo, original: Photo) -> Photo:
    return replace(
        dup,
        status=DUPLICATE,
        reason="exact_duplicate",
        duplicate_of=original.image_id,
        duplicate_of_path=original.path,
    )


def test_hash_distance__counts_differing_bits_of_real_phashes() -> None:
    rng = np.random.default_rng(1)
    scene = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    same = str(imagehash.phash(scene))
    other = str(imagehash.phash(Image.fromarray(255 - np.asarray(scene))))
    assert hash_distance(same, same) == 0
    assert hash_distance(HASH, HASH_2_BITS) == 2
    assert hash_distance(same, other) > BITS


@PROPERTY
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_hash_distance__is_imagehash_s_own(a: int, b: int) -> None:
    ha, hb = f"{a:016x}", f"{b:016x}"
    assert hash_distance(ha, hb) == imagehash.hex_to_hash(ha) - imagehash.hex_to_hash(hb)


def test_hash_distance__hashes_of_different_sizes_raise() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        hash_distance(HASH, HASH + "00")


def test_mark_exact_duplicates__keeps_the_first_by_path() -> None:
    first = photo("a")
    copies = [replace(first, path="/race/images/finish/c.jpg"), first]
    copies.append(replace(first, path="/race/images/finish/b.jpg"))
    assert mark_exact_duplicates(copies, COURSE) == [
        first,
        exact_of(copies[2], first),
        exact_of(copies[0], first),
    ]


def test_mark_exact_duplicates__one_photo_in_two_station_folders_is_timed_at_neither() -> None:
    # A start photo copied by mistake into finish/: which station is it? Only an official
    # can say; the first copy by path (finish/ before start/) was kept and timed there.
    start = photo("a", station="start", seconds=5.0, bibs=(read("101"),), exif=TEN_AM)
    copy = replace(start, path="/race/images/finish/a.jpg", folder="finish", station_id="finish")
    # The stations it may be at and its time, for whoever reads review.parquet (both were
    # empty, though the dashboard offered the choices: failed before, passes).
    doubted = replace(
        copy,
        status=REVIEW,
        reason=STATION_CONFLICT,
        exif_taken_at=at(5),
        could_be_at=("finish", "start"),
    )
    assert mark_exact_duplicates([start, copy], COURSE) == [doubted, exact_of(start, copy)]


def test_mark_exact_duplicates__stations_whose_clocks_differ_give_the_camera_s_own_time() -> None:
    # cp1's clock offset (-2.5 s) gives its copy another time than the finish's: the time
    # is the camera's own, as for a photo placed nowhere (exif.exif_time), not either copy's.
    cp1 = photo("a", station="cp1", seconds=2.5, bibs=(read("101"),), exif=TEN_AM)
    copy = replace(cp1, path="/race/images/finish/a.jpg", station_id="finish", taken_at=at(5))
    [doubted, _] = mark_exact_duplicates([cp1, copy], make_course())
    assert (doubted.exif_taken_at, doubted.could_be_at) == (at(5), ("cp1", "finish"))
    offset = make_course(stations=tuple(replace(s, clock_offset_s=-2.5) for s in COURSE.stations))
    [agreed, _] = mark_exact_duplicates([cp1, copy], offset)
    assert agreed.exif_taken_at == at(2.5)  # the offset both stations agree on


@PROPERTY
@given(st.permutations(["/x/4.jpg", "/x/1.jpg", "/x/3.jpg", "/x/2.jpg"]))
def test_mark_exact_duplicates__choice_does_not_depend_on_arrival_order(paths: list[str]) -> None:
    marked = mark_exact_duplicates([replace(photo("a"), path=p) for p in paths], COURSE)
    assert [(p.path, p.status) for p in marked] == [
        ("/x/1.jpg", None),
        ("/x/2.jpg", DUPLICATE),
        ("/x/3.jpg", DUPLICATE),
        ("/x/4.jpg", DUPLICATE),
    ]


def test_mark_exact_duplicates__live_keeps_the_copy_that_arrived_first() -> None:
    # The finish's photos copied in again later into `Finish/`: by path the later copy
    # became the photo of record, and the dashboard's links pointed at it (failed before,
    # passes).
    first = photo("a")
    later = replace(first, path="/race/images/Finish/a.jpg", folder="Finish")
    arrived = {first.path: 0, later.path: 3}
    assert mark_exact_duplicates([later, first], COURSE, arrived) == [first, exact_of(later, first)]


def test_mark_exact_duplicates__live_a_stray_copy_for_another_station_is_queued_alone() -> None:
    # A finish photo timed, then a copy of it dropped into start/: the published finish
    # went to review, timed nowhere (failed before, passes). Now only the stray copy is
    # queued, for an official to place, and it names the copy kept.
    finish = photo("a", bibs=(read("101"),), exif=TEN_AM, seconds=5.0)
    stray = replace(finish, path="/race/images/start/a.jpg", folder="start", station_id="start")
    arrived = {finish.path: 0, stray.path: 1}
    queued = replace(
        exact_of(stray, finish),
        status=REVIEW,
        reason=STATION_CONFLICT,
        exif_taken_at=at(5),
        could_be_at=("finish", "start"),
    )
    assert mark_exact_duplicates([finish, stray], COURSE, arrived) == [finish, queued]
    # Once an official has placed the photo (a decision about its image), the stray copy
    # is its copy, and the decision applies to the photo kept.
    decided = mark_exact_duplicates([finish, stray], COURSE, arrived, decided=True)
    assert decided == [finish, exact_of(stray, finish)]


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from(["start", "finish"]), st.integers(0, 2)),
        min_size=1,
        max_size=5,
    )
)
def test_mark_exact_duplicates__live_keeps_the_first_arrived_in_doubt_only_if_not_alone(
    copies: list[tuple[str, int]],
) -> None:
    # Copies (station, the poll that took them in) of one photo: one row each; the first
    # to arrive is kept; it is in doubt only where copies for another station arrived with
    # it; otherwise at most one later copy, for another station, is queued.
    base = photo("a", seconds=5.0)
    files = [
        replace(base, path=f"/race/images/{station}/{n}.jpg", folder=station, station_id=station)
        for n, (station, _) in enumerate(copies)
    ]
    arrived = {f.path: poll for f, (_, poll) in zip(files, copies, strict=True)}
    kept, *rest = mark_exact_duplicates(files, COURSE, arrived)
    assert sorted(p.path for p in [kept, *rest]) == sorted(f.path for f in files)
    first_poll = min(arrived.values())
    assert arrived[kept.path] == first_poll
    together = {s for s, poll in copies if poll == first_poll}
    assert (kept.reason == STATION_CONFLICT) == (len(together) > 1)
    queued = [p for p in rest if p.status == REVIEW]
    assert len(queued) == (len(together) == 1 and len({s for s, _ in copies}) > 1)
    assert all(p.duplicate_of_path == kept.path for p in rest)
    # All arrived together (a batch run, or one poll): the batch rule, first by path.
    assert mark_exact_duplicates(files, COURSE, dict.fromkeys(arrived, 0)) == (
        mark_exact_duplicates(files, COURSE)
    )


def test_dedup__burst_of_three_keeps_first() -> None:
    first = photo("f1", seconds=0.0, bibs=(read("101"),), phash=HASH)
    second = photo("f2", seconds=0.3, bibs=(read("101", 0.9),), phash=HASH_1_BIT)
    third = photo("f3", seconds=0.6, bibs=(), phash=HASH_2_BITS)  # the bib turned away
    marked = mark_near_duplicates([third, first, second], GAP_S, BITS)
    assert marked == [first, near_of(second, first), near_of(third, first)]


def test_dedup__at_a_crossing_last_station_a_burst_keeps_its_last() -> None:
    # A camera facing the oncoming runners: the last frame is the one at the line, and
    # it times the passage (crossing: last). Failed before (the first frame was kept, the
    # passage timed up to burst_gap_s early), passes.
    first = photo("f1", seconds=0.0, bibs=(read("101"),), phash=HASH)
    second = photo("f2", seconds=1.0, bibs=(read("101"),), phash=HASH_1_BIT)
    third = photo("f3", seconds=2.0, bibs=(read("101"),), phash=HASH_2_BITS)
    marked = mark_bursts([second, first, third], GAP_S, BITS, latest=True)
    assert marked == [third, near_of(second, third), near_of(first, third)]


def test_dedup__frame_with_a_new_bib_is_never_a_duplicate() -> None:
    kept = photo("f1", seconds=0.0, bibs=(read("101"),), phash=HASH)
    newcomer = photo("f2", seconds=0.3, bibs=(read("101"), read("102")), phash=HASH)
    assert not is_near_duplicate(newcomer, kept, GAP_S, BITS)
    assert mark_near_duplicates([kept, newcomer], GAP_S, BITS) == [kept, newcomer]


def test_dedup__other_station_is_not_a_duplicate() -> None:
    kept = photo("f1", station="finish", seconds=0.0, bibs=(read("101"),))
    elsewhere = photo("c1", station="cp1", seconds=0.1, bibs=(read("101"),))
    assert not is_near_duplicate(elsewhere, kept, GAP_S, BITS)


def test_dedup__more_than_the_burst_gap_apart_is_not_a_duplicate() -> None:
    kept = photo("f1", seconds=0.0, bibs=(read("101"),))
    later = photo("f2", seconds=GAP_S + 0.1, bibs=(read("101"),))
    assert not is_near_duplicate(later, kept, GAP_S, BITS)
    assert is_near_duplicate(replace(later, taken_at=kept.taken_at), kept, GAP_S, BITS)


def test_dedup__different_scene_is_not_a_duplicate() -> None:
    kept = photo("f1", seconds=0.0, phash=HASH)
    other = photo("f2", seconds=0.3, phash=OTHER_SCENE)
    assert not is_near_duplicate(other, kept, GAP_S, BITS)


def test_dedup__photo_without_phash_is_never_a_near_duplicate() -> None:
    kept = photo("f1", seconds=0.0)
    assert not is_near_duplicate(photo("f2", seconds=0.3, phash=None), kept, GAP_S, BITS)


def test_dedup_photos__marks_copies_and_bursts_and_keeps_the_rest() -> None:
    f1 = photo("f1", seconds=0.0, bibs=(read("101"),), phash=HASH)
    f2 = photo("f2", seconds=0.3, bibs=(read("101"),), phash=HASH_1_BIT)
    f3 = photo("f3", seconds=0.6, bibs=(read("101"), read("102")), phash=HASH_1_BIT)
    f4 = photo("f4", seconds=10.0, bibs=(read("101"),), phash=HASH)
    c1 = photo("c1", station="cp1", seconds=0.3, bibs=(read("101"),), phash=HASH)
    upload_again = replace(f1, path="/race/images/finish/upload-again.jpg")
    with TestPipeline() as p:
        marked = p | beam.Create([upload_again, f4, f3, c1, f2, f1]) | DedupPhotos(COURSE)
        assert_that(
            marked,
            equal_to([f1, near_of(f2, f1), f3, f4, c1, exact_of(upload_again, f1)]),
        )


def test_dedup_photos__a_photo_of_two_stations_is_no_burst_frame_at_either() -> None:
    # In finish/ by mistake, the start photo must not hide a finish frame as its burst copy.
    f1 = photo("f1", seconds=0.2, bibs=(read("101"),), phash=HASH)
    start = photo("s1", station="start", seconds=0.0, bibs=(read("101"),), phash=HASH)
    copy = replace(start, path="/race/images/finish/s1.jpg", folder="finish", station_id="finish")
    conflict = replace(
        copy, status=REVIEW, reason=STATION_CONFLICT, could_be_at=("finish", "start")
    )
    with TestPipeline() as p:
        marked = p | beam.Create([f1, start, copy]) | DedupPhotos(COURSE)
        assert_that(marked, equal_to([f1, conflict, exact_of(start, copy)]))


def test_dedup_photos__output_is_stamped_with_event_time() -> None:
    f1 = photo("f1", seconds=5.0)
    with TestPipeline() as p:
        stamped = (
            p
            | beam.Create([f1])
            | DedupPhotos(COURSE)
            | beam.Map(lambda ph, ts=beam.DoFn.TimestampParam: float(ts))
        )
        assert_that(stamped, equal_to([f1.taken_at.timestamp()]))
