"""Athlete: one athlete's result, passages and splits, and every photo of them.

The photos are those the pipeline identified the athlete on, by bib or by face
(athlete_photos.parquet, the same list `racelens photos` exports).

`?bib=123` opens an athlete directly (the leaderboard links here). Each photo links to
the review page, where an official can correct what the pipeline made of it; the photos
download as one zip. An official disqualifies or retires the athlete here (or reinstates
one they had), for what no photo shows: a runner who tells the finish they stopped, a rule
broken.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import board, data, formats, photos, ui
from dashboard.retime import retimer
from dashboard.review_queue import (
    PLACED_BY,
    PLACED_BY_NOTES,
    Item,
    Spells,
    items_of,
    pending,
    reason_text,
    station_text,
    text_or_none,
    where_text,
)
from dashboard.settings import Settings
from transforms.corrections import (
    ATHLETE_ACTIONS,
    FROM_GUN,
    START_ACTIONS,
    Correction,
    append_corrections,
    in_order,
)
from transforms.schemas import LEADERBOARD_FILE

PHOTO_COLUMNS = 4
HOW = {"bib_ocr": "by bib", "face_match": "by face", "manual": "by an official"}
BIB_KEY = "athlete_bib"
NOTICE = "athlete_notice"
REINSTATE = "reinstate"
DECISIONS = {"dsq": "Disqualify", "dnf": "Did not finish", REINSTATE: "Reinstate"}
DONE = {"dsq": "Disqualified", "dnf": "Retired (DNF)", REINSTATE: "Reinstated"}
# The status a decision gives the athlete, shown until the re-timing puts it in the results
# (reinstated: as they ran, which only the re-timing knows).
DECIDED_STATUS = {"dsq": "dsq", "dnf": "dnf", REINSTATE: "reinstated"}
# An early start timed from the wave's gun (the review page's "From the gun"): its notice links
# here to change it, and the page showed nothing of it. It stands as a decision that leaves
# the athlete racing; reinstating times them from their start photo again.
DECIDED = ATHLETE_ACTIONS + START_ACTIONS
STANDING = {FROM_GUN: "Timed from the gun"}
UNDO = {FROM_GUN: "Time from the start photo"}
RETIMING = "Re-timing with this decision: place and times follow."


def _address_names_athlete() -> None:
    """The address names the chosen athlete: a link to share, and what a reload shows."""
    if st.session_state[BIB_KEY] is None:
        st.query_params.pop("bib", None)
    else:
        st.query_params["bib"] = st.session_state[BIB_KEY]


def choose_athlete(everyone: pd.DataFrame) -> pd.Series | None:
    names = dict(zip(everyone["bib"], everyone["name"].fillna(""), strict=True))
    asked = st.query_params.get("bib")
    if asked is not None and asked not in names:
        ui.problem("No athlete has this bib:", asked)
        del st.query_params["bib"]
    elif asked is not None:
        st.session_state[BIB_KEY] = asked
    bib = st.selectbox(
        "Athlete (type a bib or a name)",
        list(names),
        format_func=lambda b: f"{b}  {names[b]}",
        key=BIB_KEY,
        index=None,
        placeholder="Choose an athlete",
        on_change=_address_names_athlete,
    )
    return None if bib is None else everyone[everyone["bib"] == bib].iloc[0]


def show_result(athlete: pd.Series, pending: Correction | None) -> None:
    """The athlete's result, with the status of an official's decision the results do not
    show yet (`pending`): the page kept the status of before the decision, until it ran
    again by chance."""
    st.text(f"{athlete['name']} · bib {athlete['bib']} · {athlete['category'] or ''}".strip())
    status = athlete["status"] if pending is None else DECIDED_STATUS.get(pending.action)
    status = status or athlete["status"]
    facts = {
        "Place": formats.place_text(athlete["rank"]),
        "Category place": formats.place_text(athlete["category_rank"]),
        "Status": status.upper(),
        "Chip": formats.clock_or_blank(athlete["chip_s"]),
        "Gun": formats.clock_or_blank(athlete["gun_s"]),
        "Chip pace /km": formats.pace_or_blank(athlete["pace_s_per_km"]),
    }
    for column, (label, value) in zip(st.columns(len(facts)), facts.items(), strict=True):
        column.metric(label, value or "–")


def _decide_about(action: str, bib: str, settings: Settings) -> None:
    row = Correction("", action, bib, "", None, datetime.now(UTC), ui.official_name() or ui.UNNAMED)
    try:
        append_corrections(settings.corrections, [row])
    except OSError as e:
        st.session_state[NOTICE] = (False, str(e))
        return
    retimer(settings.out, settings.corrections).request()
    st.session_state[NOTICE] = (True, f"{DONE[action]} bib {bib}.")


def latest_decision(bib: str, corrections: tuple[Correction, ...]) -> Correction | None:
    """The official's last disqualification, retirement, timing from the gun or reinstatement
    of the athlete."""
    about = [c for c in in_order(corrections) if c.bib == bib and c.action in DECIDED]
    return about[-1] if about else None


def standing_decision(bib: str, corrections: tuple[Correction, ...]) -> Correction | None:
    """The official's disqualification, retirement or timing from the gun of the athlete that
    stands, if any."""
    latest = latest_decision(bib, corrections)
    return latest if latest is not None and latest.action != REINSTATE else None


def pending_decision(
    bib: str, corrections: tuple[Correction, ...], results: data.Version
) -> Correction | None:
    """The official's last decision about the athlete where it is newer than the results
    (of `results`' version): the re-timing has yet to put it in."""
    latest = latest_decision(bib, corrections)
    written = datetime.fromtimestamp(results[2] / 1e9, UTC)
    at = latest.decided_at if latest is not None else None
    return latest if at is not None and at > written else None


def offered(standing: Correction | None) -> list[tuple[str, str]]:
    """(action, label) of the decisions offered where `standing` stands: a disqualification or
    retirement can only be undone (reinstate); an athlete timed from the gun is still racing,
    and may be disqualified or retired too."""
    ends = [(action, DECISIONS[action]) for action in ("dsq", "dnf")]
    if standing is None:
        return ends
    undo = [(REINSTATE, UNDO.get(standing.action, DECISIONS[REINSTATE]))]
    return undo + (ends if standing.action in UNDO else [])


def official_decision(bib: str, settings: Settings, log: tuple[Correction, ...]) -> None:
    """Disqualify, retire or reinstate the athlete: logged as the review page logs it (`log`:
    its decisions so far)."""
    notice = st.session_state.pop(NOTICE, None)
    if notice is not None:
        (st.success if notice[0] else st.error)(notice[1])
    standing = standing_decision(bib, log)
    if standing is not None:
        what = STANDING.get(standing.action, standing.action.upper())
        st.text(f"{what} by {standing.by or 'an official'}.")
    name = ui.official_name()
    st.caption(
        f"Decisions here are logged as {name}'s."
        if name
        else "Give your name on the review page to be named in the log."
    )
    for column, (action, label) in zip(st.columns(4), offered(standing), strict=False):
        column.button(
            label,
            key=f"athlete_{action}",
            on_click=_decide_about,
            args=(action, bib, settings),
            width="stretch",
        )


def show_placing(how: str | None) -> None:
    """How the photo's station was decided, where it was inferred (the review page's note,
    its why on hover): a photo at an out-and-back spot or a loop's line is at a station the
    pipeline concluded, which an official may overturn by correcting it."""
    if how in PLACED_BY:
        what, why = PLACED_BY[how]
        st.caption(what, help=PLACED_BY_NOTES[how] if why else None)


def at_station(item: Item) -> dict[str, str]:
    """The link's ?station=, which of the items of one photo it opens (a finish photo stands
    for each checkpoint the athlete was not seen at)."""
    return {"station": item.station_id} if item.station_id else {}


def show_open_items(
    bib: str, images: pd.DataFrame, log: tuple[Correction, ...], race: data.Race, out: str
) -> None:
    """The review queue's open items naming the athlete (`log`: the decisions so far), each
    a link to it: the page said 'not seen' at a checkpoint without a word of the photo of
    them the queue holds there, unplaced (a demo's out-and-back turn: bib read at 100 %,
    3.3 km or 6.7 km)."""
    spells = Spells.of(data.stations(out), images)
    items = pending(items_of(data.review(out)), log, spells)
    mine = [i for i in items if bib in i.candidates]
    if not mine:
        return
    st.subheader(f"In the review queue ({len(mine)})")
    names = {s.id: s.name for s in race.stations}
    for item in mine:
        st.page_link(
            "views/review.py",
            label=f"{reason_text(item.reason)} · {where_text(item, names)}",
            icon=":material/fact_check:",
            query_params={"image": item.image_id, **at_station(item), **ui.official_params()},
        )


def show_photos(images: pd.DataFrame, mine: pd.DataFrame, race: data.Race, bib: str) -> None:
    st.subheader(f"Photos ({len(mine)})")
    if mine.empty:
        st.text("No photo shows this athlete.")
        return
    safe_bib = re.sub(r"[^A-Za-z0-9_-]", "_", bib)
    st.download_button(
        f"Download {len(mine)} photos (zip)",
        data=lambda: photos.photos_zip(images, mine["image_id"]),
        file_name=f"photos-{safe_bib}.zip",
        mime="application/zip",
        key="download_photos",
        icon=":material/download:",
    )
    names = {s.id: s.name for s in race.stations}
    rows = [mine.iloc[i : i + PHOTO_COLUMNS] for i in range(0, len(mine), PHOTO_COLUMNS)]
    for row in rows:
        for column, (_, photo) in zip(st.columns(PHOTO_COLUMNS), row.iterrows(), strict=False):
            with column:
                jpeg = photos.annotated_photo(images, photo["image_id"], photos.THUMBNAIL_WIDTH)
                if jpeg is not None:
                    st.image(jpeg, alt="Photo of the athlete")
                station = station_text(text_or_none(photo["station_id"]), names)
                when = formats.local_time(photo["taken_at"], race.timezone)
                st.text(f"{station} · {when} · {HOW.get(photo['method'], photo['method'])}")
                show_placing(photos.placed_by(images, photo["image_id"]))
                st.page_link(
                    "views/review.py",
                    label="Correct this photo",
                    icon=":material/edit:",
                    query_params={"image": photo["image_id"], **ui.official_params()},
                )


settings = ui.settings_or_stop()
race = data.race(settings.out)
ui.header("Athlete", race)
# Its version before it is read: results replaced meanwhile are only taken as older.
board_version = data.version(os.path.join(settings.out, LEADERBOARD_FILE))
everyone = data.leaderboard(settings.out)
athlete = choose_athlete(everyone)
if athlete is None:
    st.stop()
log = data.corrections(settings.corrections, settings.out).corrections
awaited = pending_decision(athlete["bib"], log, board_version)  # not in the results yet
show_result(athlete, awaited)
if awaited is not None:
    st.caption(RETIMING)
    ui.rerun_on_change(os.path.join(settings.out, LEADERBOARD_FILE), board_version)
official_decision(athlete["bib"], settings, log)
st.subheader("Passages and splits")
passages = data.passages(settings.out)
st.dataframe(board.passages_table(athlete, passages, race), hide_index=True)
images = data.images(settings.out)
show_open_items(athlete["bib"], images, log, race, settings.out)
mine = photos.photos_of(data.athlete_photos(settings.out), athlete["bib"])
show_photos(images, mine, race, athlete["bib"])
