"""Running racelens on Dask: the analysis on the cluster, the timing on the DirectRunner.

Beam's DaskRunner runs per-photo work correctly, but it silently drops windows and
whatever `finish_bundle` emits, and computes only one branch of a graph with several
outputs (../shared/DESIGN.md). So `--runner=DaskRunner` runs in two phases:

1. analyse on Dask: once every worker is known to store facts of the launcher's
   analysis version (`require_same_analysis`), the photos, listed on the launcher, each
   read once on a worker, hashed and analysed, its facts written to the fact store from
   `process()` (`build_analysis`); the workers hand back (image_id, path) of every file;
2. time on the DirectRunner: the race from those files and their stored facts
   (`build_from_groups`), so the launcher neither reads nor hashes a photo again.

    racelens run ... --runner=DaskRunner --dask_client_address=tcp://HOST:8786
    racelens run ... --runner=DaskRunner [--dask_local_workers=N]   # a LocalCluster here

Re-timing (`racelens results`) has nothing to analyse: it runs on the DirectRunner alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import TYPE_CHECKING

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.graph import build, build_analysis, build_from_groups, grouped_copies, run
from pipeline.options import RaceConfig, RacelensOptions
from pipeline.worker_command import WorkerLost, ended_how
from transforms import records
from transforms.course import ConfigError
from transforms.write import NoRoom, tell_no_room

if TYPE_CHECKING:
    from apache_beam.runners.dask.dask_runner import DaskOptions
    from dask.distributed import Client, LocalCluster
    from distributed.scheduler import KilledWorker

Graph = Callable[[beam.Pipeline, RaceConfig], beam.PCollection]

# Beam 2.77 knows the DaskRunner only by its full name; racelens takes the short ones too,
# as Beam does for the runners it knows.
DASK_RUNNER_NAMES = ("daskrunner", "dask")
# Photos per Dask partition unless --dask_npartitions or --dask_partition_size says
# otherwise. A partition is one task on one worker: at ~0.2 s a photo, 16 photos keep
# every worker busy to the end, where Beam's default of 128 would leave most of them idle.
DEFAULT_PARTITION_SIZE = 16
# How often the launcher looks at the scheduler's workers while they analyse, and how long
# the scheduler may have none before the launcher says so: long enough for a LocalCluster's
# nanny to restart a worker that died (a few seconds), short enough for an engineer to know.
LOOK_EVERY_S = 1.0
NO_WORKER_TOLD_AFTER_S = 10.0
# What the launcher waits for where the scheduler of a cluster of yours has no worker.
WAITING_FOR_A_WORKER = "waiting for one (`dask worker ADDRESS` on each worker machine)"
# ... and where racelens' LocalCluster has none.
WAITING_FOR_A_RESTART = "waiting for Dask to restart its worker processes"
# Dask's log lines on the terminal are cut to this length: one warned of a lost worker with
# every task key it had computed (~1.5 kB).
DASK_LINE_CHARS = 160
# How a nanny of racelens' LocalCluster logs the end of its worker process (at INFO,
# distributed/nanny.py), the one place that says how it ended.
NANNY_SAYS_ENDED = re.compile(
    r"Worker process (\d+) (?:exited with status (\d+)|was killed by signal (\d+))"
)
# What Dask says of a worker process that failed to start without sending its error: how its
# process ended says more.
NANNY_NO_NEWS = "Nanny failed to start worker process"
# What to do where racelens' LocalCluster cannot start its worker processes.
WHERE_NO_WORKER_STARTS = (
    "fix that, or run without --runner=DaskRunner (the DirectRunner's worker processes), "
    "then run the same command again to carry on"
)


class LocalDaskOptions(PipelineOptions):
    """The LocalCluster that racelens starts when no Dask scheduler is named."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--dask_local_workers",
            type=int,
            default=None,
            help="Worker processes of the Dask LocalCluster started on this machine when "
            "neither --dask_client_address nor --dask_scheduler_file is given "
            "(default: one per core).",
        )


