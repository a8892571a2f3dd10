"""Stations: is every camera working? Photos and passages over time, health, last photo.

From stations.parquet (one row per station and time window) and the newest photo of
each station in images.parquet. Refreshes itself like the leaderboard.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import board, data, photos, ui

REFRESH_S = 10
HEALTH_COLOURS = {
    "ok": "#2e7d32",
    "covered": "#c62828",
    "blurred": "#ef6c00",
    "frozen": "#6a1b9a",
    "silent": "#757575",
}


def _names(race: data.Race) -> dict[str, str]:
    return {s.id: board.station_label(s) for s in race.stations}


def station_table(windows: pd.DataFrame, images: pd.DataFrame, race: data.Race) -> pd.DataFrame:
    """One row per station in course order: health now, totals, the last photo's time."""
    rows = []
    for s in race.stations:
        mine = windows[windows["station_id"] == s.id].sort_values("window_start")
        taken = images.loc[images["station_id"] == s.id, "taken_at"].dropna()
        rows.append(
            {
                "Station": board.station_label(s),
                "Health now": mine["health"].iloc[-1] if not mine.empty else "no photos",
                "Windows not ok": int((mine["health"] != "ok").sum()),
                "Photos": int(mine["images"].sum()),
                "Passages": int(mine["passages"].sum()),
                "Last photo": ui.local_time(
                    taken.max() if not taken.empty else None, race.timezone
                ),
            }
        )
    return pd.DataFrame(rows)


def activity_chart(windows: pd.DataFrame, race: data.Race) -> alt.Chart:
    """Photos and passages per window, one small chart per station, health as the dots' colour."""
    frame = windows.assign(
        station=windows["station_id"].map(_names(race)),
        start=windows["window_start"].dt.tz_convert(race.timezone).dt.tz_localize(None),
    )
    long = frame.melt(
        id_vars=["station", "start", "health"],
        value_vars=["images", "passages"],
        var_name="count of",
        value_name="n",
    )
    health = alt.Scale(domain=list(HEALTH_COLOURS), range=list(HEALTH_COLOURS.values()))
    base = alt.Chart(long).encode(
        x=alt.X("start:T", title=f"Window start ({race.timezone})"),
        y=alt.Y("n:Q", title=None),
        tooltip=["station", "start:T", "count of", "n", "health"],
    )
    lines = base.mark_line().encode(color=alt.Color("count of:N", title="Per window"))
    dots = base.mark_point(filled=True, size=50).encode(
        color=alt.Color("health:N", scale=health, title="Health"), shape="count of:N"
    )
    order = [board.station_label(s) for s in race.stations]
    return (
        alt.layer(lines, dots, data=long)
        .properties(height=110)
        .facet(row=alt.Row("station:N", sort=order, title=None))
        .resolve_scale(color="independent")
    )


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
            st.text(f"{ui.local_time(last['taken_at'], race.timezone)} · {last['status']}")


@st.fragment(run_every=REFRESH_S)
def live_stations(out: str) -> None:
    race = data.race(out)
    windows = data.stations(out)
    images = data.images(out)
    st.dataframe(station_table(windows, images, race), hide_index=True)
    if not windows.empty:
        st.subheader("Photos and passages over time")
        st.altair_chart(activity_chart(windows, race), width="stretch")
    last_photos(images, race)


settings = ui.settings_or_stop()
ui.header("Stations", data.race(settings.out))
live_stations(settings.out)
