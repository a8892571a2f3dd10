"""How `racelens run` and `racelens results` stop when interrupted.

Ctrl-C at a terminal (SIGINT to its foreground process group), a SIGINT sent to the launcher
alone, SIGTERM (docker stop, systemd, a CI timeout) and SIGHUP (the terminal hung up: an SSH
session dropped) all end the launcher at once, with the worker processes it started, one line
on stderr saying what is kept, and exit 128 + the signal's number (130, 143, 129: the shell's
convention). A run that must outlive its terminal is started under tmux, screen or nohup
(which leaves SIGHUP ignored, and racelens leaves it so). Nothing is lost that the next run needs:
every stored fact and every output is written under a temporary name and renamed into place
(transforms/write.py), so each is whole or absent; the temporary files of the processes
ended are removed; the next run of the same command takes up the stored facts.

A worker process that dies without a word (WORKER_LOST) and a write that finds its disk full
(NO_ROOM, in the launcher or a worker it forked) end the run the same way, exit 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from apache_beam.io.filesystem import BeamIOError

from pipeline.cli import RUN_FILE
from pipeline.progress import count_facts
from pipeline.signals import SIGNALS, handled_by
from pipeline.worker_command import STOP_THREAD, WORKER_LOST, WorkerLost, lost_worker_told
from transforms.photos import FactStore
from transforms.schemas import OUTPUT_FILES
from transforms.write import TEMPORARY_MARK, delete_files, listed_files, no_room_told_to

# What a run writes into its results folder (not others': the dashboard's corrections log).
RUN_FILES = (*OUTPUT_FILES, RUN_FILE)
# What a process of the run sends the launcher once a write of its found the disk full, the
# write's path told through a pipe: a failed write would end the run with the tracebacks of
# every worker and of Beam (~250 lines).
NO_ROOM = signal.SIGUSR2
# How long that process waits to be ended by the launcher before it fails the write itself.
NO_ROOM_WAIT_S = 30.0

# What ends processes this one started (its workers) at once.
Ender = Callable[[], None]


@contextlib.contextmanager
def stopped_on_signals(out: str, facts: str) -> Iterator[list[Ender]]:
    """Meanwhile, SIGINT and SIGTERM end this process as the module says; before that, each
    Ender put in the yielded list is called. For a process that runs this command only: it
    ends without unwinding, other threads and all."""
    ends: list[Ender] = []
    started = time.time()
    oom_kills_before = oom_kills()
    lost: list[WorkerLost] = []  # what is known of a worker lost, where the run knows it
    stopping = threading.Event()
    command_ended = CommandEnded()
    launcher = os.getpid()
    told, telling = os.pipe()  # a forked process tells the launcher a full disk's path here
    os.set_blocking(told, False)

    def no_room(path: str) -> None:
        os.write(telling, f"{path}\0".encode(errors="surrogateescape"))
        os.kill(launcher, NO_ROOM)
        # Ended meanwhile: a worker by the launcher, the launcher by its handler (at once
        # on its main thread, on another while this one waits).
        time.sleep(NO_ROOM_WAIT_S)

    def stop(signum: int, _: object) -> None:
        stopping.set()
        once.acquire()  # a stop already begun (on the other thread) ends the process
        # An impatient second Ctrl-C must not interrupt the stopping, nor the commands of the
        # workers it ends, which see them end without a word.
        if threading.current_thread() is threading.main_thread():
            for each in (*SIGNALS, WORKER_LOST, NO_ROOM):
                signal.signal(each, signal.SIG_IGN)
        if signum == signal.SIGHUP:
            off_the_terminal()
        terminal = _quieted_stderr()
        try:
            # Read before the workers' ends remove the zygote's folder, where it is noted.
            how = (lost or [lost_worker_told()])[0] if signum == WORKER_LOST else None
            started_here = descendants(os.getpid())
            for end in ends:
                end()
            _kill(started_here)  # Dask's, multiprocessing's; the workers' are gone already
            remove_temporaries_of([out, facts], {os.getpid(), *started_here})
            kept = count_facts(FactStore(facts))
            results = results_state(out, started)
            if signum == NO_ROOM:
                full = os.read(told, 65536).split(b"\0")[0].decode(errors="surrogateescape")
                line = no_room_line(folder_of(full, (facts, out)), kept, facts, results)
            elif how is not None:
                oom_killed = oom_kills_since(oom_kills_before)
                line = worker_lost_line(how, kept, facts, results, oom_killed)
            else:
                line = interrupted_line(kept, facts, results)
            with contextlib.suppress(OSError):  # a reader gone (a pipe's): nothing to tell
                os.write(terminal, f"{line}\n".encode())
        finally:
            os._exit(1 if signum in (WORKER_LOST, NO_ROOM) else 128 + signum)

    once = threading.RLock()
    previous = handled_by(stop)
    previous[WORKER_LOST] = signal.signal(WORKER_LOST, stop)  # from a worker's command
    previous[NO_ROOM] = signal.signal(NO_ROOM, stop)
    try:
        # The thread stays while the error waits: the signal it waits for may be another's.
        with stopped_off_the_main_thread(stop, set(previous)):
            try:
                with news_held_back_for(stopping, command_ended), no_room_told_to(no_room):
                    yield ends
            except WorkerLost as e:
                lost.append(e)
                stop(WORKER_LOST, None)
            except Exception as error:
                # Its command's WORKER_LOST ends the process meanwhile, if it comes.
                stop_came(stopping, command_ended, tells_of_a_lost_worker(error))
                raise
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
        os.close(told)
        os.close(telling)


# What the thread of stopped_off_the_main_thread reads besides signals' numbers (1-64): its
# end, and that the signals after are others' handlers' (handled_meanwhile), or again its.
_WATCH_ENDS, _OTHERS_HANDLE, _OURS_AGAIN = b"\0", b"\xfe", b"\xff"
# The write ends of the pipes such threads read (one per stopped_on_signals).
_WATCHING: list[int] = []
# How long the end waits for that thread (it ends at once, unless it is stopping the process).
_WATCH_END_WAIT_S = 5.0


@contextlib.contextmanager
def stopped_off_the_main_thread(
    stop: Callable[[int, object], None], signums: set[int]
) -> Iterator[None]:
    """Meanwhile a thread calls `stop` for each of `signums` this process receives, as its
    handler on the main thread does. Python runs a handler only once the main thread wakes,
    and a signal taken by another thread wakes it not: waiting for a stuck worker, it never
    did (a worker killed on a loaded machine hung the run). The thread ends with this
    context (it stayed after the run, blocked on its pipe, one more each run)."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch() -> None:
        ours = True
        while (signum := os.read(read, 1)) not in (b"", _WATCH_ENDS):
            if signum in (_OTHERS_HANDLE, _OURS_AGAIN):
                ours = signum == _OURS_AGAIN
            # Not where live mode handles it itself (its Ctrl-C completes the outputs).
            elif ours and signum[0] in signums and signal.getsignal(signum[0]) is stop:
                stop(signum[0], None)

    watcher = threading.Thread(target=watch, name=STOP_THREAD, daemon=True)
    watcher.start()
    _WATCHING.append(write)
    try:
        yield
    finally:
        _WATCHING.remove(write)
        signal.set_wakeup_fd(previous)
        # Told, not left to see the pipe close: a process forked meanwhile (the zygote,
        # its workers) holds its ends too.
        os.write(write, _WATCH_ENDS)
        watcher.join(_WATCH_END_WAIT_S)
        os.close(write)
        os.close(read)