def runs_on_dask(opts: PipelineOptions) -> bool:
    """Whether --runner names Beam's DaskRunner, by its short or its full name."""
    runner = opts.view_as(StandardOptions).runner or ""
    return runner.rsplit(".", 1)[-1].lower() in DASK_RUNNER_NAMES


def run_on_dask(argv: list[str], graph: Graph = build) -> RaceConfig:
    """Analyses the photos on Dask, then runs `graph` on the DirectRunner."""
    if graph is build:  # a re-timing (build_retime) reads stored facts: nothing to analyse
        groups = analyse_on_dask(argv)
        graph = functools.partial(build_from_groups, groups=groups)
    # The last --runner wins: the timing half runs where windows and side outputs work.
    return run([*argv, "--runner=DirectRunner"], graph=graph)


def analyse_on_dask(argv: list[str]) -> list[tuple[str, list[str]]]:
    """Stores the facts of every photo, analysed by the workers of a Dask cluster;
    returns (image_id, paths of its exact copies) of every file."""
    # Imported here: it imports dask.distributed (~0.5 s), which other runs do not need,
    # and it registers Beam's DaskOptions (--dask_client_address, ...) for parsing.
    from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner

    opts = PipelineOptions(argv)
    with dask_lines_cut(), dask_scheduler(opts) as scheduler:
        dask_opts = PipelineOptions([*argv, *scheduler.argv, *partitioning(opts)])
        with scheduler_client(dask_opts.view_as(DaskOptions)) as client:
            a_worker_joined(client)
            require_same_analysis(client)
        p = beam.Pipeline(runner=DaskRunner(), options=dask_opts)
        build_analysis(p, RaceConfig(dask_opts.view_as(RacelensOptions)))
        result = p.run()
        try:
            files = gathered(result.client, result.futures, scheduler)
        finally:
            result.client.close()  # the runner opens a client and leaves it open
    return grouped_copies(files)


def gathered(client: Client, futures: list, scheduler: Scheduler) -> list[tuple[str, str]]:
    """The (image_id, path) pairs of the analysis: the runner computes the graph's last step
    as one collection, whose elements the client gathers, raising a worker's error here. A
    worker's disk full is told as a forked worker tells it; workers that died on the same
    photos, one after the other (the OOM killer), are WorkerLost: one line, as a forked
    worker's death (they ended the run with Dask's KilledWorker traceback, ~30 lines).
    Meanwhile the scheduler's workers are watched (`WorkerWatch`): a cluster that lost them
    all left the run waiting without a word."""
    from distributed.scheduler import KilledWorker

    watch = WorkerWatch(client.scheduler.address, scheduler)
    while not all(future.done() for future in futures):
        watch.look(len(client.nthreads()), time.monotonic())
        time.sleep(LOOK_EVERY_S)
    try:
        [files] = client.gather(futures)
    except NoRoom as e:
        tell_no_room(e.filename)
        raise
    except KilledWorker as e:
        raise WorkerLost(killed_why(e, scheduler.last_end())) from e
    return files


def killed_why(killed: KilledWorker, last_end: str | None) -> str:
    """What a run's one line says of Dask workers that died on the same photos, one after
    the other: how the last ended where its nanny said it (racelens' LocalCluster)."""
    how = f", {last_end}" if last_end else ""
    return (
        f"Dask worker processes died {killed.allowed_failures + 1} times running the same "
        f"photos (the last at {killed.last_worker.address}{how})"
    )


def scheduler_client(named: DaskOptions) -> Client:
    """A client of the scheduler the options name; raises ConfigError where there is none to
    reach: Dask's client waits for a scheduler file for good (a typo hung the run) and ends
    an unreachable address with its traceback, after `distributed.comm.timeouts.connect`."""
    from dask.distributed import Client

    if named.scheduler_file and not os.path.isfile(named.scheduler_file):
        raise ConfigError(
            f"--dask_scheduler_file: no file '{named.scheduler_file}' (a scheduler started "
            "with `dask scheduler --scheduler-file FILE` writes it)"
        )
    try:
        return Client(address=named.address, scheduler_file=named.scheduler_file)
    except OSError as e:  # refused, timed out, an address that does not resolve
        where = named.address or f"the address in {named.scheduler_file}"
        raise ConfigError(f"cannot reach the Dask scheduler at {where}: {e}") from e


