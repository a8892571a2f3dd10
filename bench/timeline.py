"""Where the seconds of one `racelens run` go: a timeline of its processes.

    python bench/timeline.py RACELENS-RUN-ARGUMENTS...
    e.g. python bench/timeline.py --images R/images --course R/course.yaml \\
             --start-list R/startlist.csv --out OUT --no-progress \\
             --direct_running_mode=multi_processing --direct_num_workers=2

Runs `racelens run` in this process as the `racelens` program does (workers forked from a
zygote), with hooks that note when each process reaches each phase, and prints the
timeline when it ends: the launcher's imports, graph and runner; the zygote's loading;
each worker's fork, first and last photo (and its CPU seconds then, and its seconds between
photos); the stages after the analysis (where they ran, their wall and the launcher's CPU);
the exit. Seconds are wall clock from the launcher's start, taken in each process
(monotonic, shared by them).
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

STARTED = time.monotonic()
EVENTS = tempfile.NamedTemporaryFile(prefix="racelens-timeline-", delete=False).name
_fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND)


def note(what: str) -> None:
    """One line per event, from any process (the workers inherit the open file)."""
    line = f"{time.monotonic() - STARTED:.3f} {os.getpid()} {time.process_time():.3f} {what}\n"
    os.write(_fd, line.encode())


note("launcher started")
import apache_beam as beam  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers  # noqa: E402

note("Beam imported")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline import cli, graph, workers  # noqa: E402
from transforms import photos  # noqa: E402

note("racelens imported")
LAUNCHER = os.getpid()


def hooked(owner: object, name: str, before: str | None, after: str | None) -> None:
    """Notes `before` and `after` around each call of owner.name."""
    original = getattr(owner, name)

    def call(*args, **kwargs):
        if before:
            note(before)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                note(after)

    setattr(owner, name, call)


hooked(graph, "build", None, "graph built")
hooked(graph, "load_models", "loading", "loaded")
hooked(beam.Pipeline, "run", None, "run returned")
hooked(worker_handlers.SubprocessSdkWorkerHandler, "start_worker", "worker asked", None)
hooked(workers, "_work", "worker forked", None)


def stage(self, context, bundle_context_manager, bundle_input):
    where = (
        "launcher" if bundle_context_manager.stage.environment == workers.LAUNCHER else "workers"
    )
    note(f"stage {where} {bundle_context_manager.stage.name[:70]}")
    result = run_stage(self, context, bundle_context_manager, bundle_input)
    note("stage end")
    return result


run_stage = fn_runner.FnApiRunner._execute_bundle
fn_runner.FnApiRunner._execute_bundle = stage
analyse = photos._AnalyseContent.process


def process(self, element):
    note("photo")
    yield from analyse(self, element)
    note("photo end")


photos._AnalyseContent.process = process


def between_photos(noted: list[tuple[float, float, str]]) -> float:
    """The seconds from the end of each photo to the start of the next, in the order the
    process noted them: a worker's time out of the analysis (bundle ends, its own waits)."""
    gaps, ended = 0.0, None
    for at, _, what in noted:
        if what == "photo end":
            ended = at
        elif what == "photo" and ended is not None:
            gaps, ended = gaps + at - ended, None
    return gaps


def timeline() -> str:
    """The events as phases, one line each."""
    events = defaultdict(list)
    for line in Path(EVENTS).read_text().splitlines():
        at, pid, cpu, what = line.split(" ", 3)
        events[int(pid)].append((float(at), float(cpu), what))
    first = {pid: {} for pid in events}
    last = {pid: {} for pid in events}
    for pid, noted in events.items():
        for at, cpu, what in noted:
            first[pid].setdefault(what, (at, cpu))
            last[pid][what] = (at, cpu)
    lines = []
    mine = first[LAUNCHER]
    for what in ("Beam imported", "racelens imported", "graph built", "worker asked"):
        if what in mine:
            lines.append(f"{mine[what][0]:7.2f} s  launcher: {what} (CPU {mine[what][1]:.2f} s)")
    for pid in sorted(events):
        if "loaded" in first[pid]:
            at, cpu = first[pid]["loaded"]
            lines.append(f"{at:7.2f} s  zygote {pid}: models loaded (CPU {cpu:.2f} s)")
        if "photo" in first[pid]:
            count = sum(what == "photo" for _, _, what in events[pid])
            lines.append(
                f"{first[pid]['worker forked'][0]:7.2f} s  worker {pid}: forked; first photo at "
                f"{first[pid]['photo'][0]:.2f} s, last done at {last[pid]['photo end'][0]:.2f} s"
                f" ({count} photos, CPU {last[pid]['photo end'][1]:.2f} s, "
                f"{between_photos(events[pid]):.2f} s between them)"
            )
    stages = [(at, cpu, what) for at, cpu, what in events[LAUNCHER] if what.startswith("stage")]
    ends = [at for pid in events for at, _, what in events[pid] if what == "photo end"]
    if ends:
        after = [(a, c, w) for a, c, w in stages if a >= max(ends)]
        begun = [(a, c) for a, c, w in after if w != "stage end"]
        if begun:
            in_launcher = sum(" launcher " in w for _, _, w in after)
            lines.append(
                f"{begun[0][0]:7.2f} s  after the analysis: {len(begun)} stages "
                f"({in_launcher} in the launcher) to {after[-1][0]:.2f} s, "
                f"launcher CPU {after[-1][1] - begun[0][1]:.2f} s"
            )
    if "run returned" in mine:
        lines.append(f"{mine['run returned'][0]:7.2f} s  launcher: pipeline run returned")
    lines.append(f"{time.monotonic() - STARTED:7.2f} s  launcher: exit handlers")
    return "\n".join(lines)


def report() -> None:
    if os.getpid() == LAUNCHER:
        print(timeline(), file=sys.stderr, flush=True)
        os.unlink(EVENTS)


atexit.register(report)  # `racelens run` ends with os._exit once its exit handlers have run

if __name__ == "__main__":
    sys.argv = ["racelens", "run", *sys.argv[1:]]
    sys.exit(cli.main())
