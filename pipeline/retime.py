"""Race timing in-process: the Time half of the graph over photos already analysed.

The local live mode times the race again each time photos land. Starting a
Beam pipeline for that costs seconds even when idle (and a minute on this
busy machine), which alone breaks a 5 s latency goal. Timing is light (a few
hundred bytes per photo, see ../shared/DESIGN.md), so the live mode calls the
functions that the graph's composites wrap, in the graph's order, and groups
by event time with Beam's own window functions (Sessions, FixedWindows)
assigning and merging the windows. Its answers are those of a batch run on
the same files; tests/test_live.py checks that row for row.

Keep this module in step with `pipeline.graph.time_race`: a stage added there
is added here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from apache_beam.transforms import window
from apache_beam.transforms.window import BoundedWindow, WindowFn
from apache_beam.utils.timestamp import Timestamp

from pipeline.options import RaceConfig
from transforms.athlete_photos import athlete_photos_of
from transforms.clocks import clock_review_of, estimate_clocks, guns_of, with_clock_error
from transforms.corrections import decisions_by_image, official_statuses
from transforms.course import Course, waves_by_bib
from transforms.dedup import mark_bursts, mark_exact_duplicates
from transforms.exif import place_in_race
from transforms.faces import faces_enabled, gallery_of, reference_photos
from transforms.health import awaited, review_of_health
from transforms.identify import (
    FaceRule,
    Identified,
    ReviewItem,
    held_athletes,
    hold_too_late,
    identify_photo,
    late_batches,
)
from transforms.passages import (
    Frame,
    Passage,
    frame_of,
    merge_sightings,
    silent_windows,
    station_row,
)
from transforms.placing import is_asked, place_by_own_passages, unplaced_sightings
from transforms.records import Photo, Sighting
from transforms.results import build_leaderboard
from transforms.splits import Arrivals, check_athlete, due_of_bib
from transforms.zones import zone_review, zone_shots


class _Merges(WindowFn.MergeContext):
    """Records which windows a WindowFn merged into which."""

    def __init__(self, windows: Iterable[BoundedWindow]):
        super().__init__(windows)
        self.into: dict[BoundedWindow, BoundedWindow] = {}

    def merge(self, to_be_merged: Iterable[BoundedWindow], merge_result: BoundedWindow) -> None:
        self.into.update({w: merge_result for w in to_be_merged})


def _stamp(at: datetime) -> Timestamp:
    return Timestamp.of(at.timestamp())  # as TimestampedValue stamps it in the graph


T = TypeVar("T")


def group_in_windows(
    items: Iterable[T],
    key: Callable[[T], Hashable],
    at: Callable[[T], datetime],
    fn: WindowFn,
) -> dict[tuple[Hashable, BoundedWindow], list[T]]:
    """Items grouped per key and window, as a GroupByKey after WindowInto(fn) groups them
    (merging windows merged per key)."""
    by_key: dict[Hashable, list[tuple[BoundedWindow, T]]] = defaultdict(list)
    for item in items:
        (w,) = fn.assign(WindowFn.AssignContext(_stamp(at(item))))
        by_key[key(item)].append((w, item))
    grouped: dict[tuple[Hashable, BoundedWindow], list[T]] = defaultdict(list)
    for k, assigned in by_key.items():
        merges = _Merges({w for w, _ in assigned})
        if fn.is_merging():
            fn.merge(merges)
        for w, item in assigned:
            grouped[(k, merges.into.get(w, w))].append(item)
    return grouped


def dedup(
    photos: list[Photo],
    course: Course,
    held: frozenset[str] = frozenset(),
    arrived: Mapping[str, int] | None = None,
    decided: frozenset[str] = frozenset(),
) -> list[Photo]:
    """DedupPhotos: exact copies (rejected photos too), then burst sessions per station.
    Photos `held` as arrived too late (paths) take no part in bursts: held, they would hide
    a frame that came in time; at the course's crossing: last stations a burst's last
    frame is kept. Live, the copy of a photo `arrived` first is kept (mark_exact_duplicates;
    the photos an official `decided`, image_ids, are placed by the decision)."""
    copies: dict[str, list[Photo]] = defaultdict(list)
    for p in photos:
        copies[p.image_id].append(p)
    marked = [
        p
        for image_id, group in copies.items()
        for p in mark_exact_duplicates(group, course, arrived, image_id in decided)
    ]
    settings = course.settings
    return bursts_marked(
        marked, settings.burst_gap_s, settings.near_duplicate_bits, held, course.last_at
    )


def bursts_marked(
    photos: list[Photo],
    burst_gap_s: float,
    bits: int,
    held: frozenset[str],
    last_at: frozenset[str],
) -> list[Photo]:
    """MarkBursts: near duplicates marked in each station's burst sessions."""
    # Photos without time (rejected) are in no burst.
    marked = [p for p in photos if p.taken_at is None]
    bursts = group_in_windows(
        [p for p in photos if p.taken_at is not None],
        lambda p: p.station_id,
        lambda p: p.taken_at,
        window.Sessions(burst_gap_s),
    )
    for (station_id, _), group in bursts.items():
        marked += mark_bursts(group, burst_gap_s, bits, held, station_id in last_at)
    return marked


