"""The short summary printed at the end of a run, read back from the written results."""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Collection, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from dashboard.review_queue import Spells, items_of, pending
from transforms.corrections import (
    BAD_EXIF,
    IMAGE_ACTIONS,
    UNKNOWN_STATION,
    Correction,
    off_course,
)
from transforms.course import Course, still_running
from transforms.export import clock
from transforms.records import REJECTED
from transforms.schemas import (
    IMAGES_FILE,
    LEADERBOARD_FILE,
    OUTPUT_FILES,
    PASSAGES_FILE,
    REVIEW_FILE,
    STATIONS_FILE,
)

IMAGE_COLUMNS = ["image_id", "taken_at", "status", "reason", "path"]
# What the timer can do about photos without a usable time (bad_exif).
NO_TIME_HINT = (
    "a copy sent by a messaging app (WhatsApp) has no time: put the originals (from the "
    "phone or its card, or sent as files) in their place and run again; a camera whose date "
    "is wrong needs its clock_offset_s in course.yaml (then racelens results --course FILE); "
    "or give each photo's time in the dashboard's review queue, where those with a bib read are"
)


def review_line(out_dir: str, corrections: Sequence[Correction], images: pa.Table) -> str:
    """The items still open, as the dashboard's queue shows them: the pipeline writes every
    item it raised, and an item the corrections log already settles is no work left."""
    items = items_of(pq.read_table(os.path.join(out_dir, REVIEW_FILE)).to_pandas())
    open_items = pending(items, corrections, spells_of(out_dir, images))
    reasons = Counter(i.reason for i in open_items)
    settled = len(items) - len(open_items)
    return (
        f"review items: {len(open_items)} open"
        + (" (" + ", ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")" if reasons else "")
        + (f"; {settled} settled in the corrections log" if settled else "")
    )


def spells_of(out_dir: str, images: pa.Table) -> Spells:
    """The stations' windows and the photos' times: a camera seen to stays seen to while its
    spell of bad health lasts, though its item shows the spell's latest photo, and the
    dashboard's queue counts it so (review_queue.Spells)."""
    windows = pq.read_table(os.path.join(out_dir, STATIONS_FILE)).to_pandas()
    return Spells.of(windows, images.select(["image_id", "taken_at"]).to_pandas())


def corrections_lines(
    corrections: Sequence[Correction],
    log: str | None,
    images: pa.Table,
    station_ids: Collection[str] | None = None,
) -> list[str]:
    """Which officials' log the results apply: a run without --corrections takes the
    dashboard's own where it exists, so an --out folder reused from another race would
    apply its decisions (by bib) unseen. A decision about a photo names it by its SHA-256:
    a photo re-saved since (re-exported in place by the photographer) is another, so the
    decision applies to nothing, and it was counted as applied while its athlete went back
    to dns (the audit's case); those are counted apart, for the official to decide again.
    So are, with the course's `station_ids`, the decisions naming a station it no longer
    has (a station renamed since: off_course), whose items came back to the queue."""
    if not log:
        return []
    present = set(images.column("image_id").to_pylist())
    lost = [c for c in corrections if c.action in IMAGE_ACTIONS and c.image_id not in present]
    gone = (
        [c for c in off_course(corrections, station_ids) if c not in lost]
        if station_ids is not None
        else []
    )
    lines = [f"corrections applied: {len(corrections) - len(lost) - len(gone)} from {log}"]
    if lost:
        photos = ", ".join(dict.fromkeys(c.image_id[:12] for c in lost))
        lines.append(
            f"  not applied: {len(lost)} about photos no longer in the race (changed or "
            f"removed since?): {photos}; decide them again in the review queue"
        )
    if gone:
        stations = _counted(Counter(c.station_id for c in gone), "{v} ({n})")
        lines.append(
            f"  not applied: {len(gone)} about stations no longer in the course (renamed or "
            f"removed since?): {stations}; put the station's id back in the course, or decide "
            "them again in the review queue"
        )
    return lines


