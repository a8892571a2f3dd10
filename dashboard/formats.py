"""How the dashboard writes values: blanks for what is missing, times as timing software does.

Durations are h:mm:ss.t (`transforms.export.clock`, as in results.csv), paces m:ss per km,
instants h:mm:ss in the race's own time zone.
"""

from __future__ import annotations

import re

import pandas as pd

from transforms.export import clock, pace


def missing(value: object) -> bool:
    return value is None or bool(pd.isna(value))


def place_text(value: object) -> str:
    return "" if missing(value) else str(int(value))  # type: ignore[call-overload]


def clock_or_blank(seconds: object) -> str:
    return "" if missing(seconds) else clock(float(seconds))  # type: ignore[arg-type]


def pace_or_blank(seconds_per_km: object) -> str:
    return "" if missing(seconds_per_km) else pace(float(seconds_per_km))  # type: ignore[arg-type]


def local_time(value: object, timezone: str) -> str:
    """A UTC instant as h:mm:ss in the race's time zone; '' for no time."""
    if missing(value):
        return ""
    return pd.Timestamp(value).tz_convert(timezone).strftime("%H:%M:%S")  # type: ignore[arg-type]


def exact_local_time(value: object, timezone: str) -> str:
    """A UTC instant as h:mm:ss with its fraction of a second (10:21:40.25) in the race's
    time zone, for a time the official may keep as it is: an assignment at local_time's
    whole second would time the photo up to 0.99 s early."""
    if missing(value):
        return ""
    local = pd.Timestamp(value).tz_convert(timezone)  # type: ignore[arg-type]
    return local.strftime("%H:%M:%S.%f").rstrip("0").rstrip(".")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: str) -> str:
    """Text from outside (a file name) for a label Streamlit renders as Markdown, shown as
    written: `*` or `[` in a photographer's file name is not formatting."""
    return _MARKDOWN.sub(r"\\\1", text)
