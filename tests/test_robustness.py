"""Race day is messy: bad files, bad configuration, killed runs. racelens keeps working, says
what was wrong and loses nothing.

- A fuzz corpus, made here and never checked in: every entry under --images becomes exactly
  one images.parquet row, rejected with a specific reason unless it is a usable photo, the
  run finishes and no source is changed.
- Bad configuration: one line naming file, line and problem, exit 2, nothing written.
- Crash safety: runs killed with SIGKILL leave only complete outputs, and a run started
  again gives the results of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import count_files, dashboard_command, main
from pipeline.demo import generate_race
from pipeline.drip import differing
from pipeline.drip import main as drip_main
from pipeline.interrupted import remove_temporaries_of, results_state
from pipeline.live import LiveState, list_files, poll, poll_wait
from pipeline.options import RaceConfig, RacelensOptions, run_inputs
from pipeline.photo_export import export_photos
from pipeline.selfcheck import (
    BAD_GPS,
    CORPUS,
    Entry,
    SelfCheck,
    _run,
    build_corpus,
    encoded,
    good,
    jpeg_bomb,
    noise,
    png_bomb,
    run_argv,
    snapshot,
    stored_path,
)
from tests.conftest import (
    COURSE_YAML,
    PROPERTY,
    START_LIST_CSV,
    repeated_meanwhile,
    restored_logging,
)
from tests.test_course import BAD_COURSES
from transforms import hashes as hashes_module
from transforms import photos, schemas
from transforms.course import SAVE_AS_UTF8, ConfigError
from transforms.photos import FactStore, ReadPhotos, analyse_photo, list_photos
from transforms.records import ANALYSIS_VERSION, PhotoFacts
from transforms.schemas import ATHLETE_PHOTOS_FILE, LEADERBOARD_FILE, PASSAGES_FILE
from transforms.write import (
    STALE_AFTER_S,
    TEMPORARY_MARK,
    NoRoom,
    no_room_told_to,
    remove_stale_temporaries,
    write_atomically,
)

REPO = Path(__file__).resolve().parents[1]
# What the per-photo analysis may say about bytes it cannot use (README, "Robustness").
ANALYSIS_REASONS = {
    "empty_file",
    "not_an_image",
    "unsupported_format",
    "image_too_large",
    "bad_exif",
    "truncated_image",
    "corrupt_image",
}


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fails a run that hangs (a FIFO read waits forever) instead of hanging the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class FuzzRun:
    images: Path
    exit_code: int
    rows: list[dict]
    before: dict[bytes, tuple]
    after: dict[bytes, tuple]


@pytest.fixture(scope="module")
def fuzz_run(race: Path, tmp_path_factory: pytest.TempPathFactory) -> FuzzRun:
    root = tmp_path_factory.mktemp("fuzz")
    images = root / "images"
    build_corpus(images, race)
    before = snapshot(images)
    argv = run_argv(images, race / "course.yaml", race / "startlist.csv", root / "out")
    with restored_logging(), time_limit(300):
        code = main(argv)
    rows = pq.read_table(root / "out" / "images.parquet").to_pylist()
    return FuzzRun(images, code, rows, before, snapshot(images))


def test_fuzz_run__finishes_and_gives_every_entry_exactly_one_row(fuzz_run: FuzzRun) -> None:
    assert fuzz_run.exit_code == 0
    paths = Counter(row["path"] for row in fuzz_run.rows)
    assert paths == Counter(stored_path(fuzz_run.images, e.name) for e in CORPUS)


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.name.decode("ascii", "replace"))
def test_fuzz_run__each_entry_is_rejected_with_its_reason_or_used(
    fuzz_run: FuzzRun, entry: Entry
) -> None:
    [row] = [r for r in fuzz_run.rows if r["path"] == stored_path(fuzz_run.images, entry.name)]
    if entry.reason is None:
        assert row["status"] != "rejected", row["reason"]
    else:
        assert (row["status"], row["reason"]) == entry.row


def test_fuzz_run__sources_are_never_changed(fuzz_run: FuzzRun) -> None:
    assert fuzz_run.after == fuzz_run.before


def test_listings__the_analysis_engines_and_live_mode_see_every_entry(fuzz_run: FuzzRun) -> None:
    expected = sorted(stored_path(fuzz_run.images, e.name) for e in CORPUS)
    assert list_photos(str(fuzz_run.images)) == expected  # Dask's analysis, bench
    assert sorted(list_files(str(fuzz_run.images))) == expected  # live mode
    assert count_files(str(fuzz_run.images)) == len(expected)  # the progress lines' total


@pytest.mark.filterwarnings("error::FutureWarning")  # re's 'possible nested set'
@pytest.mark.parametrize("name", ["race [2026]", "race *", "race ?"])
def test_listings__a_folder_named_with_wildcards_is_taken_literally_and_listed_from_itself(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beam's file patterns took them as wildcards: 'race [2026]/images' listed no photo
    # (every athlete dns, exit 0), or the photos of a folder beside it ('race 2/images').
    images, beside = tmp_path / name / "images", tmp_path / "race 2" / "images"
    for folder in (images, beside):
        (folder / "finish").mkdir(parents=True)
        (folder / "finish" / "a.jpg").write_bytes(b"jpeg")
    photo = str(images / "finish" / "a.jpg")
    # Each listing starts at the folder itself: Beam's starts at the folder that holds the
    # first wildcard character's, here tmp_path, which may be a disk of a season's races.
    walked: list[str] = []
    walk = os.walk

    def recorded(top: str, *args: object, **kwargs: object) -> Iterator:
        walked.append(os.fspath(top))
        return walk(top, *args, **kwargs)

    monkeypatch.setattr(os, "walk", recorded)
    assert list_photos(str(images)) == [photo]
    assert list(list_files(str(images))) == [photo]
    # The streaming graph's (Flink, Dataflow): Beam's MatchContinuously walked from tmp_path.
    assert [v.value for v in photos.ListPhotos()(str(images)).outputs] == [photo]
    with TestPipeline() as p:
        assert_that(p | ReadPhotos(str(images)), equal_to([photo]))
    # Deleted as named: Beam's delete found no file 'race [2026]/out/...', and took
    # 'race */out/...' for the same file in 'race 2/out' too.
    out, out_beside = tmp_path / name / "out", tmp_path / "race 2" / "out"
    for folder in (out, out_beside):
        folder.mkdir()
        stale = folder / f"images.parquet{TEMPORARY_MARK}1-x"
        stale.write_bytes(b"PA")
        os.utime(stale, (1_000, 1_000))
    assert remove_stale_temporaries([str(out)]) == [str(out / stale.name)]
    assert [p.name for p in out.iterdir()] == []
    assert [p.name for p in out_beside.iterdir()] == [stale.name]
    assert remove_temporaries_of([str(out)], [1]) == []
    assert results_state(str(out), 0) == f"no results are written in {out} yet"
    assert {top for top in walked if not top.startswith((str(images), str(out)))} == set()


def test_stale_temporaries__other_files_are_not_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every run's start, and every stop, looked at each file of the fact store (a stat each:
    # 0.25 CPU s per 40,000 files) to find the few temporary ones.
    (tmp_path / "v27" / "ab").mkdir(parents=True)
    (tmp_path / "v27" / "ab" / "ab12.json").write_text("{}")
    stale = tmp_path / "v27" / "ab" / f"ab34.json{TEMPORARY_MARK}1-x"
    stale.write_text("{")
    os.utime(stale, (1_000, 1_000))
    stat = os.stat

    def only_temporaries(path: object, *args: object, **kwargs: object) -> os.stat_result:
        assert TEMPORARY_MARK in os.fspath(path), f"looked at {path}"
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", only_temporaries)
    assert remove_stale_temporaries([str(tmp_path)]) == [str(stale)]
    assert remove_temporaries_of([str(tmp_path)], [2]) == []


def test_list_photos__a_folder_it_cannot_list_is_an_unreadable_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A card's folder copied with another user's permissions: its photos were left out of
    # the listing without a word (Beam's and os.walk both skip what they cannot list).
    images, locked = tmp_path / "images", tmp_path / "images" / "start"
    locked.mkdir(parents=True)
    (locked / "a.jpg").write_bytes(encoded("JPEG", good(1)))
    (images / "finish").mkdir()
    (images / "finish" / "b.jpg").write_bytes(encoded("JPEG", good(2)))
    scandir = os.scandir

    def denied(path: object = ".") -> object:
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    assert list_photos(str(images)) == [str(images / "finish" / "b.jpg"), str(locked)]
    assert photos.unreadable_reason(str(locked)) == "unreadable"


def finish_photo_with_bibs(race: Path, image_id: str) -> tuple[bytes, PhotoFacts]:
    """The demo race's first finish photo on which a bib is read: its bytes and facts."""
    return next(
        (data, facts)
        for path in sorted((race / "images" / "finish").glob("FINISH_*[0-9].jpg"))
        for data in [path.read_bytes()]
        for facts in [analyse_photo(data, image_id)]
        if facts.bibs
    )


