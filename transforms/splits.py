"""Plausibility of an athlete's passages: the checks a timer makes before publishing.

A passage that implies an impossible pace (faster than the course's minimum
pace, slower than its maximum, or earlier than the station before) is more
likely a misread bib or a wrong clock than a runner. Per athlete, the largest
set of passages that is plausible as a whole is kept; every other passage
goes to review as implausible_split instead of into the results. A passage
an official approved or assigned is never flagged: the set kept is the one
with the most of them, so a read that conflicts with the official goes to
review instead. A finisher not seen at a station in between is sent to
review as missed_checkpoint: it is usually a camera that missed them, not a
short cut. In a live run, only once that station's photos of the athlete's time
there can no longer come (`Arrivals`): a phone uploading late is not a miss. One seen
there at a doubted time, or read there weakly, has that implausible split or weak read in
review instead, the one question about them there: rejected, they are missed.

A start passage long before the athlete's gun is them waiting on the line (the front row, a
later wave's runner in the pen as an earlier wave leaves) or crossing it early (a wave
jumper): where the next station they were seen at is plausible from the photo and too fast
to reach from the gun, or their pace further on puts their crossing nearer the photo than
the gun, the photo was the crossing. Their passages are then checked from it, and the early
start goes to review as early_start: an official decides how they are timed, never the gap
credited silently.

At a station timed by a passage's last photo (crossing: last, an approach camera), a passage
whose athlete is read surely on a later photo of the visit that is placed nowhere (the
line's frame, left to an official as ambiguous_station while the approach frames were
placed) would be timed at an approach frame, up to half a minute early. It waits for that
photo's item instead of counting.

A weak read of the athlete's bib where no confirmed passage is counts when
its time is where the athlete's confirmed passages say they were (within a
few percent of the predicted time): a timer accepts that read without
looking; elsewhere it waits in the review queue.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import apache_beam as beam

from transforms.corrections import AMBIGUOUS_STATION, EARLY_START, IMPLAUSIBLE_SPLIT
from transforms.course import Athlete, Course
from transforms.identify import ReviewItem
from transforms.passages import Passage

# A start-line passage may precede its wave's gun by this much (camera clocks drift).
START_TOLERANCE_S = 60.0
# How far a weak read may lie from the time the athlete's other passages predict.
MIN_TOLERANCE_S = 20.0
INTERPOLATION_TOLERANCE = 0.05  # of the time between the passages around it
EXTRAPOLATION_TOLERANCE = 0.10  # of the time extrapolated at the athlete's pace


def plausible(course: Course, a_km: float, a_at: datetime, b_km: float, b_at: datetime) -> bool:
    """Can a runner at a_km at a_at be at b_km (further on) at b_at?"""
    dt = (b_at - a_at).total_seconds()
    dkm = b_km - a_km
    if dkm <= 0:
        return dt >= -START_TOLERANCE_S
    pace = dt / dkm
    return course.settings.min_pace_s_per_km <= pace <= course.settings.max_pace_s_per_km


def started_early(times: Mapping[str, datetime], course: Course, gun: datetime) -> bool:
    """Did the athlete (station -> time seen) cross the start before their gun, rather than
    wait on the line? Only a start passage more than START_TOLERANCE_S before it can tell,
    where the next station they were seen at is plausible from the photo and either too fast
    to reach from the gun, or the athlete's pace after it, carried back to the start, puts
    their crossing nearer the photo than the gun (a jumper of any speed). Otherwise they
    waited (the photos alone cannot tell)."""
    first = course.stations[0]
    start = times.get(first.id)
    seen = [(s.km, times[s.id]) for s in course.stations[1:] if s.id in times]
    if start is None or not seen or (gun - start).total_seconds() <= START_TOLERANCE_S:
        return False
    if not plausible(course, first.km, start, *seen[0]):
        return False
    crossed = _paced_start(seen, first.km)
    return not plausible(course, first.km, gun, *seen[0]) or (
        crossed is not None and crossed - start < gun - crossed
    )


def _paced_start(seen: list[tuple[float, datetime]], start_km: float) -> datetime | None:
    """When an athlete seen at (km, time) after the start crossed it, at the pace they ran
    from the first of those to the last; None without two at different km."""
    (k0, t0), (k1, t1) = seen[0], seen[-1]
    if k1 <= k0:
        return None
    return t0 - (t1 - t0) * ((k0 - start_km) / (k1 - k0))


def plausible_chain(passages: list[Passage], course: Course, gun: datetime) -> set[int]:
    """Indexes (into `passages`) of the plausible sequence, one passage per station, that
    holds the most official passages and, of those, the most passages.

    Heaviest path through passages ordered by station and time, starting from
    the gun at the first station's km; ties keep the earlier passages (the later at a
    station whose crossing is last). An official passage counts before any number of
    reads, so a read that conflicts with an official's decision is the one left out; it
    may start a chain whatever the gun says (the official saw the photo).
    """
    index = {s.id: i for i, s in enumerate(course.stations)}
    km = {s.id: s.km for s in course.stations}
    start_km = course.stations[0].km
    last_at = course.last_at
    order = sorted(range(len(passages)), key=lambda i: _chain_order(passages[i], index, last_at))
    # node -> ((official passages, passages) of the best chain ending there, previous node);
    # None where no plausible chain reaches the node.
    best: dict[int, tuple[tuple[int, int] | None, int | None]] = {}
    for n, i in enumerate(order):
        p = passages[i]
        official = int(p.official)
        starts = p.official or plausible(course, start_km, gun, km[p.station_id], p.passed_at)
        weight, prev = ((official, 1) if starts else None), None
        for j in order[:n]:
            q, before = passages[j], best[j][0]
            if index[q.station_id] >= index[p.station_id] or before is None:
                continue
            if plausible(course, km[q.station_id], q.passed_at, km[p.station_id], p.passed_at):
                longer = (before[0] + official, before[1] + 1)
                if weight is None or longer > weight:
                    weight, prev = longer, j
        best[i] = (weight, prev)
    reached = [i for i in order if best[i][0] is not None]
    if not reached:
        return set()
    # Of equally heavy chains, the one reaching furthest along the course: where a checkpoint
    # and the finish disagree (a checkpoint camera's clock minutes off), the finish is kept
    # and the checkpoint doubted, not the athlete left unfinished (a winner published as DNF).
    node: int | None = max(
        reached,
        key=lambda i: (best[i][0], index[passages[i].station_id], -order.index(i)),
    )
    chain: set[int] = set()
    while node is not None:
        chain.add(node)
        node = best[node][1]
    return chain


def _chain_order(p: Passage, index: dict[str, int], last_at: frozenset[str]) -> tuple[int, float]:
    """A passage's place in plausible_chain's order: by station, then by time, the latest
    first at a station whose crossing is its last photo (a runner seen on their approach,
    unseen for longer than the merge window, then at the line: the line's passage is kept
    on a tie)."""
    at = p.passed_at.timestamp()
    return index[p.station_id], -at if p.station_id in last_at else at


def _weight(chain: set[int], passages: list[Passage]) -> tuple[int, int]:
    """A chain's official passages, then its passages: plausible_chain's order."""
    return sum(passages[i].official for i in chain), len(chain)


def _times(chain: set[int], passages: list[Passage]) -> dict[str, datetime]:
    return {passages[i].station_id: passages[i].passed_at for i in chain}


def athletes_chain(passages: list[Passage], course: Course, gun: datetime) -> set[int]:
    """plausible_chain from the gun, or from the athlete's earliest start passage where that
    chain holds more and shows the photo was their crossing (started_early): a wave jumper's
    later passages are too fast from their gun, so from it the start photo and the
    passages after it were all in doubt, and the gap was theirs."""
    chain = plausible_chain(passages, course, gun)
    starts = [p.passed_at for p in passages if p.station_id == course.stations[0].id]
    if not starts:
        return chain
    early = plausible_chain(passages, course, min(starts))
    heavier = _weight(early, passages) > _weight(chain, passages)
    return early if heavier and started_early(_times(early, passages), course, gun) else chain


def _early_start(checked: list[Passage], course: Course, gun: datetime) -> list[ReviewItem]:
    """The early_start item of an athlete whose counted passages (the first at each station,
    as the results count them) show a start before their gun; none for any other."""
    first: dict[str, Passage] = {}
    for p in sorted(checked, key=lambda p: p.passed_at):
        if not p.needs_review:
            first.setdefault(p.station_id, p)
    times = {sid: p.passed_at for sid, p in first.items()}
    if not started_early(times, course, gun):
        return []
    return [_review(first[course.stations[0].id], EARLY_START)]


def _review(p: Passage, reason: str, station_id: str | None = None) -> ReviewItem:
    # A passage knows its photo's image_id, not its path: the path column is null.
    return ReviewItem(
        image_id=p.image_id,
        path=None,
        reason=reason,
        candidates=(p.bib,),
        station_id=station_id or p.station_id,
        taken_at=p.passed_at if station_id is None else None,
    )


def by_km(course: Course, places: Iterable[tuple[str, datetime]]) -> list[tuple[float, datetime]]:
    """(km, time) of the stations a runner was at (`places`: station, time), in course
    order; one time per km, the last given (a sector over 0 km has no pace)."""
    return sorted({course.station(station_id).km: at for station_id, at in places}.items())


def pace_spread(course: Course, places: Iterable[tuple[str, datetime]]) -> float | None:
    """How uneven a runner's pace is between the stations they were at (`places`: station,
    time): the slowest sector's pace over the fastest's, 1.0 for an even pace. None where
    there is nothing to compare (fewer than two sectors) or a sector is not run forward."""
    paces = [
        (t1 - t0).total_seconds() / (k1 - k0)
        for (k0, t0), (k1, t1) in itertools.pairwise(by_km(course, places))
    ]
    if len(paces) < 2 or min(paces) <= 0:
        return None
    return max(paces) / min(paces)


def predicted_at(
    station_id: str, kept: dict[str, Passage], course: Course, gun: datetime
) -> tuple[datetime, float] | None:
    """When the athlete should have passed `station_id`, from their confirmed passages,
    and how far off a real passage may be (seconds); None without two anchors.

    Between two passages the time is interpolated by distance; past the last
    one it is extrapolated at the athlete's pace so far (from their start
    passage, else the gun). A runner's pace varies, so the tolerance is a
    share of the time predicted over, never under MIN_TOLERANCE_S.
    """
    # The start passage replaces the gun (twice, the start alone was two anchors and the
    # pace over their 0 km divided by zero).
    gun_then_kept = [(course.stations[0].id, gun), *((s, p.passed_at) for s, p in kept.items())]
    anchors = by_km(course, gun_then_kept)
    here = course.station(station_id).km
    before = [a for a in anchors if a[0] < here]
    after = [a for a in anchors if a[0] > here]
    if before and after:
        (k0, t0), (k1, t1) = before[-1], after[0]
        span = (t1 - t0).total_seconds()
        at = t0 + (t1 - t0) * ((here - k0) / (k1 - k0))
        return at, max(MIN_TOLERANCE_S, INTERPOLATION_TOLERANCE * span)
    if len(before) >= 2:
        (k0, t0), (k1, t1) = before[0], before[-1]
        pace = (t1 - t0).total_seconds() / (k1 - k0)
        ahead = pace * (here - k1)
        return t1 + timedelta(seconds=ahead), max(MIN_TOLERANCE_S, EXTRAPOLATION_TOLERANCE * ahead)
    return None


def corroborated(weak: Passage, kept: dict[str, Passage], course: Course, gun: datetime) -> bool:
    """A weak read counts where the athlete's confirmed passages say they were then."""
    predicted = predicted_at(weak.station_id, kept, course, gun)
    if predicted is None:
        return False
    at, tolerance = predicted
    return abs((weak.passed_at - at).total_seconds()) <= tolerance