def passages_per_station(
    sightings: list[Sighting], merge_window_s: float, last_at: frozenset[str] = frozenset()
) -> list[Passage]:
    """PassagesPerStation: a session window per (station, bib); at the stations in
    `last_at`, at the session's last photo."""
    sessions = group_in_windows(
        sightings, lambda s: (s.station_id, s.bib), lambda s: s.at, window.Sessions(merge_window_s)
    )
    return [merge_sightings(group, last_at) for group in sessions.values()]


def check_splits(
    passages: list[Passage],
    cfg: RaceConfig,
    arrivals: Arrivals | None = None,
    photos: Iterable[Photo] = (),
) -> tuple[list[Passage], list[ReviewItem]]:
    """CheckSplits: each athlete's passages checked as a whole (live: as far as the
    stations' photos have come in), with the `photos` placed nowhere as its `unplaced`."""
    waves = {a.bib: a.wave for a in cfg.athletes}
    unplaced: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for photo in photos:
        for bib, place in unplaced_sightings(photo, cfg.course, frozenset(waves)):
            unplaced[bib].append(place)
    checked: list[Passage] = []
    review: list[ReviewItem] = []
    for bib, theirs in _by_bib(passages).items():
        gun = cfg.course.wave_start(waves.get(bib) or None)
        kept, flagged = check_athlete(
            theirs, cfg.course, gun, bib in waves, arrivals, unplaced[bib]
        )
        checked += kept
        review += flagged
    return checked, review


def _by_bib(passages: Iterable[Passage]) -> dict[str, list[Passage]]:
    by_bib: dict[str, list[Passage]] = defaultdict(list)
    for p in passages:
        by_bib[p.bib].append(p)
    return by_bib


def due_at_stations(
    passages: list[Passage], cfg: RaceConfig
) -> list[tuple[str, tuple[datetime, bool]]]:
    """DueAtStations: when each runner not seen at a station was due there."""
    waves = {a.bib: a.wave for a in cfg.athletes}
    return [
        d
        for bib, theirs in _by_bib(passages).items()
        for d in due_of_bib(bib, theirs, cfg.course, waves)
    ]


def checked_until(
    passages: list[Passage], cfg: RaceConfig, as_of: datetime, photos: Iterable[Photo] = ()
) -> list[Passage]:
    """The passages as CheckSplits judged them at `as_of`, from those until then: a weak read
    is not yet backed up by a passage that came after it."""
    return check_splits([p for p in passages if p.passed_at <= as_of], cfg, photos=photos)[0]