@pytest.mark.parametrize("kept", [0.97, 0.8])
def test_analyse_photo__a_jpeg_cut_short_is_analysed_on_what_arrived(
    race: Path, kept: float
) -> None:
    # An upload that broke off lost its athlete with no word: rejected as truncated_image,
    # no reads, no review item, the athlete dns (session 19's audit, a finish photo at 97 %).
    data, complete = finish_photo_with_bibs(race, "whole")
    cut = analyse_photo(data[: round(kept * len(data))], "cut")
    assert (cut.error, cut.truncated, complete.truncated) == (None, True, False)
    assert cut.exif == complete.exif
    assert {b.bib for b in cut.bibs} == {b.bib for b in complete.bibs} != set()


def _shot_sideways(data: bytes) -> bytes:
    """The photo as a camera held on its side stores it: its pixels turned a quarter, with an
    EXIF orientation (6: turn clockwise to show) that turns them back, its other tags kept."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        exif[0x0112] = 6
        stored = image.transpose(Image.Transpose.ROTATE_90)
        out = io.BytesIO()
        stored.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("kept", [1.0, 0.97])
def test_analyse_photo__a_photo_shot_sideways_is_measured_and_boxed_upright(
    race: Path, kept: float
) -> None:
    # images.parquet gave such a photo's stored width and height while its boxes were upright
    # (swapped against the photo the dashboard shows), and a cut-short one was read on its
    # stored pixels, its boxes off the photo shown.
    data, upright = finish_photo_with_bibs(race, "upright")
    sideways = _shot_sideways(data)
    facts = analyse_photo(sideways[: round(kept * len(sideways))], "sideways")
    assert (facts.error, facts.truncated) == (None, kept < 1)
    assert (facts.width, facts.height) == (upright.width, upright.height)
    assert {b.bib for b in facts.bibs} == {b.bib for b in upright.bibs}
    for seen in facts.bibs:
        shown = next(b.box for b in upright.bibs if b.bib == seen.bib)
        assert max(abs(a - b) for a, b in zip(seen.box, shown, strict=True)) <= 16


def test_analyse_photo__a_jpeg_cut_in_its_header_is_still_rejected(race: Path) -> None:
    data = next(iter(sorted((race / "images" / "finish").glob("FINISH_*[0-9].jpg")))).read_bytes()
    assert analyse_photo(data[:200], "cut").error == "truncated_image"


@pytest.mark.parametrize("bomb", [png_bomb, jpeg_bomb])
def test_analyse_photo__a_decompression_bomb_is_refused_from_its_header(
    bomb: Callable[[int, int], bytes],
) -> None:
    tracemalloc.start()
    try:
        facts = analyse_photo(bomb(40_000, 40_000), "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert facts.error == "image_too_large"
    assert peak < 16 * 2**20, "decoding it would take 4.8 GB"


def test_reading__a_large_file_that_is_no_photo_is_never_held_whole_in_memory(
    tmp_path: Path,
) -> None:
    # A camera's video under --images was read whole into memory to hash it, and again to
    # analyse it, in a worker, on every run: a 2 GB one in a 299-photo race took 2.1 GB of
    # memory and ~10 s a run.
    video = tmp_path / "images" / "finish" / "VID_0001.mp4"
    video.parent.mkdir(parents=True)
    with open(video, "wb") as f:
        f.write(b"\0\0\0\x18ftypmp42")
        for _ in range(64):
            f.write(os.urandom(2**20))
    store = tmp_path / "facts"
    storing = photos._StoreFacts(str(store))
    storing.setup()
    analysing = photos._AnalyseContent(str(store / "other"), str(tmp_path / "images"))
    analysing.setup()
    tracemalloc.start()
    try:
        [hashed] = photos._HashFile().process(str(video))
        [stored] = storing.process(str(video))
        [photo] = analysing.process((hashed[0], [str(video)]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    image_id = hashlib.sha256(video.read_bytes()).hexdigest()
    assert hashed == stored == (image_id, str(video))
    assert photo.facts.error == FactStore(str(store)).get(image_id).error == "not_an_image"
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MB held for a 64 MB file"
    # `racelens bibs` given it.
    tracemalloc.start()
    try:
        with pytest.raises(photos.Unusable, match="not_an_image"):
            photos.read_photo_bibs(str(video))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"racelens bibs: {peak / 2**20:.0f} MB held for a 64 MB file"


@pytest.fixture
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled as soon as written (HashCache), not 2 s later."""
    monkeypatch.setattr(hashes_module, "SETTLED_NS", 0)


