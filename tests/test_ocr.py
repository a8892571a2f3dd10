"""Tests of transforms.ocr on bibs rendered here, and on real dev photos where available."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.common import DATA
from transforms import ocr
from transforms.ocr import BibRead, find_bib_regions, read_bibs
from transforms.ppocr import LineRead

Box = tuple[int, int, int, int]
BGR = tuple[int, int, int]

WHITE, YELLOW, LIGHT_BLUE, NAVY = (245, 245, 245), (170, 240, 250), (250, 225, 198), (90, 30, 20)
BLACK, DARK_BLUE, DARK_RED = (20, 20, 20), (120, 30, 15), (25, 15, 130)


@dataclass(frozen=True)
class Bib:
    number: str
    centre: tuple[int, int]  # in the scene
    paper: BGR = WHITE
    ink: BGR = BLACK
    font: int = cv2.FONT_HERSHEY_SIMPLEX
    digit_height: int = 52
    angle: float = 0.0  # degrees, counter-clockwise


def _scene(seed: int, height: int = 800, width: int = 1200) -> np.ndarray:
    """Sky-to-road gradient with sensor noise and a few blobs (trees, cars, spectators)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - rows) * np.array([230.0, 190, 150]) + rows * np.array([90.0, 100, 110])
    image = np.broadcast_to(image, (height, width, 3)).copy()
    for _ in range(12):
        colour = tuple(float(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height // 2)))
        axes = (int(rng.integers(30, 150)), int(rng.integers(20, 90)))
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_runner(image: np.ndarray, bib: Bib, shirt: BGR) -> Box:
    """A torso wearing the bib; returns the box of the bib's digits."""
    cx, cy = bib.centre
    cv2.rectangle(image, (cx - 130, cy - 150), (cx + 130, cy + 200), shirt, -1)
    (unit_w, unit_h), _ = cv2.getTextSize("0", bib.font, 1.0, 1)
    scale = bib.digit_height / unit_h
    thickness = max(2, bib.digit_height // 12)
    (text_w, text_h), _ = cv2.getTextSize(bib.number, bib.font, scale, thickness)
    paper_w, paper_h = text_w + 40, text_h + 50
    card = np.empty((paper_h, paper_w, 3), np.uint8)
    card[:] = bib.paper
    ink = np.zeros((paper_h, paper_w), np.uint8)
    origin = (20, paper_h - 25)
    cv2.putText(card, bib.number, origin, bib.font, scale, bib.ink, thickness, cv2.LINE_AA)
    cv2.putText(ink, bib.number, origin, bib.font, scale, 255, thickness, cv2.LINE_AA)
    # Rotate card, ink and a paper mask together about the bib's centre in the scene.
    rotation = cv2.getRotationMatrix2D((paper_w / 2, paper_h / 2), bib.angle, 1.0)
    rotation[:, 2] += (cx - paper_w / 2, cy - paper_h / 2)
    size = (image.shape[1], image.shape[0])
    paper = np.full((paper_h, paper_w), 255, np.uint8)
    warped_card = cv2.warpAffine(card, rotation, size)
    warped_paper = cv2.warpAffine(paper, rotation, size)[..., None] / 255.0
    warped_ink = cv2.warpAffine(ink, rotation, size)
    image[:] = (image * (1 - warped_paper) + warped_card * warped_paper).astype(np.uint8)
    ys, xs = np.nonzero(warped_ink > 127)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _photo(bibs: list[Bib], seed: int = 1) -> tuple[np.ndarray, list[Box]]:
    image = _scene(seed)
    shirts = [(40, 40, 200), (160, 90, 30), (60, 140, 60)]
    boxes = [_draw_runner(image, bib, shirts[i % len(shirts)]) for i, bib in enumerate(bibs)]
    return cv2.GaussianBlur(image, (0, 0), 0.7), boxes


def _intersection(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _fits(found: Box, digits: Box, covered: float = 0.95) -> bool:
    """The found box covers the digits and is not much larger than them."""
    overlap = _intersection(found, digits)
    iou = overlap / (_area(found) + _area(digits) - overlap)
    return overlap >= covered * _area(digits) and iou >= 0.5


def _confident(reads: list[BibRead]) -> list[BibRead]:
    return [r for r in reads if r.confidence >= 0.75]


SINGLE_BIBS = [
    Bib("427", (600, 450)),
    Bib("3081", (500, 420), YELLOW, DARK_BLUE, cv2.FONT_HERSHEY_DUPLEX, 46, angle=4.0),
    Bib("96", (700, 480), LIGHT_BLUE, DARK_RED, cv2.FONT_HERSHEY_TRIPLEX, 60, angle=-3.0),
    Bib("5213", (600, 450), NAVY, WHITE, digit_height=50, angle=2.0),  # light on dark
]


@pytest.mark.parametrize("bib", SINGLE_BIBS, ids=lambda b: b.number)
def test_reads_a_rendered_bib_with_its_box(bib: Bib) -> None:
    image, (digits_box,) = _photo([bib])

    reads = _confident(read_bibs(image))

    assert [r.bib for r in reads] == [bib.number]
    assert reads[0].confidence <= 1.0
    assert _fits(reads[0].box, digits_box)


@pytest.mark.parametrize("bib", SINGLE_BIBS[:2], ids=lambda b: b.number)
def test_finds_the_region_of_a_rendered_bib(bib: Bib) -> None:
    image, (digits_box,) = _photo([bib])

    regions = find_bib_regions(image)

    assert any(_fits(region, digits_box) for region in regions)


def test_reads_both_bibs_of_a_photo_best_first() -> None:
    bibs = [Bib("152", (330, 450), angle=-2.0), Bib("2718", (880, 430), YELLOW, DARK_BLUE)]
    image, boxes = _photo(bibs, seed=2)

    reads = read_bibs(image)

    by_number = {r.bib: r for r in _confident(reads)}
    assert set(by_number) == {"152", "2718"}
    for bib, box in zip(bibs, boxes, strict=True):
        assert _fits(by_number[bib.number].box, box)
    assert [r.confidence for r in reads] == sorted((r.confidence for r in reads), reverse=True)


def test_accepts_a_grayscale_photo() -> None:
    image, _ = _photo([SINGLE_BIBS[0]])

    reads = _confident(read_bibs(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)))

    assert [r.bib for r in reads] == ["427"]


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_image_has_no_regions_and_no_reads(value: int) -> None:
    image = np.full((600, 900, 3), value, np.uint8)

    assert find_bib_regions(image) == []
    assert read_bibs(image) == []


def test_scene_without_runners_has_no_confident_reads() -> None:
    assert _confident(read_bibs(_scene(seed=3))) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 60, 3), np.float32),
        np.zeros((40, 60, 4), np.uint8),
        np.zeros((40, 60, 3, 1), np.uint8),
        np.zeros(60, np.uint8),
        np.zeros((0, 0, 3), np.uint8),
        [[0, 255], [255, 0]],
    ],
    ids=["float", "bgra", "4-d", "1-d", "empty", "list"],
)
def test_rejects_what_is_not_a_uint8_image(bad: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        read_bibs(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected"):
        find_bib_regions(bad)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 120), st.integers(1, 120), st.just(3)),
        elements=st.integers(0, 255),
    )
)
def test_any_small_image_gives_valid_output(image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for x0, y0, x1, y1 in find_bib_regions(image):
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    for read in read_bibs(image):
        assert read.bib.isdigit() and 2 <= len(read.bib) <= 5
        assert 0.0 <= read.confidence <= 1.0


# --- Real photos ----------------------------------------------------------------------------

REAL_PHOTOS = DATA / "bibs-dev"


def test_reads_real_race_photos() -> None:
    """A floor under the tesseract baseline on real photos (see bench/bib_eval.py)."""
    if not (REAL_PHOTOS / "labels.csv").is_file():
        pytest.skip(f"real dev photos not found at {REAL_PHOTOS} (set RACELENS_DATA)")
    with open(REAL_PHOTOS / "labels.csv", newline="") as f:
        labelled = list(csv.DictReader(f))[::3]  # a third keeps the test quick
    hits = wrong = total = 0
    for row in labelled:
        image = cv2.imread(str(REAL_PHOTOS / row["file"]), cv2.IMREAD_COLOR)
        truth = set(row["bibs"].split(";"))
        read = {r.bib for r in _confident(read_bibs(image))}
        hits += len(read & truth)
        wrong += len(read - truth)
        total += len(truth)
    assert hits / total >= 0.2, f"recall {hits}/{total}"
    assert hits / max(1, hits + wrong) >= 0.6, f"precision {hits}/{hits + wrong}"


# Bibs of small digits with thin strokes that only the smallest threshold window finds.
SMALL_BIBS = [("set1_25.JPG", "869"), ("set1_61.JPG", "1679"), ("set1_64.JPG", "435")]
# A bib whose digits touch its shadowed top edge: only the search within the bib's paper
# (ocr._on_paper) finds it.
TOUCHING_BIBS = [("set1_76.JPG", "3621")]


@pytest.mark.parametrize(("name", "bib"), SMALL_BIBS + TOUCHING_BIBS)
def test_find_bib_regions__hard_bibs_of_real_photos_among_first_lines(name: str, bib: str) -> None:
    if not (REAL_PHOTOS / "boxes.csv").is_file():
        pytest.skip(f"real dev photos not found at {REAL_PHOTOS} (set RACELENS_DATA)")
    with open(REAL_PHOTOS / "boxes.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if (r["file"], r["bib"]) == (name, bib))
    digits = tuple(
        round(float(row[k])) for k in ("bib_minCol", "bib_minRow", "bib_maxCol", "bib_maxRow")
    )
    image = cv2.imread(str(REAL_PHOTOS / name), cv2.IMREAD_COLOR)

    regions = find_bib_regions(image, ocr.LOOSE)[: ocr.PP_FIRST_LINES]

    assert any(_fits(r, digits, covered=0.8) for r in regions), (regions, digits)


def _strapped_bib() -> tuple[np.ndarray, Box]:
    """A bib with a dark strap across its top that touches every digit's top."""
    image = _scene(seed=4)
    digits = _draw_runner(image, Bib("4807", (600, 450)), (40, 40, 200))
    cv2.rectangle(
        image, (digits[0] - 60, digits[1] - 20), (digits[2] + 60, digits[1] + 3), BLACK, -1
    )
    return cv2.GaussianBlur(image, (0, 0), 0.7), digits


@pytest.mark.parametrize(("paper_search", "found"), [(True, True), (False, False)])
def test_find_bib_regions__digits_touching_a_strap_found_within_the_paper(
    monkeypatch: pytest.MonkeyPatch, paper_search: bool, found: bool
) -> None:
    if not paper_search:
        monkeypatch.setattr(ocr, "PAPER_MAX_BLOCK", 0.0)
    image, digits = _strapped_bib()

    regions = find_bib_regions(image, ocr.LOOSE)[: ocr.PP_FIRST_LINES]

    assert any(_fits(r, digits, covered=0.8) for r in regions) is found


@pytest.mark.parametrize(("face_x", "found"), [(600, True), (250, False)], ids=["above", "aside"])
def test_torso_lines__finds_the_bib_below_a_face_only(face_x: int, found: bool) -> None:
    image, (digits,) = _photo([Bib("4807", (600, 450))])
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    face = (face_x - 40, 200, face_x + 40, 300)  # the bib hangs 1.5 face heights below

    lines, scale = ocr.torso_lines(gray, face)

    assert len(lines) <= ocr.TORSO_LINES
    boxes = [ocr._padded_box(line, scale, gray.shape) for line in lines]
    assert any(_fits(box, digits, covered=0.8) for box in boxes) is found, boxes


def test_torso_lines__face_at_the_photo_bottom_gives_nothing() -> None:
    gray = np.full((400, 600), 200, np.uint8)

    assert ocr.torso_lines(gray, (280, 340, 320, 399)) == ([], pytest.approx(48 / 59))


# A bib whose digits are 9 px high: too small for the whole photo's search, which shrinks the
# photo to WORK_MAX_SIDE; FACE is where the runner's face would be, two digit heights high.
SMALL_BIB = Bib("4807", (600, 450), digit_height=14)
FACE = (590, 405, 610, 425)


def test_read_bibs__a_line_on_a_face_is_not_read() -> None:
    image, (on_face, beside) = _photo([Bib("427", (300, 450)), Bib("3081", (900, 420))])
    face = (on_face[0] - 10, on_face[1] - 20, on_face[2] + 10, on_face[3] + 20)

    assert {r.bib for r in _confident(read_bibs(image))} == {"427", "3081"}
    assert [r.bib for r in _confident(read_bibs(image, faces=[face]))] == ["3081"]


def test_torso_reads__reads_a_bib_below_a_face_that_the_photo_search_misses() -> None:
    image, (digits,) = _photo([SMALL_BIB])
    found = read_bibs(image)

    reads = ocr.torso_reads(image, [FACE], found)

    assert found == []
    assert [r.bib for r in _confident(reads)] == ["4807"]
    assert _fits(reads[0].box, digits, covered=0.8)


def test_torso_reads__a_read_in_the_same_place_stands() -> None:
    image, (digits,) = _photo([SMALL_BIB])
    weak = BibRead("4801", 0.5, digits)

    assert ocr.torso_reads(image, [FACE], [weak]) == [weak]


def test_torso_reads__searches_only_below_faces_without_a_sure_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched = []
    monkeypatch.setattr(
        ocr, "torso_lines", lambda gray, face, wanted: searched.append(face) or ([], 1.0)
    )
    faces = [(10, 10, 30, 30), (110, 10, 130, 30)]
    sure_below_first = [
        BibRead("12", 0.9, (12, 45, 28, 55)),
        BibRead("34", 0.5, (112, 45, 128, 55)),
    ]

    reads = ocr.torso_reads(np.zeros((200, 200, 3), np.uint8), faces, sure_below_first)

    assert searched == [faces[1]]
    assert reads == sure_below_first


# --- Ranking and reading budget ---------------------------------------------------------------


def test_find_bib_regions__a_line_of_more_digits_ranks_first() -> None:
    # Same paper, ink and contrast: only the count of digits in a row tells them apart.
    image, (pair, number) = _photo([Bib("38", (300, 450)), Bib("3838", (850, 450))])

    first = find_bib_regions(image, ocr.LOOSE)[0]

    assert _fits(first, number), (first, pair, number)


class _FakeRecogniser:
    """Reads every crop of its n-th view as the n-th text (the last one after that): a crop
    of another width than the one before begins the next view (the lines of _lines are all
    alike, so each view of them, first or tighter, cuts crops of one width)."""

    def __init__(self, *reads: tuple[str, float]):
        self.reads = [LineRead(text, tuple(conf for _ in text)) for text, conf in reads]
        self.crops = 0
        self.views = 0
        self.width: int | None = None

    def read_lines(self, crops: list[np.ndarray]) -> list[LineRead]:
        reads = []
        for crop in crops:
            if self.width is not None and crop.shape[1] != self.width:
                self.views += 1
            self.width = crop.shape[1]
            reads.append(self.reads[min(self.views, len(self.reads) - 1)])
        self.crops += len(crops)
        return reads


def _lines(count: int) -> list[ocr._Line]:
    """count two-digit lines one under the other, in working pixels."""
    return [
        ocr._Line(np.array([[10.0, 20 * i, 8, 12], [20.0, 20 * i, 8, 12]]), True, 1.0)
        for i in range(count)
    ]


def _read_with(monkeypatch: pytest.MonkeyPatch, fake: _FakeRecogniser) -> list[BibRead]:
    """read_bibs with PP-OCR as the fake, on a photo where 12 lines are found."""
    monkeypatch.setattr(ocr, "recogniser", lambda: fake)
    monkeypatch.setattr(ocr, "engine_name", lambda: "ppocr")
    monkeypatch.setattr(ocr, "_detect", lambda gray, wanted: (_lines(12), 1.0))
    return read_bibs(np.full((300, 100), 200, np.uint8))


@pytest.mark.parametrize(
    ("text", "confidence", "crops"),
    # A weak read is read twice (a second view of its line), a sure one and a word once.
    [("12", 0.95, ocr.PP_FIRST_LINES), ("12", 0.3, 2 * 12), ("ab", 0.95, 12)],
    ids=["sure read", "weak read", "no bib"],
)
def test_read_bibs__reads_further_lines_only_without_a_sure_read(
    monkeypatch: pytest.MonkeyPatch, text: str, confidence: float, crops: int
) -> None:
    fake = _FakeRecogniser((text, confidence))

    _read_with(monkeypatch, fake)

    assert fake.crops == crops


def test_read_bibs__two_views_that_agree_make_a_weak_read_sure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = _read_with(monkeypatch, _FakeRecogniser(("12", 0.6), ("12", 0.5)))

    assert [(r.bib, round(r.confidence, 6)) for r in reads] == [("12", 0.8)]


def test_read_bibs__a_second_view_that_disagrees_leaves_the_read_weak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = _read_with(monkeypatch, _FakeRecogniser(("12", 0.6), ("13", 0.99), ("", 0.0)))

    assert [(r.bib, r.confidence) for r in reads] == [("12", pytest.approx(0.6))]


@pytest.mark.parametrize(
    ("other", "kept"),
    # A line reaching into a bib from the side (its crop read "207" of "2078") overlaps the
    # bib's box by a sixth: one bib read twice. Two bibs side by side stay two reads.
    [
        (BibRead("207", 0.8, (0, 0, 113, 40)), ["2078"]),
        (BibRead("3521", 0.8, (181, 0, 260, 40)), ["2078", "3521"]),
    ],
    ids=["same place", "next bib"],
)
def test_match_start_list__two_numbers_in_one_place_are_one_bib(
    other: BibRead, kept: list[str]
) -> None:
    reads = [BibRead("2078", 0.99, (100, 0, 180, 40)), other]

    assert [r.bib for r in ocr.match_start_list(reads, None)] == kept


@pytest.mark.parametrize(
    ("text", "separators", "bib"),
    # A race clock's "1:35:40" read without its colons, which the recogniser half saw.
    [
        ("13540", (0.0, 0.3, 0.0, 0.2), None),
        ("13540", (0.0, 0.01, 0.0, 0.02), "13540"),
        ("#354", (0.5, 0.0, 0.0), "354"),  # a hole beside the number is no separator
    ],
    ids=["clock", "bib", "scrap beside"],
)
def test_bib_of__a_separator_between_digits_makes_a_time(
    text: str, separators: tuple[float, ...], bib: str | None
) -> None:
    read = ocr._bib_of(LineRead(text, tuple(0.99 for _ in text), separators))

    assert (read[0] if read else None) == bib


def test_bib_of__an_o_after_the_prefix_is_a_zero_the_prefix_not_counted() -> None:
    read = ocr._bib_of(LineRead("SO495", (0.3, 0.9, 0.99, 0.99, 0.99)))

    assert read == ("0495", 0.9, 0.0)


def test_suppress_duplicates__a_line_more_windows_found_ranks_first() -> None:
    # The same line found by two windows (a shorter version nested in it) outranks a line
    # with a better background that only one window found.
    once = ocr._Line(np.array([[10.0, 10, 8, 12], [20, 10, 8, 12]]), True, 3.0)
    twice = ocr._Line(np.array([[10.0, 50, 8, 12], [20, 50, 8, 12], [30, 50, 8, 12]]), True, 2.0)
    shorter = ocr._Line(twice.components[:2], False, 1.0)

    kept = ocr._suppress_duplicates([once, twice, shorter], max_regions=5)

    assert [line.box for line in kept] == [twice.box, once.box]
    assert kept[0].score == 4.0


def _plain_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _plain_same_text(a: ocr._Line, b: ocr._Line, height_ratio: float) -> bool:
    ratio = a.digit_height / b.digit_height
    return _plain_overlap(a.box, b.box) >= 0.5 and 1 / height_ratio <= ratio <= height_ratio


def _plain_suppression(
    lines: list[ocr._Line], max_regions: int
) -> list[tuple[tuple[float, ...], bool, float]]:
    """_suppress_duplicates spelt plainly, one pair at a time."""
    kept: list[ocr._Line] = []
    versions: list[int] = []
    by_completeness = sorted(
        lines, key=lambda ln: (ocr._char_range(ln.components)[0], ln.score), reverse=True
    )
    for line in by_completeness:
        same = next(
            (i for i, k in enumerate(kept) if _plain_same_text(line, k, ocr.MAX_HEIGHT_RATIO)),
            None,
        )
        if same is None:
            kept.append(line)
            versions.append(1)
        else:
            versions[same] += 1
    voted = [(k.box, k.dark_digits, k.score * n) for k, n in zip(kept, versions, strict=True)]
    return sorted(voted, key=lambda v: v[2], reverse=True)[:max_regions]


def _random_lines(seed: int, n: int) -> list[ocr._Line]:
    """Lines of 2-4 components on a coarse grid: nested, touching, of heights at the
    ratio's bounds (10 against 12), and tied scores."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        count, height = int(rng.integers(2, 5)), float(rng.choice([10.0, 12.0, 15.0, 30.0]))
        x, y = rng.integers(0, 12, 2) * 5.0
        widths = rng.choice([2.0, 5.0, 8.0, 20.0], count)
        xs = x + np.concatenate([[0.0], np.cumsum(widths[:-1] + 1.0)])
        rows = np.column_stack([xs, np.full(count, y), widths, np.full(count, height)])
        lines.append(ocr._Line(rows, bool(rng.integers(2)), float(rng.integers(1, 4))))
    return lines


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 30), st.sampled_from([1.2, 1.5]))
def test_same_texts__as_the_pairwise_test(seed: int, n: int, height_ratio: float) -> None:
    lines = _random_lines(seed, n)
    others = lines[: n // 2] + _random_lines(seed + 1, 5)

    same = ocr._same_texts(lines, others, height_ratio)

    expected = [[_plain_same_text(a, b, height_ratio) for b in others] for a in lines]
    assert same.shape == (len(lines), len(others))
    assert same.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 30), st.integers(1, 20))
def test_suppress_duplicates__as_the_plain_suppression(seed: int, n: int, regions: int) -> None:
    lines = _random_lines(seed, n)

    kept = ocr._suppress_duplicates(lines, regions)

    assert [(k.box, k.dark_digits, k.score) for k in kept] == _plain_suppression(lines, regions)


def test_line_box__spans_its_components() -> None:
    line = ocr._Line(np.array([[10.5, 7.0, 3.25, 12.0], [4.0, 9.5, 2.0, 10.0]]), True, 1.0)

    assert line.box == (4.0, 7.0, 13.75, 19.5)
    assert line.fewest_chars == 2


@given(
    st.lists(
        st.tuples(
            st.integers(0, 1600), st.integers(0, 1600), st.integers(1, 80), st.integers(8, 80)
        ),
        min_size=2,
        max_size=5,
        unique_by=lambda c: 2 * c[0] + c[2],  # centres in different columns
    )
)
def test_line_angle__the_least_squares_slope_rounded_once(components: list[tuple]) -> None:
    # The search's components: whole pixels, their centres multiples of a half.
    xs = [Fraction(x) + Fraction(w, 2) for x, _, w, _ in components]
    ys = [Fraction(y) + Fraction(h, 2) for _, y, _, h in components]
    n, sx, sy = len(xs), sum(xs), sum(ys)
    slope = (n * sum(x * y for x, y in zip(xs, ys, strict=True)) - sx * sy) / (
        n * sum(x * x for x in xs) - sx**2
    )

    line = ocr._Line(np.array(components, np.float64), True, 1.0)

    assert line.angle_deg == float(np.degrees(np.arctan(float(slope))))


def _reference_groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected groups by plain union-find, each listed by its members, smallest first."""
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in pairs:
        parent[max(root(a), root(b))] = min(root(a), root(b))
    groups: dict[int, list[int]] = {}
    for node in range(n):
        groups.setdefault(root(node), []).append(node)
    return [groups[r] for r in sorted(groups)]


@given(
    st.integers(1, 40).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)))
        )
    )
)
def test_smallest_member__groups_as_union_find_in_order_of_smallest_member(
    graph: tuple[int, list[tuple[int, int]]],
) -> None:
    n, pairs = graph
    i = np.array([a for a, _ in pairs], dtype=np.int64)
    j = np.array([b for _, b in pairs], dtype=np.int64)

    group = ocr._smallest_member(n, i, j)

    found = [np.flatnonzero(group == g).tolist() for g in np.unique(group)]
    assert found == _reference_groups(n, pairs)


