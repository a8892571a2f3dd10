"""DirectRunner workers forked from a zygote (pipeline/workers.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

import pipeline.state_sampler  # noqa: F401  (applied at import, as pipeline/graph.py does)
from pipeline.workers import forkable, forked_workers, in_launcher, late_workers_ended, runner_for

REPO = Path(__file__).resolve().parents[1]
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

# Runs in a fresh interpreter (no thread of its own, as `racelens run`): a pipeline on two
# workers (its options after sys.argv[2]) that fails in them if sys.argv[1] is "fail", whose
# zygote loads (marks the wave module) or, if sys.argv[1] is "load-fails", fails to; its
# "Analyse" step runs in the workers, what comes before and after it (a combine too) in the
# launcher; writes what the steps saw to sys.argv[2], prints how it ended, whether the
# launcher loaded anything and what outlived it.
PIPELINE = """
import os, sys, wave  # wave: a module only this launcher imports, before forking
import apache_beam as beam
import psutil
from apache_beam.options.pipeline_options import PipelineOptions
from pipeline.workers import forked_workers, runner_for

def seen(before, fail):
    if fail:
        raise ValueError("a worker's DoFn failed")
    loaded = getattr(wave, "loaded_by", None) not in (None, os.getpid())
    return (*before, "wave" in sys.modules, loaded)

def where(seen, launcher):
    return (*seen, os.getpid() == launcher)

class Gathered(beam.CombineFn):
    def __init__(self, launcher):
        self.launcher = launcher

    def create_accumulator(self):
        return []

    def add_input(self, gathered, seen):
        return [*gathered, (*seen, os.getpid() == self.launcher)]

    def merge_accumulators(self, accumulators):
        return [seen for gathered in accumulators for seen in gathered]

    def extract_output(self, gathered):
        return gathered

def load():
    if sys.argv[1] == "load-fails":
        raise OSError("a model file is missing")
    wave.loaded_by = os.getpid()

opts = PipelineOptions(sys.argv[3:])
seen_file = sys.argv[2]
try:
    with forked_workers(opts, load):
        with beam.Pipeline(runner=runner_for(opts, ["Analyse"]), options=opts) as p:
            _ = (
                p
                | beam.Create(range(4))
                | "Before" >> beam.Map(lambda _, launcher: (os.getpid() == launcher,), os.getpid())
                | "Analyse" >> beam.Map(seen, sys.argv[1] == "fail")
                | "After" >> beam.Map(where, os.getpid())
                | beam.CombineGlobally(Gathered(os.getpid()))
                | beam.Map(lambda s, path: open(path, "w").write(repr(sorted(set(s)))), seen_file)
            )
    print("finished")
except Exception as e:
    print("failed:", type(e).__name__)
print("launcher loaded:", hasattr(wave, "loaded_by"))
print("left:", len(psutil.Process().children(recursive=True)))
"""


def _run(kind: str, tmp_path: Path) -> tuple[str, str]:
    seen = tmp_path / "seen"
    done = subprocess.run(
        [sys.executable, "-c", PIPELINE, kind, str(seen), *TWO_WORKERS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return done.stdout, seen.read_text() if seen.exists() else ""


def test_forked_workers__workers_start_with_the_launchers_modules_and_the_zygotes_loads(
    tmp_path: Path,
) -> None:
    printed, seen = _run("ok", tmp_path)
    assert printed.splitlines() == ["finished", "launcher loaded: False", "left: 0"]
    assert seen == "[(True, True, True, True, True)]", "analysed by workers the zygote forked"


def test_forked_workers__a_failed_load_is_left_to_the_workers(tmp_path: Path) -> None:
    printed, seen = _run("load-fails", tmp_path)
    assert printed.splitlines() == ["finished", "launcher loaded: False", "left: 0"]
    assert seen == "[(True, True, False, True, True)]"


def test_forked_workers__a_workers_failure_fails_the_run_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    printed, _ = _run("fail", tmp_path)
    assert printed.splitlines()[0].startswith("failed:")
    assert printed.splitlines()[-1] == "left: 0"


# A fresh interpreter again: sys.argv[2] elements analysed by two forked workers; writes to
# sys.argv[1] the size of each bundle they were analysed in and the elements.
BUNDLES = """
import json, sys, uuid
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from pipeline.workers import forked_workers, runner_for

class Bundled(beam.DoFn):
    def start_bundle(self):
        self.bundle = uuid.uuid4().hex

    def process(self, element):
        yield self.bundle, element

def write(pairs, path):
    sizes = {}
    for bundle, _ in pairs:
        sizes[bundle] = sizes.get(bundle, 0) + 1
    open(path, "w").write(json.dumps([sorted(sizes.values()), sorted(e for _, e in pairs)]))

opts = PipelineOptions(sys.argv[3:])
with forked_workers(opts):
    with beam.Pipeline(runner=runner_for(opts, ["Analyse"]), options=opts) as p:
        _ = (
            p
            | beam.Create(range(int(sys.argv[2])))
            | "Analyse" >> beam.ParDo(Bundled())
            | beam.combiners.ToList()
            | beam.Map(write, sys.argv[1])
        )
