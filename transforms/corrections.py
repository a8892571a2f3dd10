"""An official's decisions: the append-only corrections log, and what it decides per image.

Each row of the log says what one official decided about one image
(`image_id, action, bib, station_id, passed_at, decided_at, by`; times are ISO 8601, the
race's local time (the course's timezone) where they give no UTC offset, a time of day alone
on the race's day). Rows are
applied in `decided_at` order: `reject` clears what the image says (with a bib: that read
of the image is not so, its other reads stand), `reject_face` with a bib says a face on the
image is not that athlete (the image's reads and other faces stand), `reject_unlisted` with a
bib rejects a read of a number the start list did not list (it counts again, and is asked
about, once the list lists it), `assign`
credits a bib (the official's word replaces the OCR's for that image),
`approve` confirms the reads the pipeline was unsure of (with a bib: the official saw that
read, listed since it was rejected unlisted, and it stands), and `accept` times a
photo that arrived too late (live modes) as if it had come in time. Further actions
concern an athlete rather than an image (image_id may be empty): `dsq`
disqualifies and `dnf` retires the athlete with that bib; `from_gun` times their early
start (early_start) from their wave's gun; `reinstate` undoes any of them. `seen` says an
official saw to a camera (a station health item, named by
the photo that stood for the spell, or by its station alone where the camera sent none): it
decides nothing about that photo; `clock_seen` says an official saw to a checkpoint's
clock (clock_suspect, named by its station), which decides nothing either.

The dashboard appends to the log with `append_corrections` (several officials
may decide at once) and reads it with `read_corrections_leniently`, which
reports a malformed line instead of failing; `racelens run --corrections`
loads it strictly with `load_corrections`.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from transforms.course import ConfigError, _read_text, local_instant

CORRECTION_COLUMNS = ("image_id", "action", "bib", "station_id", "passed_at", "decided_at", "by")
# A face like some athletes' reference photos, surely none of them (transforms.identify).
FACE_UNCERTAIN = "face_uncertain"
# An unsure face match (face_uncertain) rejected: the face is not that athlete. Apart from
# `reject`, which rejected the whole photo there, its weak reads and other faces with it.
REJECT_FACE = "reject_face"
# A confident number not in the start list rejected (unknown_bib): the race clock, a
# spectator's shirt, or a runner the list lacks. Apart from `reject`, which stayed rejected
# once the list named the runner (a late entry), untold: such a read counts again once its
# number is listed, and goes to review as LISTED_SINCE_REJECTED.
REJECT_UNLISTED = "reject_unlisted"
LISTED_SINCE_REJECTED = "listed_since_rejected"
# accept: a photo held as arrived too late (live modes) is timed as if it had come in time.
IMAGE_ACTIONS = ("assign", "reject", "approve", "accept", REJECT_FACE, REJECT_UNLISTED)
ATHLETE_ACTIONS = ("dsq", "dnf", "reinstate")
# An early start (EARLY_START) timed from the athlete's wave's gun after all (the official
# judged the photo shows them waiting on the line, not crossing it): about the athlete's
# start, not their status, which the athlete page shows and decides.
FROM_GUN = "from_gun"
START_ACTIONS = (FROM_GUN,)
# A checkpoint's clock_suspect item seen to at its station (the course's clock_offset_s
# fixed, or the clock judged right): it decides nothing about the photo it showed.
CLOCK_SEEN = "clock_seen"
CAMERA_ACTIONS = ("seen", CLOCK_SEEN)
ACTIONS = IMAGE_ACTIONS + ATHLETE_ACTIONS + START_ACTIONS + CAMERA_ACTIONS

# A copy of a photo kept under another path (transforms.dedup): one row each, as read.
EXACT_DUPLICATE = "exact_duplicate"
# Photos whose place in the race only an official can give (an assignment's station_id and
# passed_at): the same photo came in for several stations; it has no time or no station.
STATION_CONFLICT = "station_conflict"
BAD_EXIF = "bad_exif"
UNKNOWN_STATION = "unknown_station"
# Placed by GPS where several stations are (a loop's start and finish), at a time when
# athletes could pass more than one (or none) of them.
AMBIGUOUS_STATION = "ambiguous_station"
UNPLACED = frozenset({BAD_EXIF, UNKNOWN_STATION, AMBIGUOUS_STATION})
# A photo that arrived after the allowed lateness (live modes), held until an official
# accepts it (or decides it otherwise).
TOO_LATE = "too_late"
# A passage whose pace the athlete's other passages contradict (transforms.splits): the one
# item about that athlete at that station while it is open.
IMPLAUSIBLE_SPLIT = "implausible_split"
# A start passage the athlete's later passages show was their crossing, before their wave's
# gun (a wave jumper): timed from the photo and flagged until an official decides (the
# result stands; `from_gun`; `dsq`). Both a review reason and a leaderboard flag.
EARLY_START = "early_start"
# A camera whose photos carry another UTC offset than the race's (transforms.zones): one item
# per camera and station, shown by its first photo; its note says how it is timed.
OTHER_TIME_ZONE = "other_time_zone"
# A checkpoint whose camera clock looks off (transforms.clocks): about the station, not a photo.
CLOCK_SUSPECT = "clock_suspect"


@dataclass(frozen=True)
class Correction:
    image_id: str
    action: str
    bib: str = ""
    station_id: str = ""
    passed_at: datetime | None = None
    decided_at: datetime | None = None  # UTC; decisions apply in this order
    by: str = ""


@dataclass(frozen=True)
class Decision:
    """The net effect of all corrections of one image."""

    rejected: bool = False
    approved: bool = False
    assigned: tuple[Correction, ...] = ()
    accepted: bool = False  # timed as read, although it arrived too late
    # Bibs whose read on the photo is not so (`reject` with a bib): the race clock read as
    # 3304 beside a runner's 3719; rejecting the whole photo lost 3719's passage.
    not_read: frozenset[str] = frozenset()
    # Athletes an unsure face on the photo is not (`reject_face`): no longer its candidates.
    not_faces: frozenset[str] = frozenset()
    # Numbers read on the photo rejected while the start list did not list them.
    not_listed: frozenset[str] = frozenset()

    @property
    def overrides(self) -> bool:
        """Does the official's word replace what the pipeline makes of the photo?"""
        return self.rejected or self.approved or bool(self.assigned)


