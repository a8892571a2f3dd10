"""The bib benchmark's bookkeeping: label omissions and the reliability table."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from bench.bib_eval import OMISSIONS, Reliability, label_omissions
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