"""


@pytest.mark.parametrize(
    ("elements", "sizes"),
    [
        # A quarter of what is left each time (2 workers), at least one: 3, 2, then ones.
        (12, [1] * 7 + [2, 3]),
        (0, []),  # Beam's halves were cut already: one empty bundle
    ],
)
def test_forked_workers__the_analysis_shared_out_in_smaller_and_smaller_bundles(
    tmp_path: Path, elements: int, sizes: list[int]
) -> None:
    written = tmp_path / "bundles"
    subprocess.run(
        [sys.executable, "-c", BUNDLES, str(written), str(elements), *TWO_WORKERS],
        cwd=REPO,
        capture_output=True,
        timeout=240,
        check=True,
    )
    assert json.loads(written.read_text()) == [sizes, list(range(elements))]


class _Connecting:
    """The gRPC context of a worker's control stream as it connects."""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("worker_id", "late")]


def test_late_workers_ended__a_worker_connecting_after_the_runners_close_ends() -> None:
    with late_workers_ended():
        servicer = worker_handlers.BeamFnControlServicer(worker_manager=None)
    servicer.get_conn_by_worker_id("late").close()  # the runner's end, before the worker's

    # The worker connects, with nothing to send back: the stream of instructions it reads.
    instructions = servicer.Control(iter(()), _Connecting())
    read: list = []
    reading = threading.Thread(target=lambda: read.extend(instructions), daemon=True)
    reading.start()
    reading.join(timeout=30)

    assert not reading.is_alive(), "the worker would wait for an instruction for good"
    assert read == []


def test_in_launcher__all_but_the_analysis_and_its_per_photo_steps_and_runs_in_python() -> None:
    p = beam.Pipeline()
    listed = p | "Listed" >> beam.Create([1, 2])
    analysed = (
        listed
        | "Hash" >> beam.Map(lambda x: (x % 2, x))
        | "Copies" >> beam.GroupByKey()
        | "Analyse" >> beam.Map(lambda kv: kv)
    )
    _ = analysed | "Count" >> beam.combiners.Count.Globally()
    components = p.to_runner_api().components

    found = {components.transforms[i].unique_name for i in in_launcher(components, ["Analyse"])}
    kept = {components.transforms[i].unique_name for i in in_launcher(components, ["Hash"])}

    assert "Analyse" not in found and "Hash" in found and "Listed/Map(decode)" in found
    assert not any(name.startswith("Copies") for name in found), "the GroupByKey is the runner's"
    # The combiner's composite too: Beam's runner lifts it into steps in its environment.
    assert "Count/CombineGlobally(CountCombineFn)/CombinePerKey" in found
    assert "Hash" not in kept and "Analyse" in kept


def test_forked_workers__not_while_another_thread_runs() -> None:
    opts = PipelineOptions(TWO_WORKERS)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with forked_workers(opts):
            assert runner_for(opts) is None, "Beam starts its workers afresh"
    finally:
        stop.set()
        other.join()


def test_forked_workers__not_for_in_process_runs() -> None:
    opts = PipelineOptions(["--direct_running_mode=in_memory"])
    with forked_workers(opts):
        assert runner_for(opts) is None


# The racelens program's end (pipeline/cli.py): what `_ended` must still do, and the
# interpreter's teardown (an object's __del__ at exit) it skips.
ENDED = """
import atexit, sys
from pipeline import cli

class TornDown:
    def __del__(self):
        print("torn down")

kept = TornDown()
atexit.register(print, "exit handler")
print("buffered", end=" ")
sys.stderr.write("error output")
cli._ended(3)
"""


def test_ended__runs_exit_handlers_flushes_and_skips_the_teardown() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ENDED], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert done.stdout == "buffered exit handler\n"
    assert done.stderr.endswith("error output")


def test_state_sampler__a_bundles_sampler_tracks_its_step_without_a_thread() -> None:
    from apache_beam.runners.worker import bundle_processor, statesampler
    from apache_beam.utils.counters import CounterFactory

    # The one bundle_processor makes for each bundle, as it uses it.
    sampler = bundle_processor.statesampler.StateSampler("stage", CounterFactory())
    threads = threading.active_count()
    sampler.start()
    started = threading.active_count()
    sampler.stop_if_still_running()

    assert started == threads, "no sampling thread, so no waiting for it at the end"
    assert sampler.started and sampler.finished
    assert statesampler.get_current_tracker() is None


@pytest.mark.parametrize(
    ("runner", "forked"),
    [
        (None, True),
        ("DirectRunner", True),
        ("direct", True),  # Beam's DirectRunner by another of its names: ran Beam's workers
        ("Direct", True),
        ("apache_beam.runners.direct.direct_runner.DirectRunner", True),
        ("DaskRunner", False),
        ("dask", False),
    ],
)
def test_forkable__any_name_of_the_direct_runner(runner: str | None, forked: bool) -> None:
    argv = ["--direct_running_mode=multi_processing"] + ([f"--runner={runner}"] if runner else [])
    assert forkable(PipelineOptions(argv)) is forked