@dataclass(frozen=True)
class LogReading:
    """A corrections log as far as it could be read: its valid rows and what was wrong."""

    corrections: tuple[Correction, ...] = ()
    problems: tuple[str, ...] = ()  # one line each, naming the file and the line


def _correction(
    values: dict[str, str],
    where: str,
    timezone: str = "UTC",
    race_start: datetime | None = None,
) -> Correction:
    if values["action"] not in ACTIONS:
        raise ConfigError(f"{where}: action must be one of {', '.join(ACTIONS)}")
    needs_bib = ("assign", REJECT_FACE, REJECT_UNLISTED) + ATHLETE_ACTIONS + START_ACTIONS
    if values["action"] in needs_bib and not values["bib"]:
        raise ConfigError(f"{where}: {values['action']} needs a bib")
    if values["action"] in IMAGE_ACTIONS and not values["image_id"]:
        raise ConfigError(f"{where}: {values['action']} needs an image_id")
    # A camera that sent no photo has its item about no photo: seen to at its station.
    if values["action"] in CAMERA_ACTIONS and not (values["image_id"] or values["station_id"]):
        raise ConfigError(f"{where}: {values['action']} needs an image_id or a station_id")
    if values["action"] == CLOCK_SEEN and not values["station_id"]:
        raise ConfigError(f"{where}: {CLOCK_SEEN} needs a station_id")  # a clock is a station's
    times = {
        column: local_instant(values[column], f"{where}: {column}", timezone, race_start)
        for column in ("passed_at", "decided_at")
    }
    return Correction(**(values | times))


def _read_log(text: str, path: str, timezone: str, race_start: datetime | None) -> LogReading:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "image_id" not in reader.fieldnames:
        return LogReading(
            problems=(f"{path}: line 1: expected header {','.join(CORRECTION_COLUMNS)}",)
        )
    rows, problems = [], []
    for row in reader:
        values = {k: (row.get(k) or "").strip() for k in CORRECTION_COLUMNS}
        try:
            where = f"{path}: line {reader.line_num}"
            rows.append(_correction(values, where, timezone, race_start))
        except ConfigError as e:
            problems.append(str(e))
    return LogReading(tuple(rows), tuple(problems))


