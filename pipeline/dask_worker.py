"""What each worker process of racelens' LocalCluster runs as it starts, before any task (its
Dask preload, pipeline/engines.local_cluster)."""

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
