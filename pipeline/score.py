"""Scoring a run against a demo race's truth.csv: the numbers the Foundation must reach.

A true passage is found when passages.parquet has a row for the same bib and
station within `tolerance_s`. A row that matches no true passage is false; a
second row for the same bib and station is a duplicate. Every input file
must appear exactly once in images.parquet.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime

import pyarrow.parquet as pq

from transforms.write import IMAGES_FILE, PASSAGES_FILE


@dataclass(frozen=True)
class Score:
    true_passages: int
    visible_passages: int
    found: int
    found_visible: int
    false_passages: int
    false_confirmed: int
    duplicate_rows: int
    passages_needing_review: int
    input_files: int
    image_rows: int
    files_missing: int
    files_repeated: int

    @property
    def recall(self) -> float:
        return self.found / self.true_passages if self.true_passages else 1.0

    @property
    def recall_visible(self) -> float:
        return self.found_visible / self.visible_passages if self.visible_passages else 1.0

    def meets_foundation(self) -> bool:
        """>= 98 % found within the tolerance, no false passage, no duplicate, no file lost."""
        return (
            self.recall >= 0.98
            and self.false_passages == 0
            and self.duplicate_rows == 0
            and self.files_missing == 0
            and self.files_repeated == 0
        )

    def report(self) -> str:
        lines = [f"{k}: {v}" for k, v in asdict(self).items()]
        lines.append(f"recall: {self.recall:.4f}")
        lines.append(f"recall_visible: {self.recall_visible:.4f}")
        lines.append(f"meets_foundation: {self.meets_foundation()}")
        return "\n".join(lines)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_truth(path: str) -> dict[tuple[str, str], tuple[datetime, bool]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {
            (r["bib"], r["station_id"]): (_utc(r["passed_at"]), r.get("visible", "true") == "true")
            for r in csv.DictReader(f)
        }


def input_files(images: str) -> list[str]:
    return [
        os.path.join(root, name)
        for root, _, names in os.walk(os.path.abspath(images))
        for name in names
    ]


def score_run(out_dir: str, truth_csv: str, images: str, tolerance_s: float = 2.0) -> Score:
    truth = read_truth(truth_csv)
    passages = pq.read_table(os.path.join(out_dir, PASSAGES_FILE)).to_pylist()
    rows_per_key = Counter((p["bib"], p["station_id"]) for p in passages)
    matched: set[tuple[str, str]] = set()
    false_all = false_confirmed = 0
    for p in passages:
        key = (p["bib"], p["station_id"])
        true = truth.get(key)
        if true is not None and abs((p["passed_at"] - true[0]).total_seconds()) <= tolerance_s:
            matched.add(key)
        else:
            false_all += 1
            false_confirmed += not p["needs_review"]
    paths = Counter(
        pq.read_table(os.path.join(out_dir, IMAGES_FILE), columns=["path"])["path"].to_pylist()
    )
    files = input_files(images)
    return Score(
        true_passages=len(truth),
        visible_passages=sum(1 for _, visible in truth.values() if visible),
        found=len(matched),
        found_visible=sum(1 for k in matched if truth[k][1]),
        false_passages=false_all,
        false_confirmed=false_confirmed,
        duplicate_rows=sum(n - 1 for n in rows_per_key.values()),
        passages_needing_review=sum(1 for p in passages if p["needs_review"]),
        input_files=len(files),
        image_rows=sum(paths.values()),
        files_missing=sum(1 for f in files if f not in paths),
        files_repeated=sum(n - 1 for n in paths.values()),
    )
