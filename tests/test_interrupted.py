"""Stopping `racelens run` on worker processes: Ctrl-C, a SIGINT to the launcher alone and
SIGTERM (pipeline/interrupted.py), with real processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pipeline import engines, interrupted
from pipeline.demo import generate_race
from pipeline.interrupted import (
    RUN_FILES,
    handled_by,
    interrupted_line,
    no_room_line,
    remove_temporaries_of,
    results_state,
    stopped_on_signals,
    worker_lost_line,
)
from pipeline.progress import count_facts
from pipeline.worker_command import ADDRESS_VARIABLE, STOP_THREAD, WorkerLost, lost_worker_told
from transforms.photos import FactStore
from transforms.write import TEMPORARY_MARK

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 120  # generous: a loaded 2-core machine starts a run in 2-10 s

# An analysis of a photo that, once `keep` photos have been analysed, never ends: the stop
# lands while photos are being analysed, some facts stored. Each analysed photo leaves a file
# in the folder `marks`; a worker that stops for good leaves "stuck-PID" there, and a fact
# half written in the `store` under a temporary name.
STUCK = """
import os, time
import transforms.photos as photos
from transforms.write import temporary_name

# The unstuck function, kept where this runs twice (a Dask worker may run its preload twice).
analyse_photo = photos.__dict__.setdefault("unstuck", photos.analyse_photo)

def stuck_after_some(data, image_id, faces=None):
    facts = analyse_photo(data, image_id, faces)
    if len(os.listdir(marks)) >= keep:
        os.makedirs(store, exist_ok=True)
        with open(temporary_name(os.path.join(store, image_id + ".json")), "w") as half:
            half.write("{")
        open(os.path.join(marks, f"stuck-{os.getpid()}"), "w").close()
        time.sleep(3600)
    open(os.path.join(marks, image_id), "w").close()
    return facts

