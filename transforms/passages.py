"""Passages per station by event time, and the health of each station's camera.

Sightings of one bib at one station that follow each other within the merge
window are one passage, at the earliest photo's time, or the latest's at a
station whose camera faces the oncoming runners (crossing: last): a session
window per (station, bib). The windowing states its trigger, accumulation and allowed
lateness explicitly, because the same composite serves batch runs (one pane
per window) and streaming runs (early panes for the live view, late panes
that correct a passage when a phone uploads late).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import TimestampedValue

from transforms.corrections import TOO_LATE
from transforms.dedup import hash_distance
from transforms.quality import is_blurred, is_covered
from transforms.records import Photo, Sighting, pack_time, unpack_time


@dataclass(frozen=True)
class Passage:
    bib: str
    station_id: str
    passed_at: datetime
    method: str
    confidence: float
    image_id: str
    needs_review: bool
    photos: int  # sightings merged into this passage
    review_reason: str | None = None  # why it needs review: low_confidence, implausible_split, ...
    # One of its sightings an official decided: CheckSplits never flags it (internal, no column).
    official: bool = False


def _evidence_order(s: Sighting) -> tuple:
    return s.at, s.image_id, -s.confidence, s.method


def merge_sightings(
    sightings: Iterable[Sighting], last_at: Collection[str] = frozenset()
) -> Passage:
    """One passage from the sightings of one bib at one station within a merge window.

    The time is the earliest photo's among the best evidence there is (the latest's at a
    station in `last_at`, whose camera sees runners coming until they cross): an
    official's word and confident reads, else weak ones (a weak read of the same number
    a few seconds off may be someone else, so it never moves a confirmed passage). An
    official's word joins the confident reads rather than overruling them: placing a burst's
    second frame says the athlete was there, not that the sure read of its first frame, the
    crossing, was wrong (a rejected read is no sighting). A
    passage needs review only when no sighting is confirmed, and is official when an
    official decided one of its sightings. In a streaming run a later photo arriving
    moves a `last_at` passage later (its window's next pane).
    """
    # One photo can be read twice in the same instant (OCR and a face, say): the surer read,
    # then the method's name, decide, so the passage never depends on the arrival order.
    # A photo uploaded twice is read twice: in a streaming run both copies' sightings can
    # reach the window (in different panes); they are one piece of evidence.
    ordered = sorted(set(sightings), key=_evidence_order)
    confirmed = [s for s in ordered if s.confirmed]
    best = _crossing(confirmed or ordered, last_at)
    return Passage(
        bib=best.bib,
        station_id=best.station_id,
        passed_at=best.at,
        method=best.method,
        confidence=max(s.confidence for s in (confirmed or ordered)),
        image_id=best.image_id,
        needs_review=not confirmed,
        review_reason=None if confirmed else "low_confidence",
        photos=len(ordered),
        official=any(s.official for s in ordered),
    )


def _crossing(evidence: list[Sighting], last_at: Collection[str]) -> Sighting:
    """The sighting at the line of evidence in _evidence_order: its first, or at a
    `last_at` station the first of its latest instant (the same photo and read the
    earliest instant's ties would choose)."""
    if evidence[0].station_id not in last_at:
        return evidence[0]
    latest = evidence[-1].at
    return next(s for s in evidence if s.at == latest)


class _GatherSightings(beam.CombineFn):
    """The sightings of a window (a handful per passage), each once, in a stable order."""

    def create_accumulator(self) -> list[Sighting]:
        return []

    def add_input(self, acc: list[Sighting], s: Sighting) -> list[Sighting]:
        acc.append(s)
        return acc

    def merge_accumulators(self, accs: Iterable[list[Sighting]]) -> list[Sighting]:
        return [s for acc in accs for s in acc]

    def extract_output(self, acc: list[Sighting]) -> tuple[Sighting, ...]:
        return tuple(sorted(set(acc), key=_evidence_order))


class PassageWindows(beam.PTransform):
    """Session windows per key with an explicit trigger, accumulation and lateness.

    In streaming, early panes every `early_s` seconds of processing time give a
    live view (batch engines have no processing-time clock, so batch runs pass
    None); the on-time pane fires at the watermark; each late element fires a
    late pane.
    Panes accumulate, so a late pane carries the whole corrected passage and
    replaces the earlier one instead of adding a second.
    """

    def __init__(self, gap_s: float, allowed_lateness_s: float, early_s: int | None = None):
        super().__init__()
        self._gap_s = gap_s
        self._lateness_s = allowed_lateness_s
        self._early_s = early_s

    def expand(self, keyed: beam.PCollection) -> beam.PCollection:
        return keyed | "SessionWindows" >> beam.WindowInto(
            window.Sessions(self._gap_s),
            trigger=trigger.AfterWatermark(
                early=trigger.AfterProcessingTime(self._early_s) if self._early_s else None,
                late=trigger.AfterCount(1),
            ),
            accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
            allowed_lateness=int(self._lateness_s),
        )


def is_too_late(
    taken_at: datetime, watermark: datetime | None, gap_s: float, allowed_lateness_s: float
) -> bool:
    """Would the passage windows drop this photo's sightings as too late?

    Beam drops an element whose window ends more than the allowed lateness
    behind the watermark; the session window a photo opens ends gap_s after it.
    """
    return watermark is not None and (
        taken_at + timedelta(seconds=gap_s + allowed_lateness_s) < watermark
    )


def advance_watermark(watermark: datetime | None, taken_at: datetime, now: datetime) -> datetime:
    """The event-time watermark after a photo arrived: the latest photo time seen so far,
    but never ahead of the wall clock (a camera whose clock runs a day fast must not make
    every other photo late)."""
    seen = min(taken_at, now)
    return seen if watermark is None else max(watermark, seen)


def _stamp_sighting(s: Sighting) -> TimestampedValue:
    return TimestampedValue(s, s.at.timestamp())


class VisitsPerStation(beam.PTransform):
    """Sightings -> the sightings of each visit of an athlete to a station, a tuple per pane
    of its session window (batch: one pane per window)."""

    def __init__(
        self, merge_window_s: float, allowed_lateness_s: float, early_s: int | None = None
    ):
        super().__init__()
        self._merge_window_s = merge_window_s
        self._allowed_lateness_s = allowed_lateness_s
        self._early_s = early_s

    def expand(self, sightings: beam.PCollection) -> beam.PCollection:
        return (
            sightings
            | "StampSightings" >> beam.Map(_stamp_sighting)
            | "ByStationAndBib" >> beam.Map(lambda s: ((s.station_id, s.bib), s))
            | "MergeWindows"
            >> PassageWindows(self._merge_window_s, self._allowed_lateness_s, self._early_s)
            | "GatherSightings" >> beam.CombinePerKey(_GatherSightings())
            | "Visits" >> beam.Values()
        )


class PassagesPerStation(beam.PTransform):
    """Sightings -> passages, one per athlete per station visit; at the stations in `last_at`
    (Course.last_at) at the visit's last photo."""

    def __init__(
        self,
        merge_window_s: float,
        allowed_lateness_s: float,
        last_at: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._visits = VisitsPerStation(merge_window_s, allowed_lateness_s)
        self._last_at = last_at

    def expand(self, sightings: beam.PCollection) -> beam.PCollection:
        return (
            sightings
            | "VisitsPerStation" >> self._visits
            | "MergeSightings" >> beam.Map(merge_sightings, self._last_at)
        )


@dataclass(frozen=True)
class PassagePane:
    """A passage as one pane of its session window said it (streaming), with the sightings
    it was merged from."""

    passage: Passage
    window_start: float  # seconds since the epoch
    window_end: float
    pane_index: int
    sightings: tuple[Sighting, ...]


class WithPane(beam.DoFn):
    """A visit's sightings -> PassagePane, from the window and pane it was fired in; at the
    stations in `last_at` at the pane's last photo."""

    def __init__(self, last_at: frozenset[str] = frozenset()):
        self._last_at = last_at

    def process(
        self,
        sightings: tuple[Sighting, ...],
        w: object = beam.DoFn.WindowParam,
        pane: object = beam.DoFn.PaneInfoParam,
    ) -> Iterator[PassagePane]:
        passage = merge_sightings(sightings, self._last_at)
        yield PassagePane(passage, float(w.start), float(w.end), pane.index, sightings)


def _supersedes(newer: PassagePane, older: PassagePane) -> bool:
    if (newer.passage.station_id, newer.passage.bib) != (
        older.passage.station_id,
        older.passage.bib,
    ):
        return False
    same = (newer.window_start, newer.window_end) == (older.window_start, older.window_end)
    if same:
        return newer.pane_index > older.pane_index
    return newer.window_start <= older.window_start and older.window_end <= newer.window_end


def current_passages(
    panes: Iterable[PassagePane],
    timed: Collection[Sighting] | None = None,
    last_at: frozenset[str] = frozenset(),
) -> list[Passage]:
    """The passages the latest panes give, in any arrival order.

    Panes accumulate: a window's later pane carries all of its sightings and
    replaces its earlier panes; a late sighting that bridges two sessions
    merges them into a window that contains both, whose pane replaces theirs.
    So a late photo corrects a passage instead of adding a second one.

    With `timed`, the sightings that the race's timing keeps over every photo
    seen so far, each passage is merged again from those of its sightings: a
    frame that turned out to be a burst duplicate (known only once its burst
    is seen whole, in whatever order its frames arrived) adds nothing to its
    passage, as in a batch run (at the stations in `last_at`, at its last photo).
    """
    by_key: dict[tuple[str, str], list[PassagePane]] = {}
    for pane in panes:
        by_key.setdefault((pane.passage.station_id, pane.passage.bib), []).append(pane)
    current = [
        pane
        for group in by_key.values()
        for pane in set(group)
        if not any(_supersedes(other, pane) for other in group)
    ]
    if timed is None:
        return [pane.passage for pane in current]
    kept = ([s for s in pane.sightings if s in timed] for pane in current)
    return [merge_sightings(sightings, last_at) for sightings in kept if sightings]


class _MarkTooLate(beam.DoFn):
    """Keeps the race's event-time watermark in state and sends photos that arrive more than
    the allowed lateness behind it to the TOO_LATE output (one key: the whole race)."""

    TOO_LATE = TOO_LATE
    WATERMARK = ReadModifyWriteStateSpec("watermark", beam.coders.FloatCoder())

    def __init__(self, gap_s: float, allowed_lateness_s: float):
        self._gap_s = gap_s
        self._lateness_s = allowed_lateness_s

    def process(
        self,
        element: tuple[str, Photo],
        watermark: object = beam.DoFn.StateParam(WATERMARK),
    ) -> Iterator[object]:
        _, photo = element
        seen = watermark.read()
        before = _utc(seen) if seen is not None else None
        after = advance_watermark(before, photo.taken_at, datetime.now(UTC))
        watermark.write(after.timestamp())
        if is_too_late(photo.taken_at, before, self._gap_s, self._lateness_s):
            yield beam.pvalue.TaggedOutput(self.TOO_LATE, photo)
        else:
            yield photo


class MarkTooLate(beam.PTransform):
    """Timed photos -> (on_time, too_late), judged on arrival against the watermark, as the
    local live mode judges them."""

    def __init__(self, gap_s: float, allowed_lateness_s: float):
        super().__init__()
        self._fn = _MarkTooLate(gap_s, allowed_lateness_s)

    def expand(self, photos: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            photos
            | "WholeRace" >> beam.Map(lambda p: ("race", p))
            | "Judge" >> beam.ParDo(self._fn).with_outputs(TOO_LATE, main="on_time")
        )


@dataclass(frozen=True)
class Frame:
    """What station health needs of one photo."""

    at: datetime
    covered: bool
    blurred: bool
    phash: str | None = None

    def __reduce__(self) -> tuple:
        # Beam pickles a Frame between stages (the launcher holds StationHealth's grouping
        # whole): its fields, the time packed, take ~50 bytes against ~190.
        return _frame_of, (pack_time(self.at), self.covered, self.blurred, self.phash)


def _frame_of(at: int | datetime, covered: bool, blurred: bool, phash: str | None) -> Frame:
    return Frame(unpack_time(at), covered, blurred, phash)


# A stuck camera sends the same picture again and again; a burst of a moving runner
# differs by more than this many bits (of 64) from frame to frame.
FROZEN_BITS = 2
FROZEN_RUN = 5


def _longest_run(frames: list[Frame], same: Callable[[Frame, Frame | None], bool]) -> int:
    longest = run = 0
    previous: Frame | None = None
    for f in frames:
        run = run + 1 if same(f, previous) else 0
        longest = max(longest, run)
        previous = f
    return longest


def _is_repeat(f: Frame, previous: Frame | None) -> bool:
    return (
        previous is not None
        and f.phash is not None
        and previous.phash is not None
        and hash_distance(f.phash, previous.phash) <= FROZEN_BITS
    )


def _shots(frames: Iterable[Frame]) -> list[Frame]:
    """The frames in time order, one per moment: a copy of a photo (re-saved, or sent
    twice) keeps its EXIF time, and a camera takes no two photos at one instant. Counted
    twice, a copy of the last frame of a four-frame burst made five frames "the same
    picture again and again" (the acceptance audit's false camera_frozen at the finish)."""
    return list({f.at: f for f in sorted(frames, key=lambda f: f.at)}.values())


def window_health(frames: Iterable[Frame], run_length: int = 3) -> str:
    """ok, or covered / frozen / blurred when several shots in a row are so."""
    ordered = _shots(frames)
    if _longest_run(ordered, lambda f, _: f.covered) >= run_length:
        return "covered"
    if _longest_run(ordered, _is_repeat) + 1 >= FROZEN_RUN:
        return "frozen"
    if _longest_run(ordered, lambda f, _: f.blurred) >= run_length:
        return "blurred"
    return "ok"


def frame_of(photo: Photo) -> Frame:
    q = photo.facts.quality
    return Frame(
        at=photo.taken_at,
        covered=q is not None and is_covered(q),
        blurred=q is not None and not is_covered(q) and is_blurred(q),
        phash=photo.facts.phash,
    )


class _Keyed(beam.DoFn):
    """(station, payload) -> ((station, window start, window end), payload); times in seconds.

    Seconds since the epoch, not datetimes, because a grouping key must encode
    deterministically.
    """

    def process(
        self, element: tuple[str, object], w: object = beam.DoFn.WindowParam
    ) -> Iterator[tuple[tuple[str, float, float], object]]:
        station_id, payload = element
        yield (station_id, float(w.start), float(w.end)), payload


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _window_of(at: datetime, window_s: float) -> datetime:
    """The start of the fixed window (FixedWindows(window_s)'s, from the epoch) holding `at`."""
    seconds = at.timestamp()
    return _utc(seconds - seconds % window_s)


def silent_windows(
    rows: Iterable[dict],
    window_s: float,
    due: Iterable[tuple[datetime, bool]] = (),
    station_id: str = "",
) -> list[dict]:
    """The windows of one station without a photo while runners were due there.

    `due`: (when, past_last) a runner not seen at the station should have passed it
    (splits.due_at): between their passages, or, `past_last`, just after their last one.
    A gap in a station's photos is no silence by itself: a leader minutes ahead of the pack
    leaves one at the finish (session 19's audit: a working camera reported silent). A gap
    is silent where a runner missed there was due in it, and then from photo to photo (a
    camera that stops stays stopped until it takes one again); before the station's first
    photo or after its last, from and to the runners due. A runner due just past their last
    passage counts only between two photos: they may have stopped, and a gap there, where
    the camera was at work before and after, is where a silent finish camera loses its
    finishers.
    """
    step = timedelta(seconds=window_s)
    photos = sorted({r["window_start"] for r in rows})
    due = [(_window_of(at, window_s), past_last) for at, past_last in due]
    station_id = next((r["station_id"] for r in rows), station_id)
    silent: list[datetime] = []
    for first, last in _gaps(photos, [w for w, _ in due], step):
        bounded = first - step in photos and last + step in photos
        counted = [w for w, past_last in due if first <= w <= last and (bounded or not past_last)]
        if counted:
            start = first if first - step in photos else min(counted)
            end = last if last + step in photos else max(counted)
            silent += [start + i * step for i in range(round((end - start) / step) + 1)]
    return [_silent_row(station_id, start, step) for start in silent]


def _gaps(
    photos: list[datetime], due: list[datetime], step: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """(first, last) window of each run of windows without a photo, from the earliest window
    with a photo or a runner due to the latest."""
    if not due:
        return  # nobody missed there: no gap is a silence
    windows = sorted({*photos, *due})
    first: datetime | None = None
    at, end, taken = windows[0], windows[-1], set(photos)
    while at <= end:
        if at in taken and first is not None:
            yield first, at - step
            first = None
        elif at not in taken and first is None:
            first = at
        at += step
    if first is not None:
        yield first, end


def _silent_row(station_id: str, start: datetime, step: timedelta) -> dict:
    return {
        "station_id": station_id,
        "window_start": start,
        "window_end": start + step,
        "images": 0,
        "passages": 0,
        "last_photo_at": None,
        "health": "silent",
    }


def station_row(key: tuple[str, float, float], grouped: dict[str, list]) -> dict:
    station_id, start_s, end_s = key
    start, end = _utc(start_s), _utc(end_s)
    frames = grouped["frames"]
    return {
        "station_id": station_id,
        "window_start": start,
        "window_end": end,
        "images": len(frames),
        "passages": sum(grouped["passages"]),
        "last_photo_at": max(f.at for f in frames) if frames else None,
        "health": window_health(frames),
    }


def whole_day() -> beam.WindowInto:
    """The whole race day as one window, once the watermark has passed it: for groupings
    that need every window of a station. (A stated trigger, so that a streaming run accepts
    the grouping.)"""
    return beam.WindowInto(
        window.GlobalWindows(),
        trigger=trigger.AfterWatermark(),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
    )


class StationHealth(beam.PTransform):
    """(photos, passages[, due]) -> one row per station and fixed window of event time, with
    the windows in which a station was silent; `due`: (station, time) a runner not seen
    there was due there (splits.DueAtStations)."""

    def __init__(self, window_s: float):
        super().__init__()
        self._window_s = window_s

    def _windowed(self, pcoll: beam.PCollection, label: str) -> beam.PCollection:
        return (
            pcoll
            | f"{label}Windows" >> beam.WindowInto(window.FixedWindows(self._window_s))
            | f"{label}WithWindow" >> beam.ParDo(_Keyed())
        )

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> beam.PCollection:
        photos, passages, *due = inputs
        frames = self._windowed(
            photos
            | "Timed" >> beam.Filter(lambda p: p.taken_at is not None)
            | "StampPhotos" >> beam.Map(lambda p: TimestampedValue(p, p.taken_at.timestamp()))
            | "Frames" >> beam.Map(lambda p: (p.station_id, frame_of(p))),
            "Photo",
        )
        counted = self._windowed(
            passages
            | "StampPassages" >> beam.Map(lambda p: TimestampedValue(p, p.passed_at.timestamp()))
            | "Ones" >> beam.Map(lambda p: (p.station_id, 1)),
            "Passage",
        )
        rows = (
            {"frames": frames, "passages": counted}
            | "JoinWindows" >> beam.CoGroupByKey()
            | "Rows" >> beam.MapTuple(station_row)
            # Silent windows are gaps between busy ones.
            | "Day" >> whole_day()
        )
        by_station = {"rows": rows | "RowsByStation" >> beam.Map(lambda r: (r["station_id"], r))}
        if due:
            by_station["due"] = due[0] | "DueDay" >> whole_day()
        silent = (
            by_station
            | "WholeDay" >> beam.CoGroupByKey()
            | "SilentWindows"
            >> beam.FlatMapTuple(
                lambda sid, got: silent_windows(
                    got["rows"], self._window_s, got.get("due", ()), sid
                )
            )
        )
        return (rows, silent) | "AllWindows" >> beam.Flatten()
