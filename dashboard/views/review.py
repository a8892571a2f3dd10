"""Review queue: one photo at a time, decided with a click or a key.

The photo shows the bib boxes the pipeline found, with a zoomed crop of each bib beside
it, the reason it is here and the candidate athletes. Every decision is appended to the
corrections log at once, the item leaves the queue, and the results are re-timed in the
background. `?image=<image_id>` opens any photo of the run, queued or not, so a photo the
pipeline was wrongly sure of can be corrected too.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from dashboard import data, formats, photos, tallies, ui
from dashboard.claims import Claims, claim_first_free, claims_folder
from dashboard.retime import retimer
from dashboard.review_queue import (
    ACCEPT,
    APPROVE,
    ASSIGN,
    BIB_REJECTS,
    DSQ,
    LATE_LINKS,
    NO_PHOTO_SILENT,
    PLACED_BY_NOTES,
    REASON_NOTES,
    REJECT,
    Item,
    Placement,
    Spells,
    clock_note,
    clock_suspect,
    copies_of,
    counts_by_reason,
    decision_notice,
    decision_rows,
    in_turn,
    in_view,
    items_of,
    late_batch,
    log_decision,
    needs_place,
    opened_item,
    pending,
    race_day_time,
    reason_text,
    silent_while_due,
    station_text,
    stations_of,
    stray_note,
    text_or_none,
    timed_at,
    undecided,
    where_text,
)
from dashboard.settings import Settings
from transforms.corrections import (
    CLOCK_SUSPECT,
    EARLY_START,
    REJECT_FACE,
    REJECT_UNLISTED,
    STATION_CONFLICT,
    TOO_LATE,
    Correction,
    decisions_by_image,
)
from transforms.schemas import REVIEW_FILE

OFFICIAL_KEY = "official"
SKIPPED = "skipped"
SHOWN = "review_shown"
BIBS_KEY = "assign_bibs"
PLACE_KEY = "place_station"
TIME_KEY = "place_time"
NOTICE = "review_notice"
SESSION = "review_session"  # this page's id among the officials' (Claims)
CHANGE = "review_change"  # the link to change the decision just noticed
DECIDED = "review_decided"  # the keys of the items this page decided (review_queue.refusal)
RETIME_POLL_S = 2


def _remember_official() -> None:
    st.session_state[ui.OFFICIAL_NAME] = st.session_state[OFFICIAL_KEY].strip()
    st.session_state[ui.NAME_FROM_LINK] = False  # typed here: theirs


def _address_names_official() -> None:
    """The address carries the name, so that a reload keeps it."""
    params = ui.official_params()
    if params:
        st.query_params.update(params)
    else:
        st.query_params.pop(ui.OFFICIAL_PARAM, None)


def _leave_item(item: Item) -> None:
    if st.query_params.get("image") == item.image_id:
        del st.query_params["image"]  # back to the queue once the linked photo is dealt with
        st.query_params.pop("station", None)


@dataclass(frozen=True)
class Shown:
    """What the page knows of an item's photo besides the item."""

    station: str | None  # the photo's own station (its folder's, its camera's)
    places: list[Placement]  # the stations its copies came in for
    batch: list[str]  # the photos a too_late item stands for (image_ids)
    assigned: tuple[str, ...]  # the athletes the log assigns the photo to already
    placed_by: str | None  # how the photo's station was decided (images.parquet)
    timed_at: str | None  # a photo in doubt: the station its first copy is timed at, live


def _placement(item: Item, shown: Shown, settings: Settings) -> Placement | None:
    """Where and when the official says the photo was taken, if the item asks them: one of
    the stations a photo in doubt came in for, or the station and time given for a photo
    without them. Raises ValueError for a time that is none."""
    chosen = st.session_state.get(PLACE_KEY)
    if item.reason == STATION_CONFLICT:
        return next((p for p in shown.places if p.station_id == chosen), None)
    if not needs_place(item, shown.station) or not chosen:
        return None
    text = (st.session_state.get(TIME_KEY) or "").strip()
    race = data.race(settings.out)
    if text and race.start is None:
        raise ValueError("The race's day is not known here (no run.json): no time can be given.")
    return Placement(chosen, race_day_time(text, race.timezone, race.start) if text else None)


