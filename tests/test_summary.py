"""The summary a run prints: read back from the written results, whatever they hold."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.summary import NO_TIME_HINT, summarise
from tests.conftest import at, make_course
from transforms.corrections import Correction
from transforms.course import Settings
from transforms.schemas import IMAGES, REVIEW, STATIONS
from transforms.write import (
    IMAGES_FILE,
    LEADERBOARD_FILE,
    PASSAGES_FILE,
    REVIEW_FILE,
    STATIONS_FILE,
)


def finisher(rank: int | None, bib: str, name: str, category: str | None, total_s: float) -> dict:
    return {
        "rank": rank,
        "bib": bib,
        "name": name,
        "category": category,
        "status": "finished",
        "total_s": total_s,
        "flags": [] if rank is not None else ["unknown_bib"],
    }


def write_images(
    out: Path, *rows: tuple[str, str | None, str], windows: Sequence[dict] = ()
) -> None:
    """images.parquet rows: (status, reason, path), each photo named and timed by its file
    name (img1.jpg at 08:01); and stations.parquet's windows (none unless given)."""
    table = [
        {
            "image_id": Path(path).stem,
            "status": s,
            "reason": r,
            "path": path,
            "taken_at": taken(path),
        }
        for s, r, path in rows
    ]
    columns = ("image_id", "status", "reason", "path", "taken_at")
    schema = pa.schema([IMAGES.field(name) for name in columns])
    pq.write_table(pa.Table.from_pylist(table, schema=schema), out / IMAGES_FILE)
    pq.write_table(pa.Table.from_pylist(list(windows), schema=STATIONS), out / STATIONS_FILE)


def taken(path: str) -> datetime:
    """When a test photo was taken: N minutes after the gun for imgN.jpg, else at the gun."""
    digits = "".join(c for c in Path(path).stem if c.isdigit())
    return at(60 * int(digits or 0))


def write_review(out: Path, *items: tuple[str, str, list[str]]) -> None:
    rows = [
        {"image_id": image_id, "reason": reason, "candidates": bibs, "station_id": "finish"}
        for image_id, reason, bibs in items
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=REVIEW), out / REVIEW_FILE)


