"""The corrections log as the dashboard writes and reads it: appends from several officials
at once lose nothing and tear nothing; a bad line is reported with its number, not fatal.
"""

from __future__ import annotations

import fcntl
import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard.review_queue import APPROVE, Item, Placement, decision_rows, pending
from tests.conftest import photo, read
from transforms.corrections import (
    Correction,
    append_corrections,
    decisions_by_image,
    load_corrections,
    off_course,
    official_statuses,
    read_corrections_leniently,
)
from transforms.identify import identify_photo

WRITERS, ROWS_EACH = 4, 50
LISTED, THRESHOLD = frozenset({"101", "102"}), 0.75
DECIDED = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def decision(writer: int, n: int) -> Correction:
    return Correction(
        image_id=f"{writer:02d}{n:04d}" * 8,  # as long as a SHA-256, so writes are not tiny
        action="assign",
        bib=str(100 + n),
        station_id="finish",
        passed_at=DECIDED - timedelta(minutes=30),
        decided_at=DECIDED + timedelta(seconds=n),
        by=f"official, no. {writer}",  # a comma: the row must be quoted
    )


def _write_decisions(path: str, writer: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    for n in range(ROWS_EACH):
        append_corrections(path, [decision(writer, n)])


def test_append__concurrent_writers_lose_and_tear_nothing(tmp_path: Path) -> None:
    log = str(tmp_path / "corrections.csv")
    context = multiprocessing.get_context("spawn")  # no fork of the test runner's threads
    start = context.Event()
    writers = [
        context.Process(target=_write_decisions, args=(log, w, start)) for w in range(WRITERS)
    ]
    for w in writers:
        w.start()
    start.set()  # all at once, to make them contend for the file
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0] * WRITERS
    text = Path(log).read_text(encoding="utf-8")
    assert text.count("image_id,action") == 1
    rows = load_corrections(log)  # strict: any torn line would raise
    assert len(rows) == WRITERS * ROWS_EACH
    assert set(rows) == {decision(w, n) for w in range(WRITERS) for n in range(ROWS_EACH)}


def _append_announced(path: str, row: Correction, ready: multiprocessing.synchronize.Event) -> None:
    ready.set()
    append_corrections(path, [row])


def test_append__waits_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    log = tmp_path / "corrections.csv"
    append_corrections(str(log), [decision(0, 0)])
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    with open(log, "a", encoding="utf-8") as other:
        fcntl.flock(other, fcntl.LOCK_EX)  # another official's dashboard, mid-append
        writer = context.Process(target=_append_announced, args=(str(log), decision(1, 0), ready))
        writer.start()
        assert ready.wait(30)
        writer.join(0.5)
        assert writer.is_alive()
        assert load_corrections(str(log)) == (decision(0, 0),)
    writer.join(30)  # closing the file released the lock
    assert writer.exitcode == 0
    assert load_corrections(str(log)) == (decision(0, 0), decision(1, 0))


def test_append__creates_the_log_with_its_header_and_reads_back(tmp_path: Path) -> None:
    log = str(tmp_path / "corrections.csv")
    append_corrections(log, [decision(0, 0)])
    append_corrections(log, [decision(0, 1), decision(0, 2)])
    assert Path(log).read_text(encoding="utf-8").splitlines()[0] == (
        "image_id,action,bib,station_id,passed_at,decided_at,by"
    )
    assert load_corrections(log) == (decision(0, 0), decision(0, 1), decision(0, 2))


def test_append__after_a_torn_line_starts_on_a_new_line(tmp_path: Path) -> None:
    log = tmp_path / "corrections.csv"
    append_corrections(str(log), [decision(0, 0)])
    with open(log, "a", encoding="utf-8") as f:
        f.write("abc,assi")  # a writer died in the middle of its row
    append_corrections(str(log), [decision(0, 1)])
    reading = read_corrections_leniently(str(log))
    assert reading.corrections == (decision(0, 0), decision(0, 1))
    assert len(reading.problems) == 1 and "line 3" in reading.problems[0]


