"""`python -m pipeline ...` is the `racelens` command; `command` is the console script's entry
point (setup.py).

It imports nothing of racelens but the signals before handling them: Ctrl-C while the rest is
imported (the first 0.06-0.15 s) printed a KeyboardInterrupt's traceback, where a later one
ends in one line, exit 130. pipeline.cli's main takes over once imported.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from pipeline.signals import ending_at_once, handled_by


def command() -> NoReturn:
    handled_by(ending_at_once(b"racelens: interrupted\n"))
    from pipeline.cli import main

    sys.exit(main())


if __name__ == "__main__":
    command()
