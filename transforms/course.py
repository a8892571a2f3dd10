"""The race as configured by the organiser: course (YAML) and start list (CSV).

Both are loaded once, validated, and then passed by value into the pipeline's
transforms (they are small and picklable). Every problem is reported as a
`ConfigError` whose message names the file, the line and the problem, so the
CLI can print it on one line and exit 2 before any work starts.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml


class ConfigError(ValueError):
    """A course or start list that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    km: float
    lat: float | None = None
    lon: float | None = None
    radius_m: float = 50.0
    cameras: tuple[str, ...] = ()  # serials or names (EXIF Make and Model) of its cameras
    clock_offset_s: float = 0.0
    # Cameras with a clock of their own (a phone beside the DSLR): (serial or name, offset).
    camera_clock_offsets: tuple[tuple[str, float], ...] = ()
    # Which photo of a passage's burst is the crossing (CROSSINGS); None: settings.crossing.
    crossing: str | None = None


@dataclass(frozen=True)
class Wave:
    id: str
    start: datetime  # UTC


@dataclass(frozen=True)
class Settings:
    """Per-race tuning; every value has a default that suits a road race."""

    merge_window_s: float = 20.0  # repeated reads of a bib at a station within this are one passage
    review_threshold: float = 0.75  # reads below this confidence need an official
    burst_gap_s: float = 3.0  # photos closer than this at one station may be a burst
    near_duplicate_bits: int = 8  # perceptual-hash distance (of 64 bits) for a near duplicate
    health_window_s: float = 300.0  # width of the station-health windows
    allowed_lateness_s: float = 3600.0  # a phone may upload an hour late and still count
    rank_by: str = "chip"  # chip (from the athlete's own start) or gun (from the wave start)
    # Faster than min_pace or slower than max_pace between two stations is not plausible:
    # a misread bib or a wrong clock, not a runner. Seconds per km.
    min_pace_s_per_km: float = 150.0
    max_pace_s_per_km: float = 1800.0
    # Faces (transforms/faces.py): off means no face is looked for and no descriptor stored,
    # for races whose runners did not agree to it. A face names an athlete when its distance
    # to the athlete's gallery is under face_threshold and the next athlete is face_margin
    # farther (dlib's operating point; see the README's Faces section).
    faces: bool = True
    face_threshold: float = 0.6
    face_margin: float = 0.1
    # Seconds each athlete has from their wave's start (the race's without waves): race.close
    # is one clock time, which gives a later wave less time. None: no limit but race.close.
    time_limit_s: float | None = None
    # How long the back of a wave may take to cross the start line after its gun: a big
    # city race's last runners cross many minutes after the first. Until then a photo at a
    # loop's line may be a start.
    start_crossing_s: float = 900.0
    # Stations whose distances from a photo's GPS differ by no more than this are at one
    # place for it (a loop's start and finish), told apart by the photo's time; a phone's
    # GPS is metres off, so gantries a few metres apart may need more.
    same_place_m: float = 1.0
    # Which photo of a passage's burst is the crossing, at stations that do not say: first (a
    # camera beside the line, looking across it) or last (one past the line, facing the
    # oncoming runners, who are in frame for their last 50-100 m before it).
    crossing: str = "first"
    # results.csv's separator: Excel splits a CSV at the list separator of the computer's
    # region, a comma in English, a semicolon where the comma is the decimal point (most of
    # Europe), so a comma-separated file opens there as one column. "tab" for a tab.
    csv_separator: str = ","


# The values of a station's and the race's `crossing`.
CROSSINGS = ("first", "last")
# The values of `csv_separator`, and the character each stands for.
CSV_SEPARATORS = {",": ",", ";": ";", "tab": "\t"}