def _unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def read(*_: object) -> bytes:
        raise AssertionError("read again")

    monkeypatch.setattr(photos, "read_photo_bytes", read)


@pytest.mark.usefixtures("settled_at_once")
def test_hash_cache__a_file_hashed_before_is_not_read_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A camera's 2 GB video under --images was hashed on every run (4-8 CPU s).
    video = tmp_path / "images" / "VID_0001.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(3 * 2**20))
    hashes = photos.HashCache(str(tmp_path / "facts"))
    first = photos.cached_file_id(str(video), hashes)
    assert first == hashlib.sha256(video.read_bytes()).hexdigest()
    with monkeypatch.context() as patched:
        _unread(patched)
        assert photos.cached_file_id(str(video), hashes) == first
        # The stores of the two engines take it from there too.
        hashing = photos._HashFile(str(tmp_path / "facts"))
        hashing.setup()
        [(hashed, _)] = hashing.process(str(video))
        assert hashed == first
    # Rewritten in place, the same size, its modification time put back (`cp -p`): hashed
    # again, its change time tells.
    mtime = video.stat().st_mtime_ns
    video.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(3 * 2**20))
    os.utime(video, ns=(mtime, mtime))
    second = photos.cached_file_id(str(video), hashes)
    assert second == hashlib.sha256(video.read_bytes()).hexdigest() != first