@dataclass
class WorkerWatch:
    """What the launcher says while the scheduler at `address` has no worker during the
    analysis. Workers killed again and again (a worker image that crashes, the OOM killer)
    leave a LocalCluster with none once its nannies give up restarting them, and a cluster
    of yours with none until you start one: either way the run waited without a word. Once
    none has been there for NO_WORKER_TOLD_AFTER_S the launcher says so in one line and
    waits, where a worker may still join `scheduler`; where nothing can bring one back it
    ends the run at once, as a lost worker (exit 1, the stored facts kept)."""

    address: str
    scheduler: Scheduler
    # Since when (time.monotonic) the scheduler has had no worker; None while it has one.
    since: float | None = None
    told: bool = False

    def look(self, workers: int, now: float) -> None:
        """Takes the scheduler's worker count at `now`; raises WorkerLost where it has none
        and none can come."""
        if workers:
            self.since, self.told = None, False
            return
        if not self.scheduler.can_get_a_worker():
            last_end = self.scheduler.last_end()
            how = f" (the last worker process {last_end})" if last_end else ""
            raise WorkerLost(f"the Dask cluster at {self.address} has no worker left{how}")
        self.since = now if self.since is None else self.since
        if not self.told and now - self.since >= NO_WORKER_TOLD_AFTER_S:
            print(
                f"racelens: the Dask scheduler at {self.address} has had no worker for "
                f"{now - self.since:.0f} s (all lost); {self.scheduler.waiting_for}",
                file=sys.stderr,
                flush=True,
            )
            self.told = True


def a_worker_joined(client: Client) -> None:
    """Returns once the scheduler has a worker, saying first in one line that it waits where
    none has joined yet: with none (never started, or each failed to start), the run waited
    without a word for good, and the analysis version of workers joining later is not asked."""
    if client.scheduler_info()["workers"]:
        return
    print(
        f"racelens: no Dask worker has joined the scheduler at {client.scheduler.address} yet; "
        f"{WAITING_FOR_A_WORKER}",
        file=sys.stderr,
        flush=True,
    )
    client.wait_for_workers(1)


def analysis_version() -> int:
    """The version of the facts this process stores and reads (read when called, so that
    on a worker it is the worker's)."""
    return records.ANALYSIS_VERSION


def require_same_analysis(client: Client) -> None:
    """Raises ConfigError unless every worker stores the facts the launcher will read.

    Facts are stored under their analysis version; a launcher of another version finds
    none of them and, without this check, analyses every photo again on its own (as a
    benchmark did whose launcher started before main moved to a new version and its
    second cluster's workers after). Checked before any photo is sent: workers that join
    later are not checked, nor one that dies meanwhile (its restart is a worker joining
    later): its lost connection ended the run with Dask's traceback (~40 lines).
    """
    here = analysis_version()
    asked = client.run(analysis_version, on_error="ignore")
    other = {w: v for w, v in asked.items() if v != here}
    if other:
        raise ConfigError(
            f"Dask workers {', '.join(sorted(other))} analyse photos as racelens analysis "
            f"version {', '.join(sorted({str(v) for v in other.values()}))}, this launcher "
            f"as version {here}: run the same racelens on both"
        )


@dataclass(frozen=True)
class Scheduler:
    """The scheduler a run sends its photos to."""

    argv: list[str]  # options naming it: none where the user named one
    # Whether a worker may still join it where it has none: one started by hand may, at any
    # time; a LocalCluster's only while a nanny of it is there to restart one.
    can_get_a_worker: Callable[[], bool]
    waiting_for: str  # meanwhile, told in the line saying it has none
    # How its last worker process that ended ended, where known (a LocalCluster's nanny says).
    last_end: Callable[[], str | None] = lambda: None