@dataclass(frozen=True)
class Course:
    race_id: str
    race_name: str
    timezone: str
    start: datetime  # UTC gun time of the race
    stations: tuple[Station, ...]
    waves: tuple[Wave, ...] = ()
    settings: Settings = field(default_factory=Settings)
    close: datetime | None = None  # UTC; after it, athletes still out are dnf

    def close_of(self, wave_id: str | None) -> datetime | None:
        """When the course closes for an athlete of the wave: race.close, or the wave's start
        plus settings.time_limit_s, whichever comes first; None: it never closes."""
        limit = self.settings.time_limit_s
        ends = [
            self.close,
            None if limit is None else self.wave_start(wave_id) + timedelta(seconds=limit),
        ]
        return min((end for end in ends if end is not None), default=None)

    def closes(self) -> tuple[datetime, ...]:
        """Every time the course closes for some athletes (the race start's and each wave's),
        in order."""
        return tuple(sorted({c for c in map(self.close_of, self._start_ids()) if c is not None}))

    def status_changes(self) -> tuple[datetime, ...]:
        """Every time statuses change with no photo arriving, in order: each start closing
        (athletes not seen, waiting until then, are dns) and each close (those still out are
        dnf). A live leaderboard is published again at each."""
        starts = set(map(self.start_closes, self._start_ids()))
        return tuple(sorted(starts | set(self.closes())))

    def _start_ids(self) -> list[str | None]:
        """The race's start (None: athletes of no wave) and each wave's."""
        return [None] + [w.id for w in self.waves]

    @property
    def last_close(self) -> datetime | None:
        """When the course has closed for every athlete (the latest wave's close); None: it
        never closes, so an athlete last seen at the start stays running."""
        return max(self.closes(), default=None)

    def is_closed(self, as_of: datetime, wave_id: str | None = None) -> bool:
        """Is the course closed, as of then, for the athletes of the wave?"""
        close = self.close_of(wave_id)
        return close is not None and as_of >= close

    @property
    def last_at(self) -> frozenset[str]:
        """The stations whose passages are at their last photo (crossing: last)."""
        race = self.settings.crossing
        return frozenset(s.id for s in self.stations if (s.crossing or race) == "last")

    @property
    def station_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.stations)

    def station(self, station_id: str) -> Station:
        for s in self.stations:
            if s.id == station_id:
                return s
        raise KeyError(station_id)

    def passing_window(
        self, station_id: str, wave_ids: Iterable[str | None] | None = None
    ) -> tuple[datetime | None, datetime]:
        """When athletes (of `wave_ids`; None: of every wave) can pass a station: from the
        first gun plus the fastest plausible run to it (min_pace_s_per_km; the start: any
        time before, the front row waits on the line) until the last gun plus a field's time
        to cross the start and the slowest plausible run to it (max_pace_s_per_km). A photo at
        one place with other stations (a loop's start and finish) is placed by it."""
        guns = [self.wave_start(w) for w in (self._start_ids() if wave_ids is None else wave_ids)]
        first, station = self.stations[0], self.station(station_id)
        km = station.km - first.km
        earliest = min(guns) + timedelta(seconds=km * self.settings.min_pace_s_per_km)
        crossing = self.settings.start_crossing_s
        latest = max(guns) + timedelta(seconds=crossing + km * self.settings.max_pace_s_per_km)
        return (None if station == first else earliest, latest)

    def can_pass(
        self, station_id: str, at: datetime, wave_ids: Iterable[str | None] | None = None
    ) -> bool:
        """Could athletes (of `wave_ids`; None: of every wave) pass the station at `at`, by
        its passing_window?"""
        earliest, latest = self.passing_window(station_id, wave_ids)
        return (earliest is None or earliest <= at) and at <= latest

    def photo_clock_offset_s(self, station_id: str, serial: str | None, name: str | None) -> float:
        """What to add to a photo's EXIF time: its camera's own clock_offset_s where the course
        gives one (a camera's clock is its own wherever its photos are placed), else that of
        the station it was placed at. serial and name are the photo's EXIF BodySerialNumber
        and Make and Model, either matched as a station's plain camera entry is."""
        for station in self.stations:
            for camera, offset in station.camera_clock_offsets:
                if camera in (serial, name):
                    return offset
        return self.station(station_id).clock_offset_s

    def start_closes(self, wave_id: str | None) -> datetime:
        """When the back of the wave has crossed the start: its gun plus start_crossing_s."""
        return self.wave_start(wave_id) + timedelta(seconds=self.settings.start_crossing_s)

    def wave_start(self, wave_id: str | None) -> datetime:
        for w in self.waves:
            if w.id == wave_id:
                return w.start
        return self.start


@dataclass(frozen=True)
class Athlete:
    bib: str
    name: str
    category: str = ""
    gender: str = ""
    club: str = ""
    wave: str = ""
    photo: str = ""  # reference face photo, resolved against the start list's folder
    line: int = field(default=0, compare=False)  # in the start list, for error messages


def waves_by_bib(athletes: Iterable[Athlete]) -> dict[str, str]:
    """bib -> wave id ('' for none) of the start list's athletes."""
    return {a.bib: a.wave for a in athletes}


def _read_text(path: str) -> str:
    # Beam's FileSystems would also accept gs:// here, but config is read on the
    # launching machine before the pipeline exists, where a local path is the norm.
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    encoding = _encoding_of(raw)
    if encoding != "utf-16" and b"\0" in raw:  # every other byte of Latin text in UTF-16
        raise ConfigError(f"{path}: UTF-16 text without a byte-order mark?{SAVE_AS_UTF8}")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding == "utf-16":
            raise ConfigError(f"{path}: not UTF-16 text (byte {e.start}){SAVE_AS_UTF8}") from e
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte {e.start}{_as_windows_1252(raw[e.start])})"
            f"{SAVE_AS_UTF8}"
        ) from e


