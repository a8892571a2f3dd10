"""Beam's worker processes forked from a warm process, not started afresh.

With `--direct_running_mode=multi_processing`, Beam's FnApiRunner starts each worker as
`python -m apache_beam.runners.worker.sdk_worker_main`, which imports Beam and racelens
with OpenCV, onnxruntime and pyarrow again (~1.5-2 CPU s, before the worker can set up a
stage), in every worker of every run, after the launcher has done the same. Instead, the
launcher forks one process, the zygote, once it has imported all that and before it starts
any thread of its own (`forked_workers`); while the launcher builds the graph, the zygote
imports what only workers need (WARM_MODULES) and loads what every worker loads (the
race's models, `load`), then forks a worker each time Beam runs its worker command
(pipeline/worker_command.py), which hands the zygote the environment Beam gives a worker
(the addresses of its control and logging services, the options), waits for that worker
and exits with its status. A worker so forked runs Beam's own worker main,
as a fresh one does. The native threads that numpy, OpenCV, pyarrow and onnxruntime start
at import are fork-aware (glibc's malloc, OpenBLAS and jemalloc reset their state in a
child); onnxruntime's sessions, made with one thread and so starting none, run in a forked
worker as in the process that made them (the same outputs); OpenCV's settings are made per
worker in setup().

The runner (`ForkedWorkersRunner`) also changes two things in how Beam uses its workers:
the stage that analyses photos is handed out in bundles each worker takes when it is free
(SharedOutBundleManager), so both end together, and all but the analysis and the hashing
of each photo before it runs in the launcher itself (Beam's in-process worker), stage after
stage, with no process to wake and no collection sent to a worker and back: the steps
before the analysis while the workers start, the timing half after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence

from apache_beam.metrics.monitoring_infos import consolidate
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_fn_api_pb2, beam_runner_api_pb2
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.portability.fn_api_runner.fn_runner import (
    BundleManager,
    FnApiRunner,
    ParallelBundleManager,
)
from apache_beam.transforms import environments
from apache_beam.utils import thread_pool_executor

from pipeline import worker_command
from pipeline.memory import hold_worker_arenas
from pipeline.options import runner_name
from pipeline.worker_command import (
    ADDRESS_VARIABLE,
    EXIT,
    LAUNCHER_VARIABLE,
    SAID_BY_WORKER,
    SAID_BY_ZYGOTE,
    SIZE,
    STOP_THREAD,
    exactly,
)

# What a worker imports that the launcher has not: Beam's worker main, and what the
# analysis imports on its first photo (imagehash's phash scipy's FFT, dlib). Imported by the
# zygote while the launcher builds the graph, once for every worker; those not installed are
# left to fail where they are used. (PP-OCR's package is not imported at all: its models are
# found by transforms/ppocr.py, and onnxruntime comes with loading them.)
WARM_MODULES = (
    "apache_beam.runners.worker.sdk_worker_main",
    "scipy.fftpack",
    "dlib",
)


def forkable(opts: PipelineOptions) -> bool:
    """Whether the options run the batch DirectRunner with worker processes."""
    standard = opts.view_as(StandardOptions)
    return (
        runner_name(opts) in ("direct", "fnapi")  # --runner=direct too: Beam's DirectRunner
        and not standard.streaming
        and opts.view_as(DirectOptions).direct_running_mode == "multi_processing"
    )


class ForkedWorkersRunner(FnApiRunner):
    """Beam's FnApiRunner, its worker processes forked by the zygote of `forked_workers`.

    With `analysis` (names of transforms), only it and `per_photo` (what comes before it
    photo by photo: hashing each file) run in the workers, and everything else in this
    process (Beam's in-process worker, one bundle a stage): listing the photos and the
    steps that start from nothing, before the analysis, while the workers start; the
    timing half after it, ~25 small stages, which cost less CPU here (one stage processor
    each, not two, and no collection sent to a worker and back) and wait for no process to
    be scheduled, whereas the workers would wait for one another at every stage."""

    def __init__(self, analysis: Sequence[str] = (), per_photo: Sequence[str] = ()):
        super().__init__()
        self._analysis = tuple(analysis)
        self._on_workers = (*analysis, *per_photo)

    def run_via_runner_api(self, pipeline_proto, options):
        components = pipeline_proto.components
        for environment in components.environments.values():
            if environment.urn == python_urns.SUBPROCESS_SDK:
                environment.payload = worker_command.command().encode()
        if self._analysis:
            # With the capabilities (coders) of every Python environment: without them the
            # runner would take the collections it groups for opaque bytes.
            components.environments[LAUNCHER].CopyFrom(
                environments.EmbeddedPythonEnvironment.default().to_runner_api(None)
            )
            for transform_id in in_launcher(components, self._on_workers):
                components.transforms[transform_id].environment_id = LAUNCHER
        with _state_uncached(), late_workers_ended():
            return super().run_via_runner_api(pipeline_proto, options)

    def _execute_bundle(self, runner_execution_context, bundle_context_manager, bundle_input):
        if bundle_context_manager.stage.environment == LAUNCHER:
            bundle_context_manager.num_workers = 1  # one in-process worker, not a thread each
        return super()._execute_bundle(
            runner_execution_context, bundle_context_manager, bundle_input
        )

    def _get_bundle_manager(self, bundle_context_manager):
        manager = super()._get_bundle_manager(bundle_context_manager)
        names = (t.unique_name for t in bundle_context_manager.stage.transforms)
        if type(manager) is ParallelBundleManager and any(_named(n, self._analysis) for n in names):
            return SharedOutBundleManager(
                bundle_context_manager,
                manager._progress_frequency,
                cache_token_generator=manager._cache_token_generator,
            )
        return manager


@contextlib.contextmanager
def _state_uncached() -> Iterator[None]:
    """Meanwhile, Beam's in-process worker made for a run keeps no state cache. It runs each
    of its stages as one bundle, so a side input is read once whatever it keeps, and the
    cache weighs each value it keeps by walking all its objects (objsize): ~50 ms a side
    input of the 205-photo race's timing half (the gallery, the combines' defaults), more
    for a longer race."""
    size = worker_handlers.STATE_CACHE_SIZE_MB
    worker_handlers.STATE_CACHE_SIZE_MB = 0
    try:
        yield
    finally:
        worker_handlers.STATE_CACHE_SIZE_MB = size


class EndingControlConnection(worker_handlers.ControlConnection):
    """Beam's runner end of a worker's control stream, which its close ends even where the
    worker has not connected yet. Beam's close ends only a stream already connected: a
    worker that connects after it waits for an instruction for good, and the close waits
    for that worker to exit. Such a worker is one slow to start (under load) and given no
    bundle: a stage of no element has one, for one worker (SharedOutBundleManager), and a
    failed bundle ends the run while another worker may still be starting."""

    def close(self) -> None:
        with worker_handlers.ControlConnection._lock:  # held as the worker connects, too
            if self._state == worker_handlers.BeamFnControlServicer.UNSTARTED_STATE:
                # What that worker reads first when it connects: it ends.
                self.push(worker_handlers.BeamFnControlServicer._DONE_MARKER)
        super().close()


@contextlib.contextmanager
def late_workers_ended() -> Iterator[None]:
    """Meanwhile, the control connections Beam's runner makes are EndingControlConnection."""
    made = worker_handlers.ControlConnection
    worker_handlers.ControlConnection = EndingControlConnection
    try:
        yield
    finally:
        worker_handlers.ControlConnection = made


