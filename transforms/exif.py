"""EXIF: what the camera says about when and where a photo was taken.

Two halves. `read_exif` runs in the per-photo analysis and only copies the
tags out of the file header (no pixel decoding). `ParseExif` runs in race
timing: it turns those tags into a UTC event time (sub-seconds, the photo's
UTC offset or else the course's timezone, the camera's or else the station's clock offset) and a
station (folder, then camera serial, then nearest station by GPS), and stamps
the photo with its event time for the windows downstream.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue
from PIL import Image

from transforms.corrections import AMBIGUOUS_STATION
from transforms.course import Course
from transforms.identify import sure_bibs
from transforms.records import CAMERA, FOLDER, GPS, REJECTED, TIME, WAVES, ExifFacts, Photo

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL = 0x010F, 0x0110
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_SUBSEC_ORIGINAL, _SUBSEC_DIGITIZED = 0x9291, 0x9292
_OFFSET_ORIGINAL = 0x9011
_BODY_SERIAL = 0xA431
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

# A photo more than this far from the race start has a wrong clock or is from another day.
MAX_DISTANCE_FROM_RACE = timedelta(days=2)

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if value is None:
        return None
    text = str(value).strip("\x00 ").strip()
    return text or None


def _degrees(dms: object, ref: object) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)  # type: ignore[union-attr]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    if not math.isfinite(value):
        return None
    return -value if _text(ref) in ("S", "W") else value


def _gps(gps_ifd: dict) -> tuple[float, float] | None:
    lat = _degrees(gps_ifd.get(_GPS_LAT), gps_ifd.get(_GPS_LAT_REF))
    lon = _degrees(gps_ifd.get(_GPS_LON), gps_ifd.get(_GPS_LON_REF))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return (lat, lon)


# PIL warns (UserWarning: "Corrupt EXIF data", "Truncated File Read") where a photo's EXIF is
# damaged but partly readable, and reads what it can: a line on the race's terminal that
# names no photo and says nothing its row in images.parquet does not (its time, or
# bad_exif). A filter, not a catch_warnings around the read: that swaps the process's
# filters, and the workers' threads would see each other's.
_PIL_TIFF = "PIL.TiffImagePlugin"


def _quiet_pil() -> None:
    """Puts the filter in where it is not: set once at import, it was gone wherever the host
    puts back the filters it had (pytest does, after collecting and after each test: PIL's
    warning was the suite's one). Looked up first, as the warnings module keeps a filter,
    (action, message, category, module, lineno): adding it again at each photo would make
    every other warning shown once per place show again."""
    if ("ignore", None, UserWarning, re.compile(_PIL_TIFF), 0) not in warnings.filters:
        warnings.filterwarnings("ignore", category=UserWarning, module=_PIL_TIFF)


def exif_facts(image: Image.Image) -> ExifFacts:
    """Copies the timing-relevant tags out of an opened (not decoded) image."""
    _quiet_pil()
    exif = image.getexif()
    sub = exif.get_ifd(_EXIF_IFD)
    original = _text(sub.get(_DATETIME_ORIGINAL))
    camera = " ".join(t for t in (_text(exif.get(_MAKE)), _text(exif.get(_MODEL))) if t)
    return ExifFacts(
        datetime_original=original or _text(sub.get(_DATETIME_DIGITIZED)),
        subsec=_text(sub.get(_SUBSEC_ORIGINAL if original else _SUBSEC_DIGITIZED)),
        offset=_text(sub.get(_OFFSET_ORIGINAL)),
        serial=_text(sub.get(_BODY_SERIAL)),
        camera=camera or None,
        gps=_gps(exif.get_ifd(_GPS_IFD)),
    )


def parse_offset(text: str | None) -> timezone | None:
    """'+02:00' -> UTC+2, 'Z' -> UTC (ISO 8601's zero offset, which some writers put in
    OffsetTimeOriginal: read as none, it timed UTC photos in the race's zone, hours off);
    None for a missing or malformed offset."""
    if (text or "").strip().upper() == "Z":
        return UTC
    match = _OFFSET.match(text or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        return None
    return timezone(-delta if sign == "-" else delta)


def parse_taken_at(exif: ExifFacts, course_tz: str, clock_offset_s: float = 0.0) -> datetime:
    """The UTC instant a photo was taken; raises ValueError when EXIF has no usable time.

    Sub-seconds are a decimal fraction written as digits ("25" is 0.25 s).
    Without an OffsetTimeOriginal the camera is assumed to run on the
    course's local time. clock_offset_s corrects a camera whose clock is off.
    """
    if not exif.datetime_original:
        raise ValueError("no DateTimeOriginal")
    local = datetime.strptime(exif.datetime_original[:19], "%Y:%m:%d %H:%M:%S")
    digits = (exif.subsec or "").strip()
    if digits.isdigit():
        local += timedelta(seconds=float("0." + digits))
    tz = parse_offset(exif.offset) or ZoneInfo(course_tz)
    return local.replace(tzinfo=tz).astimezone(UTC) + timedelta(seconds=clock_offset_s)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(min(1.0, math.sqrt(h)))


def resolve_station(folder: str, exif: ExifFacts, course: Course) -> tuple[str | None, str | None]:
    """Station of a photo and how it was found (FOLDER...TIME): its folder (a station id in
    any case, spaces around it left out: photographers name theirs 'Finish', 'Finish '),
    else its camera serial or name, else GPS within radius (of stations at one place, the
    one its time fits); (None, None) where none is found."""
    for station_id in course.station_ids:
        if folder.strip().casefold() == station_id.casefold():
            return station_id, FOLDER
    for station in course.stations:
        if station.cameras and {exif.serial, exif.camera} & set(station.cameras):
            return station.id, CAMERA
    tied = nearest_stations(exif, course)
    if len(tied) > 1:
        station_id = by_time(exif, tied, course)
        return station_id, TIME if station_id else None
    return (tied[0], GPS) if tied else (None, None)


def nearest_stations(exif: ExifFacts, course: Course) -> list[str]:
    """The stations nearest the photo's GPS within their radius, in course order: one, or
    several at one place (a loop's start and finish), which GPS cannot tell apart (the id
    sorting first took every photo: start photos timed as finishes)."""
    if exif.gps is None:
        return []
    near = [
        (distance_m(exif.gps, (s.lat, s.lon)), s)
        for s in course.stations
        if s.lat is not None and s.lon is not None
    ]
    inside = [(d, s.id) for d, s in near if d <= s.radius_m]
    nearest = min((d for d, _ in inside), default=0.0)
    # Within settings.same_place_m of the nearest: at one place for the photo's GPS (a loop's
    # start and finish share coordinates; a phone's GPS is metres off anyway).
    return [sid for d, sid in inside if d - nearest <= course.settings.same_place_m]


def by_time(
    exif: ExifFacts,
    stations: list[str],
    course: Course,
    wave_ids: Iterable[str | None] | None = None,
) -> str | None:
    """Of stations at one place, the one athletes (of `wave_ids`; None: of any wave) could
    pass when the photo was taken (its time by each station's clock); None where none or
    several could (a wave leaving while another finishes) or the photo has no time: an
    official places it, nothing is guessed."""
    fits = []
    for station_id in stations:
        offset = course.photo_clock_offset_s(station_id, exif.serial, exif.camera)
        try:
            taken_at = parse_taken_at(exif, course.timezone, offset)
        except (ValueError, OverflowError):
            return None
        if course.can_pass(station_id, taken_at, wave_ids):
            fits.append(station_id)
    return fits[0] if len(fits) == 1 else None


def by_waves(
    photo: Photo, stations: list[str], course: Course, waves: Mapping[str, str]
) -> str | None:
    """Of stations at one place that the photo's time cannot tell apart, the one the athletes
    read surely on it could pass then, by their waves' guns: at a loop's line 45 minutes
    after wave A's gun, as wave B leaves, wave A's runners are finishing and wave B's
    starting. None where no bib of the start list (`waves`: bib -> wave) is read surely, or
    their waves leave several stations (both waves on the photo)."""
    bibs = sure_bibs(photo, frozenset(waves), course.settings.review_threshold)
    wave_ids = {waves[bib] or None for bib in bibs}
    return by_time(photo.facts.exif, stations, course, wave_ids) if wave_ids else None


def place_in_race(photo: Photo, course: Course, waves: Mapping[str, str] | None = None) -> Photo:
    """The photo with its station, how that was decided (`placed_by`) and its UTC time, or
    rejected with the reason why not. `waves` (bib -> wave id, of the start list) places a
    photo whose time fits several stations at one place by the athletes read on it."""
    if photo.facts.error:
        return replace(photo, status=REJECTED, reason=photo.facts.error)
    station_id, how = resolve_station(photo.folder, photo.facts.exif, course)
    if station_id is None:
        tied = nearest_stations(photo.facts.exif, course)
        station_id = by_waves(photo, tied, course, waves) if len(tied) > 1 and waves else None
        how = WAVES  # where it placed one
        if station_id is None:
            ambiguous = len(tied) > 1
            return replace(
                photo,
                status=REJECTED,
                reason=AMBIGUOUS_STATION if ambiguous else "unknown_station",
                exif_taken_at=exif_time(photo.facts.exif, course, tied),
                could_be_at=tuple(tied) if ambiguous else (),
            )
    return time_at_station(replace(photo, placed_by=how), station_id, course)


def time_at_station(photo: Photo, station_id: str, course: Course) -> Photo:
    """The photo at the station, with its UTC time by that station's (or its camera's)
    clock; rejected as bad_exif where it has no usable time or one days off the race."""
    try:
        exif = photo.facts.exif
        offset = course.photo_clock_offset_s(station_id, exif.serial, exif.camera)
        taken_at = parse_taken_at(exif, course.timezone, offset)
    except (ValueError, OverflowError):
        return replace(photo, station_id=station_id, status=REJECTED, reason="bad_exif")
    if abs(taken_at - course.start) > MAX_DISTANCE_FROM_RACE:
        # A camera set to another day: its time of day may still help the official.
        return replace(
            photo,
            station_id=station_id,
            status=REJECTED,
            reason="bad_exif",
            exif_taken_at=taken_at,
        )
    return replace(photo, station_id=station_id, taken_at=taken_at)


def exif_time(exif: ExifFacts, course: Course, stations: Iterable[str]) -> datetime | None:
    """The time a photo's EXIF gives, for an official placing a photo that could not be
    placed: with the clock offset the `stations` it may be at agree on (its camera's, or
    theirs), else as the camera wrote it (no station, or stations whose offsets differ);
    None where EXIF has no usable time."""
    offsets = {course.photo_clock_offset_s(s, exif.serial, exif.camera) for s in stations}
    try:
        return parse_taken_at(exif, course.timezone, offsets.pop() if len(offsets) == 1 else 0.0)
    except (ValueError, OverflowError):
        return None


class _PlaceInRace(beam.DoFn):
    REJECTED = "rejected"

    def __init__(self, course: Course, waves: Mapping[str, str]):
        self._course = course
        self._waves = waves
        self._rejected = Metrics.counter("racelens", "photos_rejected")

    def process(self, photo: Photo) -> Iterator[object]:
        placed = place_in_race(photo, self._course, self._waves)
        if placed.status == REJECTED:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(self.REJECTED, placed)
        else:
            yield TimestampedValue(placed, placed.taken_at.timestamp())


class ParseExif(beam.PTransform):
    """Photos -> (timed photos stamped with their event time, rejected photos); `waves`
    (bib -> wave id, of the start list) places photos at a loop's line by their athletes."""

    def __init__(self, course: Course, waves: Mapping[str, str] | None = None):
        super().__init__()
        self._course = course
        self._waves = dict(waves or {})

    def expand(self, photos: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        place = _PlaceInRace(self._course, self._waves)
        return photos | "PlaceInRace" >> beam.ParDo(place).with_outputs(
            _PlaceInRace.REJECTED, main="timed"
        )


def earliest(photos: Iterable[Photo]) -> Photo:
    """The first photo in event time; ties broken by path so the choice is stable."""
    return min(photos, key=lambda p: (p.taken_at, p.path))
