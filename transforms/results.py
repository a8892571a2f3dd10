"""The leaderboard: one row per athlete, as timing software publishes it.

Gun time counts from the athlete's wave start (the race start without
waves). Chip time counts from the athlete's own passage at the first station
when it was seen, else from the gun, which `chip_start` flags; a start passage
before the gun counts as at the gun (the athlete waiting on the line), unless their later
passages show it was their crossing (transforms.splits.started_early): a wave jumper is
timed from that photo, their gun time from the gun they left with, flagged early_start,
until an official times them from their own gun (`from_gun`) or disqualifies them. Splits are
chip times at each station, with the time of day, the sector time since the
previous station seen, and the pace over that sector. Ranks (overall, by
gender, by category) use the course's `rank_by` time at tenth-of-a-second
precision, ties sharing a rank as in RACE RESULT or Webscorer (1, 2, 2, 4): the tenths
are those shown (truncated), so equal times on the results share a place, and the gap to the
leader is the difference of the times shown.

Statuses: finished; running (seen, not finished, course still open); dnf
(seen, not finished after the course closed for their wave (race.close, or their wave's
start plus time_limit_s, whichever is first), finished after it: flag over_time_limit,
their times shown but unranked, or an official said so); waiting (not seen while their
wave's start is open, until its gun plus start_crossing_s: live results or --as-of then);
dns (never seen, their start closed); dsq (an official's decision). Only confirmed passages count;
a number read confidently but missing from the start list gets a row of its
own, "Unknown #1234", status unknown (no athlete of the race: no finisher), flagged,
unranked, its times kept for the official, so no runner disappears.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import apache_beam as beam

from transforms.corrections import EARLY_START, FROM_GUN
from transforms.course import Athlete, Course
from transforms.passages import Passage
from transforms.schemas import pace_column, sector_column, split_column, time_of_day_column
from transforms.splits import START_TOLERANCE_S, started_early

FINISHED, RUNNING, DNF, DNS, DSQ = "finished", "running", "dnf", "dns", "dsq"
# Not seen while their wave's start is open (its gun plus start_crossing_s): no dns yet (a
# later wave read as non-starters on the live leaderboard while they stood in the pen, and
# a wave's back before their first photo).
WAITING = "waiting"
UNKNOWN = "unknown"  # an unknown bib's row: a number read that is not in the start list
OVER_TIME_LIMIT = "over_time_limit"  # the flag of a dnf who finished after the close


def tenths(seconds: float) -> int:
    """Whole tenths of a time as shown: truncated towards zero as timing software shows it
    (to the millisecond first, so 59.9 stored as 59.89999... still shows 59.9)."""
    ms = round(seconds * 1000)
    return ms // 100 if ms >= 0 else -(-ms // 100)


def competition_ranks(values: list[float]) -> list[int]:
    """Ranks of sorted values as timing software gives them: ties share, the next skips."""
    ranks: list[int] = []
    for i, v in enumerate(values):
        ranks.append(ranks[-1] if i and v == values[i - 1] else i + 1)
    return ranks


def passages_by_bib(
    passages: Iterable[Passage], listed: set[str]
) -> dict[str, dict[str, datetime]]:
    """bib -> station_id -> time of the first counted passage there.

    Listed athletes count confirmed passages only; unknown bibs count what was
    read of them (all of it awaits review anyway).
    """
    seen: dict[str, dict[str, datetime]] = {}
    for p in passages:
        if p.needs_review and (p.bib in listed or p.review_reason != "unknown_bib"):
            continue
        at = seen.setdefault(p.bib, {})
        if p.station_id not in at or p.passed_at < at[p.station_id]:
            at[p.station_id] = p.passed_at
    return seen


def _seconds(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 3)


def pace_per_km(seconds: float, km: float) -> float | None:
    """Seconds per km of a time over a distance, from the time as shown (its tenths): a
    pace from the unshown hundredths could read a second slower than the time beside it
    (39:59.99 shows 0:39:59.9, whose pace over 10 km is 3:59, not 4:00). None for no
    distance (stations at one km)."""
    return round(tenths(seconds) / 10 / km, 3) if km > 0 else None


def over_time_limit(times: dict[str, datetime], course: Course, wave: str | None) -> bool:
    """A finish after the course closed for the athlete's wave (race.close, or the wave's
    start plus time_limit_s): over the time limit, as a timer lists it (dnf, unranked, the
    time run still shown); a finish at the close is in time."""
    finish, close = course.stations[-1].id, course.close_of(wave)
    return close is not None and finish in times and times[finish] > close


def _status(
    times: dict[str, datetime],
    course: Course,
    wave: str | None,
    as_of: datetime,
    official: str | None,
) -> str:
    if official in (DSQ, DNF):
        return official
    if course.stations[-1].id in times:
        return DNF if over_time_limit(times, course, wave) else FINISHED
    if not times:
        return WAITING if as_of < course.start_closes(wave) else DNS
    return DNF if course.is_closed(as_of, wave) else RUNNING


def _splits(times: dict[str, datetime], course: Course, start: datetime) -> dict:
    row: dict = {}
    first = course.stations[0]
    # The first sector runs from the chip start, the gun where the start was not seen, as
    # the splits do: else a missed start photo left the first sector and its pace blank.
    previous = (first.km, start)
    for station in course.stations:
        at = times.get(station.id)
        row[split_column(station.id)] = _seconds(at, start) if at else None
        row[time_of_day_column(station.id)] = at
        sector = pace = None
        if at is not None and station != first:
            sector = _seconds(at, previous[1])
            pace = pace_per_km(sector, station.km - previous[0])
        row[sector_column(station.id)] = sector
        row[pace_column(station.id)] = pace
        if at is not None:
            previous = (station.km, at)
    return row


def _started_at_the_gun(times: dict[str, datetime], start_id: str, gun: datetime) -> dict:
    """A start passage before the athlete's gun (the front row photographed waiting on the
    line; a later wave's runner in the pen as an earlier wave left) is a start at the gun:
    no chip starts before it, so no chip time is longer than the gun time. The start's time of
    day is the gun's too: the photo shows the athlete waiting, not crossing (its own time
    stays in passages.parquet)."""
    if start_id in times and times[start_id] < gun:
        return {**times, start_id: gun}
    return times


def gun_left_with(course: Course, start: datetime) -> datetime:
    """The gun an early starter left with: the latest at or before their start passage (or
    up to START_TOLERANCE_S after it: that wave's front row), else the passage itself (they
    left before every gun). Their gun time counts from it: never the later wave's gap."""
    guns = [course.start, *(w.start for w in course.waves)]
    latest = start + timedelta(seconds=START_TOLERANCE_S)
    return max((g for g in guns if g <= latest), default=start)


