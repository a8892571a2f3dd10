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

import contextlib
import hashlib
import io
import json
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from pipeline.cli import main
from pipeline.demo import generate_race
from tests.conftest import (
    COURSE_YAML,
    DATETIME_ORIGINAL,
    EXIF_IFD,
    GPS_IFD,
    OFFSET_ORIGINAL,
    PROPERTY,
    START_LIST_CSV,
    restored_logging,
)
from tests.test_course import BAD_COURSES
from transforms import photos
from transforms.photos import FactStore, analyse_photo
from transforms.write import STALE_AFTER_S, TEMPORARY_MARK, remove_stale_temporaries

REPO = Path(__file__).resolve().parents[1]
MAKER_NOTE = 0x927C
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


# --- Files as race day brings them ------------------------------------------------------------


def encoded(
    image_format: str,
    when: str | None,
    *,
    gps: tuple[tuple[IFDRational, ...], tuple[IFDRational, ...]] | None = None,
    maker_note: bytes | None = None,
) -> bytes:
    """A small photo whose EXIF has the given local time (+02:00), GPS and maker note."""
    exif = Image.Exif()
    sub = exif.get_ifd(EXIF_IFD)
    if when is not None:
        sub[DATETIME_ORIGINAL], sub[OFFSET_ORIGINAL] = when, "+02:00"
    if maker_note is not None:
        sub[MAKER_NOTE] = maker_note
    if gps is not None:
        ifd = exif.get_ifd(GPS_IFD)
        ifd[1], ifd[2], ifd[3], ifd[4] = "N", gps[0], "E", gps[1]
    # The colour follows the time, so that no two of these photos are exact copies.
    shade = sum(map(ord, when or "")) % 256
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (shade, 90, 160)).save(buffer, image_format, exif=exif.tobytes())
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels: 69 bytes that would decode to gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb(width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims width x height pixels, and hardly any data."""

    def segment(marker: bytes, payload: bytes) -> bytes:
        return b"\xff" + marker + struct.pack(">H", len(payload) + 2) + payload

    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    scan = b"\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + segment(b"\xc0", frame) + segment(b"\xda", scan) + bytes(16) + b"\xff\xd9"


def iso_media(brand: bytes) -> bytes:
    """The first box of an ISO media file: an MP4 video (isom) or a HEIC photo (heic)."""
    return struct.pack(">I", 24) + b"ftyp" + brand + bytes(4) + b"mif1" + brand + bytes(32)


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "photos to follow")
    return buffer.getvalue()


def noise(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def rationals(*values: tuple[int, int]) -> tuple[IFDRational, ...]:
    return tuple(IFDRational(n, d) for n, d in values)


def good(minute: int) -> str:
    """A local time within the demo race (10:00 +02:00)."""
    return f"2026:05:01 10:{minute:02d}:00"


# --- The corpus -------------------------------------------------------------------------------

Make = Callable[[bytes, Path], None]  # creates the entry at a path, given the demo race


@dataclass(frozen=True)
class Entry:
    name: bytes  # below the images folder, as the file system spells it
    make: Make
    reason: str | None  # of its images.parquet row; None: a usable photo, not rejected


def content(data: bytes) -> Make:
    return lambda path, _: Path(os.fsdecode(path)).write_bytes(data)


def demo_prefix(count: int) -> Make:
    """The first `count` bytes of a demo photo: an upload cut short."""
    return lambda path, race: Path(os.fsdecode(path)).write_bytes(demo_photos(race)[0][:count])


def demo_copy(index: int) -> Make:
    return lambda path, race: Path(os.fsdecode(path)).write_bytes(demo_photos(race)[index])


def symlink(target: bytes) -> Make:
    return lambda path, _: os.symlink(target, path)


def fifo(path: bytes, _: Path) -> None:
    os.mkfifo(path)


def link_to_a_demo_folder(path: bytes, race: Path) -> None:
    os.symlink(race / "images" / "start", path)


def demo_photos(race: Path) -> list[bytes]:
    """Finish photos of the demo race that decode completely (one demo photo is corrupt)."""
    usable = []
    for path in sorted((race / "images" / "finish").glob("FINISH_*[0-9].jpg")):
        with Image.open(path) as image:
            try:
                image.load()
            except OSError:
                continue
        usable.append(path.read_bytes())
    return usable


BAD_GPS = rationals((59, 0), (0, 0), (1, 0)), rationals((10, 1), (45, 0), (0, 1))
OUT_OF_RANGE_GPS = rationals((200, 1), (0, 1), (0, 1)), rationals((500, 1), (0, 1), (0, 1))

# Root cannot be denied a read by permissions (chmod 000 still reads), so the unreadable
# entries are ones no one can read: a broken link, a link loop, a FIFO, a linked folder.
CORPUS = [
    Entry(b"finish/empty.jpg", content(b""), "empty_file"),
    Entry(b"finish/cut-in-the-scan.jpg", demo_prefix(15_000), "truncated_image"),
    Entry(b"finish/cut-in-the-header.jpg", demo_prefix(200), "truncated_image"),
    Entry(b"finish/cut.png", content(encoded("PNG", good(1))[:-30]), "truncated_image"),
    Entry(b"finish/bomb.png", content(png_bomb(40_000, 40_000)), "image_too_large"),
    Entry(b"finish/bomb.jpg", content(jpeg_bomb(40_000, 40_000)), "image_too_large"),
    # racelens decodes no HEIC (Pillow needs a plugin for it), whatever is installed.
    Entry(b"finish/IMG_0001.HEIC", content(iso_media(b"heic")), "unsupported_format"),
    Entry(b"finish/VID_0001.mp4", content(iso_media(b"isom")), "not_an_image"),
    Entry(b"finish/photos.zip", content(zip_archive()), "not_an_image"),
    Entry(b"finish/a-zip-named.jpg", content(zip_archive() + b"\x00"), "not_an_image"),
    Entry(b"finish/1970.jpg", content(encoded("JPEG", "1970:01:01 00:00:00")), "bad_exif"),
    Entry(b"finish/2099.png", content(encoded("PNG", "2099:05:01 10:30:00")), "bad_exif"),
    Entry(b"finish/no-exif.png", content(encoded("PNG", None)), "bad_exif"),
    Entry(
        b"unsorted/gps-zero-denominators.jpg",
        content(encoded("JPEG", good(2), gps=BAD_GPS)),
        "unknown_station",
    ),
    Entry(
        b"unsorted/gps-out-of-range.jpg",
        content(encoded("JPEG", good(3), gps=OUT_OF_RANGE_GPS)),
        "unknown_station",
    ),
    Entry(b"unsorted/loop", symlink(b".."), "symlink_loop"),
    Entry(b"unsorted/self-loop.jpg", symlink(b"self-loop.jpg"), "symlink_loop"),
    Entry(b"unsorted/linked-folder", link_to_a_demo_folder, "not_a_file"),
    Entry(b"unsorted/broken-link.jpg", symlink(b"gone.jpg"), "unreadable"),
    Entry(b"unsorted/fifo.jpg", fifo, "not_a_file"),
    # Odd, but usable photos: nothing about them is lost.
    Entry(b"finish/with-exif.png", content(encoded("PNG", good(4))), None),
    Entry(b"finish/jpeg-named.png", content(encoded("JPEG", good(5))), None),
    Entry(
        b"finish/binary-maker-note.jpg",
        content(encoded("JPEG", good(6), maker_note=noise(60_000))),
        None,
    ),
    Entry(
        b"finish/huge-maker-note.png",
        content(encoded("PNG", good(7), maker_note=noise(4_000_000))),
        None,
    ),
    Entry(b"finish/good.jpg", demo_copy(1), None),
    Entry(b"finish/caf\xe9 latin-1.jpg", demo_copy(2), None),  # not UTF-8
]


def stored_path(images: Path, name: bytes) -> str:
    """The path images.parquet gives: UTF-8, each undecodable byte written as \\xNN."""
    return f"{images}/{name.decode('utf-8', 'backslashreplace')}"


def snapshot(images: Path) -> dict[bytes, tuple]:
    """Every entry under `images` with its mode, times, size and content (links not followed)."""
    state = {}
    for folder, dirs, files in os.walk(bytes(images)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                seen = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                seen = hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
            else:
                seen = None
            state[path] = (info.st_mode, info.st_mtime_ns, info.st_size, seen)
    return state


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


def run_argv(images: Path, course: Path, start_list: Path, out: Path) -> list[str]:
    return [
        "run",
        "--images",
        str(images),
        "--course",
        str(course),
        "--start-list",
        str(start_list),
        "--out",
        str(out),
        "--no-progress",
        "--as-of",
        "2026-05-01T18:00:00+02:00",  # the same results whenever the test runs
    ]


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
    for folder in ("finish", "unsorted"):
        (images / folder).mkdir(parents=True)
    for entry in CORPUS:
        entry.make(os.path.join(bytes(images), entry.name), race)
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
        assert (row["status"], row["reason"]) == ("rejected", entry.reason)


def test_fuzz_run__sources_are_never_changed(fuzz_run: FuzzRun) -> None:
    assert fuzz_run.after == fuzz_run.before


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


SEEDS = [encoded("JPEG", good(8), gps=BAD_GPS, maker_note=noise(64)), encoded("PNG", good(9))]


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
    "start_list_semicolons": ("startlist.csv", "bib;name\n101;Kari\n", 1, "separated by ';'"),
}


@pytest.mark.parametrize("case", BAD_CONFIG)
def test_run__bad_configuration_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_logging: None, case: str
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "course.yaml").write_text(COURSE_YAML, encoding="utf-8")
    (tmp_path / "startlist.csv").write_text(START_LIST_CSV, encoding="utf-8")
    bad_file, text, line, problem = BAD_CONFIG[case]
    (tmp_path / bad_file).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    argv = run_argv(tmp_path / "images", tmp_path / "course.yaml", tmp_path / "startlist.csv", out)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racelens: error: "), err
    assert f"{tmp_path / bad_file}: line {line}: " in err and problem in err, err
    assert not out.exists(), "nothing is written before the input is valid"


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
