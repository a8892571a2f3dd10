"""Live mode: a watched folder that fills up ends with the same results as a batch run."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from dashboard.review_queue import ACCEPT, decision_rows, items_of
from dashboard.tallies import settled_by_official
from pipeline.cli import main
from pipeline.drip import differing, drip
from pipeline.live import LiveRace, LiveState, batch_argv, poll, stable_files, watch
from pipeline.live_lock import hold_live_lock, live_run_log
from pipeline.retime import identify_all
from tests.conftest import athlete, make_course, photo, read, restored_logging
from transforms.corrections import Correction, append_corrections
from transforms.records import ExifFacts, Photo

AS_OF = "2026-05-01T16:00:00+00:00"  # after the demo course closed: statuses are final


def test_stable_files__a_growing_upload_is_not_ready() -> None:
    before = {"a.jpg": (100, 1.0), "b.jpg": (50, 1.0)}
    after = {"a.jpg": (100, 1.0), "b.jpg": (80, 2.0), "c.jpg": (10, 3.0)}
    assert stable_files(before, after) == {"a.jpg"}


def test_batch_argv__drops_live_flags_and_their_values() -> None:
    argv = ["--images", "x", "--streaming", "--stop-after", "30", "--stop_after=5", "--out", "o"]
    assert batch_argv(argv) == ["--images", "x", "--out", "o"]


def test_poll__takes_files_once_stable_rehashes_rewrites_and_forgets_deleted(
    tmp_path: Path,
) -> None:
    state = LiveState()
    photo = tmp_path / "cp1" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"first")
    assert poll(state, str(tmp_path)) == []  # seen once: may still be uploading
    assert poll(state, str(tmp_path)) == [str(photo)]
    first_id = state.ids[str(photo)]
    photo.write_bytes(b"second upload")
    os.utime(photo, (time.time() + 5, time.time() + 5))
    poll(state, str(tmp_path))
    assert poll(state, str(tmp_path)) == [str(photo)]
    assert state.ids[str(photo)] != first_id
    photo.unlink()
    poll(state, str(tmp_path))
    assert state.ids == {}


def _argv(
    race: Path, images: Path, out: Path, facts: Path, course: Path | None = None
) -> list[str]:
    return [
        "--images", str(images), "--course", str(course or race / "course.yaml"),
        "--start-list", str(race / "startlist.csv"), "--out", str(out),
        "--facts", str(facts), "--as-of", AS_OF, "--no-progress",
    ]  # fmt: skip


def _table(out: Path, name: str, drop: tuple[str, ...] = ()) -> list[dict]:
    rows = pq.read_table(out / name).drop_columns(list(drop)).to_pylist()
    return sorted(rows, key=repr)


@pytest.fixture(scope="module")
def batch(race: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch run over the race; its facts are shared (by image_id) with the live runs."""
    out = tmp_path_factory.mktemp("batch")
    with restored_logging():
        assert main(["run", *_argv(race, race / "images", out, out / "facts")]) == 0
    return out


def test_watch__dripped_race_equals_the_batch_run(race: Path, batch: Path, tmp_path: Path) -> None:
    live_images = tmp_path / "live-images"
    live_images.mkdir()  # the folder exists, empty, when the watch starts
    facts = batch / "facts"
    done = threading.Event()
    # In the order taken, a phone uploading at the end, some photos twice (pipeline/drip.py).
    dripper = threading.Thread(target=drip, args=(race / "images", live_images, 3.0, None, done))
    dripper.start()
    with restored_logging():
        state = watch(
            ["--streaming", *_argv(race, live_images, tmp_path / "live", facts)],
            stop_after=None,
            poll_s=0.1,
            should_stop=done.is_set,
        )
        dripper.join()
        assert main(["run", *_argv(race, live_images, tmp_path / "batch", facts)]) == 0
    assert state.cycles >= 3, "results were updated while photos arrived, and at the end"
    assert differing(tmp_path / "live", tmp_path / "batch") == []
    for name in ("images.parquet", "review.parquet", "stations.parquet", "athlete_photos.parquet"):
        assert _table(tmp_path / "live", name) == _table(tmp_path / "batch", name), name


