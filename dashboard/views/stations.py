"""Stations: is every camera working? Photos and passages over time, health, last photo.

From stations.parquet (one row per station and time window) and the newest photo of
each station in images.parquet. Refreshes itself like the leaderboard.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import board, data, formats, photos, tallies, ui
from dashboard.charts import HEALTH_COLOURS, activity_chart, chart_span
from transforms.records import DUPLICATE, NO_ATHLETE, PASSAGE, REJECTED, REVIEW

REFRESH_S = 10
# What a station's last photo became (images.parquet's status), in an official's words: the
# page said 'no_athlete', and 'duplicate' for a burst's later frame, which read as a fault.
STATUS_TEXT = {
    PASSAGE: "timed",
    REVIEW: "to review",
    DUPLICATE: "a burst frame or copy",
    REJECTED: "rejected",
    NO_ATHLETE: "no athlete read",
}


def show_activity(windows: pd.DataFrame, race: data.Race) -> None:
    st.subheader("Photos (bars) and passages (line) per window")
    # One legend for all the charts, as text: a legend inside a chart would narrow its plot
    # and misalign the time axes.
    st.caption("Bar colour: " + ", ".join(f"{name} {h}" for h, (name, _) in HEALTH_COLOURS.items()))
    span = chart_span(windows, race.timezone)
    for s in race.stations:
        mine = windows[windows["station_id"] == s.id]
        if not mine.empty:
            chart = activity_chart(mine, board.station_label(s), race.timezone, span)
            st.altair_chart(chart, width="stretch")


def last_photos(images: pd.DataFrame, race: data.Race) -> None:
    st.subheader("Last photo of each station")
    columns = st.columns(max(1, len(race.stations)))
    for column, s in zip(columns, race.stations, strict=True):
        taken = images[(images["station_id"] == s.id) & images["taken_at"].notna()]
        with column:
            st.text(board.station_label(s))
            if taken.empty:
                st.text("No photo yet.")
                continue
            last = taken.sort_values("taken_at").iloc[-1]
            jpeg = photos.annotated_photo(images, last["image_id"], photos.THUMBNAIL_WIDTH)
            if jpeg is not None:
                st.image(jpeg, alt=f"Last photo at {s.name}")
            became = STATUS_TEXT.get(last["status"], last["status"])
            st.text(f"{formats.local_time(last['taken_at'], race.timezone)} · {became}")


@st.fragment(run_every=REFRESH_S)
def live_stations(out: str) -> None:
    race = data.race(out)
    windows = data.stations(out)
    images = data.images(out)
    for note in tallies.awaited_notes(windows, images, race):
        st.info(note, icon=":material/hourglass_empty:")
    st.dataframe(tallies.station_health(windows, images, race), hide_index=True)
    if not windows.empty:
        show_activity(windows, race)
    last_photos(images, race)


settings = ui.settings_or_stop()
ui.header("Stations", data.race(settings.out))
live_stations(settings.out)
