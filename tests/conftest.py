"""Shared builders for the racelens tests: a small course, photos, sightings and passages.

Everything here builds plain records (`transforms.records`, `transforms.course`) so that
tests of one stage never depend on the stages before it. Times are UTC and given as
seconds after the race's gun (`at(90)` is 90 s after 08:00:00 UTC, 10:00 in Oslo).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from pipeline.demo import generate_race
from transforms.course import Athlete, Course, Settings, Station, Wave
from transforms.passages import Passage
from transforms.records import BibSeen, ExifFacts, Photo, PhotoFacts, Quality, Sighting

# Property tests: enough examples to find an edge, few enough for a fast suite. Applied per
# test, so other modules' hypothesis settings are left alone.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# No property test times its examples: hypothesis's default 200 ms deadline failed a test
# of pure arithmetic (test_best_classes__as_argmax_of_softmax_steps, 355 ms) while five test
# runs shared the two cores. Speed is measured by bench/, not by the suite.
settings.register_profile("racelens", deadline=None)
settings.load_profile("racelens")


def pytest_configure(config: pytest.Config) -> None:
    # Beam's TestPipeline and TestStream are classes named Test* that pytest tries to collect.
    config.addinivalue_line(
        "filterwarnings", "ignore:cannot collect test class 'Test(Pipeline|Stream)'"
    )


@pytest.fixture(scope="session", autouse=True)
def scratch_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every temporary file and folder of the suite, in this process and in those it starts,
    under pytest's own base folder (of which pytest keeps the last three): Beam makes a
    folder for each pipeline and removes it only when the pipeline runs, and sinks leave
    theirs when a test stops them early, so each suite left dozens in /tmp."""
    scratch = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(scratch))
        patch.setattr(tempfile, "tempdir", None)  # tempfile's cached choice, made again
        yield scratch


# --- Time -------------------------------------------------------------------------------------

GUN = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)  # 10:00 in Oslo (CEST)
WAVE_B = GUN + timedelta(minutes=5)


def at(seconds: float) -> datetime:
    """The UTC instant `seconds` after the gun."""
    return GUN + timedelta(seconds=seconds)


# --- The demo race ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def race(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small demo race (103 files) for every end-to-end test: generating it takes seconds."""
    out = tmp_path_factory.mktemp("demo") / "race"
    generate_race(str(out), athletes=12, stations=4, seed=5)
    return out


# --- Course -----------------------------------------------------------------------------------

COURSE_YAML = """\
race: {id: oslo-10k, name: "Oslo 10k", timezone: Europe/Oslo, start: "2026-05-01T10:00:00+02:00"}
stations:
  - {id: start, name: Start, km: 0.0, lat: 59.91, lon: 10.75, radius_m: 60}
  - {id: cp1, name: "5 km", km: 5.0, lat: 59.925, lon: 10.77, cameras: ["SN1234"],
     clock_offset_s: -2.5}
  - {id: finish, name: Finish, km: 10.0, lat: 59.94, lon: 10.79}
waves:
  - {id: A, start: "2026-05-01T10:00:00+02:00"}
  - {id: B, start: "2026-05-01T10:05:00+02:00"}
"""

START_LIST_CSV = """\
bib,name,category,gender,club,wave
101,Ingrid Berg,F35,F,Tjalve,A
102,Ola Hansen,M40,M,,A
103,Kari Lie,F35,F,BUL,B
"""


def make_course(**overrides: object) -> Course:
    """The course of COURSE_YAML, built directly; any field can be overridden."""
    fields = {
        "race_id": "oslo-10k",
        "race_name": "Oslo 10k",
        "timezone": "Europe/Oslo",
        "start": GUN,
        "stations": (
            Station("start", "Start", 0.0, 59.91, 10.75, radius_m=60),
            Station("cp1", "5 km", 5.0, 59.925, 10.77, cameras=("SN1234",), clock_offset_s=-2.5),
            Station("finish", "Finish", 10.0, 59.94, 10.79),
        ),
        "waves": (Wave("A", GUN), Wave("B", WAVE_B)),
        "settings": Settings(),
    }
    fields.update(overrides)
    return Course(**fields)  # type: ignore[arg-type]


@pytest.fixture
def course() -> Course:
    return make_course()


def athlete(bib: str, category: str = "M40", wave: str = "A", name: str = "") -> Athlete:
    return Athlete(bib=bib, name=name or f"Runner {bib}", category=category, wave=wave)


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., str]:
    """Writes text (or bytes) to a file under tmp_path and returns its path."""

    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return write


# The columns of each output file that CONTRACT.md promises (more are allowed).
CONTRACT_COLUMNS = {
    "images.parquet": (
        "image_id", "path", "station_id", "taken_at", "status", "reason", "bibs", "faces",
        "duplicate_of",
    ),
    "passages.parquet": (
        "bib", "station_id", "passed_at", "method", "confidence", "image_id", "needs_review",
    ),
    "review.parquet": ("image_id", "reason", "candidates", "station_id", "taken_at"),
    "leaderboard.parquet": (
        "rank", "bib", "name", "category", "category_rank", "status", "total_s",
    ),
    "stations.parquet": (
        "station_id", "window_start", "window_end", "images", "passages", "health",
    ),
}  # fmt: skip