def _as_a_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What this process has read of the hash logs, and the log it appends to, forgotten."""
    monkeypatch.setattr(hashes_module, "_READ", {})
    monkeypatch.setattr(hashes_module, "_OWN_LOGS", {})


@pytest.mark.usefixtures("settled_at_once")
def test_hash_cache__one_log_per_process_a_line_torn_by_a_crash_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small file per photo: 123 MB of disk at 30,000 photos (3.8 GB on exFAT's clusters).
    images = tmp_path / "images"
    images.mkdir()
    paths = [images / f"IMG_{i:04d}.JPG" for i in range(50)]
    for path in paths:
        path.write_bytes(path.name.encode() * 100)
    hashes = photos.HashCache(str(tmp_path / "facts"))
    ids = [photos.cached_file_id(str(p), hashes) for p in paths]
    [log] = (tmp_path / "facts" / hashes_module.HASHES_FOLDER).iterdir()
    with open(log, "ab") as f:
        f.write(b'["' + str(paths[0]).encode() + b'", 1, 2')  # killed mid-line
    with monkeypatch.context() as restarted:
        _as_a_new_process(restarted)
        _unread(restarted)
        again = photos.HashCache(str(tmp_path / "facts"))
        assert [photos.cached_file_id(str(p), again) for p in paths] == ids


@pytest.mark.usefixtures("settled_at_once")
def test_hash_cache__the_logs_of_ended_processes_are_merged_a_living_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, facts = tmp_path / "images", str(tmp_path / "facts")
    images.mkdir()
    paths = [images / f"IMG_{i:04d}.JPG" for i in range(hashes_module.MERGE_LOGS_OVER + 2)]
    ids = []
    for path in paths[:-1]:  # each hashed by a run of its own, ended
        path.write_bytes(path.name.encode())
        with monkeypatch.context() as run:
            _as_a_new_process(run)
            ids.append(photos.cached_file_id(str(path), photos.HashCache(facts)))
            os.close(hashes_module._OWN_LOGS.popitem()[1][1])
    paths[-1].write_bytes(b"a live run's")
    _as_a_new_process(monkeypatch)
    living = photos.HashCache(facts)  # hashes on, its log open
    ids.append(photos.cached_file_id(str(paths[-1]), living))
    own = Path(os.readlink(f"/proc/self/fd/{hashes_module._OWN_LOGS[living.root][1]}"))
    with monkeypatch.context() as other:
        _as_a_new_process(other)
        assert photos.HashCache(facts).get(str(paths[0]), photos.stamp_of(str(paths[0])))
        logs = sorted(p.name for p in Path(living.root).iterdir())
    assert len(logs) == 2 and own.name in logs and any(n.startswith("merged-") for n in logs)
    with monkeypatch.context() as restarted:
        _as_a_new_process(restarted)
        _unread(restarted)
        again = photos.HashCache(facts)
        assert [photos.cached_file_id(str(p), again) for p in paths] == ids


def test_hash_cache__an_earlier_versions_file_per_photo_is_removed(tmp_path: Path) -> None:
    old = tmp_path / "facts" / hashes_module.HASHES_FOLDER / "ab" / ("ab" + "0" * 62 + ".hash")
    old.parent.mkdir(parents=True)
    old.write_text("{}")
    assert photos.HashCache(str(tmp_path / "facts")).get(str(old), (1, 2, 3, 4)) is None
    assert not old.parent.exists()


def test_hash_cache__a_file_changed_just_now_is_hashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its next change may come within its clock's resolution, its times unchanged.
    upload = tmp_path / "a.jpg"
    upload.write_bytes(b"half an upload")
    hashes = photos.HashCache(str(tmp_path / "facts"))
    photos.cached_file_id(str(upload), hashes)
    assert not (tmp_path / "facts").exists()
    monkeypatch.setattr(hashes_module, "SETTLED_NS", 0)  # as it is 2 s later
    photos.cached_file_id(str(upload), hashes)
    _unread(monkeypatch)
    kept = photos.cached_file_id(str(upload), hashes)
    assert kept == hashlib.sha256(b"half an upload").hexdigest()


@pytest.mark.usefixtures("settled_at_once")
def test_live_poll__a_restarted_live_run_reads_no_file_hashed_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped and started again on race day, it read and hashed every photo there was.
    images = tmp_path / "images" / "finish"
    images.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (images / name).write_bytes(name.encode() * 1000)
    hashes = photos.HashCache(str(tmp_path / "facts"))
    first = LiveState()
    poll(first, str(tmp_path / "images"), final=True, hashes=hashes)
    _unread(monkeypatch)
    _as_a_new_process(monkeypatch)
    restarted = LiveState()
    hashes = photos.HashCache(str(tmp_path / "facts"))
    poll(restarted, str(tmp_path / "images"), final=True, hashes=hashes)
    assert restarted.ids == first.ids and len(first.ids) == 2


def test_live_poll__a_photos_folder_gone_at_once_keeps_its_photos(tmp_path: Path) -> None:
    # A USB disk or network share dropped mid-race: every photo was forgotten and the live
    # results rewritten with none (every athlete dns) until it came back.
    images = tmp_path / "images"
    (images / "finish").mkdir(parents=True)
    (images / "finish" / "a.jpg").write_bytes(b"a photo")
    state = LiveState()
    poll(state, str(images), final=True)
    images.rename(tmp_path / "unmounted")
    assert poll(state, str(images), final=True) == []
    assert list(state.ids) == [str(images / "finish" / "a.jpg")]
    (tmp_path / "unmounted").rename(images)
    (images / "finish" / "a.jpg").unlink()  # a photo deleted while it is there is forgotten
    poll(state, str(images), final=True)
    assert state.ids == {}


def test_live_poll__a_folder_slow_to_list_is_polled_less_often(tmp_path: Path) -> None:
    # 40,000 photos take ~0.35 s to list: polled every 0.25 s, ~57 % of a core went on it.
    state = LiveState()
    poll(state, str(tmp_path))
    assert 0 < state.listed_s < 0.25 and poll_wait(0.25, state) == 0.25
    state.listed_s = 0.35
    assert poll_wait(0.25, state) == pytest.approx(1.4)  # a fifth of the time listing


@pytest.mark.usefixtures("settled_at_once")
def test_store_facts__a_file_hashed_before_with_stored_facts_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dask's analysis reads and hashes each file itself.
    video = tmp_path / "VID_0001.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(2**21))
    storing = photos._StoreFacts(str(tmp_path / "facts"))
    storing.setup()
    [first] = storing.process(str(video))
    _unread(monkeypatch)
    assert list(storing.process(str(video))) == [first]


def test_bibs__a_file_it_reads_no_bib_on_is_a_line_with_the_pipelines_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk's I/O error on one photo ended it with a traceback, the photos after it unread.
    files = {
        "failing-disk.jpg": encoded("JPEG", good(1)),
        "empty.jpg": b"",
        "cut.png": encoded("PNG", good(2))[:-30],
        "good.jpg": encoded("JPEG", good(3)),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    read = photos.read_photo_bytes

    def failing_disk(path: str, *args: object) -> bytes:
        if path.endswith("failing-disk.jpg"):
            raise OSError(errno.EIO, "Input/output error", path)
        return read(path, *args)

    monkeypatch.setattr(photos, "read_photo_bytes", failing_disk)
    assert main(["bibs", *(str(tmp_path / name) for name in files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["path"], line.get("error")) for line in lines] == [
        (str(tmp_path / "failing-disk.jpg"), "unreadable"),
        (str(tmp_path / "empty.jpg"), "empty_file"),
        (str(tmp_path / "cut.png"), "truncated_image"),
        (str(tmp_path / "good.jpg"), None),
    ]


def test_selfcheck__a_crashed_run_is_told_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # It was counted ("crashes 1") and nothing more: the engineer had no error to go on.
    def crashing(_: list[str]) -> int:
        raise OSError(28, "No space left on device")

    assert _run(crashing, []) == -1
    assert capsys.readouterr().err == (
        "racelens selfcheck: a run crashed: OSError: [Errno 28] No space left on device\n"
    )


def test_drip__a_source_that_is_no_folder_a_target_inside_it_and_missing_results_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped source dripped nothing, exit 0; `compare` without results ended in a traceback.
    images = tmp_path / "race" / "images"
    images.mkdir(parents=True)
    cases = {
        ("drip", str(tmp_path / "race" / "imgaes"), str(tmp_path / "live")): "not a folder",
        ("drip", str(images), str(images / "live")): "is inside",
        ("compare", str(tmp_path / "live"), str(tmp_path / "batch")): "passages.parquet: not found",
    }
    for argv, problem in cases.items():
        with pytest.raises(SystemExit) as ended:
            drip_main(list(argv))
        err = capsys.readouterr().err
        assert (ended.value.code, err.count("\n")) == (2, 1) and problem in err, err
    assert not (tmp_path / "live").exists() and not (images / "live").exists()


def test_drip__as_a_command_prints_its_outcome_alone(tmp_path: Path) -> None:
    # Importing Beam (through the EXIF reading) warned that apitools was missing: the live
    # demo's last lines on a new user's terminal were that warning and the comparison.
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(encoded("JPEG", good(8)))
    argv = ["drip", str(tmp_path / "images"), str(tmp_path / "live"), "--seconds", "0"]
    dripped = subprocess.run(
        [sys.executable, "-m", "pipeline.drip", *argv], capture_output=True, text=True, cwd=REPO
    )
    assert (dripped.returncode, dripped.stdout, dripped.stderr) == (0, "", "")
    assert (tmp_path / "live" / "a.jpg").is_file()


SEEDS = [encoded("JPEG", good(8), gps=BAD_GPS, maker_note=noise(64)), encoded("PNG", good(9))]


def damaged_exif() -> bytes:
    """A photo whose EXIF is damaged but partly readable: PIL warns as it reads it."""
    damaged = bytearray(SEEDS[0])
    damaged[61] = 151  # an EXIF entry's count: PIL expects 2 bytes more than there are
    return bytes(damaged)


def test_run__a_photo_with_damaged_exif_prints_nothing_but_its_row(tmp_path: Path) -> None:
    # PIL warned (UserWarning, its own source line) on the official's terminal for a photo
    # whose EXIF is damaged but partly readable, naming no photo: the row says it all.
    argv = race_argv(tmp_path)
    (tmp_path / "images" / "damaged.jpg").write_bytes(damaged_exif())
    ran = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert ran.returncode == 0 and "Warning" not in ran.stderr, ran.stderr
    rows = pq.read_table(tmp_path / "out" / "images.parquet").to_pylist()
    assert [row["path"].endswith("damaged.jpg") for row in rows] == [True]


def test_analyse_photo__damaged_exif_warns_nothing_where_the_filters_were_put_back() -> None:
    # pytest puts back the warning filters it had after collecting (and after each test),
    # taking away the one transforms.exif set at import: PIL's "Truncated File Read" from the
    # property test below was the suite's one warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        analyse_photo(damaged_exif(), "damaged")
    assert [str(w.message) for w in caught] == []


@st.composite
def damaged_photos(draw: st.DrawFn) -> bytes:
    """A small photo with bytes overwritten (mostly in its headers and EXIF), maybe cut."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 12))):
        data[draw(st.integers(0, min(400, len(data) - 1)))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@PROPERTY
@given(data=damaged_photos())
def test_analyse_photo__damaged_bytes_give_facts_or_a_reason_never_an_exception(
    data: bytes,
) -> None:
    facts = analyse_photo(data, "damaged")
    assert facts.error is None or facts.error in ANALYSIS_REASONS


def test_analyse__a_photo_replaced_after_it_was_hashed_is_stored_under_its_new_id(
    tmp_path: Path,
) -> None:
    # A phone's upload app rewrote a photo under its name between hashing and analysis: the
    # new bytes' facts were stored under the old bytes' id, and the next run reused them.
    images = tmp_path / "images" / "finish"
    images.mkdir(parents=True)
    paths = [images / "a.jpg", images / "copy-of-a.jpg"]
    for path in paths:
        path.write_bytes(encoded("JPEG", good(10)))
    [(old_id, _), _] = [next(photos._HashFile().process(str(p))) for p in paths]
    paths[0].write_bytes(encoded("JPEG", good(11)))
    new_id = hashlib.sha256(paths[0].read_bytes()).hexdigest()
    analyse = photos._AnalyseContent(str(tmp_path / "facts"), str(tmp_path / "images"))
    analyse.setup()
    analysed = {p.path: p.image_id for p in analyse.process((old_id, [str(p) for p in paths]))}
    assert analysed == {str(paths[0]): new_id, str(paths[1]): old_id}
    store = FactStore(str(tmp_path / "facts"))
    assert store.get(new_id) == photos.analyse_photo(paths[0].read_bytes(), new_id)
    assert store.get(old_id) == photos.analyse_photo(paths[1].read_bytes(), old_id)


def test_analyse__a_crash_on_one_photo_rejects_it_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(data: bytes, image_id: str) -> None:
        raise RuntimeError("a bug in a library")

    path = tmp_path / "images" / "finish" / "a.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(encoded("JPEG", good(10)))
    monkeypatch.setattr(photos, "analyse_photo", crash)
    analyse = photos._AnalyseContent(str(tmp_path / "facts"), str(tmp_path / "images"))
    analyse.setup()
    [photo] = analyse.process(("some-id", [str(path)]))
    assert photo.facts.error == "analysis_failed"
    assert FactStore(str(tmp_path / "facts")).get("some-id") is None, "a later run tries again"


# --- Bad configuration ------------------------------------------------------------------------

# (file, its text, the line the message must name, what it must say)
BAD_CONFIG = {
    "course_duplicate_station_id": ("course.yaml", *BAD_COURSES["duplicate_station_id"]),
    "course_stations_out_of_order": ("course.yaml", *BAD_COURSES["stations_out_of_km_order"]),
    "course_missing_start": ("course.yaml", *BAD_COURSES["missing_race_start"]),
    "start_list_duplicate_bib": (
        "startlist.csv",
        "bib,name\n101,Kari\n102,Ola\n101,Ida\n",
        4,
        "duplicate bib 101 (first on line 2)",
    ),
    "start_list_empty_name": ("startlist.csv", "bib,name\n101,Kari\n102, \n", 3, "empty name"),
    # A spreadsheet's BOM is tolerated, and the lines after it are still counted right.
    "start_list_bom": ("startlist.csv", "\ufeffbib,name\n101,Kari\n101,Ida\n", 3, "duplicate"),
    "start_list_bib_with_decimals": ("startlist.csv", "bib,name\n101.0,Kari\n", 2, "decimals"),
}


def race_argv(root: Path) -> list[str]:
    """`racelens run`'s arguments for a race of no photo yet in `root` (images/, course.yaml
    and startlist.csv made there), its results in root/out."""
    (root / "images").mkdir()
    (root / "course.yaml").write_text(COURSE_YAML, encoding="utf-8")
    (root / "startlist.csv").write_text(START_LIST_CSV, encoding="utf-8")
    return run_argv(root / "images", root / "course.yaml", root / "startlist.csv", root / "out")


@pytest.mark.parametrize("case", BAD_CONFIG)
def test_run__bad_configuration_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None, case: str
) -> None:
    argv, out = race_argv(tmp_path), tmp_path / "out"
    bad_file, text, line, problem = BAD_CONFIG[case]
    (tmp_path / bad_file).write_text(text, encoding="utf-8")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racelens: error: "), err
    assert f"{tmp_path / bad_file}: line {line}: " in err and problem in err, err
    assert not out.exists(), "nothing is written before the input is valid"