def _as_windows_1252(byte: int) -> str:
    """What a byte that is not UTF-8 is in Windows-1252, the encoding in which a Western
    European spreadsheet saves "CSV" (Latin-1's letters where both have them): ', 0xC5 is
    'Å' in Windows-1252', the letter a timer can find in the file; '' for none."""
    try:
        character = bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # one of the five bytes it leaves undefined
        return ""
    return f", 0x{byte:02X}, '{character}' in Windows-1252" if character.isprintable() else ""


# What a spreadsheet program saves as "Unicode text" begins with UTF-16's byte-order mark;
# decoded as UTF-8 it was "not UTF-8 text (byte 0)".
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SAVE_AS_UTF8 = ": save it as UTF-8 text (a spreadsheet program's 'CSV UTF-8')"


def _encoding_of(raw: bytes) -> str:
    """UTF-16 where a byte-order mark says so, else UTF-8 (with the BOM that spreadsheet
    programs write, or without)."""
    return "utf-16" if raw.startswith(_UTF16_BOMS) else "utf-8-sig"


def _as_written(value: Any, where: str) -> datetime:
    """An ISO 8601 time with its UTC offset, as written (YAML gives an unquoted one parsed)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as e:
            raise ConfigError(f"{where}: '{value}' is not an ISO 8601 time") from e
    if parsed.tzinfo is None:
        raise ConfigError(f"{where}: '{value}' needs a UTC offset, e.g. +02:00")
    return parsed


def corrected_offset(offset_s: float, error_s: float) -> float:
    """The clock_offset_s that cancels a clock error (+ fast) estimated with `offset_s` in
    force, to a tenth of a second."""
    return round(offset_s - error_s, 1)


def local_instant(
    text: str, where: str, timezone: str, race_start: datetime | None
) -> datetime | None:
    """A time a timer writes (a corrections log's, `--as-of`) as UTC; None for no text. One
    without a UTC offset is the race's local time (the course's timezone), as a camera's
    without one is: a timer typing 10:42:07 reads the race's clock, and taken as UTC it
    moved the passage by the zone's offset (two hours in Oslo in May); a time of day alone
    is on the race's day. The dashboard writes every time with its date and offset."""
    if not text:
        return None
    zone = ZoneInfo(timezone)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        parsed = _on_race_day(text, where, zone, race_start)
        if parsed is None:
            raise ConfigError(f"{where} '{text}' is not an ISO 8601 time") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _on_race_day(text: str, where: str, zone: ZoneInfo, start: datetime | None) -> datetime | None:
    """A time of day alone (10:42:07, as the dashboard's time field takes it) on the race's
    day, its start's date in the race's timezone; None where the text is no time of day."""
    try:
        clock = time.fromisoformat(text)
    except ValueError:
        return None
    if start is None:  # a log read without its course: the day is not guessed
        raise ConfigError(f"{where} '{text}' is a time of day: give its date too")
    return datetime.combine(start.astimezone(zone).date(), clock, clock.tzinfo or zone)


