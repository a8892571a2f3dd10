"""The leaderboard: one row per athlete in the start list, ranked, with splits.

Times count from the athlete's own start (chip time): the passage at the
course's first station when one was seen, else the athlete's wave start
(gun time), which the `chip_start` column flags. Only confirmed passages of
listed athletes count; what needs review waits for an official.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import apache_beam as beam

from transforms.course import Athlete, Course
from transforms.passages import Passage
from transforms.schemas import split_column

FINISHED, RUNNING, DNS = "finished", "running", "dns"


def competition_ranks(values: list[float]) -> list[int]:
    """Ranks of sorted values as timing software gives them: ties share, the next skips."""
    ranks: list[int] = []
    for i, v in enumerate(values):
        ranks.append(ranks[-1] if i and v == values[i - 1] else i + 1)
    return ranks


def first_passages(passages: Iterable[Passage]) -> dict[str, dict[str, datetime]]:
    """bib -> station_id -> time of the first confirmed passage there."""
    seen: dict[str, dict[str, datetime]] = {}
    for p in passages:
        if p.needs_review:
            continue
        at = seen.setdefault(p.bib, {})
        if p.station_id not in at or p.passed_at < at[p.station_id]:
            at[p.station_id] = p.passed_at
    return seen


def athlete_row(athlete: Athlete, times: dict[str, datetime], course: Course) -> dict:
    first, finish = course.stations[0].id, course.stations[-1].id
    gun = course.wave_start(athlete.wave or None)
    start = times.get(first, gun)
    row = {
        "rank": None,
        "bib": athlete.bib,
        "name": athlete.name,
        "category": athlete.category,
        "category_rank": None,
        "status": FINISHED if finish in times else RUNNING if times else DNS,
        "total_s": None,
        "gender": athlete.gender,
        "club": athlete.club,
        "wave": athlete.wave,
        "gun_s": None,
        "chip_start": "own" if first in times else "gun",
    }
    for station in course.stations:
        at = times.get(station.id)
        row[split_column(station.id)] = (
            round((at - start).total_seconds(), 3) if at is not None else None
        )
    if finish in times:
        row["total_s"] = row[split_column(finish)]
        row["gun_s"] = round((times[finish] - gun).total_seconds(), 3)
    return row


def _bib_order(bib: str) -> tuple[int, str]:
    return (int(bib), bib) if bib.isdigit() else (10**12, bib)


def _furthest(row: dict, course: Course) -> tuple:
    reached = [i for i, s in enumerate(course.stations) if row[split_column(s.id)] is not None]
    last = course.stations[max(reached)].id if reached else None
    return (-max(reached, default=-1), row[split_column(last)] if last else 0.0)


def _rank(rows: list[dict], rank_key: str, group: str | None = None) -> None:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == FINISHED:
            groups.setdefault(row[group] if group else "", []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: (r["total_s"], _bib_order(r["bib"])))
        ranks = competition_ranks([r["total_s"] for r in members])
        for row, rank in zip(members, ranks, strict=True):
            row[rank_key] = rank


def build_leaderboard(
    passages: Iterable[Passage], course: Course, athletes: Iterable[Athlete]
) -> list[dict]:
    """Every athlete of the start list, finished first by rank, then running, then dns."""
    times = first_passages(passages)
    rows = [athlete_row(a, times.get(a.bib, {}), course) for a in athletes]
    _rank(rows, "rank")
    _rank(rows, "category_rank", "category")
    order = {FINISHED: 0, RUNNING: 1, DNS: 2}
    return sorted(
        rows,
        key=lambda r: (
            order[r["status"]],
            r["rank"] or 0,
            _furthest(r, course) if r["status"] == RUNNING else (),
            _bib_order(r["bib"]),
        ),
    )


class BuildLeaderboard(beam.PTransform):
    """Passages -> leaderboard rows (one per athlete), from all passages of the race."""

    def __init__(self, course: Course, athletes: tuple[Athlete, ...]):
        super().__init__()
        self._course = course
        self._athletes = athletes

    def expand(self, passages: beam.PCollection) -> beam.PCollection:
        return (
            passages
            | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "AllPassages" >> beam.combiners.ToList()
            | "Rank" >> beam.FlatMap(build_leaderboard, self._course, self._athletes)
        )