# Options Beam took and did not understand. A typo was warned about and dropped, and the run
# went on, exit 0 (`--correction FILE`: the race timed without the officials' decisions); a
# value of the wrong kind printed Beam's usage, its prog '__main__.py'; an unknown runner
# ended with ValueError's traceback; a word after an option's value was dropped.
BAD_OPTIONS = {
    "typo": (
        ["--correction", "c.csv"],
        "unknown option --correction (did you mean --corrections?)",
    ),
    "unknown": (["--colour"], "unknown option --colour"),
    "wrong_kind": (
        ["--direct_num_workers=abc"],
        "argument --direct_num_workers: invalid int value: 'abc'",
    ),
    "runner": (["--runner=Bogus"], "--runner: no runner named 'Bogus'"),
    # A scheme Beam has no filesystem for here (gs:// without the GCP extra): 141 lines.
    "scheme": (["--facts", "nosuchfs://bucket/facts"], "--facts: no filesystem for nosuchfs://"),
    # A live run that stopped at once, exit 0.
    "stop_after": (
        ["--streaming", "--stop-after", "-5"],
        "--stop-after must be 0 or more seconds, not -5",
    ),
    # IndexError's traceback, exit 1.
    "workers": (
        ["--direct_num_workers=-2"],
        "--direct_num_workers must be 0 (one per core) or more, not -2",
    ),
    # `--facts /tmp/my facts` unquoted: the facts went to /tmp/my.
    "stray": (["--facts", "/tmp/my", "facts"], "unexpected argument 'facts'"),
    # Started as many processes (a thousand Dask workers), the machine out of memory.
    "many_workers": (
        ["--direct_num_workers=1000"],
        f"--direct_num_workers=1000: at most {4 * (os.cpu_count() or 1)} worker processes here",
    ),
    "many_dask_workers": (
        ["--runner=DaskRunner", "--dask_local_workers=1000"],
        f"--dask_local_workers=1000: at most {4 * (os.cpu_count() or 1)} worker processes here",
    ),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_run__an_option_beam_does_not_understand_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None, case: str
) -> None:
    argv, out = race_argv(tmp_path), tmp_path / "out"
    given, problem = BAD_OPTIONS[case]
    assert main([*argv, *given]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"racelens: error: {problem}") and err.count("\n") == 1, err
    assert not out.exists(), "nothing is written before the input is valid"


@pytest.mark.parametrize("flag", ["--out", "--facts"])
def test_run__an_out_or_facts_folder_a_mount_refuses_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None, flag: str
) -> None:
    # access() says a root may write in /sys, and its mkdir fails: the run ended with a
    # traceback (the launcher's for --out; a worker's, through Beam's, for --facts). Then
    # in one line, but a refused --facts left the new --out behind, empty.
    if os.geteuid() != 0 or not os.path.isdir("/sys/kernel"):
        pytest.skip("needs a folder access() calls writable and mkdir refuses: /sys as root")
    argv, refused = race_argv(tmp_path), "/sys/racelens-test"
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / "race-day" / "results"  # new, as its parent is
    assert main([*argv, "--out", str(out), flag, refused]) == 2
    err = capsys.readouterr().err
    assert err == f"racelens: error: {flag}: cannot write in '{refused}': Operation not permitted\n"
    assert sorted(tmp_path.rglob("*")) == before, "nothing it made is left"