def _reference_lines(rows: np.ndarray) -> list[np.ndarray]:
    """_group_lines spelt plainly: each group of 2 or more (by its smallest member) in x
    order, those that can hold at most MAX_LINE_CHARS characters."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    x0, y0, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    i, j = np.triu_indices(len(rows), 1)
    pair_h = (h[i] + h[j]) / 2
    linked = (
        (x0[j] <= x0[i] + w[i] + ocr.GAP_RANGE[1] * h[i])
        & (np.maximum(h[i], h[j]) <= ocr.MAX_HEIGHT_RATIO * np.minimum(h[i], h[j]))
        & (np.abs(y0[i] + h[i] / 2 - y0[j] - h[j] / 2) <= ocr.MAX_CENTRE_SHIFT * pair_h)
        & (x0[j] - x0[i] - w[i] >= ocr.GAP_RANGE[0] * pair_h)
    )
    group = ocr._smallest_member(len(rows), i[linked], j[linked])
    lines = [rows[group == g] for g in np.unique(group) if (group == g).sum() >= 2]
    return [line for line in lines if ocr._char_range(line)[0] <= ocr.MAX_LINE_CHARS]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 60))
def test_group_lines__as_the_plain_grouping(seed: int, n: int) -> None:
    # Components on a coarse grid of sizes and places: ties, chains and wide blobs come up.
    rng = np.random.default_rng(seed)
    rows = np.column_stack(
        [
            rng.integers(0, 20, n) * 10.0,
            rng.integers(0, 4, n) * 8.0,
            rng.integers(1, 6, n) * 6.0,
            rng.integers(3, 6, n) * 6.0,
            np.arange(1, n + 1, dtype=np.float64),
        ]
    )

    found = ocr._group_lines(rows)

    expected = _reference_lines(rows)
    assert len(found) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(found, expected, strict=True))


@given(st.lists(arrays(np.uint8, st.integers(1, 300)), min_size=1, max_size=3))
def test_medians__as_numpy_median(parts: list[np.ndarray]) -> None:
    expected = [float(np.median(part)) for part in parts]

    assert ocr._medians(parts) == expected


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.2, 0.8))
def test_digit_components__labels_as_opencvs_default_labelling(seed: int, ink: float) -> None:
    # Pixel noise: labelling algorithms that number components otherwise differ on it.
    binary = (np.random.default_rng(seed).random((200, 300)) < ink).astype(np.uint8) * 255
    _, expected, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)

    labels, rows = ocr._digit_components(binary)

    assert np.array_equal(labels, expected)
    assert np.array_equal(rows[:, :4], stats[rows[:, 4].astype(int), :4])


@contextmanager
def _opencv_threads(threads: int) -> Iterator[None]:
    """OpenCV on so many threads (one: as in the pipeline's workers), then as it was."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 0.18))
def test_digit_components__16_bit_labels_where_the_ink_fits_as_32_bit_ones(
    seed: int, ink: float
) -> None:
    # As large as a 12 MP photo's working image: more blocks than 16 bits count, but fewer
    # with ink (at most 1 - 0.82**4 of them).
    binary = (np.random.default_rng(seed).random((800, 533)) < ink).astype(np.uint8) * 255
    _, expected, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)

    with _opencv_threads(1):
        labels, rows = ocr._digit_components(binary)

    assert labels.dtype == np.uint16
    assert np.array_equal(labels, expected)
    assert np.array_equal(rows[:, :4], stats[rows[:, 4].astype(int), :4])


