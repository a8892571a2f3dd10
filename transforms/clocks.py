"""Camera clocks checked against the race itself: a checkpoint whose clock is off says so.

A camera whose clock is off (a phone left on its own time, a DSLR never set, one a minute
slow) shifts every athlete's passage at its station by the same seconds, whatever their
pace; a hill or a slow sector shifts passages in proportion to the athlete's time. So, per
checkpoint, each athlete seen there and at both stations either side gives a residual:
their time there minus the time interpolated by distance between the two. Fitted against
their time over the two sectors T (residual = c + k * T), the constant c is what no pace
explains. The fit is Theil-Sen's (a median of slopes), so misread bibs, wild points among
many, do not move it.

A checkpoint's own clock error shows in its constant whole, and in its neighbours'
constants scaled by distance (their interpolation leans on it). The start (from the gun
where it has no camera) and the finish are the references: the gun and the finish clock
are what timers synchronise first, and the finish decides the results. The checkpoints'
errors solve one small linear system of their constants, and their margins follow from the
fits' scatter. A finish clock off shows in the last checkpoint's constant alone, where a
checkpoint's own error moves its neighbour's too: where the finish alone explains the
constants better than any one checkpoint's clock, surely, and no checkpoint is surely off
once its error is taken, the finish is the clock suspected (finish_error). The start's
clock is not estimated.

Only an estimate that is sure and large enough to matter becomes a review item,
clock_suspect, one per station: an alarm on a correct clock costs an official more than
no alarm (they would set a wrong offset).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import apache_beam as beam
import numpy as np

from transforms.corrections import CLOCK_SUSPECT
from transforms.course import Athlete, Course, Station, corrected_offset
from transforms.identify import ReviewItem
from transforms.passages import Passage

# Fewer athletes than this at a checkpoint and both its neighbours give no estimate.
MIN_ATHLETES = 15
# What makes an estimate sure, from the demo race's measurements (docs/using.md): at least
# MIN_ERROR_S, and SURE_MARGINS times its margin (its error over its standard error above
# 3.3: no estimate of a correct clock, in 1,300 over 20 to 200 athletes, came above 2.7).
MIN_ERROR_S = 10.0
SURE_MARGINS = 2.0
# Pairs of athletes a fit looks at, at most: a fixed sample of them in a big race.
MAX_PAIRS = 20_000
# An estimate's margin: its standard error times this (90 % of a normal spread).
MARGIN_SPREADS = 1.645
HOUR_S = 3600
_SEED = 19


@dataclass(frozen=True)
class ClockEstimate:
    """How far a station's clock runs ahead of the race's references (+ fast, - slow)."""

    station_id: str
    error_s: float
    margin_s: float  # MARGIN_SPREADS times its standard error
    athletes: int  # seen there and at both stations either side
    image_id: str  # a photo it rests on, the mid-field athlete's, for the official
    taken_at: datetime

    @property
    def sure(self) -> bool:
        """Large enough to matter, and far enough beyond its margin that a correct clock
        would not give it."""
        return abs(self.error_s) >= max(MIN_ERROR_S, SURE_MARGINS * self.margin_s)


@dataclass(frozen=True)
class _Seen:
    """An athlete's counted time at each station (seconds since the epoch) and photos."""

    at: dict[str, float]
    passages: dict[str, Passage]


def athletes_seen(
    passages: Iterable[Passage], course: Course, guns: Mapping[str, datetime]
) -> list[_Seen]:
    """Each listed athlete's (`guns`: bib -> their wave's gun) sure passages, the earliest
    per station. Their start is the start passage where one is after the gun (before it,
    they waited on the line), else the gun."""
    by_bib: dict[str, dict[str, Passage]] = defaultdict(dict)
    for p in sorted(passages, key=lambda p: p.passed_at):
        if p.bib in guns and not p.needs_review:
            by_bib[p.bib].setdefault(p.station_id, p)
    start_id = course.stations[0].id
    seen = []
    for bib in sorted(by_bib):
        theirs = by_bib[bib]
        at = {sid: p.passed_at.timestamp() for sid, p in theirs.items()}
        at[start_id] = max(at.get(start_id, 0.0), guns[bib].timestamp())
        seen.append(_Seen(at, theirs))
    return seen


