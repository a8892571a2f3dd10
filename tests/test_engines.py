"""More cores, or more machines, give the results of one process, row for row.

An in-process DirectRunner run of the shared demo race is the reference. The
DirectRunner with two worker processes and Dask with a LocalCluster of two worker
processes each analyse every photo afresh (each run has its own fact store) and
must write the same rows in every output file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from dask.distributed import Client

from pipeline import engines
from pipeline.cli import main
from pipeline.graph import build, build_retime
from pipeline.summary import OUTPUT_FILES
from tests.conftest import restored_logging

Results = dict[str, object]


def run_race(race: Path, out: Path, *engine_argv: str) -> Path:
    argv = [
        "run",
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
        *engine_argv,
    ]
    with restored_logging():
        assert main(argv) == 0
    return out


def results_of(out: Path) -> Results:
    """Every output file: the rows of each Parquet file, the text of the CSV."""
    return {
        name: pq.read_table(out / name).to_pylist()
        if name.endswith(".parquet")
        else (out / name).read_text(encoding="utf-8")
        for name in OUTPUT_FILES
    }


def fact_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "facts").rglob("*.json"))


def assert_same_results(out: Path, reference: Results) -> None:
    got = results_of(out)
    for name in OUTPUT_FILES:
        assert got[name] == reference[name], f"{name} differs from the in-process run's"


@pytest.fixture(scope="module")
def in_process(race: Path, tmp_path_factory: pytest.TempPathFactory) -> Results:
    out = tmp_path_factory.mktemp("in_process") / "out"
    return results_of(run_race(race, out, "--direct_running_mode=in_memory"))


def test_direct_runner__two_worker_processes_give_the_in_process_results(
    race: Path, in_process: Results, tmp_path: Path
) -> None:
    out = run_race(
        race, tmp_path / "out", "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    assert fact_files(out), "the worker processes analysed the photos"
    assert_same_results(out, in_process)


def test_dask__local_cluster_analyses_every_photo_and_the_results_are_the_in_process_ones(
    race: Path, in_process: Results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    stored_before_timing: list[Path] = []
    time_race = engines.run

    def spy(argv: list[str], graph: engines.Graph) -> object:
        stored_before_timing.extend(fact_files(out))
        return time_race(argv, graph=graph)

    monkeypatch.setattr(engines, "run", spy)
    run_race(race, out, "--runner=DaskRunner", "--dask_local_workers=2")
    assert stored_before_timing, "Dask stored the facts before the timing started"
    assert fact_files(out) == stored_before_timing, "the DirectRunner analysed nothing more"
    assert_same_results(out, in_process)


def test_dask_scheduler__starts_a_local_cluster_of_worker_processes_when_none_is_named() -> None:
    with engines.dask_scheduler(PipelineOptions(["--dask_local_workers=2"])) as argv:
        [address] = [a.split("=", 1)[1] for a in argv if a.startswith("--dask_client_address=")]
        with Client(address) as client:
            pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.parametrize(
    "named", ["--dask_client_address=tcp://127.0.0.1:8786", "--dask_scheduler_file=s.json"]
)
def test_dask_scheduler__a_named_scheduler_is_used_as_given(named: str) -> None:
    with engines.dask_scheduler(PipelineOptions([named])) as argv:
        assert argv == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], [f"--dask_partition_size={engines.DEFAULT_PARTITION_SIZE}"]),
        (["--dask_npartitions=4"], []),
        (["--dask_partition_size=2"], []),
    ],
)
def test_partitioning__racelens_chooses_only_when_the_user_did_not(
    given: list[str], expected: list[str]
) -> None:
    assert engines.partitioning(PipelineOptions(given)) == expected


@pytest.mark.parametrize(
    ("runner", "dask"),
    [
        ("DaskRunner", True),
        ("dask", True),
        ("apache_beam.runners.dask.dask_runner.DaskRunner", True),
        ("DirectRunner", False),
        (None, False),
    ],
)
def test_runs_on_dask__by_short_or_full_name(runner: str | None, dask: bool) -> None:
    argv = [f"--runner={runner}"] if runner else []
    assert engines.runs_on_dask(PipelineOptions(argv)) is dask


@pytest.mark.parametrize(("graph", "analysed"), [(build, True), (build_retime, False)])
def test_run_on_dask__analyses_only_a_whole_race_and_times_on_the_direct_runner(
    graph: engines.Graph, analysed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(engines, "analyse_on_dask", lambda argv: calls.append(("dask", argv)))
    monkeypatch.setattr(engines, "run", lambda argv, graph: calls.append(("direct", argv)))
    engines.run_on_dask(["--runner=DaskRunner"], graph=graph)
    assert [engine for engine, _ in calls] == ["dask"] * analysed + ["direct"]
    assert PipelineOptions(calls[-1][1]).get_all_options()["runner"] == "DirectRunner"