def test_digit_components__more_ink_blocks_than_16_bits_count_labelled_in_32() -> None:
    # A speck in each of 70,000 blocks: 70,000 labels, which 16 bits cannot hold.
    binary = np.zeros((800, 533), np.uint8)
    binary[0:560:2, 0:500:2] = 255
    _, expected, _, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)

    with _opencv_threads(1):
        labels, _ = ocr._digit_components(binary)

    assert labels.dtype == np.int32
    assert np.array_equal(labels, expected)


def test_label_type__on_several_threads_16_bits_only_for_few_blocks() -> None:
    # Each thread's stripe numbers its blocks from the count of those above it.
    with _opencv_threads(2):
        types = [ocr._label_type(np.zeros(shape, np.uint8)) for shape in [(400, 267), (800, 533)]]

    assert types == [cv2.CV_16U, cv2.CV_32S]


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.floats(0, 0.3))
def test_ink_blocks__counts_the_2x2_blocks_holding_ink(
    seed: int, height: int, width: int, ink: float
) -> None:
    binary = (np.random.default_rng(seed).random((height, width)) < ink).astype(np.uint8) * 255
    padded = np.zeros((height + height % 2, width + width % 2), np.uint8)
    padded[:height, :width] = binary
    blocks = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).max(axis=(1, 3))

    assert ocr._ink_blocks(binary) == np.count_nonzero(blocks)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.2, 0.8))
