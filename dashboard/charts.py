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
    # Live: no photo yet while runners were due, and the station's photos may still come.
    "awaited": ("light grey", "#bdbdbd"),
}


def passages_line(frame: pd.DataFrame) -> pd.DataFrame:
    """The passages line's points: each window's at its middle, and a zero at the empty window
    each side of a gap (stations.parquet has no row for a window without photos), so the line
    drops to zero and runs along it. Joined point to point, a camera's clock off made passages
    seem to go on through the hours between (a rehearsal); a zero for every empty window
    would be thousands of points for a camera set to another day. So also before the first
    window and after the last: a station that stopped sending photos ends in a drop, not in
    its last count, and the first window rises from zero as any after a gap."""
    frame = frame.sort_values("start")
    length = frame["end"] - frame["start"]  # the windows are fixed: one length
    after, before = frame["start"].shift(-1), frame["end"].shift(1)
    gap_after = (frame["end"] < after) | after.isna()
    gap_before = (frame["start"] > before) | before.isna()
    empty = pd.concat(
        [
            frame.loc[gap_after, "end"] + length[gap_after] / 2,
            frame.loc[gap_before, "start"] - length[gap_before] / 2,
        ]
    )
    zeros = pd.DataFrame({"middle": empty.drop_duplicates(), "passages": 0})
    return pd.concat([frame[["middle", "passages"]], zeros]).sort_values("middle")


def chart_span(windows: pd.DataFrame, timezone: str) -> tuple[str, str]:
    """The time axis every station's chart shares (local, as the charts draw it): the race's
    windows and one more each side, where the passages lines start and end at zero."""
    length = (windows["window_end"] - windows["window_start"]).max()
    first, last = windows["window_start"].min() - length, windows["window_end"].max() + length
    start, end = (at.tz_convert(timezone).tz_localize(None).isoformat() for at in (first, last))
    return start, end


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
        alt.Chart(passages_line(frame))
        .mark_line(point=alt.OverlayMarkDef(color="#212121"), color="#212121")
        .encode(x=alt.X("middle:T", scale=alt.Scale(domain=span)), y=alt.Y("passages:Q"))
    )
    return alt.layer(bars, passages).properties(height=150, title=station)
