"""Tests of the bib rules and the start list as a dictionary (transforms.bibs), of the OCR
engine choice and PP-OCR's recogniser, and of AnalysePhotos on real dev photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from hypothesis import given
from hypothesis import strategies as st

from bench.common import DATA
from pipeline.cli import main
from tests.test_ocr import SINGLE_BIBS, _photo
from transforms import ocr, ppocr
from transforms.bibs import SNAP_FACTOR, StartList, listed_bib, parse_bib, with_lettered
from transforms.ocr import read_bibs
from transforms.ppocr import LineRead, recogniser
from transforms.tesseract import engine_name


@pytest.mark.parametrize(
    ("text", "bib"),
    [
        ("3638", "3638"),
        ("48", "48"),
        ("T2182", "2182"),  # a wave or distance prefix
        ("CT4018", "4018"),  # a prefix of two letters
        ("SO495", "0495"),  # a prefixed bib's leading 0 read as the letter O
        ("S0374", "0374"),
        ("1404.", "1404"),  # scraps of the bib's edge
        ("3708=", "3708"),
        ("#58", "58"),
        (" 755 ", "755"),
        ("\uff14\uff10\uff16\uff13", "4063"),  # full-width digits, as widely spaced ones read
        ("T\uff14\uff10\uff16", "406"),
    ],
)
def test_parse_bib__numbers_of_two_to_five_digits_are_bibs(text: str, bib: str) -> None:
    assert parse_bib(text) == bib


@pytest.mark.parametrize(
    "text",
    [
        "7",
        "123456",
        "1:49:58",
        "49:",
        "auto",
        "R4",
        "36 38",
        "ABC123",
        "SOB56",
        "1958km",
        "",
        "\u0663\u0664\u0665",  # Arabic-Indic digits: no bib of this model's scripts
    ],
)
def test_parse_bib__other_text_is_no_bib(text: str) -> None:
    assert parse_bib(text) is None


def test_start_list__listed_bib_keeps_its_confidence() -> None:
    assert StartList(["3638", "3719"]).match("3638", 0.9) == ("3638", 0.9)


@pytest.mark.parametrize(
    ("read", "listed"),
    [("3639", "3638"), ("13638", "3638"), ("638", "3638")],
    ids=["substitution", "insertion", "deletion"],
)
def test_start_list__one_edit_away_maps_to_the_listed_bib_below_review(
    read: str, listed: str
) -> None:
    bib, confidence = StartList([listed, "2500"]).match(read, 1.0)

    assert bib == listed
    assert confidence == SNAP_FACTOR < 0.75


def test_start_list__ambiguous_or_far_reads_are_dropped() -> None:
    start_list = StartList(["3638", "3688", "2500"])

    assert start_list.match("3678", 1.0) is None  # one edit from two runners
    assert start_list.match("1958", 1.0) is None  # far from every runner


@pytest.mark.parametrize(
    ("read", "unprefixed", "expected"),
    [
        ("12", 0.0, ("12", 0.9 * SNAP_FACTOR)),  # a sure read of 12 may be A12's
        ("812", 0.9, ("12", 0.9 * SNAP_FACTOR)),  # A read as 8, the rest as sure
        ("13", 0.0, ("12", 0.9 * SNAP_FACTOR)),  # snapped: once for review, not twice
        ("40", 0.0, ("40", 0.9)),  # no 40 after a letter: it stands
    ],
)
def test_start_list__a_number_listed_bare_and_after_a_letter_goes_to_review(
    read: str, unprefixed: float, expected: tuple[str, float]
) -> None:
    # Runner 12 and runner A12 (a half-marathon's prefix, say): the read carries no letter.
    start_list = StartList(["12", "A12", "40", "0495", "SO495"])
    assert start_list.match(read, 0.9, unprefixed) == pytest.approx(expected)
    assert start_list.match("0495", 0.9) == pytest.approx(("0495", 0.9 * SNAP_FACTOR))


def test_with_lettered__names_the_bibs_a_read_cannot_tell_apart() -> None:
    listed = frozenset(["12", "A12", "B12", "AB40", "C7", "77"])
    assert with_lettered(["12", "40", "77"], listed) == ["12", "A12", "B12", "40", "77"]


def test_start_list__empty_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one bib"):
        StartList([])


@pytest.mark.parametrize(
    ("setting", "engine"),
    [("ppocr", "ppocr"), ("tesserocr", "tesserocr"), ("pytesseract", "pytesseract")],
)
def test_engine_name__follows_the_setting(
    setting: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RACELENS_OCR_ENGINE", setting)
    assert engine_name() == engine


def test_engine_name__auto_is_ppocr_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RACELENS_OCR_ENGINE", raising=False)
    assert engine_name() == "ppocr"


def test_engine_name__unknown_engine_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACELENS_OCR_ENGINE", "easyocr")
    with pytest.raises(ValueError, match="unknown OCR engine 'easyocr'"):
        engine_name()


def _line(text: str, height: int = 60) -> np.ndarray:
    """Dark digits on a light grey strip, as a bib line looks once cut out."""
    scale = height / 30
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 4)
    strip = np.full((h + 30, w + 30), 230, np.uint8)
    cv2.putText(strip, text, (15, h + 15), cv2.FONT_HERSHEY_SIMPLEX, scale, 20, 4, cv2.LINE_AA)
    return strip


def test_recogniser__reads_each_line_in_order_with_confidences() -> None:
    texts = ["3638", "47", "RUN", "90215"]

    reads = recogniser().read_lines([_line(t, 40 + 10 * i) for i, t in enumerate(texts)])

    assert [r.text for r in reads] == texts
    for r in reads:
        assert len(r.char_confidences) == len(r.text)
        assert 0.9 <= r.confidence <= 1.0


def test_recogniser__a_separator_half_seen_between_characters_is_kept() -> None:
    model = recogniser()
    chars = model._characters
    one, three, colon = chars.index("1"), chars.index("3"), chars.index(":")
    steps = np.zeros((5, len(chars)), np.float32)
    steps[:, 0] = 1.0  # blank
    steps[1, [0, one]] = 0.1, 0.9
    steps[2, [0, colon]] = 0.7, 0.3  # a colon the decoding does not keep
    steps[3, [0, three]] = 0.05, 0.95

    read = model._decode(steps)

    assert read.text == "13"
    assert read.separators == (pytest.approx(0.3),)


def test_recogniser__no_crops_no_reads() -> None:
    assert recogniser().read_lines([]) == []


@pytest.mark.parametrize(
    ("listed", "expected"),
    [(["427", "3081"], [("427", 0.75)]), (["428", "3081"], [("428", 0.0)]), (["3081"], [])],
    ids=["listed", "one-edit-away", "not-listed"],
)
def test_bibs_cli__start_list_is_the_dictionary(
    listed: list[str],
    expected: list[tuple[str, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keep_logging: None,
) -> None:
    """`racelens bibs --start-list`: listed reads kept, near misses mapped below review."""
    image, _ = _photo([SINGLE_BIBS[0]])  # bib 427
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), image)
    start_list = tmp_path / "startlist.csv"
    start_list.write_text("bib,name\n" + "".join(f"{b},Runner {b}\n" for b in listed))

    assert main(["bibs", str(photo), "--start-list", str(start_list)]) == 0

    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    confident = [(r["bib"], r["confidence"] >= 0.75) for r in line["bibs"]]
    assert [b for b, _ in confident] == [b for b, _ in expected]
    for (_, is_confident), (_, floor) in zip(confident, expected, strict=True):
        assert is_confident == (floor >= 0.75)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("photos", "photos: not a photo file (a folder: give its photos, e.g. "),
        ("missing.jpg", "missing.jpg: cannot read: No such file or directory"),
    ],
)
def test_bibs_cli__a_folder_or_a_missing_file_is_a_one_line_error(
    given: str,
    error: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keep_logging: None,
) -> None:
    """An official gives `racelens bibs` a folder of photos or mistypes a name: exit 2 with
    one line naming it, before any photo is read (it was a traceback after the first lines)."""
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), _photo([SINGLE_BIBS[0]])[0])

    assert main(["bibs", str(photo), str(tmp_path / given)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"racelens: error: {tmp_path / error}")
    assert len(err.splitlines()) == 1


# --- Real photos through the pipeline's analysis ---------------------------------------------

REAL_PHOTOS = DATA / "bibs-dev"
# Photos of the held-out half (bench/bib_eval.py --split holdout) with one clear bib each.
HANDFUL = ["set1_59.JPG", "set1_66.JPG", "set1_67.JPG", "set1_73.JPG", "set1_78.JPG"]


def test_analyse_photos__reads_real_race_photos(tmp_path: Path) -> None:
    """AnalysePhotos (decode, ReadBibs) reads the bibs of real photos confidently."""
    from transforms.photos import AnalysePhotos

    if not (REAL_PHOTOS / "labels.csv").is_file():
        pytest.skip(f"real dev photos not found at {REAL_PHOTOS} (set RACELENS_DATA)")
    with open(REAL_PHOTOS / "labels.csv", newline="") as f:
        truth = {r["file"]: r["bibs"] for r in csv.DictReader(f) if r["file"] in HANDFUL}
    images = tmp_path / "images" / "cp1"
    images.mkdir(parents=True)
    for name in HANDFUL:  # copied into the test's own folder, never into the repository
        shutil.copy(REAL_PHOTOS / name, images / name)

    def check(photos: list) -> None:
        read = {
            Path(p.path).name: {r.bib for r in p.facts.bibs if r.confidence >= 0.75} for p in photos
        }
        hits = sum(truth[name] in bibs for name, bibs in read.items())
        wrong = sum(len(bibs - {truth[name]}) for name, bibs in read.items())
        assert sorted(read) == sorted(HANDFUL)
        assert hits >= 4 and wrong == 0, read

    with TestPipeline() as p:
        photos = (
            p
            | beam.Create(sorted(str(images / name) for name in HANDFUL))
            | AnalysePhotos(str(tmp_path / "facts"), str(tmp_path / "images"))
        )
        assert_that(photos, check)


def test_recogniser__extents_place_each_character_where_it_was_read() -> None:
    model = recogniser()
    chars = model._characters
    steps = np.zeros((10, len(chars)), np.float32)
    steps[:, 0] = 1.0  # blank
    steps[[2, 3], 0], steps[[2, 3], chars.index("4")] = 0.0, 1.0  # a "4" over two steps
    steps[7, 0], steps[7, chars.index("2")] = 0.0, 1.0

    read = model._decode(steps)

    assert read.text == "42"
    assert read.extents == ((0.2, 0.4), (0.7, 0.8))


def _spaced_digits(text: str, digit_height: int = 40, gap: float = 0.15) -> tuple:
    """Dark digits drawn one by one on light paper; the image and each digit's x, y, w, h."""
    image = np.full((3 * digit_height, 900), 235, np.uint8)
    x, boxes = 3 * digit_height, []
    for ch in text:
        (w, h), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, digit_height / 22, 5)
        cv2.putText(
            image, ch, (x, 2 * digit_height), cv2.FONT_HERSHEY_SIMPLEX, digit_height / 22, 20, 5
        )
        boxes.append((x, 2 * digit_height - h, w, h))
        x += w + round(gap * digit_height)
    return image, np.array(boxes, np.float64)


