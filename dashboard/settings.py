"""What the dashboard runs on: the results folder, the corrections log and the password.

`racelens dashboard` starts Streamlit with the app's own arguments after `--`:

    streamlit run dashboard/app.py -- --out DIR [--corrections FILE] [--password-file FILE]

The password may also come from the environment (RACELENS_DASHBOARD_PASSWORD); when
there is one, every page asks for it. Without --corrections the log is the one the results
are kept from: a live run's on the folder (the one it reads now), else the one the run
recorded in run.json, else OUT/corrections.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.live_lock import live_run_log

PASSWORD_ENV = "RACELENS_DASHBOARD_PASSWORD"
CORRECTIONS_FILE = "corrections.csv"
RUN_FILE = "run.json"


class SettingsError(ValueError):
    """Arguments the dashboard cannot start with; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    out: str  # absolute path of the results folder
    corrections: str  # the corrections log the dashboard appends to
    password: str | None = None


def _parser() -> argparse.ArgumentParser:
    # exit_on_error=False: a bad argument must become a message on the page, not a dead server.
    parser = argparse.ArgumentParser(prog="dashboard/app.py", add_help=False, exit_on_error=False)
    parser.add_argument("--out")
    parser.add_argument("--corrections")
    parser.add_argument("--password-file")
    return parser


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except OSError as e:
        raise SettingsError(f"--password-file {path}: cannot read: {e.strerror}") from e
    if not password:
        raise SettingsError(f"--password-file {path}: the file is empty")
    return password


def _recorded_log(out: str) -> str | None:
    """The corrections log the run on `out` recorded in run.json, if it had one."""
    try:
        with open(os.path.join(out, RUN_FILE), encoding="utf-8") as f:
            log = json.load(f).get("corrections")
    except (OSError, ValueError, AttributeError):  # none yet, or not a run's
        return None
    # A log in a bucket (gs://) is none the dashboard can append to.
    return log if isinstance(log, str) and log and "://" not in log else None


def results_log(out: str) -> str:
    """The log the results in `out` are kept from. A dashboard on its own log showed the
    run's decided items again, and its re-timing with that log dropped every decision the
    run had timed in (`racelens run --corrections decisions.csv`, then `racelens
    dashboard --out`)."""
    return live_run_log(out) or _recorded_log(out) or os.path.join(out, CORRECTIONS_FILE)


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Settings from the app's arguments and the environment; raises SettingsError."""
    try:
        args, _ = _parser().parse_known_args(list(argv))
    except argparse.ArgumentError as e:
        raise SettingsError(str(e)) from e
    if not args.out:
        raise SettingsError(
            "no results folder: start the dashboard with racelens dashboard --out DIR"
        )
    out = os.path.abspath(args.out)
    corrections = os.path.abspath(args.corrections or results_log(out))
    password = _read_password(args.password_file) if args.password_file else None
    return Settings(out, corrections, password or environ.get(PASSWORD_ENV) or None)


def current_settings() -> Settings:
    """The settings of this dashboard process (Streamlit passes the app's arguments in argv)."""
    return parse_settings(sys.argv[1:], os.environ)