def test_digit_components__keeps_the_components_shaped_like_a_digit(seed: int, ink: float) -> None:
    # Discs and rings of every size and shape over pixel noise: specks, digits, bars, blobs.
    rng = np.random.default_rng(seed)
    binary = ((rng.random((200, 300)) < ink / 10) * 255).astype(np.uint8)
    for _ in range(40):
        centre, axes = rng.integers(0, (300, 200)), rng.integers(1, 30, 2)
        thickness = int(rng.choice([-1, 1, 2, 4]))
        cv2.ellipse(binary, centre.tolist(), axes.tolist(), 0, 0, 360, 255, thickness)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    x, y, w, h, area = stats[1:].T.astype(np.float64)
    expected = np.flatnonzero(
        (h >= ocr.MIN_DIGIT_HEIGHT)
        & (h <= ocr.MAX_DIGIT_HEIGHT_FRACTION * 200)
        & (w / h >= ocr.DIGIT_ASPECT[0])
        & (w / h <= ocr.DIGIT_ASPECT[1])
        & (area / (w * h) >= ocr.DIGIT_FILL[0])
        & (area / (w * h) <= ocr.DIGIT_FILL[1])
    )

    _, rows = ocr._digit_components(binary)

    assert rows[:, 4].astype(int).tolist() == (expected + 1).tolist()


