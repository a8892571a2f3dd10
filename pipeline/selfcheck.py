"""The self-check: race day's worst files, run through the pipeline, counted.

    racelens selfcheck

Builds a corpus of the files a race folder gets on a bad day (cut uploads,
empty files, decompression bombs, videos, archives, photos from 1970 and
2099, broken GPS, huge maker notes, link loops, a FIFO, a name that is not
UTF-8) beside a few good photos of a small demo race, runs the pipeline on
it twice, and prints: files tried, rows written, crashes, lost files (an
entry without exactly one images.parquet row), wrong reasons, changed
sources and re-run differences. Every count but the first two should be 0.
The corpus is made here, never checked in; the tests use it too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import random
import shutil
import signal
import stat
import struct
import sys
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

EXIF_IFD, GPS_IFD = ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo
DATETIME_ORIGINAL = ExifTags.Base.DateTimeOriginal
OFFSET_ORIGINAL = ExifTags.Base.OffsetTimeOriginal
MAKER_NOTE = ExifTags.Base.MakerNote


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
    status: str = "rejected"  # of its row, where it has a reason

    def fits(self, status: str, reason: str | None) -> bool:
        """Whether an images.parquet row's status and reason are the entry's."""
        return status != "rejected" if self.reason is None else (status, reason) == self.row

    @property
    def row(self) -> tuple[str, str | None]:
        return self.status, self.reason


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


@functools.cache
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
    # Analysed on what arrived, its reads weak, and queued for an official.
    Entry(b"finish/cut-in-the-scan.jpg", demo_prefix(15_000), "truncated_image", "review"),
    Entry(b"finish/cut-in-the-header.jpg", demo_prefix(200), "truncated_image"),
    Entry(b"finish/cut.png", content(encoded("PNG", good(1))[:-30]), "truncated_image"),
    Entry(b"finish/bomb.png", content(png_bomb(40_000, 40_000)), "image_too_large"),
    Entry(b"finish/bomb.jpg", content(jpeg_bomb(40_000, 40_000)), "image_too_large"),
    # racelens decodes no HEIC (Pillow needs a plugin for it), whatever is installed.
    Entry(b"finish/IMG_0001.HEIC", content(iso_media(b"heic")), "unsupported_format"),
    Entry(b"finish/VID_0001.mp4", content(iso_media(b"isom")), "not_an_image"),
    Entry(b"finish/photos.zip", content(zip_archive()), "not_an_image"),
    Entry(b"finish/zip-named.jpg", content(zip_archive() + b"\x00"), "not_an_image"),  # no copy
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
        "2026-05-01T18:00:00+02:00",  # the same results whenever it runs
    ]


def build_corpus(images: Path, race: Path) -> None:
    for folder in ("finish", "unsorted"):
        (images / folder).mkdir(parents=True, exist_ok=True)
    for entry in CORPUS:
        entry.make(os.path.join(bytes(images), entry.name), race)


@dataclass(frozen=True)
class SelfCheck:
    files_tried: int
    rows_written: int
    crashes: int
    lost_files: int
    wrong_reasons: int
    changed_sources: int
    rerun_differences: int

    def passed(self) -> bool:
        return not (
            self.crashes
            or self.lost_files
            or self.wrong_reasons
            or self.changed_sources
            or self.rerun_differences
        )

    def report(self) -> str:
        return "\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in vars(self).items())


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.parquet"))}


def _run(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """The run's exit code, -1 for a crash, told in one line on stderr (a count of crashes
    alone left nothing to go on); its summary is not part of the report."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return main(argv)
    except Exception as e:  # noqa: BLE001 - a crash is what the self-check counts
        print(f"racelens selfcheck: a run crashed: {type(e).__name__}: {e}", file=sys.stderr)
        return -1


def run_selfcheck(work: Path) -> SelfCheck:
    from pipeline.cli import main
    from pipeline.demo import generate_race

    race = work / "race"
    generate_race(str(race), athletes=6, stations=4, seed=5)
    images = work / "images"
    build_corpus(images, race)
    before = snapshot(images)
    argv = run_argv(images, race / "course.yaml", race / "startlist.csv", work / "out")
    codes = [_run(main, argv)]
    first = _outputs(work / "out")
    codes.append(_run(main, argv))
    second = _outputs(work / "out")
    after = snapshot(images)
    rows = pq.read_table(work / "out" / "images.parquet").to_pylist() if first else []
    per_path = Counter(r["path"] for r in rows)
    rows_of = {r["path"]: (r["status"], r["reason"]) for r in rows}
    paths = [stored_path(images, e.name) for e in CORPUS]
    return SelfCheck(
        files_tried=len(CORPUS),
        rows_written=sum(per_path[p] for p in paths),
        crashes=sum(1 for c in codes if c != 0),
        lost_files=sum(1 for p in paths if per_path[p] != 1),
        wrong_reasons=sum(
            1
            for entry, path in zip(CORPUS, paths, strict=True)
            if path in rows_of and not entry.fits(*rows_of[path])
        ),
        changed_sources=sum(
            1 for k in before.keys() | after.keys() if before.get(k) != after.get(k)
        ),
        rerun_differences=sum(
            1 for k in first.keys() | second.keys() if first.get(k) != second.get(k)
        ),
    )


def selfcheck() -> int:
    with tempfile.TemporaryDirectory() as work, _ended_by_signals(work):
        result = run_selfcheck(Path(work))
    print(result.report())
    return 0 if result.passed() else 1


@contextlib.contextmanager
def _ended_by_signals(work: str) -> Iterator[None]:
    """Meanwhile Ctrl-C (and SIGTERM) end this process at once, in one line, its work folder
    removed. Its runs are Beam's in this process, whose threads took Ctrl-C's
    KeyboardInterrupt for a failed bundle: the check went on and reported, exit 0."""
    from pipeline.interrupted import handled_by

    def stop(signum: int, _: object) -> None:
        shutil.rmtree(work, ignore_errors=True)
        os.write(sys.stderr.fileno(), b"racelens: interrupted\n")
        os._exit(128 + signum)

    previous = handled_by(stop)
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
