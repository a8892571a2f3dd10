"""Memory of a DirectRunner launcher of worker processes and of those workers.

glibc's malloc serves a block of 128 KiB or more from a mapping of its own, unmapped when
the block is freed; but once such a block is freed it raises that threshold to the block's
size (up to 32 MiB), so later blocks of that size come from the heap, which keeps what is
freed in it. The launcher allocates mostly such blocks: the whole collections it holds
between stages and the gRPC messages that carry them, a stage's worth each, so its RSS
ratchets up with the photos. Fixing the threshold in it is free: it analyses no photo. In
a worker, which does, every image array would then be mapped and zeroed afresh: +15 % CPU
per 12 MP photo (5x the page faults), so the workers keep glibc's threshold and are only
held to two arenas (the heaps glibc gives threads that allocate at once; each keeps what
is freed in it). README, Performance, has the figures at 1,000 and 10,000 photos.

Beam's SDK worker (each worker process, and an in-process run's own) keeps the processor
of each fused stage for its next bundle, and with it the stream that carried the stage's
last output: a buffer of up to twice the collection's encoded size (one bundle is half a
collection), for every stage, for the rest of the run. `release_sent_outputs` lets it go.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from apache_beam.runners.worker import bundle_processor

# mallopt's parameter numbers, from glibc's malloc.h. glibc raises the trim threshold (free
# memory at the heap's top kept, not given back) to twice the mmap threshold with it.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
MAPPED_FROM = 128 * 1024  # glibc's starting mmap threshold (and trim threshold), kept fixed
HEAP_BELOW = 32 * 1024 * 1024  # the most glibc raises it to: where a busy process ends up
WORKER_ARENAS = {"MALLOC_ARENA_MAX": "2"}  # read by glibc when a process starts


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Sets glibc's malloc parameters in this process; False where malloc is not glibc's."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt in this C library (macOS)
        return False
    return all([mallopt(parameter, value) for parameter, value in settings])


def hold_worker_arenas() -> None:
    """Holds this process, and those it forks (pipeline/workers.py), to WORKER_ARENAS
    unless this process was started with a setting of its own: glibc reads the variable
    only when a process starts, and a forked worker starts as a copy."""
    if "MALLOC_ARENA_MAX" not in os.environ:
        _mallopt((M_ARENA_MAX, int(WORKER_ARENAS["MALLOC_ARENA_MAX"])))


def _set_thresholds(mmap_from: int, trim_from: int) -> bool:
    """Fixes glibc's mmap and trim thresholds in this process; False where malloc is not
    glibc's."""
    return _mallopt((M_MMAP_THRESHOLD, mmap_from), (M_TRIM_THRESHOLD, trim_from))


@contextmanager
def launching_workers() -> Iterator[None]:
    """Meanwhile, this process maps every block of MAPPED_FROM bytes or more that its
    heap's free top cannot hold (unmapped when freed) and gives back that top beyond
    MAPPED_FROM; the processes it starts use WORKER_ARENAS unless told otherwise.

    After it, blocks below HEAP_BELOW come from the heap again, as in a process that has
    freed a block that large (the pipeline's tests run in one process with the analysis).
    """
    mapped = _set_thresholds(MAPPED_FROM, MAPPED_FROM)
    added = {name: value for name, value in WORKER_ARENAS.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        if mapped:
            _set_thresholds(HEAP_BELOW, 2 * HEAP_BELOW)


def release_sent_outputs() -> None:
    """Has Beam's SDK worker, in this process and those it forks, drop each output stream
    of a bundle once the bundle's output is sent (`DataOutputOperation.finish`): the next
    bundle of the stage gets a stream of its own (`set_output_stream`), so nothing reads
    the old one again. Idempotent."""
    operation = bundle_processor.DataOutputOperation
    if getattr(operation.finish, "releases_output", False):
        return
    finish = operation.finish

    def finish_and_release(self: bundle_processor.DataOutputOperation) -> None:
        finish(self)
        self.output_stream = None

    finish_and_release.releases_output = True
    operation.finish = finish_and_release


# At import: the launcher imports this module before it forks its zygote (pipeline/workers.py),
# so every worker forked from it, and the worker inside an in-process run, has it.
release_sent_outputs()
