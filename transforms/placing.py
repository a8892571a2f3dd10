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

Only passages from other photos decide (a photo placed here places no other), so the
answer does not depend on the order photos are looked at. A live run times the race again
at each update: a photo whose athlete's earlier passage has not arrived yet waits in the
review queue as ambiguous_station, and is placed at the update after that passage comes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from transforms.corrections import AMBIGUOUS_STATION
from transforms.course import Athlete, Course, waves_by_bib
from transforms.exif import by_time, nearest_stations, time_at_station
from transforms.identify import IdentifyAthletes, sure_bibs
from transforms.passages import Passage, PassagesPerStation
from transforms.records import REJECTED, Photo
from transforms.splits import plausible, plausible_chain

# (photo path, the stations one athlete read on it allows)
Verdict = tuple[str, frozenset[str]]


def is_asked(photo: Photo, known: frozenset[str], threshold: float) -> bool:
    """Is the photo one that athletes' passages may place: at a place of several stations,
    left ambiguous by its time and waves, with a listed bib read surely on it?"""
    return (
        photo.status == REJECTED
        and photo.reason == AMBIGUOUS_STATION
        and bool(sure_bibs(photo, known, threshold))
    )


def _allows(course: Course, station_id: str, at: datetime, p: Passage) -> bool:
    """Could the athlete of passage `p` be at the station at `at`? At p's own station only
    within the merge window of p (the same passage: a runner passes a station once);
    elsewhere at a plausible pace, before or after p in course order."""
    if p.station_id == station_id:
        return abs((at - p.passed_at).total_seconds()) <= course.settings.merge_window_s
    here, there = course.station(station_id), course.station(p.station_id)
    if course.station_ids.index(p.station_id) < course.station_ids.index(station_id):
        return plausible(course, there.km, p.passed_at, here.km, at)
    return plausible(course, here.km, at, there.km, p.passed_at)


def allowed_stations(
    photo: Photo, course: Course, wave: str | None, passages: Iterable[Passage]
) -> frozenset[str]:
    """Of the stations at the photo's place whose time window fits an athlete of `wave`, the
    ones where the athlete's sure passages (`passages`: theirs, from other photos) allow
    them to be when it was taken. A passage the athlete's other passages contradict (a
    misread bib) is left out, as CheckSplits leaves it out of the results."""
    sure = [p for p in passages if not p.needs_review]
    chain = [sure[i] for i in plausible_chain(sure, course, course.wave_start(wave))]
    exif = photo.facts.exif
    allowed = set()
    for station_id in nearest_stations(exif, course):
        timed = time_at_station(photo, station_id, course)
        if by_time(exif, [station_id], course, [wave]) != station_id or timed.taken_at is None:
            continue
        if all(_allows(course, station_id, timed.taken_at, p) for p in chain):
            allowed.add(station_id)
    return frozenset(allowed)


def verdicts_of(
    bib: str,
    photos: Iterable[Photo],
    passages: Iterable[Passage],
    course: Course,
    waves: Mapping[str, str],
) -> list[Verdict]:
    """What one athlete's passages say of each asked photo they were read on."""
    theirs = list(passages)
    wave = waves.get(bib) or None
    return [(p.path, allowed_stations(p, course, wave, theirs)) for p in photos]


def placed_by(photo: Photo, allowed: Iterable[frozenset[str]], course: Course) -> Photo:
    """The photo at the one station every athlete read on it allows, with its time there;
    as it was (ambiguous_station) where they allow none or several."""
    allowed = list(allowed)
    common = frozenset.intersection(*allowed) if allowed else frozenset()
    if len(common) != 1:
        return photo
    (station_id,) = common
    return time_at_station(replace(photo, status=None, reason=None), station_id, course)


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
    allowed: dict[str, list[frozenset[str]]] = {p.path: [] for p in photos}
    for bib, on in asked.items():
        for path, stations in verdicts_of(bib, on, theirs.get(bib, ()), course, waves):
            allowed[path].append(stations)
    return [placed_by(p, allowed[p.path], course) for p in photos]


class _Verdicts(beam.DoFn):
    def __init__(self, course: Course, waves: Mapping[str, str]):
        self._course = course
        self._waves = waves

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[Verdict]:
        bib, joined = element
        yield from verdicts_of(bib, joined["photos"], joined["passages"], self._course, self._waves)


def _placed(
    element: tuple[str, dict[str, list]], course: Course
) -> Iterator[TimestampedValue | Photo]:
    _, joined = element
    for photo in joined["photo"]:
        placed = placed_by(photo, joined["allowed"], course)
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
            | "Placed" >> beam.FlatMap(_placed, self._course)
        )


class IdentifyAtSharedPlaces(beam.PTransform):
    """Photos -> {"photos", "sightings", "review"} as `identify` (IdentifyAthletes) makes
    them, with the photos left ambiguous_station that athletes' passages may place
    (`is_asked`) placed first, by the passages of every other photo (PlaceByOwnPassages)."""

    def __init__(self, course: Course, athletes: Iterable[Athlete], identify: IdentifyAthletes):
        super().__init__()
        self._course = course
        self._waves = waves_by_bib(athletes)
        self._identify = identify

    def expand(self, photos: beam.PCollection) -> dict[str, beam.PCollection]:
        settings = self._course.settings
        known, threshold = frozenset(self._waves), settings.review_threshold
        asked, other = photos | "AskedOrNot" >> beam.Partition(
            lambda p, _: 0 if is_asked(p, known, threshold) else 1, 2
        )
        identified = other | "IdentifyOthers" >> self._identify
        passages = identified.sightings | "TheirPassages" >> PassagesPerStation(
            settings.merge_window_s, settings.allowed_lateness_s
        )
        placed = (asked, passages) | "PlaceByOwnPassages" >> PlaceByOwnPassages(
            self._course, self._waves
        )
        more = placed | "IdentifyPlaced" >> self._identify
        return {
            name: (identified[name], more[name]) | f"All{name.title()}" >> beam.Flatten()
            for name in ("photos", "sightings", "review")
        }