def images_lines(images: pa.Table) -> list[str]:
    """The photos read, by status, the rejected ones by reason; the folders whose photos
    found no station (a camera's folder named otherwise than its station loses them all),
    and those with photos without a usable time, with what to do (photos forwarded by a
    messaging app lose it: the timer saw a count of bad_exif, not whose or why)."""
    rows = images.select(["status", "reason", "path"]).to_pylist()
    statuses = Counter(r["status"] for r in rows)
    why = Counter(r["reason"] for r in rows if r["status"] == REJECTED)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    lines = [f"images read: {len(rows)}" + (f" ({counts})" if counts else "")]
    if why:
        lines.append("rejected: " + _counted(why))
    if no_station := _folders_of(rows, UNKNOWN_STATION):
        lines.append(f"no station for the photos of folders: {no_station}")
    if no_time := _folders_of(rows, BAD_EXIF):
        lines += [f"no time on the photos of folders: {no_time}", f"  {NO_TIME_HINT}"]
    return lines


def _folders_of(rows: list[dict], reason: str) -> str:
    """The folders of the photos rejected for `reason`, with how many, most first."""
    folders = Counter(
        posixpath.basename(posixpath.dirname(r["path"])) for r in rows if r["reason"] == reason
    )
    return _counted(folders, "{v} ({n})")


def _counted(counts: Counter, form: str = "{n} {v}") -> str:
    """The counted values, most first (then by value), as one phrase."""
    ranked = sorted(counts.items(), key=lambda vn: (-vn[1], str(vn[0])))
    return ", ".join(form.format(v=v, n=n) for v, n in ranked)


def running_lines(athletes: Counter, course: Course | None) -> list[str]:
    """Without race.close nobody is ever dnf: an athlete last seen at the start stays
    running in a run days after the race, which the timer must be told (and how to end it)."""
    running = athletes["running"]  # transforms.results.RUNNING, whose module loads Beam
    if course is None or course.last_close is not None or not running:
        return []
    return [still_running(running)]


def summarise(
    out_dir: str,
    corrections: Sequence[Correction] = (),
    top: int = 10,
    course: Course | None = None,
    corrections_file: str | None = None,
) -> str:
    # Read once for the photos' lines and the review queue's spells.
    images = pq.read_table(os.path.join(out_dir, IMAGES_FILE), columns=IMAGE_COLUMNS)
    passages = pq.read_table(os.path.join(out_dir, PASSAGES_FILE), columns=["needs_review"])
    unsure = sum(passages["needs_review"].to_pylist())
    board = pq.read_table(os.path.join(out_dir, LEADERBOARD_FILE)).to_pylist()
    # A bib read that is not on the start list has a row of its own ("Unknown #bib"), to
    # review; it is no athlete of the race, so it is counted apart.
    listed = [r for r in board if "unknown_bib" not in (r["flags"] or ())]
    athletes = Counter(r["status"] for r in listed)
    unknown = len(board) - len(listed)
    lines = [
        *images_lines(images),
        f"passages: {passages.num_rows} ({unsure} need review)",
        *corrections_lines(
            corrections, corrections_file, images, course.station_ids if course else None
        ),
        review_line(out_dir, corrections, images),
        "athletes: "
        + (", ".join(f"{n} {s}" for s, n in sorted(athletes.items())) or "none")
        + (f"; unknown bibs read: {unknown}" if unknown else ""),
        *running_lines(athletes, course),
    ]
    # Ranked finishers only: an unknown bib's row (a read not on the start list, flagged for
    # review) finishes unranked and has no category.
    ranked = [r for r in board if r["rank"] is not None][:top]
    if ranked:
        lines += [
            f"top {top}:",
            f"  {'rank':>4}  {'bib':>6}  {'name':<24} {'category':<8} {'time':>10}",
        ]
    else:
        lines.append("no finisher ranked yet")
    for row in ranked:
        lines.append(
            f"  {row['rank']:>4}  {row['bib']:>6}  {row['name'][:24]:<24} "
            f"{(row['category'] or '')[:8]:<8} {clock(row['total_s']):>10}"
        )
    lines.append("results: " + ", ".join(os.path.join(out_dir, f) for f in OUTPUT_FILES))
    return "\n".join(lines)
