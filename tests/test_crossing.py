"""Where in a burst of photos a runner crosses the line: a station's `crossing`, end to end.

A camera just past the line facing the oncoming runners sees each runner for their last
metres before it: the last photo of the burst is the crossing (crossing: last). Here one
demo athlete's finish photos but the last are made the approach's, APPROACH_S earlier (their
EXIF time; the pixels are untouched), and the finish set to last gives their chip time back.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipeline.cli import main
from pipeline.demo import generate_race
from tests.conftest import (
    COURSE_YAML,
    GUN,
    START_LIST_CSV,
    at,
    make_course,
    passage,
    restored_logging,
)
from tests.test_course_camera_clocks import (
    edit_exif,
    finish_times,
    passages_at_finish,
    racelens,
)
from tests.test_placing import OUT_AND_BACK_YAML, turn_race
from transforms.course import ConfigError, parse_course
from transforms.exif import exif_facts, parse_taken_at
from transforms.splits import check_athlete

APPROACH_S = 12.0  # within the merge window (20 s): one passage with the photo at the line


# --- course.yaml ------------------------------------------------------------------------------


def test_parse_course__crossing_is_first_unless_a_station_or_the_race_says_last() -> None:
    assert parse_course(COURSE_YAML).last_at == frozenset()
    race_wide = parse_course(COURSE_YAML + "settings: {crossing: last}\n")
    assert race_wide.last_at == {"start", "cp1", "finish"}
    one = COURSE_YAML.replace(
        "{id: start, name: Start,", "{id: start, crossing: last, name: Start,"
    )
    assert parse_course(one).last_at == {"start"}
    but_one = one.replace("crossing: last", "crossing: first")
    assert parse_course(but_one + "settings: {crossing: last}\n").last_at == {"cp1", "finish"}


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            COURSE_YAML.replace("{id: finish,", "{id: finish, crossing: latest,"),
            "course.yaml: line 6: station 'finish' crossing must be first or last, not 'latest'",
        ),
        (
            COURSE_YAML + "settings:\n  crossing: Last\n",
            "course.yaml: line 11: settings: crossing must be first or last, not 'Last'",
        ),
        (
            COURSE_YAML.replace("{id: finish,", "{id: finish, crosing: last,"),
            "course.yaml: line 6: station 'finish': unknown key 'crosing' (did you mean crossing?)",
        ),
    ],
)
def test_parse_course__a_misspelt_crossing_is_refused_in_one_line(
    yaml_text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_course(yaml_text)
    assert str(refused.value) == message


def test_racelens_run__a_misspelt_crossing_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course, start_list = tmp_path / "course.yaml", tmp_path / "startlist.csv"
    course.write_text(COURSE_YAML + "settings: {crossing: latest}\n", encoding="utf-8")
    start_list.write_text(START_LIST_CSV, encoding="utf-8")
    argv = ["run", "--images", str(tmp_path), "--course", str(course)]
    with restored_logging():
        code = main([*argv, "--start-list", str(start_list), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "crossing must be first or last, not 'latest'" in capsys.readouterr().err


# --- CheckSplits ------------------------------------------------------------------------------


@pytest.mark.parametrize(("crossing", "kept_s"), [("first", 30.0), ("last", 90.0)])
def test_check_splits__of_two_start_passages_the_crossing_keeps_its_photo(
    crossing: str, kept_s: float
) -> None:
    # A back-of-pack runner photographed shuffling to the line, then unseen for longer than
    # the merge window, then at the line: two plausible start passages, one kept.
    start, *others = make_course().stations
    course = make_course(stations=(replace(start, crossing=crossing), *others))
    ps = [passage("101", "start", 30.0), passage("101", "start", 90.0)]
    checked, _ = check_athlete([*ps, passage("101", "finish", 3000.0)], course, GUN, True)
    assert [p.passed_at for p in checked if p.station_id == "start" and not p.needs_review] == [
        at(kept_s)
    ]


# --- A demo race, end to end ------------------------------------------------------------------


def with_finish_crossing(course: Path, crossing: str, to: Path) -> Path:
    doc = yaml.safe_load(course.read_text(encoding="utf-8"))
    doc["stations"][-1]["crossing"] = crossing
    to.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return to


@pytest.fixture(scope="module")
def approach_race(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 3-athlete demo race whose finish photos of one athlete (the one farthest from the
    others, so no photo of another is among them) were taken on their approach, but the last
    one at the line."""
    race = tmp_path_factory.mktemp("crossing") / "race"
    generate_race(str(race), athletes=3, stations=2, seed=5)
    truth = finish_times(race)
    alone = max(truth, key=lambda b: min(abs(truth[b] - t) for o, t in truth.items() if o != b))
    tz = yaml.safe_load((race / "course.yaml").read_text(encoding="utf-8"))["race"]["timezone"]
    theirs: list[tuple[datetime, Path]] = []
    for path in sorted((race / "images" / "finish").glob("*.jpg")):
        with Image.open(path) as image:
            taken = parse_taken_at(exif_facts(image), tz)
        if abs(taken - truth[alone]) <= timedelta(seconds=2):
            theirs.append((taken, path))
    approach = sorted(theirs)[:-1]
    assert approach, "the athlete has a photo before the one at the line"
    for _, path in approach:
        edit_exif(path, lambda _: None, timedelta(seconds=-APPROACH_S))
    return race, alone