def _decide(action: str, item: Item, shown: Shown, settings: Settings) -> None:
    race = data.race(settings.out)
    official, bibs = ui.official_name() or ui.UNNAMED, st.session_state.get(BIBS_KEY) or ()
    try:
        placed = _placement(item, shown, settings)

        def rows_for(log: Sequence[Correction]) -> list[Correction]:
            return decision_rows(
                action,
                item,
                official=official,
                now=datetime.now(UTC),
                bibs=bibs,
                photo_station=shown.station,
                placed=placed,
                # A late photo another official decided alone since this page showed the
                # batch keeps that decision.
                batch=undecided(shown.batch, log),
                assigned=shown.assigned,
            )

        # A decision that cannot be is said before the log is made or locked: from the log
        # the page shows, as it is checked again against the log as it stands.
        rows_for(data.corrections(settings.corrections, settings.out).corrections)
        decided_here = st.session_state.get(DECIDED, set())
        logged = log_decision(
            settings.corrections, item, rows_for, decided_here, race.timezone, race.start
        )
    except (ValueError, OSError) as e:
        st.session_state[NOTICE] = (False, str(e))
        return
    if logged.refused is not None:
        if logged.refused:  # else pressed again on the item just decided: its notice stands
            st.session_state[NOTICE] = (False, logged.refused)
        return
    rows = list(logged.rows)
    claims(settings).release(session_id(), time.time())  # decided: the next page may have it
    retimer(settings.out, settings.corrections).request()
    st.session_state.setdefault(DECIDED, set()).add(item.key)
    st.session_state[NOTICE] = (True, decision_notice(action, item, rows))
    st.session_state[CHANGE] = change_link(item, rows)
    _leave_item(item)


def change_link(item: Item, rows: list[Correction]) -> tuple[str, dict[str, str]] | None:
    """Where the official changes the decision just made (the item has left the queue): the
    photo opened again, or the athlete's page (reinstate); none for a camera seen to or a
    late batch decided together."""
    if item.about_athlete:
        return "views/athlete.py", {"bib": rows[0].bib}
    if item.about_photo and len({r.image_id for r in rows}) == 1:
        return "views/review.py", {"image": item.image_id}
    return None


def _skip(item: Item) -> None:
    st.session_state[SKIPPED] = [k for k in st.session_state.get(SKIPPED, []) if k != item.key]
    st.session_state[SKIPPED].append(item.key)
    _leave_item(item)


def show_notice() -> None:
    """The last decision in the sidebar, where it moves nothing, until the next one: its
    link to change it must outlast the page running again by itself (an empty queue does,
    each time a live run writes); a failure on the page, once."""
    notice = st.session_state.get(NOTICE)
    if notice is None:
        return
    ok, text = notice
    if ok:
        st.sidebar.success("Saved.", icon=":material/check:")
        st.sidebar.text(text)
        change = st.session_state.get(CHANGE)
        if change is not None:
            page, params = change
            st.sidebar.page_link(
                page,
                label="Change this decision",
                icon=":material/undo:",
                query_params=params | ui.official_params(),
            )
    else:
        st.error("Not saved.")
        st.text(text)
        del st.session_state[NOTICE]


