"""Counts for the stats and stations pages: what the pipeline settled by itself, what went
to review, how each station's camera is doing.

Pure functions of the results tables, so tests call them without Streamlit.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from dashboard.board import station_label
from dashboard.data import Race
from dashboard.formats import local_time
from transforms.corrections import Correction

REVIEW, DUPLICATE = "review", "duplicate"
AWAITED = "awaited"  # transforms.health.AWAITED, whose module loads Beam
ACCEPT = "accept"  # the log's action: a photo held as too late timed all the same


def settled_by_official(images: pd.DataFrame, corrections: Iterable[Correction] = ()) -> pd.Series:
    """Photos whose status an official's decision set (assigned, approved, rejected), and
    those timed because an official accepted them although they arrived too late (their
    rows are timed as read, so their reason does not say it; a copy's row stays the
    pipeline's)."""
    accepted = {c.image_id for c in corrections if c.action == ACCEPT}
    by_reason = images["reason"].fillna("").str.endswith("_by_official")
    return by_reason | (images["image_id"].isin(accepted) & (images["status"] != DUPLICATE))


def auto_resolved_share(
    images: pd.DataFrame, corrections: Iterable[Correction] = ()
) -> float | None:
    """Of all photos, the share the pipeline settled by itself: neither waiting for review
    nor decided by an official (`corrections`, the log). None for a run without photos."""
    if images.empty:
        return None
    auto = (images["status"] != REVIEW) & ~settled_by_official(images, corrections)
    return float(auto.mean())


def counts(frame: pd.DataFrame, column: str, label: str) -> pd.DataFrame:
    """Rows per value of a column, most first, as a two-column table."""
    tally = frame[column].fillna("(none)").value_counts()
    return pd.DataFrame({label: tally.index, "Count": tally.to_numpy()})


def review_by_reason(review: pd.DataFrame, open_keys: set[tuple[str, str]]) -> pd.DataFrame:
    """Review items per reason: in all, and still open (open_keys: (image_id, reason))."""
    is_open = [
        (i, r) in open_keys for i, r in zip(review["image_id"], review["reason"], strict=True)
    ]
    table = (
        review.assign(open=is_open)
        .groupby("reason")
        .agg(Items=("image_id", "size"), Open=("open", "sum"))
        .sort_values("Items", ascending=False)
        .reset_index()
        .rename(columns={"reason": "Reason"})
    )
    return table.astype({"Items": int, "Open": int})


def duplicates(images: pd.DataFrame) -> pd.DataFrame:
    return counts(images[images["status"] == DUPLICATE], "reason", "Duplicate")


def decisions(corrections: tuple[Correction, ...]) -> pd.DataFrame:
    frame = pd.DataFrame({"action": [c.action for c in corrections]})
    return counts(frame, "action", "Decision")


def awaited_notes(windows: pd.DataFrame, images: pd.DataFrame, race: Race) -> list[str]:
    """A line per station whose photos are awaited (stations.parquet's `awaited` windows, live:
    runners were due there, no photo has come, and its photos may still come, as a phone
    uploading in batches sends them), in course order: since its last photo, or since
    runners were due where none came. It was reported as a silent camera until they came."""
    notes = []
    for s in race.stations:
        mine = windows[(windows["station_id"] == s.id) & (windows["health"] == AWAITED)]
        if mine.empty:
            continue
        taken = images.loc[images["station_id"] == s.id, "taken_at"].dropna()
        due = local_time(mine["window_start"].min(), race.timezone)
        last = local_time(taken.max(), race.timezone)
        since = f"since {last}" if len(taken) else f"(runners due there since {due})"
        notes.append(
            f"No photo received yet from {station_label(s)} {since}: its photos may still be on "
            "their way (a phone uploading late). It is reported silent once they can no longer "
            "come."
        )
    return notes


def station_health(windows: pd.DataFrame, images: pd.DataFrame, race: Race) -> pd.DataFrame:
    """One row per station in course order: health now, totals, the last photo's time."""
    rows = []
    for s in race.stations:
        mine = windows[windows["station_id"] == s.id].sort_values("window_start")
        taken = images.loc[images["station_id"] == s.id, "taken_at"].dropna()
        rows.append(
            {
                "Station": station_label(s),
                "Health now": mine["health"].iloc[-1] if not mine.empty else "no photos",
                "Windows not ok": int((mine["health"] != "ok").sum()),
                "Photos": int(mine["images"].sum()),
                "Passages": int(mine["passages"].sum()),
                "Last photo": local_time(taken.max(), race.timezone),
            }
        )
    return pd.DataFrame(rows)