def due_at(
    passages: Iterable[Passage], course: Course, gun: datetime
) -> list[tuple[str, tuple[datetime, bool]]]:
    """(station, (when, past_last)) one athlete (their checked passages) should have passed
    the stations where nothing of them was seen, from their confirmed passages
    (predicted_at): those before their last confirmed one, and, `past_last`, the station
    right after it, at their pace so far: the times a camera there had a runner to
    photograph. Where it took no photo then, it went silent (passages.silent_windows, which
    counts a runner past their last passage only where the camera was at work before and
    after: they may have stopped); further on they are due nowhere."""
    passages = list(passages)
    kept = {p.station_id: p for p in passages if not p.needs_review}
    if not kept:
        return []
    last = max(course.station_ids.index(sid) for sid in kept)
    seen = {p.station_id for p in passages}
    due = []
    for i, s in enumerate(course.stations[: last + 2]):
        if s.id not in seen and (predicted := predicted_at(s.id, kept, course, gun)):
            due.append((s.id, (predicted[0], i > last)))
    return due


class DueAtStations(beam.PTransform):
    """Checked passages -> (station, (time, past_last)) at which each runner not seen at a
    station was due there (due_at): StationHealth's measure of a camera gone silent."""

    def __init__(self, course: Course, athletes: tuple[Athlete, ...]):
        super().__init__()
        self._course = course
        self._waves = {a.bib: a.wave for a in athletes}

    def expand(self, passages: beam.PCollection) -> beam.PCollection:
        course, waves = self._course, self._waves  # the lambda pickles these, not the transform
        return (
            passages
            | "ByBib" >> beam.Map(lambda p: (p.bib, p))
            | "PerAthlete" >> beam.GroupByKey()
            | "Due" >> beam.FlatMapTuple(lambda bib, ps: due_of_bib(bib, ps, course, waves))
        )


