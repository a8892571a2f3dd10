"""Re-timing the results after officials' decisions, in the background.

`racelens results --out OUT --corrections LOG` times the race again from the stored
facts in a few seconds. It runs in a subprocess, which keeps Beam's logging set-up and
memory out of the dashboard, and on a background thread, so an official goes on to the
next photo at once. Decisions made while a re-timing runs are all picked up by exactly
one more run after it. A lock file next to the results serialises the runs of several
dashboards on one folder, so the last run to finish is the one that read the whole log.
While a live run keeps the folder's results, it times the log's decisions in itself at its
next poll, and the dashboard runs nothing (pipeline/live_lock.py).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import streamlit as st

from dashboard import data
from pipeline.live_lock import live_run_log

TIMEOUT_S = 300
LOCK_FILE = ".retime.lock"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str  # the error's last line, or the run's own summary line
    finished_at: datetime


def results_command(out: str, corrections: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "results", "--out", out, "--corrections", corrections]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class Retimer:
    """Runs the re-timing of one results folder, one run at a time."""

    def __init__(self, out: str, corrections: str, on_done: Callable[[], None]):
        self._out = out
        self._corrections = corrections
        self._on_done = on_done
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retime")
        self._lock = threading.Lock()
        self._queued: Future[Outcome] | None = None
        self._running = False
        self.last: Outcome | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running or self._queued is not None

    def request(self) -> Future[Outcome]:
        """Re-times soon; a request while a run is queued joins that run."""
        with self._lock:
            if self._queued is None:
                self._queued = self._executor.submit(self._run)
            return self._queued

    def _run(self) -> Outcome:
        with self._lock:
            self._queued = None  # decisions logged from now on need another run
            self._running = True
        try:
            outcome = self._retime()
        finally:
            with self._lock:
                self._running = False
        self.last = outcome
        self._on_done()
        return outcome

    def _retime(self) -> Outcome:
        live_log = live_run_log(self._out)
        if live_log is not None:
            return self._left_to_live_run(live_log)
        command = results_command(self._out, self._corrections)
        with open(os.path.join(self._out, LOCK_FILE), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                return Outcome(False, str(e), datetime.now(UTC))
        if done.returncode != 0:
            message = _last_line(done.stderr) or f"exit code {done.returncode}"
            return Outcome(False, message, datetime.now(UTC))
        return Outcome(True, _last_line(done.stderr), datetime.now(UTC))

    def _left_to_live_run(self, live_log: str) -> Outcome:
        """A live run times the decisions in, if they are in the log it reads."""
        if live_log == self._corrections:
            return Outcome(True, "the live run times the decisions in", datetime.now(UTC))
        message = (
            f"a live run keeps these results and reads the log {live_log}, not "
            f"{self._corrections}: start the dashboard with --corrections {live_log}"
        )
        return Outcome(False, message, datetime.now(UTC))


@st.cache_resource(show_spinner=False)
def retimer(out: str, corrections: str) -> Retimer:
    """The one re-timer of a results folder, shared by every session of this dashboard."""
    return Retimer(out, corrections, on_done=data.clear)
