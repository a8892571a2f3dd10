"""What the pages share: the start-up check, the header, notices.

Text that comes from outside (start-list names, file paths, error messages) goes
through st.text, st.code or a dataframe here, never through Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dashboard import data
from dashboard.retime import Retimer
from dashboard.settings import Settings, SettingsError, current_settings
from pipeline.live_lock import live_run_log

WAIT_FOR_RESULTS_S = 2
OFFICIAL_NAME = "official_name"  # outlives the review page's widget on the other pages
# The official's name in the address too: a link opened in a new tab, or a reload, starts a
# new session, and without it that session's decisions were logged without a name.
OFFICIAL_PARAM = "official"
NAME_FROM_LINK = "official_from_link"
NAME_MAX_CHARS = 40
UNNAMED = "official"  # the log's `by` for a decision made before a name was given


def settings_or_stop() -> Settings:
    """The dashboard's settings, or a friendly error and the end of the page."""
    try:
        settings = current_settings()
    except SettingsError as e:
        problem("The dashboard cannot start:", str(e))
        st.stop()
    if not data.has_results(settings.out):
        problem("No results in this folder yet.", settings.out)
        if live_run_log(settings.out) is not None:
            st.caption("The live run has no photo yet: its results come with the first ones.")
            _await_first_results(settings.out)
        st.stop()
    return settings


@st.fragment(run_every=WAIT_FOR_RESULTS_S)
def _await_first_results(out: str) -> None:
    """Shows the page once a live run has written its first results (race morning: the
    dashboard is opened before any camera uploads)."""
    if data.has_results(out):
        st.rerun()


@st.fragment(run_every=WAIT_FOR_RESULTS_S)
def rerun_on_change(path: str, seen: data.Version) -> None:
    """Runs the page again once the file at `path` is no longer as `seen`: a live run or a
    re-timing wrote it, while the official waits on a page that runs only on a click."""
    if data.version(path) != seen:
        st.rerun()


def header(title: str, race: data.Race) -> None:
    st.title(title)
    st.text(race.name)


def problem(summary: str, detail: str) -> None:
    """An error whose detail (a path, an id, a message) is shown verbatim."""
    st.error(summary)
    st.code(detail, language=None)


def log_problems(problems: Sequence[str]) -> None:
    if problems:
        st.warning(
            f"{len(problems)} line(s) of the corrections log cannot be read and are ignored "
            "here; fix them in the file (racelens results refuses the log until then)."
        )
        st.code("\n".join(problems), language=None)


def retime_status(retimer: Retimer) -> None:
    """Whether the latest decisions are in the results yet."""
    if retimer.busy:
        st.info("Re-timing the results with the latest decisions…", icon=":material/sync:")
    elif retimer.last is not None and not retimer.last.ok:
        problem("Re-timing after the last decision failed:", retimer.last.message)


def official_name() -> str:
    """Who the official is, as they typed it in this session or as the address says."""
    if OFFICIAL_NAME not in st.session_state:
        given = (st.query_params.get(OFFICIAL_PARAM) or "").strip()[:NAME_MAX_CHARS]
        st.session_state[OFFICIAL_NAME] = given
        st.session_state[NAME_FROM_LINK] = bool(given)
    return st.session_state[OFFICIAL_NAME]


def name_from_link() -> bool:
    """Did the name come with the address, not typed in this session? A link copied to a
    colleague carries it too, and their decisions would be logged under it unnoticed."""
    return bool(official_name()) and st.session_state.get(NAME_FROM_LINK, False)


def official_params() -> dict[str, str]:
    """The query parameters that carry the official's name along a link."""
    name = official_name()
    return {OFFICIAL_PARAM: name} if name else {}
