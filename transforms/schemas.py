"""One explicit pyarrow schema per output file, shared by the writer, the dashboard and the tests.

Column names and meanings of the public contract (../shared/CONTRACT.md) come
first in each schema; columns after them are extensions.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

# The output files of the public contract (shared/CONTRACT.md), and the results as CSV.
IMAGES_FILE = "images.parquet"
PASSAGES_FILE = "passages.parquet"
REVIEW_FILE = "review.parquet"
LEADERBOARD_FILE = "leaderboard.parquet"
STATIONS_FILE = "stations.parquet"
RESULTS_CSV = "results.csv"
# Extension: "photos of me", one row per athlete and photo they were identified on.
ATHLETE_PHOTOS_FILE = "athlete_photos.parquet"
# Every file a run writes into its results folder, in the order the summary names them.
OUTPUT_FILES = (
    IMAGES_FILE,
    PASSAGES_FILE,
    REVIEW_FILE,
    LEADERBOARD_FILE,
    STATIONS_FILE,
    ATHLETE_PHOTOS_FILE,
    RESULTS_CSV,
)

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
        # The photo's size as shown, turned upright by its EXIF orientation: its boxes' frame.
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        # How its station was decided: folder, camera, gps, time (of stations at one place,
        # the one its time fits), waves, passages (its athletes' own, at an out-and-back
        # spot), official; null where it has no station.
        pa.field("placed_by", pa.string()),
        # A photo placed nowhere, as in review.parquet (REVIEW): also for one not in the queue
        # (no listed bib read, or decided already), which an official may open by its link.
        pa.field("exif_taken_at", UTC_TIME),
        pa.field("could_be_at", pa.list_(pa.string())),
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
        pa.field("review_reason", pa.string()),
    ]
)

REVIEW = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("candidates", pa.list_(pa.string())),
        pa.field("station_id", pa.string()),
        pa.field("taken_at", UTC_TIME),
        pa.field("path", pa.string()),  # null for an item about a passage (missed_checkpoint)
        # A photo without station or time (bad_exif, unknown_station, ambiguous_station,
        # station_conflict), whose taken_at is null: the time its EXIF gives, whatever the
        # day, and the stations it may be at (a loop's start and finish; the stations of the
        # folders its copies came in), for the official placing it.
        pa.field("exif_taken_at", UTC_TIME),
        pa.field("could_be_at", pa.list_(pa.string())),
        # In words, what the reason alone cannot say (clock_suspect: the station's estimated
        # clock error, the athletes it rests on, the clock_offset_s to write); else null.
        pa.field("note", pa.string()),
        # clock_suspect: the station's clock_offset_s that cancels the error (the note's
        # figure, for the dashboard to show as the line to write); else null.
        pa.field("clock_offset_s", pa.float64()),
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
        # How far the station's clock runs ahead of the start's and finish's (+ fast, - slow;
        # its clock_offset_s included), estimated from the athletes seen there and either side
        # (transforms.clocks), and half the width of its 90 % margin; null for the start, the
        # finish and a checkpoint too few athletes were seen at.
        pa.field("clock_error_s", pa.float64()),
        pa.field("clock_error_margin_s", pa.float64()),
    ]
)

ATHLETE_PHOTOS = pa.schema(
    [
        pa.field("bib", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("station_id", pa.string()),
        pa.field("taken_at", UTC_TIME),
        pa.field("method", pa.string(), nullable=False),  # bib_ocr, face_match, manual
        pa.field("confidence", pa.float64(), nullable=False),
    ]
)


def split_column(station_id: str) -> str:
    return f"at_{station_id}_s"


def time_of_day_column(station_id: str) -> str:
    return f"tod_{station_id}"


def sector_column(station_id: str) -> str:
    return f"sector_{station_id}_s"


def pace_column(station_id: str) -> str:
    return f"pace_{station_id}_s_per_km"


def _per_station(station_ids: list[str], name, kind: pa.DataType) -> list[pa.Field]:
    return [pa.field(name(s), kind) for s in station_ids]


def leaderboard_schema(station_ids: Iterable[str]) -> pa.Schema:
    """The leaderboard has columns per station of the course, in course order."""
    ids = list(station_ids)
    return pa.schema(
        [
            pa.field("rank", pa.int32()),
            pa.field("bib", pa.string(), nullable=False),
            pa.field("name", pa.string()),
            pa.field("category", pa.string()),
            pa.field("category_rank", pa.int32()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("total_s", pa.float64()),  # the ranked time: chip or gun (course rank_by)
        ]
        + _per_station(ids, split_column, pa.float64())
        + [
            pa.field("gender", pa.string()),
            pa.field("club", pa.string()),
            pa.field("wave", pa.string()),
            pa.field("gender_rank", pa.int32()),
            pa.field("chip_s", pa.float64()),
            pa.field("gun_s", pa.float64()),
            pa.field("chip_start", pa.string()),  # own (start passage seen) or gun (not seen)
            pa.field("gap_s", pa.float64()),  # behind the winner, in the ranked time
            pa.field("pace_s_per_km", pa.float64()),
            pa.field("missed", pa.list_(pa.string())),  # stations between not seen at
            # unknown_bib, gun_start, missed_checkpoint, over_time_limit, early_start
            pa.field("flags", pa.list_(pa.string())),
        ]
        + _per_station(ids, time_of_day_column, UTC_TIME)
        + _per_station(ids, sector_column, pa.float64())
        + _per_station(ids, pace_column, pa.float64())
    )
