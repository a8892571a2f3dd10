"""Cameras on another time zone than the race's (transforms/zones.py)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.cli import main
from pipeline.demo import generate_race
from pipeline.score import score_run
from tests.conftest import GUN, athlete, make_course, passage, photo, restored_logging
from transforms.corrections import OTHER_TIME_ZONE
from transforms.records import ExifFacts
from transforms.zones import ReviewTimeZones, Verdict, other_zone, verdict, zone_review

COURSE = make_course()  # start km 0, cp1 km 5, finish km 10; Oslo, +02:00 on race day
PACE_S = 300.0  # every athlete's, s/km: cp1 at 1500 s, the finish at 3000 s
HOUR = 3600.0
GUNS = {f"{100 + n}": GUN for n in range(10)}


def shot_photo(n: int, seconds: float, offset: str | None = "+01:00", camera: str = "PX8"):
    """cp1's photo of athlete n, timed `seconds` after the gun by its EXIF offset."""
    exif = ExifFacts(datetime_original="2026:05:01 10:25:00", offset=offset, serial=camera)
    return photo(f"cp1-{n}", station="cp1", seconds=seconds, exif=exif, image_id=f"cp1-{n}")


def race(cp1_off_s: float) -> tuple[list, list]:
    """Ten athletes seen at the start, cp1 (photos of a phone on +01:00, its passages
    `cp1_off_s` off the truth) and the finish: (photos at cp1, every passage)."""
    photos, passages = [], []
    for n, bib in enumerate(GUNS):
        cp1_at = 5 * PACE_S + cp1_off_s
        photos.append(shot_photo(n, cp1_at))
        passages += [
            passage(bib, "start", 0.0),
            passage(bib, "cp1", cp1_at, image_id=f"cp1-{n}"),
            passage(bib, "finish", 10 * PACE_S),
        ]
    return photos, passages


def shots_of(photos: list) -> list:
    return [s for p in photos if (s := other_zone(p, COURSE))]


def test_other_zone__an_offset_not_the_races_is_a_shot_an_hour_earlier_as_local_time():
    shot = other_zone(shot_photo(0, 1500.0), COURSE)
    assert shot is not None and shot.key == ("cp1", "PX8", timedelta(hours=1))
    assert shot.race_offset == timedelta(hours=2) and shot.shift_s == -HOUR


@pytest.mark.parametrize("offset", ["+02:00", None, "garbage"])
def test_other_zone__the_races_offset_or_none_is_no_shot(offset: str | None):
    assert other_zone(shot_photo(0, 1500.0, offset), COURSE) is None


def test_verdict__a_wall_clock_on_race_time_fits_as_local_time_only():
    # The phone wrote +01:00 but showed the race's time: timed by its offset, an hour late,
    # every athlete at cp1 after their finish.
    photos, passages = race(cp1_off_s=HOUR)
    found = verdict(shots_of(photos), passages, COURSE, GUNS)
    assert found == Verdict(athletes=10, as_timed=0, as_local=10) and found.local


def test_verdict__a_clock_on_its_own_zone_fits_as_timed_only():
    # The phone kept its home zone, its clock an hour behind: its offset times it right.
    photos, passages = race(cp1_off_s=0.0)
    found = verdict(shots_of(photos), passages, COURSE, GUNS)
    assert found == Verdict(athletes=10, as_timed=10, as_local=0) and found.offset


def test_verdict__a_few_athletes_either_way_is_no_verdict():
    found = Verdict(athletes=4, as_timed=1, as_local=2)
    assert not found.local and not found.offset


def test_zone_review__one_item_per_camera_with_the_fix_where_the_race_says_local():
    photos, passages = race(cp1_off_s=HOUR)
    (item,) = zone_review(shots_of(photos), passages, COURSE, GUNS)
    first = min(photos, key=lambda p: (p.taken_at, p.image_id))
    assert (item.reason, item.station_id, item.image_id) == ("other_time_zone", "cp1", "cp1-0")
    assert item.taken_at == first.taken_at
    assert "carry UTC offset +01:00; the race's is +02:00" in item.note
    assert "0 of 10 athletes" in item.note and "10 would as the race's local time" in item.note
    # cp1's clock_offset_s -2.5 (make_course) and the hour.
    assert "write clock_offset_s: -3602.5 for station cp1 in course.yaml (now -2.5)" in item.note