def _offset_text(offset: timedelta) -> str:
    minutes = round(offset.total_seconds() / 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _always_utc(zone: ZoneInfo, year: int) -> bool:
    """Is the zone UTC all year (UTC, Etc/UTC, Atlantic/Reykjavik)?"""
    return all(
        datetime(year, month, 1, tzinfo=zone).utcoffset() == timedelta(0) for month in (1, 7)
    )


def race_instant(value: Any, where: str, timezone: str, what: str) -> datetime:
    """A time of the race (its start, a wave's, its close) as UTC, refusing a UTC offset that
    is neither UTC's nor the race's timezone's at that time: last winter's +01:00 copied
    into a May race in Oslo moved the gun, and every gun time and close, by an hour without
    a word. A course in UTC (its cameras' clocks, not where the race is) takes any offset.
    `what` names the time in the message ("race.start")."""
    written = _as_written(value, f"{where}{what}")
    zone = ZoneInfo(timezone)
    offset, local = written.utcoffset(), written.astimezone(zone).utcoffset()
    if offset not in (timedelta(0), local) and not _always_utc(zone, written.year):
        raise ConfigError(
            f"{where}{what} '{value}' has UTC offset {_offset_text(offset)}, but {timezone} "
            f"is at {_offset_text(local)} then (write {_offset_text(local)}, or the time in "
            "UTC with Z)"
        )
    return written.astimezone(UTC)


def _lines_of_items(node: yaml.Node, key: str) -> list[int]:
    """1-based line of each item of the top-level sequence `key`, for error messages."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for k, v in node.value:
        if k.value == key and isinstance(v, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in v.value]
    return []


def _line_of(node: yaml.Node, *keys: str) -> str:
    """'line N: ' of a nested key (e.g. race, start) as far as it exists, for error messages."""
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == key), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return f"line {line}: " if line else ""


# The keys the course reads, by section (settings are checked apart, every key).
COURSE_KEYS = ("race", "stations", "waves", "settings")
RACE_KEYS = ("id", "name", "timezone", "start", "close")
STATION_KEYS = (
    "id",
    "name",
    "km",
    "lat",
    "lon",
    "radius_m",
    "cameras",
    "clock_offset_s",
    "crossing",
)
WAVE_KEYS = ("id", "start")
# How like a known key a key must be to be taken for its misspelling (difflib's ratio):
# clock_offset, closes, setting, radius, camera are; description, organiser, notes are not.
MISSPELT = 0.75


def _check_keys(
    raw: dict, known: tuple[str, ...], where: Callable[[str], str], what: str = "key"
) -> None:
    """Refuses a key that is a misspelling of a known one (`where(key)` says where it is):
    ignored, "clock_offset" left every photo of its station off by the camera's error,
    "closes" left the course open, "setting" ranked by chip instead of gun, and nothing said
    so. Keys far from any known one are the organiser's notes, ignored as before."""
    for key in map(str, raw):
        near = difflib.get_close_matches(key, known, n=1, cutoff=MISSPELT)
        if key not in known and near:
            raise ConfigError(f"{where(key)}unknown {what} '{key}' (did you mean {near[0]}?)")


def _number(raw: dict, key: str, default: float | None, where: str) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number, not '{value}'")
    return float(value)


def _parse_station(raw: Any, where: str) -> Station:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ConfigError(f"{where}: a station needs at least an id")
    sid = str(raw["id"])
    if "/" in sid or sid.strip() != sid:
        raise ConfigError(f"{where}: station id '{sid}' must be a plain word")
    _check_keys(raw, STATION_KEYS, lambda _: f"{where}: station '{sid}': ")
    km = _number(raw, "km", None, where)
    if km is None:
        raise ConfigError(f"{where}: station '{sid}' needs km")
    lat = _number(raw, "lat", None, where)
    lon = _number(raw, "lon", None, where)
    if (lat is None) != (lon is None):
        raise ConfigError(f"{where}: station '{sid}' needs both lat and lon, or neither")
    if lat is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ConfigError(f"{where}: station '{sid}' lat/lon out of range")
    cameras = raw.get("cameras") or []
    if not isinstance(cameras, list):
        raise ConfigError(f"{where}: station '{sid}' cameras must be a list")
    listed = [_parse_camera(c, f"{where}: station '{sid}'") for c in cameras]
    radius_m = _number(raw, "radius_m", 50.0, where)
    if radius_m <= 0:  # no photo would be near enough: every one placed by GPS rejected
        raise ConfigError(f"{where}: station '{sid}' radius_m must be above 0, not {radius_m:g}")
    offset = _clock_offset(raw, f"{where}: station '{sid}'", 0.0)
    crossing = raw.get("crossing")
    if crossing is not None:
        _check_crossing(crossing, f"{where}: station '{sid}'")
    return Station(
        id=sid,
        name=str(raw.get("name", sid)),
        km=km,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        cameras=tuple(camera for camera, _ in listed),
        clock_offset_s=offset,
        camera_clock_offsets=tuple((c, o) for c, o in listed if o is not None),
        crossing=crossing,
    )


def _check_crossing(value: Any, where: str) -> None:
    """Refuses a crossing that is not one of CROSSINGS: "Last" or "latest" taken for first
    would time every runner of a camera facing them at their first photo, seconds early."""
    if value not in CROSSINGS:
        raise ConfigError(f"{where} crossing must be first or last, not '{value}'")


def _clock_offset(raw: dict, what: str, default: float | None) -> float | None:
    """A station's or a camera's clock_offset_s, seconds, within a day."""
    offset = _number(raw, "clock_offset_s", default, what)
    if offset is not None and abs(offset) > MAX_CLOCK_OFFSET_S:  # every photo bad_exif
        raise ConfigError(
            f"{what} clock_offset_s {offset:g} is more than a day "
            f"({MAX_CLOCK_OFFSET_S:g} s): it is the camera clock's error, in seconds"
        )
    return offset


CAMERA_KEYS = ("serial", "name", "clock_offset_s")


def _parse_camera(raw: Any, where: str) -> tuple[str, float | None]:
    """A station's camera entry: a serial or name ("SN1234", the station's clock), or a
    mapping of serial or name and the camera's own clock_offset_s (a phone beside a DSLR at
    one station, each clock off by its own error). Both are matched against a photo's EXIF
    serial and camera name alike: the key says which the organiser copied."""
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return str(raw), None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: a camera is a serial or name, or a mapping of serial or name and "
            f"clock_offset_s, not '{raw}'"
        )
    given = [raw[k] for k in ("serial", "name") if raw.get(k) not in (None, "")]
    if not given:
        raise ConfigError(f"{where}: a camera mapping needs serial or name")
    if len(given) > 1:
        raise ConfigError(f"{where}: a camera mapping has serial or name, not both")
    camera = str(given[0])
    unknown = sorted(str(k) for k in raw if k not in CAMERA_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: camera '{camera}': unknown key '{unknown[0]}' "
            "(serial or name, clock_offset_s)"
        )
    return camera, _clock_offset(raw, f"{where}: camera '{camera}'", None)


