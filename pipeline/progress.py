"""Progress on the terminal while photos are analysed, read from the fact store.

The analysing workers may be other processes or machines; the fact store is
what they all write to, so counting its entries is a progress signal that
works on every runner whose store is a local folder.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from transforms.photos import FactStore


def count_facts(store: FactStore) -> int:
    root = store.version_root
    if not os.path.isdir(root):
        return 0
    return sum(
        1
        for shard in os.scandir(root)
        if shard.is_dir()
        for entry in os.scandir(shard.path)
        if entry.name.endswith(".json")
    )


def progress_line(done: int, total: int, elapsed_s: float) -> str:
    """`done` counts photos analysed in this run; copies and stored photos are not analysed."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return f"analysed {done} of {total} files ({rate:.1f} photos/s, {elapsed_s:.0f} s)"


class Progress:
    """A daemon thread printing `progress_line` every `every_s` until stopped."""

    def __init__(self, store: FactStore, total: int, out: TextIO = sys.stderr, every_s: float = 5):
        self._store = store
        self._total = total
        self._out = out
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._already = 0
        self._started = 0.0

    def __enter__(self) -> Progress:
        self._already = count_facts(self._store)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            done = count_facts(self._store) - self._already
            line = progress_line(done, self._total, time.monotonic() - self._started)
            print(line, file=self._out, flush=True)