@pytest.mark.parametrize(("rounds", "expected"), [(ocr.FURTHER_ROUNDS, "2151"), (0, "215")])
def test_ppocr_reads__a_number_read_against_its_crop_side_is_followed_further(
    monkeypatch: pytest.MonkeyPatch, rounds: int, expected: str
) -> None:
    # The line finder found "21" of "2151": the crop's room shows "5", the last "1" is cut.
    image, digits = _spaced_digits("2151")
    line = ocr._Line(digits[:2], True, 1.0)
    monkeypatch.setattr(ocr, "FURTHER_ROUNDS", rounds)

    reads = ocr._ppocr_reads(image, [line], 1.0)

    assert [r.bib for r in reads] == [expected]


def _read_at(text: str, start: float, end: float) -> LineRead:
    """A read whose characters lie evenly between start and end (fractions of the crop)."""
    edges = np.linspace(start, end, len(text) + 1)
    return LineRead(text, (0.99,) * len(text), (), tuple(zip(edges[:-1], edges[1:], strict=True)))


@pytest.mark.parametrize(
    ("read", "box", "expected"),
    [
        (_read_at("406", 0.25, 0.75), (100, 0, 200, 20), (False, False)),  # room both sides
        (_read_at("406", 0.02, 0.98), (100, 0, 200, 20), (True, True)),  # against both
        (_read_at("T406", 0.02, 0.98), (100, 0, 200, 20), (False, True)),  # a prefix before
        (_read_at("406", 0.25, 0.98), (100, 0, 200, 20), (False, True)),
        (_read_at("406", 0.25, 0.98), (100, 0, 300, 20), (False, False)),  # the photo ends
        (_read_at("T406", 0.02, 0.75), (0, 0, 200, 20), (False, False)),  # the photo ends
        (_read_at("Wai", 0.02, 0.98), (100, 0, 200, 20), (False, False)),  # no number
        (LineRead("406", (0.99,) * 3), (100, 0, 200, 20), (False, False)),  # where unknown
    ],
)
def test_short_sides__only_a_number_against_a_side_the_photo_goes_on_beyond(
    read: LineRead, box: tuple[int, int, int, int], expected: tuple[bool, bool]
) -> None:
    assert ocr._short_sides(read, box, height=10.0, width=300) == expected