@given(
    st.lists(arrays(np.uint8, st.integers(1, 300)), min_size=1, max_size=3),
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])), min_size=1
    ),
)
def test_quantiles_of_parts__as_numpy_percentile_of_each_part(
    parts: list[np.ndarray], asked: list[tuple[int, float]]
) -> None:
    asked = [(part % len(parts), q) for part, q in asked]
    counts = np.concatenate([np.bincount(p, minlength=256) for p in parts]).cumsum()
    expected = [float(np.percentile(parts[part], 100 * q)) for part, q in asked]

    assert ocr._quantiles_of_parts(counts, tuple(asked)) == expected


def _reference_bib_score(gray: np.ndarray, labels: np.ndarray, line: np.ndarray) -> float | None:
    """_bib_score with the background and the digits copied out and np.percentile."""
    margin = max(2, round(ocr.SIDE_MARGIN * float(np.median(line[:, 3]))))
    y0, y1 = int(line[:, 1].min()), int((line[:, 1] + line[:, 3]).max())
    x0, x1 = int(line[:, 0].min()) - margin, int((line[:, 0] + line[:, 2]).max()) + margin
    patch, patch_labels = gray[y0:y1, max(0, x0) : x1], labels[y0:y1, max(0, x0) : x1]
    digits = np.isin(patch_labels, line[:, 4].astype(int)).astype(np.uint8)
    background = patch[cv2.dilate(digits, np.ones((3, 3), np.uint8)) == 0]
    if background.size == 0:
        return None
    q1, median, q3 = np.percentile(background, [25, 50, 75])
    contrast = abs(median - np.median(patch[digits > 0]))
    wanted = ocr.LOOSE
    if contrast < wanted.min_contrast or (q3 - q1) > wanted.max_spread * contrast:
        return None
    return float(contrast / (q3 - q1 + 1.0))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([1 / 48, 1 / 24, 1 / 8]))