def parse_corrections(
    text: str,
    path: str = "corrections.csv",
    timezone: str = "UTC",
    race_start: datetime | None = None,
) -> tuple[Correction, ...]:
    """The rows of a log, times without an offset in `timezone` (the course's), a time of day
    alone on the day of `race_start`; raises ConfigError naming the file and the first bad
    line."""
    reading = _read_log(text, path, timezone, race_start)
    if reading.problems:
        raise ConfigError(reading.problems[0])
    return reading.corrections


def load_corrections(
    path: str, timezone: str = "UTC", race_start: datetime | None = None
) -> tuple[Correction, ...]:
    # Read as the course and start list are: text that is not UTF-8 is one line too.
    return parse_corrections(_read_text(path), path, timezone, race_start)


def read_corrections_leniently(
    path: str, timezone: str = "UTC", race_start: datetime | None = None
) -> LogReading:
    """Every valid row of the log, and one problem per line that is not; no log is no rows;
    times without an offset in `timezone` (the course's), a time of day alone on the day of
    `race_start`.

    For the dashboard, which must keep working when a line was torn or mistyped.
    """
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return LogReading()
    except OSError as e:
        return LogReading(problems=(f"{path}: cannot read: {e.strerror}",))
    return _lenient(text, path, timezone, race_start)


def _lenient(text: str, path: str, timezone: str, race_start: datetime | None) -> LogReading:
    return _read_log(text, path, timezone, race_start) if text.strip() else LogReading()


