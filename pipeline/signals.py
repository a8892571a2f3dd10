"""The signals that stop racelens, and stopping at once on them: standard library only, so
that the `racelens` command (pipeline/__main__.py) handles them before importing the rest."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

# The signals that stop racelens: Ctrl-C, SIGTERM (docker stop, systemd, a CI timeout) and
# SIGHUP (the terminal hung up).
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, object], None]


def handled_by(handler: Handler) -> dict[int, object]:
    """Makes `handler` handle SIGNALS, but those this process ignores: nohup's SIGHUP, and
    Ctrl-C for a command a script starts in the background, which the script ends its own
    way (run_local.sh --live: SIGTERM); returns the handlers it replaced."""
    return {
        each: signal.signal(each, handler)
        for each in SIGNALS
        if signal.getsignal(each) is not signal.SIG_IGN
    }


def ending_at_once(line: bytes) -> Handler:
    """A handler that ends this process at once, exit 128 + the signal, with `line` on
    stderr and no traceback of whatever it was doing (importing, mostly)."""

    def end(signum: int, _: object) -> None:
        with contextlib.suppress(OSError):  # a terminal hung up
            os.write(2, line)
        os._exit(128 + signum)

    return end
