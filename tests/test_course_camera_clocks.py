"""Two cameras at one station, each clock off by its own error: photos to passages, end to end.

A timer at the finish with a DSLR (its clock right) and a phone (its clock 4 s fast) gives
the phone its own clock_offset_s under the station's `cameras`; the station's offset (here
none) stays the DSLR's. The demo race's finish photos of one athlete are made the phone's:
their EXIF header says "Apple iPhone 15" and a time 4 s late, the pixels are untouched.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.cli import main
from pipeline.demo import generate_race
from tests.conftest import BODY_SERIAL, DATETIME_ORIGINAL, EXIF_IFD, MAKE, MODEL, restored_logging
from transforms.exif import exif_facts, parse_taken_at

PHONE_FAST_S = 4.0
PHONE = ("Apple", "iPhone 15", "F2GX-7731")
EXIF_TIME = "%Y:%m:%d %H:%M:%S"


def as_phone_photo(path: Path) -> None:
    """The photo as the phone would have written it: its make, model and serial, and its
    clock's time (PHONE_FAST_S late); the JPEG's pixels are kept byte for byte."""

    def by_the_phone(exif: Image.Exif) -> None:
        exif[MAKE], exif[MODEL] = PHONE[:2]
        exif.get_ifd(EXIF_IFD)[BODY_SERIAL] = PHONE[2]

    edit_exif(path, by_the_phone, timedelta(seconds=PHONE_FAST_S))


def edit_exif(path: Path, edit: Callable[[Image.Exif], None], later: timedelta) -> None:
    """Rewrites the photo's EXIF header (`edit` it, its time `later`); the JPEG's pixels are
    kept byte for byte."""
    data = path.read_bytes()
    with Image.open(path) as image:
        exif = image.getexif()
    sub = exif.get_ifd(EXIF_IFD)
    taken = datetime.strptime(sub[DATETIME_ORIGINAL], EXIF_TIME)
    sub[DATETIME_ORIGINAL] = (taken + later).strftime(EXIF_TIME)
    edit(exif)
    app1 = exif.tobytes()  # b"Exif\0\0" and the TIFF block
    assert data[2:4] == b"\xff\xe1" and data[6:10] == b"Exif", "the demo's APP1 comes first"
    old_end = 4 + int.from_bytes(data[4:6], "big")
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
                     + data[old_end:])  # fmt: skip


def finish_times(race: Path) -> dict[str, datetime]:
    with (race / "truth.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["station_id"] == "finish"]
    return {r["bib"]: datetime.fromisoformat(r["passed_at"]) for r in rows}


def with_cameras(course: Path, cameras: list, to: Path) -> Path:
    doc = yaml.safe_load(course.read_text(encoding="utf-8"))
    doc["stations"][-1]["cameras"] = cameras
    to.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return to


def passages_at_finish(out: Path) -> dict[str, datetime]:
    rows = pq.read_table(out / "passages.parquet").to_pylist()
    return {r["bib"]: r["passed_at"] for r in rows if r["station_id"] == "finish"}


def racelens(*argv: str) -> None:
    with restored_logging():
        assert main(list(argv)) == 0


@pytest.fixture(scope="module")
def phone_race(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 3-athlete demo race whose finish photos of one athlete (the one farthest from the
    others, so no photo of another is among them) were taken by the phone."""
    race = tmp_path_factory.mktemp("clocks") / "race"
    generate_race(str(race), athletes=3, stations=2, seed=5)
    truth = finish_times(race)
    alone = max(truth, key=lambda b: min(abs(truth[b] - t) for o, t in truth.items() if o != b))
    assert min(abs(truth[alone] - t) for o, t in truth.items() if o != alone) > timedelta(seconds=6)
    tz = yaml.safe_load((race / "course.yaml").read_text(encoding="utf-8"))["race"]["timezone"]
    for path in sorted((race / "images" / "finish").glob("*.jpg")):
        with Image.open(path) as image:
            taken = parse_taken_at(exif_facts(image), tz)
        if abs(taken - truth[alone]) <= timedelta(seconds=2):
            as_phone_photo(path)
    return race, alone


def test_run__each_camera_at_a_station_has_its_own_clock(
    phone_race: tuple[Path, str], tmp_path: Path
) -> None:
    race, phone_bib = phone_race
    own_clock = {"name": f"{PHONE[0]} {PHONE[1]}", "clock_offset_s": -PHONE_FAST_S}
    course = with_cameras(race / "course.yaml", ["SN-FINISH-0001", own_clock], tmp_path / "c.yaml")
    out = tmp_path / "out"
    racelens(
        "run",
        *("--images", str(race / "images"), "--course", str(course)),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out)),
        *("--no-progress", "--direct_running_mode=in_memory"),
    )
    truth, timed = finish_times(race), passages_at_finish(out)
    assert sorted(timed) == sorted(truth)
    # Each passage within the demo's trigger jitter (0.8 s) of the true crossing.
    assert all(abs(timed[b] - truth[b]) <= timedelta(seconds=1) for b in truth), (timed, truth)

    # Listed without its own clock (the station's offset, none), the phone's athlete finishes
    # 4 s late; the DSLR's athletes are as they were.
    plain = with_cameras(race / "course.yaml", ["SN-FINISH-0001", own_clock["name"]], course)
    racelens("results", "--out", str(out), "--course", str(plain))
    late = passages_at_finish(out)
    assert late[phone_bib] - timed[phone_bib] == timedelta(seconds=PHONE_FAST_S)
    assert all(late[b] == timed[b] for b in truth if b != phone_bib)