def choose_items(items: list[Item], open_items: list[Item], race: data.Race) -> list[Item]:
    """The filters by reason and station, and the open items they leave.

    The filters offer every reason and station of the whole queue, decided items included,
    and their labels carry no counts: a chosen filter must survive the decision that
    empties it (Streamlit keeps a choice by its label). Stations by name, as the items
    show them (the ids, cp2 for "6.7 km", were the course file's words), in course order.
    """
    reasons = list(dict.fromkeys(i.reason for i in items))
    stations = stations_of(items, [s.id for s in race.stations])
    names = {s.id: s.name for s in race.stations}
    chosen_reasons = st.sidebar.pills(
        "Reason", reasons, format_func=reason_text, selection_mode="multi", key="filter_reasons"
    )
    chosen_stations = st.sidebar.pills(
        "Station",
        stations,
        format_func=lambda s: names.get(s, s) or "no station",
        selection_mode="multi",
        key="filter_stations",
    )
    return in_view(open_items, chosen_reasons, chosen_stations)


def show_photo(images: pd.DataFrame, item: Item) -> None:
    if not item.image_id:  # a camera that sent no photo before its silence
        st.info("No photo from this camera.", icon=":material/no_photography:")
        return
    jpeg = photos.annotated_photo(images, item.image_id)
    if jpeg is None:
        st.warning("This photo cannot be shown (missing or unreadable file).")
    else:
        st.image(jpeg, width="stretch", alt="Photo with the bib boxes the pipeline found")
    # Its path either way: a photo moved away is found again by it.
    st.text(photos.listed_path(images, item.image_id) or "")


def describe(item: Item, settings: Settings, shown: Shown, open_items: list[Item]) -> None:
    """Why the item is here, and where and when (or who, for an athlete)."""
    race = data.race(settings.out)
    names = {s.id: s.name for s in race.stations}
    where = station_text(item.station_id, names)
    st.subheader(reason_text(item.reason))
    if item.about_athlete:
        listed = data.athletes(settings.out).set_index("bib")["name"]
        who = ", ".join(f"{b} {listed.get(b, '')}".strip() for b in item.candidates)
        st.text(f"{who}: {athlete_note(item, settings, race, where)}")
    elif item.reason == STATION_CONFLICT:
        st.text(" and ".join(names.get(p.station_id, p.station_id) for p in shown.places))
    elif item.reason == TOO_LATE:
        held = len(shown.batch)
        st.text(f"{where} · {held} photo{'s' if held != 1 else ''} held")
    elif item.taken_at is None and (item.exif_taken_at is not None or item.could_be_at):
        # A photo that could not be placed (its taken_at null): what it says of itself.
        st.text(" · ".join(t for t in (where_text(item, names), camera_time(item, race)) if t))
    else:
        taken = formats.local_time(item.taken_at, race.timezone)
        st.text(f"{where} · {taken}" if taken else where)
    # An athlete's item shows their finish photo about another station: its placing is moot.
    if not item.about_athlete and shown.placed_by in PLACED_BY_NOTES:
        st.caption(PLACED_BY_NOTES[shown.placed_by])
    if shown.timed_at:
        st.caption(stray_note(station_text(shown.timed_at, names)))
    elif item.about_camera and not item.image_id:
        st.caption(NO_PHOTO_SILENT)
    elif not item.about_athlete and item.reason in REASON_NOTES:
        st.caption(REASON_NOTES[item.reason])
    if item.note:
        st.caption(item.note)
    if item.reason == CLOCK_SUSPECT:
        clock_fix(item, settings)
    if suspects := clock_suspect(item, open_items):
        st.warning(clock_note(suspects, where), icon=":material/schedule:")


def clock_fix(item: Item, settings: Settings) -> None:
    """The line to write into the course file and the command that re-times with it, to
    copy: the note says them in a sentence. Seen re-times too (batch: `racelens results`
    reads the course file again), so it is the last step, not a way around the fix."""
    if item.clock_offset_s is None:  # results of a run before the column: the note alone
        return
    course = data.race(settings.out).course or "course.yaml"
    st.text(f"If the clock is off, give station {item.station_id} in {course}:")
    st.code(f"clock_offset_s: {item.clock_offset_s:g}", language="yaml")
    st.text("then press Seen: the results are re-timed with it. By hand:")
    st.code(f"racelens results --out {settings.out} --course {course}", language="bash")
    st.caption(
        "A live run reads the course once: stop it and start it again. If the clock is "
        "right (a queue at a gate delays everyone), press Seen and change nothing."
    )


