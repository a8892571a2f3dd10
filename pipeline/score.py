"""Scoring a run against a demo race's truth.csv.

Passages: a true passage is found when passages.parquet has a row for the
same bib and station within `tolerance_s`. A row that matches no true passage
is false (counted apart when it awaits review); a second row for the same bib
and station is a duplicate. Every input file must appear exactly once in
images.parquet.

Faces: of the passages whose photos show the athlete's face but never the bib
(truth.csv `face_only`, from `racelens demo --faces`), how many face matching
recovered (a `face_match` row within `tolerance_s`), and how many `face_match`
rows are wrong: a bib that did not pass that station then (another athlete's
face, or nobody's).

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
from typing import NamedTuple

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


class Truth(NamedTuple):
    """One true passage of truth.csv."""

    at: datetime
    visible: bool  # some photo shows the bib
    face_only: bool  # the photos show the athlete's real face but never the bib


def read_truth(path: str) -> dict[tuple[str, str], Truth]:
    with open(path, newline="", encoding="utf-8") as f:
        return {
            (r["bib"], r["station_id"]): Truth(
                _utc(r["passed_at"]),
                r.get("visible", "true") == "true",
                r.get("face_only", "false") == "true",
            )
            for r in csv.DictReader(f)
        }


def _within(truth: Truth | None, at: datetime, tolerance_s: float) -> bool:
    return truth is not None and abs((at - truth.at).total_seconds()) <= tolerance_s


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
        if _within(truth.get(key), p["passed_at"], tolerance_s):
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
        visible_passages=sum(1 for t in truth.values() if t.visible),
        found=len(matched),
        found_visible=sum(1 for k in matched if truth[k].visible),
        false_passages=false_all,
        false_confirmed=false_confirmed,
        duplicate_rows=sum(n - 1 for n in rows_per_key.values()),
        passages_needing_review=sum(1 for p in passages if p["needs_review"]),
        input_files=len(files),
        image_rows=sum(paths.values()),
        files_missing=sum(1 for f in files if f not in paths),
        files_repeated=sum(n - 1 for n in paths.values()),
    )


FACE_MATCH = "face_match"


@dataclass(frozen=True)
class FaceScore:
    face_only_passages: int  # true passages that only the face can find
    face_only_found: int  # of them, found by any method within the tolerance
    face_recovered: int  # of them, found by face matching
    face_match_passages: int  # rows with method face_match
    face_match_wrong: int  # of them, a bib that did not pass that station then
    wrong: tuple[str, ...]  # what each wrong face_match row is

    def report(self) -> str:
        lines = [f"{k}: {v}" for k, v in asdict(self).items() if k != "wrong"]
        lines += [f"  {w}" for w in self.wrong[:20]]
        return "\n".join(lines)


def _who_passed(
    truth: dict[tuple[str, str], Truth], station_id: str, at: datetime, tolerance_s: float
) -> list[str]:
    return sorted(
        b for (b, s), t in truth.items() if s == station_id and _within(t, at, tolerance_s)
    )


def score_faces(out_dir: str, truth_csv: str, tolerance_s: float = 2.0) -> FaceScore:
    """Face-only passages recovered by face matching, and face matches that are wrong."""
    truth = read_truth(truth_csv)
    passages = pq.read_table(os.path.join(out_dir, PASSAGES_FILE)).to_pylist()
    found: dict[tuple[str, str], str] = {}  # face-only passage -> method that found it
    wrong = []
    for p in passages:
        key = (p["bib"], p["station_id"])
        true = truth.get(key)
        if _within(true, p["passed_at"], tolerance_s):
            if true.face_only:
                found.setdefault(key, p["method"])
        elif p["method"] == FACE_MATCH:
            others = _who_passed(truth, p["station_id"], p["passed_at"], tolerance_s)
            then = f"{p['passed_at']:%H:%M:%S}"
            truly = f"truly {', '.join(others)}" if others else "nobody passed then"
            wrong.append(f"bib {p['bib']} at {p['station_id']} {then}: {truly}")
    return FaceScore(
        face_only_passages=sum(1 for t in truth.values() if t.face_only),
        face_only_found=len(found),
        face_recovered=sum(1 for method in found.values() if method == FACE_MATCH),
        face_match_passages=sum(1 for p in passages if p["method"] == FACE_MATCH),
        face_match_wrong=len(wrong),
        wrong=tuple(wrong),
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


def truth_passages(truth: dict[tuple[str, str], Truth]) -> list[Passage]:
    return [
        Passage(bib, station, t.at, "truth", 1.0, "", False, 1)
        for (bib, station), t in truth.items()
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