CROPS = DATA / "bib-crops-dev"


@pytest.mark.parametrize(
    ("name", "bib"),
    # Lines the finder found in part: "S084" of S0847, "T401" and "012" of T4012, "711" of S0711.
    [("00006.jpg", "0847"), ("00011.jpg", "4012"), ("00105.jpg", "0711")],
)
def test_read_bibs__real_bibs_cut_by_the_line_crop_are_read_whole(
    monkeypatch: pytest.MonkeyPatch, name: str, bib: str
) -> None:
    if not (CROPS / name).is_file():
        pytest.skip(f"real bib crops not found at {CROPS} (set RACELENS_DATA)")
    # Following further is tested on crops as cut: S0711 tilts by 15 degrees, and turned
    # level (ocr._cut) its crop reads the bib's upright edge as a fifth digit, 7115 at 0.54.
    monkeypatch.setattr(ocr, "STRAIGHTEN_DEG", 90.0)

    reads = read_bibs(cv2.imread(str(CROPS / name), cv2.IMREAD_COLOR))

    assert [r.bib for r in reads][:1] == [bib], reads


@pytest.mark.parametrize(
    ("grow", "slope", "expected"),
    [
        ((0.0, 20.0), 0.0, (100, 50, 220, 70)),  # level: rows kept
        ((0.0, 20.0), -0.25, (100, 45, 220, 70)),  # rising rightwards: room above
        ((20.0, 0.0), -0.25, (80, 50, 200, 75)),  # and leftwards it falls: room below
        ((20.0, 20.0), 0.25, (80, 45, 220, 75)),
        ((200.0, 200.0), 0.0, (0, 50, 300, 70)),  # clipped to the photo
    ],
)
def test_wider_box__grows_along_the_line_tilt(
    grow: tuple[float, float], slope: float, expected: tuple[int, int, int, int]
) -> None:
    assert ocr._wider_box((100, 50, 200, 70), grow, slope, (100, 300)) == expected