def due_of_bib(
    bib: str, passages: Iterable[Passage], course: Course, waves: Mapping[str, str]
) -> list[tuple[str, tuple[datetime, bool]]]:
    # An unknown bib's passages are all in review (check_athlete): nothing to predict from.
    return due_at(passages, course, course.wave_start(waves.get(bib) or None))


@dataclass(frozen=True)
class Arrivals:
    """How far each station's photos have come in, in a live run (a batch run has them all).

    A checkpoint's photos up to a time are in when the station has sent a photo taken
    since (cameras upload in the order they shoot), or when the race's watermark is past
    that time by more than `lateness` (merge window and allowed lateness: a photo that
    came now would be too late to be timed), or when the watch has `ended`. An athlete
    read on a photo of the station held as arrived too late was seen there: the official
    decides that photo.
    """

    latest: Mapping[str, datetime]  # station -> its latest photo taken in
    watermark: datetime | None  # the race's
    lateness: timedelta
    held: frozenset[tuple[str, str]] = frozenset()  # (station, bib) on photos held too late
    ended: bool = False

    def missed(self, station_id: str, bib: str, until: datetime) -> bool:
        """Is the athlete not seen at the station, whose photos up to `until` are in?"""
        return (station_id, bib) not in self.held and self.complete(station_id, until)

    def complete(self, station_id: str, until: datetime) -> bool:
        if self.ended:
            return True
        seen = self.latest.get(station_id)
        if seen is not None and seen >= until:
            return True
        return self.watermark is not None and until + self.lateness < self.watermark


