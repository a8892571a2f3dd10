"""Station health in the review queue: a camera that was covered, blurred, frozen or silent
is something an official must see to, not only a row of stations.parquet.

Each spell of bad health (consecutive windows of a station in the same state) is one
review item, camera_covered, camera_blurred, camera_frozen or camera_silent: an official
sees to a camera once per problem, not once per health window. A review item names a
photo (review.parquet's image_id, and the photo the dashboard shows), so the item shows
the spell's last photo: the camera's latest state, the one to judge whether it is still
so. A silent spell has no photo of its own; it shows the last photo before the silence,
the camera's last sign of life, or none where the camera sent none before it (one that
sent no photo all day had silent windows and no item). Covered lenses usually reach review
already, photo by photo (camera_covered on a dark frame without a read): such a spell adds
no second item.

Live, a station's photos may still be on their way (a phone uploading in batches): its
silent windows whose photos can still come are `awaited`, not silent, and raise no item
until they can no longer come (splits.Arrivals, the rule of missed checkpoints). A camera
reported silent until its photos arrived sent an official to a working phone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import apache_beam as beam

from transforms.identify import ReviewItem
from transforms.passages import whole_day
from transforms.records import Photo, pack_time, unpack_time
from transforms.splits import Arrivals

HEALTH_REASONS = {
    "covered": "camera_covered",
    "blurred": "camera_blurred",
    "frozen": "camera_frozen",
    "silent": "camera_silent",
}
# stations.parquet's health of a window without a photo while runners were due, in a live
# run, whose photos may still come.
AWAITED = "awaited"


@dataclass(frozen=True)
class Shot:
    """What health review needs of one timed photo."""

    at: datetime
    path: str
    image_id: str
    reason: str | None  # why the photo itself is where it is (camera_covered, ...)


def shot_of(photo: Photo) -> Shot:
    return Shot(at=photo.taken_at, path=photo.path, image_id=photo.image_id, reason=photo.reason)


def shot_fields(photo: Photo) -> tuple:
    """A photo's Shot as plain fields, its time packed: what the join holds of each photo
    (~130 bytes encoded, against ~290 as a Shot, which Beam pickles with its class)."""
    return pack_time(photo.taken_at), photo.path, photo.image_id, photo.reason


def shot_of_fields(fields: tuple) -> Shot:
    at, path, image_id, reason = fields
    return Shot(unpack_time(at), path, image_id, reason)


def spells(rows: Iterable[dict]) -> list[list[dict]]:
    """A station's windows of bad health, in runs of back-to-back windows in one state."""
    runs: list[list[dict]] = []
    for row in sorted(rows, key=lambda r: r["window_start"]):
        if row["health"] not in HEALTH_REASONS:
            continue
        last = runs[-1][-1] if runs else None
        if last and (last["health"], last["window_end"]) == (row["health"], row["window_start"]):
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def health_review(station_id: str, rows: Iterable[dict], shots: Iterable[Shot]) -> list[ReviewItem]:
    """The review items of one station: one per spell of bad health (see the module's
    docstring for the photo each shows)."""
    ordered = sorted(shots, key=lambda s: (s.at, s.path))
    items = []
    for spell in spells(rows):
        health, start, end = spell[0]["health"], spell[0]["window_start"], spell[-1]["window_end"]
        during = [s for s in ordered if start <= s.at < end]
        shown = [s for s in ordered if s.at < start] if health == "silent" else during
        reason = HEALTH_REASONS[health]
        if health == "silent" and not shown:
            # No photo before the silence: an item about no photo, silent since its start.
            items.append(ReviewItem("", None, reason, (), station_id, start))
            continue
        if not shown or any(s.reason == reason for s in during):
            continue  # nothing to show, or the photos are in review for it already
        last = shown[-1]
        items.append(ReviewItem(last.image_id, last.path, reason, (), station_id, last.at))
    return items


def awaited(rows: Iterable[dict], arrivals: Arrivals) -> list[dict]:
    """The stations' windows, live: a silent one whose station's photos up to its end may
    still come is AWAITED (see the module's docstring)."""
    return [
        r | {"health": AWAITED}
        if r["health"] == "silent" and not arrivals.complete(r["station_id"], r["window_end"])
        else r
        for r in rows
    ]


def review_of_health(rows: Iterable[dict], photos: Iterable[Photo]) -> list[ReviewItem]:
    """ReviewStationHealth without a pipeline (the local live mode's in-process timing)."""
    by_station: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_station[row["station_id"]].append(row)
    shots: dict[str, list[Shot]] = defaultdict(list)
    for p in photos:
        if p.taken_at is not None:
            shots[p.station_id].append(shot_of(p))
    return [i for sid, rs in by_station.items() for i in health_review(sid, rs, shots[sid])]


class ReviewStationHealth(beam.PTransform):
    """(stations rows, photos with their status) -> review items for the spells of bad
    health of each station."""

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        stations, photos = inputs
        # A spell spans windows and its photos lie in them: the grouping needs the whole day,
        # in one windowing for both sides of the join.
        rows = (
            stations
            | "BadHealth" >> beam.Filter(lambda r: r["health"] in HEALTH_REASONS)
            | "RowsDay" >> whole_day()
            | "RowsByStation" >> beam.Map(lambda r: (r["station_id"], r))
        )
        shots = (
            photos
            | "Timed" >> beam.Filter(lambda p: p.taken_at is not None)
            | "Shots" >> beam.Map(lambda p: (p.station_id, shot_fields(p)))
            | "ShotsDay" >> whole_day()
        )
        return (
            {"rows": rows, "shots": shots}
            | "PerStation" >> beam.CoGroupByKey()
            | "Spells"
            >> beam.FlatMapTuple(
                lambda sid, got: health_review(sid, got["rows"], map(shot_of_fields, got["shots"]))
            )
            # Back in the plain global window of the other review items, to flatten with them.
            | "Unwindow" >> beam.WindowInto(beam.window.GlobalWindows())
        )