def _steps(chars: list[str], columns: list[dict[str, float]]) -> np.ndarray:
    """Recogniser output of one step per column (its classes' probabilities), blanks between."""
    steps = np.zeros((2 * len(columns) + 1, len(chars)), np.float32)
    steps[:, 0] = 1.0  # blank
    for i, column in enumerate(columns):
        steps[2 * i + 1, 0] = 0.0
        for char, p in column.items():
            steps[2 * i + 1, chars.index(char)] = p
    return steps


@given(st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_best_classes__as_argmax_of_softmax_steps(seed: int, steps: int) -> None:
    # The model's classes; blanks from unsure to sure, on either side of BLANK_SURE.
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (steps, 6625))
    logits[:, 0] += rng.choice([0.0, 24.0], steps) + rng.uniform(10.0, 17.0, steps)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    assert np.array_equal(ppocr._best_classes(probabilities), probabilities.argmax(axis=1))


def test_best_classes__a_tie_with_the_blank_is_the_blank() -> None:
    probabilities = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.52, 0.0, 0.48]], np.float32)

    assert ppocr._best_classes(probabilities).tolist() == [0, 1, 0]


def test_recogniser__a_zero_half_read_as_the_letter_o_keeps_both_readings() -> None:
    model = recogniser()
    columns = [{"S": 1.0}, {"0": 0.6, "O": 0.3, "o": 0.05, "8": 0.05}, {"4": 0.9, "A": 0.1}]

    read = model._decode(_steps(model._characters, columns))

    assert read.text == "S04"
    assert read.char_confidences == pytest.approx((1.0, 0.6, 0.9))
    assert read.zeros == pytest.approx((0.0, 0.95, 0.0))
    assert read.letters == pytest.approx((1.0, 0.0, 0.1))  # O is a 0's shape, no letter


