"""What each worker process of racelens' LocalCluster runs as it starts, before any task (its
Dask preload, pipeline/engines.local_cluster)."""

from __future__ import annotations

import logging

# Importing Beam warns on the root logger that apitools (a GCP extra) is missing: a line on
# the terminal from every worker, noise for a local race. The launcher imports Beam quietly
# too (pipeline/cli.py); the level is the worker's own again after.
_root = logging.getLogger()
_level = _root.level
_root.setLevel(logging.ERROR)
try:
    import apache_beam  # noqa: F401
finally:
    _root.setLevel(_level)