def test_bib_score__as_the_background_and_digits_copied_out(seed: int, window: float) -> None:
    # Rendered bibs on a scene with blobs: lines of digits, of blobs, at the image's edge.
    image, _ = _photo([Bib("4821", (400, 300)), Bib("37", (800, 420), YELLOW, DARK_BLUE)], seed)
    gray = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (600, 400))
    scored = 0
    for ink in ocr._binarise(gray, round(400 * window) | 1).values():
        labels, rows = ocr._digit_components(ink)
        for line in ocr._group_lines(rows):
            expected = _reference_bib_score(gray, labels, line)

            assert ocr._bib_score(gray, labels, line, ocr.LOOSE) == expected
            scored += expected is not None
    assert scored


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.integers(2, 12))
def test_scaled_for_search__a_shrink_by_2_5_as_opencvs_inter_area(
    seed: int, fifths_high: int, fifths_wide: int
) -> None:
    # Noise and flat patches: every pixel value and every rounding case comes up.
    rng = np.random.default_rng(seed)
    gray = rng.integers(0, 256, (10 * fifths_high, 10 * fifths_wide), np.uint8)
    gray[: gray.shape[0] // 2] = rng.integers(0, 256)
    expected = cv2.resize(gray, (4 * fifths_wide, 4 * fifths_high), interpolation=cv2.INTER_AREA)

    assert np.array_equal(ocr._scaled_for_search(gray, 0.4), expected)
    assert np.array_equal(ocr._shrink_by_5_2(gray), expected)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 60), st.integers(1, 60))),
    st.integers(1, 40).map(lambda k: 2 * k + 1),
)
def test_binarise__as_opencvs_adaptive_threshold(gray: np.ndarray, block: int) -> None:
    method, offset = cv2.ADAPTIVE_THRESH_MEAN_C, ocr.ADAPTIVE_OFFSET
    dark = cv2.adaptiveThreshold(gray, 255, method, cv2.THRESH_BINARY_INV, block, offset)
    light = cv2.adaptiveThreshold(gray, 255, method, cv2.THRESH_BINARY, block, -offset)

    binaries = ocr._binarise(gray, block)

    assert np.array_equal(binaries[True], dark)
    assert np.array_equal(binaries[False], light)


