"""How long `racelens run` takes to stop: the seconds from a signal to the launcher's exit
and to the end of the last process it started.

    python bench/stop.py --race R --out OUT [--after N] [--signal ctrl-c|sigint|sigterm]
    e.g. python bench/stop.py --race ../race205/faces --out /tmp/stopped --after 40

Starts `racelens run` on the race R (its images/, course.yaml, startlist.csv) into a fresh
OUT, in a process group of its own as a terminal runs a command; once N photos' facts are
stored, sends the signal (ctrl-c: SIGINT to the whole group; sigint, sigterm: to the
launcher alone); prints the exit code, both times and what the launcher wrote on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SENDS: dict[str, Callable[[int], None]] = {
    "ctrl-c": lambda pid: os.killpg(pid, signal.SIGINT),
    "sigint": lambda pid: os.kill(pid, signal.SIGINT),
    "sigterm": lambda pid: os.kill(pid, signal.SIGTERM),
}


def stored_facts(out: Path) -> int:
    return sum(1 for _ in (out / "facts").rglob("*.json"))


def ended(process: psutil.Process) -> bool:
    """Whether `process` has ended (a zombie has: only its parent's wait is missing)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--race", type=Path, required=True, help="A race folder.")
    parser.add_argument("--out", type=Path, required=True, help="Output folder (emptied).")
    parser.add_argument("--after", type=int, default=20, help="Facts stored first (20).")
    parser.add_argument("--signal", choices=SENDS, default="ctrl-c", help="(ctrl-c).")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    race = args.race
    launcher = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--images", str(race / "images")]
        + ["--course", str(race / "course.yaml"), "--start-list", str(race / "startlist.csv")]
        + ["--out", str(args.out), "--no-progress"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    while stored_facts(args.out) < args.after and launcher.poll() is None:
        time.sleep(0.01)
    started = psutil.Process(launcher.pid).children(recursive=True)
    sent = time.monotonic()
    SENDS[args.signal](launcher.pid)
    _, err = launcher.communicate()
    exited = time.monotonic() - sent
    while not all(ended(p) for p in started):
        time.sleep(0.001)
    print(
        f"{args.signal} after {stored_facts(args.out)} facts: exit {launcher.returncode} "
        f"{exited:.3f} s after the signal, its {len(started)} processes all ended "
        f"{time.monotonic() - sent:.3f} s after it; stderr: {err!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
