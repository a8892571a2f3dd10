"""Live mode on this machine: watch the images folder and keep the results current.

Beam's DirectRunner cannot run an unbounded file watcher with live windows
(see ../shared/DESIGN.md), so the local live mode works in small batches, as
the design notes recommend: every poll, files that have stopped growing are
hashed and analysed (facts already stored are reused), then the race is timed
again in-process over all photos (`pipeline.retime`: the graph's own
functions and window functions, no pipeline start-up) and the results are
replaced atomically, so the dashboard never reads half a file.

The officials' decisions are timed in the same way: the corrections log (--corrections,
else the dashboard's: the one run.json records where it exists, else
RESULTS/corrections.csv) is read again whenever it changed, and a dashboard leaves the
re-timing to the live run while it runs (pipeline/live_lock.py); run.json and the summary
at the end name that log.
Statuses are as of each update, so athletes still out become dnf when the course closes.

Lateness is judged on arrival, as a streaming runner judges it: the
watermark is the latest photo time seen so far (never ahead of the wall
clock), and a photo whose passage window would end more than the course's
allowed_lateness_s behind it is recorded as too_late and sent to review
instead of being timed; started again, the live run keeps holding the photos that the
results hold as too late. A batch run has no arrival order: it times every
photo as if all had been there from the start (a backfill). Arrival also decides which
copy of a photo is kept: the first to arrive (transforms.dedup), in the order logged in
RESULTS/.live-arrivals so that a restart keeps the choice.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.options.pipeline_options import PipelineOptions

from dashboard.settings import CORRECTIONS_FILE
from pipeline.cli import record_inputs
from pipeline.interrupted import handled_meanwhile
from pipeline.live_lock import hold_live_lock
from pipeline.options import RaceConfig, RacelensOptions
from pipeline.retime import time_photos
from transforms.corrections import read_corrections_leniently
from transforms.course import waves_by_bib
from transforms.exif import place_in_race
from transforms.faces import faces_enabled
from transforms.passages import TOO_LATE, advance_watermark, is_too_late
from transforms.photos import (
    HashCache,
    _AnalyseContent,  # the analysis DoFn itself, called in-process
    cached_file_id,
    skipped_entries,
    text_path,
)
from transforms.records import Photo
from transforms.schemas import IMAGES_FILE
from transforms.write import listed_files, write_results

# The order files reached the live run in, kept beside the results for its restarts.
# Not .csv: the .csv and .parquet files of a results folder are its results.
ARRIVALS_FILE = ".live-arrivals"  # rows of poll,path (csv)
# Flags of the live command that the batch cycles must not see.
LIVE_FLAGS = ("--streaming", "--stop-after", "--stop_after")


@dataclass
class LiveState:
    """What the watcher knows between polls."""

    sizes: dict[str, tuple[int, float]] = field(default_factory=dict)  # path -> (size, mtime)
    ids: dict[str, str] = field(default_factory=dict)  # path -> image_id, once stable
    hashed: dict[str, tuple[int, float]] = field(default_factory=dict)  # (size, mtime) hashed
    published: dict[str, float] = field(default_factory=dict)  # path -> wall time in results
    photos: dict[str, Photo] = field(default_factory=dict)  # path -> analysed photo
    watermark: datetime | None = None  # latest photo time seen (event time)
    too_late: set[str] = field(default_factory=set)  # paths that arrived after the lateness
    # path -> the poll that took the file in (0 first; a restart's go on from the logged ones)
    arrived: dict[str, int] = field(default_factory=dict)
    cycles: int = 0
    listed_s: float = 0.0  # how long the last poll took to list the images folder (wall)
    # The race's inputs as last timed: the corrections log read, with its decisions of then.
    config: RaceConfig | None = None


def list_files(images: str) -> dict[str, tuple[int, float]]:
    """Every file under the images location with its size and modification time.

    Entries that are no file (a broken link, a link to a folder) have neither: they count
    as stable and get their row, rejected, like in a batch run.
    """
    try:
        matched = listed_files(images)
    except BeamIOError:
        return {}  # the folder may not exist yet on race morning
    files = {text_path(m.path): (m.size_in_bytes, m.last_updated_in_seconds) for m in matched}
    return files | {path: (0, 0.0) for path in skipped_entries(images)}


def stable_files(
    previous: dict[str, tuple[int, float]], current: dict[str, tuple[int, float]]
) -> set[str]:
    """Files that did not change between two polls: an upload in progress still grows."""
    return {path for path, state in current.items() if previous.get(path) == state}


FileVersion = tuple[int, int, int]


def file_version(path: str) -> FileVersion | None:
    """What tells a file's contents apart cheaply (inode, size, modification time), or None
    for no file: the corrections log is appended to, or replaced, while the run goes on."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def held_too_late(out: str) -> dict[str, str]:
    """The photos (path -> image_id) that the results in `out` hold as arrived too late.

    A live run started again takes in every file present at its first poll, all arriving
    together, so none would be late: the photos held before keep the judgment of their
    arrival, and their review items stay in the official's queue.
    """
    try:
        with open(os.path.join(out, IMAGES_FILE), "rb") as f:
            rows = pq.read_table(f, columns=["path", "image_id", "reason"]).to_pylist()
    except FileNotFoundError:
        return {}  # a first start
    return {r["path"]: r["image_id"] for r in rows if r["reason"] == TOO_LATE}


