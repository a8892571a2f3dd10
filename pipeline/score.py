"""Scoring a run against a demo race's truth.csv.

Passages: a true passage is found when passages.parquet has a row for the
same bib and station within `tolerance_s`. A row that matches no true passage
is false (counted apart when it awaits review); a second row for the same bib
and station is a duplicate. Every input file must appear exactly once in
images.parquet.

Leaderboard: the expected leaderboard is built from the true passages by the
same rules; each athlete's status must match, the ranked time must be within
twice `tolerance_s` (it is the difference of two passage times, each within
`tolerance_s`), and the rank must be one the athlete could have at that
precision (photos time a runner to about a second, so two runners who
crossed within it of each other may be ranked either way).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pyarrow.parquet as pq

from transforms.course import load_course, load_start_list
from transforms.passages import Passage
from transforms.results import build_leaderboard
from transforms.write import IMAGES_FILE, LEADERBOARD_FILE, PASSAGES_FILE


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
        """>= 98 % found within the tolerance, no false confirmed passage, no duplicate, no
        file lost."""
        return (
            self.recall >= 0.98
            and self.false_confirmed == 0
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


@dataclass(frozen=True)
class BoardScore:
    athletes: int
    status_agrees: int
    time_agrees: int  # finishers whose ranked time is within the tolerance (others: both None)
    rank_exact: int
    rank_agrees: int  # rank possible at the tolerance
    disagreements: tuple[str, ...]

    def all_agree(self) -> bool:
        return not self.disagreements

    def report(self) -> str:
        lines = [f"{k}: {v}" for k, v in asdict(self).items() if k != "disagreements"]
        lines += [f"  {d}" for d in self.disagreements[:20]]
        lines.append(f"leaderboard_agrees: {self.all_agree()}")
        return "\n".join(lines)


def truth_passages(truth: dict[tuple[str, str], tuple[datetime, bool]]) -> list[Passage]:
    return [
        Passage(bib, station, at, "truth", 1.0, "", False, 1)
        for (bib, station), (at, _) in truth.items()
    ]


def possible_ranks(times: list[float], mine: float, tolerance_s: float) -> tuple[int, int]:
    """The best and worst rank a time could have if times within the tolerance may swap."""
    better = sum(1 for t in times if t < mine - tolerance_s)
    not_worse = sum(1 for t in times if t <= mine + tolerance_s)
    return better + 1, not_worse


def _disagreement(exp: dict, got: dict | None, finish_times: list[float], tol: float) -> str:
    if got is None:
        return "missing from leaderboard"
    if got["status"] != exp["status"]:
        return f"status {got['status']} != {exp['status']}"
    if exp["total_s"] is None:
        return ""
    if got["total_s"] is None or abs(got["total_s"] - exp["total_s"]) > tol:
        return f"time {got['total_s']} != {exp['total_s']}"
    best, worst = possible_ranks(finish_times, exp["total_s"], tol)
    if got["rank"] is None or not best <= got["rank"] <= worst:
        return f"rank {got['rank']} not in {best}..{worst}"
    return ""


def score_leaderboard(
    out_dir: str, truth_csv: str, course_file: str, start_list: str, tolerance_s: float = 2.0
) -> BoardScore:
    course = load_course(course_file)
    athletes = load_start_list(start_list)
    as_of = datetime.now(UTC)
    expected = build_leaderboard(truth_passages(read_truth(truth_csv)), course, athletes, as_of)
    got = {r["bib"]: r for r in pq.read_table(os.path.join(out_dir, LEADERBOARD_FILE)).to_pylist()}
    finish_times = [r["total_s"] for r in expected if r["total_s"] is not None]
    time_tolerance = 2 * tolerance_s  # a time is the difference of two passages
    problems = []
    for exp in expected:
        problem = _disagreement(exp, got.get(exp["bib"]), finish_times, time_tolerance)
        if problem:
            problems.append(f"bib {exp['bib']}: {problem}")
    finishers = [e for e in expected if e["total_s"] is not None]
    return BoardScore(
        athletes=len(expected),
        status_agrees=sum(
            1 for e in expected if got.get(e["bib"], {}).get("status") == e["status"]
        ),
        time_agrees=sum(
            1
            for e in finishers
            if got.get(e["bib"], {}).get("total_s") is not None
            and abs(got[e["bib"]]["total_s"] - e["total_s"]) <= time_tolerance
        ),
        rank_exact=sum(1 for e in finishers if got.get(e["bib"], {}).get("rank") == e["rank"]),
        rank_agrees=len(finishers)
        - sum(1 for p in problems if " rank " in p or p.endswith("missing from leaderboard")),
        disagreements=tuple(problems),
    )
