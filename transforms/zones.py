"""Cameras on another time zone than the race's: one review item per camera, with the race's
verdict on what its clock showed.

A photo's EXIF time is a wall clock (DateTimeOriginal) and, from most cameras and phones,
the UTC offset it was set to (OffsetTimeOriginal). racelens times the photo by that offset:
the instant the camera wrote. Where the offset is not the race's (a phone or camera that
kept its owner's home zone), two things may have happened, and both happen at races:
the camera was left as it was at home, its wall clock an hour behind, and its offset makes
its times right; or its owner set the wall clock to the race's time and left the zone, and
its times are an hour off. The EXIF cannot tell; the race can: as the right one, the
athletes' passages at its station fit their times elsewhere (course order, a plausible
pace); as the wrong one, they are an hour before their start or after their next station.

So the photos keep their time (by their offset, as before), and each camera at a station
whose photos carry another offset is one `other_time_zone` item: what it wrote, the race's
offset, how many of its athletes fit as timed and as the race's local time, and, where the
local time fits, the clock_offset_s that times its photos so. A timer re-times from that
(`racelens results --course FILE`), as for any camera clock; nothing is moved unseen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import apache_beam as beam

from transforms.clocks import guns_of
from transforms.corrections import OTHER_TIME_ZONE
from transforms.course import Athlete, Course
from transforms.exif import parse_offset
from transforms.identify import ReviewItem
from transforms.passages import Passage
from transforms.records import Photo
from transforms.splits import plausible

# The race says which reading is right where it fits at least this many athletes, and at
# least VERDICT_RATIO times as many as the other: a few misread bibs fit either way.
MIN_ATHLETES = 3
VERDICT_RATIO = 2


@dataclass(frozen=True)
class ZoneShot:
    """A timed photo whose EXIF offset is not the race's at its time."""

    station_id: str
    camera: str  # its serial, else make and model, else "" (one camera at the station)
    offset: timedelta  # what it wrote
    race_offset: timedelta  # the race's, when it was taken
    image_id: str
    path: str
    taken_at: datetime

    @property
    def key(self) -> tuple[str, str, timedelta]:
        return self.station_id, self.camera, self.offset

    @property
    def shift_s(self) -> float:
        """What its time moves by as the race's local time: its wall clock read in the race's
        zone (+01:00 in a +02:00 race: an hour earlier)."""
        return (self.offset - self.race_offset).total_seconds()


def other_zone(photo: Photo, course: Course) -> ZoneShot | None:
    """The photo as a ZoneShot where it is timed and its EXIF offset differs from the race's
    then; None for a photo without an offset (timed in the race's zone) or in the race's."""
    if photo.station_id is None or photo.taken_at is None:
        return None
    exif = photo.facts.exif
    written = parse_offset(exif.offset)
    race = photo.taken_at.astimezone(ZoneInfo(course.timezone)).utcoffset()
    if written is None or race is None or written.utcoffset(None) == race:
        return None
    return ZoneShot(
        photo.station_id,
        exif.serial or exif.camera or "",
        written.utcoffset(None),
        race,
        photo.image_id,
        photo.path,
        photo.taken_at,
    )


def zone_shots(photo: Photo, course: Course) -> list[ZoneShot]:
    shot = other_zone(photo, course)
    return [shot] if shot else []


def fits(passage: Passage, others: Iterable[Passage], course: Course, gun: datetime) -> bool:
    """Does the athlete's passage fit their passages at other stations and their gun: a
    plausible pace from the nearest before it in course order (else from the gun, at the
    start) and to the nearest after it, if any?"""
    order = [s.id for s in course.stations]
    km = {s.id: s.km for s in course.stations}
    here = order.index(passage.station_id)
    seen = sorted(others, key=lambda p: order.index(p.station_id))
    earlier = [p for p in seen if order.index(p.station_id) < here]
    later = [p for p in seen if order.index(p.station_id) > here]
    at = (km[passage.station_id], passage.passed_at)
    before = (
        (km[earlier[-1].station_id], earlier[-1].passed_at)
        if earlier
        else (course.stations[0].km, gun)
    )
    after = (km[later[0].station_id], later[0].passed_at) if later else None
    return plausible(course, *before, *at) and (after is None or plausible(course, *at, *after))


@dataclass(frozen=True)
class Verdict:
    """Of the athletes timed on a camera's photos, how many fit their other times as timed
    (by its offset) and as the race's local time."""

    athletes: int
    as_timed: int
    as_local: int

    @property
    def local(self) -> bool:
        """Does the race say the camera's wall clock showed the race's local time?"""
        return self.as_local >= max(MIN_ATHLETES, VERDICT_RATIO * self.as_timed)

    @property
    def offset(self) -> bool:
        """Does the race say the camera's offset is right (its clock on its own zone)?"""
        return self.as_timed >= max(MIN_ATHLETES, VERDICT_RATIO * self.as_local)