def chip_times(out: Path) -> dict[str, float]:
    return {r["bib"]: r["chip_s"] for r in pq.read_table(out / "leaderboard.parquet").to_pylist()}


def test_run__a_finish_facing_the_runners_is_timed_at_their_last_photo(
    approach_race: tuple[Path, str], tmp_path: Path
) -> None:
    race, alone = approach_race
    course = with_finish_crossing(race / "course.yaml", "first", tmp_path / "course.yaml")
    out = tmp_path / "out"
    racelens(
        "run",
        *("--images", str(race / "images"), "--course", str(course)),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out)),
        *("--no-progress", "--direct_running_mode=in_memory"),
    )
    truth, first, first_chip = finish_times(race), passages_at_finish(out), chip_times(out)
    # At the first photo the athlete finishes on their approach, seconds early.
    assert truth[alone] - first[alone] >= timedelta(seconds=APPROACH_S - 1)

    racelens(
        "results", "--out", str(out), "--course", str(with_finish_crossing(course, "last", course))
    )
    last, last_chip = passages_at_finish(out), chip_times(out)
    # At the last photo every athlete is within the demo's trigger jitter (0.8 s) of the line.
    assert all(abs(last[b] - truth[b]) <= timedelta(seconds=1) for b in truth), (last, truth)
    moved = (last[alone] - first[alone]).total_seconds()
    assert last_chip[alone] - first_chip[alone] == pytest.approx(moved, abs=0.01)


def test_run__a_burst_at_a_crossing_last_finish_keeps_and_times_its_last_frame(
    tmp_path: Path,
) -> None:
    # Three frames of 101 a second apart as they come up to a finish facing them (crossing:
    # last): the last, at the line, is kept and times the passage; the two before it are
    # its near duplicates, through `racelens run` and `racelens results`. Failed before (the
    # first frame kept, the finish timed 2 s early), passes.
    out = tmp_path / "out"
    shots = {"f1": (50, "101"), "f2": (50 + 1 / 60, "101"), "f3": (50 + 2 / 60, "101")}
    last = OUT_AND_BACK_YAML.replace("km: 10,", "km: 10, crossing: last,")
    with restored_logging():
        assert main(turn_race(tmp_path, shots, last)) == 0
    for timing in ("run", "results"):
        if timing == "results":
            racelens("results", "--out", str(out))
        rows = pq.read_table(out / "images.parquet").to_pylist()
        stem = {r["path"]: Path(r["path"]).stem for r in rows}
        duplicate_of = {stem[r["path"]]: stem.get(r["duplicate_of_path"]) for r in rows}
        assert duplicate_of == {"f1": "f3", "f2": "f3", "f3": None}, timing
        assert passages_at_finish(out) == {"101": at(3002)}, timing
