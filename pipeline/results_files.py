"""Reading a run's results back: the dashboard, `racelens photos`, `drip compare`.

A run replaces each of its results files by renaming a new one into place
(transforms/write.py), every second in a live run, and `racelens results` (the dashboard's
re-timing) whenever an official decides. This module has no heavy imports: the dashboard
uses it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq


def read_table(path: str, columns: Iterable[str] | None = None) -> pa.Table:
    """The Parquet file at local `path` (only `columns`, if given), read from one open file:
    pyarrow given a path opens it again for the pages after the footer, so a replacement in
    between failed the read ("Unexpected end of stream")."""
    with open(path, "rb") as f:
        return pq.read_table(f, columns=None if columns is None else list(columns))
