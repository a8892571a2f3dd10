"""Stations: is every camera working? Photos and passages over time, health, last photo.

From stations.parquet (one row per station and time window) and the newest photo of
each station in images.parquet. Refreshes itself like the leaderboard.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import board, data, formats, photos, tallies, ui

REFRESH_S = 10
HEALTH_COLOURS = {  # health state: (name of the colour, the colour)
    "ok": ("green", "#2e7d32"),
    "covered": ("red", "#c62828"),
    "blurred": ("orange", "#ef6c00"),
    "frozen": ("purple", "#6a1b9a"),
    "silent": ("grey", "#757575"),
}


def activity_chart(windows: pd.DataFrame, station: str, timezone: str, span: tuple) -> alt.Chart:
    """Photos per window as bars coloured by the camera's health, passages as a line."""
    frame = windows.assign(
        start=windows["window_start"].dt.tz_convert(timezone).dt.tz_localize(None),
        end=windows["window_end"].dt.tz_convert(timezone).dt.tz_localize(None),
    )
    frame["middle"] = frame["start"] + (frame["end"] - frame["start"]) / 2
    x = alt.X("start:T", title=None, scale=alt.Scale(domain=span))
    health = alt.Scale(domain=list(HEALTH_COLOURS), range=[c for _, c in HEALTH_COLOURS.values()])
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.75)
        .encode(
            x=x,
            x2="end:T",
            y=alt.Y("images:Q", title="Photos"),
            y2=alt.datum(0),
            color=alt.Color("health:N", scale=health, legend=None),
            tooltip=["start:T", "images", "passages", "health"],
        )
    )
    passages = (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(color="#212121"), color="#212121")
        .encode(x=alt.X("middle:T", scale=alt.Scale(domain=span)), y="passages:Q")
    )
    return alt.layer(bars, passages).properties(height=150, title=station)


def show_activity(windows: pd.DataFrame, race: data.Race) -> None:
    st.subheader("Photos (bars) and passages (line) per window")
    # One legend for all the charts, as text: a legend inside a chart would narrow its plot
    # and misalign the time axes.
    st.caption("Bar colour: " + ", ".join(f"{name} {h}" for h, (name, _) in HEALTH_COLOURS.items()))
    local = windows[["window_start", "window_end"]].apply(
        lambda c: c.dt.tz_convert(race.timezone).dt.tz_localize(None)
    )
    span = (local["window_start"].min().isoformat(), local["window_end"].max().isoformat())
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
            st.text(f"{formats.local_time(last['taken_at'], race.timezone)} · {last['status']}")


@st.fragment(run_every=REFRESH_S)
def live_stations(out: str) -> None:
    race = data.race(out)
    windows = data.stations(out)
    images = data.images(out)
    st.dataframe(tallies.station_health(windows, images, race), hide_index=True)
    if not windows.empty:
        show_activity(windows, race)
    last_photos(images, race)


settings = ui.settings_or_stop()
ui.header("Stations", data.race(settings.out))
live_stations(settings.out)