def on_race_day(at: datetime, race: data.Race) -> bool:
    zone = ZoneInfo(race.timezone)
    return (
        race.start is not None and at.astimezone(zone).date() == race.start.astimezone(zone).date()
    )


def camera_time(item: Item, race: data.Race) -> str:
    """The time the photo's EXIF gives, its date too where that is not the race's day (a
    camera set to another day, whose time of day may still be right)."""
    if item.exif_taken_at is None:
        return ""
    local = item.exif_taken_at.astimezone(ZoneInfo(race.timezone))
    shown = "%H:%M:%S" if on_race_day(item.exif_taken_at, race) else "%Y-%m-%d %H:%M:%S"
    return f"its camera says {local:{shown}}"


def show_evidence(images: pd.DataFrame, item: Item, settings: Settings) -> None:
    """A zoomed crop of each bib in question, and the athletes they may be."""
    crops = photos.bib_crops(images, item.image_id, item.candidates if item.about_athlete else None)
    for read, jpeg in crops:
        st.image(jpeg, caption=f"{read.bib} read at {read.confidence:.0%}", alt=f"Bib {read.bib}")
    # A photo that cannot be read has no crops, but its reads stand (in the table below).
    if not crops and not item.about_athlete and not photos.reads_of(images, item.image_id):
        st.text("No bib box on this photo.")
    show_candidates(images, item, settings)


def show_candidates(images: pd.DataFrame, item: Item, settings: Settings) -> None:
    reads = {r.bib: r.confidence for r in photos.reads_of(images, item.image_id)}
    # About an athlete, only that athlete; about a photo, everyone the pipeline considered.
    bibs = list(
        dict.fromkeys(item.candidates if item.about_athlete else [*item.candidates, *reads])
    )
    if not bibs:
        return
    listed = data.athletes(settings.out).set_index("bib")
    st.dataframe(
        pd.DataFrame(
            {
                "Bib": bibs,
                "Name": [listed["name"].get(b, "not in the start list") for b in bibs],
                "Category": [listed["category"].get(b, "") for b in bibs],
                "Status": [listed["status"].get(b, "") for b in bibs],
                "Read": [f"{reads[b]:.0%}" if b in reads else "" for b in bibs],
            }
        ),
        hide_index=True,
    )


def choose_station(places: list[Placement], settings: Settings) -> None:
    """The stations a photo in doubt came in for, each with its time of the photo there."""
    race = data.race(settings.out)
    names = {s.id: s.name for s in race.stations}
    times = {p.station_id: formats.local_time(p.passed_at, race.timezone) for p in places}
    st.radio(
        "Taken at",
        [p.station_id for p in places],
        format_func=lambda s: f"{names.get(s, s)} · {times[s]}".strip(" ·"),
        key=PLACE_KEY,  # none chosen at first (decision_form)
    )


def place_photo(item: Item, settings: Settings) -> None:
    """The station and local time of day of a photo that has none (bad EXIF); the stations
    it may be at first (a loop's start and finish), any other still possible (its GPS
    may be wrong)."""
    race = data.race(settings.out)
    names = {s.id: s.name for s in race.stations}
    st.selectbox(
        "Taken at",
        list(dict.fromkeys([*(s for s in item.could_be_at if s in names), *names])),
        format_func=lambda s: names[s],
        key=PLACE_KEY,
        placeholder="Station",
    )
    st.text_input("Time of day, local", key=TIME_KEY, placeholder="10:21:40", max_chars=15)


# Why an athlete's item is here and what its decisions do ({where}: its station's name).
ATHLETE_NOTES = {
    "missed_checkpoint": "finished, but not seen at {where}. The photo is the finish photo. "
    "Approve keeps the result (the missed checkpoint stays flagged); disqualify if the "
    "course was cut.",
    EARLY_START: "photographed at {where} before their wave's gun, and their next passage "
    "is too fast from the gun: they crossed then (an earlier wave?). Approve keeps them "
    "timed from this photo (flagged early start); 'From the gun' times them from their "
    "wave's gun (the photo shows them waiting); or disqualify.",
}