def athlete_row(
    athlete: Athlete,
    times: dict[str, datetime],
    course: Course,
    as_of: datetime,
    official: str | None = None,
    unknown: bool = False,
) -> dict:
    first, finish = course.stations[0], course.stations[-1]
    wave = athlete.wave or None
    gun = course.wave_start(wave)
    early = official != FROM_GUN and started_early(times, course, gun)
    if early:
        gun = gun_left_with(course, times[first.id])
    times = _started_at_the_gun(times, first.id, gun)
    start = times.get(first.id, gun)
    # An unknown bib is no athlete of the race: as "finished" it was counted and imported
    # as a finisher.
    status = UNKNOWN if unknown else _status(times, course, wave, as_of, official)
    late = not unknown and official not in (DSQ, DNF) and over_time_limit(times, course, wave)
    # The finish is timed for a finisher, for one over the time limit (their time is still
    # shown, unranked) and for an unknown bib (the official's to settle); an official's dnf
    # or dsq shows none.
    timed = finish.id in times and (status in (FINISHED, UNKNOWN) or late)
    chip_s = _seconds(times[finish.id], start) if timed else None
    gun_s = _seconds(times[finish.id], gun) if timed else None
    run_s = chip_s if course.settings.rank_by == "chip" else gun_s
    total_s = run_s if status == FINISHED else None  # the ranked time: finishers only
    missed = [s.id for s in course.stations[1:-1] if s.id not in times] if timed else []
    flags = (
        (["unknown_bib"] if unknown else [])
        + (["gun_start"] if first.id not in times and times else [])
        + (["missed_checkpoint"] if missed else [])
        + ([EARLY_START] if early else [])
        + ([OVER_TIME_LIMIT] if late else [])
    )
    distance = finish.km - first.km
    return {
        "rank": None,
        "bib": athlete.bib,
        "name": athlete.name,
        "category": athlete.category,
        "category_rank": None,
        "status": status,
        "total_s": total_s,
        **_splits(times, course, start),
        "gender": athlete.gender,
        "club": athlete.club,
        "wave": athlete.wave,
        "gender_rank": None,
        "chip_s": chip_s,
        "gun_s": gun_s,
        "chip_start": "own" if first.id in times else "gun",
        "gap_s": None,
        # The pace of the chip time, the time the athlete ran, whichever time ranks (timers
        # publish it so; from the gun time it read slower than the chip time beside it).
        "pace_s_per_km": pace_per_km(chip_s, distance) if chip_s is not None else None,
        "missed": missed,
        "flags": flags,
    }