def test_run__a_corrections_log_that_is_not_utf8_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # Saved from a spreadsheet as Latin-1: it ended the run with UnicodeDecodeError's traceback.
    argv, out = race_argv(tmp_path), tmp_path / "out"
    log = tmp_path / "corrections.csv"
    log.write_bytes(b"image_id,action,bib,station_id,passed_at,decided_at,by\n\xe9")
    assert main([*argv, "--corrections", str(log)]) == 2
    err = capsys.readouterr().err
    not_utf8 = "line 2: not UTF-8 text (byte 55, 0xE9, 'é' in Windows-1252)"
    assert err == f"racelens: error: {log}: {not_utf8}{SAVE_AS_UTF8}\n", err
    assert not out.exists(), "nothing is written before the input is valid"


def test_run__a_reference_photo_not_there_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # A typo in the start list's photo column was a warning, 'no face found on reference
    # photo', and the athlete went without face matching, exit 0.
    argv, out = race_argv(tmp_path), tmp_path / "out"
    start_list = tmp_path / "startlist.csv"
    start_list.write_text("bib,name,photo\n101,Kari,faces/kari.jpg\n102,Ola,\n", encoding="utf-8")
    assert main(argv) == 2
    missing = tmp_path / "faces" / "kari.jpg"
    assert capsys.readouterr().err == (
        f"racelens: error: {start_list}: line 2: bib 101: reference photo {missing} not found\n"
    )
    assert not out.exists(), "nothing is written before the input is valid"


