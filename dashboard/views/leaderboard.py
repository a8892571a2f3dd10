"""Leaderboard: the podium as plain text, then every athlete with times, gaps and splits.

The board refreshes itself while a run writes new results: it is a fragment that reruns
every few seconds, and the files are read again only when they have changed.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import board, data, formats, ui
from dashboard.retime import retimer
from dashboard.settings import Settings

REFRESH_S = 5
LEADERS_PLOTTED = 10
ROWS_SHOWN = 25
ROW_PX = 35  # Streamlit's default row height in a dataframe
OVERALL = "Overall"


def show_podium(rows: pd.DataFrame, category: str | None) -> None:
    st.subheader(f"Podium, {category}" if category else "Podium")
    placings = board.podium(rows, category)
    with st.container(border=True):
        for placing in placings:
            st.text(placing.line())
        if not placings:
            st.text("No finishers yet.")


def show_counts(rows: pd.DataFrame) -> None:
    counts = board.status_counts(rows)
    for column, (status, count) in zip(st.columns(len(counts)), counts.items(), strict=True):
        column.metric(status.upper(), count)


def show_table(rows: pd.DataFrame, race: data.Race, category: str | None, show: str) -> None:
    shown = board.table(rows, race, category, show)
    picked = st.dataframe(
        shown,
        hide_index=True,
        column_config={
            name: st.column_config.Column(width=width, help=board.HELP.get(name, name))
            for name, width in board.column_widths(shown).items()
        },
        # Tall enough for a category's whole field, where officials expect a results list.
        height=ROW_PX * (min(len(rows), ROWS_SHOWN) + 1) + 3,
        on_select="rerun",
        selection_mode="single-row",
        key="board_table",
    )
    st.caption("Select a row to open that athlete's page.")
    if picked.selection.rows:
        bib = rows.iloc[picked.selection.rows[0]]["bib"]
        st.switch_page("views/athlete.py", query_params={"bib": bib})


def show_positions(rows: pd.DataFrame, race: data.Race) -> None:
    positions = board.positions(rows, race, LEADERS_PLOTTED)
    if positions.empty:
        return
    st.subheader("Positions through the stations")
    chart = (
        alt.Chart(positions)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "station:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelAngle=0)
            ),
            y=alt.Y("position:Q", scale=alt.Scale(reverse=True, zero=False), title="Position"),
            color=alt.Color("athlete:N", title=f"First {LEADERS_PLOTTED}"),
            tooltip=["athlete", "station", "position", "split"],
        )
    )
    st.altair_chart(chart, width="stretch")


@st.fragment(run_every=REFRESH_S)
def live_board(settings: Settings, category: str | None, query: str, show: str) -> None:
    out = settings.out
    ui.retime_status(retimer(out, settings.corrections))
    race = data.race(out)
    everyone = data.leaderboard(out)
    show_podium(everyone, category)
    show_counts(board.select(everyone, category))
    if note := board.running_note(everyone, race):
        st.caption(note)
    rows = board.select(everyone, category, query)
    changed = pd.Timestamp(data.results_written_at(out), unit="ns", tz="UTC")
    st.caption(
        f"Results written at {formats.local_time(changed, race.timezone)}; refreshed every "
        f"{REFRESH_S} s."
    )
    show_table(rows, race, category, show)
    show_positions(rows, race)


settings = ui.settings_or_stop()
race = data.race(settings.out)
ui.header("Leaderboard", race)
left, middle, right = st.columns([2, 2, 3])
category = left.selectbox(
    "Category", [OVERALL, *board.categories(data.leaderboard(settings.out))], key="category"
)
query = middle.text_input("Search bib or name", key="search", placeholder="e.g. 123 or Berg")
show = right.segmented_control(
    "Per station", board.PER_STATION, default=board.SPLIT, key="per_station"
)
live_board(settings, None if category == OVERALL else category, query, show or board.SPLIT)