def station_health(
    photos: list[Photo],
    passages: list[Passage],
    window_s: float,
    due: Iterable[tuple[str, tuple[datetime, bool]]] = (),
) -> list[dict]:
    """StationHealth: one row per station and fixed window, and the silent windows (`due`:
    DueAtStations')."""
    fixed = window.FixedWindows(window_s)
    frames: dict[tuple, list[Frame]] = defaultdict(list)
    counted: dict[tuple, list[int]] = defaultdict(list)
    timed = [p for p in photos if p.taken_at is not None]
    for (station_id, w), group in group_in_windows(
        timed, lambda p: p.station_id, lambda p: p.taken_at, fixed
    ).items():
        frames[(station_id, float(w.start), float(w.end))] = [frame_of(p) for p in group]
    for (station_id, w), group in group_in_windows(
        passages, lambda p: p.station_id, lambda p: p.passed_at, fixed
    ).items():
        counted[(station_id, float(w.start), float(w.end))] = [1] * len(group)
    rows = [
        station_row(key, {"frames": frames.get(key, []), "passages": counted.get(key, [])})
        for key in frames.keys() | counted.keys()
    ]
    by_station: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_station[row["station_id"]].append(row)
    due_at_station: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for station_id, when in due:
        due_at_station[station_id].append(when)
    return rows + [
        s
        for sid in by_station | due_at_station
        for s in silent_windows(by_station[sid], window_s, due_at_station[sid], sid)
    ]


@dataclass(frozen=True)
class Timed:
    """The race's results, as the graph's WriteResults receives them."""

    images: list[Photo]
    passages: list[Passage]
    review: list[ReviewItem]
    leaderboard: list[dict]
    stations: list[dict]
    athlete_photos: list[dict]

    def tables(self) -> dict[str, list]:
        return {
            "images": self.images,
            "passages": self.passages,
            "review": self.review,
            "leaderboard": self.leaderboard,
            "stations": self.stations,
            "athlete_photos": self.athlete_photos,
        }


def identify_all(
    photos: Iterable[Photo],
    cfg: RaceConfig,
    too_late: frozenset[str] = frozenset(),
    arrived: Mapping[str, int] | None = None,
) -> list[Identified]:
    """ParseExif, DedupPhotos and IdentifyAthletes. Photos whose path is in `too_late` arrived
    after the allowed lateness (live modes only): their sightings are held for review;
    `arrived` (live: path -> the poll that took it in) says which copy of a photo is kept."""
    settings = cfg.course.settings
    waves = waves_by_bib(cfg.athletes)
    placed = [place_in_race(p, cfg.course, waves) for p in photos]
    known = frozenset(a.bib for a in cfg.athletes)
    decisions = decisions_by_image(cfg.corrections, cfg.course.station_ids)
    # An official's decision on a late photo times it like any other.
    held = frozenset(p.path for p in placed if p.path in too_late and p.image_id not in decisions)
    decided = frozenset(i for i, d in decisions.items() if d.overrides)
    deduped = dedup(placed, cfg.course, held, arrived, decided)
    gallery = (
        gallery_of(
            deduped,
            reference_photos(cfg.athletes, cfg.start_list_file),
            known,
            settings.review_threshold,
        )
        # Photos analysed without faces (face matching off) have nothing to match.
        if faces_enabled(settings) and any(p.facts.faces for p in deduped)
        else None
    )
    face_rule = FaceRule(settings.face_threshold, settings.face_margin)

    def identified(photos: Iterable[Photo]) -> list[Identified]:
        return [
            identify_photo(p, known, settings.review_threshold, decisions, gallery, face_rule)
            for p in photos
        ]

    # IdentifyAtSharedPlaces: photos at a place of several stations that their time left
    # ambiguous are placed by the passages of the other photos, then identified.
    asked: list[Photo] = []
    rest: list[Photo] = []
    for p in deduped:
        (asked if is_asked(p, known, settings.review_threshold) else rest).append(p)
    others = identified(rest)
    placed = []
    if asked:
        sightings = [s for i in others for s in i.sightings]
        theirs = passages_per_station(sightings, settings.merge_window_s, cfg.course.last_at)
        placed = identified(
            bursts_marked(
                place_by_own_passages(asked, theirs, cfg.course, waves),
                settings.burst_gap_s,
                settings.near_duplicate_bits,
                held,
                cfg.course.last_at,
            )
        )
    return late_batches(hold_too_late(i) if i.photo.path in held else i for i in others + placed)


