"""What each worker process of racelens' LocalCluster runs as it starts, before any task (its
Dask preload, pipeline/engines.local_cluster): the first of its preloads, so that what follows
is already so."""

from __future__ import annotations

import logging

from transforms.write import NoRoom

# A task that found the disk full: the launcher ends the run with one line naming the folder
# (pipeline/interrupted.py), which Dask's report of the failed task would only precede.
_NO_ROOM_REPORT = f"{NoRoom.__name__}("


def _not_of_a_full_disk(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return not any(str(arg).startswith(_NO_ROOM_REPORT) for arg in args)


logging.getLogger("distributed.worker").addFilter(_not_of_a_full_disk)


# A worker that fails to start (a later preload's error, say) sends its error to its nanny in
# the launcher, whose one line says it (pipeline/engines.local_cluster): this process's report
# of it, a traceback each worker, would precede that line.
_START_FAILED = ("Failed to initialize worker", "Failed to start worker")


def _not_of_a_failed_start(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_START_FAILED)


logging.getLogger("distributed.nanny").addFilter(_not_of_a_failed_start)
