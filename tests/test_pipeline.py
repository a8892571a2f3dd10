"""End to end: a small demo race through `racelens run`, scored against its truth.

The demo race and the first run are shared by the whole module (they are the slow part);
each test then checks one promise of the contract on the files that run wrote.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import cli
from pipeline.cli import main
from pipeline.score import score_run
from tests.conftest import (
    CONTRACT_COLUMNS,
    COURSE_YAML,
    START_LIST_CSV,
    restored_logging,
    write_jpeg,
)
from transforms.photos import FactStore

REPO = Path(__file__).resolve().parents[1]
UTC_COLUMNS = {
    "images.parquet": ("taken_at",),
    "passages.parquet": ("passed_at",),
    "review.parquet": ("taken_at",),
    "stations.parquet": ("window_start", "window_end"),
}


@dataclass(frozen=True)
class Run:
    out: Path
    exit_code: int
    files: dict[str, bytes]  # the result files, as written
    facts: dict[str, tuple[int, int]]  # stored facts: path -> (inode, mtime)


def run_argv(race: Path, out: Path) -> list[str]:
    return [
        "run",
        "--images",
        str(race / "images"),
        "--course",
        str(race / "course.yaml"),
        "--start-list",
        str(race / "startlist.csv"),
        "--out",
        str(out),
        "--no-progress",
        # Two worker processes, as run_local.sh runs: any dependence on arrival order shows
        # up. (Beam's multi_threading mode once failed here decoding a pane, a race inside
        # Beam's thread-shared harness.)
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]


def result_files(out: Path) -> dict[str, bytes]:
    """Every file the run wrote next to the facts: the Parquet outputs and any extensions."""
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def stored_facts(out: Path) -> dict[str, tuple[int, int]]:
    facts = {}
    for root, _, names in os.walk(FactStore(str(out / "facts")).version_root):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            facts[os.path.join(root, name)] = (stat.st_ino, stat.st_mtime_ns)
    return facts


@pytest.fixture(scope="module")
def first_run(race: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("run") / "out"
    with restored_logging():
        code = main(run_argv(race, out))
    return Run(out, code, result_files(out), stored_facts(out))


def input_files(race: Path) -> list[str]:
    return sorted(str(p) for p in (race / "images").rglob("*") if p.is_file())


def image_rows(run: Run) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(run.out / "images.parquet").to_pylist()}


def test_run__exits_0_and_writes_the_five_files_with_the_contract_columns(first_run: Run) -> None:
    assert first_run.exit_code == 0
    assert set(CONTRACT_COLUMNS) <= set(first_run.files)
    assert not [name for name in first_run.files if ".tmp" in name], "no temporary file is left"
    for name, columns in CONTRACT_COLUMNS.items():
        schema = pq.read_schema(first_run.out / name)
        assert set(columns) <= set(schema.names), name
        for column in UTC_COLUMNS.get(name, ()):
            assert schema.field(column).type == pa.timestamp("ms", tz="UTC"), (name, column)


def test_run__every_input_file_is_exactly_one_image_row(race: Path, first_run: Run) -> None:
    table = pq.read_table(first_run.out / "images.parquet")
    paths = Counter(table["path"].to_pylist())
    assert sorted(paths.elements()) == input_files(race)
    statuses = {"passage", "review", "duplicate", "rejected", "no_athlete"}
    for row in table.to_pylist():
        assert row["image_id"] == hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
        assert row["status"] in statuses


def test_run__corrupt_file_is_queued_with_a_reason(race: Path, first_run: Run) -> None:
    corrupt = []
    for path in input_files(race):
        try:
            with Image.open(path) as image:
                image.load()
        except OSError:
            corrupt.append(path)
    assert len(corrupt) == 1, "the demo race has one corrupt file"
    row = image_rows(first_run)[corrupt[0]]
    # A JPEG cut short: analysed on what arrived, and one question for an official.
    assert (row["status"], row["reason"]) == ("review", "truncated_image")


def test_run__exact_copies_are_duplicates_with_reason_exact_duplicate(
    race: Path, first_run: Run
) -> None:
    by_content = defaultdict(list)
    for path in input_files(race):
        by_content[hashlib.sha256(Path(path).read_bytes()).hexdigest()].append(path)
    copies = {digest: paths for digest, paths in by_content.items() if len(paths) > 1}
    assert copies, "the demo race uploads some photos twice"
    rows = image_rows(first_run)
    for digest, paths in copies.items():
        marked = [rows[p] for p in paths if rows[p]["reason"] == "exact_duplicate"]
        assert len(marked) == len(paths) - 1, paths
        assert all(r["status"] == "duplicate" and r["duplicate_of"] == digest for r in marked)


def test_run__finds_the_true_passages_without_false_or_duplicate_rows(
    race: Path, first_run: Run
) -> None:
    score = score_run(str(first_run.out), str(race / "truth.csv"), str(race / "images"))
    assert score.recall >= 0.95, score.report()
    assert (score.false_passages, score.duplicate_rows) == (0, 0), score.report()
    assert (score.files_missing, score.files_repeated) == (0, 0), score.report()


def test_run__athlete_photos_hold_each_passage_photo_and_export_one_folder_per_athlete(
    first_run: Run, tmp_path: Path
) -> None:
    photos = pq.read_table(first_run.out / "athlete_photos.parquet").to_pylist()
    listed = {(r["bib"], r["image_id"]) for r in photos}
    passages = pq.read_table(first_run.out / "passages.parquet").to_pylist()
    assert {(p["bib"], p["image_id"]) for p in passages} <= listed
    assert len(listed) == len(photos), "one row per athlete and photo"
    assert main(["photos", "--out", str(first_run.out), "--to", str(tmp_path)]) == 0
    exported = Counter(p.parent.name for p in tmp_path.rglob("*.jpg"))
    assert exported == Counter(r["bib"] for r in photos)


def test_run__leaderboard_has_one_row_per_athlete_of_the_start_list(
    race: Path, first_run: Run
) -> None:
    with (race / "startlist.csv").open(encoding="utf-8", newline="") as f:
        listed = sorted(r["bib"] for r in csv.DictReader(f))
    board = pq.read_table(first_run.out / "leaderboard.parquet").to_pylist()
    assert sorted(r["bib"] for r in board if r["bib"] in listed) == listed
    ranks = [r["rank"] for r in board if r["rank"] is not None]
    assert ranks and ranks == sorted(ranks), "the file is in results order"


def test_bibs__one_json_line_per_image_as_the_pipeline_reads_it(
    first_run: Run, capsys: pytest.CaptureFixture[str], keep_logging: None
) -> None:
    rows = image_rows(first_run)
    photos = sorted(p for p, r in rows.items() if r["status"] == "passage")[:2]
    assert main(["bibs", *photos]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == photos
    for line in lines:
        assert isinstance(line["ms"], (int, float)) and line["ms"] >= 0
        reads = [{**r, "box": list(r["box"])} for r in rows[line["path"]]["reads"]]
        assert line["bibs"] == reads


@pytest.mark.parametrize("case", ["missing_images_folder", "broken_course", "demo_no_athletes"])
def test_cli__bad_input_exits_2_with_one_line_on_stderr(
    race: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keep_logging: None,
    case: str,
) -> None:
    out = tmp_path / "out"
    argv = run_argv(race, out)
    if case == "missing_images_folder":
        argv[argv.index("--images") + 1] = str(tmp_path / "no-such-folder")
        expected = "no-such-folder"
    elif case == "broken_course":
        broken = tmp_path / "course.yaml"
        broken.write_text("race: {id: x\n", encoding="utf-8")
        argv[argv.index("--course") + 1] = str(broken)
        expected = str(broken)
    else:
        argv = ["demo", "--out", str(out), "--athletes", "0"]
        expected = "athlete"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("racelens: error:") and expected in err
    assert not out.exists(), "nothing is written before the input is valid"


def test_run__second_run_is_byte_identical_and_reuses_stored_facts(
    race: Path, first_run: Run, keep_logging: None
) -> None:
    assert first_run.facts, "the first run stores what it learnt about each photo"
    assert main(run_argv(race, first_run.out)) == 0
    assert result_files(first_run.out) == first_run.files
    assert stored_facts(first_run.out) == first_run.facts, "facts were recomputed"


def test_python_m_pipeline__help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for command in ("demo", "run", "bibs"):
        assert command in done.stdout


def test_python_m_pipeline__run_forks_a_worker_per_core_by_default_with_the_same_results(
    race: Path, first_run: Run, tmp_path: Path
) -> None:
    argv = [a for a in run_argv(race, tmp_path / "out") if not a.startswith("--direct_")]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # Nor a word of the workers' own: the zygote started no thread (OpenBLAS's, once), and
    # Beam's warning that no main session was staged for them is left out.
    assert "WARNING" not in done.stderr
    written = result_files(tmp_path / "out")
    assert {name: written[name] for name in CONTRACT_COLUMNS} == {
        name: first_run.files[name] for name in CONTRACT_COLUMNS
    }


@pytest.mark.parametrize(
    ("own_process", "cores", "added"),
    [
        (True, 3, ["--direct_running_mode=multi_processing", "--direct_num_workers=3"]),
        (True, 1, []),
        (False, 3, []),  # main() called by other code: no forking its process
    ],
)
def test_run__the_racelens_program_uses_a_worker_process_per_core(
    monkeypatch: pytest.MonkeyPatch, own_process: bool, cores: int, added: list[str]
) -> None:
    executed: list[list[str]] = []
    monkeypatch.setattr(cli, "_execute", lambda argv, **_: executed.append(argv) or 0)
    monkeypatch.setattr(cli, "usable_cores", lambda: cores)
    cli._run(argparse.Namespace(own_process=own_process), ["--images", "photos"])
    assert executed == [["--images", "photos", *added]]


def test_with_worker_processes__as_many_as_the_user_asks_for() -> None:
    assert cli.with_worker_processes(["--direct_num_workers=4"], cores=1) == [
        "--direct_num_workers=4",
        "--direct_running_mode=multi_processing",
    ]


@pytest.mark.parametrize(
    "chosen",
    [
        ["--direct_running_mode=in_memory"],
        ["--direct_running_mode", "multi_threading"],
        ["--runner=DirectRunner"],
        ["--runner", "DaskRunner"],
        ["--streaming"],
    ],
)
def test_with_worker_processes__the_users_choice_of_execution_stands(chosen: list[str]) -> None:
    assert cli.with_worker_processes(["--out", "o", *chosen], cores=2) == ["--out", "o", *chosen]


# --- An official's corrections -----------------------------------------------------------------


@dataclass(frozen=True)
class Corrected:
    out: Path
    timed: str  # image_id of a photo with a good EXIF time and no bib read
    untimed: str  # image_id of a photo without EXIF: rejected as bad_exif


@pytest.fixture(scope="module")
def corrected_run(tmp_path_factory: pytest.TempPathFactory) -> Corrected:
    race = tmp_path_factory.mktemp("corrected")
    (race / "course.yaml").write_text(COURSE_YAML, encoding="utf-8")
    (race / "startlist.csv").write_text(START_LIST_CSV, encoding="utf-8")
    timed = write_jpeg(
        race / "images" / "finish" / "a.jpg",
        datetime_original="2026:05:01 10:40:00",
        subsec="5",
        offset="+02:00",
    )
    untimed = write_jpeg(race / "images" / "finish" / "b.jpg")
    ids = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (timed, untimed)]
    (race / "corrections.csv").write_text(
        "image_id,action,bib,station_id,passed_at,decided_at,by\n"
        f"{ids[0]},assign,101,,,2026-05-01T09:00:00Z,kari\n"
        f"{ids[1]},assign,102,finish,2026-05-01T08:41:00Z,2026-05-01T09:01:00Z,kari\n",
        encoding="utf-8",
    )
    argv = [*run_argv(race, race / "out"), "--corrections", str(race / "corrections.csv")]
    with restored_logging():
        assert main(argv) == 0
    return Corrected(race / "out", *ids)


def test_run__official_assignment_becomes_a_manual_passage(corrected_run: Corrected) -> None:
    passages = pq.read_table(corrected_run.out / "passages.parquet").to_pylist()
    assigned = [p for p in passages if p["image_id"] == corrected_run.timed]
    assert [(p["bib"], p["station_id"], p["method"], p["needs_review"]) for p in assigned] == [
        ("101", "finish", "manual", False)
    ]
    assert assigned[0]["passed_at"] == datetime(2026, 5, 1, 8, 40, 0, 500_000, tzinfo=UTC)
    images = {
        r["image_id"]: r for r in pq.read_table(corrected_run.out / "images.parquet").to_pylist()
    }
    assert images[corrected_run.timed]["status"] == "passage"


def test_run__official_assignment_with_station_and_time_rescues_a_photo_without_exif(
    corrected_run: Corrected,
) -> None:
    passages = pq.read_table(corrected_run.out / "passages.parquet").to_pylist()
    rescued = [(p["bib"], p["station_id"], p["passed_at"]) for p in passages if p["bib"] == "102"]
    assert rescued == [("102", "finish", datetime(2026, 5, 1, 8, 41, tzinfo=UTC))]
