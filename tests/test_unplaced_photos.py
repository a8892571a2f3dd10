"""A photo the pipeline cannot place keeps taken_at null, and its review item (and its row
of images.parquet) says what the photo says of itself: the time its EXIF gives and the
stations it may be at."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.cli import main
from tests.conftest import photo, restored_logging
from transforms.course import load_course
from transforms.exif import exif_facts, parse_taken_at, place_in_race
from transforms.placing import Allowed, placed_by
from transforms.records import REJECTED, ExifFacts

PHOTOS_EACH = 3


def _loop_course(race: Path, tmp_path: Path) -> Path:
    """The demo race's course with the finish where cp2 is (the course comes back past it),
    and cp1's camera no longer listed (its photos, without GPS, find no station)."""
    course = yaml.safe_load((race / "course.yaml").read_text(encoding="utf-8"))
    stations = {s["id"]: s for s in course["stations"]}
    stations["finish"].update(lat=stations["cp2"]["lat"], lon=stations["cp2"]["lon"])
    del stations["cp1"]["cameras"]
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(course), encoding="utf-8")
    return path


def _camera_photos(race: Path, images: Path) -> dict[str, ExifFacts]:
    """Copies of a few of the demo's unsorted photos, into a folder of no station: cp2's
    phone's (GPS) from 10:30, when runners pass cp2 and the fastest finish, and cp1's
    camera's (serial, no GPS); image name -> its EXIF."""
    chosen: dict[str, ExifFacts] = {}
    phone = camera = 0
    for path in sorted((race / "images" / "unsorted").iterdir()):
        with Image.open(path) as image:
            exif = exif_facts(image)
        late = (exif.datetime_original or "") >= "2026:05:01 10:30"
        if exif.gps is not None and late and phone < PHOTOS_EACH:
            phone += 1
        elif exif.gps is None and exif.serial and camera < PHOTOS_EACH:
            camera += 1
        else:
            continue
        shutil.copyfile(path, images / "phone" / path.name)
        chosen[path.name] = exif
    return chosen


def test_run__a_photo_not_placed_is_in_review_with_its_own_time(race: Path, tmp_path: Path) -> None:
    course = _loop_course(race, tmp_path)
    images, out = tmp_path / "images", tmp_path / "out"
    (images / "phone").mkdir(parents=True)
    exifs = _camera_photos(race, images)
    argv = [
        "run", "--images", str(images), "--course", str(course),
        "--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress",
    ]  # fmt: skip
    with restored_logging():
        assert main(argv) == 0

    rows = pq.read_table(out / "review.parquet").to_pylist()
    items = {(Path(r["path"]).name, r["reason"]): r for r in rows}
    reasons = {reason for _, reason in items}
    assert {"ambiguous_station", "unknown_station"} <= reasons
    for (name, reason), item in items.items():
        assert (item["station_id"], item["taken_at"]) == (None, None)  # placed nowhere
        # Neither cp2 nor the finish corrects its clock: the EXIF's time as written.
        own = parse_taken_at(exifs[name], "Europe/Oslo")
        assert item["exif_taken_at"] == own.replace(microsecond=own.microsecond // 1000 * 1000)
        stations = ["cp2", "finish"] if reason == "ambiguous_station" else []
        assert item["could_be_at"] == stations
    # images.parquet still reads them as not placed, and says the same of them as their
    # items: what a photo opened by its link shows once its item has left the queue.
    placed = {Path(r["path"]).name: r for r in pq.read_table(out / "images.parquet").to_pylist()}
    for (name, _), item in items.items():
        row = placed[name]
        assert row["taken_at"] is None
        assert (row["exif_taken_at"], row["could_be_at"]) == (
            item["exif_taken_at"],
            item["could_be_at"],
        )


@pytest.mark.parametrize(
    ("exif", "expected"),
    [
        # The start's clock runs 3 s fast (clock_offset_s -3): a photo placed there with a
        # clock days off is bad_exif, shown with the start's correction.
        (
            ExifFacts("2026:04:20 10:21:43", offset="+02:00"),
            datetime(2026, 4, 20, 8, 21, 40, tzinfo=UTC),
        ),
        (ExifFacts(), None),  # no time at all: nothing to show
    ],
    ids=["another_day", "none"],
)
def test_place_in_race__a_bad_exif_photo_keeps_whatever_time_it_has(
    race: Path, exif: ExifFacts, expected: datetime | None
) -> None:
    course = load_course(str(race / "course.yaml"))
    placed = place_in_race(
        photo("a", station=None, seconds=None, folder="start", exif=exif), course
    )
    assert (placed.status, placed.reason, placed.station_id) == (REJECTED, "bad_exif", "start")
    assert (placed.taken_at, placed.exif_taken_at) == (None, expected)


def test_placed_by__a_photo_its_athletes_place_keeps_nothing_of_its_doubt() -> None:
    # An ambiguous_station photo that its athletes' passages place (transforms/placing.py)
    # kept the EXIF time and stations of its doubt: its items showed it as placed nowhere.
    taken = datetime(2026, 5, 1, 8, 40, tzinfo=UTC)
    shot = photo("a", station=None, seconds=None, exif=ExifFacts("2026:05:01 10:40:00"))
    doubted = replace(
        shot,
        status=REJECTED,
        reason="ambiguous_station",
        exif_taken_at=taken,
        could_be_at=("start", "finish"),
    )
    finish = frozenset({("finish", taken)})
    placed = placed_by(doubted, [Allowed(by_passages=finish, by_pace=finish)])
    assert (placed.status, placed.station_id, placed.taken_at) == (None, "finish", taken)
    assert (placed.exif_taken_at, placed.could_be_at) == (None, ())