def test_zone_review__a_right_offset_is_told_to_stand():
    photos, passages = race(cp1_off_s=0.0)
    (item,) = zone_review(shots_of(photos), passages, COURSE, GUNS)
    assert "the times stand" in item.note and "write clock_offset_s" not in item.note


def test_zone_review__two_cameras_are_two_items_and_none_without_shots():
    photos, passages = race(cp1_off_s=0.0)
    other = shot_photo(99, 1500.0, "-04:00", camera="DSLR")
    items = zone_review(shots_of(photos + [other]), passages, COURSE, GUNS)
    assert [(i.station_id, i.image_id) for i in items] == [("cp1", "cp1-99"), ("cp1", "cp1-0")]
    assert zone_review([], passages, COURSE, GUNS) == []


def test_review_time_zones__composite_gives_the_items_of_the_whole_race():
    photos, passages = race(cp1_off_s=HOUR)
    expected = zone_review(shots_of(photos), passages, COURSE, GUNS)
    athletes = [athlete(bib) for bib in GUNS]
    with TestPipeline() as p:
        found = (
            p | "Passages" >> beam.Create(passages),
            p | "Photos" >> beam.Create(photos + [photo("finish-1", seconds=3000.0)]),
        ) | ReviewTimeZones(COURSE, athletes)
        assert_that(found, equal_to(expected))


# --- End to end: a demo race whose checkpoint phone wrote +01:00 -----------------------------


def racelens(*argv: str) -> None:
    with restored_logging():
        assert main(list(argv)) == 0


def rewrite_offset(folder: Path, prefix: str, offset: bytes) -> int:
    """Writes `offset` for the race's +02:00 in the OffsetTimeOriginal of the photos named
    `prefix`*, their wall clock kept (the same bytes' length: the JPEG is otherwise as it
    was)."""
    patched = 0
    for path in sorted(folder.glob(f"{prefix}*.jpg")):
        data = path.read_bytes()
        head = data[:4096]
        assert head.count(b"+02:00") == 1, path
        path.write_bytes(head.replace(b"+02:00", offset) + data[4096:])
        patched += 1
    return patched


@pytest.fixture(scope="module")
def wall_clock_race(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 25-athlete demo race (start, cp1 at km 5, finish) whose cp1 camera wrote +01:00 on
    race-time wall clocks, timed."""
    race = tmp_path_factory.mktemp("zone-race") / "race"
    generate_race(str(race), athletes=25, stations=3, seed=5)
    assert rewrite_offset(race / "images" / "unsorted", "CP1", b"+01:00") > 20
    racelens(
        "run",
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(race / "results")),
        "--no-progress",
    )
    return race


def scored(race: Path, out: Path) -> tuple[int, int]:
    """(true passages found, false ones) of the run in `out`."""
    found = score_run(str(out), str(race / "truth.csv"), str(race / "images"))
    return found.found_visible, found.false_passages


def test_run__a_camera_on_another_zone_is_one_item_and_its_fix_times_it_right(
    wall_clock_race: Path, tmp_path: Path
):
    items = pq.read_table(wall_clock_race / "results" / "review.parquet").to_pylist()
    (item,) = [i for i in items if i["reason"] == OTHER_TIME_ZONE]
    assert item["station_id"] == "cp1" and "carry UTC offset +01:00" in item["note"]
    # Timed by its offset, as before: cp1's passages an hour late, none found there.
    found, false = scored(wall_clock_race, wall_clock_race / "results")
    fix = "write clock_offset_s: "
    assert fix in item["note"]
    offset = float(item["note"].split(fix)[1].split(" ")[0])
    course = yaml.safe_load((wall_clock_race / "course.yaml").read_text(encoding="utf-8"))
    (cp1,) = [s for s in course["stations"] if s["id"] == "cp1"]
    assert offset == cp1.get("clock_offset_s", 0) - HOUR
    cp1["clock_offset_s"] = offset
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(course), encoding="utf-8")
    out = tmp_path / "results"
    shutil.copytree(wall_clock_race / "results", out)
    racelens("results", "--out", str(out), "--course", str(fixed))
    refound, refalse = scored(wall_clock_race, out)
    assert refalse == 0 and refound > found and false > 0
    (again,) = [
        i
        for i in pq.read_table(out / "review.parquet").to_pylist()
        if i["reason"] == OTHER_TIME_ZONE
    ]
    assert "the times stand" in again["note"]
