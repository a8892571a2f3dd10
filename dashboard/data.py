"""All reading of results for the dashboard, cached.

Every reader is keyed by the file's path and its version (inode, size, modification
time), so a file that a run (or the re-timing after a decision) has just replaced, or a
decision just appended to the log, is read at once, while unchanged
files come from the cache; the TTL only frees entries of files no longer asked for. A
results file that does not exist yet (a live run that has just started) reads as an
empty table with the file's schema, so pages need no special case for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import streamlit as st

from pipeline.results_files import read_table
from transforms import schemas
from transforms.corrections import LogReading, read_corrections_leniently
from transforms.course import load_course
from transforms.schemas import (
    ATHLETE_PHOTOS_FILE,
    IMAGES_FILE,
    LEADERBOARD_FILE,
    PASSAGES_FILE,
    REVIEW_FILE,
    STATIONS_FILE,
)

CACHE_TTL_S = 600
CACHE_ENTRIES = 64

RUN_FILE = "run.json"
PARQUET_FILES = (LEADERBOARD_FILE, PASSAGES_FILE, IMAGES_FILE, REVIEW_FILE, STATIONS_FILE)

_SCHEMAS = {
    IMAGES_FILE: schemas.IMAGES,
    PASSAGES_FILE: schemas.PASSAGES,
    REVIEW_FILE: schemas.REVIEW,
    STATIONS_FILE: schemas.STATIONS,
    LEADERBOARD_FILE: schemas.leaderboard_schema(()),
    ATHLETE_PHOTOS_FILE: schemas.ATHLETE_PHOTOS,
}


@dataclass(frozen=True)
class StationInfo:
    id: str
    name: str
    km: float | None = None


@dataclass(frozen=True)
class Race:
    """What the pages need of the course: names, stations in course order, local time."""

    name: str
    timezone: str
    stations: tuple[StationInfo, ...]
    start: datetime | None = None  # the gun, UTC: the race's day; None: no course known
    # The course's last close (race.close or the last wave's time limit), UTC; None: never.
    close: datetime | None = None
    course: str | None = None  # the course file the results were made with (run.json)


Version = tuple[int, int, int]
MISSING: Version = (0, 0, 0)


def version(path: str) -> Version:
    """What tells a file's contents apart cheaply: inode, size and modification time. A
    file replaced by a rename (new inode) or appended to (new size) gets a new version
    even within one tick of the file system's clock; MISSING when it does not exist (yet)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return MISSING
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def has_results(out: str) -> bool:
    return os.path.isfile(os.path.join(out, LEADERBOARD_FILE))


# A resource, not data: shared by every session, and callers never modify a table (pandas'
# assign and filters make new frames).
@st.cache_resource(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _read_table(path: str, file_version: Version) -> pd.DataFrame:
    """The results file as a table, read once per version and never copied: st.cache_data
    hands out an unpickled copy at every call, and images.parquet's at 30,000 photos took
    270-360 CPU ms (0.3 ms now), most of each run of the review page."""
    if file_version == MISSING:
        return _SCHEMAS[os.path.basename(path)].empty_table().to_pandas()
    return read_table(path).to_pandas()  # from one open file: runs replace results meanwhile


def _table(out: str, name: str) -> pd.DataFrame:
    path = os.path.join(out, name)
    return _read_table(path, version(path))


def images(out: str) -> pd.DataFrame:
    return _table(out, IMAGES_FILE)


def passages(out: str) -> pd.DataFrame:
    return _table(out, PASSAGES_FILE)


def review(out: str) -> pd.DataFrame:
    return _table(out, REVIEW_FILE)


def leaderboard(out: str) -> pd.DataFrame:
    return _table(out, LEADERBOARD_FILE)


def stations(out: str) -> pd.DataFrame:
    return _table(out, STATIONS_FILE)


def athlete_photos(out: str) -> pd.DataFrame:
    """Every photo each athlete was identified on (by bib, face or an official)."""
    return _table(out, ATHLETE_PHOTOS_FILE)


def results_written_at(out: str) -> int:
    """When the results were last written (ns since the epoch; 0 for none yet)."""
    return max(version(os.path.join(out, name))[2] for name in PARQUET_FILES)


def athletes(out: str) -> pd.DataFrame:
    """The start list as the leaderboard has it (bib, name, category, status), in bib order.

    Rows the pipeline added for numbers missing from the start list are left out: an
    official assigns photos to listed athletes only.
    """
    board = leaderboard(out)
    listed = board[~board["flags"].map(lambda flags: "unknown_bib" in list(flags))]
    columns = ["bib", "name", "category", "status"]
    return listed[columns].sort_values("bib", key=_bib_order).reset_index(drop=True)


def _bib_order(bibs: pd.Series) -> pd.Series:
    return bibs.map(lambda b: (int(b) if b.isdigit() else float("inf"), b))


def _race_from_columns(out: str) -> Race:
    """Without the run's course (results copied without their run.json, or written by a
    racelens of before live runs recorded their inputs at their start), the leaderboard's
    per-station columns still give the stations in course order."""
    columns = leaderboard(out).columns
    ids = [c[3:-2] for c in columns if c.startswith("at_") and c.endswith("_s")]
    return Race(os.path.basename(out), "UTC", tuple(StationInfo(i, i) for i in ids))


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _read_race(out: str, run_version: Version, board_version: Version) -> Race:
    try:
        with open(os.path.join(out, RUN_FILE), encoding="utf-8") as f:
            path = json.load(f)["course"]
        course = load_course(path)
    except (OSError, ValueError, KeyError):  # ConfigError is a ValueError
        return _race_from_columns(out)
    return Race(
        course.race_name,
        course.timezone,
        tuple(StationInfo(s.id, s.name, s.km) for s in course.stations),
        course.start,
        course.last_close,
        path,
    )


def race(out: str) -> Race:
    return _read_race(
        out, version(os.path.join(out, RUN_FILE)), version(os.path.join(out, LEADERBOARD_FILE))
    )


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _read_corrections(
    path: str, file_version: Version, timezone: str, start: datetime | None
) -> LogReading:
    return read_corrections_leniently(path, timezone, start)


def corrections(path: str, out: str) -> LogReading:
    """The corrections log's valid rows and its malformed lines (reported, never fatal); a
    time typed without an offset is the race's local time, as the pipeline reads it."""
    known = race(out)
    return _read_corrections(path, version(path), known.timezone, known.start)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _read_bytes(path: str, file_version: Version) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def file_bytes(path: str) -> bytes | None:
    """The bytes of a results file or the log, for a download; None when it does not exist."""
    file_version = version(path)
    return _read_bytes(path, file_version) if file_version != MISSING else None


def clear() -> None:
    """Forget everything read: after a decision has been re-timed into the results."""
    st.cache_data.clear()
    _read_table.clear()