def batch_argv(argv: list[str]) -> list[str]:
    """The live command's arguments without the live-only flags (and their values)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LIVE_FLAGS:
            skip = "=" not in arg and name != "--streaming"
            continue
        kept.append(arg)
    return kept


def poll(
    state: LiveState, images: str, final: bool = False, hashes: HashCache | None = None
) -> list[str]:
    """Takes in the files ready since the last poll (all present ones when final); a file
    `hashes` hold unchanged is not read (a restarted live run read every photo again)."""
    if state.ids and "://" not in images and not os.path.isdir(images):
        # Gone at once (a USB disk or a network share dropped): its photos are kept until it
        # is back, as forgetting them rewrote the results with none, every athlete dns.
        return []
    listing = time.monotonic()
    current = list_files(images)
    state.listed_s = time.monotonic() - listing
    ready = set(current) if final else stable_files(state.sizes, current)
    state.sizes = current
    # New files, and files rewritten since they were hashed (an upload that was retried).
    new = sorted(p for p in ready if state.hashed.get(p) != current[p])
    arrival = 1 + max(state.arrived.values(), default=-1)
    for path in new:
        state.ids[path] = cached_file_id(path, hashes)
        state.hashed[path] = current[path]
        state.arrived.setdefault(path, arrival)  # a rewritten file arrived with its first upload
    for gone in set(state.ids) - set(current):
        del state.ids[gone]  # deleted from the folder: no longer an input
        del state.hashed[gone]
        state.photos.pop(gone, None)
        state.too_late.discard(gone)
        state.arrived.pop(gone, None)  # copied in again, it arrives again
    return new


def read_arrivals(out: str) -> dict[str, int]:
    """The poll that took each file in (path -> poll), as the live runs on `out` logged it: a
    live run started again takes in every file present at its first poll, all together, and
    the copy of a photo kept went back to the first by path (a stray copy put the published
    photo in doubt). A line torn by a crash is left out; results on another file system
    (gs://...) keep no log."""
    if "://" in out:
        return {}
    try:
        with open(os.path.join(out, ARRIVALS_FILE), newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        return {}
    return {row[1]: int(row[0]) for row in rows if len(row) == 2 and row[0].isdigit()}


def log_arrivals(out: str, arrived: dict[str, int]) -> None:
    """Adds the files `arrived` (path -> poll) to the log read_arrivals reads."""
    if "://" in out or not arrived:
        return
    with open(os.path.join(out, ARRIVALS_FILE), "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows((poll, path) for path, poll in arrived.items())


def held_photos(state: LiveState) -> frozenset[str]:
    """The files (paths) whose photo arrived too late: a photo arrives with its first copy.
    A copy judged alone (the finish's photos copied in again after the race, into the
    folder renamed with a capital) was held as too late and kept as the photo (Finish/
    sorts first), the copy that came in time made its duplicate, and the athletes'
    passages on it were gone."""
    in_time = {photo.image_id for path, photo in state.photos.items() if path not in state.too_late}
    return frozenset(p for p in state.too_late if state.photos[p].image_id not in in_time)


class LiveRace:
    """The race as the live mode knows it: the files taken in, their facts and lateness."""

    def __init__(self, argv: list[str], log: TextIO = sys.stderr):
        self.cfg = RaceConfig(PipelineOptions(batch_argv(argv)).view_as(RacelensOptions))
        self.state = LiveState(arrived=read_arrivals(self.cfg.out))
        self._log = log
        self._held = held_too_late(self.cfg.out)
        self._held_now = 0  # photos the results hold as arrived too late
        self._closed = self._closed_now()
        # Decisions are logged while the run goes on: by the dashboard, into its default log
        # in the results folder, unless both are given another.
        self._decisions = self.cfg.corrections_file or os.path.join(self.cfg.out, CORRECTIONS_FILE)
        self.state.config = self.cfg
        self._decisions_version = file_version(self._decisions)
        self._read_decisions()
        self._lock = hold_live_lock(self.cfg.out, self._decisions)
        self._analyser = _AnalyseContent(
            self.cfg.facts, text_path(self.cfg.images), faces_enabled(self.cfg.course.settings)
        )
        self._analyser.setup()

    def close(self) -> None:
        """Lets the dashboard re-time the results by itself again."""
        if self._lock is not None:
            self._lock.close()

    def update(self, final: bool = False) -> list[str]:
        """Takes in the files that arrived since the last update and, when anything changed
        (a file, a decision, the course's closing; or when final), writes the results;
        returns the new files."""
        started = time.monotonic()
        known = set(self.state.photos)
        new = poll(self.state, self.cfg.images, final, HashCache(self.cfg.facts))
        decided = self._decisions_changed()
        if not (new or final or decided or self._closing() or known != set(self.state.photos)):
            return new
        if decided:
            self._read_decisions()
        self._take_in(new)
        self._publish(final)
        print(
            f"live: +{len(new)} files, {len(self.state.photos)} in the results "
            f"({self._held_now} held as arrived too late), "
            f"updated in {time.monotonic() - started:.1f} s",
            file=self._log,
            flush=True,
        )
        return new

    def _decisions_changed(self) -> bool:
        current = file_version(self._decisions)
        changed = current != self._decisions_version
        self._decisions_version = current
        return changed

    def _read_decisions(self) -> None:
        """The log's valid rows; a line torn or mistyped while the race goes on is reported
        and left out (the dashboard does the same), not the end of the live run."""
        course = self.cfg.course
        reading = read_corrections_leniently(self._decisions, course.timezone, course.start)
        for problem in reading.problems:
            print(f"live: ignored: {problem}", file=self._log, flush=True)
        self.cfg.corrections = reading.corrections
        if os.path.isfile(self._decisions):  # run.json and the summary name it, once it is
            self.cfg.corrections_file = self._decisions

    def _closed_now(self) -> int:
        """How many of the course's closes (race.close, each wave's time limit) and starts'
        closes have passed for the leaderboard built now (as of --as-of, if given)? Each makes
        athletes dnf, or dns where they were waiting for their start."""
        now = self.cfg.as_of or datetime.now(UTC)
        return sum(change <= now for change in self.cfg.course.status_changes())

    def _closing(self) -> bool:
        """Has the course, or a start, closed since the results were last written? Athletes
        still out become dnf then, those waiting for their start dns, with no photo arriving
        to start an update."""
        return self.state.cycles > 0 and self._closed_now() != self._closed

    def _take_in(self, paths: list[str]) -> None:
        """Analyses newly arrived files and judges their lateness against the watermark as
        it stood before they arrived (the files of one poll arrived together)."""
        state, course = self.state, self.cfg.course
        watermark, now = state.watermark, datetime.now(UTC)
        gap_s, lateness_s = course.settings.merge_window_s, course.settings.allowed_lateness_s
        waves = waves_by_bib(self.cfg.athletes)
        log_arrivals(self.cfg.out, {path: state.arrived[path] for path in paths})
        for path in paths:
            (photo,) = self._analyser.process((state.ids[path], [path]))
            state.photos[path] = photo
            state.too_late.discard(path)
            taken_at = place_in_race(photo, course, waves).taken_at
            if taken_at is None:
                continue  # rejected: no event time, nothing to be late for
            held = self._held.pop(path, None) == photo.image_id  # the same file as then
            if held or is_too_late(taken_at, watermark, gap_s, lateness_s):
                state.too_late.add(path)
            state.watermark = advance_watermark(state.watermark, taken_at, now)

    def _publish(self, final: bool) -> None:
        """Times the race over every photo taken in and replaces the results; `final`: the
        watch ends, so every photo is in (as for a batch run)."""
        self._closed = self._closed_now()
        late = held_photos(self.state)
        timed = time_photos(
            self.state.photos.values(), self.cfg, late, True, final, self.state.arrived
        )
        # Those an official accepted or decided are timed or settled: no longer held.
        self._held_now = sum(p.reason == TOO_LATE for p in timed.images)
        write_results(timed.tables(), self.cfg.out, self.cfg.course)
        if self.state.cycles == 0:  # with the first results: the dashboard's race and stations
            record_inputs(self.cfg)
        done = time.time()
        for path in self.state.photos:
            self.state.published.setdefault(path, done)
        self.state.cycles += 1


# A poll waits at least this many times as long as its listing took: a folder of 40,000
# photos takes ~0.35 s to list (a stat each), and a poll every 0.25 s kept ~57 % of a core
# listing all race long, beside the analysis of the photos arriving.
POLL_SPACING = 4.0


def poll_wait(poll_s: float, state: LiveState) -> float:
    """How long to wait before the next poll: poll_s, longer where listing is slow."""
    return max(poll_s, POLL_SPACING * state.listed_s)


def watch(
    argv: list[str],
    stop_after: float | None,
    poll_s: float = 0.25,
    log: TextIO = sys.stderr,
    should_stop: Callable[[], bool] = lambda: False,
    watching: str = "",
) -> LiveState:
    """Keeps the results in the --out of `argv` current until Ctrl-C, SIGTERM, `stop_after`
    seconds or should_stop; then takes in every file present, so the outputs are complete.
    The signals end the watch between two updates, from the moment the line `watching` is
    printed; a second one (an update that does not end, say) is the handlers' from before,
    as is any while the outputs are completed: under the `racelens` program, it ends the
    program at once (pipeline/interrupted.py)."""
    stopping = False

    def stop(signum: int, _: object) -> None:
        nonlocal stopping
        if stopping:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        stopping = True

    on_main = threading.current_thread() is threading.main_thread()
    with handled_meanwhile(stop) if on_main else contextlib.nullcontext({}) as previous:
        if watching:
            print(watching, file=log, flush=True)
        race = LiveRace(argv, log)
        deadline = time.monotonic() + stop_after if stop_after is not None else None
        while not (stopping or should_stop()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            race.update()
            time.sleep(poll_wait(poll_s, race.state))
    if stopping:
        print(
            "live: stopping; taking in the files present (Ctrl-C again: at once)",
            file=log,
            flush=True,
        )
    race.update(final=True)
    race.close()
    return race.state