# A missed checkpoint whose camera was silent then: no invitation to disqualify.
MISSED_WHILE_SILENT = (
    "finished, but not seen at {where}, whose camera took no photo from {start} to {end} "
    "while they were due there (see its 'Camera silent?' item): they may have passed unseen. "
    "The photo is the finish photo. Approve keeps the result (the missed checkpoint stays "
    "flagged)."
)


def athlete_note(item: Item, settings: Settings, race: data.Race, where: str) -> str:
    """ATHLETE_NOTES' text for the item, unless its station's camera was silent then."""
    if item.reason == "missed_checkpoint":
        order = [s.id for s in race.stations]
        stations, passages = data.stations(settings.out), data.passages(settings.out)
        if silent := silent_while_due(item, stations, passages, order):
            start, end = (formats.local_time(t, race.timezone) for t in silent)
            return MISSED_WHILE_SILENT.format(where=where, start=start, end=end)
    return ATHLETE_NOTES[item.reason].format(where=where)


# X on an item about reads or a face names them: what it rejects, not the photo.
REJECT_LABELS = {REJECT: "Not {}", REJECT_UNLISTED: "Not {}", REJECT_FACE: "Face not {}"}


def actions_for(item: Item, shown: Shown) -> list[tuple[str, str, str, str]]:
    """(action, label, shortcut, kind) of the buttons an item offers, Skip aside."""
    assign, reject = (
        (ASSIGN, "Assign", "Ctrl+Enter", "primary"),
        (REJECT, "Reject", "X", "secondary"),
    )
    if item.reason == CLOCK_SUSPECT:  # a station's clock: no photo action
        return [(APPROVE, "Seen", "A", "primary")]
    if item.reason == TOO_LATE:
        n = len(shown.batch)
        return [
            (ACCEPT, f"Accept all {n}", "A", "primary"),
            (REJECT, f"Reject all {n}", "X", "secondary"),
        ]
    if item.reason == STATION_CONFLICT or needs_place(item, shown.station):
        # Approving would time the reads at a station in doubt, or nothing at all.
        return [assign, reject]
    if item.reason in BIB_REJECTS:  # X rejects those reads or that face: the others stand
        label = REJECT_LABELS[BIB_REJECTS[item.reason]].format(", ".join(item.candidates))
        reject = (REJECT, label, "X", "secondary")
    if item.about_photo:
        return [assign, (APPROVE, "Approve", "A", "secondary"), reject]
    approve = [(APPROVE, "Approve", "A", "primary")]
    if item.reason == EARLY_START:
        return approve + [
            (REJECT, "From the gun", "X", "secondary"),
            (DSQ, "Disqualify", "D", "secondary"),
        ]
    return approve + ([(DSQ, "Disqualify", "D", "secondary")] if item.about_athlete else [])


def proposed_time(item: Item, race: data.Race) -> str:
    """The time of day proposed for placing the photo: its own, or, for a photo that could
    not be placed, the one its EXIF gives on the race's day (not a camera's wrong day)."""
    exif = item.exif_taken_at
    at = item.taken_at or (exif if exif is not None and on_race_day(exif, race) else None)
    return formats.exact_local_time(at, race.timezone)


