"""More cores, or more machines, give the results of one process, row for row.

An in-process DirectRunner run of the shared demo race is the reference. The
DirectRunner with two worker processes and Dask (a scheduler and two workers, each
a process of its own, as on a cluster) each analyse every photo afresh (each run has
its own fact store) and must write the same rows in every output file.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import dask
import psutil
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from dask.distributed import Client, LocalCluster, get_task_stream
from distributed.comm import CommClosedError
from distributed.scheduler import KilledWorker

from pipeline import engines
from pipeline.cli import main
from pipeline.graph import build, build_retime
from pipeline.summary import OUTPUT_FILES
from pipeline.worker_command import WorkerLost
from tests.conftest import repeated_meanwhile, restored_logging
from tests.test_robustness import time_limit
from transforms import photos, records
from transforms.course import ConfigError
from transforms.photos import FactStore
from transforms.records import PhotoFacts

Results = dict[str, object]
REPO = Path(__file__).resolve().parents[1]


def run_argv(race: Path, out: Path, *engine_argv: str) -> list[str]:
    return [
        "run",
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
        *engine_argv,
    ]


def run_race(race: Path, out: Path, *engine_argv: str) -> Path:
    with restored_logging():
        assert main(run_argv(race, out, *engine_argv)) == 0
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


def test_racelens_program__forked_workers_give_the_in_process_results(
    race: Path, in_process: Results, tmp_path: Path
) -> None:
    # Its own process, as `racelens run`: the workers are forked (pipeline/workers.py) and
    # the launcher times the race after their analysis.
    argv = run_argv(race, tmp_path / "out", "--direct_running_mode=multi_processing")
    subprocess.run(
        [sys.executable, "-m", "pipeline", *argv, "--direct_num_workers=2"],
        cwd=REPO,
        capture_output=True,
        timeout=300,
        check=True,
    )
    assert fact_files(tmp_path / "out"), "the worker processes analysed the photos"
    assert_same_results(tmp_path / "out", in_process)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A dask.distributed scheduler and two single-threaded workers, each its own process
    started by the `dask` command as on a cluster; yields the scheduler file."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    # The workers import racelens from this checkout, as a cluster's from its install.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }

    def start(*args: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "dask", *args, "--dashboard-address=:0"]
        return subprocess.Popen(
            command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    started = [start("scheduler", "--port=0", f"--scheduler-file={scheduler_file}")]
    try:
        worker = ("worker", f"--scheduler-file={scheduler_file}", "--nthreads=1", "--no-nanny")
        started += [start(*worker, f"--local-directory={folder}") for _ in range(2)]
        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield scheduler_file
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


def test_dask__a_cluster_of_separate_processes_analyses_every_photo_with_the_in_process_results(
    race: Path,
    in_process: Results,
    dask_cluster: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    stored_before_timing: list[Path] = []
    analysed_by_launcher: list[str] = []
    time_race, analyse = engines.run, photos.analyse_photo

    def spy(argv: list[str], graph: engines.Graph) -> object:
        stored_before_timing.extend(fact_files(out))
        return time_race(argv, graph=graph)

    def analyse_here(data: bytes, image_id: str, *args: object) -> object:
        analysed_by_launcher.append(image_id)  # the workers are other processes: not theirs
        return analyse(data, image_id, *args)

    monkeypatch.setattr(engines, "run", spy)
    monkeypatch.setattr(photos, "analyse_photo", analyse_here)
    with Client(scheduler_file=str(dask_cluster)) as client, get_task_stream(client) as tasks:
        # Small partitions, so that both workers get some of this small race.
        run_race(
            race,
            out,
            "--runner=DaskRunner",
            f"--dask_scheduler_file={dask_cluster}",
            "--dask_partition_size=4",
        )
        opencv_threads = client.run(cv2.getNumThreads)
    assert stored_before_timing, "Dask stored the facts before the timing started"
    assert fact_files(out) == stored_before_timing, "the DirectRunner stored nothing more"
    assert analysed_by_launcher == [], "the timing found every photo's facts: no analysis"
    analysing = {t["worker"] for t in tasks.data if "apply_dofn_to_bundle" in str(t["key"])}
    assert len(analysing) == 2, "both workers analysed photos"
    # Parallelism comes from worker processes, one core each: OpenCV's own threads would
    # compete with the other workers for the cores (photos.py sets this in the DoFns' setup).
    assert set(opencv_threads.values()) == {1}, opencv_threads
    assert_same_results(out, in_process)


def test_dask__workers_of_another_analysis_version_are_refused_before_the_timing(
    race: Path,
    dask_cluster: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The timing reads facts of the launcher's version only; it would find none of theirs.
    launcher = records.ANALYSIS_VERSION + 1
    monkeypatch.setattr(records, "ANALYSIS_VERSION", launcher)
    out = tmp_path / "out"
    argv = run_argv(race, out, "--runner=DaskRunner", f"--dask_scheduler_file={dask_cluster}")
    with restored_logging():
        assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"as version {launcher}: run the same racelens" in error, error
    assert not (out / "images.parquet").exists(), "no race was timed"
    assert not (tmp_path / "out" / "images.parquet").exists(), "no race was timed"


def test_require_same_analysis__a_worker_dying_meanwhile_is_not_asked() -> None:
    # Killed 25 s after launch, under load, a worker died as the launcher asked it: the run
    # ended with the traceback of Dask's CommClosedError.
    class OneDied:
        def run(self, function: Callable[[], int], on_error: str = "raise") -> dict[str, int]:
            if on_error == "raise":
                raise CommClosedError("in <TCP (closed) Scheduler Broadcast>: Stream is closed")
            return {"tcp://alive:1": function()}

    engines.require_same_analysis(OneDied())


@pytest.mark.parametrize(
    ("named", "problem"),
    [
        # Dask's client waited for the file for good: a typo hung the run.
        (
            "--dask_scheduler_file={tmp}/typo.json",
            "--dask_scheduler_file: no file '{tmp}/typo.json'",
        ),
        # A traceback of Dask's, after its 30 s (2 s here) of trying.
        ("--dask_client_address=tcp://127.0.0.1:1", "cannot reach the Dask scheduler at"),
    ],
)
def test_dask__a_scheduler_not_there_is_one_line_exit_2(
    race: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    named: str,
    problem: str,
) -> None:
    argv = run_argv(race, tmp_path / "out", "--runner=DaskRunner", named.format(tmp=tmp_path))
    with (
        restored_logging(),
        time_limit(60),
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
    ):
        assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and problem.format(tmp=tmp_path) in error, error
    assert not (tmp_path / "out" / "images.parquet").exists(), "no race was timed"


def test_dask_scheduler__starts_a_local_cluster_of_worker_processes_when_none_is_named() -> None:
    with engines.dask_scheduler(PipelineOptions(["--dask_local_workers=2"])) as scheduler:
        [address] = [
            a.split("=", 1)[1] for a in scheduler.argv if a.startswith("--dask_client_address=")
        ]
        with Client(address) as client:
            pids = set(client.run(os.getpid).values())
            threads = set(client.run(lambda dask_worker: dask_worker.state.nthreads).values())
            profiling = client.run(dask.config.get, "distributed.worker.profile.enabled")
    assert len(pids) == 2 and os.getpid() not in pids
    assert threads == {1}, "one task thread per worker process"
    assert set(profiling.values()) == {False}, "no statistical profiler taking CPU"


def test_a_worker_joined__waits_for_one_saying_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A cluster of yours whose workers never started (or all failed to): the run waited
    # without a word.
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        waiting = threading.Thread(target=engines.a_worker_joined, args=(client,))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()
        cluster.scale(1)
        waiting.join(60)
        assert not waiting.is_alive()
    err = capsys.readouterr().err
    assert err.startswith("racelens: no Dask worker has joined the scheduler at ") and (
        err.count("\n") == 1
    ), err


def test_gathered__workers_that_died_on_the_same_photos_are_a_lost_worker() -> None:
    # The OOM killer on Dask: its KilledWorker ended the run with ~30 lines of traceback.
    class Dying:
        scheduler = SimpleNamespace(address="tcp://s:1")

        def gather(self, _: object) -> None:
            raise KilledWorker("from_sequence-1", SimpleNamespace(address="tcp://w:1"), 3)

    with pytest.raises(WorkerLost) as lost:
        engines.gathered(Dying(), [], engines.Scheduler([], lambda: True, "one"))
    # Not the traceback's advice, nor a guess at the cause: a cluster of yours does not say.
    assert lost.value.why == (
        "Dask worker processes died 4 times running the same photos (the last at tcp://w:1)"
    )


def test_killed_why__says_how_the_last_ended_where_its_nanny_said_it() -> None:
    killed = KilledWorker("from_sequence-1", SimpleNamespace(address="tcp://w:1"), 2)
    assert engines.killed_why(killed, "was killed by signal 9 (SIGKILL)") == (
        "Dask worker processes died 3 times running the same photos (the last at tcp://w:1, "
        "was killed by signal 9 (SIGKILL))"
    )


def test_gathered__a_local_cluster_whose_worker_processes_keep_dying_is_a_lost_worker() -> None:
    # The audit killed both worker processes 5 times, 10 s apart: the nannies restarted them
    # 4 times, then gave up, and the run waited without a word until SIGTERM. Here the one
    # worker is killed as soon as it is there, the one its nanny restarts too.
    with (
        engines.dask_scheduler(PipelineOptions(["--dask_local_workers=1"])) as scheduler,
        Client(scheduler.argv[0].split("=", 1)[1]) as client,
        worker_processes_killed(),
        time_limit(120),
        # It said "killed: out of memory?" of any end.
        pytest.raises(
            WorkerLost,
            match=r"no worker left \(the last worker process was killed by signal 9 \(SIGKILL\)\)$",
        ),
    ):
        analysis = client.submit(time.sleep, 600, pure=False)
        engines.gathered(client, [analysis], scheduler)


def worker_processes_killed() -> contextlib.AbstractContextManager[None]:
    """Meanwhile every Dask worker process this process starts is killed (SIGKILL) within
    0.1 s, as the OOM killer or a crash at start-up would end it."""

    def kill() -> None:
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(child.cmdline()):
                    child.kill()

    return repeated_meanwhile(kill, 0.1)


def test_gathered__a_scheduler_left_with_no_worker_is_waited_for_saying_so_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster of yours whose workers all died: the run waited without a word.
    monkeypatch.setattr(engines, "NO_WORKER_TOLD_AFTER_S", 0.5)
    monkeypatch.setattr(engines, "LOOK_EVERY_S", 0.1)
    files: list = []
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        analysis = client.submit(list, [("id", "a.jpg")])
        named = engines.Scheduler([], lambda: True, engines.WAITING_FOR_A_WORKER)
        gathering = threading.Thread(
            target=lambda: files.extend(engines.gathered(client, [analysis], named))
        )
        gathering.start()
        gathering.join(2)
        assert gathering.is_alive()
        told = capsys.readouterr().err
        cluster.scale(1)
        gathering.join(60)
        assert not gathering.is_alive()
    assert told.startswith("racelens: the Dask scheduler at ") and told.count("\n") == 1, told
    assert "has had no worker for 1 s (all lost); waiting for one" in told
    assert files == [("id", "a.jpg")]


@pytest.mark.parametrize(
    ("said", "how"),
    [
        ("Worker process 12 exited with status 3", "exited with status 3"),
        ("Worker process 12 was killed by signal 9", "was killed by signal 9 (SIGKILL)"),
        ("Worker process 12 was killed by signal 15", "was killed by signal 15 (SIGTERM)"),
    ],
)
def test_worker_ends__notes_how_a_worker_process_ended_and_keeps_info_off_the_terminal(
    said: str, how: str
) -> None:
    ends = engines.WorkerEnds()
    assert not ends.filter(dask_record(said, level=logging.INFO))
    assert (ends.last, ends.last_end()) == ((12, how), how)
    assert ends.filter(dask_record("Restarting worker"))


@pytest.mark.parametrize(
    ("error", "why"),
    [
        # A worker's own error, sent to its nanny.
        (RuntimeError("broken install"), "RuntimeError: broken install"),
        # A worker process that ended without sending one: how it ended.
        (RuntimeError(engines.NANNY_NO_NEWS), "worker process 12 exited with status 3"),
    ],
)
def test_why_not_started__the_workers_error_else_how_its_process_ended(
    error: Exception, why: str
) -> None:
    ends = engines.WorkerEnds()
    ends.filter(dask_record("Worker process 12 exited with status 3", level=logging.INFO))
    try:
        raise RuntimeError("Nanny failed to start.") from error
    except RuntimeError as dasks:
        assert engines.why_not_started(dasks, ends) == why


def dask_record(message: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("distributed.nanny", level, __file__, 1, message, args, None)


def test_dask_lines_cut__a_long_dask_warning_is_one_short_line_and_a_repeat_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # distributed's warning of a lost worker listed every task key it held (~1.5 kB a line);
    # its nanny warned at every restart of workers killed again and again.
    keys = {f"from_sequence-{i:032x}" for i in range(40)}
    lost = dask_record("lost %s\nmore", keys)
    restarting = [dask_record("Restarting worker (status=%s)", "running") for _ in range(3)]
    # Its nanny logs some errors with no text but their traceback's.
    failed = dask_record("")
    failed.exc_info = (AssertionError, AssertionError("Status.starting"), None)
    with engines.dask_lines_cut():
        # The handlers of the root logger, the terminal's among them.
        shown = [bool(caplog.handler.filter(r)) for r in [lost, *restarting, failed]]
        assert all(h.filter(lost) for h in logging.getLogger().handlers), "each handler shows it"
    assert lost.getMessage().startswith("lost {") and "\n" not in lost.getMessage()
    assert len(lost.getMessage()) <= engines.DASK_LINE_CHARS
    assert shown == [True, True, False, False, True]
    assert (failed.getMessage(), failed.exc_info) == ("AssertionError: Status.starting", None)
    assert caplog.handler.filter(dask_record("lost %s", keys)), "only meanwhile"


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_dask_scheduler__a_local_cluster_of_no_worker_is_a_config_error(workers: str) -> None:
    # -1 started a cluster of none, and the run waited for good; 0 meant one per core.
    with pytest.raises(ConfigError, match=f"--dask_local_workers must be 1 or more, not {workers}"):
        with engines.dask_scheduler(PipelineOptions([f"--dask_local_workers={workers}"])):
            pass


@pytest.mark.parametrize(
    "named", ["--dask_client_address=tcp://127.0.0.1:8786", "--dask_scheduler_file=s.json"]
)
def test_dask_scheduler__a_named_scheduler_is_used_as_given(named: str) -> None:
    with engines.dask_scheduler(PipelineOptions([named])) as scheduler:
        assert scheduler.argv == [] and scheduler.can_get_a_worker()


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


def _put_repeatedly(root: str, image_id: str, times: int) -> None:
    store = FactStore(root)
    for _ in range(times):
        store.put(PhotoFacts(image_id=image_id, width=8, height=8))


def test_fact_store__worker_processes_storing_the_same_photo_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    # Exact copies of a photo are analysed by different workers, each storing its facts.
    root = str(tmp_path / "facts")
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=_put_repeatedly, args=(root, "ab-same", 300)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [w.exitcode for w in writers] == [0, 0], "no writer lost its temporary file"
    assert FactStore(root).get("ab-same") == PhotoFacts(image_id="ab-same", width=8, height=8)
    assert [p.name for p in (tmp_path / "facts").rglob("*") if p.is_file()] == ["ab-same.json"]