def test_run_inputs__a_relative_facts_folder_is_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Recorded as given, `racelens results` started elsewhere (the dashboard's) found no
    # facts, analysed every photo again and stored them in a new folder where it ran.
    monkeypatch.chdir(tmp_path)
    argv = race_argv(Path("."))
    cfg = RaceConfig(PipelineOptions([*argv[1:], "--facts", "facts"]).view_as(RacelensOptions))
    assert run_inputs(cfg)["facts"] == str(tmp_path / "facts")


def test_results__photos_moved_since_the_run_is_one_line_naming_run_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # It said "--images: ... is not a folder", an option `racelens results` does not take.
    (tmp_path / "out").mkdir()
    (tmp_path / "course.yaml").write_text(COURSE_YAML, encoding="utf-8")
    (tmp_path / "startlist.csv").write_text(START_LIST_CSV, encoding="utf-8")
    saved = {"images": str(tmp_path / "moved"), "facts": str(tmp_path / "out" / "facts")}
    saved |= {"course": str(tmp_path / "course.yaml"), "corrections": None}
    saved["start_list"] = str(tmp_path / "startlist.csv")
    (tmp_path / "out" / "run.json").write_text(json.dumps(saved), encoding="utf-8")
    assert main(["results", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    run_json = tmp_path / "out" / "run.json"
    assert err == (
        f"racelens: error: {run_json}: the run's photos folder {tmp_path / 'moved'} is not "
        "there any more (moved?); run `racelens run` on them where they are now\n"
    ), err


def test_results__no_stored_facts_is_one_line_naming_run_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # Its facts folder gone (deleted, or the results copied without it), `racelens results`
    # analysed every photo again without a word: 45 s instead of ~3 s for 299 photos, the
    # dashboard's re-timing after each decision as long as a first run.
    race_argv(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "images" / "finish").mkdir()
    (tmp_path / "images" / "finish" / "a.jpg").write_bytes(b"jpeg")
    run_json, gone = out / "run.json", tmp_path / "gone"
    saved = {name: str(tmp_path / name) for name in ("images", "course.yaml", "startlist.csv")}
    saved = {
        "images": saved["images"],
        "course": saved["course.yaml"],
        "start_list": saved["startlist.csv"],
        "facts": str(gone),
        "corrections": None,
    }
    out.mkdir()
    run_json.write_text(json.dumps(saved), encoding="utf-8")
    pq.write_table(schemas.IMAGES.empty_table(), out / "images.parquet")
    assert main(["results", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"racelens: error: {run_json}: no stored facts in {gone} (moved or deleted?): racelens "
        "results re-times from them; `racelens run` analyses the photos again\n"
    )
    # An upgrade whose analysis differs keeps the earlier version's facts beside: not lost.
    (gone / "v9").mkdir(parents=True)
    (gone / "v10").mkdir()
    assert main(["results", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"racelens: error: {run_json}: the facts in {gone} are of another racelens (v10, "
        f"this one's v{ANALYSIS_VERSION}): `racelens run` analyses the photos again, then "
        "racelens results re-times from them\n"
    )


def test_results__photos_added_or_gone_since_the_run_are_counted_in_one_line(
    small_race: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # A photo added and one deleted since the run: the same results, and not a word of them.
    race, out = tmp_path / "race", tmp_path / "out"
    shutil.copytree(small_race, race)
    assert main(small_race_argv(race, out)) == 0
    assert main(["results", "--out", str(out)]) == 0
    assert "photos since the run" not in capsys.readouterr().out
    board = (out / "results.csv").read_bytes()
    finish = sorted((race / "images" / "finish").iterdir())
    shutil.copy(finish[0], finish[0].with_name("AGAIN.jpg"))
    finish[-1].unlink()
    assert main(["results", "--out", str(out)]) == 0
    assert capsys.readouterr().out.endswith(
        f"photos since the run under {race / 'images'}: 1 added, 1 gone; these results are of "
        "the run's photos (`racelens run` takes the changes in)\n"
    )
    assert (out / "results.csv").read_bytes() == board, "re-timed as before"


def test_results__other_photos_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # Passed on to Beam's options, --images placed none of the last run's photos by folder
    # (a race moved, then re-timed: 150 of 225 photos rejected as unknown_station).
    argv = ["results", "--out", str(tmp_path / "out"), "--images", str(tmp_path / "images")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--images" in err and "racelens run" in err, err


def test_run__an_images_folder_it_cannot_list_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    keep_logging: None,
) -> None:
    # It ran on no photo, the folder a row of its own and every athlete dns, exit 0.
    argv, out = race_argv(tmp_path), tmp_path / "out"
    scandir, images = os.scandir, str(tmp_path / "images")

    def denied(path: object = ".") -> object:
        if str(path) == images:  # not os.fspath: shutil passes folders' descriptors too
            raise PermissionError(13, "Permission denied", images)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"racelens: error: --images: cannot list '{images}': Permission denied\n", err
    assert not out.exists(), "nothing is written before the input is valid"


def test_run__no_file_in_images_over_an_earlier_runs_results_is_one_line_and_nothing_changed(
    small_race: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # A card not mounted (its mount point an empty folder) replaced the published results by
    # every athlete dns and pointed run.json at the empty folder, exit 0.
    out, empty = tmp_path / "out", tmp_path / "card"
    assert main(small_race_argv(small_race, out)) == 0
    empty.mkdir()
    (empty / "DCIM").mkdir()  # a folder, but no file in it
    before = snapshot(tmp_path)
    capsys.readouterr()
    argv = run_argv(empty, small_race / "course.yaml", small_race / "startlist.csv", out)
    assert main(argv) == 2
    photos = pq.read_metadata(out / "images.parquet").num_rows
    assert capsys.readouterr().err == (
        f"racelens: error: --images {empty}: no file there, but --out {out} holds the results "
        f"of an earlier run on {photos} photos in {small_race / 'images'} (a card not "
        f"mounted?); to time no photo deliberately, remove {out} first\n"
    )
    assert snapshot(tmp_path) == before
    shutil.rmtree(out)  # the way the message gives to time no photo deliberately
    assert main(argv) == 0


# Where an engineer points --out or --facts wrongly: (its folder, the message's end)
BAD_OUTPUT_PLACES = {
    "out_is_a_file": (lambda root: ["--out", str(root / "a-file")], "is not a folder"),
    "out_under_a_file": (lambda root: ["--out", str(root / "a-file" / "out")], "is not a folder"),
    # A second run read the first one's outputs and facts as photos (231 rejected rows).
    "out_inside_images": (
        lambda root: ["--out", str(root / "images" / "out")],
        "inside --images: its files would be read as photos",
    ),
    "facts_inside_images": (
        lambda root: ["--out", str(root / "out"), "--facts", str(root / "images" / "facts")],
        "inside --images: its files would be read as photos",
    ),
}


@pytest.mark.parametrize("case", BAD_OUTPUT_PLACES)
def test_run__an_output_folder_it_cannot_use_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None, case: str
) -> None:
    argv = race_argv(tmp_path)
    (tmp_path / "images" / "finish").mkdir()
    (tmp_path / "images" / "finish" / "a.jpg").write_bytes(encoded("JPEG", good(10)))
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    before = snapshot(tmp_path)
    places, problem = BAD_OUTPUT_PLACES[case]
    assert main([*argv, *places(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racelens: error: --"), err
    assert problem in err, err
    assert snapshot(tmp_path) == before, "nothing is written before the outputs' place is valid"


@pytest.mark.parametrize("missing", ["results", "truth", "images"])
def test_score__an_input_not_there_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    # Each ended the command with a traceback (FileNotFoundError), or, for --images, scored
    # the run against no file at all.
    (tmp_path / "out").mkdir()
    for name in ("images.parquet", "passages.parquet", "leaderboard.parquet"):
        (tmp_path / "out" / name).write_bytes(b"")
    (tmp_path / "truth.csv").write_text("bib,station_id,passed_at\n", encoding="utf-8")
    (tmp_path / "images").mkdir()
    gone = {"results": "out/passages.parquet", "truth": "truth.csv", "images": "images"}[missing]
    if missing == "images":
        (tmp_path / gone).rmdir()
    else:
        (tmp_path / gone).unlink()
    argv = ["score", "--out", str(tmp_path / "out"), "--truth", str(tmp_path / "truth.csv")]
    assert main([*argv, "--images", str(tmp_path / "images")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / gone}" in err, err


# --- Crash safety -----------------------------------------------------------------------------

RESULTS = ("*.parquet", "results.csv")


@pytest.fixture(scope="module")
def small_race(tmp_path_factory: pytest.TempPathFactory) -> Path:
    race = tmp_path_factory.mktemp("small") / "race"
    generate_race(str(race), athletes=3, stations=2, seed=5)  # 18 photos
    return race


def small_race_argv(race: Path, out: Path) -> list[str]:
    return run_argv(race / "images", race / "course.yaml", race / "startlist.csv", out)


def stored_facts(out: Path) -> int:
    return sum(1 for _ in (out / "facts").rglob("*.json"))


def writing_results(out: Path) -> bool:
    return out.is_dir() and any(p.is_file() for p in out.iterdir())


def killed_run(argv: list[str], ready: Callable[[], bool], then_s: float) -> int:
    """`python -m pipeline ...`, killed with SIGKILL `then_s` after `ready()` first holds.

    Watching the run rather than the clock puts the kills in its busy phases (a fixed delay
    mostly lands in Python's and Beam's start-up); returns the exit code, -9 when killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(then_s)
    process.kill()
    return process.wait()


def results(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for pattern in RESULTS for p in out.glob(pattern)}


def assert_nothing_half_written(out: Path) -> None:
    """Outputs and stored facts are complete; temporary files do not look like either."""
    for path in (p for p in out.rglob("*") if p.is_file()):
        if TEMPORARY_MARK in path.name:
            assert not path.name.endswith((".parquet", ".json", ".csv")), path
        elif path.suffix == ".parquet":
            pq.read_table(path)  # raises on a torn file
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))


def test_run__killed_runs_then_a_full_one_give_the_uninterrupted_results(
    small_race: Path, tmp_path: Path, keep_logging: None
) -> None:
    reference = tmp_path / "reference"
    assert main(small_race_argv(small_race, reference)) == 0
    photos_analysed = stored_facts(reference)
    out = tmp_path / "out"
    rng = random.Random(7)
    # Killed early and late in the analysis, then while the results are written; each run
    # resumes from the facts the killed ones stored.
    first, second = sorted(rng.sample(range(1, photos_analysed), 2))
    kill_points = [
        lambda: stored_facts(out) >= first,
        lambda: stored_facts(out) >= second,
        lambda: writing_results(out),
    ]
    codes = []
    for ready in kill_points:
        codes.append(killed_run(small_race_argv(small_race, out), ready, rng.uniform(0, 0.3)))
        assert_nothing_half_written(out)
    assert -signal.SIGKILL in codes, f"every run finished before its kill: {codes}"
    assert main(small_race_argv(small_race, out)) == 0
    assert_nothing_half_written(out)
    assert results(out) == results(reference)


def test_run_start__removes_temporary_files_only_when_stale(tmp_path: Path) -> None:
    stale = [tmp_path / "images.parquet.tmp-4242", tmp_path / "facts/v2/ab/ab12.json.tmp-7f3a"]
    fresh = tmp_path / "passages.parquet.tmp-4343"  # another run may be writing it now
    output = tmp_path / "images.parquet"
    for path in [*stale, fresh, output]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    long_ago = time.time() - 2 * STALE_AFTER_S
    for path in [*stale, output]:
        os.utime(path, (long_ago, long_ago))
    removed = remove_stale_temporaries([str(tmp_path), str(tmp_path / "facts")])
    assert removed == sorted(map(str, stale))
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted([fresh, output])


@pytest.mark.parametrize("no_room", [errno.ENOSPC, errno.EDQUOT])
def test_write_atomically__a_full_disk_leaves_nothing_and_is_told_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_room: int
) -> None:
    create = FileSystems.create

    def create_on_a_full_disk(path: str, *args, **kwargs):
        made = create(path, *args, **kwargs)
        made.write(b"{")
        made.close()
        raise OSError(no_room, os.strerror(no_room))

    monkeypatch.setattr(FileSystems, "create", create_on_a_full_disk)
    path, told = tmp_path / "ab" / "ab12.json", []
    with no_room_told_to(told.append), pytest.raises(NoRoom, match=str(path)):
        write_atomically(str(path), b"{}")
    assert told == [str(path)]
    assert not list(tmp_path.rglob("*.*")), "a half-written file is left"


def test_selfcheck__passes_only_when_nothing_crashed_was_lost_or_changed() -> None:
    clean = SelfCheck(26, 26, 0, 0, 0, 0, 0)
    assert clean.passed() and "lost files: 0" in clean.report()
    for field in ("crashes", "lost_files", "wrong_reasons", "changed_sources", "rerun_differences"):
        assert not replace(clean, **{field: 1}).passed(), field


@contextlib.contextmanager
def replaced_again_and_again(paths: list[Path]) -> Iterator[None]:
    """Meanwhile, each of `paths` is replaced again and again by renaming a new file into
    place, with a row more or less, as a live run and the dashboard's re-timing replace
    their results."""
    tables = {path: pq.read_table(path) for path in paths}
    replacements = itertools.count(1)

    def replace_each() -> None:
        n = next(replacements)
        for path, table in tables.items():
            pq.write_table(table.slice(0, table.num_rows - n % 2), f"{path}.tmp-0-x")
            os.replace(f"{path}.tmp-0-x", path)

    with repeated_meanwhile(replace_each, every_s=0):
        yield


def test_drip__ctrl_c_is_one_line_exit_130_and_no_half_copied_photo(tmp_path: Path) -> None:
    # It ended in the traceback of its sleep.
    race, live = tmp_path / "race", tmp_path / "live"
    generate_race(str(race), athletes=2, stations=2, seed=3)
    drip = subprocess.Popen(
        [sys.executable, "-m", "pipeline.drip", "drip", str(race / "images"), str(live)],
        cwd=Path(__file__).resolve().parents[1],
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    deadline = time.monotonic() + 60
    while not (live.is_dir() and any(live.rglob("*.*"))):
        assert drip.poll() is None and time.monotonic() < deadline, drip.communicate()
        time.sleep(0.05)
    os.killpg(drip.pid, signal.SIGINT)
    _, err = drip.communicate(timeout=60)
    copied = sorted(live.rglob("*.*"))
    assert drip.returncode == 130, err
    assert err.splitlines()[-1:] == [f"drip: interrupted; {len(copied)} files copied into {live}"]
    sources = {p.name: p.read_bytes() for p in (race / "images").rglob("*.*")}
    assert all(p.read_bytes() == sources[p.name] for p in copied if p.name in sources)


def test_photos_and_drip_compare__read_results_that_a_run_replaces_meanwhile(
    tmp_path: Path,
) -> None:
    # Read by path, pyarrow opened a file twice (its footer, then its pages): a replacement in
    # between failed `racelens photos` ("cannot read it", exit 2) and `drip compare`.
    images, out = tmp_path / "images", tmp_path / "out"
    (images / "finish").mkdir(parents=True)
    out.mkdir()
    (images / "finish" / "a.jpg").write_bytes(b"jpeg")
    (out / "run.json").write_text(json.dumps({"images": str(images)}), encoding="utf-8")
    bibs, taken = [str(100 + i) for i in range(3000)], datetime(2026, 5, 1, 10, tzinfo=UTC)
    photo = dict(image_id="a", station_id="finish", method="bib_ocr", confidence=0.9)
    tables = {
        ATHLETE_PHOTOS_FILE: (
            [
                {"bib": b, "path": str(images / "finish" / "a.jpg"), "taken_at": taken, **photo}
                for b in bibs
            ],
            schemas.ATHLETE_PHOTOS,
        ),
        PASSAGES_FILE: (
            [{"bib": b, "passed_at": taken, "needs_review": False, **photo} for b in bibs],
            schemas.PASSAGES,
        ),
        LEADERBOARD_FILE: (
            [{"bib": b, "status": "finished", "name": f"Runner {b}"} for b in bibs],
            schemas.leaderboard_schema(["finish"]),
        ),
    }
    for name, (rows, schema) in tables.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / name)
    readers = [
        lambda: export_photos(str(out), str(tmp_path / "dest"), link=True),
        lambda: differing(out, out),
    ]
    with replaced_again_and_again([out / name for name in tables]):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for read in readers:
                read()


@pytest.mark.parametrize(
    "command", ["demo", "run", "results", "bibs", "selfcheck", "score", "photos", "dashboard"]
)
def test_help__each_command_says_what_it_does(
    command: str, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    # A command's --help went from its usage straight to its options; run's showed its
    # four required options as optional ones.
    with pytest.raises(SystemExit) as ended:
        main([command, "--help"])
    assert ended.value.code == 0
    usage, what, *_ = capsys.readouterr().out.split("\n\n")
    assert not what.startswith("options:"), what
    if command == "run":
        assert "--images DIR --course FILE --start-list FILE --out DIR" in usage, usage


@pytest.mark.parametrize(("content", "problem"), [(None, "cannot read"), ("\n", "is empty")])
def test_dashboard__a_password_file_it_cannot_use_is_refused_in_one_line(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    # It said 'racelens: dashboard on http://localhost:P', and each official's browser then
    # showed 'The dashboard cannot start': nobody could get in until someone read the page.
    (tmp_path / "leaderboard.parquet").write_bytes(b"PAR1")
    password = tmp_path / "password"
    if content is not None:
        password.write_text(content)
    args = argparse.Namespace(
        out=str(tmp_path), port=0, corrections=None, password_file=str(password)
    )
    with pytest.raises(ConfigError, match=f"^--password-file {password}: .*{problem}"):
        dashboard_command(args)


@pytest.mark.parametrize("taken", [True, False])
def test_dashboard__a_port_in_use_or_no_port_is_refused_in_one_line(
    tmp_path: Path, taken: bool
) -> None:
    # It said 'racelens: dashboard on http://localhost:P' and then Streamlit 'Port P is not
    # available', exit 1; a port above 65535 ended with Streamlit's traceback.
    (tmp_path / "leaderboard.parquet").write_bytes(b"PAR1")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1] if taken else 70000
        args = argparse.Namespace(
            out=str(tmp_path), port=port, corrections=None, password_file=None
        )
        with pytest.raises(ConfigError, match=f"^--port {port}: "):
            dashboard_command(args)
