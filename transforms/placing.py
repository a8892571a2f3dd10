"""Photos at a place several stations share, placed by the athletes' own passages.

An out-and-back course passes one spot twice (km 3 out, km 7 back). Where the photo's time
and the waves of the athletes read on it cannot tell those stations apart (fast runners
coming back while slow ones of the same wave still go out), ParseExif rejects the photo as
ambiguous_station. A timer looks at the athlete's other passages: one placed at km 3 twenty
minutes earlier is coming back now, one not yet at km 3 and started too recently to have
run to km 7 is going out. So does this stage, for each athlete read surely on the photo:
of the stations its time fits for their wave, those their sure passages elsewhere allow
(a runner passes a station once, at a pace within min_pace_s_per_km and max_pace_s_per_km
between stations). The photo is placed where every such athlete allows exactly one
station; where any allows several or they disagree, it stays for an official, as before.

Where an athlete's passages allow either station (seen at the start and the finish only),
a timer goes by pace: at the way back, a runner who started at 10:00 and finished at 10:57
was at 10:37 at the pace they ran the rest; at the way out they would have run 3.3 km in 37
minutes and 6.7 km in the 20 after. Such a photo is placed by the placing of the athlete's
photos whose pace is much the most even (EVEN_PACE_MARGIN), and says so (placed_by: pace);
a close call stays for an official. A decision by their passages comes first.

An athlete's photos at the spot are judged together: two of them 20 minutes apart are the
way out and the way back, whatever else is known. A photo placed here places no photo of
another athlete, so the answer does not depend on the order photos are looked at. A live
run times the race again at each update: a photo whose athlete's earlier passage has not
arrived yet waits in the review queue as ambiguous_station, and is placed at the update
after that passage comes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from transforms.corrections import AMBIGUOUS_STATION
from transforms.course import Athlete, Course, waves_by_bib
from transforms.dedup import MarkBursts
from transforms.exif import distance_m, nearest_stations, time_at_station
from transforms.identify import IdentifyAthletes, sure_bibs
from transforms.passages import Passage, PassagesPerStation
from transforms.records import PACE, PASSAGES, REJECTED, Photo
from transforms.splits import pace_spread, plausible, plausible_chain

# A station and a time an athlete was (or may have been) there.
Place = tuple[str, datetime]


class Allowed(NamedTuple):
    """The places (each a station and the photo's time by its clock) one athlete read on a
    photo allows it: by their passages, and of those, by their pace (the same where their
    pace decides nothing)."""

    by_passages: frozenset[Place]
    by_pace: frozenset[Place]


# (photo path, what one athlete read on it allows)
Verdict = tuple[str, Allowed]


def is_asked(photo: Photo, known: frozenset[str], threshold: float) -> bool:
    """Is the photo one that athletes' passages may place: at a place of several stations,
    left ambiguous by its time and waves, with a listed bib read surely on it?"""
    return (
        photo.status == REJECTED
        and photo.reason == AMBIGUOUS_STATION
        and bool(sure_bibs(photo, known, threshold))
    )


def shares_places(course: Course) -> bool:
    """Can a photo be at one place with several stations: do two stations' GPS circles
    overlap? Where none do (most courses), no photo is ambiguous_station."""
    located = [s for s in course.stations if s.lat is not None and s.lon is not None]
    return any(
        distance_m((a.lat, a.lon), (b.lat, b.lon)) <= a.radius_m + b.radius_m
        for a, b in itertools.combinations(located, 2)
    )


# How many consistent placings of one athlete's asked photos are gathered; past it (a runner
# on dozens of photos at the spot, never seen elsewhere) each photo is judged alone.
MAX_PLACINGS = 256

# A placing is decided by pace alone where its pace_spread (slowest sector's pace over the
# fastest's) is this many times below every other placing's. A wrong one then needs a
# runner whose slowest sector is at least this many times their fastest (the wrong placing's
# spread is at least 1): at 5 min/km, a half-hour stop within 3.3 km. In the out-and-back
# demo races (sectors within 5 % of a runner's pace) the placings decided were 3.35 to 4.00
# times more even than the other, all right; at 2, a runner who fades to half speed could
# look even the wrong way where the spot's distances allow it.
EVEN_PACE_MARGIN = 3.0


def _paced(course: Course, here: Place, there: Place) -> bool:
    """Could one runner be at two stations at these times: at a plausible pace between
    them, in course order? (At one station, whether two times are one visit is told by all
    the times there: `_one_visit_each`.)"""
    if here[0] == there[0]:
        return True
    a, b = sorted((here, there), key=lambda place: course.station_ids.index(place[0]))
    return plausible(course, course.station(a[0]).km, a[1], course.station(b[0]).km, b[1])


def _one_visit_each(course: Course, places: Iterable[Place]) -> bool:
    """Are the times at each station one visit, as PassagesPerStation merges them: a chain
    of gaps each shorter than the merge window (a session), not a span within it? An
    approach camera photographs a runner every few seconds for 10-25 s before the line, more
    than merge_window_s from first to last frame, and that is one passage."""
    times: dict[str, list[datetime]] = {}
    for station_id, at in places:
        times.setdefault(station_id, []).append(at)
    window = course.settings.merge_window_s
    return all(
        (later - earlier).total_seconds() < window
        for visit in times.values()
        for earlier, later in itertools.pairwise(sorted(visit))
    )


def _fitting_places(photo: Photo, course: Course, wave: str | None) -> list[Place]:
    """The stations at the photo's place whose passing window, for an athlete of `wave`,
    holds the photo's time by that station's clock, with that time."""
    places = []
    for station_id in nearest_stations(photo.facts.exif, course):
        at = time_at_station(photo, station_id, course).taken_at
        if at is not None and course.can_pass(station_id, at, [wave]):
            places.append((station_id, at))
    return places


def consistent_placings(
    options: list[list[Place]],
    course: Course,
    known: tuple[Place, ...] = (),
    placed: tuple[Place, ...] = (),
) -> Iterator[tuple[Place, ...]]:
    """Every placing (one of each photo's `options`, after the `placed` ones) at all of
    whose places, and the `known` ones, one runner could have been: at a plausible pace
    between stations, once at each. Depth first, each branch left at its first pace
    contradiction: a burst's frames seconds apart are at one station in any placing, so
    eight frames of the way out and two of the way back give a few branches to follow, not
    the 1,024 of every combination (past MAX_PLACINGS each photo was judged alone, and a
    runner on a burst or two with companions was left to an official). Whether a station's
    times are one visit is judged on the whole placing: a frame placed later may be the link
    between two placed ones."""
    if len(placed) == len(options):
        if _one_visit_each(course, (*known, *placed)):
            yield placed
        return
    for place in options[len(placed)]:
        if all(_paced(course, place, other) for other in placed):
            yield from consistent_placings(options, course, known, (*placed, place))


def evenest(
    placings: list[tuple[Place, ...]], known: tuple[Place, ...], course: Course
) -> tuple[Place, ...] | None:
    """Of several placings of an athlete's photos, the one at whose places, with the
    `known` ones, their pace is much more even than at every other's (EVEN_PACE_MARGIN);
    None where none is, or where some placing's pace cannot be judged (fewer than two
    sectors between the places seen: the gun is not one, a runner crosses the start up to
    minutes after it)."""
    spreads = [pace_spread(course, (*known, *placing)) for placing in placings]
    if len(placings) < 2 or None in spreads:
        return None
    best, second = sorted(range(len(placings)), key=spreads.__getitem__)[:2]
    return placings[best] if spreads[second] >= EVEN_PACE_MARGIN * spreads[best] else None


def verdicts_of(
    bib: str,
    photos: Iterable[Photo],
    passages: Iterable[Passage],
    course: Course,
    waves: Mapping[str, str],
) -> list[Verdict]:
    """What one athlete's passages say of each asked photo they were read on: the places
    (station, time) it has in some placing of all those photos that fits their sure
    passages (`passages`: theirs, from other photos) and each other, and the places it has
    in the placing their pace makes clear (`evenest`), if any. Two photos at the spot 20
    minutes apart are the way out and the way back, whatever else is known. A passage their
    other passages contradict (a misread bib) is left out, as CheckSplits leaves it out of
    the results."""
    wave = waves.get(bib) or None
    sure = [p for p in passages if not p.needs_review]
    chain = [sure[i] for i in plausible_chain(sure, course, course.wave_start(wave))]
    known = tuple((p.station_id, p.passed_at) for p in chain)
    # In time order, so that the frames of one passage follow each other and a branch that
    # splits them is left at once.
    photos = sorted(photos, key=lambda p: (p.facts.exif.datetime_original or "", p.path))
    options = [
        [o for o in _fitting_places(p, course, wave) if all(_paced(course, o, k) for k in known)]
        for p in photos
    ]
    placings = list(itertools.islice(consistent_placings(options, course, known), MAX_PLACINGS + 1))
    if len(placings) > MAX_PLACINGS:  # too many: each photo judged alone
        alone = [
            frozenset(fit for (fit,) in consistent_placings([fits], course, known))
            for fits in options
        ]
        return [(p.path, Allowed(a, a)) for p, a in zip(photos, alone, strict=True)]
    by_passages = [frozenset(placing[i] for placing in placings) for i in range(len(photos))]
    paced = evenest(placings, known, course)
    by_pace = by_passages if paced is None else [frozenset((place,)) for place in paced]
    return [(p.path, Allowed(a, b)) for p, a, b in zip(photos, by_passages, by_pace, strict=True)]


def placed_by(photo: Photo, allowed: Iterable[Allowed]) -> Photo:
    """The photo at the one place (station, and its time by that station's clock) every
    athlete read on it allows by their passages, else by their pace; as it was
    (ambiguous_station) where they allow none or several."""
    allowed = list(allowed)
    for how, sets in (
        (PASSAGES, [a.by_passages for a in allowed]),
        (PACE, [a.by_pace for a in allowed]),
    ):
        common = frozenset.intersection(*sets) if sets else frozenset()
        if len(common) == 1:
            return _placed_at(photo, *common, how)
    return photo


def _placed_at(photo: Photo, place: Place, how: str) -> Photo:
    station_id, at = place
    # Placed: the EXIF time and stations of its doubt (records.Photo) are no longer shown.
    return replace(
        photo,
        station_id=station_id,
        placed_by=how,
        taken_at=at,
        status=None,
        reason=None,
        exif_taken_at=None,
        could_be_at=(),
    )


def unplaced_sightings(
    photo: Photo, course: Course, known: frozenset[str]
) -> Iterator[tuple[str, Place]]:
    """(bib, place) of each listed athlete read surely on a photo left ambiguous_station, at
    each station of its place timed by a passage's last photo (crossing: last), with the
    photo's time by that station's clock: the line's frame an approach camera's passage
    there may have missed (CheckSplits holds that passage)."""
    if not is_asked(photo, known, course.settings.review_threshold):
        return
    for station_id in course.last_at.intersection(photo.could_be_at):
        at = time_at_station(photo, station_id, course).taken_at
        if at is not None:
            for bib in sure_bibs(photo, known, course.settings.review_threshold):
                yield bib, (station_id, at)


def _asked_of_athletes(
    photo: Photo, known: frozenset[str], threshold: float
) -> Iterator[tuple[str, Photo]]:
    """(bib, photo) for each listed athlete read surely on the photo: whose passages are
    asked where it was taken."""
    for bib in sure_bibs(photo, known, threshold):
        yield bib, photo


def place_by_own_passages(
    photos: Iterable[Photo],
    passages: Iterable[Passage],
    course: Course,
    waves: Mapping[str, str],
) -> list[Photo]:
    """PlaceByOwnPassages without a pipeline: the asked `photos`, each placed where the
    athletes read surely on it allow one station, else as they were."""
    photos, known = list(photos), frozenset(waves)
    asked: dict[str, list[Photo]] = {}
    for photo in photos:
        for bib, _ in _asked_of_athletes(photo, known, course.settings.review_threshold):
            asked.setdefault(bib, []).append(photo)
    theirs: dict[str, list[Passage]] = {}
    for p in passages:
        theirs.setdefault(p.bib, []).append(p)
    allowed: dict[str, list[Allowed]] = {p.path: [] for p in photos}
    for bib, on in asked.items():
        for path, places in verdicts_of(bib, on, theirs.get(bib, ()), course, waves):
            allowed[path].append(places)
    return [placed_by(p, allowed[p.path]) for p in photos]


class _Verdicts(beam.DoFn):
    def __init__(self, course: Course, waves: Mapping[str, str]):
        self._course = course
        self._waves = waves

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[Verdict]:
        bib, joined = element
        yield from verdicts_of(bib, joined["photos"], joined["passages"], self._course, self._waves)


def _placed(element: tuple[str, dict[str, list]]) -> Iterator[TimestampedValue | Photo]:
    _, joined = element
    for photo in joined["photo"]:
        placed = placed_by(photo, joined["allowed"])
        # Stamped with its time where it has one now, as ParseExif stamps the photos it times.
        yield TimestampedValue(placed, placed.taken_at.timestamp()) if placed.taken_at else placed


class PlaceByOwnPassages(beam.PTransform):
    """(asked photos, passages of the other photos) -> the asked photos, each placed at the
    station the athletes read surely on it allow (its time by that station's clock), else
    as they were: per athlete, then per photo, in the whole race's window."""

    def __init__(self, course: Course, waves: Mapping[str, str]):
        super().__init__()
        self._course = course
        self._waves = dict(waves)

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        photos, passages = inputs
        known, threshold = frozenset(self._waves), self._course.settings.review_threshold
        whole = photos | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
        theirs = (
            passages
            | "PassagesOfTheRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "ByBib" >> beam.Map(lambda p: (p.bib, p))
        )
        verdicts = (
            {
                "photos": whole | "ByAthlete" >> beam.FlatMap(_asked_of_athletes, known, threshold),
                "passages": theirs,
            }
            | "PerAthlete" >> beam.CoGroupByKey()
            | "Verdicts" >> beam.ParDo(_Verdicts(self._course, self._waves))
        )
        return (
            {"photo": whole | "ByPath" >> beam.Map(lambda p: (p.path, p)), "allowed": verdicts}
            | "PerPhoto" >> beam.CoGroupByKey()
            | "Placed" >> beam.FlatMap(_placed)
        )


class IdentifyAtSharedPlaces(beam.PTransform):
    """Photos -> {"photos", "sightings", "review"} as `identify` (IdentifyAthletes) makes
    them, with the photos left ambiguous_station that athletes' passages may place
    (`is_asked`) placed first, by the passages of every other photo (PlaceByOwnPassages),
    and their bursts marked as DedupPhotos marks any station's (`held`: the paths it holds
    as arrived too late)."""

    def __init__(
        self,
        course: Course,
        athletes: Iterable[Athlete],
        identify: IdentifyAthletes,
        held: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._course = course
        self._waves = waves_by_bib(athletes)
        self._identify = identify
        self._held = held

    def expand(self, photos: beam.PCollection) -> dict[str, beam.PCollection]:
        outputs = ("photos", "sightings", "review")
        if not shares_places(self._course):  # no photo can be ambiguous_station: no stage
            identified = photos | "Identify" >> self._identify
            return {name: identified[name] for name in outputs}
        settings = self._course.settings
        known, threshold = frozenset(self._waves), settings.review_threshold
        asked, other = photos | "AskedOrNot" >> beam.Partition(
            lambda p, _: 0 if is_asked(p, known, threshold) else 1, 2
        )
        identified = other | "IdentifyOthers" >> self._identify
        passages = identified.sightings | "TheirPassages" >> PassagesPerStation(
            settings.merge_window_s, settings.allowed_lateness_s, self._course.last_at
        )
        placed = (
            (asked, passages)
            | "PlaceByOwnPassages" >> PlaceByOwnPassages(self._course, self._waves)
            # Rejected (ambiguous_station) when DedupPhotos ran, they took part in no burst.
            | "MarkBursts"
            >> MarkBursts(
                settings.burst_gap_s,
                settings.near_duplicate_bits,
                self._held,
                self._course.last_at,
            )
        )
        more = placed | "IdentifyPlaced" >> self._identify
        return {
            name: (identified[name], more[name]) | f"All{name.title()}" >> beam.Flatten()
            for name in outputs
        }