@contextlib.contextmanager
def dask_scheduler(opts: PipelineOptions) -> Iterator[Scheduler]:
    """The scheduler the user named, else a LocalCluster's, started for this run and closed
    after it."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    named = opts.view_as(DaskOptions)
    if named.address or named.scheduler_file:
        yield Scheduler([], lambda: True, WAITING_FOR_A_WORKER)
        return
    workers = local_workers(opts.view_as(LocalDaskOptions).dask_local_workers)
    with worker_ends_noted() as ends, local_cluster(workers, ends) as cluster:
        # A nanny that failed to restart its worker (killed while starting) closes, and the
        # cluster forgets it: with none left, no worker comes back.
        yield Scheduler(
            [f"--dask_client_address={cluster.scheduler_address}"],
            lambda: bool(cluster.workers),
            WAITING_FOR_A_RESTART,
            ends.last_end,
        )


def local_workers(given: int | None) -> int:
    """The LocalCluster's worker count: `given`, else one per core. Raises ConfigError below
    one: a cluster of none left the run waiting for good."""
    if given is None:
        return os.cpu_count() or 1
    if given < 1:
        raise ConfigError(f"--dask_local_workers must be 1 or more, not {given}")
    return given


class WorkerEnds(logging.Filter):
    """On this process's logger of Dask's nannies: notes how each worker process of a
    LocalCluster ended, which its nanny logs at INFO, and keeps INFO off the terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[int, str] | None = None  # the pid and how it ended

    def filter(self, record: logging.LogRecord) -> bool:
        if said := NANNY_SAYS_ENDED.match(record.getMessage()):
            pid, status, signum = said.groups()
            self.last = (int(pid), ended_how(int(status) if signum is None else -int(signum)))
        return record.levelno >= logging.WARNING

    def last_end(self) -> str | None:
        """How the last worker process that ended ended ("was killed by signal 9 ...")."""
        return self.last[1] if self.last else None


@contextlib.contextmanager
def worker_ends_noted() -> Iterator[WorkerEnds]:
    """Meanwhile the ends of this process's LocalCluster's worker processes are noted."""
    nanny = logging.getLogger("distributed.nanny")
    ends, level = WorkerEnds(), nanny.level
    nanny.addFilter(ends)
    nanny.setLevel(logging.INFO)
    try:
        yield ends
    finally:
        nanny.setLevel(level)
        nanny.removeFilter(ends)


def why_not_started(error: BaseException, ends: WorkerEnds) -> str:
    """What kept a LocalCluster from starting: the error at the root of Dask's (a worker's
    own, which it sends its nanny), else how the worker process ended."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    if str(root) == NANNY_NO_NEWS and ends.last:
        pid, how = ends.last
        return f"worker process {pid} {how}"
    return f"{type(root).__name__}: {root}"


@contextlib.contextmanager
def local_cluster(workers: int, ends: WorkerEnds) -> Iterator[LocalCluster]:
    """A LocalCluster of `workers` single-threaded worker processes, closed on exit. Raises
    WorkerLost where they fail to start (Dask's traceback, ~70 lines, ended the run; ~180
    with the workers' own), saying why from what Dask tells (`ends`)."""
    import dask
    from dask.distributed import LocalCluster

    # distributed logs every worker's start and stop at INFO, through the root handlers.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # One thread per worker process: the analysis holds the GIL in Python and OpenCV code,
    # as in the DirectRunner's worker processes. No dashboard: its fixed port may be taken;
    # and so no profiling either: the workers would sample their stacks 100 times a second
    # for it, 1 to 2 % of a core each (bench/engines.py measures the workers' other threads).
    with (
        dask.config.set({"distributed.worker.profile.enabled": False}),
        terminal_signals_blocked(),
        dask_lines_held(),
    ):
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # Without a dashboard the scheduler still serves its other pages, at port 8787
                # unless told, warning on the terminal when another Dask cluster holds it.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                # Each worker imports Beam quietly before anything else, and leaves the telling
                # of a failed start to this process (pipeline/dask_worker.py).
                preload=["pipeline.dask_worker", *dask.config.get("distributed.worker.preload")],
            )
        except RuntimeError as e:  # Dask's "Nanny failed to start.", from the worker's error
            raise WorkerLost(
                f"the Dask LocalCluster's worker processes failed to start "
                f"({why_not_started(e, ends)})",
                WHERE_NO_WORKER_STARTS,
            ) from e
    with cluster:
        yield cluster


