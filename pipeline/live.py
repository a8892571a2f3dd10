"""Live mode on this machine: watch the images folder and keep the results current.

Beam's DirectRunner cannot run an unbounded file watcher with live windows
(see ../shared/DESIGN.md), so the local live mode works in small batches, as
the design notes recommend: every poll, files that have stopped growing are
hashed, and the race is timed again over all photos. Photos whose facts are
stored are not analysed again, so a cycle costs the analysis of the new
photos plus the (light) timing of the race. The results of a cycle are the
results of a batch run over the same files, by construction; each output
file is replaced atomically, so the dashboard never reads half a file.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from pipeline.graph import build_from_groups, run
from pipeline.options import RaceConfig
from transforms.photos import (
    image_id_of,
    read_bytes,
    skipped_entries,
    text_path,
    unreadable_id,
)

# Flags of the live command that the batch cycles must not see.
LIVE_FLAGS = ("--streaming", "--stop-after", "--stop_after")


@dataclass
class LiveState:
    """What the watcher knows between polls."""

    sizes: dict[str, tuple[int, float]] = field(default_factory=dict)  # path -> (size, mtime)
    ids: dict[str, str] = field(default_factory=dict)  # path -> image_id, once stable
    hashed: dict[str, tuple[int, float]] = field(default_factory=dict)  # (size, mtime) hashed
    first_seen: dict[str, float] = field(default_factory=dict)  # path -> wall time
    published: dict[str, float] = field(default_factory=dict)  # path -> wall time in results
    cycles: int = 0


def list_files(images: str) -> dict[str, tuple[int, float]]:
    """Every file under the images location with its size and modification time.

    Entries that are no file (a broken link, a link to a folder) have neither: they count
    as stable and get their row, rejected, like in a batch run.
    """
    try:
        matched = FileSystems.match([images.rstrip("/") + "/**"])[0].metadata_list
    except BeamIOError:
        return {}  # the folder may not exist yet on race morning
    files = {text_path(m.path): (m.size_in_bytes, m.last_updated_in_seconds) for m in matched}
    return files | {path: (0, 0.0) for path in skipped_entries(images)}


def stable_files(
    previous: dict[str, tuple[int, float]], current: dict[str, tuple[int, float]]
) -> set[str]:
    """Files that did not change between two polls: an upload in progress still grows."""
    return {path for path, state in current.items() if previous.get(path) == state}


def hash_file(path: str) -> str:
    try:
        return image_id_of(read_bytes(path))
    except (BeamIOError, OSError):
        return unreadable_id(path)


def groups_of(ids: dict[str, str]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for path, image_id in ids.items():
        grouped.setdefault(image_id, []).append(path)
    return sorted((image_id, sorted(paths)) for image_id, paths in grouped.items())


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


def poll(state: LiveState, images: str, final: bool = False) -> list[str]:
    """Takes in the files ready since the last poll (all present ones when final)."""
    now = time.time()
    current = list_files(images)
    for path in current:
        state.first_seen.setdefault(path, now)
    ready = set(current) if final else stable_files(state.sizes, current)
    state.sizes = current
    # New files, and files rewritten since they were hashed (an upload that was retried).
    new = sorted(p for p in ready if state.hashed.get(p) != current[p])
    for path in new:
        state.ids[path] = hash_file(path)
        state.hashed[path] = current[path]
    for gone in set(state.ids) - set(current):
        del state.ids[gone]  # deleted from the folder: no longer an input
        del state.hashed[gone]
    return new


def cycle(state: LiveState, argv: list[str]) -> RaceConfig:
    """Times the race over every known photo and marks them published."""
    groups = groups_of(state.ids)
    cfg = run(argv, graph=lambda p, c: build_from_groups(p, c, groups))
    done = time.time()
    for path in state.ids:
        state.published.setdefault(path, done)
    state.cycles += 1
    return cfg


def watch(
    argv: list[str],
    images: str,
    stop_after: float | None,
    poll_s: float = 1.0,
    log: TextIO = sys.stderr,
    should_stop: Callable[[], bool] = lambda: False,
) -> LiveState:
    """Keeps the results current until Ctrl-C, SIGTERM, `stop_after` seconds or should_stop;
    then times the race once more over every file present, so the outputs are complete."""
    argv = batch_argv(argv)
    state = LiveState()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if on_main else None
    deadline = time.monotonic() + stop_after if stop_after is not None else None
    try:
        while not (stopping or should_stop()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            new = poll(state, images)
            if new:
                started = time.monotonic()
                cycle(state, argv)
                print(
                    f"live: +{len(new)} photos, {len(state.ids)} in the results, "
                    f"timed in {time.monotonic() - started:.1f} s",
                    file=log,
                    flush=True,
                )
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the watch; the outputs are completed below
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    poll(state, images, final=True)
    cycle(state, argv)
    return state
