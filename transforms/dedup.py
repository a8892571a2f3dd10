"""Duplicate photos: the same file uploaded twice, and burst shots that add nothing.

An exact duplicate has the same SHA-256 as another file; the first by path is
kept (in a live run, the first to arrive). Copies of one photo in the folders of
different stations (a start photo copied into finish/ by mistake) leave its
station in doubt: the first copy is kept, timed at neither station, for an
official to place (station_conflict); live, a copy that comes in for another
station after the photo was timed is the one in doubt, and the timing stays.
Rejected photos take part too: a copy in a folder of no station of a photo placed at
its station is a duplicate of it (not a photo to place), and the copies of a photo
rejected everywhere are one rejected photo and its duplicates (one review item).

A near duplicate is a photo taken at the same station within a burst gap of a
kept one, with a perceptual hash within a few bits of it, and no bib read that
the kept one does not have: it shows nothing new, so it needs neither a passage
nor a review. A frame in which a new bib appears is never a duplicate. The kept
frame is the burst's first, or at a `crossing: last` station its last: there the
last photo times the passage (a camera facing the oncoming runners), and keeping
the first timed it up to burst_gap_s before the line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.transforms.window import TimestampedValue

from transforms.corrections import EXACT_DUPLICATE, STATION_CONFLICT
from transforms.course import Course
from transforms.exif import exif_time
from transforms.records import DUPLICATE, REJECTED, REVIEW, Photo, pack_photo, unpack_photo


def mark_exact_duplicates(
    copies: Iterable[Photo],
    course: Course,
    arrived: Mapping[str, int] | None = None,
    decided: bool = False,
) -> list[Photo]:
    """Photos of one image_id: the first of those placed (of all, if none is) is kept, the
    others point at it. Copies placed at different stations put the kept one in review:
    timing it at either station would be a guess (a start photo in finish/ took its
    runners' start passages).

    First by path in a batch run; in a live run (`arrived`: path -> the poll that took the
    file in) first to arrive, then by path: a copy that came in later (into `Finish/`
    beside `finish/`) became the photo of record by path, and the dashboard's links
    pointed at it. Of the copies that came in later for another station than the photo's
    first ones, the first is in review in their stead (a stray copy into start/ of a finish
    photo put the published finish in doubt, timed nowhere), unless an official has
    `decided` the photo, which places it."""
    rank = arrived or {}
    ordered = sorted(copies, key=lambda p: (p.status == REJECTED, rank.get(p.path, 0), p.path))
    first = ordered[0]
    placed = [p for p in ordered if p.status != REJECTED]
    together = {p.station_id for p in placed if rank.get(p.path, 0) == rank.get(first.path, 0)}
    in_doubt = len(together) > 1
    if in_doubt:
        first = kept_in_doubt(first, placed, course)
    marked = [
        replace(
            p,
            status=DUPLICATE,
            reason=EXACT_DUPLICATE,
            duplicate_of=first.image_id,
            duplicate_of_path=first.path,
        )
        for p in ordered[1:]
    ]
    stray = next((p for p in placed if p.station_id not in together), None)
    if in_doubt or stray is None or decided:
        return [first] + marked
    queued = replace(
        kept_in_doubt(stray, placed, course),
        duplicate_of=first.image_id,
        duplicate_of_path=first.path,
    )
    return [first] + [queued if p.path == stray.path else p for p in marked]


def kept_in_doubt(photo: Photo, placed: list[Photo], course: Course) -> Photo:
    """The copy of a photo `placed` at several stations that an official is to place: the
    stations it may be at (its copies', the first kept's first) and the time its EXIF
    gives, as a photo placed nowhere has them (records.Photo), so that review.parquet says
    them to whoever reads it, not only to the dashboard."""
    stations = tuple(dict.fromkeys(p.station_id for p in placed))
    return replace(
        photo,
        status=REVIEW,
        reason=STATION_CONFLICT,
        exif_taken_at=exif_time(photo.facts.exif, course, stations),
        could_be_at=stations,
    )


def _bibs(photo: Photo) -> set[str]:
    return {b.bib for b in photo.facts.bibs}


def hash_distance(a: str, b: str) -> int:
    """Bits that differ between two perceptual hashes (hex, as imagehash writes them): what
    imagehash's `hex_to_hash(a) - hex_to_hash(b)` gives, at 1 us against its ~100."""
    if len(a) != len(b):
        raise ValueError(f"perceptual hashes of different sizes: {a!r}, {b!r}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def is_near_duplicate(photo: Photo, kept: Photo, gap_s: float, max_bits: int) -> bool:
    if photo.station_id != kept.station_id or not photo.facts.phash or not kept.facts.phash:
        return False
    if abs((photo.taken_at - kept.taken_at).total_seconds()) > gap_s:
        return False
    return hash_distance(photo.facts.phash, kept.facts.phash) <= max_bits and _bibs(photo) <= _bibs(
        kept
    )


def mark_near_duplicates(
    photos: Iterable[Photo], gap_s: float, max_bits: int, latest: bool = False
) -> list[Photo]:
    """Photos of one station: each burst frame that adds nothing points at the kept frame,
    the burst's first, or its last where the station is timed by the `latest` photo."""
    kept: list[Photo] = []
    marked: list[Photo] = []
    for photo in sorted(photos, key=lambda p: (p.taken_at, p.path), reverse=latest):
        original = next(
            (k for k in reversed(kept) if is_near_duplicate(photo, k, gap_s, max_bits)), None
        )
        if original is None:
            kept.append(photo)
            marked.append(photo)
        else:
            marked.append(
                replace(
                    photo,
                    status=DUPLICATE,
                    reason="near_duplicate",
                    duplicate_of=original.image_id,
                    duplicate_of_path=original.path,
                )
            )
    return marked


def _restamp(photo: Photo) -> TimestampedValue:
    return TimestampedValue(photo, photo.taken_at.timestamp())


def _keyed(key: Callable[[Photo], str]) -> Callable[[Photo], tuple[str, bytes]]:
    """The photo packed, under its key: a GroupByKey's values are held whole (decoded, in
    the DirectRunner's launcher), and packed they take a third of what Photos do."""
    return lambda photo: (key(photo), pack_photo(photo))


def _copies(group: tuple[str, Iterable[bytes]], course: Course) -> list[Photo]:
    return mark_exact_duplicates(map(unpack_photo, group[1]), course)


def _by_station(
    packed: tuple[str, Iterable[bytes]],
    gap_s: float,
    bits: int,
    held: frozenset[str],
    last_at: frozenset[str],
) -> Iterator[Photo]:
    station_id, photos = packed
    unpacked = [unpack_photo(p) for p in photos]
    yield from mark_bursts(unpacked, gap_s, bits, held, station_id in last_at)


def mark_bursts(
    photos: list[Photo],
    gap_s: float,
    bits: int,
    held: frozenset[str] = frozenset(),
    latest: bool = False,
) -> list[Photo]:
    """A burst session's photos, near duplicates marked among those that take part: not
    copies, nor photos whose station is in doubt (they would hide a frame of the station
    they were wrongly put in), nor photos `held` (paths) as arrived too late in the live
    run timed (they would hide a frame that came in time). `latest`: the station is timed
    by a passage's last photo (crossing: last), which is kept."""
    fresh = [p for p in photos if p.status is None and p.path not in held]
    taking_part = {id(p) for p in fresh}
    apart = [p for p in photos if id(p) not in taking_part]
    return apart + mark_near_duplicates(fresh, gap_s, bits, latest)


def _untimed(photo: Photo, partitions: int) -> int:
    """1 for a photo without time (rejected: no burst to be in), 0 for a timed one."""
    return int(photo.taken_at is None)


class MarkBursts(beam.PTransform):
    """Photos -> the same photos, near duplicates marked in each station's burst sessions
    (photos without time are in none; at the stations `last_at`, crossing: last, the last
    frame is kept): DedupPhotos' second half, and what marks the frames placed only later,
    by their athletes' passages (transforms.placing)."""

    def __init__(
        self,
        burst_gap_s: float,
        near_duplicate_bits: int,
        held: frozenset[str],
        last_at: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._held = held
        self._last_at = last_at
        self._gap_s = burst_gap_s
        self._bits = near_duplicate_bits

    def expand(self, photos: beam.PCollection) -> beam.PCollection:
        timed, untimed = photos | "Untimed" >> beam.Partition(_untimed, 2)
        bursts = (
            timed
            | "StampAgain" >> beam.Map(_restamp)
            # A burst is a session of photos at one station with gaps shorter than burst_gap_s.
            | "BurstSessions" >> beam.WindowInto(window.Sessions(self._gap_s))
            | "ByStation" >> beam.Map(_keyed(lambda p: p.station_id))
            | "GroupBursts" >> beam.GroupByKey()
            | "MarkNear"
            >> beam.FlatMap(_by_station, self._gap_s, self._bits, self._held, self._last_at)
            | "Unwindow" >> beam.WindowInto(window.GlobalWindows())
            | "StampOnceMore" >> beam.Map(_restamp)
        )
        return (bursts, untimed) | "WithUntimed" >> beam.Flatten()


class DedupPhotos(beam.PTransform):
    """Timed and rejected photos -> the same photos, with exact and near duplicates marked
    (bursts by the `course`'s settings and its crossing: last stations, `held` as MarkBursts
    takes it; the course also says when a photo in the folders of several stations was
    taken)."""

    def __init__(self, course: Course, held: frozenset[str] = frozenset()):
        super().__init__()
        self._course = course
        settings = course.settings
        self._bursts = MarkBursts(
            settings.burst_gap_s, settings.near_duplicate_bits, held, course.last_at
        )

    def expand(self, photos: beam.PCollection) -> beam.PCollection:
        return (
            photos
            | "ByContent" >> beam.Map(_keyed(lambda p: p.image_id))
            | "GroupCopies" >> beam.GroupByKey()
            | "MarkExact" >> beam.FlatMap(_copies, self._course)
            | "MarkBursts" >> self._bursts
        )