@pytest.mark.parametrize(
    "bad",
    [
        Correction("abc", "delete"),
        Correction("abc", "assign"),
        Correction("", "reject"),
        Correction("abc", "reject", by="two\nlines"),
    ],
    ids=["unknown_action", "assign_without_bib", "reject_without_image", "line_break"],
)
def test_append__a_bad_row_writes_nothing(tmp_path: Path, bad: Correction) -> None:
    log = tmp_path / "corrections.csv"
    with pytest.raises(ValueError):
        append_corrections(str(log), [decision(0, 0), bad])
    assert not log.exists()


def test_read_leniently__reports_each_bad_line_and_keeps_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "corrections.csv"
    log.write_text(
        "image_id,action,bib,station_id,passed_at,decided_at,by\n"
        "abc,reject,,,,2026-05-01T09:00:00Z,kari\n"
        "abc,delete,,,,2026-05-01T09:01:00Z,kari\n"
        "def,approve,,,,yesterday,ola\n"
        "ghi,dsq,101,,,2026-05-01T09:02:00Z,ola\n",
        encoding="utf-8",
    )
    reading = read_corrections_leniently(str(log))
    assert [(c.image_id, c.action) for c in reading.corrections] == [
        ("abc", "reject"),
        ("ghi", "dsq"),
    ]
    assert [p.split(": ")[1] for p in reading.problems] == ["line 3", "line 4"]


def test_read_leniently__a_wrong_header_is_one_problem(tmp_path: Path) -> None:
    log = tmp_path / "corrections.csv"
    log.write_text("id,what\nabc,reject\n", encoding="utf-8")
    reading = read_corrections_leniently(str(log))
    assert reading.corrections == ()
    assert reading.problems == (
        f"{log}: line 1: expected header image_id,action,bib,station_id,passed_at,decided_at,by",
    )


def test_approving_a_missed_checkpoint_leaves_the_finish_photo_as_read() -> None:
    # The finish photo of a runner not seen at cp1 also shows another runner, read weakly.
    # "Approve: the result stands" is about the first runner, not a word on the second's read,
    # which stays in the queue (it was approved with the photo, unseen, and timed), and on
    # the leaderboard the runner stays in the results.
    finish = photo("f", bibs=(read("101", 0.98), read("102", 0.5)))
    missed = Item(finish.image_id, "missed_checkpoint", "cp1", ("101",))
    weak = Item(finish.image_id, "low_confidence", "finish", ("102",))
    rows = decision_rows(APPROVE, missed, official="kari", now=DECIDED, photo_station="finish")
    as_read = identify_photo(finish, LISTED, THRESHOLD, {})
    assert identify_photo(finish, LISTED, THRESHOLD, decisions_by_image(rows)) == as_read
    assert pending([missed, weak], rows) == [weak]
    assert official_statuses(rows) == {}


def test_a_photo_without_time_is_in_review_and_timed_where_the_official_places_it() -> None:
    # Bad EXIF: the photo of 101's finish has no time (and one in no station folder has no
    # station); read surely all the same. An official must see it, and can place it.
    no_time = replace(photo("f", bibs=(read("101", 0.98),)), status="rejected", reason="bad_exif")
    no_station = replace(no_time, station_id=None, reason="unknown_station")
    for rejected in (no_time, no_station):
        shown = identify_photo(rejected, LISTED, THRESHOLD, {})
        assert shown.photo == rejected and shown.sightings == ()
        assert [(i.reason, i.candidates) for i in shown.review] == [(rejected.reason, ("101",))]
    item = Item(no_time.image_id, "bad_exif", "finish", ("101",))
    placed = Placement("finish", DECIDED - timedelta(minutes=50))
    rows = decision_rows("assign", item, official="kari", now=DECIDED, bibs=("101",), placed=placed)
    for rejected in (no_time, no_station):
        timed = identify_photo(rejected, LISTED, THRESHOLD, decisions_by_image(rows))
        assert [(s.bib, s.station_id, s.at) for s in timed.sightings] == [
            ("101", "finish", placed.passed_at)
        ]
        assert timed.review == ()
    # Placed, it no longer says where it could be and what its camera said: those were the
    # official's question (images.parquet kept them on the placed photo: failed before).
    doubted = replace(no_station, exif_taken_at=placed.passed_at, could_be_at=("cp1", "finish"))
    timed = identify_photo(doubted, LISTED, THRESHOLD, decisions_by_image(rows)).photo
    assert (timed.station_id, timed.exif_taken_at, timed.could_be_at) == ("finish", None, ())
    # A photo without reads stays as it was: nothing for an official there.
    blank = replace(no_time, facts=replace(no_time.facts, bibs=()))
    assert identify_photo(blank, LISTED, THRESHOLD, {}).review == ()


