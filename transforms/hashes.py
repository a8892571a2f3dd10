"""The image_ids of local files hashed before (HashCache), kept in the fact store's folder.

A local module: it reads and writes the disk directly, after its callers ask whether the
fact store is local (transforms/photos.py's cached_file_id and the DoFns there).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
import uuid

from transforms.write import (
    NoRoom,
    _is_local,
    delete_files,
    is_no_room,
    tell_no_room,
    write_atomically,
)

# Where a FactStore keeps the image_ids of the files hashed before (HashCache).
HASHES_FOLDER = "hashes"
# A file changed this recently may be changed again within its clock's resolution without its
# times changing (git's "racily clean" entries): its image_id is not kept.
SETTLED_NS = 2_000_000_000
# What tells a local file's content apart without reading it: inode (a file replaced by
# another under its name, e.g. rsync's), size, modification and change times in ns (a copy
# that keeps the old mtime, `cp -p`, still changes ctime).
Stamp = tuple[int, int, int, int]
# A HashCache's logs (one per process that wrote, each run's) are merged into one when a
# process finds more than this many.
MERGE_LOGS_OVER = 8
LOG_SUFFIX = ".log"  # not .json: what counts stored facts by their files counts no hash
# The logs read so far in this process, by HashCache folder: each log's length read, and
# the entries (path -> (stamp, image_id)) of all of them. A live run makes a HashCache at
# every poll: each reads only what was appended since.
_READ: dict[str, tuple[dict[str, int], dict[str, tuple[Stamp, str]]]] = {}
# The log this process appends to, by HashCache folder: (pid, its descriptor), held with a
# shared lock while the process lives, so that no other merges it away (a process forked
# opens its own).
_OWN_LOGS: dict[str, tuple[int, int]] = {}


class HashCache:
    """The image_ids of local files hashed before, each valid while the file's stamp stays
    the one it was hashed at: a camera's 2 GB video under --images was read and hashed again
    on every run (1.7 CPU s, ~3 s here), and so was every photo of a re-run whose facts were
    all stored.

    Kept as lines appended to a log of each process that hashes, in the fact store's folder,
    a line written in one call: one small file per photo took 123 MB of disk at 30,000
    photos (4 KB blocks; a USB disk's exFAT, 128 KB clusters, would take 3.8 GB). A line
    torn by a crash or a power cut is no JSON of an entry, and is skipped. Logs beyond
    MERGE_LOGS_OVER are merged into one (written whole, then renamed into place), but those
    a living process appends to."""

    def __init__(self, facts_root: str):
        self.root = f"{facts_root.rstrip('/')}/{HASHES_FOLDER}"
        self._known: dict[str, tuple[Stamp, str]] | None = None

    def get(self, path: str, stamp: Stamp | None) -> str | None:
        """The image_id of `path` hashed at `stamp`; None where it was not."""
        if stamp is None or not _is_local(self.root):
            return None
        if self._known is None:
            self._known = self._read()
        kept = self._known.get(path)
        return kept[1] if kept is not None and kept[0] == stamp else None

    def put(self, path: str, stamp: Stamp | None, image_id: str) -> None:
        """Keeps the image_id of `path` as hashed at `stamp` (taken before it was read),
        unless the file changed too recently to tell a later change by its stamp."""
        if stamp is None or not _is_local(self.root):
            return
        if time.time_ns() - max(stamp[2], stamp[3]) < SETTLED_NS:
            return
        line = json.dumps([path, *stamp, image_id]).encode() + b"\n"
        try:
            os.write(self._own_log(), line)
        except OSError as e:
            if not is_no_room(e):
                raise
            tell_no_room(self.root)
            raise NoRoom(errno.ENOSPC, "no space left on device", self.root) from e
        _READ.setdefault(self.root, ({}, {}))[1][path] = (stamp, image_id)

    def _own_log(self) -> int:
        own = _OWN_LOGS.get(self.root)
        if own is None or own[0] != os.getpid():
            os.makedirs(self.root, exist_ok=True)
            # Named for this process alone: on several machines, pids repeat.
            name = f"{self.root}/{os.getpid()}-{uuid.uuid4().hex}{LOG_SUFFIX}"
            log = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            # Where the filesystem has no locks (some network shares), another process may
            # merge it away: its lines are lost, their files hashed again. Never the run's end.
            with contextlib.suppress(OSError):
                fcntl.flock(log, fcntl.LOCK_SH)
            own = _OWN_LOGS[self.root] = (os.getpid(), log)
        return own[1]

    def _read(self) -> dict[str, tuple[Stamp, str]]:
        """The entries of the logs, what was appended since this process last read them
        read now; merges them where there are too many."""
        lengths, known = _READ.setdefault(self.root, ({}, {}))
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return known  # none kept yet
        for old in (e.path for e in entries if e.is_dir()):
            shutil.rmtree(old, ignore_errors=True)  # an earlier version's file per photo
        logs = sorted(e.path for e in entries if e.name.endswith(LOG_SUFFIX))
        for log in logs:
            lengths[log] = _read_log(log, lengths.get(log, 0), known)
        if len(logs) > MERGE_LOGS_OVER:
            self._merge(logs, known)
        return known

    def _merge(self, logs: list[str], known: dict[str, tuple[Stamp, str]]) -> None:
        """Writes `known` (all that `logs` hold) as one log, then deletes those of `logs`
        that no living process appends to (locked by none)."""
        with contextlib.ExitStack() as held:
            idle = [log for log in logs if _locked(log, held)]
            if len(idle) < 2:
                return
            lines = (json.dumps([p, *stamp, image_id]) for p, (stamp, image_id) in known.items())
            merged = f"{self.root}/merged-{uuid.uuid4().hex}{LOG_SUFFIX}"
            write_atomically(merged, "".join(f"{line}\n" for line in lines).encode())
            delete_files(idle)
        for log in idle:
            _READ[self.root][0].pop(log, None)


def _locked(log: str, held: contextlib.ExitStack) -> bool:
    """Whether `log` could be locked for this process alone (held until `held` ends): no
    living process appends to it, nor merges it."""
    try:
        f = held.enter_context(open(log, "rb"))  # noqa: SIM115 - closed with `held`
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # in use, or merged away meanwhile
    return True


def _read_log(log: str, start: int, known: dict[str, tuple[Stamp, str]]) -> int:
    """Adds the entries of `log` from byte `start` on to `known`, a path's latest change
    time kept; returns the length read to (a last line not yet ended is read next time)."""
    try:
        with open(log, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return start  # merged away meanwhile
    whole = data[: data.rfind(b"\n") + 1]
    for line in whole.splitlines():
        try:
            path, *stamp, image_id = json.loads(line)
        except (ValueError, TypeError):
            continue  # torn by a crash or a power cut
        if not (isinstance(path, str) and isinstance(image_id, str) and _is_stamp(stamp)):
            continue
        before = known.get(path)
        if before is None or before[0][3] <= stamp[3]:
            known[path] = (tuple(stamp), image_id)
    return start + len(whole)


def _is_stamp(values: list) -> bool:
    return len(values) == 4 and all(type(v) is int for v in values)