# A camera clock set to the wrong day is a day out; more is no clock error (milliseconds?).
MAX_CLOCK_OFFSET_S = 86400.0


# Settings that are a length of time: a window, a session gap, a burst's gap.
POSITIVE_SETTINGS = ("merge_window_s", "burst_gap_s", "health_window_s")
# Settings that may be 0 but no less: below it a start closed before its gun (every start
# photo of a loop unplaced), and no photo was at its nearest station.
NON_NEGATIVE_SETTINGS = ("start_crossing_s", "same_place_m")


def _parse_settings(raw: Any, path: str, node: yaml.Node | None = None) -> Settings:
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: settings must be a mapping")
    defaults = Settings()
    unknown = sorted(set(raw) - set(defaults.__dataclass_fields__))
    if unknown:
        where = _line_of(node, "settings", unknown[0]) if node is not None else ""
        raise ConfigError(f"{path}: {where}unknown setting '{unknown[0]}'")
    rank_by = raw.get("rank_by", defaults.rank_by)
    if rank_by not in ("chip", "gun"):
        raise ConfigError(f"{path}: settings: rank_by must be chip or gun, not '{rank_by}'")
    faces = raw.get("faces", defaults.faces)
    if not isinstance(faces, bool):
        raise ConfigError(f"{path}: settings: faces must be true or false, not '{faces}'")
    _check_time_limit(raw.get("time_limit_s"), path)
    crossing = raw.get("crossing", defaults.crossing)
    _check_crossing(crossing, f"{path}: {_line_of(node, 'settings', 'crossing')}settings:")
    separator = raw.get("csv_separator", defaults.csv_separator)
    if separator not in CSV_SEPARATORS:
        where = _line_of(node, "settings", "csv_separator")
        raise ConfigError(
            f"{path}: {where}settings: csv_separator must be ',', ';' or tab, not '{separator}'"
        )
    texts = ("rank_by", "faces", "crossing", "csv_separator")
    numbers = {k: v for k, v in raw.items() if k not in texts}
    values = {k: _number(raw, k, getattr(defaults, k), f"{path}: settings") for k in numbers}
    values = {k: int(v) if k == "near_duplicate_bits" else v for k, v in values.items()}
    values["rank_by"] = rank_by
    values["faces"] = faces
    values["crossing"] = crossing
    values["csv_separator"] = separator
    if not 0.0 < values.get("face_threshold", 0.6) < 2.0 or values.get("face_margin", 0) < 0:
        raise ConfigError(
            f"{path}: settings: face_threshold must be between 0 and 2, face_margin at least 0"
        )
    if not 0.0 <= values.get("review_threshold", 0.75) <= 1.0:
        raise ConfigError(f"{path}: settings: review_threshold must be between 0 and 1")
    # Beam's session and fixed windows need a length: 0 or less ended the run in a traceback.
    for name in POSITIVE_SETTINGS:
        if values.get(name, 1.0) <= 0:
            raise ConfigError(f"{path}: settings: {name} must be above 0, not {values[name]:g}")
    for name in NON_NEGATIVE_SETTINGS:
        if values.get(name, 0.0) < 0:
            raise ConfigError(f"{path}: settings: {name} must be at least 0, not {values[name]:g}")
    settings = Settings(**values)
    if settings.min_pace_s_per_km >= settings.max_pace_s_per_km:
        raise ConfigError(f"{path}: settings: min_pace_s_per_km must be below max_pace_s_per_km")
    return settings


# Under a minute a time limit is no race's: hours or minutes written where seconds are meant,
# which would make every athlete dnf within seconds of their start.
MIN_TIME_LIMIT_S = 60.0


def _check_time_limit(value: Any, path: str) -> None:
    if value is None:
        return
    limit = _number({"time_limit_s": value}, "time_limit_s", None, f"{path}: settings")
    if limit is not None and limit < MIN_TIME_LIMIT_S:
        raise ConfigError(
            f"{path}: settings: time_limit_s must be at least {MIN_TIME_LIMIT_S:g} seconds "
            f"(6 hours: 21600), not {limit:g}"
        )


