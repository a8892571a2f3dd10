"""The mark a live run leaves on its results folder while it runs.

A live run (`racelens run --streaming` on this machine) times the officials' decisions in
itself, at its next poll, from the corrections log it reads. The dashboard must then not
re-time the folder with `racelens results` (nor may anyone by hand): that run would
replace the live run's files with its own, which hold no photo as arrived too late and
which the live run's next update replaces in turn. So the live run holds an advisory lock
on OUT/.live.lock for as long as it runs (the system drops it with the process, however
that ends), with the path of the log it reads inside. This module has no heavy imports:
the dashboard uses it.
"""

from __future__ import annotations

import fcntl
import os
from typing import TextIO

from transforms.course import ConfigError

LIVE_LOCK_FILE = ".live.lock"


def hold_live_lock(out: str, log: str) -> TextIO | None:
    """Marks `out` as a live run's that reads `log`, until the returned file is closed;
    raises ConfigError when another live run writes there (each would replace the other's
    results). None for results on another file system (gs://...), which no dashboard reads."""
    if "://" in out:
        return None
    os.makedirs(out, exist_ok=True)
    lock = hold_lock(os.path.join(out, LIVE_LOCK_FILE), log)
    if lock is None:
        raise ConfigError(f"--out {out}: another live run writes these results")
    return lock


def live_run_log(out: str) -> str | None:
    """The corrections log that a live run on `out` reads, or None when none runs there."""
    return lock_holder(os.path.join(out, LIVE_LOCK_FILE))


def hold_lock(path: str, content: str) -> TextIO | None:
    """Holds an advisory lock on the file `path` with `content` in it, until the returned
    file is closed; None when another process holds it. The system drops a lock with its
    process, however that ends: a run killed leaves no lock that blocks the next one."""
    lock = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the run lasts
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(content)
    lock.flush()
    return lock


def lock_holder(path: str) -> str | None:
    """What the process holding the lock on `path` put in it, or None when none holds it."""
    try:
        with open(path, encoding="utf-8") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return lock.read().strip()
            return None  # left by a run that has ended (closing the file lets go of it)
    except FileNotFoundError:
        return None