def decision_form(item: Item, shown: Shown, settings: Settings) -> None:
    """The actions; keyboard: A approve, X reject, S skip, D disqualify, Ctrl+Enter assign."""
    listed = data.athletes(settings.out)
    names = dict(zip(listed["bib"], listed["name"].fillna(""), strict=True))
    to_place = needs_place(item, shown.station)
    if st.session_state.get(SHOWN) != item.key:  # a new item: propose its own candidates
        st.session_state[SHOWN] = item.key
        # A photo assigned already (opened again to change it): the athletes the log says.
        proposed = shown.assigned or item.candidates
        st.session_state[BIBS_KEY] = [b for b in proposed if b in names]
        st.session_state[PLACE_KEY] = shown.station if to_place else None
        st.session_state[TIME_KEY] = proposed_time(item, data.race(settings.out))
    with st.form("decision_form", border=True, enter_to_submit=False):
        if item.reason == STATION_CONFLICT:
            choose_station(shown.places, settings)
        if to_place:
            place_photo(item, settings)
        if item.about_photo and item.reason != TOO_LATE:
            st.multiselect(
                "Athletes on the photo (type a bib or a name)",
                list(names),
                format_func=lambda b: f"{b}  {names[b]}",
                key=BIBS_KEY,
                placeholder="Start list",
                help="Type a bib or a name and press Enter to add the athlete; then Esc and "
                "Ctrl+Enter assign the photo to everyone chosen.",
                select_all=False,  # "everyone was on this photo" is never the answer
            )
        # Two buttons to a row, so that labels and shortcut hints fit a laptop's half-screen.
        buttons = [
            (
                action,
                label,
                shortcut,
                kind,
                _decide,
                (action, item, shown, settings),
            )
            for action, label, shortcut, kind in actions_for(item, shown)
        ]
        buttons.append(("skip", "Skip", "S", "secondary", _skip, (item,)))
        columns = st.columns(2)
        for n, (key, label, shortcut, kind, callback, args) in enumerate(buttons):
            columns[n % 2].form_submit_button(
                label,
                key=key,
                type=kind,
                shortcut=shortcut,
                width="stretch",
                on_click=callback,
                args=args,
            )


def assigned_to(image_id: str, corrections: tuple[Correction, ...]) -> tuple[str, ...]:
    """The athletes the log assigns the photo to now (none where it says otherwise)."""
    decision = decisions_by_image(c for c in corrections if c.image_id == image_id).get(image_id)
    return tuple(dict.fromkeys(c.bib for c in decision.assigned)) if decision else ()


def own_text(photo: pd.DataFrame, column: str) -> str | None:
    """A text cell of the photo's own row; None where it has no row, or the results (of a run
    before the column) no such column."""
    return text_or_none(photo[column].iloc[0]) if column in photo and not photo.empty else None


def show_item(
    images: pd.DataFrame,
    item: Item,
    settings: Settings,
    corrections: tuple[Correction, ...],
    open_items: list[Item],
) -> None:
    # The photo's own row: an exact copy's shares its image_id.
    photo = images[(images["image_id"] == item.image_id) & (images["reason"] != "exact_duplicate")]
    shown = Shown(
        station=own_text(photo, "station_id"),
        places=copies_of(images, item.image_id),
        batch=late_batch(images, item, corrections) if item.reason == TOO_LATE else [],
        assigned=assigned_to(item.image_id, corrections),
        placed_by=own_text(photo, "placed_by"),
        timed_at=timed_at(images, item.image_id) if item.reason == STATION_CONFLICT else None,
    )
    left, right = st.columns([3, 2], gap="medium")
    with left:
        show_photo(images, item)
    with right:
        describe(item, settings, shown, open_items)
        decision_form(item, shown, settings)
        if item.reason == TOO_LATE:
            late_photos(images, shown.batch, settings)
        if item.image_id:  # a camera silent with no photo has no bib to show
            show_evidence(images, item, settings)


def late_photos(images: pd.DataFrame, batch: list[str], settings: Settings) -> None:
    """Links to the first photos a too_late item stands for (LATE_LINKS), to decide one by
    one: each decided leaves the list for the next. Page links stay in this tab and session
    (a Markdown link opens a new tab, a session without the official's name); they carry
    the name for a tab opened from them all the same."""
    race = data.race(settings.out)
    rows = images[images["image_id"].isin(batch[:LATE_LINKS])].drop_duplicates("image_id")
    with st.expander(f"The {len(batch)} photos, one by one"):
        if len(batch) > LATE_LINKS:
            st.caption(
                f"The first {LATE_LINKS} of {len(batch)} photos, in the order taken: decided, "
                "each leaves this list."
            )
        for row in rows.sort_values(["taken_at", "path"]).itertuples():
            taken = formats.local_time(row.taken_at, race.timezone)
            st.page_link(
                "views/review.py",
                label=f"{taken} · {formats.plain(os.path.basename(row.path))}",
                query_params={"image": row.image_id, **ui.official_params()},
            )