def _tilted_line(angle: float, height: int = 20) -> tuple[np.ndarray, ocr._Line]:
    """Four dark digit-sized blocks on white along a line tilted by angle (degrees, y down)."""
    image = np.full((200, 300), 230, np.uint8)
    slope = np.tan(np.radians(angle))
    components = []
    for k in range(4):
        x = 80 + 30 * k
        y = 90 + (x - 80) * slope
        cv2.rectangle(image, (x, int(y)), (x + 12, int(y) + height), 20, -1)
        components.append((x, int(y), 13, height + 1))
    return image, ocr._Line(np.array(components, np.float64), True, 1.0)


def _ink_rise(crop: np.ndarray) -> float:
    """Rows the ink's centre climbs from the crop's left third to its right third."""
    rows = np.arange(crop.shape[0])[:, None]
    ink = crop < 128
    third = crop.shape[1] // 3
    left, right = ink[:, :third], ink[:, -third:]
    return float((rows * left).sum() / left.sum() - (rows * right).sum() / right.sum())


@pytest.mark.parametrize("angle", [-20.0, 20.0])
def test_cut__a_line_tilted_beyond_straighten_deg_is_cut_level(angle: float) -> None:
    image, line = _tilted_line(angle)
    box = ocr._crop_box(line, 1.0, image.shape, (1.0, 1.0, 0.15))

    level = ocr._cut(image, box, line, 1.0)

    as_is = image[box[1] : box[3], box[0] : box[2]]
    assert abs(_ink_rise(as_is)) > 15
    assert abs(_ink_rise(level)) < 2
    assert level.shape[0] < 1.8 * 21  # the line's own height with room, not its tilted box's


def test_cut__a_line_tilted_less_is_cut_as_it_is() -> None:
    image, line = _tilted_line(ocr.STRAIGHTEN_DEG / 2)
    box = ocr._crop_box(line, 1.0, image.shape, (1.0, 1.0, 0.15))

    assert np.array_equal(ocr._cut(image, box, line, 1.0), image[box[1] : box[3], box[0] : box[2]])


def test_read_bibs__a_bib_tilted_25_degrees_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    image, _ = _photo(
        [Bib("3081", (600, 450), font=cv2.FONT_HERSHEY_DUPLEX, digit_height=30, angle=25)]
    )

    assert [r.bib for r in _confident(read_bibs(image))] == ["3081"]
    monkeypatch.setattr(ocr, "STRAIGHTEN_DEG", 90.0)  # read as cut: a digit misread, doubtful
    assert [r.bib for r in _confident(read_bibs(image))] == []
