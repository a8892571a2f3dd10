"""The Stations page's charts, apart from the page so that tests build them without it."""

from __future__ import annotations

import altair as alt
import pandas as pd

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
    # Every channel given as its object: given as text or a dict, each is looked up in
    # Altair's whole schema, hashed class by class (~570 JSON dumps a channel: 250 of the
    # 640 CPU ms the page took at 30,000 photos, profiled).
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.75)
        .encode(
            x=x,
            x2=alt.X2("end:T"),
            y=alt.Y("images:Q", title="Photos"),
            y2=alt.Y2Datum(0),
            color=alt.Color("health:N", scale=health, legend=None),
            tooltip=[alt.Tooltip(f) for f in ("start:T", "images:Q", "passages:Q", "health:N")],
        )
    )
    passages = (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(color="#212121"), color="#212121")
        .encode(x=alt.X("middle:T", scale=alt.Scale(domain=span)), y=alt.Y("passages:Q"))
    )
    return alt.layer(bars, passages).properties(height=150, title=station)