def all_in(held: Iterable[tuple[str, str]] = ()) -> Arrivals:
    """Every photo is in (a watch that ended, a re-timing); `held`: the (station, bib) read
    on photos held as arrived too late."""
    return Arrivals({}, None, timedelta(0), frozenset(held), ended=True)


def _before_unplaced(p: Passage, unplaced: Iterable[tuple[str, datetime]], course: Course) -> bool:
    """Is a passage at a crossing: last station followed, within its merge window (the same
    visit, as PassagesPerStation merges it), by a photo of the athlete there placed nowhere
    (`unplaced`: station, time by its clock)? Its time is then an approach frame's, not the
    line's. An official's passage stands."""
    window = timedelta(seconds=course.settings.merge_window_s)
    return (
        p.station_id in course.last_at
        and not p.official
        and any(s == p.station_id and p.passed_at < at < p.passed_at + window for s, at in unplaced)
    )


def _next_passage(station_id: str, seen: dict[str, Passage], course: Course) -> datetime:
    """When the athlete was at the first station after `station_id` where they were seen:
    they passed `station_id` before that."""
    after = course.station_ids[course.station_ids.index(station_id) + 1 :]
    return next(seen[s].passed_at for s in after if s in seen)


def check_athlete(
    passages: Iterable[Passage],
    course: Course,
    gun: datetime,
    listed: bool,
    arrivals: Arrivals | None = None,
    unplaced: Iterable[tuple[str, datetime]] = (),
) -> tuple[list[Passage], list[ReviewItem]]:
    """One athlete's passages with the implausible ones flagged, weak reads that fit the
    athlete's pace confirmed, passages followed by a photo of them placed nowhere
    (`unplaced`: station, time) held, and what to review (a missed checkpoint, with
    `arrivals`, once its photos of the athlete can no longer come)."""
    passages = list(passages)
    if not listed:
        return [replace(p, needs_review=True, review_reason="unknown_bib") for p in passages], []
    unplaced = list(unplaced)
    # Held for the photo's own item (ambiguous_station): deciding it times the passage.
    passages = [
        replace(p, needs_review=True, review_reason=AMBIGUOUS_STATION)
        if _before_unplaced(p, unplaced, course)
        else p
        for p in passages
    ]
    confirmed = [p for p in passages if not p.needs_review]
    chain = athletes_chain(confirmed, course, gun)
    checked: list[Passage] = []
    review: list[ReviewItem] = []
    for i, p in enumerate(confirmed):
        # An official's word stands even where it conflicts with another official's (a
        # chain holds one of them): only the pipeline's reads are flagged.
        if i in chain or p.official:
            checked.append(p)
        else:
            flagged = replace(p, needs_review=True, review_reason=IMPLAUSIBLE_SPLIT)
            checked.append(flagged)
            review.append(_review(flagged, IMPLAUSIBLE_SPLIT))
    kept = {confirmed[i].station_id: confirmed[i] for i in chain}
    for weak in sorted((p for p in passages if p.needs_review), key=lambda p: p.passed_at):
        if weak.station_id in kept:
            continue  # a confirmed passage is there: the weak read adds nothing
        # A held passage's time is the doubt: the athlete's pace cannot settle it.
        held = weak.review_reason == AMBIGUOUS_STATION
        if not held and corroborated(weak, kept, course, gun):
            checked.append(replace(weak, needs_review=False, review_reason=None))
        else:
            checked.append(weak)
    confirmed_at = {p.station_id: p for p in checked if not p.needs_review}
    review += _early_start(checked, course, gun)
    # Seen at a doubted time, or read there weakly, is not "not seen": the implausible split
    # or the weak read's item is the one item an official decides there (approved, the
    # passage counts; rejected, the next run finds the athlete missing). Two items for one
    # question counted the athlete twice, and an official working the missed checkpoints
    # alone could disqualify a runner who passed.
    doubted = {p.station_id for p in checked if p.needs_review}
    finish = confirmed_at.get(course.stations[-1].id)
    if finish is not None:
        review += [
            _review(finish, "missed_checkpoint", s.id)
            for s in course.stations[1:-1]
            if s.id not in confirmed_at
            and s.id not in doubted
            and (
                arrivals is None
                or arrivals.missed(s.id, finish.bib, _next_passage(s.id, confirmed_at, course))
            )
        ]
    return checked, review