def bib_order(bib: str) -> tuple[int, str]:
    return (int(bib), bib) if bib.isdigit() else (10**12, bib)


def _rank(rows: list[dict], rank_key: str, group: str | None = None) -> None:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        # A blank category or gender is none: no place among the others left blank.
        if group and not row[group]:
            continue
        if row["status"] == FINISHED:
            groups.setdefault(row[group] if group else "", []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: (r["total_s"], bib_order(r["bib"])))
        shown = [tenths(r["total_s"]) for r in members]
        for row, rank in zip(members, competition_ranks(shown), strict=True):
            row[rank_key] = rank


def _furthest(row: dict, course: Course) -> tuple:
    reached = [i for i, s in enumerate(course.stations) if row[split_column(s.id)] is not None]
    last = course.stations[max(reached)].id if reached else None
    return (-max(reached, default=-1), row[split_column(last)] if last else 0.0)


def build_leaderboard(
    passages: Iterable[Passage],
    course: Course,
    athletes: Iterable[Athlete],
    as_of: datetime | None,
    officials: dict[str, str] | None = None,
) -> list[dict]:
    """Every athlete of the start list (and every unknown bib read), in results order: the
    results at `as_of` (a passage after it does not count yet), or with every passage as they
    stand now (None: a live run's leaderboard is built again and again, so now is each time's)."""
    athletes = list(athletes)
    officials = officials or {}
    listed = {a.bib for a in athletes}
    if as_of is not None:
        passages = [p for p in passages if p.passed_at <= as_of]
    at = as_of or datetime.now(UTC)
    times = passages_by_bib(passages, listed)
    rows = [
        athlete_row(a, times.get(a.bib, {}), course, at, officials.get(a.bib)) for a in athletes
    ]
    rows += [
        athlete_row(Athlete(bib=bib, name=f"Unknown #{bib}"), seen, course, at, unknown=True)
        for bib, seen in times.items()
        if bib not in listed
    ]
    _rank(rows, "rank")
    _rank(rows, "category_rank", "category")
    _rank(rows, "gender_rank", "gender")
    winner = min((tenths(r["total_s"]) for r in rows if r["rank"] == 1), default=None)
    for row in rows:
        if row["rank"] is not None:
            row["gap_s"] = (tenths(row["total_s"]) - winner) / 10
    return sorted(rows, key=results_order(course))


_STATUS_ORDER = {FINISHED: 0, RUNNING: 1, WAITING: 2, DNF: 3, DSQ: 4, DNS: 5, UNKNOWN: 6}


def results_order(course: Course) -> Callable[[dict], tuple]:
    """Sort key of leaderboard rows: finishers by rank, then those out on the course by how
    far they got, those waiting for their start, then dnf, dsq and dns, then unknown
    bibs; bib order last."""

    def key(row: dict) -> tuple:
        return (
            _STATUS_ORDER[row["status"]],
            row["rank"] is None,
            row["rank"] or 0,
            _furthest(row, course) if row["status"] in (RUNNING, DNF) else (),
            bib_order(row["bib"]),
        )

    return key


class BuildLeaderboard(beam.PTransform):
    """Passages -> leaderboard rows (one per athlete), from all passages of the race."""

    def __init__(
        self,
        course: Course,
        athletes: tuple[Athlete, ...],
        as_of: datetime | None,
        officials: dict[str, str],
    ):
        super().__init__()
        self._course = course
        self._athletes = athletes
        self._as_of = as_of
        self._officials = officials

    def expand(self, passages: beam.PCollection) -> beam.PCollection:
        return (
            passages
            | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "AllPassages" >> beam.combiners.ToList()
            | "Rank"
            >> beam.FlatMap(
                build_leaderboard, self._course, self._athletes, self._as_of, self._officials
            )
        )
