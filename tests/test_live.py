"""Live mode: a watched folder that fills up ends with the same results as a batch run."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.cli import main
from pipeline.live import LiveState, batch_argv, groups_of, poll, stable_files, watch
from tests.conftest import restored_logging

AS_OF = "2026-05-01T16:00:00+00:00"  # after the demo course closed: statuses are final


def test_stable_files__a_growing_upload_is_not_ready() -> None:
    before = {"a.jpg": (100, 1.0), "b.jpg": (50, 1.0)}
    after = {"a.jpg": (100, 1.0), "b.jpg": (80, 2.0), "c.jpg": (10, 3.0)}
    assert stable_files(before, after) == {"a.jpg"}


def test_batch_argv__drops_live_flags_and_their_values() -> None:
    argv = ["--images", "x", "--streaming", "--stop-after", "30", "--stop_after=5", "--out", "o"]
    assert batch_argv(argv) == ["--images", "x", "--out", "o"]


def test_groups_of__copies_share_one_group_in_path_order() -> None:
    ids = {"b/2.jpg": "h1", "a/1.jpg": "h1", "c.jpg": "h2"}
    assert groups_of(ids) == [("h1", ["a/1.jpg", "b/2.jpg"]), ("h2", ["c.jpg"])]


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


def _argv(race: Path, images: Path, out: Path, facts: Path) -> list[str]:
    return [
        "--images", str(images), "--course", str(race / "course.yaml"),
        "--start-list", str(race / "startlist.csv"), "--out", str(out),
        "--facts", str(facts), "--as-of", AS_OF, "--no-progress",
    ]  # fmt: skip


def _drip(source: Path, target: Path, done: threading.Event) -> None:
    """Copies the station folders one by one, the way cameras upload during a race."""
    for folder in sorted(source.iterdir()):
        shutil.copytree(folder, target / folder.name)
        time.sleep(1.0)
    done.set()


def _table(out: Path, name: str, drop: tuple[str, ...] = ()) -> list[dict]:
    rows = pq.read_table(out / name).drop_columns(list(drop)).to_pylist()
    return sorted(rows, key=repr)


def test_watch__dripped_race_equals_the_batch_run(race: Path, tmp_path: Path) -> None:
    facts = tmp_path / "facts"  # shared: the live run reuses the batch run's analysis
    with restored_logging():
        assert main(["run", *_argv(race, race / "images", tmp_path / "batch", facts)]) == 0
    live_images = tmp_path / "live-images"
    live_images.mkdir()
    done = threading.Event()
    copier = threading.Thread(target=_drip, args=(race / "images", live_images, done))
    copier.start()
    with restored_logging():
        state = watch(
            ["--streaming", *_argv(race, live_images, tmp_path / "live", facts)],
            str(live_images),
            stop_after=None,
            poll_s=0.3,
            should_stop=done.is_set,
        )
    copier.join()
    assert state.cycles >= 2, "results were updated while photos arrived, and at the end"
    for name in ("passages.parquet", "leaderboard.parquet", "stations.parquet"):
        assert _table(tmp_path / "live", name) == _table(tmp_path / "batch", name), name
    # Same photos, found under another folder: everything but the paths agrees.
    paths = ("path", "duplicate_of_path")
    assert _table(tmp_path / "live", "images.parquet", paths) == _table(
        tmp_path / "batch", "images.parquet", paths
    )