def verdict(
    shots: Iterable[ZoneShot],
    passages: Iterable[Passage],
    course: Course,
    guns: Mapping[str, datetime],
) -> Verdict:
    """How the passages timed on one camera's `shots` (all of one key) fit the athletes'
    other passages (`guns`: bib -> their wave's gun), as timed and moved by its shift."""
    shots = list(shots)
    ids, shift = {s.image_id for s in shots}, timedelta(seconds=shots[0].shift_s)
    station_id = shots[0].station_id
    by_bib: dict[str, list[Passage]] = defaultdict(list)
    for p in passages:
        if p.bib in guns:
            by_bib[p.bib].append(p)
    athletes = as_timed = as_local = 0
    for bib, theirs in by_bib.items():
        here = [p for p in theirs if p.station_id == station_id and p.image_id in ids]
        others = [p for p in theirs if p.station_id != station_id and not p.needs_review]
        if not here:
            continue
        p = min(here, key=lambda p: p.passed_at)
        athletes += 1
        as_timed += fits(p, others, course, guns[bib])
        as_local += fits(replace(p, passed_at=p.passed_at + shift), others, course, guns[bib])
    return Verdict(athletes, as_timed, as_local)


def _hours(offset: timedelta) -> str:
    """+01:00, -03:30, as EXIF writes an offset."""
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def zone_note(shots: list[ZoneShot], found: Verdict, course: Course) -> str:
    """What the official reads on an other_time_zone item: what the camera wrote, how its
    photos are timed, what the race says, and the course's fix where the race says local."""
    first = shots[0]
    station = course.station(first.station_id)
    camera = f"camera {first.camera}" if first.camera else "camera"
    now = course.photo_clock_offset_s(first.station_id, first.camera, first.camera)
    hours = abs(first.shift_s) / 3600
    way = "earlier" if first.shift_s < 0 else "later"
    told = (
        f"{found.as_timed} of {found.athletes} athletes timed on them fit their times "
        f"elsewhere so; {found.as_local} would as the race's local time ({hours:g} h {way})"
    )
    with_clock = f" and the course's clock_offset_s {now:g}" if now else ""
    head = (
        f"The {len(shots)} photos of {station.name} from {camera} carry UTC offset "
        f"{_hours(first.offset)}; the race's is {_hours(first.race_offset)}. They are timed "
        f"by their offset (the instant the camera wrote){with_clock}: {told}."
    )
    if found.local:
        return head + (
            f" Its clock showed the race's time, its zone left at another: write "
            f"clock_offset_s: {now + first.shift_s:g} for station {station.id} in course.yaml "
            f"(now {now:g}), then run racelens results --course FILE."
        )
    if found.offset:
        return head + " Its clock ran on its own zone: the times stand."
    return head + (
        " The race cannot tell which: compare a photo's time with a clock it shows; if its "
        f"clock showed the race's time, write clock_offset_s: {now + first.shift_s:g} for "
        f"station {station.id} in course.yaml (now {now:g}), then run racelens results."
    )


def zone_review(
    shots: Iterable[ZoneShot],
    passages: Iterable[Passage],
    course: Course,
    guns: Mapping[str, datetime],
) -> list[ReviewItem]:
    """One other_time_zone item per camera, station and offset of `shots`, shown by its
    first photo, with the race's verdict from the passages (before the split check, which
    doubts those an hour off)."""
    by_key: dict[tuple, list[ZoneShot]] = defaultdict(list)
    for shot in shots:
        by_key[shot.key].append(shot)
    passages = list(passages)
    items = []
    for key in sorted(by_key, key=lambda k: (k[0], k[1], k[2].total_seconds())):
        theirs = sorted(by_key[key], key=lambda s: (s.taken_at, s.image_id))
        found = verdict(theirs, passages, course, guns)
        first = theirs[0]
        items.append(
            ReviewItem(
                first.image_id,
                first.path,
                OTHER_TIME_ZONE,
                (),
                first.station_id,
                first.taken_at,
                note=zone_note(theirs, found, course),
            )
        )
    return items


class ReviewTimeZones(beam.PTransform):
    """(passages before the split check, photos) -> one other_time_zone item per camera whose
    photos carry another UTC offset than the race's, over the whole race."""

    def __init__(self, course: Course, athletes: Iterable[Athlete]):
        super().__init__()
        self._course = course
        self._guns = guns_of(course, athletes)

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        passages, photos = pcolls
        course, guns = self._course, self._guns  # the lambdas pickle these, not the transform
        shots = (
            photos
            | "OtherZones" >> beam.FlatMap(zone_shots, course)
            | "ShotsWholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "AllShots" >> beam.combiners.ToList()
        )
        return (
            passages
            | "WholeRace" >> beam.WindowInto(beam.window.GlobalWindows())
            | "AllPassages" >> beam.combiners.ToList()
            | "Review"
            >> beam.FlatMap(
                lambda ps, found: zone_review(found, ps, course, guns),
                beam.pvalue.AsSingleton(shots),
            )
        )