def parse_course(text: str, path: str = "course.yaml") -> Course:
    """Parses and validates a course; raises ConfigError naming the file and line."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {line}not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with race and stations")
    _check_keys(data, COURSE_KEYS, lambda key: f"{path}: {_line_of(node, key)}")
    race = data.get("race")
    if not isinstance(race, dict):
        raise ConfigError(f"{path}: missing 'race' section")
    _check_keys(race, RACE_KEYS, lambda key: f"{path}: {_line_of(node, 'race', key)}race: ")
    for key in ("id", "timezone", "start"):
        if not race.get(key):
            raise ConfigError(f"{path}: {_line_of(node, 'race')}race needs '{key}'")
    try:
        ZoneInfo(str(race["timezone"]))
    except (ZoneInfoNotFoundError, ValueError) as e:
        where = _line_of(node, "race", "timezone")
        raise ConfigError(f"{path}: {where}unknown timezone '{race['timezone']}'") from e
    raw_stations = data.get("stations")
    if not isinstance(raw_stations, list) or len(raw_stations) < 2:
        raise ConfigError(f"{path}: needs a list of at least two stations (start and finish)")
    lines = _lines_of_items(node, "stations")
    stations = tuple(
        _parse_station(raw, f"{path}: line {lines[i] if i < len(lines) else '?'}")
        for i, raw in enumerate(raw_stations)
    )
    _check_station_order(stations, lines, path)
    timezone = str(race["timezone"])
    # The race's start before the waves: a course copied whole from last winter names its
    # first line first.
    start = race_instant(
        race["start"], f"{path}: {_line_of(node, 'race', 'start')}", timezone, "race.start"
    )
    waves = _parse_waves(data.get("waves"), _lines_of_items(node, "waves"), path, timezone)
    close_at = f"{path}: {_line_of(node, 'race', 'close')}"
    close = (
        race_instant(race["close"], close_at, timezone, "race.close") if race.get("close") else None
    )
    if close is not None:
        _check_close(close, start, waves, close_at)
    return Course(
        race_id=str(race["id"]),
        race_name=str(race.get("name", race["id"])),
        timezone=timezone,
        start=start,
        stations=stations,
        waves=waves,
        settings=_parse_settings(data.get("settings"), path, node),
        close=close,
    )


def still_running(athletes: int) -> str:
    """Why athletes stay running after the race, where the course never closes (the run
    summary's line and the dashboard's note: one wording). Either closes it: race.close, or
    settings: time_limit_s where waves start apart."""
    return (
        f"{athletes} athlete{'s' if athletes != 1 else ''} still running: the course has no "
        "race.close or time_limit_s, so nobody is dnf (add one to the course, then racelens "
        "results --course FILE)"
    )


def _check_close(close: datetime, start: datetime, waves: tuple[Wave, ...], where: str) -> None:
    """A close at or before a start (a wrong day or offset) would make every athlete of it
    dnf the moment they start."""
    starts = [("the race", start)] + [(f"wave {w.id}", w.start) for w in waves]
    for what, at in starts:
        if close <= at:
            raise ConfigError(
                f"{where}race.close ({close:%Y-%m-%d %H:%M} UTC) is not after the start of {what}"
            )


def _check_station_order(stations: tuple[Station, ...], lines: list[int], path: str) -> None:
    seen: dict[str, str] = {}  # ids by their case-folded form: folders match them in any case
    camera_at: dict[str, str] = {}  # a camera's photos go to one station: the first listing it
    for i, s in enumerate(stations):
        where = f"{path}: line {lines[i] if i < len(lines) else '?'}"
        if s.id in seen.values():
            raise ConfigError(f"{where}: duplicate station id '{s.id}'")
        if s.id.casefold() in seen:
            first = seen[s.id.casefold()]
            raise ConfigError(f"{where}: station id '{s.id}' differs from '{first}' only in case")
        seen[s.id.casefold()] = s.id
        for camera in s.cameras:
            if camera_at.get(camera) == s.id:
                raise ConfigError(f"{where}: camera '{camera}' is listed twice for '{s.id}'")
            if camera in camera_at:
                raise ConfigError(
                    f"{where}: camera '{camera}' is listed for '{camera_at[camera]}' and '{s.id}'"
                )
            camera_at[camera] = s.id
        if not i and s.km != 0:  # chip times run from the first station: it is the start
            raise ConfigError(
                f"{where}: the first station '{s.id}' is at km {s.km}; the start comes first, "
                "at km 0 (list it even without a camera: athletes are timed from the gun)"
            )
        if i and s.km <= stations[i - 1].km:
            raise ConfigError(
                f"{where}: station '{s.id}' (km {s.km}) is not after "
                f"'{stations[i - 1].id}' (km {stations[i - 1].km}); list stations in course order"
            )


def _parse_waves(raw: Any, lines: list[int], path: str, timezone: str) -> tuple[Wave, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: waves must be a list")
    waves: list[Wave] = []
    lines_of: dict[str, object] = {}
    for i, w in enumerate(raw):
        line = lines[i] if i < len(lines) else "?"
        wave = _parse_wave(w, f"{path}: line {line}", timezone)
        if wave.id in lines_of:  # its athletes would all be timed from the first one's start
            raise ConfigError(
                f"{path}: line {line}: duplicate wave id '{wave.id}' "
                f"(first on line {lines_of[wave.id]})"
            )
        lines_of[wave.id] = line
        waves.append(wave)
    return tuple(waves)


def _parse_wave(raw: Any, where: str, timezone: str) -> Wave:
    if not isinstance(raw, dict) or not raw.get("id") or not raw.get("start"):
        raise ConfigError(f"{where}: a wave needs id and start")
    wid = str(raw["id"])
    _check_keys(raw, WAVE_KEYS, lambda _: f"{where}: wave '{wid}': ")
    return Wave(
        id=wid, start=race_instant(raw["start"], f"{where}: ", timezone, f"wave '{wid}' start")
    )


def load_course(path: str) -> Course:
    return parse_course(_read_text(path), path)


START_LIST_COLUMNS = ("bib", "name", "category", "gender", "club", "wave", "photo")
# A registration system's export names athletes in two columns; where there is no name
# column they are joined, first then last, into the name.
NAME_PARTS = ("first_name", "last_name")


def _header_key(heading: str) -> str:
    """A column heading as the list's key: in any case, spaces as underscores ("Bib",
    "First Name", as spreadsheets head them; "firstname" is first_name)."""
    key = heading.strip().casefold().replace(" ", "_")
    return {"firstname": "first_name", "lastname": "last_name"}.get(key, key)


def _check_name_parts(header: list[str], path: str) -> bool:
    """Does the name come from first_name and last_name (there is no name column)? One of
    them alone is refused: a list of first names only would publish "Ola" for each Ola."""
    given = [part for part in NAME_PARTS if part in header]
    if "name" in header or not given:
        return False
    if len(given) == 1:
        other = next(part for part in NAME_PARTS if part not in given)
        raise ConfigError(
            f"{path}: line 1: column {given[0]} without {other} (add {other}, or give a name "
            "column)"
        )
    return True


# A bib as a database or pandas exports a number column ("101.0"): no printed bib reads so,
# and the athlete's photos were "Unknown #101", the athlete dns.
DECIMAL_BIB = re.compile(r"\d+\.0+")
# What separates a start list's columns, in the order looked for in its header: a comma, else
# what a spreadsheet writes where the decimal mark is a comma (Excel's "CSV" in Norway or
# Germany, whose list separator is ';') or in its "Unicode text" (tabs). A header without a
# comma is unambiguous: every list needs two columns (bib and name).
SEPARATORS = (",", ";", "\t")


def _separator_of(text: str) -> str:
    """The separator of the columns of the start list `text`, from its header line."""
    header = text.splitlines()[0] if text else ""
    return next((s for s in SEPARATORS if s in header), ",")


def parse_start_list(text: str, path: str = "startlist.csv") -> tuple[Athlete, ...]:
    """Parses a start list; raises ConfigError naming the file, line and problem."""
    # Universal newlines: Excel for Mac's "CSV (Macintosh)" ends lines with CR alone. A last
    # line without its line break gets one: a quote left open on it then runs over a line, as
    # on any other line (it took the rest of the line as the value).
    ended = text if text.endswith(("\n", "\r")) else f"{text}\n"
    reader = csv.DictReader(io.StringIO(ended, newline=None), delimiter=_separator_of(text))
    # In any case: a spreadsheet's export heads them "Bib", "Name", "Category".
    header = [_header_key(h) for h in (reader.fieldnames or [])]
    _check_header(header, path)
    joined = _check_name_parts(header, path)
    missing = [c for c in ("bib",) + (() if joined else ("name",)) if c not in header]
    if missing:
        raise ConfigError(f"{path}: line 1: missing column '{missing[0]}' (header: bib,name,...)")
    reader.fieldnames = header
    athletes: list[Athlete] = []
    lines_of: dict[str, int] = {}
    spellings: Spellings = {}
    for row in reader:
        line = reader.line_num
        _check_row(row, len(header), line, path)
        values = {k: (row.get(k) or "").strip() for k in START_LIST_COLUMNS}
        if joined:
            values["name"] = " ".join(
                p for p in ((row.get(k) or "").strip() for k in NAME_PARTS) if p
            )
        if not any(values.values()):
            continue  # a row cleared of its contents: a spreadsheet still exports it, ',,'
        if not values["bib"]:
            raise ConfigError(f"{path}: line {line}: empty bib")
        if DECIMAL_BIB.fullmatch(values["bib"]):
            raise ConfigError(
                f"{path}: line {line}: bib {values['bib']} is a number with decimals (from a "
                "database or spreadsheet export? write each bib as printed)"
            )
        if not values["name"]:
            raise ConfigError(f"{path}: line {line}: empty name for bib {values['bib']}")
        if values["bib"] in lines_of:
            raise ConfigError(
                f"{path}: line {line}: duplicate bib {values['bib']} "
                f"(first on line {lines_of[values['bib']]})"
            )
        lines_of[values["bib"]] = line
        _check_spellings(values, line, path, spellings)
        # Gender is a code (F, M, X) typed by many hands: "f" is "F", one group of places.
        values["gender"] = values["gender"].upper()
        athletes.append(Athlete(**values, line=line))
    if not athletes:
        raise ConfigError(f"{path}: no athletes")
    return tuple(athletes)


def _check_row(row: dict, columns: int, line: int, path: str) -> None:
    """Refuses a row with a value running over several lines, or with values beyond the
    header's columns.

    A quote left open runs on to the next one, swallowing the athletes between (the line is
    where the value ends: the bib names where it began). Values beyond the columns were
    ignored: an unquoted comma in a name ("Hansen, Ola") shifts every value after it. Empty
    ones are a spreadsheet's trailing commas.
    """
    bib = (row.get("bib") or "").strip()
    if any("\n" in v for v in row.values() if isinstance(v, str)):
        raise ConfigError(
            f"{path}: line {line}: bib {bib}: a value runs over several lines (an unclosed quote?)"
        )
    extra = next((v.strip() for v in row.get(None, ()) if v.strip()), None)
    if extra is not None:
        raise ConfigError(
            f"{path}: line {line}: bib {bib}: more values than the {columns} columns ('{extra}' "
            "beyond the last: a comma in a value? quote the value)"
        )


def _check_header(header: list[str], path: str) -> None:
    """Refuses a column given twice (the later one's values silently won) or misspelt
    ("categroy": ignored, no athlete had a category place); other columns are ignored."""
    named = [h for h in header if h]  # a spreadsheet's trailing commas head no column
    twice = next((h for i, h in enumerate(named) if h in named[:i]), None)
    if twice is not None:
        raise ConfigError(f"{path}: line 1: column '{twice}' twice")
    known = START_LIST_COLUMNS + NAME_PARTS
    _check_keys(dict.fromkeys(named), known, lambda _: f"{path}: line 1: ", "column")


# The first spelling seen of a bib's number or of a category (case-folded), and its line.
Spellings = dict[tuple[str, object], tuple[str, int]]


def _other_spelling(
    spellings: Spellings, key: tuple[str, object], written: str, line: int
) -> tuple[str, int] | None:
    """The first spelling under key and its line where it is not written; remembers the first."""
    first = spellings.setdefault(key, (written, line))
    return None if first[0] == written else first


def _check_spellings(values: dict[str, str], line: int, path: str, spellings: Spellings) -> None:
    """Refuses a bib or category that an earlier line wrote otherwise.

    Bibs "007" and "7" are two strings but one number: a results website (or the
    spreadsheet the list went through) reads both as 7, and reads one edit off both ("07")
    are no athlete's. Categories "M40" and "m40" would be two groups with two winners; the
    category is shown as written, so which spelling is right is the organiser's to say.
    """
    bib, category = values["bib"], values["category"]
    if bib.isdecimal() and (first := _other_spelling(spellings, ("bib", int(bib)), bib, line)):
        raise ConfigError(
            f"{path}: line {line}: bib {bib} is bib {first[0]} (line {first[1]}) as a "
            "number (leading zeros lost in a spreadsheet? write each bib as printed)"
        )
    key = ("category", category.casefold())
    if category and (first := _other_spelling(spellings, key, category, line)):
        raise ConfigError(
            f"{path}: line {line}: bib {bib}: category '{category}' differs from '{first[0]}' "
            f"(line {first[1]}) only in case (one category: write it one way)"
        )


def load_start_list(path: str) -> tuple[Athlete, ...]:
    return parse_start_list(_read_text(path), path)


def check_waves(course: Course, athletes: tuple[Athlete, ...], path: str) -> None:
    """Every athlete's wave must exist in the course, or their times would be wrong."""
    known = {w.id for w in course.waves}
    for a in athletes:
        if a.wave and a.wave not in known:
            raise ConfigError(
                f"{path}: line {a.line}: bib {a.bib}: wave '{a.wave}' is not in the course"
            )
