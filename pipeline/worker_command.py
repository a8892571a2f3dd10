"""The worker command of a DirectRunner run whose workers are forked (pipeline/workers.py).

Beam starts it as each worker process and watches it: it has the zygote fork a worker with
this process's environment (the addresses Beam gives a worker), waits for that worker and
exits with its status. It imports nothing but the standard library: it must start fast.
Stopping is the launcher's to handle: Ctrl-C, SIGTERM and SIGHUP leave this process alone (no
traceback on the terminal); the launcher kills the worker, and this process ends with it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shlex
import signal
import socket
import struct
import sys

ADDRESS_VARIABLE = "RACELENS_WORKER_ZYGOTE"  # the zygote's socket
LAUNCHER_VARIABLE = "RACELENS_WORKER_LAUNCHER"  # the pid of the launcher the zygote serves
# What this command sends its launcher when its worker died without a word (the kernel's OOM
# killer, say): Beam would end the run with its threads' tracebacks (pipeline/interrupted.py
# ends it with one line instead).
WORKER_LOST = signal.SIGUSR1


class WorkerLost(Exception):
    """Worker processes died without a word (Dask's, which it restarted and which died
    again, or which never started): the launcher ends the run as on WORKER_LOST
    (pipeline/interrupted.py), its one line saying `why` (what is known of how they ended)
    and, where given, what to do `then`."""

    def __init__(self, why: str, then: str | None = None) -> None:
        super().__init__(why)
        self.why, self.then = why, then


# What a lost worker's line says where nothing more is known of how it ended.
LOST_WITHOUT_A_WORD = "a worker process ended without a word"


def ended_how(exitcode: int) -> str:
    """How a process ended, from its exit code as multiprocessing gives it (-N: killed by
    signal N): said as it is, not guessed at (the OOM killer is one sender of SIGKILL)."""
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = f" ({signal.Signals(-exitcode).name})"
    except ValueError:  # a real-time signal, say: no name
        name = ""
    return f"was killed by signal {-exitcode}{name}"


# The launcher's thread that stops it on a signal another thread took (pipeline/interrupted.py):
# it holds no lock, only waits to read, so the zygote may be forked beside it.
STOP_THREAD = "racelens-stop"
# What a worker's command reads: who says it, and how the worker ended. The worker itself
# sends its exit status as it ends; the zygote, once the worker has ended (after whatever it
# sent), its exit code as multiprocessing gives it (-N: killed by signal N), which the command
# reads where the worker died without a word.
EXIT = struct.Struct("!ci")
SAID_BY_WORKER, SAID_BY_ZYGOTE = b"w", b"z"
# A command whose worker died without a word leaves how it ended in a file so named beside the
# zygote's socket, for the launcher's one line, before it tells the launcher.
LOST_NOTE = "lost-"
SIZE = struct.Struct("!I")  # the length of the environment that follows it


def command() -> str:
    """The command Beam runs for each worker, through a shell that it replaces: a shell
    left waiting would end on Ctrl-C, and Beam would report its worker dead."""
    return f"exec {shlex.quote(sys.executable)} -m pipeline.worker_command"


def exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the other end closed")
        data += chunk
    return data


def main() -> int:
    """Has the zygote fork a worker with this process's environment, waits for it, returns
    its exit status."""
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(os.environ[ADDRESS_VARIABLE])
        environment = json.dumps(dict(os.environ)).encode()
        connection.sendall(SIZE.pack(len(environment)) + environment)
        try:
            said_by, code = EXIT.unpack(exactly(connection, EXIT.size))
        except ConnectionError:  # the zygote gone too: killed with its group
            said_by, code = SAID_BY_ZYGOTE, None
    if said_by == SAID_BY_WORKER:
        return code
    _tell_launcher(LOST_WITHOUT_A_WORD if code is None else f"a worker process {ended_how(code)}")
    return 1


def _tell_launcher(how: str) -> None:
    """Sends WORKER_LOST to the launcher, where it is still this process's parent (where it
    died, a process that adopted this one, init or a service manager, must not be
    signalled), once `how` its worker ended is noted for it (`lost_worker_told`)."""
    launcher = int(os.environ.get(LAUNCHER_VARIABLE, "0"))
    if not launcher or os.getppid() != launcher:
        return
    with contextlib.suppress(OSError):  # the zygote's folder gone: the launcher is stopping
        with open(_note_of(os.getpid()), "w", encoding="utf-8") as note:
            note.write(how)
    os.kill(launcher, WORKER_LOST)


def lost_worker_told() -> WorkerLost:
    """In the launcher, on WORKER_LOST: how a worker ended, as its command noted it (none
    noted where no zygote serves: not its folder, but the working one's files, "lost-*")."""
    for note in glob.glob(_note_of("*")) if ADDRESS_VARIABLE in os.environ else ():
        with contextlib.suppress(OSError), open(note, encoding="utf-8") as told:
            return WorkerLost(told.read())
    return WorkerLost(LOST_WITHOUT_A_WORD)


def _note_of(command: int | str) -> str:
    """The file in which the command of pid `command` notes how its worker ended."""
    zygote = os.environ.get(ADDRESS_VARIABLE, "")
    return os.path.join(os.path.dirname(zygote), f"{LOST_NOTE}{command}")


if __name__ == "__main__":
    sys.exit(main())