def _csv_line(values: Iterable[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def _log_line(c: Correction) -> str:
    """One row of the log; raises ValueError for a row that the log's readers would refuse."""
    values = {
        "image_id": c.image_id,
        "action": c.action,
        "bib": c.bib,
        "station_id": c.station_id,
        "passed_at": c.passed_at.astimezone(UTC).isoformat() if c.passed_at else "",
        "decided_at": c.decided_at.astimezone(UTC).isoformat() if c.decided_at else "",
        "by": c.by,
    }
    if any("\n" in v or "\r" in v for v in values.values()):
        raise ValueError(f"a correction must not contain a line break: {c}")
    _correction(values, "new correction")  # the same checks as reading it back
    return _csv_line(values[k] for k in CORRECTION_COLUMNS)


class LockedLog:
    """The log at one path, held under its exclusive flock (`locked_log`): what it holds now,
    and rows appended to it, with no other writer in between."""

    def __init__(self, fd: int, path: str):
        self._fd = fd
        self._path = path

    def reading(self, timezone: str = "UTC", race_start: datetime | None = None) -> LogReading:
        """Every valid row, and a problem per line that is not (read_corrections_leniently)."""
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        text = data.decode("utf-8-sig", errors="replace")
        return _lenient(text, self._path, timezone, race_start)

    def append(self, rows: Iterable[Correction]) -> None:
        """Writes rows with a single write() and fsyncs them; raises ValueError for an
        invalid row before anything is written."""
        text = "".join(_log_line(c) for c in rows)
        if not text:
            return
        size = os.fstat(self._fd).st_size
        if os.pread(self._fd, 1, size - 1) != b"\n":
            text = "\n" + text  # a writer died mid-line: keep that torn line apart from ours
        data = text.encode("utf-8")
        while data:
            data = data[os.write(self._fd, data) :]
        os.fsync(self._fd)


@contextmanager
def locked_log(path: str) -> Iterator[LockedLog]:
    """The log at `path` under an exclusive flock while the block runs (made with its header
    where there is none, or it is empty): a decision checked against the log and appended
    to it is one step, so two officials deciding one item at once are told apart (the
    second reads the first's row)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size == 0:  # exactly one writer makes the header
            os.write(fd, _csv_line(CORRECTION_COLUMNS).encode("utf-8"))
        yield LockedLog(fd, path)
    finally:
        os.close(fd)  # also releases the lock


def append_corrections(path: str, rows: Iterable[Correction]) -> None:
    """Appends rows to the log at `path`, creating it with its header.

    Several officials may decide at the same moment, from one dashboard or several. Each
    call holds the log's exclusive flock while it writes (locked_log), so concurrent
    writers neither interleave within a line nor lose a row, and exactly one of them writes
    the header. Invalid rows raise ValueError before anything is written.
    """
    rows = list(rows)
    for c in rows:
        _log_line(c)  # refused before the log is made or locked
    if rows:
        with locked_log(path) as log:
            log.append(rows)


def start_log(path: str) -> None:
    """Makes an empty log (its header) at `path` where there is none yet, its folder too: a
    live run starts on race morning, before any decision. Raises ConfigError, one line,
    where `path` cannot be a file (a folder, a file in the way of its folder, no write
    access)."""
    if os.path.isfile(path):
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with locked_log(path):
            pass  # a dashboard may have made it meanwhile: its header stays the one
    except OSError as e:
        raise ConfigError(f"--corrections: cannot make the log '{path}': {e.strerror}") from e


_UNDATED = datetime.min.replace(tzinfo=UTC)


def in_order(corrections: Iterable[Correction]) -> list[Correction]:
    """In the order they were decided; undated rows first, the log's order breaking ties."""
    return sorted(corrections, key=lambda c: c.decided_at or _UNDATED)


def decide(corrections: Iterable[Correction]) -> Decision:
    """The net decision about one image from its corrections, in the order they were made.
    What was said of single reads and faces outlasts every decision but a whole reject."""
    decision = Decision()
    for c in in_order(corrections):
        kept = {
            "not_read": decision.not_read,
            "not_faces": decision.not_faces,
            "not_listed": decision.not_listed,
        }
        if c.action == "reject" and c.bib:
            decision = replace(decision, not_read=decision.not_read | {c.bib})
        elif c.action == REJECT_FACE:
            decision = replace(decision, not_faces=decision.not_faces | {c.bib})
        elif c.action == REJECT_UNLISTED:
            decision = replace(decision, not_listed=decision.not_listed | {c.bib})
        elif c.action == "reject":
            decision = Decision(rejected=True)
        elif c.action == "assign":
            decision = Decision(assigned=decision.assigned + (c,), **kept)
        elif c.action == "approve":
            decision = Decision(approved=True, assigned=decision.assigned, **kept)
        elif c.action == "accept":
            decision = Decision(accepted=True, **kept)
    return decision


def decisions_by_image(
    corrections: Iterable[Correction], station_ids: Collection[str] | None = None
) -> dict[str, Decision]:
    """The net decision about each image; with the course's `station_ids`, without the
    assignments to a station it no longer has (off_course: they would time athletes at no
    station, and the split check failed on them)."""
    grouped: dict[str, list[Correction]] = {}
    gone = set(off_course(corrections, station_ids)) if station_ids is not None else set()
    for c in corrections:
        if c.action in IMAGE_ACTIONS and c not in gone:
            grouped.setdefault(c.image_id, []).append(c)
    return {image_id: decide(rows) for image_id, rows in grouped.items()}


def names_station(c: Correction) -> bool:
    """Does the decision's effect depend on its station: an assignment times its athlete
    there; an athlete's item kept (reinstate, or approve with a bib as dashboards logged it
    before), timed from the gun, or a camera or its clock seen to settles the item at that
    station. A photo's approve, reject or accept is about the photo wherever it is (the
    dashboard writes the photo's station into every row, for the record)."""
    return c.action in ("assign", "reinstate", FROM_GUN, *CAMERA_ACTIONS) or (
        c.action == "approve" and bool(c.bib)
    )


def off_course(corrections: Iterable[Correction], station_ids: Collection[str]) -> list[Correction]:
    """The decisions naming a station the course no longer has (renamed or removed since
    they were made): a decision is keyed by the station's id, so after a rename its item
    came back to the queue unseen, and an assignment there timed nobody."""
    return [
        c
        for c in corrections
        if c.station_id and c.station_id not in station_ids and names_station(c)
    ]


def official_statuses(corrections: Iterable[Correction]) -> dict[str, str]:
    """bib -> dsq, dnf or from_gun, as the latest athlete decision says (reinstate clears
    it)."""
    statuses: dict[str, str] = {}
    for c in in_order(corrections):
        if c.action == "reinstate":
            statuses.pop(c.bib, None)
        elif c.action in ATHLETE_ACTIONS + START_ACTIONS:
            statuses[c.bib] = c.action
    return statuses