def test_summary__top_lists_ranked_finishers_and_counts_an_unknown_bib_apart(
    tmp_path: Path,
) -> None:
    # A real race's photos read bibs that are not on the start list: each becomes an
    # unranked "Unknown #bib" finisher without a category, which once crashed the summary.
    write_images(
        tmp_path, ("passage", None, "/r/finish/a.jpg"), ("review", None, "/r/finish/b.jpg")
    )
    pq.write_table(pa.table({"needs_review": [False, True]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path, ("img1", "unknown_bib", ["3638"]))
    board = [
        finisher(1, "101", "Ada Runner", "M40", 3600.0),
        finisher(None, "3638", "Unknown #3638", None, 3500.0),
    ]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    summary = summarise(str(tmp_path))

    assert "Ada Runner" in summary
    assert "Unknown #3638" not in summary
    assert "athletes: 1 finished; unknown bibs read: 1" in summary


def test_summary__says_so_when_no_finisher_is_ranked(tmp_path: Path) -> None:
    write_images(tmp_path, ("review", None, "/r/finish/b.jpg"))
    pq.write_table(pa.table({"needs_review": [True]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path, ("img1", "unknown_bib", ["3638"]))
    board = [finisher(None, "3638", "Unknown #3638", None, 3500.0)]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    summary = summarise(str(tmp_path))

    assert "no finisher ranked yet" in summary
    assert "athletes: none; unknown bibs read: 1" in summary
    assert "top 10" not in summary


def test_summary__counts_the_items_the_corrections_log_settles_apart(tmp_path: Path) -> None:
    # The pipeline writes every item it raised; the official's queue shows only those no
    # decision settles, and the summary must give the same count of work left.
    write_images(tmp_path, *[("review", None, f"/r/finish/img{i}.jpg") for i in (1, 2, 3)])
    pq.write_table(pa.table({"needs_review": [True]}), tmp_path / PASSAGES_FILE)
    write_review(
        tmp_path,
        ("img1", "low_confidence", ["101"]),
        ("img2", "unknown_bib", ["3638"]),
        ("img3", "low_confidence", ["102"]),
    )
    pq.write_table(
        pa.Table.from_pylist([finisher(1, "101", "Ada", "M40", 1.0)]), tmp_path / LEADERBOARD_FILE
    )
    decisions = (Correction("img1", "approve", "101", "finish"), Correction("img9", "reject"))

    assert "review items: 3 open (2 low_confidence, 1 unknown_bib)" in summarise(str(tmp_path))
    summary = summarise(str(tmp_path), decisions, corrections_file="/race/out/corrections.csv")
    assert "review items: 2 open (1 unknown_bib, 1 low_confidence); 1 settled" in summary
    # The log is named: a run without --corrections takes the dashboard's own, unasked.
    # img9 is no photo of the race (re-saved since: another SHA-256): its decision applies
    # to nothing, and was counted as applied (failed before, passes).
    assert "corrections applied: 1 from /race/out/corrections.csv" in summary
    assert (
        "  not applied: 1 about photos no longer in the race (changed or removed since?): "
        "img9; decide them again in the review queue"
    ) in summary.splitlines()
    assert "corrections applied" not in summarise(str(tmp_path))


def test_summary__names_the_decisions_at_a_station_the_course_no_longer_has(
    tmp_path: Path,
) -> None:
    # cp1 renamed km5 in the course since the official decided: the log keys decisions by
    # the station's id, so these match no station, and their items came back unseen.
    write_images(tmp_path, ("passage", None, "/r/unsorted/img1.jpg"))
    pq.write_table(pa.table({"needs_review": [False]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path)
    pq.write_table(
        pa.Table.from_pylist([finisher(1, "101", "Ada", "M40", 1.0)]), tmp_path / LEADERBOARD_FILE
    )
    decisions = (
        Correction("img1", "assign", "101", "cp1", at(1500)),
        Correction("img1", "reinstate", "102", "cp1"),
        Correction("img1", "approve", "", "cp1"),  # about the photo: applied wherever it is
        Correction("img1", "seen", "", "start"),
    )
    renamed = make_course(stations=(*make_course().stations[::2],))  # start, finish
    summary = summarise(str(tmp_path), decisions, course=renamed, corrections_file="log.csv")
    assert "corrections applied: 2 from log.csv" in summary
    assert (
        "  not applied: 2 about stations no longer in the course (renamed or removed since?): "
        "cp1 (2); put the station's id back in the course, or decide them again in the review "
        "queue"
    ) in summary.splitlines()


def test_summary__a_camera_seen_to_stays_seen_to_while_its_spell_lasts(tmp_path: Path) -> None:
    # An official saw to the covered finish camera on its dark frame of minute 2; it shot
    # another at minute 7, which its item shows now. The dashboard's queue has nothing open
    # (the spell, 0-10 min, was seen to), and the summary said one camera item was.
    covered = [
        {
            "station_id": "finish",
            "window_start": at(300 * n),
            "window_end": at(300 * (n + 1)),
            "images": 1,
            "passages": 0,
            "health": "covered",
        }
        for n in range(2)
    ]
    write_images(
        tmp_path,
        ("review", "camera_covered", "/r/finish/img2.jpg"),
        ("review", "camera_covered", "/r/finish/img7.jpg"),
        windows=covered,
    )
    pq.write_table(pa.table({"needs_review": pa.array([], pa.bool_())}), tmp_path / PASSAGES_FILE)
    item = {
        "image_id": "img7",
        "reason": "camera_covered",
        "station_id": "finish",
        "taken_at": taken("img7"),
    }
    pq.write_table(pa.Table.from_pylist([item], schema=REVIEW), tmp_path / REVIEW_FILE)
    pq.write_table(
        pa.Table.from_pylist([finisher(1, "101", "Ada", "M40", 1.0)]), tmp_path / LEADERBOARD_FILE
    )
    seen = Correction("img2", "seen", station_id="finish")

    assert "review items: 1 open (1 camera_covered)" in summarise(str(tmp_path))
    assert "review items: 0 open; 1 settled" in summarise(str(tmp_path), (seen,))


def test_summary__no_photo_read_is_said_plainly(tmp_path: Path) -> None:
    write_images(tmp_path)
    pq.write_table(pa.table({"needs_review": pa.array([], pa.bool_())}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path)
    board = [{**finisher(None, "101", "Ada", "M40", 0.0), "status": "dns", "total_s": None}]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    lines = summarise(str(tmp_path)).splitlines()

    assert lines[:3] == ["images read: 0", "passages: 0 (0 need review)", "review items: 0 open"]


def test_summary__says_why_photos_were_rejected_and_where_photos_found_no_station(
    tmp_path: Path,
) -> None:
    # A camera's folder named otherwise than its station ("Finsh") loses every photo in it
    # to unknown_station: the timer must see that at the end of the run, not at the podium.
    write_images(
        tmp_path,
        ("passage", None, "/r/images/finish/1.jpg"),
        ("rejected", "unknown_station", "/r/images/Finsh/2.jpg"),
        ("rejected", "unknown_station", "/r/images/Finsh/3.jpg"),
        ("rejected", "unknown_station", "/r/images/misc/4.jpg"),
        ("rejected", "unreadable", "/r/images/finish/5.jpg"),
    )
    pq.write_table(pa.table({"needs_review": [False]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path)
    pq.write_table(
        pa.Table.from_pylist([finisher(1, "101", "Ada", None, 3600.0)]), tmp_path / LEADERBOARD_FILE
    )

    lines = summarise(str(tmp_path)).splitlines()

    assert lines[:3] == [
        "images read: 5 (1 passage, 4 rejected)",
        "rejected: 3 unknown_station, 1 unreadable",
        "no station for the photos of folders: Finsh (2), misc (1)",
    ]


def test_summary__says_where_photos_without_time_are_and_what_to_do(tmp_path: Path) -> None:
    # Photos forwarded by WhatsApp lose their EXIF: the summary said "rejected: 3 bad_exif"
    # and the timer had no hint which camera's they were, nor how to get them timed.
    write_images(
        tmp_path,
        ("passage", None, "/r/images/finish/1.jpg"),
        ("rejected", "bad_exif", "/r/images/finish/2.jpg"),
        ("rejected", "bad_exif", "/r/images/finish/3.jpg"),
        ("rejected", "bad_exif", "/r/images/cp1/4.jpg"),
    )
    pq.write_table(pa.table({"needs_review": [False]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path, ("2", "bad_exif", ["101"]))
    pq.write_table(
        pa.Table.from_pylist([finisher(1, "101", "Ada", None, 3600.0)]), tmp_path / LEADERBOARD_FILE
    )

    lines = summarise(str(tmp_path)).splitlines()

    assert lines[1:4] == [
        "rejected: 3 bad_exif",
        "no time on the photos of folders: finish (2), cp1 (1)",
        "  " + NO_TIME_HINT,
    ]
    assert "WhatsApp" in NO_TIME_HINT and "clock_offset_s" in NO_TIME_HINT


def test_summary__says_who_stays_running_for_want_of_a_close(tmp_path: Path) -> None:
    # Without race.close an athlete seen at the start and nowhere after stays "running",
    # even in a batch run days after the race: the timer must read why, and what to do.
    write_images(tmp_path, ("passage", None, "/r/images/start/1.jpg"))
    pq.write_table(pa.table({"needs_review": [False]}), tmp_path / PASSAGES_FILE)
    write_review(tmp_path)
    out = [{**finisher(None, b, "Bo", "M40", 0.0), "status": "running", "flags": []} for b in "12"]
    board = [finisher(1, "101", "Ada", "M40", 3600.0), *out]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    summary = summarise(str(tmp_path), course=make_course())
    assert (
        "2 athletes still running: the course has no race.close or time_limit_s, so nobody "
        "is dnf (add one to the course, then racelens results --course FILE)"
    ) in summary.splitlines()
    closes = make_course(close=at(7200))  # a live run before the close: running is right
    assert "still running" not in summarise(str(tmp_path), course=closes)
    limited = make_course(settings=Settings(time_limit_s=7200.0))  # closes for each wave
    assert "still running" not in summarise(str(tmp_path), course=limited)
    assert "still running" not in summarise(str(tmp_path))