class _CheckAthlete(beam.DoFn):
    REVIEW = "review"

    def __init__(self, course: Course, athletes: tuple[Athlete, ...]):
        self._course = course
        self._waves = {a.bib: a.wave for a in athletes}

    def process(
        self,
        element: tuple[str, Iterable[Passage]],
        held: Iterable[tuple[str, str]] | None = None,
        unplaced: Mapping[str, list[tuple[str, datetime]]] | None = None,
    ) -> Iterator[object]:
        bib, passages = element
        listed = bib in self._waves
        gun = self._course.wave_start(self._waves.get(bib) or None)
        arrivals = None if held is None else all_in(held)
        theirs = () if unplaced is None else unplaced[bib]  # a multimap: [] where none
        checked, review = check_athlete(passages, self._course, gun, listed, arrivals, theirs)
        yield from checked
        for item in review:
            yield beam.pvalue.TaggedOutput(self.REVIEW, item)


class CheckSplits(beam.PTransform):
    """Passages -> (the same passages, implausible ones flagged; review items). With `held`,
    the (station, bib) read on photos held as arrived too late (a live run's, re-timed),
    those athletes are not queued as missing there. With `unplaced`, (bib, (station, time))
    of the photos placed nowhere (placing.unplaced_sightings), a passage an approach frame
    timed before such a photo of its athlete waits for that photo's item."""

    def __init__(
        self,
        course: Course,
        athletes: tuple[Athlete, ...],
        held: beam.PCollection | None = None,
        unplaced: beam.PCollection | None = None,
    ):
        super().__init__()
        self._fn = _CheckAthlete(course, athletes)
        self._held = held
        self._unplaced = unplaced

    def expand(self, passages: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        side = {} if self._held is None else {"held": beam.pvalue.AsList(self._held)}
        if self._unplaced is not None:
            whole = self._unplaced | "UnplacedOfTheRace" >> beam.WindowInto(
                beam.window.GlobalWindows()
            )
            side["unplaced"] = beam.pvalue.AsMultiMap(whole)
        return (
            passages
            | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "ByBib" >> beam.Map(lambda p: (p.bib, p))
            | "PerAthlete" >> beam.GroupByKey()
            | "Check"
            >> beam.ParDo(self._fn, **side).with_outputs(_CheckAthlete.REVIEW, main="passages")
        )


class CheckedUntil(beam.PTransform):
    """Passages -> those until `as_of`, as CheckSplits judged them then: a weak read is not
    yet backed up by a passage that came after it (the results at --as-of). `unplaced` as
    for CheckSplits."""

    def __init__(
        self,
        course: Course,
        athletes: tuple[Athlete, ...],
        as_of: datetime,
        unplaced: beam.PCollection | None = None,
    ):
        super().__init__()
        self._check = CheckSplits(course, athletes, unplaced=unplaced)
        self._as_of = as_of

    def expand(self, passages: beam.PCollection) -> beam.PCollection:
        return (
            passages
            | "UntilAsOf" >> beam.Filter(lambda p, as_of: p.passed_at <= as_of, self._as_of)
            | "CheckSplits" >> self._check
        ).passages