def _late_course(race: Path, tmp_path: Path, lateness_s: float) -> Path:
    course = tmp_path / "course.yaml"
    course.write_text(
        (race / "course.yaml").read_text() + f"settings: {{allowed_lateness_s: {lateness_s}}}\n"
    )
    return course


def _late_arrival(race: Path, batch: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The first start photo with a passage (relative to the race's images), and a folder to
    watch holding every photo but that one: it reaches the folder after everything else,
    more than 60 s (+ the merge window) behind the latest photo."""
    images = pq.read_table(batch / "images.parquet").to_pylist()
    first = min(
        (r for r in images if r["station_id"] == "start" and r["status"] == "passage"),
        key=lambda r: r["taken_at"],
    )
    late = Path(first["path"]).relative_to(race / "images")
    live_images = tmp_path / "live-images"
    shutil.copytree(race / "images", live_images, ignore=lambda d, names: [late.name])
    return late, live_images


def test_live_race__photo_after_the_allowed_lateness_is_recorded_and_reviewed_not_timed(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    late, live_images = _late_arrival(race, batch, tmp_path)
    first = {r["path"]: r for r in pq.read_table(batch / "images.parquet").to_pylist()}[
        str(race / "images" / late)
    ]
    course = _late_course(race, tmp_path, 60.0)
    live = LiveRace(_argv(race, live_images, tmp_path / "live", batch / "facts", course))
    live.update(final=True)
    shutil.copyfile(race / "images" / late, live_images / late)
    assert live.update(final=True) == [str(live_images / late)]

    row = {r["path"]: r for r in _table(tmp_path / "live", "images.parquet")}[
        str(live_images / late)
    ]
    assert (row["status"], row["reason"]) == ("review", "too_late")
    review = _table(tmp_path / "live", "review.parquet")
    assert [r["candidates"] for r in review if r["reason"] == "too_late"] == [row["bibs"]]
    passages = _table(tmp_path / "live", "passages.parquet")
    assert first["image_id"] not in {p["image_id"] for p in passages}
    # A batch run (a backfill) has no arrival order: it times the photo.
    with restored_logging():
        backfill = _argv(race, live_images, tmp_path / "backfill", batch / "facts", course)
        assert main(["run", *backfill]) == 0
    timed = _table(tmp_path / "backfill", "passages.parquet")
    assert first["image_id"] in {p["image_id"] for p in timed}


def test_live_race__a_restart_keeps_the_photos_that_arrived_too_late_held(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # Stopped and started again (Ctrl-C, a reboot), the live run takes in every file at its
    # first poll, all "arriving" together: a photo held as too late was then timed, unseen,
    # and its review item left the official's queue.
    late, images = _late_arrival(race, batch, tmp_path)
    course = _late_course(race, tmp_path, 60.0)
    argv = _argv(race, images, tmp_path / "live", batch / "facts", course)
    first = LiveRace(argv)
    first.update(final=True)
    shutil.copyfile(race / "images" / late, images / late)
    first.update(final=True)
    first.close()
    held = _table(tmp_path / "live", "images.parquet")
    restarted = LiveRace(argv)
    restarted.update(final=True)
    assert _table(tmp_path / "live", "images.parquet") == held
    assert restarted.state.too_late == {str(images / late)}


def _live_copy(race: Path, tmp_path: Path, folders: tuple[str, ...] = ()) -> Path:
    """The race's photos in a folder to watch: those of the station `folders` when given."""
    live_images = tmp_path / "live-images"

    def left_out(folder: str, names: list[str]) -> list[str]:
        at_top = folders and folder == str(race / "images")
        return [n for n in names if n not in folders] if at_top else []

    shutil.copytree(race / "images", live_images, ignore=left_out)
    return live_images


def test_live_race__an_officials_decision_reaches_the_live_results_at_once(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The dashboard appends to RESULTS/corrections.csv (its default log) while the live run
    # keeps the results: the next poll times the decision in, without a new photo.
    out = tmp_path / "live"
    live = LiveRace(_argv(race, _live_copy(race, tmp_path), out, batch / "facts"))
    assert live_run_log(str(out)) == str(out / "corrections.csv")
    live.update(final=True)
    timed = _table(out, "passages.parquet")[0]
    decided = datetime(2026, 5, 1, 12, tzinfo=UTC)
    append_corrections(
        str(out / "corrections.csv"),
        [Correction(timed["image_id"], "reject", decided_at=decided, by="kari")],
    )
    assert live.update() == []
    assert timed["image_id"] not in {p["image_id"] for p in _table(out, "passages.parquet")}
    live.close()
    assert live_run_log(str(out)) is None  # the dashboard re-times by itself again


def test_live_run__reads_the_log_the_results_were_kept_from(
    race: Path, batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `racelens run --corrections decisions.csv`, the officials deciding into it on the
    # dashboard, then a live run on the folder without --corrections (restarted, say). It
    # timed their decisions in, but at its end recorded no log in run.json (the dashboard
    # then appended to OUT/corrections.csv, and its next re-timing dropped every decision
    # of decisions.csv), and its summary named no log and counted settled items as open.
    out, log = tmp_path / "live", tmp_path / "decisions.csv"
    out.mkdir()
    images = _live_copy(race, tmp_path)
    argv = _argv(race, images, out, batch / "facts")
    run = {"images": str(images), "course": str(race / "course.yaml"), "corrections": str(log)}
    (out / "run.json").write_text(json.dumps(run))
    rejected = _table(batch, "passages.parquet")[0]["image_id"]
    decided = datetime(2026, 5, 1, 12, tzinfo=UTC)
    append_corrections(str(log), [Correction(rejected, "reject", decided_at=decided)])
    live = LiveRace(argv)
    assert live_run_log(str(out)) == str(log)
    live.close()
    capsys.readouterr()
    with restored_logging():
        assert main(["run", "--streaming", "--stop-after", "0", *argv]) == 0
    assert rejected not in {p["image_id"] for p in _table(out, "passages.parquet")}
    assert json.loads((out / "run.json").read_text())["corrections"] == str(log)
    assert f"corrections applied: 1 from {log}" in capsys.readouterr().out


def test_live_race__inputs_recorded_from_the_start_and_no_batch_re_timing_beside_it(
    race: Path, batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The dashboard takes the race's name, stations and time zone from run.json, and
    # `racelens photos` the images folder, while the live run goes on: it comes with the
    # first results (the second poll, when the files have stopped growing).
    out, images = tmp_path / "live", _live_copy(race, tmp_path)
    live = LiveRace(_argv(race, images, out, batch / "facts"))
    live.update()
    assert not (out / "run.json").exists()  # nothing is written before the first results
    live.update()
    saved = json.loads((out / "run.json").read_text())
    assert (saved["course"], saved["images"]) == (str(race / "course.yaml"), str(images))
    # `racelens results` by hand, or a batch run, would replace the live run's files with
    # others (and the live run would put its own back at the next photo): each says so.
    for command in (["results", "--out", str(out)], ["run", *_argv(race, images, out, batch)]):
        with restored_logging():
            assert main(command) == 2
        assert "a live run keeps these results" in capsys.readouterr().err
    live.close()


def test_live_race__athletes_still_out_when_the_course_closes_become_dnf(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # Only the start's photos have arrived when the course closes, a few seconds from now.
    close = datetime.now(UTC) + timedelta(seconds=3)
    course = tmp_path / "course.yaml"
    closing = f"close: '{close.isoformat()}'"
    course.write_text(re.sub(r"close: '[^']*'", closing, (race / "course.yaml").read_text()))
    live = _live_now(race, _live_copy(race, tmp_path, ("start",)), course, batch, tmp_path)
    out = _statuses(tmp_path / "live", "running")
    assert out
    _update_after(live, close)
    assert _statuses(tmp_path / "live", "dnf") == out


def test_live_race__athletes_waiting_when_their_start_closes_become_dns(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # Wave B's start closes (its gun plus start_crossing_s) a few seconds from now, and no
    # photo has arrived: its athletes are waiting, then dns, with no photo to start an update.
    closes = datetime.now(UTC) + timedelta(seconds=3)
    gun = (closes - timedelta(seconds=900)).isoformat()
    text = re.sub(r", close: '[^']*'", "", (race / "course.yaml").read_text())
    course = tmp_path / "course.yaml"
    course.write_text(re.sub(r"\{id: B, start: '[^']*'\}", f"{{id: B, start: '{gun}'}}", text))
    images = _live_copy(race, tmp_path, ("no-station",))
    live = _live_now(race, images, course, batch, tmp_path)
    waiting = _statuses(tmp_path / "live", "waiting")
    assert waiting
    _update_after(live, closes)
    assert _statuses(tmp_path / "live", "dns") >= waiting
    assert not _statuses(tmp_path / "live", "waiting")


def _live_now(race: Path, images: Path, course: Path, batch: Path, tmp_path: Path) -> LiveRace:
    """A live race into tmp_path/live, as of each update (no --as-of), updated once."""
    argv = _argv(race, images, tmp_path / "live", batch / "facts", course)
    live = LiveRace(argv[:-3] + argv[-1:])
    live.update(final=True)
    return live


def _update_after(live: LiveRace, moment: datetime) -> None:
    """Wait until `moment` has passed, then update the live race (no photo arrived)."""
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.1)
    live.update()


def _statuses(out: Path, status: str) -> set[str]:
    """The bibs of the leaderboard with this status."""
    return {r["bib"] for r in _table(out, "leaderboard.parquet") if r["status"] == status}


def test_hold_live_lock__results_on_another_file_system_make_no_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --out gs://...: no dashboard reads such results, and os.makedirs made ./gs:/... here.
    monkeypatch.chdir(tmp_path)
    assert hold_live_lock("gs://bucket/results", "gs://bucket/results/corrections.csv") is None
    assert list(tmp_path.iterdir()) == []


def test_live_run__a_corrections_log_not_there_yet_starts_empty(
    race: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # On race morning the log the officials will decide into does not exist yet.
    images, log = tmp_path / "live-images", tmp_path / "decisions" / "corrections.csv"
    images.mkdir()
    argv = [
        "run",
        "--streaming",
        "--stop-after",
        "0",
        *_argv(race, images, tmp_path / "out", tmp_path / "facts"),
    ]
    with restored_logging():
        assert main([*argv, "--corrections", str(log)]) == 0
    assert log.read_text() == "image_id,action,bib,station_id,passed_at,decided_at,by\n"
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["corrections"] == str(log)  # racelens results reads it afterwards
    # A path that cannot be a file is still refused, in one line.
    capsys.readouterr()
    with restored_logging():
        assert main([*argv, "--corrections", str(tmp_path / "decisions")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decisions" in err, err


def test_live_run__refused_in_one_line_leaves_no_log_folder(
    race: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The log and its new folder were made before --out and --facts were checked, and stayed
    # behind a run refused for its --facts.
    images = tmp_path / "live-images"
    images.mkdir()
    before = sorted(tmp_path.rglob("*"))
    log = tmp_path / "decisions" / "corrections.csv"
    argv = _argv(race, images, tmp_path / "out", images / "facts")
    with restored_logging():
        assert main(["run", "--streaming", *argv, "--corrections", str(log)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--facts" in err, err
    assert sorted(tmp_path.rglob("*")) == before, "nothing it made is left"
    # A log that cannot be a file (a folder) is refused after --out and --facts are made.
    argv = _argv(race, images, tmp_path / "new" / "out", tmp_path / "new" / "facts")
    with restored_logging():
        assert main(["run", "--streaming", *argv, "--corrections", str(images)]) == 2
    assert "--corrections" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before, "nothing it made is left"


def test_live_race__a_photo_copied_in_again_late_keeps_its_passages(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The finish's photos copied in again, after the race, into the folder renamed with a
    # capital (Finish/): judged alone, each copy was held as too late, kept as the photo
    # (Finish/ sorts first), the photo that came in time made its duplicate, and finishers
    # lost their finish passages to a review item "Arrived too late to be timed".
    course = _late_course(race, tmp_path, 60.0)
    images = _live_copy(race, tmp_path)
    out = tmp_path / "live"
    live = LiveRace(_argv(race, images, out, batch / "facts", course))
    live.update(final=True)
    timed = _table(out, "passages.parquet")
    shutil.copytree(race / "images" / "finish", images / "Finish")
    live.update(final=True)
    assert not [r for r in _table(out, "images.parquet") if r["reason"] == "too_late"]
    assert _table(out, "passages.parquet") == timed
    # The copies that came first stay the photos of record: by path (Finish/ sorts first)
    # the later copies were, and the dashboard's links pointed at them (failed before,
    # passes).
    rows = _table(out, "images.parquet")
    later = [r for r in rows if "/Finish/" in r["path"]]
    assert len(later) == len(list((race / "images" / "finish").iterdir()))
    assert {r["reason"] for r in later} == {"exact_duplicate"}
    assert all("/finish/" in r["duplicate_of_path"] for r in later)
    live.close()
    # Started again (Ctrl-C, a new start), all files at its first poll: the same.
    again = LiveRace(_argv(race, images, out, batch / "facts", course))
    again.update(final=True)
    again.close()
    assert _table(out, "passages.parquet") == timed
    assert _table(out, "images.parquet") == rows


def test_live_race__a_stray_copy_for_another_station_is_queued_the_passage_stays(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # A finish photo timed, then a copy of it dropped into start/: the published finish was
    # put in doubt (station_conflict), timed nowhere until an official decided (failed
    # before, passes). Now the stray copy alone is queued, and the finish stays.
    images = _live_copy(race, tmp_path)
    out = tmp_path / "live"
    argv = _argv(race, images, out, batch / "facts")
    live = LiveRace(argv)
    live.update(final=True)
    timed = _table(out, "passages.parquet")
    finish = next(p for p in timed if p["station_id"] == "finish")
    [kept] = [r for r in _table(out, "images.parquet") if r["image_id"] == finish["image_id"]]
    stray = images / "start" / f"stray-{Path(kept['path']).name}"
    shutil.copyfile(kept["path"], stray)
    live.update(final=True)
    assert _table(out, "passages.parquet") == timed
    rows = {r["path"]: r for r in _table(out, "images.parquet")}
    assert rows[kept["path"]] == kept
    assert (rows[str(stray)]["status"], rows[str(stray)]["reason"]) == (
        "review",
        "station_conflict",
    )
    assert rows[str(stray)]["duplicate_of_path"] == kept["path"]
    [item] = [r for r in _table(out, "review.parquet") if r["reason"] == "station_conflict"]
    assert (item["path"], item["could_be_at"]) == (str(stray), ["finish", "start"])
    live.close()
    # Started again, every file at its first poll: the choice stays.
    again = LiveRace(argv)
    again.update(final=True)
    assert _table(out, "passages.parquet") == timed
    assert {r["path"]: r for r in _table(out, "images.parquet")} == rows
    # The official places the photo (at the finish, as it was): the stray copy is its copy.
    decided = datetime(2026, 5, 1, 12, tzinfo=UTC)
    append_corrections(
        str(out / "corrections.csv"),
        [Correction(kept["image_id"], "assign", finish["bib"], "finish", None, decided)],
    )
    again.update()
    assert rows[kept["path"]]["image_id"] in {
        p["image_id"] for p in _table(out, "passages.parquet")
    }
    after = {r["path"]: r for r in _table(out, "images.parquet")}
    assert after[str(stray)]["reason"] == "exact_duplicate"
    assert not [r for r in _table(out, "review.parquet") if r["reason"] == "station_conflict"]
    again.close()


def test_live_race__a_station_uploading_late_is_one_review_item_accepted_at_once(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The finish camera uploads after the race: each of its photos more than the allowed
    # lateness behind the others was one too_late item, a queue an official cannot work.
    course = _late_course(race, tmp_path, 60.0)
    images = _live_copy(race, tmp_path, ("start", "unsorted"))
    out = tmp_path / "live"
    log = io.StringIO()
    live = LiveRace(_argv(race, images, out, batch / "facts", course), log)
    live.update(final=True)
    shutil.copytree(race / "images" / "finish", images / "finish")
    live.update(final=True)
    held = [r for r in _table(out, "images.parquet") if r["reason"] == "too_late"]
    assert f"({len(held)} held as arrived too late)" in log.getvalue().splitlines()[-1]
    assert len(held) > 1 and {r["station_id"] for r in held} == {"finish"}
    [item] = [r for r in _table(out, "review.parquet") if r["reason"] == "too_late"]
    assert item["station_id"] == "finish"
    assert set(item["candidates"]) <= {b for r in held for b in r["bibs"]}
    # Accepted together: timed as if they had come in time, the official's word on each.
    batch_item = items_of(pd.read_parquet(out / "review.parquet"))
    [late] = [i for i in batch_item if i.reason == "too_late"]
    rows = decision_rows(
        ACCEPT, late, official="kari", now=datetime.now(UTC), batch=[r["image_id"] for r in held]
    )
    assert len(rows) == len(held)
    append_corrections(str(out / "corrections.csv"), rows)
    live.update()
    assert not [r for r in _table(out, "images.parquet") if r["reason"] == "too_late"]
    assert not [r for r in _table(out, "review.parquet") if r["reason"] == "too_late"]
    assert _table(out, "passages.parquet") == _table(batch, "passages.parquet")
    assert "(0 held as arrived too late)" in log.getvalue().splitlines()[-1]  # accepted
    # The stats page: settled by the official who accepted them, not by the pipeline.
    images_now = pd.read_parquet(out / "images.parquet")
    official = set(images_now[settled_by_official(images_now, rows)]["image_id"])
    held_ids = {r["image_id"] for r in held}
    timed = set(images_now[images_now["status"] == "passage"]["image_id"]) & held_ids
    assert timed and timed <= official <= held_ids
    live.close()


def test_live_race__no_missed_checkpoint_before_the_checkpoints_photos_can_have_come(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The checkpoints' phones (unsorted/, placed by camera serial) have sent nothing yet.
    out = tmp_path / "live"
    images = _live_copy(race, tmp_path, ("start", "finish"))
    live = LiveRace(_argv(race, images, out, batch / "facts"))
    live.update()
    live.update()  # the files have stopped growing: taken in
    assert _table(out, "passages.parquet")
    assert not [r for r in _table(out, "review.parquet") if r["reason"] == "missed_checkpoint"]
    # The watch ends: every photo there is is in, as in a batch run over them.
    live.update(final=True)
    assert [r for r in _table(out, "review.parquet") if r["reason"] == "missed_checkpoint"]
    live.close()


def test_live_race__a_checkpoint_phone_not_uploaded_yet_is_awaited_not_silent(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The checkpoints' phones (unsorted/) upload later, within the allowed lateness: their
    # stations were reported silent cameras, one camera_silent item each, until the photos
    # came (failed before, passes).
    out = tmp_path / "live"
    images = _live_copy(race, tmp_path, ("start", "finish"))
    course = _late_course(race, tmp_path, 3 * 3600.0)
    live = LiveRace(_argv(race, images, out, batch / "facts", course))
    live.update()
    live.update()  # the files have stopped growing: taken in
    windows = _table(out, "stations.parquet")
    waiting = {r["station_id"] for r in windows if r["health"] == "awaited"}
    assert waiting and not waiting & {"start", "finish"}
    assert not [r for r in windows if r["health"] == "silent" and r["station_id"] in waiting]
    review = _table(out, "review.parquet")
    assert not [r for r in review if r["reason"] == "camera_silent" and r["station_id"] in waiting]
    # The watch ends: the phones never sent a photo. One item each, about no photo (a
    # camera silent all day had silent windows and no item: failed before, passes).
    live.update(final=True)
    live.close()
    windows = _table(out, "stations.parquet")
    assert {r["health"] for r in windows if r["station_id"] in waiting} == {"silent"}
    silent = [r for r in _table(out, "review.parquet") if r["reason"] == "camera_silent"]
    items = [(r["station_id"], r["image_id"]) for r in silent if r["station_id"] in waiting]
    assert sorted(items) == sorted((s, "") for s in waiting)


def test_results_after_a_live_run__photos_held_as_too_late_stay_held(
    race: Path, batch: Path, tmp_path: Path
) -> None:
    # The live run has stopped; the official's next decision in the dashboard runs
    # `racelens results`, a batch re-timing, which timed every held photo unseen.
    late, images = _late_arrival(race, batch, tmp_path)
    out = tmp_path / "live"
    live = LiveRace(_argv(race, images, out, batch / "facts", _late_course(race, tmp_path, 60.0)))
    live.update(final=True)
    shutil.copyfile(race / "images" / late, images / late)
    live.update(final=True)
    live.close()
    held = {r["path"]: r for r in _table(out, "images.parquet")}[str(images / late)]
    with restored_logging():
        assert main(["results", "--out", str(out)]) == 0
    row = {r["path"]: r for r in _table(out, "images.parquet")}[str(images / late)]
    assert (row["status"], row["reason"]) == ("review", "too_late")
    assert [r["image_id"] for r in _table(out, "review.parquet") if r["reason"] == "too_late"] == [
        held["image_id"]
    ]
    assert held["image_id"] not in {p["image_id"] for p in _table(out, "passages.parquet")}
    # Accepted by the official: timed.
    log = out / "corrections.csv"
    decided = datetime(2026, 5, 1, 12, tzinfo=UTC)
    append_corrections(str(log), [Correction(held["image_id"], "accept", decided_at=decided)])
    with restored_logging():
        assert main(["results", "--out", str(out), "--corrections", str(log)]) == 0
    assert held["image_id"] in {p["image_id"] for p in _table(out, "passages.parquet")}


def test_identify_all__a_late_photo_hides_no_burst_frame_that_came_in_time(
    tmp_path: Path,
) -> None:
    # A burst's first frame is uploaded again after the allowed lateness (a retried upload);
    # the next frame came in time. The late one, held, made the timely one its burst copy:
    # 101's finish passage was gone until an official accepted the late frame.
    def frame(name: str, clock: str) -> Photo:
        exif = ExifFacts(datetime_original=f"2026:05:01 {clock}", offset="+02:00")
        shot = photo(name, folder="finish", station=None, seconds=None, exif=exif)
        return replace(
            shot, facts=replace(shot.facts, bibs=(read("101"),), phash="ffff0000ffff0000")
        )

    late, timely = frame("late", "10:30:00.0"), frame("timely", "10:30:00.5")
    cfg = SimpleNamespace(
        course=make_course(),
        athletes=(athlete("101"),),
        corrections=(),
        start_list_file=str(tmp_path / "startlist.csv"),
    )
    identified = {
        i.photo.path: i for i in identify_all([late, timely], cfg, frozenset({late.path}))
    }
    assert (identified[late.path].photo.reason, identified[late.path].sightings) == ("too_late", ())
    assert [s.bib for s in identified[timely.path].sightings] == ["101"]
