"""One explicit pyarrow schema per output file, shared by the writer, the dashboard and the tests.

Column names and meanings of the public contract (../shared/CONTRACT.md) come
first in each schema; columns after them are extensions.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

UTC_TIME = pa.timestamp("ms", tz="UTC")

READ = pa.struct(
    [
        pa.field("bib", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("box", pa.list_(pa.int32())),
    ]
)

IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("station_id", pa.string()),
        pa.field("taken_at", UTC_TIME),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("bibs", pa.list_(pa.string())),
        pa.field("faces", pa.int32()),  # null until face detection has looked at the photo
        pa.field("duplicate_of", pa.string()),
        # Extensions: where the duplicate's original lies, and the reads with their boxes.
        pa.field("duplicate_of_path", pa.string()),
        pa.field("reads", pa.list_(READ)),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
    ]
)

PASSAGES = pa.schema(
    [
        pa.field("bib", pa.string(), nullable=False),
        pa.field("station_id", pa.string(), nullable=False),
        pa.field("passed_at", UTC_TIME, nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("needs_review", pa.bool_(), nullable=False),
        pa.field("photos", pa.int32()),
    ]
)

REVIEW = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("candidates", pa.list_(pa.string())),
        pa.field("station_id", pa.string()),
        pa.field("taken_at", UTC_TIME),
        pa.field("path", pa.string()),
    ]
)

STATIONS = pa.schema(
    [
        pa.field("station_id", pa.string(), nullable=False),
        pa.field("window_start", UTC_TIME, nullable=False),
        pa.field("window_end", UTC_TIME, nullable=False),
        pa.field("images", pa.int32(), nullable=False),
        pa.field("passages", pa.int32(), nullable=False),
        pa.field("health", pa.string(), nullable=False),
        pa.field("last_photo_at", UTC_TIME),
    ]
)


def split_column(station_id: str) -> str:
    return f"at_{station_id}_s"


def leaderboard_schema(station_ids: Iterable[str]) -> pa.Schema:
    """The leaderboard has one split column per station of the course, in course order."""
    return pa.schema(
        [
            pa.field("rank", pa.int32()),
            pa.field("bib", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("category", pa.string()),
            pa.field("category_rank", pa.int32()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("total_s", pa.float64()),
        ]
        + [pa.field(split_column(s), pa.float64()) for s in station_ids]
        + [
            pa.field("gender", pa.string()),
            pa.field("club", pa.string()),
            pa.field("wave", pa.string()),
            pa.field("gun_s", pa.float64()),  # finish time from the gun, for gun-time rankings
            pa.field("chip_start", pa.string()),  # own (start passage seen) or gun (not seen)
        ]
    )