photos.analyse_photo = stuck_after_some
"""
# `racelens` (its arguments after sys.argv[2]) whose analysis is stuck once sys.argv[2] photos
# have been analysed, sys.argv[1] the marks. The workers are forked from this process, so
# they analyse with the stuck function too.
STUCK_RUN = f"""
import logging, os, runpy, sys
logging.basicConfig(level=logging.ERROR)  # Beam's import warning, as `racelens` silences it
marks, keep = sys.argv[1], int(sys.argv[2])
store = os.path.join(sys.argv[sys.argv.index("--out") + 1], "facts")
{STUCK}
sys.argv = ["racelens", *sys.argv[3:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""
# The same in a Dask worker, as its preload: the marks, the photos and the store from its
# environment.
STUCK_DASK_WORKER = f"""
import os
marks, keep, store = os.environ["STUCK_MARKS"], 2, os.environ["STUCK_STORE"]
{STUCK}
"""


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Path:
    race = tmp_path_factory.mktemp("interrupted") / "race"
    generate_race(str(race), athletes=3, stations=2, seed=5)  # 18 photos, 15 to analyse
    return race


def run_argv(race: Path, out: Path) -> list[str]:
    return [
        "run",
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
        "--direct_num_workers=2",  # worker processes, whatever the cores
    ]


def racelens(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )


@pytest.fixture(scope="module")
def uninterrupted(race: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    assert racelens(run_argv(race, out)).returncode == 0
    return out


def results(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".parquet", ".csv")}


def stored(out: Path) -> int:
    return count_facts(FactStore(str(out / "facts")))


def wait_for(what: Callable[[], bool], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while not what():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended: only its parent's wait is missing)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def as_a_terminal_starts_it() -> None:
    """In the child before it runs: Ctrl-C's and the hang-up's signals at their defaults, as
    a terminal's shell leaves them for a command it runs. A suite started in the background
    (`cmd &`) passes SIGINT on ignored, one started under nohup SIGHUP, and Python, like
    racelens, leaves an ignored SIGINT ignored, racelens an ignored SIGHUP."""
    for each in (signal.SIGINT, signal.SIGHUP):
        signal.signal(each, signal.SIG_DFL)


def started_as_from_a_terminal(
    command: list[str], env: dict | None = None, stdout: int = subprocess.PIPE
) -> subprocess.Popen:
    """`command` as a terminal runs it: its own foreground process group, Ctrl-C at its
    default; text stderr (and stdout) piped."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
        preexec_fn=as_a_terminal_starts_it,
    )


def stuck_run(race: Path, out: Path, marks: Path) -> list[str]:
    return [sys.executable, "-c", STUCK_RUN, str(marks), "2", *run_argv(race, out)]


Start = Callable[[list[str], dict | None], subprocess.Popen]


def interrupted_run(
    command: list[str],
    marks: Path,
    send: Callable[[int], None],
    env: dict | None = None,
    start: Start = started_as_from_a_terminal,
) -> tuple:
    """`command`, a stuck run started by `start`, `send(its pid)` once a worker is stuck; its
    exit code, its stderr and its processes (the zygote, the workers, their commands) that
    outlived it by WAIT_S."""
    marks.mkdir()
    launcher = start(command, env)
    wait_for(lambda: any(p.name.startswith("stuck-") for p in marks.iterdir()), launcher)
    started = psutil.Process(launcher.pid).children(recursive=True)
    stuck = {int(p.name.removeprefix("stuck-")) for p in marks.glob("stuck-*")}
    assert stuck <= {p.pid for p in started}, "the stuck worker is the launcher's descendant"
    send(launcher.pid)
    _, err = launcher.communicate(timeout=WAIT_S)
    deadline = time.monotonic() + WAIT_S
    while alive(started) and time.monotonic() < deadline:
        time.sleep(0.05)
    return launcher.returncode, err, alive(started)


# How each is sent to the launcher, and the exit code it ends with.
STOPS = {
    "Ctrl-C": (lambda pid: os.killpg(pid, signal.SIGINT), 130),
    "SIGINT to the launcher alone": (lambda pid: os.kill(pid, signal.SIGINT), 130),
    "SIGTERM": (lambda pid: os.kill(pid, signal.SIGTERM), 143),
    # An SSH session dropped: the terminal's hang-up, to the whole foreground group. It ended
    # the launcher at once, its temporary files left, its workers' for an hour.
    "SIGHUP": (lambda pid: os.killpg(pid, signal.SIGHUP), 129),
}


def test_run__interrupted_ends_all_its_processes_in_one_line_and_the_next_run_resumes(
    race: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    kept = 0
    # One after the other on the same race: each run takes up the facts the earlier stored.
    for stop, (send, code) in STOPS.items():
        marks = tmp_path / stop
        returncode, err, left = interrupted_run(stuck_run(race, out, marks), marks, send)
        kept, before = stored(out), kept
        assert returncode == code, (stop, err)
        assert err.splitlines() == [
            interrupted_line(kept, str(out / "facts"), f"no results are written in {out} yet")
        ], (stop, err)
        assert not left, (stop, [p.cmdline() for p in left])
        assert not list(out.rglob(f"*{TEMPORARY_MARK}*")), stop
        assert kept > before, stop
    assert kept < stored(uninterrupted)

    resumed = racelens(run_argv(race, out))
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(uninterrupted)
    assert stored(out) == stored(uninterrupted)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_bibs__ctrl_c_sigterm_and_sighup_are_one_line_exit_128_plus_it(
    race: Path, stop: int
) -> None:
    # A command with no stopping of its own (bibs, demo, photos, selfcheck) ended with the
    # traceback of wherever Ctrl-C found it (28-92 lines), killed by SIGINT; SIGTERM and
    # SIGHUP killed it at once, its clean-ups not run (`racelens photos` left a half copy).
    photos = sorted(str(p) for p in (race / "images").rglob("*.jpg"))
    command = [sys.executable, "-m", "pipeline", "bibs", *photos * 20]
    launcher = started_as_from_a_terminal(command)
    assert launcher.stdout.readline().startswith('{"path": '), launcher.communicate()
    os.killpg(launcher.pid, stop)
    _, err = launcher.communicate(timeout=WAIT_S)
    assert (launcher.returncode, err) == (128 + stop, "racelens: interrupted\n"), err


def test_selfcheck__ctrl_c_is_one_line_exit_130() -> None:
    # Its runs are Beam's in its own process, whose threads took Ctrl-C for a failed bundle:
    # the check went on, reported and exited 0.
    launcher = started_as_from_a_terminal([sys.executable, "-m", "pipeline", "selfcheck"])
    time.sleep(1.5)  # within its first run: the whole check takes ~6 s here
    os.killpg(launcher.pid, signal.SIGINT)
    out, err = launcher.communicate(timeout=WAIT_S)
    assert (launcher.returncode, out, err) == (130, "", "racelens: interrupted\n"), err


def kill_a_stuck_worker(marks: Path, kill: int) -> Callable[[int], None]:
    """What kills one stuck worker with `kill` (SIGKILL: as the kernel's OOM killer does)."""

    def send(_: int) -> None:
        stuck = min(marks.glob("stuck-*"))
        os.kill(int(stuck.name.removeprefix("stuck-")), kill)

    return send


# Imported by every process of the run (sitecustomize): a worker's command tells the launcher
# of its worker's death TOLD_LATE_S late, as a loaded machine (load ~6) had it.
TOLD_LATE = """
import os, signal, time
kill = os.kill

def kill_late(pid, signum):
    if signum == signal.SIGUSR1:
        time.sleep(float(os.environ["TOLD_LATE_S"]))
    kill(pid, signum)

os.kill = kill_late
"""


@pytest.mark.parametrize(("told_late_s", "kill"), [(0.0, signal.SIGKILL), (2.0, signal.SIGTERM)])
def test_run__a_worker_killed_ends_it_in_one_line_exit_1_and_the_next_run_resumes(
    race: Path, uninterrupted: Path, tmp_path: Path, told_late_s: float, kill: signal.Signals
) -> None:
    # It ended with 116-236 lines of Beam's threads' tracebacks ("Channel closed prematurely");
    # then again where its command told the launcher over 0.5 s late (exit -10, 30-330 lines).
    # Its line said "killed: out of memory?" of any end; the zygote knows the signal.
    out, marks, preload = tmp_path / "out", tmp_path / "marks", tmp_path / "preload"
    preload.mkdir()
    (preload / "sitecustomize.py").write_text(TOLD_LATE)
    path = os.pathsep.join(filter(None, [str(preload), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TOLD_LATE_S": str(told_late_s)}
    command = stuck_run(race, out, marks)
    returncode, err, left = interrupted_run(command, marks, kill_a_stuck_worker(marks, kill), env)
    results_now = f"no results are written in {out} yet"
    lost = WorkerLost(f"a worker process was killed by signal {kill:d} ({kill.name})")
    assert (returncode, err.splitlines()) == (
        1,
        [worker_lost_line(lost, stored(out), str(out / "facts"), results_now)],
    ), err
    assert not left, [p.cmdline() for p in left]
    assert not list(out.rglob(f"*{TEMPORARY_MARK}*"))

    resumed = racelens(run_argv(race, out))
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(uninterrupted)


# `racelens` (its arguments after sys.argv[0]) whose workers end with an error of their own: a
# worker's first analysis interrupts the worker itself, whose harness fails (KeyboardInterrupt)
# and which ends with status 1, told to its command: no WORKER_LOST comes. A lost worker's
# errors would wait an hour for one here.
FAILING_WORKER_RUN = """
import logging, os, runpy, signal, sys, time
logging.basicConfig(level=logging.ERROR)  # Beam's import warning, as `racelens` silences it
import pipeline.interrupted
import transforms.photos as photos

pipeline.interrupted.LOST_WORKER_WAIT_S = 3600.0

def failing(data, image_id, faces=None):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(60)

photos.analyse_photo = failing
sys.argv = ["racelens", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""


def test_run__a_worker_ending_with_an_error_of_its_own_shows_it_at_once(
    race: Path, tmp_path: Path
) -> None:
    # Its streams closed look like a lost worker's: the tracebacks waited 15 s for a
    # WORKER_LOST that never came (the run ended after 50-68 s, load ~6).
    command = [sys.executable, "-c", FAILING_WORKER_RUN, *run_argv(race, tmp_path / "out")]
    returncode, err, left = run_to_its_end(command, dict(os.environ))
    assert returncode == 1 and "KeyboardInterrupt" in err, err
    assert not left, [p.cmdline() for p in left]


# A disk that fills once FULL_AFTER facts are stored in the folder FULL_FACTS: a file created
# under FULL_FOLDER from then on is left half written, and its write fails as a full disk
# fails it (ENOSPC).
FULL_DISK = """
import errno, os
from apache_beam.io.filesystems import FileSystems

full, keep, facts = (os.environ[f"FULL_{name}"] for name in ("FOLDER", "AFTER", "FACTS"))
create = FileSystems.__dict__.get("unfilled", FileSystems.create)  # a preload may run twice
FileSystems.unfilled = create

def create_on_a_full_disk(path, *args, **kwargs):
    made = create(path, *args, **kwargs)
    stored = sum(f.endswith(".json") for _, _, files in os.walk(facts) for f in files)
    if path.startswith(full + os.sep) and stored >= int(keep):
        made.write(b"{")
        made.close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return made

FileSystems.create = create_on_a_full_disk
"""
# `racelens` (its arguments after sys.argv[0]) on that disk. The workers are forked from this
# process, so they write on the same disk.
FULL_DISK_RUN = f"""
import logging, runpy, sys
logging.basicConfig(level=logging.ERROR)  # Beam's import warning, as `racelens` silences it
{FULL_DISK}
sys.argv = ["racelens", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""


def run_to_its_end(command: list[str], env: dict[str, str]) -> tuple:
    """`command`'s exit code, its stderr, and the processes it started that outlived it by
    WAIT_S (those seen while it ran)."""
    launcher = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    started: list[psutil.Process] = []
    deadline = time.monotonic() + WAIT_S
    while launcher.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(launcher.pid).children(recursive=True)
            started += [p for p in children if p not in started]
        time.sleep(0.05)
    _, err = launcher.communicate(timeout=WAIT_S)
    while alive(started) and time.monotonic() < deadline + WAIT_S:
        time.sleep(0.05)
    return launcher.returncode, err.decode(), alive(started)


@pytest.mark.parametrize(
    ("full", "engine"), [("facts", "forked"), ("out", "forked"), ("facts", "dask")]
)
def test_run__a_full_disk_ends_it_in_one_line_naming_the_folder_and_the_next_run_resumes(
    race: Path, uninterrupted: Path, tmp_path: Path, full: str, engine: str
) -> None:
    # It ended with ~250 lines of the workers' and Beam's tracebacks, exit 1.
    out, facts = tmp_path / "out", tmp_path / "facts"
    argv = [*run_argv(race, out), "--facts", str(facts)]
    folder, keep = (facts, 3) if full == "facts" else (out, 0)
    env = {**os.environ, "FULL_FOLDER": str(folder), "FULL_AFTER": str(keep)}
    env["FULL_FACTS"] = str(facts)
    if engine == "dask":
        (tmp_path / "full_disk.py").write_text(FULL_DISK)
        env["DASK_DISTRIBUTED__WORKER__PRELOAD"] = json.dumps([str(tmp_path / "full_disk.py")])
        argv += ["--runner=DaskRunner", "--dask_local_workers=2"]
    returncode, err, left = run_to_its_end([sys.executable, "-c", FULL_DISK_RUN, *argv], env)
    kept = count_facts(FactStore(str(facts)))
    line = no_room_line(str(folder), kept, str(facts), f"no results are written in {out} yet")
    assert (returncode, err.splitlines()) == (1, [line]), err
    assert not left, [p.cmdline() for p in left]
    assert not [*out.rglob(f"*{TEMPORARY_MARK}*"), *facts.rglob(f"*{TEMPORARY_MARK}*")]
    assert kept >= keep

    resumed = racelens(argv)
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(uninterrupted)
    assert count_facts(FactStore(str(facts))) == stored(uninterrupted)


def on_its_own_terminal() -> tuple[Start, Callable[[int], None]]:
    """What starts a command as the one process of a terminal's session (as `ssh HOST
    racelens ...` does): stdin and stdout that terminal, stderr piped; and what closes the
    terminal, whose hang-up the kernel sends that process (SIGHUP), and its foreground group
    as that process ends."""
    terminal, its_end = pty.openpty()

    def start(command: list[str], env: dict | None) -> subprocess.Popen:
        def on_the_terminal() -> None:
            as_a_terminal_starts_it()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the session's controlling terminal

        try:
            return subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdin=its_end,
                stdout=its_end,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                preexec_fn=on_the_terminal,
            )
        finally:
            os.close(its_end)

    return start, lambda _: os.close(terminal)


# `racelens` (its arguments after sys.argv[0]) on a disk full from the start: the first file
# it writes in --out, its lock (the run's pid in it), fails as a full disk fails it (ENOSPC).
FULL_FROM_THE_START_RUN = """
import errno, logging, runpy, sys
import pipeline.live_lock as live_lock
logging.basicConfig(level=logging.ERROR)  # Beam's import warning, as `racelens` silences it

class OnAFullDisk:
    def __init__(self, file):
        self.file = file

    def __getattr__(self, name):
        return getattr(self.file, name)

    def write(self, _):
        raise OSError(errno.ENOSPC, "No space left on device")

live_lock.open = lambda path, *args, **kwargs: OnAFullDisk(open(path, *args, **kwargs))
sys.argv = ["racelens", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
"""


def test_run__a_disk_full_from_the_start_is_one_line_naming_out_exit_1(
    race: Path, tmp_path: Path
) -> None:
    # The run's lock, written before anything else, ended it with OSError's traceback.
    out = tmp_path / "out"
    command = [sys.executable, "-c", FULL_FROM_THE_START_RUN, *run_argv(race, out)]
    returncode, err, left = run_to_its_end(command, dict(os.environ))
    line = no_room_line(str(out), 0, str(out / "facts"), f"no results are written in {out} yet")
    assert (returncode, err.splitlines()) == (1, [line]), err
    assert not left, [p.cmdline() for p in left]


@pytest.mark.parametrize("stop", ["Ctrl-C", "terminal closed"])
def test_run_on_dask__stopped_ends_it_in_the_one_line_alone_and_the_next_run_resumes(
    race: Path, uninterrupted: Path, tmp_path: Path, stop: str
) -> None:
    # The hang-up of a terminal closed, racelens' LocalCluster running: untested before.
    out, marks, worker = tmp_path / "out", tmp_path / "marks", tmp_path / "stuck_worker.py"
    worker.write_text(STUCK_DASK_WORKER)
    argv = [*run_argv(race, out), "--runner=DaskRunner", "--dask_local_workers=2"]
    stuck_workers = {
        **os.environ,
        "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(worker)]),
        "STUCK_MARKS": str(marks),
        "STUCK_STORE": str(out / "facts"),
    }
    send, code = STOPS["Ctrl-C"]
    start: Start = started_as_from_a_terminal
    if stop == "terminal closed":
        (start, send), code = on_its_own_terminal(), 128 + signal.SIGHUP
    command = [sys.executable, "-m", "pipeline", *argv]
    returncode, err, left = interrupted_run(command, marks, send, stuck_workers, start)
    line = interrupted_line(stored(out), str(out / "facts"), f"no results are written in {out} yet")
    # The workers' own Ctrl-C (a task cancelled) and their Beam import's warning are not in it.
    assert (returncode, err.splitlines()) == (code, [line]), err
    assert not left, [p.cmdline() for p in left]
    assert not list(out.rglob(f"*{TEMPORARY_MARK}*"))
    assert 0 < stored(out) < stored(uninterrupted)

    resumed = racelens(argv)
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(uninterrupted)
    assert stored(out) == stored(uninterrupted)


# A Dask worker process that ends as it starts (its preload): killed (the OOM killer, say), or
# failing on an error of its own (a broken install); what the one line says of it.
DYING_AT_START = {
    "killed": (
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
        r"worker process \d+ was killed by signal 9 \(SIGKILL\)",
    ),
    "an error": ("raise RuntimeError('broken install')\n", "RuntimeError: broken install"),
}


@pytest.mark.parametrize("dying", DYING_AT_START)
def test_run_on_dask__workers_that_die_as_the_cluster_starts_are_one_line_exit_1(
    race: Path, tmp_path: Path, dying: str
) -> None:
    # Dask's "Nanny failed to start" traceback ended the run (73 lines; 181 with each worker's
    # own traceback of its error).
    preload, why = DYING_AT_START[dying]
    (tmp_path / "dying.py").write_text(preload)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(tmp_path / "dying.py")]),
    }
    argv = [*run_argv(race, out), "--runner=DaskRunner", "--dask_local_workers=2"]
    returncode, err, left = run_to_its_end([sys.executable, "-m", "pipeline", *argv], env)
    lost = WorkerLost(
        "the Dask LocalCluster's worker processes failed to start (WHY)",
        engines.WHERE_NO_WORKER_STARTS,
    )
    line = worker_lost_line(lost, 0, str(out / "facts"), f"no results are written in {out} yet")
    assert returncode == 1 and re.fullmatch(re.escape(line).replace("WHY", why) + "\n", err), err
    assert not left, [p.cmdline() for p in left]


def test_results_state__none_the_previous_runs_or_some_of_this_ones(tmp_path: Path) -> None:
    assert results_state(str(tmp_path), time.time()) == f"no results are written in {tmp_path} yet"
    for name in RUN_FILES:
        (tmp_path / name).write_bytes(b"PAR1")
        os.utime(tmp_path / name, (1_000, 1_000))
    (tmp_path / "leaderboard.parquet.tmp-7-a").write_bytes(b"PA")  # being written: not one
    # The dashboard's corrections log, appended to meanwhile, is none of the run's results.
    (tmp_path / "corrections.csv").write_text("image_id,action\n")
    previous = f"the results in {tmp_path} are the previous run's, untouched"
    assert results_state(str(tmp_path), 2_000) == previous
    os.utime(tmp_path / "results.csv", (3_000, 3_000))
    mixed = f"some results in {tmp_path} are this run's and some the previous run's"
    assert results_state(str(tmp_path), 2_000) == mixed
    for name in RUN_FILES:
        os.utime(tmp_path / name, (3_000, 3_000))
    assert results_state(str(tmp_path), 2_000) == f"the results in {tmp_path} are this run's"
    # The disk filled after two: this run's, but not all of them.
    (tmp_path / "stations.parquet").unlink()
    some = f"some results in {tmp_path} are this run's and the others not written yet"
    assert results_state(str(tmp_path), 2_000) == some


def test_remove_temporaries_of__the_ended_processes_only(tmp_path: Path) -> None:
    (tmp_path / "facts" / "ab").mkdir(parents=True)
    ended = tmp_path / "facts" / "ab" / f"abc.json{TEMPORARY_MARK}1234-ff"
    elsewhere = tmp_path / f"images.parquet{TEMPORARY_MARK}12345-ff"  # pid 12345 still writes
    for path in (ended, elsewhere, tmp_path / "facts" / "ab" / "abd.json"):
        path.write_text("{")
    folders = [str(tmp_path), str(tmp_path / "facts"), str(tmp_path / "gone")]
    assert remove_temporaries_of(folders, {1234, 99}) == [str(ended)]
    assert sorted(p.name for p in tmp_path.rglob("*.*")) == ["abd.json", elsewhere.name]


def live_argv(race: Path, out: Path) -> list[str]:
    return [*run_argv(race, out)[:-2], "--streaming"]


def started_live(argv: list[str]) -> subprocess.Popen:
    """`argv` run in a process group of its own (as a terminal runs a command), once it
    watches: signals end the watch from then on."""
    launcher = started_as_from_a_terminal([sys.executable, *argv], stdout=subprocess.DEVNULL)
    first = launcher.stderr.readline()
    assert first.startswith("racelens: watching "), first + launcher.communicate()[1]
    return launcher


def test_live__ctrl_c_completes_the_outputs_and_exits_0(
    race: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    launcher = started_live(["-m", "pipeline", *live_argv(race, out)])
    os.killpg(launcher.pid, signal.SIGINT)
    _, err = launcher.communicate(timeout=WAIT_S)
    assert launcher.returncode == 0, err
    assert "live: stopping; taking in the files present" in err and "Traceback" not in err, err
    assert stored(out) == stored(uninterrupted)
    assert (out / "leaderboard.parquet").is_file()


def test_live__an_ssh_session_dropped_completes_the_outputs_and_exits_0(
    race: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # Its terminal gone, every write to it fails (EIO): live mode's "stopping" line ended
    # the run with a traceback nobody saw, its outputs not completed.
    out = tmp_path / "out"
    terminal, its_end = pty.openpty()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *live_argv(race, out)],
        cwd=REPO,
        stdout=its_end,
        stderr=its_end,
        process_group=0,
        preexec_fn=as_a_terminal_starts_it,
    )
    os.close(its_end)
    told = b""
    with os.fdopen(terminal, "rb", buffering=0) as screen:
        while b"racelens: watching " not in told:
            assert launcher.poll() is None, told
            told += screen.read(4096)
    # The terminal closed (the pty's other end with it), then its hang-ups: the shell's to
    # its job, and the kernel's to the foreground group as the shell ends.
    os.killpg(launcher.pid, signal.SIGHUP)
    time.sleep(0.1)
    os.killpg(launcher.pid, signal.SIGHUP)
    assert launcher.wait(timeout=WAIT_S) == 0
    assert stored(out) == stored(uninterrupted)
    assert results(out) == results(uninterrupted)


def as_a_scripts_background_job_starts_it() -> None:
    """In the child: Ctrl-C ignored, as bash leaves it for a command a script runs with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_live__started_in_a_scripts_background_ctrl_c_is_the_scripts_and_sigterm_ends_it(
    race: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # Ctrl-C at the terminal reaches the whole group: the script's foreground command and
    # its background jobs. racelens took it where bash had set it aside for the script, so
    # the script could not keep its live run going past a Ctrl-C of its own command.
    out = tmp_path / "out"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *live_argv(race, out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
        preexec_fn=as_a_scripts_background_job_starts_it,
    )
    first = launcher.stderr.readline()
    assert first.startswith("racelens: watching "), first + launcher.communicate()[1]
    os.killpg(launcher.pid, signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        launcher.wait(timeout=3)
    launcher.send_signal(signal.SIGTERM)  # as run_local.sh --live ends it
    _, err = launcher.communicate(timeout=WAIT_S)
    assert launcher.returncode == 0, err
    assert "live: stopping; taking in the files present" in err, err
    assert stored(out) == stored(uninterrupted)


def test_live__a_second_ctrl_c_ends_a_stuck_update_at_once_in_one_line(
    race: Path, tmp_path: Path
) -> None:
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    launcher = started_live(["-c", STUCK_RUN, str(marks), "2", *live_argv(race, out)])
    os.killpg(launcher.pid, signal.SIGINT)
    wait_for(lambda: any(p.name.startswith("stuck-") for p in marks.iterdir()), launcher)
    os.killpg(launcher.pid, signal.SIGINT)
    _, err = launcher.communicate(timeout=WAIT_S)
    assert launcher.returncode == 130, err
    line = interrupted_line(stored(out), str(out / "facts"), f"no results are written in {out} yet")
    assert err.splitlines()[-1] == line and "Traceback" not in err, err


def test_stopped_on_signals__leaves_no_thread_nor_open_file_behind(tmp_path: Path) -> None:
    # The thread reading the signal wakeup fd stayed, blocked on its pipe, after the run:
    # one more each run in a process that runs several (the tests, a dashboard's).
    def watching() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == STOP_THREAD]

    open_files = sorted(os.listdir("/proc/self/fd"))
    for _ in range(2):
        with stopped_on_signals(str(tmp_path / "out"), str(tmp_path / "facts")):
            assert watching() == [STOP_THREAD]
        assert watching() == []
        assert sorted(os.listdir("/proc/self/fd")) == open_files
        assert signal.set_wakeup_fd(-1) == -1  # none before, none after


def test_stopped_on_signals__a_worker_lost_error_ends_it_as_a_lost_worker(tmp_path: Path) -> None:
    # Dask's workers, restarted and dead again on the same photos (WorkerLost, pipeline/engines).
    out, facts = tmp_path / "out", tmp_path / "facts"
    script = (
        "import sys\n"
        "from pipeline.interrupted import stopped_on_signals\n"
        "from pipeline.worker_command import WorkerLost\n"
        "with stopped_on_signals(sys.argv[1], sys.argv[2]):\n"
        "    raise WorkerLost('4 workers died')\n"
    )
    ended = subprocess.run(
        [sys.executable, "-c", script, str(out), str(facts)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    lost = WorkerLost("4 workers died")
    line = worker_lost_line(lost, 0, str(facts), f"no results are written in {out} yet")
    assert (ended.returncode, ended.stderr.splitlines()[-1:]) == (1, [line]), ended.stderr


def test_worker_lost_line__tells_the_out_of_memory_killers_kills_during_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The line said "killed: out of memory?" of any end; the kernel counts what it killed.
    vmstat = tmp_path / "vmstat"
    monkeypatch.setattr(interrupted, "VMSTAT", str(vmstat))
    vmstat.write_text("pgfault 10\noom_kill 2\n")
    before = interrupted.oom_kills()
    vmstat.write_text("pgfault 12\noom_kill 3\n")
    killed = interrupted.oom_kills_since(before)
    lost = WorkerLost("a worker process was killed by signal 9 (SIGKILL)")
    assert (before, killed) == (2, 1)
    assert worker_lost_line(lost, 5, "F", "R", killed) == (
        "racelens: a worker process was killed by signal 9 (SIGKILL) (the kernel's "
        "out-of-memory killer killed 1 process on this machine during the run); the facts of "
        "5 photos analysed so far are kept in F, R; run the same command again to carry on"
    )
    assert worker_lost_line(lost, 5, "F", "R").startswith(
        "racelens: a worker process was killed by signal 9 (SIGKILL); the facts"
    )
    vmstat.unlink()  # not Linux, or a kernel before 4.13: nothing said
    assert (interrupted.oom_kills(), interrupted.oom_kills_since(before)) == (None, 0)


# A signal that live mode's handler took (handled_meanwhile), read by the signal-watching
# thread only once the run's handlers are back: the main thread keeps the GIL until it sleeps.
TAKEN_MEANWHILE = """
import os, signal, sys, time
from pipeline.interrupted import handled_meanwhile, stopped_on_signals

# Ctrl-C handled as when started from a terminal: a background job (CI's script run with
# `&`) inherits it ignored, and the run rightly leaves an ignored signal ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.setswitchinterval(30)
with stopped_on_signals(sys.argv[1], sys.argv[2]):
    taken = []
    with handled_meanwhile(lambda signum, _: taken.append(signum)):
        os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)
print(taken)
"""


def test_handled_meanwhile__a_signal_taken_meanwhile_is_not_the_runs_later(tmp_path: Path) -> None:
    # A single Ctrl-C to a live run ended it at once (exit 130) now and then, its outputs not
    # completed: the thread read it after live mode had put the run's handlers back.
    command = [sys.executable, "-c", TAKEN_MEANWHILE, str(tmp_path / "out"), str(tmp_path)]
    ended = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=WAIT_S)
    assert (ended.returncode, ended.stdout) == (0, f"[{int(signal.SIGINT)}]\n"), ended.stderr


def test_handled_by__not_a_signal_this_process_ignores() -> None:
    def handler(signum: int, _: object) -> None:
        raise AssertionError(signum)

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {each: signal.signal(each, signal.SIG_DFL) for each in stops}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a command a script runs in the background
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as for a command nohup runs
    try:
        replaced = handled_by(handler)
        assert replaced == {signal.SIGTERM: signal.SIG_DFL}
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        for each, previous in before.items():
            signal.signal(each, previous)


def test_run__a_second_run_on_the_same_out_is_refused_until_the_first_ends_however(
    race: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # Both ran, each replacing the other's results: outputs of two runs mixed in one folder.
    out, marks = tmp_path / "out", tmp_path / "marks"
    marks.mkdir()
    first = subprocess.Popen(
        stuck_run(race, out, marks), cwd=REPO, stderr=subprocess.PIPE, process_group=0
    )
    try:
        wait_for(lambda: any(p.name.startswith("stuck-") for p in marks.iterdir()), first)
        second = racelens(run_argv(race, out))
        assert (second.returncode, second.stderr.splitlines()) == (
            2,
            [
                f"racelens: error: --out {out}: another racelens run (pid {first.pid}) writes "
                "these results; wait for it to end, or give another --out"
            ],
        ), second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # its lock is left behind, held by no one
        first.communicate(timeout=WAIT_S)
    resumed = racelens(run_argv(race, out))
    assert resumed.returncode == 0, resumed.stderr
    assert results(out) == results(uninterrupted)


# A command whose Ctrl-C lands while a compiled module initialises: pybind11 turns the
# KeyboardInterrupt raised in the module's Python imports into ImportError("initialization
# failed"), as onnxruntime's did under load in selfcheck's first seconds.
CTRL_C_IN_AN_IMPORT = """
import os, signal, time
from pipeline import cli

def command(argv, own_process):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        raise ImportError("initialization failed") from None

cli._main = command
cli.main()
"""


def test_main__ctrl_c_turned_into_an_import_error_is_one_line_exit_130() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_AN_IMPORT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        preexec_fn=as_a_terminal_starts_it,
    )
    assert (done.returncode, done.stderr) == (130, "racelens: interrupted\n"), done.stderr


# A module that racelens imports (yaml, with its course) found first, and slow to import: it
# says so in the file $IMPORTING and waits, Ctrl-C's moment.
SLOW_YAML = """
import os, time
open(os.environ["IMPORTING"], "w").close()
time.sleep(60)
"""
# The console script pip makes of setup.py's entry point, as `python -c`.
SCRIPT = "import sys; from {module} import {function}; sys.exit({function}())"


@pytest.mark.parametrize("entry", ["console script", "python -m pipeline"])
def test_racelens__ctrl_c_while_it_is_imported_is_one_line_exit_130(
    race: Path, tmp_path: Path, entry: str
) -> None:
    # Before racelens's main handled signals (its first 0.06-0.15 s), Ctrl-C printed the
    # KeyboardInterrupt's traceback of the import it fell in.
    (tmp_path / "yaml.py").write_text(SLOW_YAML, encoding="utf-8")
    importing = tmp_path / "importing"
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = os.environ | {"PYTHONPATH": path, "IMPORTING": str(importing)}
    [(module, function)] = re.findall(r"racelens=([\w.]+):(\w+)", (REPO / "setup.py").read_text())
    start = (
        ["-m", "pipeline"]
        if entry != "console script"
        else ["-c", SCRIPT.format(module=module, function=function)]
    )
    command = [sys.executable, *start, *run_argv(race, tmp_path / "out")]
    launcher = started_as_from_a_terminal(command, env=env)
    deadline = time.monotonic() + WAIT_S
    while not importing.exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.01)
    os.killpg(launcher.pid, signal.SIGINT)
    out, err = launcher.communicate(timeout=WAIT_S)
    assert (launcher.returncode, out, err) == (130, "", "racelens: interrupted\n"), err


def test_main__an_import_error_without_ctrl_c_is_not_called_an_interruption() -> None:
    broken = "from pipeline import cli\ndef command(*_, **__):\n    raise ImportError('no dlib')\n"
    done = subprocess.run(
        [sys.executable, "-c", broken + "cli._main = command\ncli.main()\n"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 1 and "ImportError: no dlib" in done.stderr, done.stderr


def test_lost_worker_told__nothing_noted_where_no_zygote_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The notes' folder is the zygote's socket's; without one it was the working folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ADDRESS_VARIABLE, raising=False)
    (tmp_path / "lost-1").write_text("a file of the user's")
    assert lost_worker_told().why == "a worker process ended without a word"
    zygote = tmp_path / "workers"
    zygote.mkdir()
    monkeypatch.setenv(ADDRESS_VARIABLE, str(zygote / "zygote"))
    (zygote / "lost-2").write_text("a worker process exited with status 3")
    assert lost_worker_told().why == "a worker process exited with status 3"
