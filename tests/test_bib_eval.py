"""The bib benchmark's bookkeeping: label omissions and the reliability table."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.bib_eval import (
    MISS_CAUSES,
    OMISSIONS,
    Opinions,
    Reliability,
    label_omissions,
    miss_cause,
    reads_line,
    resized,
    torso_faces,
)
from transforms import ocr
from transforms.ocr import BibRead

BOX = (0, 0, 10, 10)


def test_label_omissions__each_has_a_box_and_evidence_and_is_not_labelled() -> None:
    with open(OMISSIONS, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        assert row["bib"].isdigit() and len(row["box"].split()) == 4 and row["evidence"]


def test_label_omissions__only_the_named_folder() -> None:
    omitted = label_omissions(Path("/anywhere/bibs-dev"))
    assert omitted["set1_83.JPG"] == Counter({"847": 1})
    assert label_omissions(Path("/anywhere/bib-crops-dev")) == {}


def test_reliability__reads_fall_in_their_bins_and_count_right_ones() -> None:
    table = Reliability()
    reads = [BibRead("1", 0.2, BOX), BibRead("2", 0.75, BOX), BibRead("3", 1.0, BOX)]
    table.add(Counter({"2": 1, "3": 1}), reads)
    assert table.reads == Counter({0: 1, 3: 1, 5: 1})
    assert table.right == Counter({3: 1, 5: 1})
    assert table.lines()[0] == (
        "reads >= 0.75: precision 1.000 (2 reads); reads < 0.75: precision 0.000 (1 reads)"
    )


def test_opinions__tesseract_verdicts_by_confidence_and_truth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [object(), object(), object()]
    pp = [
        ocr._Read("12", 0.99, lines[0]),
        ocr._Read("34", 0.8, lines[1]),
        ocr._Read("56", 0.3, lines[2]),
    ]
    said = [ocr._Read("12", 0.9, lines[0]), ocr._Read("39", 0.9, lines[1])]
    monkeypatch.setattr(ocr, "_line_reads", lambda gray, engine: (pp, 1.0))
    monkeypatch.setattr(ocr, "_tesseract_reads", lambda gray, lines, scale: said)
    opinions = Opinions()

    opinions.add(np.zeros((8, 8), np.uint8), Counter({"12": 1, "56": 1}))

    assert opinions.counts == Counter(
        {(2, True, "agrees"): 1, (1, False, "differs"): 1, (0, True, "nothing"): 1}
    )


def test_torso_faces__labelled_faces_as_boxes_by_file(tmp_path: Path) -> None:
    (tmp_path / "boxes.csv").write_text(
        "file,bib,bib_minRow,bib_maxRow,bib_minCol,bib_maxCol,"
        "face_minRow,face_maxRow,face_minCol,face_maxCol\n"
        "a.JPG,12,50,60,10,30,10.4,30,12,28.6\n"
    )
    faces = torso_faces(tmp_path, "labelled")

    assert faces("a.JPG", np.zeros((1, 1, 3), np.uint8)) == [(12, 10, 29, 30)]
    assert faces("b.JPG", np.zeros((1, 1, 3), np.uint8)) == []


@pytest.mark.parametrize(("factor", "shape"), [(0.5, (50, 80)), (1.25, (125, 200))])
def test_resized__by_the_factor_shrunk_without_aliasing(
    factor: float, shape: tuple[int, int]
) -> None:
    stripes = np.zeros((100, 160), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: aliasing would leave them black and white

    out = resized(stripes, factor)

    assert out.shape == shape
    if factor < 1:
        assert np.all(np.abs(out.astype(int) - 128) <= 1)


@pytest.mark.parametrize(
    ("reads", "matched", "cause"),
    [
        ([], [], "nothing read"),
        ([("0424", 0.6)], [("0424", 0.6)], "right read, below the threshold"),
        (
            [("80424", 0.96)],
            [("0424", 0.67)],
            "prefix letter read as a digit, mapped below the threshold",
        ),
        ([("80424", 0.96)], [], "prefix letter read as a digit, not mapped"),
        ([("0425", 0.9)], [("0424", 0.63)], "other near miss, mapped below the threshold"),
        ([("424", 0.98)], [], "digits missed"),
        ([("0425", 0.9)], [], "a digit misread"),
        ([("77", 0.9)], [], "another number"),
    ],
)
def test_miss_cause__why_a_labelled_bib_was_not_read_surely(
    reads: list[tuple[str, float]], matched: list[tuple[str, float]], cause: str
) -> None:
    def as_reads(pairs: list[tuple[str, float]]) -> list[BibRead]:
        return [BibRead(bib, confidence, BOX) for bib, confidence in pairs]

    assert miss_cause("0424", as_reads(reads), as_reads(matched)) == cause
    assert cause in MISS_CAUSES


def test_reads_line__name_then_each_read_with_its_box() -> None:
    reads = [BibRead("1234", 0.9876543, (1, 2, 30, 40), 0.5), BibRead("56", 0.25, BOX)]
    assert reads_line("a.jpg", reads) == (
        "a.jpg\t1234 0.987654 1 2 30 40 0.500000\t56 0.250000 0 0 10 10 0.000000"
    )
    assert reads_line("b.jpg", []) == "b.jpg"


def test_bib_ab__this_tree_against_itself_reads_alike_and_times_both(tmp_path: Path) -> None:
    from bench.bib_ab import REPO, compare, load_other
    from bench.common import spread

    for k, number in enumerate(["4821", "37"]):
        photo = np.full((480, 640, 3), 235, np.uint8)
        cv2.putText(photo, number, (200, 260), cv2.FONT_HERSHEY_SIMPLEX, 3, (20, 20, 20), 8)
        cv2.imwrite(str(tmp_path / f"photo{k}.jpg"), photo)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    paths = spread(sorted(str(p) for p in tmp_path.iterdir()), 3)

    costs, alike, decoded = compare(load_other(REPO), paths)

    assert (alike, decoded) == (2, 2)
    assert all(old > 0 and new > 0 for old, new in costs.values())


def test_bib_ab__spread_takes_at_most_count_evenly() -> None:
    from bench.common import spread

    assert spread([str(k) for k in range(10)], 3) == ["0", "3", "6"]
    assert spread(["a", "b"], 40) == ["a", "b"]