def residuals(
    seen: list[_Seen], course: Course, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At the checkpoint `index`, for each athlete seen there and either side at a plausible
    pace over the two sectors: (which athlete, T: their time over the two sectors, their
    time there minus the time interpolated between the two)."""
    before, here, after = course.stations[index - 1 : index + 2]
    share = (here.km - before.km) / (after.km - before.km)
    settings = course.settings
    fastest = settings.min_pace_s_per_km * (after.km - before.km)
    slowest = settings.max_pace_s_per_km * (after.km - before.km)
    who, sectors, off = [], [], []
    for n, s in enumerate(seen):
        if not {before.id, here.id, after.id} <= s.at.keys():
            continue
        t0, t, t1 = s.at[before.id], s.at[here.id], s.at[after.id]
        if fastest <= t1 - t0 <= slowest:
            who.append(n)
            sectors.append(t1 - t0)
            off.append(t - (t0 + share * (t1 - t0)))
    return np.array(who, dtype=int), np.array(sectors), np.array(off)


@dataclass(frozen=True)
class Fit:
    """off = constant + share * T at one checkpoint, and the constant's standard error."""

    constant: float
    error: float
    share: float  # k: how much later than by distance, in shares of T (a hill before it)


def fit_constant(sectors: np.ndarray, off: np.ndarray) -> Fit:
    """c and k of off = c + k * sectors, robustly, and c's standard error.

    Theil-Sen's slope of off / T against 1 / T (a runner's own unevenness grows with their
    time, so the points' scatter is even there): the median of the pairs' slopes weighted
    by how far apart the pair's 1 / T lie (a pair of near-equal runners says little of c).
    Least squares is no option: one misread bib in fifty moved it by minutes on the demo
    race. The error is least squares' for the points' robust scatter (1.4826 times their
    median absolute deviation from the fit). Beyond MAX_PAIRS pairs, a fixed sample."""
    x, y = 1.0 / sectors, off / sectors
    first, second = np.triu_indices(len(x), 1)
    if len(first) > MAX_PAIRS:
        sample = np.random.default_rng(_SEED).choice(len(first), MAX_PAIRS, replace=False)
        first, second = first[sample], second[sample]
    dx = x[second] - x[first]
    apart = dx != 0
    slopes = (y[second] - y[first])[apart] / dx[apart]
    order = np.argsort(slopes, kind="stable")
    weights = np.cumsum(np.abs(dx[apart])[order])
    constant = float(slopes[order][np.searchsorted(weights, weights[-1] / 2)])
    rest = y - constant * x
    share = float(np.median(rest))
    scatter = 1.4826 * np.median(np.abs(rest - share))
    return Fit(constant, float(scatter / np.sqrt(np.sum((x - x.mean()) ** 2))), share)


def _share(fits: Mapping[int, Fit], course: Course, i: int) -> float:
    """d_i + k_i: how much of the error of checkpoint i's next station its interpolated time
    takes (d_i its share of the distance between its neighbours, k_i the share fitted)."""
    km = [s.km for s in course.stations]
    return (km[i] - km[i - 1]) / (km[i + 1] - km[i - 1]) + fits[i].share


def _system(fits: Mapping[int, Fit], course: Course) -> np.ndarray:
    """The checkpoints' constants as a linear function of their clock errors (sorted by
    index): c_i = e_i - (1 - d_i - k_i) e_(i-1) - (d_i + k_i) e_(i+1)."""
    ids = sorted(fits)
    place = {i: n for n, i in enumerate(ids)}
    system = np.eye(len(ids))
    for i in ids:
        share = _share(fits, course, i)
        for j, weight in ((i - 1, 1 - share), (i + 1, share)):
            if j in place:
                system[place[i], place[j]] = -weight
    return system


def _finish_column(fits: Mapping[int, Fit], course: Course) -> np.ndarray:
    """How the finish clock's error moves each constant: the last checkpoint's time is
    interpolated towards the finish; no other's sees the finish."""
    last = len(course.stations) - 2
    return np.array([-_share(fits, course, i) if i == last else 0.0 for i in sorted(fits)])


def solve_errors(
    fits: Mapping[int, Fit], course: Course, finish_s: float = 0.0
) -> dict[int, tuple[float, float]]:
    """Each checkpoint's own clock error and its standard error, from the fits of the
    checkpoints that have one (by index), their neighbours' errors moving the time
    interpolated (see _system); the start's and an unestimated checkpoint's error taken as
    0, the finish's as `finish_s`."""
    ids = sorted(fits)
    inverse = np.linalg.inv(_system(fits, course))
    constants = np.array([fits[i].constant for i in ids]) - _finish_column(fits, course) * finish_s
    spread = np.sqrt((inverse**2) @ np.array([fits[i].error for i in ids]) ** 2)
    errors = inverse @ constants
    return {i: (float(errors[n]), float(spread[n])) for n, i in enumerate(ids)}


def finish_error(fits: Mapping[int, Fit], course: Course) -> tuple[float, float] | None:
    """The finish clock's error and its standard error where the finish alone explains the
    checkpoints' constants better than any one checkpoint's clock does; else None.

    A finish clock off moves the last checkpoint's constant alone; that checkpoint's own
    clock off moves its neighbour's too (whose time is interpolated towards it). So with
    the checkpoint before the last fitted, the two are told apart; taking the finish as
    right, a finish an hour off (summer time not set) read as both checkpoints off by
    20 and 40 minutes, and their fix made every split wrong (session 20's audit)."""
    last = len(course.stations) - 2
    if not {last - 1, last} <= fits.keys():
        return None
    ids = sorted(fits)
    constants = np.array([fits[i].constant for i in ids])
    weights = 1.0 / np.maximum(np.array([fits[i].error for i in ids]), 1e-9) ** 2
    finish, error, unexplained = _one_clock(_finish_column(fits, course), constants, weights)
    checkpoints = _system(fits, course).T
    if any(_one_clock(column, constants, weights)[2] <= unexplained for column in checkpoints):
        return None
    return finish, error


def _one_clock(
    column: np.ndarray, constants: np.ndarray, weights: np.ndarray
) -> tuple[float, float, float]:
    """One clock's error that moves the constants by `column` times it, fitted by weighted
    least squares: (the error, its standard error, the weighted squares left unexplained)."""
    information = float(np.sum(weights * column**2))
    error = float(np.sum(weights * column * constants)) / information
    unexplained = float(np.sum(weights * (constants - column * error) ** 2))
    return error, float(np.sqrt(1.0 / information)), unexplained


def estimate_clocks(
    passages: Iterable[Passage], course: Course, guns: Mapping[str, datetime]
) -> list[ClockEstimate]:
    """The clock error of each checkpoint that MIN_ATHLETES athletes were seen at and at
    both stations either side, with its margin; and the finish's where it alone is surely
    off (finish_error), no checkpoint surely off once its error is taken."""
    seen = athletes_seen(passages, course, guns)
    points = {}
    for i in range(1, len(course.stations) - 1):
        found = residuals(seen, course, i)
        if len(found[0]) >= MIN_ATHLETES:
            points[i] = found
    fits = {i: fit_constant(sectors, off) for i, (_, sectors, off) in points.items()}
    if not fits:
        return []
    found = finish_error(fits, course)
    if found is not None:
        last = len(course.stations) - 2  # its athletes are seen at the finish too
        finish = _estimate(course.stations[-1].id, *found, seen, points[last][0])
        moved = _checkpoints(fits, course, seen, points, finish.error_s)
        if finish.sure and not any(e.sure for e in moved):
            return [*moved, finish]
    return _checkpoints(fits, course, seen, points, 0.0)


def _checkpoints(
    fits: Mapping[int, Fit],
    course: Course,
    seen: list[_Seen],
    points: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    finish_s: float,
) -> list[ClockEstimate]:
    """The fitted checkpoints' estimates, the finish clock `finish_s` off."""
    return [
        _estimate(course.stations[i].id, error, spread, seen, points[i][0])
        for i, (error, spread) in solve_errors(fits, course, finish_s).items()
    ]


def _estimate(
    station_id: str, error: float, spread: float, seen: list[_Seen], who: np.ndarray
) -> ClockEstimate:
    """A station's estimate from its error and standard error, shown on the photo of the
    mid-field one of `who` (the athletes it rests on)."""
    shown = _mid_field(seen, who, station_id)
    return ClockEstimate(
        station_id,
        round(error, 1),
        round(MARGIN_SPREADS * spread, 1),
        len(who),
        shown.image_id,
        shown.passed_at,
    )


def _mid_field(seen: list[_Seen], who: np.ndarray, station_id: str) -> Passage:
    """The passage at the station of the athlete in the middle of the field there."""
    there = sorted((seen[n].passages[station_id] for n in who), key=lambda p: p.passed_at)
    return there[len(there) // 2]


def seconds_in_words(error_s: float) -> str:
    """An error in words: "38 s", "4 min 2 s"."""
    whole = round(abs(error_s))
    return f"{whole // 60} min {whole % 60} s" if whole >= 120 else f"{whole} s"


def likely_error(estimate: ClockEstimate) -> float:
    """The error to correct: whole hours where they lie within the estimate's margin (a
    camera on summer time or another time zone is off by exactly that, its clock otherwise
    right; an estimate is seconds to minutes out, which corrected as estimated would shift
    every time there by that much), else the estimate."""
    hours = round(estimate.error_s / HOUR_S)
    if hours and abs(estimate.error_s - hours * HOUR_S) <= estimate.margin_s:
        return float(hours * HOUR_S)
    return estimate.error_s


def clock_note(estimate: ClockEstimate, station: Station, finish: bool = False) -> str:
    """What the official reads on a clock_suspect item: the station (the `finish` or a
    checkpoint), the error in words, what it rests on, and the fix."""
    way = "fast" if estimate.error_s > 0 else "slow"
    error = likely_error(estimate)
    fixed = corrected_offset(station.clock_offset_s, error)
    hours = (
        f" (whole hours within the margin: a camera on summer time or another time zone, "
        f"its clock otherwise right, is off by {seconds_in_words(error)} exactly)"
        if error != estimate.error_s
        else ""
    )
    against = (
        "than their pace over the checkpoints before it puts them (give or take {margin}), "
        "whose clocks agree with each other and with the start"
        if finish
        else "than their times at the stations either side put them (give or take {margin}), "
        "the start and finish clocks taken as right"
    )
    return (
        f"The clock of {station.name} looks about {seconds_in_words(estimate.error_s)} {way}: "
        f"{estimate.athletes} athletes' times there are that much "
        f"{'later' if estimate.error_s > 0 else 'earlier'} "
        f"{against.format(margin=seconds_in_words(estimate.margin_s))}{hours}. "
        f"Check a photo's time against a clock it shows; if it "
        f"is off, write clock_offset_s: {fixed:g} for station {station.id} in course.yaml "
        f"(now {station.clock_offset_s:g}), then run racelens results --course FILE."
    )


def clock_review_of(estimate: ClockEstimate, course: Course) -> list[ReviewItem]:
    """The station's clock_suspect item where its estimate is sure, showing a photo it rests
    on; else none."""
    if not estimate.sure:
        return []
    station = course.station(estimate.station_id)
    finish = station.id == course.stations[-1].id
    return [
        ReviewItem(
            estimate.image_id,
            None,
            CLOCK_SUSPECT,
            (),
            estimate.station_id,
            estimate.taken_at,
            note=clock_note(estimate, station, finish),
            clock_offset_s=corrected_offset(station.clock_offset_s, likely_error(estimate)),
        )
    ]


def with_clock_error(row: dict, estimates: Iterable[ClockEstimate]) -> dict:
    """A row of stations.parquet with its station's estimate (None where there is none)."""
    e = next((e for e in estimates if e.station_id == row["station_id"]), None)
    return row | {
        "clock_error_s": None if e is None else e.error_s,
        "clock_error_margin_s": None if e is None else e.margin_s,
    }


def guns_of(course: Course, athletes: Iterable[Athlete]) -> dict[str, datetime]:
    """Each listed athlete's gun: their wave's, else the race's."""
    return {a.bib: course.wave_start(a.wave or None) for a in athletes}


class EstimateClocks(beam.PTransform):
    """Passages (before the split check: a clock far off makes its passages implausible) ->
    ClockEstimate per checkpoint that enough athletes give one, over the whole race."""

    def __init__(self, course: Course, athletes: Iterable[Athlete]):
        super().__init__()
        self._course = course
        self._guns = guns_of(course, athletes)

    def expand(self, passages: beam.PCollection) -> beam.PCollection:
        course, guns = self._course, self._guns  # the lambda pickles these, not the transform
        return (
            passages
            | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "AllPassages" >> beam.combiners.ToList()
            | "Estimate" >> beam.FlatMap(estimate_clocks, course, guns)
        )
