"""The worker command of a DirectRunner run whose workers are forked (pipeline/workers.py).

Beam starts it as each worker process and watches it: it has the zygote fork a worker with
this process's environment (the addresses Beam gives a worker), waits for that worker and
exits with its status. It imports nothing but the standard library: it must start fast.
Stopping is the launcher's to handle: Ctrl-C, SIGTERM and SIGHUP leave this process alone (no
traceback on the terminal); the launcher kills the worker, and this process ends with it.
"""

from __future__ import annotations

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
EXIT = struct.Struct("!i")  # a worker's exit status, sent back to its command
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
            (code,) = EXIT.unpack(exactly(connection, EXIT.size))
        except ConnectionError:  # the worker died without a word
            _tell_launcher()
            return 1
    return code


def _tell_launcher() -> None:
    """Sends WORKER_LOST to the launcher, where it is still this process's parent: where it
    died, a process that adopted this one (init, a service manager) must not be signalled."""
    launcher = int(os.environ.get(LAUNCHER_VARIABLE, "0"))
    if launcher and os.getppid() == launcher:
        os.kill(launcher, WORKER_LOST)


if __name__ == "__main__":
    sys.exit(main())