def folder_of(path: str, folders: Iterable[str]) -> str:
    """The first of `folders` that holds `path`; else the folder `path` is in."""
    for folder in folders:
        if path.startswith(folder.rstrip("/") + "/"):
            return folder
    return posixpath.dirname(path)


# How long another thread's error waits before it is reported: a worker that dies closes its
# streams to this process at once, and Beam's threads report them (a traceback each) before
# its command has told this process (WORKER_LOST). Once the stop has begun they are no news.
HELD_BACK_S = 0.5
# How long an error that tells of a worker's lost streams (the main thread's too) waits for its
# command's WORKER_LOST: on a loaded machine (load ~6) it came over 0.5 s after them. Only a
# run whose worker is gone waits so long; its command then ends it at once.
LOST_WORKER_WAIT_S = 15.0
# How long after a worker's command has ended such errors wait no more: a command tells of
# its worker's death before it ends, so the stop has begun by then, but for this process's
# own handling of it. A worker that ended with an error of its own (its command ends with its
# status, no WORKER_LOST) closes its streams too: a run so failing showed its tracebacks 15 s
# late and ended after 50-68 s (a 2-worker run of 18 photos, load ~6).
COMMAND_ENDED_WAIT_S = 2.0
# How often a lost worker's error looks whether a command has ended.
ENDED_POLL_S = 0.05
# The exceptions by which Beam's threads see a worker's streams closed.
LOST_STREAM_MESSAGES = ("Channel closed prematurely",)
# The exception by which Beam's thread that runs a worker's command sees it end with an error.
COMMAND_ENDED_MESSAGES = ("Worker subprocess exited with return code",)


@dataclass
class CommandEnded:
    """When a worker's command was first seen to end with an error (time.monotonic)."""

    at: float | None = None