def test_recogniser__a_prefix_letter_read_as_a_digit_keeps_its_letter_evidence() -> None:
    model = recogniser()
    columns = [{"8": 0.7, "S": 0.25, "B": 0.05}, {"0": 1.0}, {"4": 1.0}, {"2": 1.0}]

    read = model._decode(_steps(model._characters, columns))

    assert read.text == "8042"
    assert read.letters[0] == pytest.approx(0.3)
    assert read.letters[1:] == (0.0, 0.0, 0.0)


def _read(text: str, confidences: tuple[float, ...], **per_char: tuple[float, ...]) -> LineRead:
    """A read with per-character letter and 0 probabilities (none unless given)."""
    none = (0.0,) * len(text)
    return LineRead(
        text, confidences, (), (), per_char.get("letters", none), per_char.get("zeros", none)
    )


SURE_REST = (0.7, 0.9, 0.9, 0.9, 0.9)  # a weak first digit, sure others
LETTER_FIRST = (0.2, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (_read("80424", SURE_REST, letters=LETTER_FIRST), ("80424", 0.7, 0.9)),  # 8 may be S
        (_read("80424", SURE_REST, letters=(0.001, 0, 0, 0, 0)), ("80424", 0.7, 0.0)),  # sure 8
        (_read("L80424", (0.5, *SURE_REST), letters=(0.9, *LETTER_FIRST)), ("80424", 0.7, 0.9)),
        (_read("80", (0.7, 0.9), letters=(0.2, 0.0)), ("80", 0.7, 0.0)),  # 1 digit is no bib
        (LineRead("80424", SURE_REST), ("80424", 0.7, 0.0)),  # where unknown
        # A 0 read as much as O: sure after a prefix letter, read or maybe read as a digit.
        (_read("S0424", (1, 0.6, 1, 1, 1), zeros=(0, 0.95, 0, 0, 0)), ("0424", 0.95, 0.0)),
        (_read("SO424", (1, 0.6, 1, 1, 1), zeros=(0, 0.95, 0, 0, 0)), ("0424", 0.95, 0.0)),
        (_read("2000", (1, 1, 1, 0.6), zeros=(0, 1, 1, 0.95)), ("2000", 0.6, 0.0)),  # no prefix
        (
            _read("80424", (1, 0.6, 1, 1, 1), letters=LETTER_FIRST, zeros=(0, 0.95, 0, 0, 0)),
            ("80424", 0.6, 0.95),
        ),
    ],
)
def test_bib_of__a_first_digit_that_may_be_a_letter_gives_the_rest_its_confidence(
    read: LineRead, expected: tuple[str, float, float]
) -> None:
    assert ocr._bib_of(read) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        (["0424", "3081"], ("0424", 0.9)),  # the rest listed: the prefix letter's bib
        (["80424", "0424"], ("80424", 0.96)),  # the whole listed: it stands
        (["80425", "3081"], ("80425", 0.96 * SNAP_FACTOR)),  # one edit from the whole
        (["0424", "10000"], ("0424", 0.96 * SNAP_FACTOR)),  # a bib as long: snapped
        (["3081"], None),
    ],
)
def test_start_list__a_first_digit_that_may_be_a_prefix_letter(
    listed: list[str], expected: tuple[str, float] | None
) -> None:
    assert StartList(listed).match("80424", 0.96, unprefixed=0.9) == expected


@given(
    bib=st.text("0123456789", min_size=2, max_size=5),
    listed=st.sets(st.text("0123456789", min_size=1, max_size=5), min_size=1, max_size=30),
    confidence=st.floats(0.0, 1.0),
    unprefixed=st.floats(0.0, 1.0),
)
def test_listed_bib__prefix_evidence_only_adds_the_bib_without_its_first_digit(
    bib: str, listed: set[str], confidence: float, unprefixed: float
) -> None:
    known = frozenset(listed)
    without = listed_bib(bib, confidence, known)
    with_evidence = listed_bib(bib, confidence, known, unprefixed)

    too_long = len(bib) > max(len(b) for b in known)
    if bib in known or not unprefixed or not too_long or bib[1:] not in known:
        assert with_evidence == without  # nothing else changes
    else:
        assert with_evidence == (bib[1:], unprefixed)
    assert with_evidence is None or with_evidence[0] in known