def arrivals_of(
    identified: Iterable[Identified], cfg: RaceConfig, now: datetime, ended: bool = False
) -> Arrivals:
    """How far each station's photos have come in, from the photos taken in so far (the
    watermark as the live modes keep it: the latest photo time, never ahead of now), and
    who was read on the photos held as arrived too late."""
    latest: dict[str, datetime] = {}
    held: set[tuple[str, str]] = set()
    for i in identified:
        p = i.photo
        if p.station_id is not None and p.taken_at is not None:
            latest[p.station_id] = max(p.taken_at, latest.get(p.station_id, p.taken_at))
        held.update(pair for item in i.review for pair in held_athletes(item))
    settings = cfg.course.settings
    return Arrivals(
        latest,
        min(max(latest.values()), now) if latest else None,
        timedelta(seconds=settings.merge_window_s + settings.allowed_lateness_s),
        frozenset(held),
        ended,
    )


def results_of(
    identified: list[Identified],
    passages: list[Passage],
    cfg: RaceConfig,
    live: bool = False,
    ended: bool = False,
) -> Timed:
    """CheckSplits, BuildLeaderboard, StationHealth, ReviewStationHealth, EstimateClocks and
    ReviewTimeZones over the photos
    and their passages; `live`: photos may still come (a missed checkpoint waits for them),
    until the watch has `ended`."""
    images = [i.photo for i in identified]
    arrivals = arrivals_of(identified, cfg, datetime.now(UTC), ended) if live else None
    checked, split_review = check_splits(passages, cfg, arrivals, images)
    health = station_health(
        images, checked, cfg.course.settings.health_window_s, due_at_stations(checked, cfg)
    )
    if arrivals is not None:  # live: a station's silence may be photos still on their way
        health = awaited(health, arrivals)
    guns = guns_of(cfg.course, cfg.athletes)
    clocks = estimate_clocks(passages, cfg.course, guns)
    shots = [s for p in images for s in zone_shots(p, cfg.course)]
    return Timed(
        images=images,
        passages=checked,
        review=[r for i in identified for r in i.review]
        + split_review
        + review_of_health(health, images)
        + [r for e in clocks for r in clock_review_of(e, cfg.course)]
        + zone_review(shots, passages, cfg.course, guns),
        leaderboard=build_leaderboard(
            checked if cfg.as_of is None else checked_until(passages, cfg, cfg.as_of, images),
            cfg.course,
            cfg.athletes,
            cfg.as_of,
            official_statuses(cfg.corrections),
        ),
        stations=[with_clock_error(row, clocks) for row in health],
        athlete_photos=athlete_photos_of(
            [s for i in identified for s in i.sightings], checked, images
        ),
    )


def time_photos(
    photos: Iterable[Photo],
    cfg: RaceConfig,
    too_late: frozenset[str] = frozenset(),
    live: bool = False,
    ended: bool = False,
    arrived: Mapping[str, int] | None = None,
) -> Timed:
    """`time_race` without a pipeline; `live`: photos may still come, until `ended`, and
    have `arrived` in an order (identify_all)."""
    identified = identify_all(photos, cfg, too_late, arrived)
    sightings = [s for i in identified for s in i.sightings]
    passages = passages_per_station(
        sightings, cfg.course.settings.merge_window_s, cfg.course.last_at
    )
    return results_of(identified, passages, cfg, live, ended)