def test_an_early_start_stays_open_until_an_official_decides_how_the_athlete_is_timed(
    tmp_path: Path,
) -> None:
    # The audit's official approved the wave jumper's start photo (its implausible split):
    # that says he is on it, not how he is timed, so the early start stays in the queue.
    # Approve keeps him timed from the photo (reinstate), reject times him from his wave's
    # gun (from_gun, read back from the log), disqualify is his dsq. Failed before, passes.
    item = Item("start-photo", "early_start", "start", ("110",))
    photo_approved = Correction("start-photo", "approve", decided_at=DECIDED)
    assert pending([item], [photo_approved]) == [item]
    for action, logged in (("approve", "reinstate"), ("reject", "from_gun"), ("dsq", "dsq")):
        rows = decision_rows(action, item, official="kari", now=DECIDED)
        assert [(r.action, r.bib, r.station_id) for r in rows] == [(logged, "110", "start")]
        assert pending([item], rows) == []
    log = str(tmp_path / "corrections.csv")
    append_corrections(log, decision_rows("reject", item, official="kari", now=DECIDED))
    assert official_statuses(load_corrections(log)) == {"110": "from_gun"}


# --- Decisions naming a station the course no longer has --------------------------------------


def test_off_course__the_decisions_whose_station_is_gone_and_matters():
    # cp1 renamed km5 in the course since: the decisions keyed by cp1 match no station.
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    keyed = [
        Correction("img1", "assign", "101", "cp1", at),
        Correction("img2", "reinstate", "102", "cp1"),
        Correction("img2", "approve", "102", "cp1"),  # an athlete kept, as logged before KEEP
        Correction("img3", "from_gun", "103", "cp1"),
        Correction("img4", "seen", "", "cp1"),
    ]
    # About the photo wherever it is (the dashboard writes its station for the record), about
    # the athlete, or at a station still in the course.
    unkeyed = [
        Correction("img5", "approve", "", "cp1"),
        Correction("img5", "reject", "104", "cp1"),
        Correction("img6", "accept", "", "cp1"),
        Correction("", "dsq", "105", "cp1"),
        Correction("img7", "assign", "101", "km5", at),
        Correction("img8", "assign", "101", "", None),
    ]
    assert off_course(keyed + unkeyed, ("start", "km5", "finish")) == keyed


def test_decisions_by_image__an_assignment_to_a_station_gone_is_not_applied():
    # Applied, it timed the athlete at a station the course has not, and the split check
    # failed on it (KeyError 'cp1': racelens results ended in a traceback).
    at = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    rows = [
        Correction("img1", "assign", "101", "cp1", at),
        Correction("img1", "assign", "102", "km5", at),
        Correction("img2", "assign", "103", "cp1", at),
    ]
    decided = decisions_by_image(rows, ("start", "km5", "finish"))
    assert [c.bib for c in decided["img1"].assigned] == ["102"] and "img2" not in decided
    assert len(decisions_by_image(rows)["img1"].assigned) == 2  # without a course: all