def stop_came(stopping: threading.Event, command_ended: CommandEnded, lost: bool) -> bool:
    """Whether `stopping` is set within HELD_BACK_S; for an error that tells of a `lost`
    worker, within LOST_WORKER_WAIT_S, and no later than COMMAND_ENDED_WAIT_S after a
    worker's command ended."""
    if not lost:
        return stopping.wait(HELD_BACK_S)
    deadline = time.monotonic() + LOST_WORKER_WAIT_S
    while (now := time.monotonic()) < deadline:
        if command_ended.at is not None:
            deadline = min(deadline, command_ended.at + COMMAND_ENDED_WAIT_S)
        if stopping.wait(max(0.0, min(ENDED_POLL_S, deadline - now))):
            return True
    return stopping.is_set()


def tells_of_a_lost_worker(error: BaseException | None) -> bool:
    """Whether `error`, or one it was raised from or during, is a worker's streams closed."""
    while error is not None:
        if type(error).__name__ == "RpcError" or any(
            message in str(error) for message in LOST_STREAM_MESSAGES
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


def tells_of_an_ended_command(error: BaseException | None) -> bool:
    """Whether `error` is Beam's news that a worker's command ended with an error."""
    return any(message in str(error) for message in COMMAND_ENDED_MESSAGES)


@contextlib.contextmanager
def news_held_back_for(stopping: threading.Event, command_ended: CommandEnded) -> Iterator[None]:
    """Meanwhile, an exception that ends a thread other than the main one, and an error it
    logs, is reported once `stop_came` says no stop came (longer for one that tells of a
    lost worker, the main thread's too), unless `stopping` is set by then: then never. An
    exception that tells of a worker's command ended marks `command_ended`."""

    def reported(report: Callable[[threading.ExceptHookArgs], object]) -> Callable:
        def held_back(args: threading.ExceptHookArgs) -> None:
            if tells_of_an_ended_command(args.exc_value) and command_ended.at is None:
                command_ended.at = time.monotonic()
            if not stop_came(stopping, command_ended, tells_of_a_lost_worker(args.exc_value)):
                report(args)

        return held_back

    def unless_stopping(record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        lost = tells_of_a_lost_worker(record.exc_info[1] if record.exc_info else None)
        if threading.current_thread() is threading.main_thread() and not lost:
            return True
        return not stop_came(stopping, command_ended, lost)

    hook = threading.excepthook
    threading.excepthook = reported(hook)
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(unless_stopping)
    try:
        yield
    finally:
        threading.excepthook = hook
        for handler in handlers:
            handler.removeFilter(unless_stopping)


@contextlib.contextmanager
def handled_meanwhile(handler: Callable[[int, object], None]) -> Iterator[dict[int, object]]:
    """Meanwhile `handler` handles SIGNALS (as handled_by), and a signal that comes meanwhile
    is its alone; yields the handlers it replaced, restored after. The thread of
    stopped_off_the_main_thread may read such a signal only once they are back: it took live
    mode's Ctrl-C ("complete the outputs") for its own, and ended the run (exit 130)."""
    _tell_watchers(_OTHERS_HANDLE)
    previous = handled_by(handler)
    if signal.SIGHUP in previous:
        signal.signal(signal.SIGHUP, off_the_terminal_first(handler))
    try:
        yield previous
    finally:
        for each, replaced in previous.items():
            if signal.getsignal(each) is not signal.SIG_IGN:  # a hang-up's, for good
                signal.signal(each, replaced)
        _tell_watchers(_OURS_AGAIN)


def _tell_watchers(news: bytes) -> None:
    for write in _WATCHING:
        with contextlib.suppress(BlockingIOError):  # 64 KB of signals unread: none to tell
            os.write(write, news)


def off_the_terminal() -> None:
    """Points this process's standard streams that are terminals at /dev/null, as nohup
    would have: once the terminal has hung up, a write to it fails (EIO), and the print of
    a run stopping (live mode's "taking in the files present") ended it with a traceback
    instead. A log file or a pipe keeps what it is told."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for stream in (0, 1, 2):
            with contextlib.suppress(OSError):  # closed
                if stat.S_ISCHR(os.fstat(stream).st_mode):
                    os.dup2(devnull, stream)
    finally:
        os.close(devnull)


def off_the_terminal_first(handler: Callable[[int, object], None]) -> Callable:
    """`handler`, called once off_the_terminal has run; a later SIGHUP is ignored: an SSH
    session that drops sends two (its shell's to the job, the kernel's as the shell ends),
    and a second signal ends live mode at once, its outputs not completed."""

    def hung_up(signum: int, frame: object) -> None:
        off_the_terminal()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        handler(signum, frame)

    return hung_up


def _quieted_stderr() -> int:
    """Points this process's stderr at /dev/null and returns a copy of the real one: Beam's
    threads report the workers they lose while the run stops, which is no news."""
    terminal = os.dup(sys.stderr.fileno())
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.close(devnull)
    return terminal


def descendants(pid: int) -> frozenset[int]:
    """The pids of the processes that process `pid` started, and that they started, ...
    (Linux; elsewhere none known)."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in (e for e in os.scandir("/proc") if e.name.isdigit()):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # /proc/PID/stat: "PID (COMMAND) STATE PPID ...", COMMAND may hold spaces
                with open(f"/proc/{entry.name}/stat", encoding="utf-8") as stat:
                    parents[int(entry.name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    new = {pid}
    while new:
        new = {child for child, parent in parents.items() if parent in new} - found
        found |= new
    return frozenset(found)


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_temporaries_of(folders: Iterable[str], writers: Collection[int]) -> list[str]:
    """Deletes the temporary files under `folders` of the processes `writers` (their pid is
    in the name: transforms/write.py's temporary_name), which will never finish them;
    returns them. Others' are left: a run on another machine may be writing into the same
    folder."""
    marks = tuple(f"{TEMPORARY_MARK}{pid}-" for pid in writers)
    left = sorted(
        {
            m.path
            for folder in folders
            for m in _matched(folder, marked=TEMPORARY_MARK)
            if any(mark in posixpath.basename(m.path) for mark in marks)
        }
    )
    with contextlib.suppress(BeamIOError):  # gone already: nothing to remove
        delete_files(left)
    return left


def _matched(folder: str, depth: str = "**", marked: str = "") -> list:
    """The metadata of the files in `folder` (transforms/write.py's listed_files); none
    where it does not exist."""
    try:
        return listed_files(folder, depth, marked)
    except BeamIOError:
        return []


def results_state(out: str, since: float) -> str:
    """What the results in `out` are, of a run started at `since` (epoch seconds)."""
    written = {
        posixpath.basename(m.path): m.last_updated_in_seconds
        for m in _matched(out, "*")
        if posixpath.basename(m.path) in RUN_FILES
    }
    if not written:
        return f"no results are written in {out} yet"
    new = {name for name, at in written.items() if at >= since}
    if not new:
        return f"the results in {out} are the previous run's, untouched"
    if len(new) < len(written):
        return f"some results in {out} are this run's and some the previous run's"
    if len(new) < len(RUN_FILES):
        return f"some results in {out} are this run's and the others not written yet"
    return f"the results in {out} are this run's"


def interrupted_line(kept: int, facts: str, results: str) -> str:
    """The one line an interrupted run leaves on the terminal."""
    return _stopped_line("interrupted", kept, facts, results)


# The kernel's counts, one a line ("oom_kill 3"), among them the processes its out-of-memory
# killer has killed since the machine started (Linux 4.13 on): whether a worker killed by
# SIGKILL was killed for memory, which the line said ("killed: out of memory?") of any end.
VMSTAT = "/proc/vmstat"


def oom_kills() -> int | None:
    """The processes the kernel's out-of-memory killer has killed on this machine since it
    started; None where the kernel does not say."""
    with contextlib.suppress(OSError, ValueError), open(VMSTAT, encoding="ascii") as counts:
        for line in counts:
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    return None


def oom_kills_since(before: int | None) -> int:
    """The processes the kernel's out-of-memory killer has killed since it had killed
    `before` (0 where it does not say)."""
    now = oom_kills()
    return now - before if now is not None and before is not None else 0


def worker_lost_line(
    lost: WorkerLost, kept: int, facts: str, results: str, oom_killed: int = 0
) -> str:
    """The one line a run leaves on the terminal when a worker process of its died: what is
    known of how (`lost`), and the out-of-memory killer's kills meanwhile, if any."""
    why = lost.why
    if oom_killed:
        processes = "process" if oom_killed == 1 else "processes"
        why += (
            f" (the kernel's out-of-memory killer killed {oom_killed} {processes} on this "
            "machine during the run)"
        )
    return _stopped_line(why, kept, facts, results, lost.then or CARRY_ON)


def no_room_line(folder: str, kept: int, facts: str, results: str) -> str:
    """The one line a run leaves on the terminal when a write found the disk of `folder`
    full."""
    return _stopped_line(
        f"no space left on device in {folder}",
        kept,
        facts,
        results,
        then=f"make room there, then {CARRY_ON}",
    )


# What a stopped run's line says to do, unless it knows better.
CARRY_ON = "run the same command again to carry on"


def _stopped_line(why: str, kept: int, facts: str, results: str, then: str = CARRY_ON) -> str:
    photos = "photo" if kept == 1 else "photos"
    return (
        f"racelens: {why}; the facts of {kept} {photos} analysed so far are kept in "
        f"{facts}, {results}; {then}"
    )
