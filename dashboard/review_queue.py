"""The review queue: what officials still have to decide, and the log rows a decision becomes.

An item is a row of review.parquet. It is settled as soon as the corrections log holds a
decision about it, before the re-timing has run: for a photo (low_confidence,
unknown_bib, ...) any assign, reject or approve of that photo, since each of them fixes
what the photo says; for an athlete (missed_checkpoint, whose photo is the athlete's
finish) an approval of that athlete there (logged as `reinstate`: the athlete stays in
the results), or a disqualification; for a camera (camera_covered, ...: the photo stands
for the spell of bad health) the official's word that it was seen to (`seen`), which
decides nothing about the photo. An early start (the athlete's start photo) is settled the
same way as a missed checkpoint, or by timing the athlete from their gun (`from_gun`).
Skipped items go to the back of the queue, not away.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pandas as pd

from transforms.corrections import (
    AMBIGUOUS_STATION,
    CAMERA_ACTIONS,
    CLOCK_SEEN,
    CLOCK_SUSPECT,
    EARLY_START,
    FACE_UNCERTAIN,
    FROM_GUN,
    IMAGE_ACTIONS,
    IMPLAUSIBLE_SPLIT,
    LISTED_SINCE_REJECTED,
    OTHER_TIME_ZONE,
    REJECT_FACE,
    REJECT_UNLISTED,
    STATION_CONFLICT,
    TOO_LATE,
    UNPLACED,
    Correction,
    locked_log,
)
from transforms.records import DUPLICATE, OFFICIAL, PACE, PASSAGES, TIME, WAVES

APPROVE, ASSIGN, REJECT, DSQ, ACCEPT = "approve", "assign", "reject", "dsq", "accept"
# "The result stands": logged as an athlete decision, so that it decides nothing about the
# photo shown (the athlete's finish photo, where an image approval would confirm every weak
# read of another runner on it, unseen, and settle that runner's own item).
KEEP = "reinstate"
# "The camera was seen to": not an image approval, which would confirm the weak reads of
# the photo shown (the spell's last one) unseen, and settle that photo's own items.
SEEN = "seen"
ATHLETE_REASONS = frozenset({"missed_checkpoint", EARLY_START})
# What X logs, one row per candidate, on an item about some reads or one face of a photo:
# those reads are not so, and the photo's other reads and faces stand. It rejected the whole
# photo: the race clock read as 3304 beside a runner's 3719 at 99 %, X on "Number not in the
# start list", and 3719 was dns (the audit). A number not in the start list is rejected as
# such (it counts again once listed: a late entry); an unsure face is not those athletes.
BIB_REJECTS = {
    "low_confidence": REJECT,
    "unknown_bib": REJECT_UNLISTED,
    LISTED_SINCE_REJECTED: REJECT,
    FACE_UNCERTAIN: REJECT_FACE,
}
OPENED = "opened"  # not in the queue: an official opened the photo to correct it

REASON_TEXT = {
    "low_confidence": "Bib read, but not surely",
    "unknown_bib": "Number not in the start list",
    "number_unreadable": "Number not readable",
    "several_athletes": "Several athletes",
    FACE_UNCERTAIN: "Face match uncertain",
    "unknown_face": "Face not recognised",
    "camera_covered": "Camera covered?",
    "camera_blurred": "Camera blurred?",
    "camera_frozen": "Camera frozen?",
    "camera_silent": "Camera silent?",
    "implausible_split": "Implausible split time",
    CLOCK_SUSPECT: "Camera clock off?",
    LISTED_SINCE_REJECTED: "Rejected while not in the start list",
    TOO_LATE: "Arrived too late to be timed",
    STATION_CONFLICT: "Came in for several stations",
    "bad_exif": "No time on the photo",
    "truncated_image": "Photo cut short on upload",
    "unknown_station": "No station for the photo",
    AMBIGUOUS_STATION: "At several stations' place",
    "missed_checkpoint": "Not seen at a checkpoint",
    EARLY_START: "Started before their wave's gun",
    OTHER_TIME_ZONE: "Camera on another time zone",
    OPENED: "Opened for correction",
}

# How a photo's station was decided (images.parquet's placed_by) where the pipeline inferred
# it or an official moved it, not its folder, camera or GPS: an official deciding the photo
# should know its station is a conclusion they may overturn. (What, why): the athlete page
# shows what under each photo, the review page the whole note.
PLACED_BY = {
    TIME: ("Placed here by its time", "of the stations at this place, the one its time fits."),
    WAVES: (
        "Placed here by the waves of the athletes on it",
        "of the stations at this place, the one their waves fit.",
    ),
    PASSAGES: (
        "Placed here by its athletes' passages",
        "of the stations at this place, the one their times elsewhere fit.",
    ),
    PACE: (
        "Placed here by its athletes' pace",
        "their times elsewhere fit either station at this place, and their splits are much "
        "the most even at this one.",
    ),
    OFFICIAL: ("Placed here by an official's assignment", ""),
}
PLACED_BY_NOTES = {
    how: f"{what}: {why}" if why else f"{what}." for how, (what, why) in PLACED_BY.items()
}

# Station health items (transforms/health.py) are about a camera, shown by one of its photos.
_SEE_TO = " Approve once the camera is seen to (the photo keeps what was read on it)."
HEALTH_NOTES = {
    "camera_covered": "The lens looked covered or dark, several photos in a row." + _SEE_TO,
    "camera_blurred": "Blurred photos, several in a row; this is the last of them." + _SEE_TO,
    "camera_frozen": "The same picture again and again: a stuck camera? This is the last of "
    "them." + _SEE_TO,
    "camera_silent": "No photo while runners were due; this is the last photo before the "
    "silence (battery, card, signal?)." + _SEE_TO,
}
# A camera silent with no photo before (none all day, or none yet when runners were due).
NO_PHOTO_SILENT = (
    "No photo from this camera while runners were due there, since the time above, and none "
    "before (is it on, its card in, its phone uploading?)." + _SEE_TO
)


# A camera on another time zone (transforms/zones.py) is about the camera too: its note
# (review.parquet) says how its photos are timed and the course's fix; approving logs that
# it was seen to, not an approval of the photo shown (its reads stay as they are).
CAMERA_NOTES = HEALTH_NOTES | {
    OTHER_TIME_ZONE: "Its photos carry another UTC offset than the race's. Approve once its "
    "time zone is seen to (the course fixed and the race timed again, or its times judged "
    "right).",
}
HEALTH_REASONS = frozenset(CAMERA_NOTES)
# Items about a station rather than a photo, and what seeing to one logs: a camera seen to,
# a checkpoint's clock seen to (fixed in the course, or judged right). Approving the photo
# a clock item shows confirmed that photo's reads, and settled the clock nowhere.
STATION_SEEN = dict.fromkeys(HEALTH_REASONS, SEEN) | {CLOCK_SUSPECT: CLOCK_SEEN}
# The health of stations.parquet's windows that each camera item is a spell of.
SPELL_HEALTH = {"camera_covered": "covered", "camera_blurred": "blurred", "camera_frozen": "frozen"}
# What else an official needs to know to decide an item, beside its photo and reads.
REASON_NOTES = CAMERA_NOTES | {
    TOO_LATE: "These photos of the station came in more than the course's allowed lateness "
    "after the race's latest photos (a camera that uploaded late?), so what was read on them "
    "is not timed. Accept all to time them as if they had come in time (sure reads timed, "
    "unsure ones to this queue), reject all to leave them out, or open them one by one.",
    FACE_UNCERTAIN: "A face on this photo is like the reference photos of the athletes "
    "below, but not surely one of them, and no bib times anyone on it surely. Assign the "
    "athlete if you know them; 'Face not ...' says the face is none of them (the photo's "
    "bib reads and other faces still count); Approve confirms the photo's bib reads.",
    "unknown_face": "A face on this photo is like none of the start list's reference photos, "
    "and nobody on it was timed (a runner without a reference photo? a spectator?). Assign "
    "the athlete if you know them; reject if nobody on it is racing.",
    STATION_CONFLICT: "The same photo came in in the folders of several stations (copied "
    "into the wrong one?), so it is timed at none of them. Choose its station: assign times "
    "the athletes you choose there, at that station's time of the photo; reject leaves it out.",
}
_PLACE_IT = (
    " Choose its station and give the time it was taken (from the photo, or from a photo "
    "taken beside it), then assign the athletes on it; reject leaves it out."
)
REASON_NOTES |= {
    "bad_exif": "The camera wrote no usable time on this photo (its EXIF), so it is not timed."
    + _PLACE_IT,
    "unknown_station": "Neither its folder nor its camera or GPS names a station, so it is "
    "not timed." + _PLACE_IT,
    AMBIGUOUS_STATION: "Its GPS puts it where several stations are (a loop's start and "
    "finish), at a time athletes could pass more than one of them (a wave leaving as another "
    "finishes), so it is not timed." + _PLACE_IT,
}


# Open implausible splits at one station from which a wrong camera clock is the likelier
# cause: a misread bib or a runner's odd split comes alone.
CLOCK_SUSPECT_ITEMS = 5


def clock_suspect(item: Item, open_items: Iterable[Item]) -> int:
    """How many open implausible splits the item's station has, where they are enough to
    suspect a camera's clock (a phone set by hand, or to another time zone), else 0: each
    came as an item of its own, an official approving the wrong times one by one. The
    station's or its neighbour's: the demo race with cp1's clock 10 minutes off (racelens
    results with clock_offset_s: 600) sent 2 splits at cp1 and 4 at cp2 to review."""
    if item.reason != IMPLAUSIBLE_SPLIT:
        return 0
    same = sum(
        i.reason == IMPLAUSIBLE_SPLIT and i.station_id == item.station_id for i in open_items
    )
    return same if same >= CLOCK_SUSPECT_ITEMS else 0


def clock_note(count: int, where: str) -> str:
    return (
        f"{count} athletes' times at {where} are implausible: is a camera's clock wrong, "
        "here or at a station next to it (a split is between two; the check keeps most of an "
        "athlete's times)? Compare a photo's time with a clock it shows, or a known time. "
        "If it is off, give the camera or station its clock_offset_s in course.yaml and run "
        "racelens results --course FILE (a live run: start it again): every photo of it is "
        "timed anew. Approving here keeps the wrong time."
    )


def silent_while_due(
    item: Item, stations: pd.DataFrame, passages: pd.DataFrame, course_order: Sequence[str]
) -> tuple[datetime, datetime] | None:
    """When the camera of a missed checkpoint's station took no photo (stations.parquet's
    silent windows) between the athlete's passages before and after it, the span in which
    they may have passed unseen (from its last photo before); None if it photographed
    throughout. A camera that stopped
    is not a course cut: the official needs to know before deciding."""
    here = course_order.index(item.station_id)
    theirs = passages[(passages["bib"] == item.candidates[0]) & ~passages["needs_review"]]
    silent = stations[
        (stations["station_id"] == item.station_id) & (stations["health"] == "silent")
    ]
    before = theirs[theirs["station_id"].isin(course_order[:here])]["passed_at"]
    after = theirs[theirs["station_id"].isin(course_order[here + 1 :])]["passed_at"]
    if len(before):
        silent = silent[silent["window_end"] > before.max()]
    if len(after):
        silent = silent[silent["window_start"] < after.min()]
    if silent.empty:
        return None
    # From the camera's last photo before the silence: the item shows that photo.
    start = silent["window_start"].min()
    camera = stations[(stations["station_id"] == item.station_id)]
    earlier = camera[camera["window_end"] <= start]["last_photo_at"].dropna()
    return (earlier.max() if len(earlier) else start), silent["window_end"].max()


def reason_text(reason: str) -> str:
    return REASON_TEXT.get(reason, reason.replace("_", " ").capitalize())


def station_text(station_id: str | None, names: Mapping[str, str]) -> str:
    """A station as officials know it (`names`: the course's, by id): its name, else its id
    (a station the course does not list), else 'no station'."""
    return names.get(station_id or "", station_id or "no station")


@dataclass(frozen=True)
class Item:
    image_id: str
    reason: str
    station_id: str | None
    candidates: tuple[str, ...]
    taken_at: datetime | None = None
    # A photo without station or time: the time its EXIF gives, the stations it may be at.
    exif_taken_at: datetime | None = None
    could_be_at: tuple[str, ...] = ()
    # In words, what the reason alone cannot say (review.parquet's note: a clock's estimated
    # error, a camera's time zone, and the course's fix).
    note: str | None = None
    clock_offset_s: float | None = None  # clock_suspect: the station's offset to write

    @property
    def key(self) -> str:
        """Identifies the item across reruns (an image may carry several items)."""
        return "|".join((self.image_id, self.reason, self.station_id or "", *self.candidates))

    @property
    def about_athlete(self) -> bool:
        return self.reason in ATHLETE_REASONS

    @property
    def about_camera(self) -> bool:
        return self.reason in HEALTH_REASONS

    @property
    def about_station(self) -> bool:
        """A camera or its clock, seen to at the station (STATION_SEEN)."""
        return self.reason in STATION_SEEN

    @property
    def about_photo(self) -> bool:
        """What the photo says is the question (not an athlete's result, not a station)."""
        return not (self.about_athlete or self.about_station)


def _when(value: object) -> datetime | None:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def text_or_none(value: object) -> str | None:
    """A text cell as text, or None where it is null or empty (pandas reads a null string
    cell as NaN, which is truthy)."""
    return None if pd.isna(value) or not value else str(value)


def _number(cell: object) -> float | None:
    return None if cell is None or pd.isna(cell) else float(cell)


def _texts(cell: object) -> tuple[str, ...]:
    return tuple(cell) if cell is not None else ()


def items_of(review: pd.DataFrame) -> list[Item]:
    return [
        Item(
            image_id=row.image_id,
            reason=row.reason,
            station_id=text_or_none(row.station_id),
            candidates=_texts(row.candidates),
            taken_at=_when(row.taken_at),
            # Results of a run before these columns have none.
            exif_taken_at=_when(getattr(row, "exif_taken_at", None)),
            could_be_at=_texts(getattr(row, "could_be_at", None)),
            note=text_or_none(getattr(row, "note", None)),
            clock_offset_s=_number(getattr(row, "clock_offset_s", None)),
        )
        for row in review.itertuples(index=False)
    ]


def where_text(item: Item, names: Mapping[str, str]) -> str:
    """Where the item's photo is: the stations a photo placed nowhere may be at (a loop's
    start or finish), else its station (station_text)."""
    places = " or ".join(names.get(s, s) for s in item.could_be_at)
    return places or station_text(item.station_id, names)


@dataclass(frozen=True)
class Spells:
    """What tells whether a camera was seen to in the spell of bad health an item stands
    for: the stations' windows (stations.parquet) and when each photo was taken."""

    windows: pd.DataFrame
    taken: pd.Series | dict[str, datetime]  # image_id -> taken_at, looked up with .get

    @classmethod
    def of(cls, windows: pd.DataFrame, images: pd.DataFrame) -> Spells:
        # A Series by image_id, not a dict: at 30,000 photos a dict of their times took
        # 49-99 CPU ms at each run of the review page, the Series 8-9 ms (by turns).
        timed = images[["image_id", "taken_at"]].dropna().drop_duplicates("image_id")
        return cls(windows, timed.set_index("image_id")["taken_at"])

    def same(self, item: Item, seen: Correction) -> bool:
        """Was the photo seen to taken in the item's spell (back-to-back windows of its
        station, all in that state)? A covered, blurred or frozen spell shows its latest
        photo, so its item changes photo while the camera goes on shooting: a camera seen
        to came back to the queue with each frame. A spell after a good window is anew."""
        health, at = SPELL_HEALTH.get(item.reason), self.taken.get(seen.image_id)
        if health is None or at is None or item.taken_at is None:
            return False
        first, last = sorted((pd.Timestamp(at), pd.Timestamp(item.taken_at)))
        w = self.windows
        between = w[
            (w["station_id"] == item.station_id)
            & (w["window_end"] > first)
            & (w["window_start"] <= last)
        ].sort_values("window_start")
        starts, ends = list(between["window_start"]), list(between["window_end"])
        return (
            not between.empty
            and starts[0] <= first
            and ends[-1] > last
            and starts[1:] == ends[:-1]
            and bool((between["health"] == health).all())
        )


def _settles(c: Correction, item: Item, spells: Spells | None = None) -> bool:
    if item.reason == CLOCK_SUSPECT:
        # Its station's clock, whichever photo shows it: the athlete in the middle of the
        # field there, another as athletes come and decisions are re-timed.
        return c.action == CLOCK_SEEN and c.station_id == item.station_id
    if item.about_camera:
        # An item about no photo (a camera that sent none) is seen to at its station only.
        elsewhere = not item.image_id and c.station_id != item.station_id
        return (
            c.action == SEEN
            and not elsewhere
            and (
                c.image_id == item.image_id
                or (spells is not None and c.station_id == item.station_id and spells.same(item, c))
            )
        )
    if item.reason == LISTED_SINCE_REJECTED:
        # Asked again since the read's number was listed: only an answer about that read
        # settles it, not the photo's decisions before (an approval of its other reads).
        return (
            c.image_id == item.image_id
            and c.bib in item.candidates
            and c.action in (REJECT, APPROVE, ASSIGN)
        )
    if item.about_photo:
        # A read or a face rejected is about its items of the photo, not the photo's others.
        of_one = c.action in (REJECT, REJECT_FACE, REJECT_UNLISTED) and bool(c.bib)
        return (
            c.image_id == item.image_id
            and c.action in IMAGE_ACTIONS
            and (not of_one or c.bib in item.candidates)
            and (c.action != REJECT_FACE or item.reason == FACE_UNCERTAIN)
        )
    if c.action in ("dsq", "dnf"):
        return c.bib in item.candidates
    return (
        c.action in (KEEP, APPROVE, FROM_GUN)  # APPROVE: the rows of dashboards before KEEP
        and c.image_id == item.image_id
        and c.bib in item.candidates
        and c.station_id == (item.station_id or "")
    )


def settled_by(
    item: Item, corrections: Iterable[Correction], spells: Spells | None = None
) -> Correction | None:
    """The first decision in the log that settles the item, if any (a camera item: with
    `spells`, a camera seen to earlier in the same spell too)."""
    return next((c for c in corrections if _settles(c, item, spells)), None)


def pending(
    items: Iterable[Item], corrections: Sequence[Correction], spells: Spells | None = None
) -> list[Item]:
    """The items no decision in the log settles yet, in the queue's order. Each item is
    held against the decisions that can settle it only (of its photo, its athletes, or a
    camera seen to at its station): against every decision, 3,200 items and 2,500
    decisions took 1.4 CPU s, at each click of every official."""
    by_image: dict[str, list[Correction]] = {}
    by_bib: dict[str, list[Correction]] = {}
    seen_at: dict[str, list[Correction]] = {}
    for c in corrections:
        by_image.setdefault(c.image_id, []).append(c)
        by_bib.setdefault(c.bib, []).append(c)
        if c.action in CAMERA_ACTIONS:
            seen_at.setdefault(c.station_id, []).append(c)

    def may_settle(item: Item) -> list[Correction]:
        about = by_image.get(item.image_id, [])
        if item.about_station:
            return about + seen_at.get(item.station_id or "", [])
        if item.about_athlete:
            return about + [c for b in item.candidates for c in by_bib.get(b, [])]
        return about

    return [i for i in items if settled_by(i, may_settle(i), spells) is None]


def stations_of(items: Iterable[Item], course_order: Sequence[str]) -> list[str]:
    """The items' stations ("" for none) in course order, as an official walks the course,
    then any the course does not list, then none: in the queue's order the filter read
    "6.7 km, 3.3 km, no station, Finish"."""
    rank = {station_id: n for n, station_id in enumerate(course_order)}
    present = {i.station_id or "" for i in items}
    return sorted(present, key=lambda s: (s == "", rank.get(s, len(rank)), s))


def in_view(items: Iterable[Item], reasons: Sequence[str], stations: Sequence[str]) -> list[Item]:
    """The items of the chosen reasons and stations (an empty choice means all)."""
    return [
        i
        for i in items
        if (not reasons or i.reason in reasons)
        and (not stations or (i.station_id or "") in stations)
    ]


def _turn(item: Item) -> int:
    """Where an item's kind comes in the queue: a camera (its spell's every photo), a clock
    (its station's every passage) and a late batch (every photo held) first, as one decision
    settles many photos, and a camera seen to is one an official can act on at once; an
    athlete's missed checkpoint after the
    photos (review.parquet puts these untimed items first), as deciding a photo may show the
    athlete there (a weak read approved, a late batch accepted) where a disqualification
    decided first stood."""
    if item.about_station or item.reason == TOO_LATE:
        return 0
    return 2 if item.about_athlete else 1


def in_turn(items: Sequence[Item], skipped: Sequence[str]) -> list[Item]:
    """The queue in the order to work through it (_turn, then review.parquet's order);
    skipped items last, in the order skipped."""
    later = {key: n for n, key in enumerate(skipped)}
    return sorted(items, key=lambda i: (i.key in later, later.get(i.key, 0), _turn(i)))


def counts_by_reason(items: Iterable[Item]) -> dict[str, int]:
    """Open items per reason, most first."""
    return dict(Counter(i.reason for i in items).most_common())


def opened_item(images: pd.DataFrame, image_id: str) -> Item | None:
    """An item for any photo of the run, so an official can correct a photo the pipeline
    was sure of; None when no photo has this image_id."""
    rows = images[images["image_id"] == image_id]
    if rows.empty:
        return None
    # The photo's own row: a copy's (exact_duplicate) has its own folder's station.
    kept = rows[rows["status"] != DUPLICATE]
    row = (kept if not kept.empty else rows).iloc[0]
    bibs = tuple(row["bibs"]) if row["bibs"] is not None else ()
    if row["reason"] == STATION_CONFLICT:
        # Still in doubt: placed by the official as in the queue, never approved where a
        # copy's folder put it.
        return Item(image_id, STATION_CONFLICT, None, bibs, None)
    return Item(
        image_id,
        OPENED,
        text_or_none(row["station_id"]),
        bibs,
        _when(row["taken_at"]),
        # A photo placed nowhere: what it says of itself, as its queued item did (none in
        # the images.parquet of a run before these columns).
        exif_taken_at=_when(row.get("exif_taken_at")),
        could_be_at=_texts(row.get("could_be_at")),
    )


@dataclass(frozen=True)
class Placement:
    """Where and when an official says a photo was taken."""

    station_id: str
    passed_at: datetime | None  # None: the photo's own time


def needs_place(item: Item, photo_station: str | None) -> bool:
    """Must the official say where and when the photo was taken before assigning it?"""
    in_doubt = item.reason in UNPLACED or not photo_station or item.taken_at is None
    return item.about_photo and item.reason != STATION_CONFLICT and in_doubt


def race_day_time(text: str, timezone: str, start: datetime) -> datetime:
    """A time of day on the race's day, local (10:21:40, 10:21:40.5), as UTC; raises
    ValueError with a line an official understands."""
    try:
        clock = time.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"'{text}' is not a time of day (as 10:21:40).") from None
    zone = ZoneInfo(timezone)
    return datetime.combine(start.astimezone(zone).date(), clock, zone).astimezone(UTC)


def timed_at(images: pd.DataFrame, image_id: str) -> str | None:
    """The station a photo in doubt is timed at all the same, or None: live, a copy that
    came in for another station after the photo was timed is the one in doubt, and the
    photo's first copy stays timed (transforms.dedup); in a batch run none is."""
    rows = images[
        (images["image_id"] == image_id)
        & (images["status"] != DUPLICATE)
        & (images["reason"] != STATION_CONFLICT)
    ]
    return text_or_none(rows["station_id"].iloc[0]) if len(rows) else None


def stray_note(where: str) -> str:
    """What an official needs to know of a photo in doubt that is timed at `where`."""
    return (
        f"This photo came in first for {where} and is timed there; this copy of it came in "
        "later for another station (copied into the wrong folder?). It stays timed at "
        f"{where} until you choose its station: assign times the athletes you choose there, "
        "at that station's time of the photo; reject leaves the photo out."
    )


# The late photos linked one by one on a too_late item's page: a camera's card uploaded an
# hour late holds thousands, and a link to each cost 550-700 CPU ms at each run of the page
# (2,000 photos), besides the browser's drawing them.
LATE_LINKS = 50


def late_batch(
    images: pd.DataFrame, item: Item, corrections: Iterable[Correction] = ()
) -> list[str]:
    """The photos (image_ids, in the order taken) that a too_late item stands for: its
    station's photos held as arrived too late, but for those the log decides already (one
    opened and decided alone, not re-timed yet, keeps that decision)."""
    late = images[images["reason"] == TOO_LATE]
    at_station = late[late["station_id"].map(text_or_none) == item.station_id]
    held = dict.fromkeys(at_station.sort_values(["taken_at", "path"])["image_id"])
    return undecided(list(held), corrections)


def undecided(image_ids: Iterable[str], corrections: Iterable[Correction]) -> list[str]:
    """The photos the log holds no decision about yet."""
    decided = {c.image_id for c in corrections if c.action in IMAGE_ACTIONS}
    return [i for i in image_ids if i not in decided]


def copies_of(images: pd.DataFrame, image_id: str) -> list[Placement]:
    """Each station a copy of the photo came in for (in path order), at its time there (a
    station's clock offset gives each copy its own)."""
    places: dict[str, Placement] = {}
    for row in images[images["image_id"] == image_id].sort_values("path").itertuples():
        if text_or_none(row.station_id) and row.station_id not in places:
            places[row.station_id] = Placement(row.station_id, _when(row.taken_at))
    return list(places.values())


# What the sidebar says was done, by the action logged: X on an early_start item logs
# from_gun, which "Rejected" misnamed (the athlete is timed, from their gun).
DONE = {
    APPROVE: "Approved",
    ASSIGN: "Assigned",
    REJECT: "Rejected",
    DSQ: "Disqualified",
    ACCEPT: "Accepted",
    FROM_GUN: "Timed from the gun:",
    REJECT_FACE: "Face not",
    REJECT_UNLISTED: "Rejected",
    CLOCK_SEEN: "Clock seen to",
}


def refusal(
    item: Item, log: Iterable[Correction], decided_here: Collection[str], timezone: str = "UTC"
) -> str | None:
    """Why a decision about `item` is not logged: None where it is to be; '' where this page
    decided the item already (`decided_here`: the keys of the items it decided), which says
    nothing more. The page goes on showing an item just decided while it runs again (slow
    when a re-timing has just replaced the results), and a second press there reached the
    item's decision again: "Not saved. kari decided this one already." told an official the
    decision saved a moment ago was lost (the audit: 4 times in 90 decisions). A decision by
    another official (another page) is said: by whom, what and when (`timezone`'s time)."""
    earlier = None if item.reason == OPENED else settled_by(item, log)
    if earlier is None:
        return None
    if item.key in decided_here:
        return ""
    when = earlier.decided_at
    at = f", at {when.astimezone(ZoneInfo(timezone)):%H:%M:%S}" if when else ""
    who = earlier.by or "another official"
    return f"{who} decided this one already ({earlier.action}{at})."


@dataclass(frozen=True)
class Logged:
    """What became of a decision: its rows logged, or why none was (`refusal`)."""

    rows: tuple[Correction, ...] = ()
    refused: str | None = None


def log_decision(
    path: str,
    item: Item,
    rows_for: Callable[[Sequence[Correction]], list[Correction]],
    decided_here: Collection[str],
    timezone: str = "UTC",
    race_start: datetime | None = None,
) -> Logged:
    """A decision about `item` checked against the log (`refusal`) and appended to it as one
    step, under the log's lock: two officials deciding one item within 0.1 s both read the
    log before either wrote, both were told "Saved." and the later decision counted. The
    rows are made (`rows_for`) from the log as it stands then: a late batch leaves out the
    photos decided meanwhile. ValueError from `rows_for` logs nothing."""
    with locked_log(path) as log:
        now = log.reading(timezone, race_start).corrections
        refused = refusal(item, now, decided_here, timezone)
        if refused is not None:
            return Logged(refused=refused)
        rows = rows_for(now)
        log.append(rows)
    return Logged(tuple(rows))


def decision_notice(action: str, item: Item, rows: list[Correction]) -> str:
    """The notice of a decision (`action`, pressed on `item`, logged as `rows`). An
    approval's rows name no athlete: the notice names those it confirmed ("Approved."
    alone left an official asking which photo the undo link was for)."""
    logged = rows[0].action if rows and rows[0].action in DONE else action
    bibs = [r.bib for r in rows if r.bib] or (list(item.candidates) if action == APPROVE else [])
    detail = ", ".join(bibs) or (f"{len(rows)} photos" if len(rows) > 1 else "")
    return f"{DONE[logged]} {detail}".strip() + "."


def decision_rows(
    action: str,
    item: Item,
    *,
    official: str,
    now: datetime,
    bibs: Sequence[str] = (),
    photo_station: str | None = None,
    placed: Placement | None = None,
    batch: Sequence[str] = (),
    assigned: Sequence[str] = (),
) -> list[Correction]:
    """The log rows for one decision about an item; raises ValueError for one that cannot be.

    Image decisions name the photo's own station: the photo of a missed_checkpoint item
    was taken at the finish, and it stays there. An assignment names the station and time
    the official `placed` the photo at, where given (a photo that came in for several
    stations must be placed). A too_late item's accept or reject is one row for each photo
    of its `batch` (late_batch). An assignment that leaves out an athlete the log has
    `assigned` the photo to already starts with a reject: assignments add up in the log
    (two officials may each name one athlete of a group photo), and the official changing
    their mind means the athletes chosen now, not those and the earlier ones. A reject of
    an item about reads or a face (BIB_REJECTS) rejects those reads, or the face's
    candidates, a row for each.
    """

    def row(
        action: str, bib: str = "", station: str | None = photo_station, at: datetime | None = None
    ) -> Correction:
        return Correction(item.image_id, action, bib, station or "", at, now, official)

    # An early start rejected is the athlete timed from their wave's gun (they waited).
    athlete_actions = {APPROVE: KEEP, DSQ: DSQ} | (
        {REJECT: FROM_GUN} if item.reason == EARLY_START else {}
    )
    if item.about_athlete and action in athlete_actions:
        return [row(athlete_actions[action], bib, item.station_id) for bib in item.candidates]
    if item.about_station and action == APPROVE:
        return [row(STATION_SEEN[item.reason], "", item.station_id)]
    if item.reason == TOO_LATE and action in (ACCEPT, REJECT):
        return [
            Correction(image_id, action, "", photo_station or "", None, now, official)
            for image_id in batch or (item.image_id,)
        ]
    in_doubt = item.reason == STATION_CONFLICT
    if in_doubt and action == APPROVE:
        raise ValueError(
            "Approving would time the reads at a station in doubt: choose the photo's "
            "station and assign the athletes on it."
        )
    if item.reason in UNPLACED and action == APPROVE:
        raise ValueError(
            "Approving times nothing on a photo without station or time: give them and "
            "assign the athletes on it."
        )
    if item.reason in BIB_REJECTS and action == REJECT:
        return [row(BIB_REJECTS[item.reason], bib) for bib in item.candidates]
    if item.reason == LISTED_SINCE_REJECTED and action == APPROVE:  # that read, seen: it stands
        return [row(APPROVE, bib) for bib in item.candidates]
    if item.about_photo and action in (APPROVE, REJECT):
        return [row(action)]
    if item.about_photo and action == ASSIGN:
        if not bibs:
            raise ValueError("Choose the athlete(s) on the photo first.")
        if in_doubt and placed is None:
            raise ValueError("Choose the station this photo was taken at first.")
        station, at = (placed.station_id, placed.passed_at) if placed else (photo_station, None)
        if not station or (at is None and item.taken_at is None):
            # The log's rows would credit the bibs with no passage anywhere: say so instead.
            raise ValueError(
                "This photo has no station or no time (its EXIF?), so an assignment would "
                "time nothing: give its station and time, or reject it."
            )
        assigns = [row(ASSIGN, bib, station, at) for bib in dict.fromkeys(bibs)]
        replaces = any(b not in bibs for b in assigned)
        return ([row(REJECT)] if replaces else []) + assigns
    raise ValueError(f"{action} is not a decision about {reason_text(item.reason).lower()}")