@contextlib.contextmanager
def terminal_signals_blocked() -> Iterator[None]:
    """Meanwhile SIGINT and SIGHUP are blocked in this thread, and so in the threads it
    starts and the processes they start, for good: a thread and a process inherit the
    signal mask.

    A terminal's Ctrl-C, and its hang-up, go to its whole foreground process group. A
    LocalCluster's worker processes would stop on them by themselves, logging the tasks they
    cancel, before racelens' one line (pipeline/interrupted.py, which ends them anyway).
    Started with them blocked (by the cluster's event-loop thread, started meanwhile) they
    never see them. In this thread one that comes meanwhile waits, and is handled once
    unblocked.
    """
    # The first process that multiprocessing starts starts its resource tracker first, and
    # unblocks SIGINT in the starting thread after (Python 3.11): started now, it is not.
    resource_tracker.ensure_running()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class OneLine(logging.Filter):
    """Cuts a Dask log record to one line of DASK_LINE_CHARS at most, traceback dropped, and
    drops one that says again what an earlier one said: Dask's warnings of a lost worker
    list every task key it held (~1.5 kB a line), its nanny warns at each restart of a
    worker killed again and again, and racelens keeps no log beyond the terminal to put
    them in."""

    def __init__(self) -> None:
        super().__init__()
        # Each line shown, and the record that showed it (a record passes every handler).
        self.said: dict[str, logging.LogRecord] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("distributed"):
            return True
        message = record.getMessage().strip() or _error_of(record)
        first = message.split("\n", 1)[0]
        if len(first) > DASK_LINE_CHARS:
            first = f"{first[: DASK_LINE_CHARS - 25]} ... ({len(message)} characters)"
        record.msg, record.args, record.exc_info, record.exc_text = first, (), None, None
        return self.said.setdefault(first, record) is record


def _error_of(record: logging.LogRecord) -> str:
    """The error a record of no message logs (Dask logs some errors so, their text empty)."""
    error = record.exc_info[1] if record.exc_info else None
    return f"{type(error).__name__}: {error}" if error else ""


@contextlib.contextmanager
def dask_lines_held() -> Iterator[None]:
    """Meanwhile Dask's log records are held back from the terminal; shown after, unless an
    error ends it: a cluster that fails to start logs each step of its failure, which the
    run's one line says."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if not record.name.startswith("distributed"):
            return True
        if not any(record is r for r in held):  # a record passes each handler
            held.append(record)
        return False

    with dask_lines_filtered(hold):
        yield
    for record in held:
        logging.getLogger(record.name).handle(record)


def dask_lines_cut() -> contextlib.AbstractContextManager[None]:
    """Meanwhile Dask's log lines reach the terminal cut to one line (OneLine)."""
    return dask_lines_filtered(OneLine())


@contextlib.contextmanager
def dask_lines_filtered(
    check: logging.Filter | Callable[[logging.LogRecord], bool],
) -> Iterator[None]:
    """Meanwhile `check` filters the log records reaching the terminal through the handlers
    of the root logger or of Dask's own (which it gives itself where the root has none)."""
    handlers = [*logging.getLogger().handlers, *logging.getLogger("distributed").handlers]
    for handler in handlers:
        handler.addFilter(check)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(check)


def partitioning(opts: PipelineOptions) -> list[str]:
    """The partition size racelens chooses, unless the user chose how to partition."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    chosen = opts.view_as(DaskOptions)
    if chosen.npartitions or chosen.partition_size:
        return []
    return [f"--dask_partition_size={DEFAULT_PARTITION_SIZE}"]