# --- Photos -----------------------------------------------------------------------------------

SHARP = Quality(brightness=120.0, contrast=50.0, sharpness=300.0)
COVERED = Quality(brightness=4.0, contrast=2.0, sharpness=0.5)
BLURRED = Quality(brightness=120.0, contrast=40.0, sharpness=3.0)


def read(bib: str, confidence: float = 0.95) -> BibSeen:
    return BibSeen(bib=bib, confidence=confidence, box=(10, 10, 60, 40))


def photo(
    name: str,
    *,
    station: str | None = "finish",
    seconds: float | None = 0.0,
    bibs: tuple[BibSeen, ...] = (),
    phash: str | None = "ffff0000ffff0000",
    quality: Quality | None = SHARP,
    image_id: str | None = None,
    folder: str | None = None,
    exif: ExifFacts | None = None,
    error: str | None = None,
    status: str | None = None,
) -> Photo:
    """A photo as it leaves ParseExif (station and time set), unless told otherwise."""
    facts = PhotoFacts(
        image_id=image_id or f"id-{name}",
        error=error,
        width=1600,
        height=1067,
        exif=exif or ExifFacts(),
        phash=phash,
        quality=quality,
        bibs=bibs,
    )
    return Photo(
        path=f"/race/images/{folder if folder is not None else station or ''}/{name}.jpg",
        folder=folder if folder is not None else station or "",
        facts=facts,
        station_id=station,
        taken_at=at(seconds) if seconds is not None else None,
        status=status,
    )


def sighting(
    bib: str,
    seconds: float,
    *,
    station: str = "finish",
    confidence: float = 0.95,
    image_id: str | None = None,
    method: str = "bib_ocr",
    confirmed: bool = True,
) -> Sighting:
    return Sighting(
        bib=bib,
        station_id=station,
        at=at(seconds),
        confidence=confidence,
        image_id=image_id or f"img-{bib}-{station}-{seconds}",
        method=method,
        confirmed=confirmed,
    )


def passage(
    bib: str,
    station: str,
    seconds: float,
    *,
    needs_review: bool = False,
    confidence: float = 0.95,
    photos: int = 1,
    image_id: str | None = None,
    method: str = "bib_ocr",
    review_reason: str | None = None,
) -> Passage:
    return Passage(
        bib=bib,
        station_id=station,
        passed_at=at(seconds),
        method=method,
        confidence=confidence,
        image_id=image_id or f"img-{bib}-{station}-{seconds}",
        needs_review=needs_review,
        photos=photos,
        review_reason=review_reason,
    )


# --- Real JPEGs with EXIF ---------------------------------------------------------------------

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKE, MODEL = 0x010F, 0x0110
DATETIME_ORIGINAL, SUBSEC_ORIGINAL, OFFSET_ORIGINAL = 0x9003, 0x9291, 0x9011
DATETIME_DIGITIZED = 0x9004
BODY_SERIAL = 0xA431


def _dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    hundredths = round(abs(degrees) * 3600 * 100)
    minutes, seconds = divmod(hundredths, 6000)
    whole, minutes = divmod(minutes, 60)
    return IFDRational(whole, 1), IFDRational(minutes, 1), IFDRational(seconds, 100)


def write_jpeg(
    path: Path,
    *,
    datetime_original: str | None = None,
    subsec: str | None = None,
    offset: str | None = None,
    serial: str | None = None,
    make: str | None = None,
    model: str | None = None,
    gps: tuple[float, float] | None = None,
    datetime_digitized: str | None = None,
) -> Path:
    """A small real JPEG whose EXIF carries exactly the given tags, as a camera writes them."""
    exif = Image.Exif()
    if make:
        exif[MAKE] = make
    if model:
        exif[MODEL] = model
    tags = {
        DATETIME_ORIGINAL: datetime_original,
        DATETIME_DIGITIZED: datetime_digitized,
        SUBSEC_ORIGINAL: subsec,
        OFFSET_ORIGINAL: offset,
        BODY_SERIAL: serial,
    }
    if any(v is not None for v in tags.values()):
        sub = exif.get_ifd(EXIF_IFD)
        for tag, value in tags.items():
            if value is not None:
                sub[tag] = value
    if gps is not None:
        lat, lon = gps
        ifd = exif.get_ifd(GPS_IFD)
        ifd[1], ifd[2] = ("N" if lat >= 0 else "S"), _dms(lat)
        ifd[3], ifd[4] = ("E" if lon >= 0 else "W"), _dms(lon)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (120, 140, 160)).save(path, "JPEG", exif=exif.tobytes())
    return path


# --- CLI --------------------------------------------------------------------------------------


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """`racelens` reconfigures the root logger (force=True); put it back afterwards.

    Otherwise later tests would log into the closed stream that pytest captured here.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture
def keep_logging() -> Iterator[None]:
    with restored_logging():
        yield


@contextlib.contextmanager
def repeated_meanwhile(action: Callable[[], object], every_s: float) -> Iterator[None]:
    """Meanwhile a thread calls `action` every `every_s` seconds; it ends with the context."""
    stop = threading.Event()

    def repeat() -> None:
        while not stop.wait(every_s):
            action()

    thread = threading.Thread(target=repeat)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