def linked_item(open_items: list[Item], images: pd.DataFrame) -> Item | None:
    """The photo named by ?image=, if any; a value that is no image_id of the run opens
    nothing (it is never used as a path)."""
    image_id = st.query_params.get("image")
    if not image_id:
        return None
    queued = [i for i in open_items if i.image_id == image_id]
    # A finish photo stands for each checkpoint its athlete was not seen at: ?station= says
    # which item (the athlete page links each); those at that station first, in queue order.
    if station := st.query_params.get("station"):
        queued.sort(key=lambda i: i.station_id != station)
    item = queued[0] if queued else opened_item(images, image_id)
    if item is None:
        ui.problem("No photo of this run has this id:", image_id)
        del st.query_params["image"]  # said once; the queue goes on
    return item


def claims(settings: Settings) -> Claims:
    """The items the officials' pages show, of every dashboard deciding into this log."""
    return Claims(claims_folder(settings.corrections))


def session_id() -> str:
    return st.session_state.setdefault(SESSION, uuid.uuid4().hex)


@st.fragment(run_every=RETIME_POLL_S)
def retime_notice(settings: Settings) -> None:
    """Whether the decisions are in the results yet, kept current while the official works."""
    ui.retime_status(retimer(settings.out, settings.corrections))


settings = ui.settings_or_stop()
ui.header("Review queue", data.race(settings.out))
with st.sidebar:
    st.session_state[OFFICIAL_KEY] = ui.official_name()
    st.text_input(
        "Your name, for the log",
        key=OFFICIAL_KEY,
        on_change=_remember_official,
        max_chars=ui.NAME_MAX_CHARS,
    )
    if not ui.official_name():  # with several officials at work, an unnamed row is no one's
        st.caption(f"Decisions are logged as '{ui.UNNAMED}' until you give your name.")
    elif ui.name_from_link():
        st.caption("This name came with the link: change it if it is not yours.")
_address_names_official()
show_notice()
with st.sidebar:
    retime_notice(settings)
log = data.corrections(settings.corrections, settings.out)
ui.log_problems(log.problems)
images = data.images(settings.out)
queue_version = data.version(os.path.join(settings.out, REVIEW_FILE))
items = items_of(data.review(settings.out))
windows = data.stations(settings.out)
spells = Spells.of(windows, images)
open_items = pending(items, log.corrections, spells)
for note in tallies.awaited_notes(windows, images, data.race(settings.out)):
    st.info(note, icon=":material/hourglass_empty:")
item = linked_item(open_items, images)
official = ui.official_name() or ui.UNNAMED
if item is None:
    chosen = choose_items(items, open_items, data.race(settings.out))
    queue = in_turn(chosen, st.session_state.get(SKIPPED, []))
    if not queue:
        st.success("Nothing to review." if not open_items else "Nothing to review here.")
        # New items as they come: a live run queues them while the official waits.
        ui.rerun_on_change(os.path.join(settings.out, REVIEW_FILE), queue_version)
        st.stop()
    item = claim_first_free(queue, claims(settings), session_id(), official, time.time())
    per_reason = " · ".join(
        f"{reason_text(r)} {n}" for r, n in counts_by_reason(open_items).items()
    )
    st.caption(f"{len(queue)} to review here. Open in all: {per_reason}.")
else:  # a photo opened by its link: no other page is offered it while it is open here
    claims(settings).show(session_id(), official, item.key, time.time())
show_item(images, item, settings, log.corrections, open_items)