class _Reader:
    """A stand-in recogniser: each crop read as the text given for its line, counted."""

    def __init__(self, texts: dict[int, tuple[str, float]]) -> None:
        self.texts = texts  # by the line's left edge
        self.read: list[int] = []

    def read_lines(self, crops: list[np.ndarray]) -> list[LineRead]:
        reads = []
        for crop in crops:
            left = int(crop[0, 0])  # _cut_as_left's crop
            self.read.append(left)
            text, confidence = self.texts.get(left, ("", 0.0))
            reads.append(LineRead(text, (confidence,) * len(text)))
        return reads


def _cut_as_left(
    gray: np.ndarray, box: tuple[int, ...], line: ocr._Line, scale: float
) -> np.ndarray:
    """A crop that tells the stand-in reader which line it is: its left edge."""
    return np.full((1, 1), int(line.components[0, 0]))


def _reading(monkeypatch: pytest.MonkeyPatch, texts: dict[int, tuple[str, float]]) -> _Reader:
    reader = _Reader(texts)
    monkeypatch.setattr(ocr, "recogniser", lambda: reader)
    monkeypatch.setattr(ocr, "_cut", _cut_as_left)
    return reader


def _lines_at(lefts: list[int]) -> list[ocr._Line]:
    """A line of two characters 10 px high at each left edge, 19 px wide."""
    return [
        ocr._Line(np.array([[x, 10, 9, 10], [x + 10, 10, 9, 10]], np.float64), True, 1.0)
        for x in lefts
    ]


IMAGE = np.zeros((40, 800), np.uint8)


def test_ppocr_reads__a_line_on_a_bib_already_read_surely_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The crop of the line at 105 (10 px of room each side) holds the line at 100; 200's not.
    reader = _reading(monkeypatch, {100: ("3638", 0.99), 105: ("638", 0.995), 200: ("47", 0.99)})

    reads = ocr._ppocr_reads(IMAGE, _lines_at([100, 105, 200]), 1.0)

    assert [r.bib for r in reads] == ["3638", "47"]
    assert reader.read == [100, 200]


def test_ppocr_reads__a_line_on_a_weak_read_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = _reading(monkeypatch, {100: ("3638", ocr.SURELY_READ - 0.01), 105: ("638", 0.99)})

    ocr._ppocr_reads(IMAGE, _lines_at([100, 105]), 1.0)

    assert reader.read[:2] == [100, 105]


def test_line_reads__the_rest_is_read_up_to_its_first_sure_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lefts = [10 + 50 * i for i in range(14)]
    sure = lefts[ocr.PP_FIRST_LINES + 2]
    reader = _reading(monkeypatch, {lefts[0]: ("12", 0.3), sure: ("512", 0.99)})
    monkeypatch.setattr(ocr, "_detect", lambda gray, wanted: (_lines_at(lefts), 1.0))

    reads, _ = ocr._line_reads(IMAGE, "ppocr")

    assert [r.bib for r in reads] == ["12", "512"]
    assert [x for x in reader.read if x != lefts[0]] == lefts[1 : ocr.PP_FIRST_LINES + 3]


@pytest.mark.parametrize(
    ("faces", "first"),
    [((), ocr.PP_FIRST_LINES), (((0, 30, 5, 40),), ocr.PP_FIRST_LINES_BEFORE_TORSO)],
)
def test_line_reads__with_faces_fewer_lines_are_read_first(
    monkeypatch: pytest.MonkeyPatch, faces: tuple[tuple[int, ...], ...], first: int
) -> None:
    # The torso pass follows where faces were found; the face here lies on no line.
    lefts = [10 + 50 * i for i in range(14)]
    reader = _reading(monkeypatch, {lefts[0]: ("512", 0.99)})
    monkeypatch.setattr(ocr, "_detect", lambda gray, wanted: (_lines_at(lefts), 1.0))

    reads, _ = ocr._line_reads(IMAGE, "ppocr", faces)

    assert [r.bib for r in reads] == ["512"]
    assert reader.read == lefts[:first]