class SharedOutBundleManager(ParallelBundleManager):
    """Runs a stage's input as bundles that each worker takes when it is free, smaller and
    smaller (a bundle holds 1 / (2 x workers) of what is left, at least one part), so that
    the workers end together. Beam's ParallelBundleManager hands each worker a fixed half:
    the one with the slower photos ended the analysis up to a second after the other."""

    def process_bundle(
        self, inputs, expected_outputs, fired_timers, expected_output_timers, dry_run=False
    ):
        handlers = self.bundle_context_manager.worker_handlers
        if len(inputs) != 1 or fired_timers or expected_output_timers or len(handlers) < 2:
            return super().process_bundle(
                inputs, expected_outputs, fired_timers, expected_output_timers, dry_run
            )
        [(transform_id, buffer)] = inputs.items()
        # No element: one empty bundle (a buffer, once cut, cannot be cut again for Beam's).
        left = [part for part in buffer.partition(PARTS) if any(part)] or [[]]
        taking = threading.Lock()

        def take() -> list[bytes] | None:
            with taking:
                taken = left[: max(1, len(left) // (2 * len(handlers)))]
                del left[: len(taken)]
            return [data for part in taken for data in part] if taken else None

        def work(handler) -> list:
            done = []
            while (taken := take()) is not None:
                on_handler = BundleManager(
                    _OnWorker(self.bundle_context_manager, handler),
                    self._progress_frequency,
                    cache_token_generator=self._cache_token_generator,
                )
                done.append(
                    on_handler.process_bundle(
                        {transform_id: taken}, expected_outputs, {}, {}, dry_run
                    )
                )
            return done

        with thread_pool_executor.shared_unbounded_instance() as executor:
            results = [result for done in executor.map(work, handlers) for result in done]
        merged = beam_fn_api_pb2.InstructionResponse(
            process_bundle=beam_fn_api_pb2.ProcessBundleResponse(
                monitoring_infos=consolidate(
                    info for result, _ in results for info in result.process_bundle.monitoring_infos
                )
            ),
            error=next((result.error for result, _ in results if result.error), ""),
        )
        return merged, [split for _, splits in results for split in splits]


# The parts a stage's input is cut into for SharedOutBundleManager: the smallest bundle at
# the end of the analysis is one part, one photo up to ~4,000 photos.
PARTS = 4096


class _OnWorker:
    """A stage's bundle context whose bundles all go to one worker."""

    def __init__(self, context, handler):
        self._context = context
        self.worker_handlers = [handler]

    def __getattr__(self, name):
        return getattr(self._context, name)


# The environment of the transforms that run in the launcher (see ForkedWorkersRunner).
LAUNCHER = "racelens-launcher"


def in_launcher(components: beam_runner_api_pb2.Components, on_workers: Sequence[str]) -> set[str]:
    """The ids of the transforms of `components` that run in an SDK environment and are
    neither named in `on_workers`, nor inside one, nor hold one. Composites count: Beam's
    runner expands some (a CombinePerKey into its lifted steps) in the composite's
    environment."""
    transforms = components.transforms

    @functools.cache
    def holds(transform_id: str) -> bool:
        transform = transforms[transform_id]
        return _named(transform.unique_name, on_workers) or any(
            holds(i) for i in transform.subtransforms
        )

    return {i for i, t in transforms.items() if t.environment_id and not holds(i)}


def _named(name: str, analysis: Sequence[str]) -> bool:
    """Whether the transform named `name` is one of those named in `analysis`, or in one."""
    return any(name == a or name.startswith(a + "/") for a in analysis)


def runner_for(
    opts: PipelineOptions, analysis: Sequence[str] = (), per_photo: Sequence[str] = ()
) -> FnApiRunner | None:
    """The runner of `opts` while a zygote serves (see `forked_workers`), which runs all
    but the transforms named in `analysis` and `per_photo` in this process; None (Beam's
    choice) otherwise."""
    if ADDRESS_VARIABLE in os.environ and forkable(opts):
        return ForkedWorkersRunner(analysis, per_photo)
    return None


@contextlib.contextmanager
def forked_workers(
    opts: PipelineOptions, load: Callable[[], object] | None = None
) -> Iterator[Callable[[], None]]:
    """Meanwhile, where `opts` run the batch DirectRunner with worker processes, a zygote
    forks them (`runner_for` gives the runner that asks it to), once it has called `load`:
    what that loads (models, say) every worker has from the start, shared copy-on-write.
    Yields what ends the zygote and its workers at once, for a launcher about to end
    without leaving this context (see pipeline/interrupted.py).

    Only for a process that has run no pipeline on worker processes before (no gRPC
    channel or server yet: a fork copies gRPC's threads' state without the threads, and a
    worker forked from it waits for good); `racelens` forks in its own process only. Not
    where this process runs a thread of its own: the zygote would hold a copy of any lock
    that thread holds at the fork (the stderr buffer's, say), locked for good. Nor where a
    socket cannot be had: Beam then starts its workers as it does by itself."""
    threads = [t for t in threading.enumerate() if t.name != STOP_THREAD]
    if not (forkable(opts) and len(threads) == 1 and hasattr(os, "fork")):
        yield no_workers_to_end
        return
    folder = tempfile.mkdtemp(prefix="racelens-workers-")
    address = os.path.join(folder, "zygote")
    listener = _listener(address)
    if listener is None:
        shutil.rmtree(folder, ignore_errors=True)
        yield no_workers_to_end
        return
    try:
        with _zygote(listener, address, load) as zygote:
            yield functools.partial(_end_at_once, zygote, folder)
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)


def no_workers_to_end() -> None:
    """Where Beam starts its workers itself, or runs in this process."""


def _end_at_once(zygote: int, folder: str) -> None:
    """Kills the zygote and every worker it forked (its process group: one kill, whatever
    it is forking) and removes the folder of its socket; waits for the zygote only (the
    workers are not this process's children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(zygote, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(zygote, 0)
    shutil.rmtree(folder, ignore_errors=True)


def _listener(address: str) -> socket.socket | None:
    """A socket listening at `address`; None where none can (a path too long, say)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
        listener.listen(16)
    except OSError:
        listener.close()
        return None
    return listener


@contextlib.contextmanager
def _zygote(
    listener: socket.socket, address: str, load: Callable[[], object] | None
) -> Iterator[int]:
    """Meanwhile, a forked process serves worker commands on `listener` (its address in
    ADDRESS_VARIABLE); it ends with this context (or this process). Yields its pid, which
    is also the id of its process group, its workers' too: Ctrl-C at a terminal is not
    theirs (the launcher ends them: a SIGINT or SIGTERM sent to the launcher alone must
    stop them as well), and one kill ends them all."""
    launcher_alive, alive_writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the zygote
        os.close(alive_writer)
        _serve(listener, launcher_alive, load)
    _own_group(pid)  # here too: the launcher may kill the group before the zygote has run
    listener.close()
    os.close(launcher_alive)
    os.environ[ADDRESS_VARIABLE] = address
    os.environ[LAUNCHER_VARIABLE] = str(os.getpid())
    try:
        yield pid
    finally:
        del os.environ[ADDRESS_VARIABLE]
        del os.environ[LAUNCHER_VARIABLE]
        os.close(alive_writer)  # the zygote sees its end of the pipe close, and exits
        os.waitpid(pid, 0)


def _serve(listener: socket.socket, launcher_alive: int, load: Callable[[], object] | None) -> None:
    """The zygote: imports WARM_MODULES, calls `load`, then forks a worker for each
    connection until the launcher closes its end of `launcher_alive`. Never returns."""
    code = 0
    try:
        _own_group(0)
        # Stopping is the launcher's to handle (it kills this group); not the handlers
        # forked with this process's copy of the launcher.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)  # the launcher's: its signals, not this group's
        hold_worker_arenas()
        for name in WARM_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        if load is not None:
            _loaded(load)
        # Each worker watched, by a pidfd of it: its pid and its command's connection.
        working: dict[int, tuple[int, socket.socket]] = {}
        while True:
            ready, _, _ = select.select([listener, launcher_alive, *working], [], [])
            if launcher_alive in ready:
                break
            for ended in working.keys() & set(ready):
                _tell_how_it_ended(*working.pop(ended))
                os.close(ended)
            if listener in ready:
                connection, _ = listener.accept()
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    os.close(launcher_alive)
                    for pidfd, (_, others) in working.items():
                        os.close(pidfd)
                        others.close()
                    _work(connection)
                _watch(pid, connection, working)
        _reap_all()
    except BaseException:  # noqa: BLE001 - a zygote must not return into the launcher's code
        logging.exception("racelens worker zygote failed")
        code = 1
    finally:
        os._exit(code)


def _own_group(pid: int) -> None:
    """Makes process `pid` (0: this one) the leader of a process group of its own."""
    with contextlib.suppress(OSError):  # the zygote has ended already
        os.setpgid(pid, 0)


def _loaded(load: Callable[[], object]) -> None:
    """Calls `load`; where it fails, the workers load what they need themselves (and fail
    where they use it)."""
    try:
        load()
    except Exception:  # noqa: BLE001 - not the zygote's to fail for
        logging.warning("racelens worker zygote: loading failed", exc_info=True)
    _release_freed()
    if native_threads() > 1:  # a fork copies none of them: a worker may wait on one
        logging.warning("racelens worker zygote: loading started threads; workers may hang")


def _release_freed() -> None:
    """Gives the memory that loading used and freed (decoded photos, model files read) back
    to the system: every worker would start with it resident (~70 MB with faces)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to release
        ctypes.CDLL(None).malloc_trim(0)


def native_threads() -> int:
    """The threads of this process, Python's and native libraries' alike (Linux)."""
    with contextlib.suppress(OSError):
        return len(os.listdir("/proc/self/task"))
    return 1


def _watch(pid: int, connection: socket.socket, working: dict) -> None:
    """Puts worker `pid`, its command's `connection` with it, in `working`, by a pidfd that
    select() finds ready once it has ended; where there is none (Linux before 5.3, not Linux),
    closes the connection: its command then sees it close as its worker ends, not how."""
    try:
        working[os.pidfd_open(pid)] = (pid, connection)
    except (AttributeError, OSError):
        connection.close()


def _tell_how_it_ended(pid: int, connection: socket.socket) -> None:
    """Sends the command of worker `pid`, which has ended, how it ended, after what the
    worker sent it if anything (which stands): a worker killed, by the OOM killer or anyone,
    sends nothing, and its command told the launcher no more than that it was gone. The
    worker is left to reap at the end (`_reap_all`): until then the launcher finds it among
    its descendants, whose temporary files a stopped run removes."""
    ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    code = ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status
    with contextlib.suppress(OSError), connection:  # the command gone: its worker's status read
        connection.sendall(EXIT.pack(SAID_BY_ZYGOTE, code))


def _reap_all() -> None:
    """Waits for the workers that are left (so that their CPU time counts as the zygote's
    children's, as Beam's own workers' counts as the launcher's)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, 0)[0]:
            pass


def _work(connection: socket.socket) -> None:
    """A forked worker: takes its client's environment, runs Beam's worker main, sends its
    exit status back. Never returns."""
    code = 1
    try:
        (size,) = SIZE.unpack(exactly(connection, SIZE.size))
        os.environ.update(json.loads(exactly(connection, size)))
        # The client is the process Beam watches (and kills on failure): go with it.
        threading.Thread(target=_exit_with, args=(connection,), daemon=True).start()
        # As in a fresh interpreter: Beam's worker sets up its own logging.
        for handler in logging.root.handlers[:]:
            logging.root.removeHandler(handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main(sys.argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported to the client as a failed worker
        logging.exception("racelens worker failed")
    finally:
        with contextlib.suppress(OSError):
            connection.sendall(EXIT.pack(SAID_BY_WORKER, code))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_with(connection: socket.socket) -> None:
    """Ends this worker when its client's end of `connection` closes."""
    with contextlib.suppress(OSError):
        while connection.recv(1):
            pass
    os._exit(1)
