"""Who is on a photo: bib reads checked against the start list, and the official's word.

A read counts only if the bib is in the start list, which serves as a dictionary:
a read one edit (a digit misread, lost or added) from exactly one listed bib
stands for that bib at 0.7 of its confidence (transforms.bibs.listed_bib), so
that with the default threshold such a correction is always looked at; so does a
read of a number the list has both bare and after a letter (12 and A12: a read
carries no prefix letter), whose review item names both. A
confident read of a listed bib is a sighting; a weak one goes to review as low_confidence and is
an unconfirmed sighting that counts only where it fits the athlete's pace; a
confident number that is not in the start list goes to review as
unknown_bib. Each photo ends with one
status (passage, review, no_athlete) and at most a few review items.

Where face matching is on, the faces that no read bib is tied to are matched
against the race's gallery (`identify_faces`): a sure match is a confirmed
`face_match` sighting, an unsure one goes to review as face_uncertain with its
candidates, and an unknown face on a photo nobody was identified on as
unknown_face.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.bibs import listed_bib, with_lettered
from transforms.corrections import (
    EXACT_DUPLICATE,
    FACE_UNCERTAIN,
    LISTED_SINCE_REJECTED,
    STATION_CONFLICT,
    TOO_LATE,
    UNPLACED,
    Decision,
)
from transforms.faces import Gallery, match_face, untied_faces
from transforms.quality import is_covered
from transforms.records import (
    NO_ATHLETE,
    OFFICIAL,
    PASSAGE,
    REJECTED,
    REVIEW,
    BibSeen,
    Photo,
    Sighting,
)

WEAK_READ_FLOOR = 0.3
CUT_SHORT = "truncated_image"  # as the analysis names a JPEG cut short (photos.arrived)
# What `identify` says of a photo's bibs or its emptiness (not of its faces).
BIB_REASONS = frozenset({"low_confidence", "unknown_bib", "number_unreadable", "camera_covered"})


@dataclass(frozen=True)
class ReviewItem:
    image_id: str
    path: str | None  # None: an item about a passage (transforms.splits), not a photo file
    reason: str
    candidates: tuple[str, ...]
    station_id: str | None
    taken_at: object  # datetime (UTC) or None
    # A photo without station or time: what its EXIF says and where it may be (records.Photo).
    exif_taken_at: object = None  # datetime (UTC) or None
    could_be_at: tuple[str, ...] = ()
    # What the official needs to know that the reason alone cannot say (clock_suspect: the
    # error estimated and the course's fix), in words.
    note: str | None = None
    clock_offset_s: float | None = None  # clock_suspect: the station's offset to write


@dataclass(frozen=True)
class Identified:
    photo: Photo
    sightings: tuple[Sighting, ...] = ()
    review: tuple[ReviewItem, ...] = ()


def best_reads(bibs: tuple[BibSeen, ...]) -> list[BibSeen]:
    """One read per number (the most confident), most confident first."""
    best: dict[str, BibSeen] = {}
    for read in bibs:
        if read.bib not in best or read.confidence > best[read.bib].confidence:
            best[read.bib] = read
    return sorted(best.values(), key=lambda r: (-r.confidence, r.bib))


def as_listed(reads: list[BibSeen], known: frozenset[str]) -> list[BibSeen | None]:
    """Each read as the listed bib it stands for, or None where it is no bib of this race.

    The start list is known only here, not where bibs are read (a photo's facts are stored
    independent of any race's list), so its use as a dictionary belongs here.
    """
    return [
        replace(read, bib=m[0], confidence=m[1], unprefixed=0.0)
        if (m := listed_bib(read.bib, read.confidence, known, read.unprefixed))
        else None
        for read in reads
    ]


def listed_reads(mapped: list[BibSeen | None]) -> list[BibSeen]:
    """The reads that stand for listed bibs, as those bibs: one per bib, most confident first."""
    return best_reads(tuple(m for m in mapped if m is not None))


def sure_bibs(photo: Photo, known: frozenset[str], threshold: float) -> list[str]:
    """The listed bibs read surely on the photo (at `threshold` or above), surest first:
    those that may place a photo a station's place and time cannot (transforms.exif)."""
    reads = listed_reads(as_listed(best_reads(photo.facts.bibs), known))
    return [r.bib for r in reads if r.confidence >= threshold]


def _sighting(
    photo: Photo, bib: str, confidence: float, method: str, confirmed: bool, official: bool = False
) -> Sighting:
    return Sighting(
        bib=bib,
        station_id=photo.station_id,
        at=photo.taken_at,
        confidence=confidence,
        image_id=photo.image_id,
        method=method,
        confirmed=confirmed,
        official=official,
    )


def _review(photo: Photo, reason: str, candidates: list[str]) -> ReviewItem:
    return ReviewItem(
        image_id=photo.image_id,
        path=photo.path,
        reason=reason,
        candidates=tuple(candidates),
        station_id=photo.station_id,
        taken_at=photo.taken_at,
        exif_taken_at=photo.exif_taken_at,
        could_be_at=photo.could_be_at,
    )


def in_doubt(photo: Photo, known: frozenset[str]) -> ReviewItem:
    """The review item of a photo that came in for several stations: no station or time
    (each copy's folder gives its own), the athletes read on it."""
    bibs = [r.bib for r in listed_reads(as_listed(best_reads(photo.facts.bibs), known))]
    return replace(_review(photo, STATION_CONFLICT, bibs), station_id=None, taken_at=None)


def unplaced(photo: Photo, known: frozenset[str]) -> Identified:
    """A photo without time or station: rejected, and in review where a listed bib was read
    on it (a finish photo with a broken clock, or from a camera folder named wrongly, would
    otherwise lose its runners unseen). A copy of a photo placed at a station is no such
    photo: DedupPhotos made it a duplicate of that one."""
    bibs = [r.bib for r in listed_reads(as_listed(best_reads(photo.facts.bibs), known))]
    return Identified(photo, (), (_review(photo, photo.reason, bibs),) if bibs else ())


def apply_decision(photo: Photo, decision: Decision, known: frozenset[str]) -> Identified:
    """What an official decided overrides what the pipeline read.

    The sightings an official approved or assigned are marked official: an approved read is
    otherwise a sure OCR read like any other, and the pace check that sent it to review
    would drop it again (CheckSplits never flags an official passage).
    """
    if decision.rejected:
        return Identified(replace(photo, status=REJECTED, reason="rejected_by_official"))
    if decision.assigned:
        sightings = tuple(
            s
            for s in (
                replace(
                    _sighting(photo, c.bib, 1.0, "manual", True, official=True),
                    station_id=c.station_id or photo.station_id,
                    at=c.passed_at or photo.taken_at,
                )
                for c in decision.assigned
            )
            # A photo without station or time (bad EXIF) is placed only by the official.
            if s.station_id is not None and s.at is not None
        )
        if not sightings:
            return Identified(photo)
        # Placed by the official at one station and time (a photo that came in for several
        # stations, one without time): its row says so.
        places = {(s.station_id, s.at) for s in sightings}
        station_id, taken_at = places.pop() if len(places) == 1 else (photo.station_id, None)
        # Where the official's station is the one the pipeline found, that found it.
        how = photo.placed_by if station_id == photo.station_id else OFFICIAL
        placed = replace(
            photo, station_id=station_id, placed_by=how, taken_at=taken_at or photo.taken_at
        )
        if placed.station_id is not None and placed.taken_at is not None:
            # Placed: what a photo placed nowhere says of itself goes, as transforms.placing
            # drops it (images.parquet said 'could be at cp1, cp2' of a photo timed at cp2).
            placed = replace(placed, exif_taken_at=None, could_be_at=())
        return Identified(replace(placed, status=PASSAGE, reason="assigned_by_official"), sightings)
    if photo.status == REJECTED:
        return Identified(photo)
    approved = tuple(
        _sighting(photo, r.bib, max(r.confidence, 0.99), "bib_ocr", True, official=True)
        for r in listed_reads(as_listed(best_reads(photo.facts.bibs), known))
    )
    status = PASSAGE if approved else NO_ATHLETE
    return Identified(replace(photo, status=status, reason="approved_by_official"), approved)


def identify(photo: Photo, known: frozenset[str], threshold: float) -> Identified:
    """Status, sightings and review items of one timed, non-duplicate photo."""
    reads = best_reads(photo.facts.bibs)
    mapped = as_listed(reads, known)  # the start list is looked up once per read
    listed = listed_reads(mapped)
    confident = [r for r in listed if r.confidence >= threshold]
    weak = [r for r in listed if r.confidence < threshold]
    unknown = [
        r for r, m in zip(reads, mapped, strict=True) if m is None and r.confidence >= threshold
    ]
    # Weak reads and confident numbers missing from the start list are unconfirmed
    # evidence: a weak read counts only where it fits the athlete's own pace (CheckSplits),
    # an unknown number shows as "Unknown #1234" instead of losing a runner. Reads below
    # WEAK_READ_FLOOR are guesses, left to the review queue alone.
    evidence = confident + [r for r in weak if r.confidence >= WEAK_READ_FLOOR] + unknown
    sightings = tuple(
        _sighting(photo, r.bib, r.confidence, "bib_ocr", r in confident) for r in evidence
    )
    unknown_items = tuple(_review(photo, "unknown_bib", [r.bib]) for r in unknown)
    # A read of 12 where A12 is listed too names both: the official chooses.
    weak_bibs = with_lettered((r.bib for r in weak), known)
    weak_items = (_review(photo, "low_confidence", weak_bibs),) if weak else ()
    if confident:
        return Identified(replace(photo, status=PASSAGE), sightings, weak_items + unknown_items)
    if weak:
        return Identified(
            replace(photo, status=REVIEW, reason="low_confidence"),
            sightings,
            weak_items + unknown_items,
        )
    if unknown:
        return Identified(
            replace(photo, status=REVIEW, reason="unknown_bib"), sightings, unknown_items
        )
    if reads:
        reason = "number_unreadable"
        candidates = [r.bib for r in reads]
        return Identified(
            replace(photo, status=REVIEW, reason=reason), (), (_review(photo, reason, candidates),)
        )
    if photo.facts.quality is not None and is_covered(photo.facts.quality):
        reason = "camera_covered"
        return Identified(
            replace(photo, status=REVIEW, reason=reason), (), (_review(photo, reason, []),)
        )
    return Identified(replace(photo, status=NO_ATHLETE))


@dataclass(frozen=True)
class FaceRule:
    """When a face names an athlete (course settings face_threshold and face_margin)."""

    threshold: float
    margin: float


def identify_faces(
    result: Identified, gallery: Gallery, rule: FaceRule, not_faces: frozenset[str] = frozenset()
) -> Identified:
    """Adds what the faces of a photo say to what its bibs said.

    Only faces that no read bib is tied to are matched: a number under a face is that
    runner's, and a face never overrides it. A face matched surely to an athlete whose
    bib was already read on the photo adds nothing. On a photo that already has a passage,
    unsure and unknown faces (spectators, runners behind) are left alone; on any other
    photo they go to review: face_uncertain with the candidates, unknown_face, or
    several_athletes when more than one face needs an official. The athletes an official
    said the photo's unsure faces are not (`not_faces`) are no candidates: a face left
    without any is no question any more.
    """
    photo = result.photo
    faces = photo.facts.faces
    if not faces or photo.status not in (PASSAGE, REVIEW, NO_ATHLETE):
        return result
    read = {s.bib for s in result.sightings}
    sightings, unsure = [], []
    for face in untied_faces(photo.facts.bibs, faces):
        m = match_face(face.embedding, gallery, rule.threshold, rule.margin)
        candidates = [b for b in m.candidates if b not in not_faces]
        if m.bib is None and m.candidates and not candidates:
            continue  # an official said it is none of them
        if m.bib is None:
            reason = FACE_UNCERTAIN if candidates else "unknown_face"
            unsure.append(_review(photo, reason, candidates))
        elif m.bib not in read:
            read.add(m.bib)
            sightings.append(_sighting(photo, m.bib, m.confidence, "face_match", True))
    if sightings:
        passage = photo if photo.status == PASSAGE else replace(photo, status=PASSAGE, reason=None)
        return Identified(passage, result.sightings + tuple(sightings), result.review)
    if photo.status == PASSAGE or not unsure:
        return result
    reason = "several_athletes" if len(unsure) > 1 else unsure[0].reason
    return Identified(
        replace(photo, status=REVIEW, reason=photo.reason or reason),
        result.sightings,
        result.review + tuple(unsure),
    )


def identify_photo(
    photo: Photo,
    known: frozenset[str],
    threshold: float,
    decisions: dict[str, Decision],
    gallery: Gallery | None = None,
    faces: FaceRule | None = None,
) -> Identified:
    """What the pipeline (or an official, who has the last word) makes of one photo; with
    a gallery, faces identify the athletes that bibs did not."""
    decision = decisions.get(photo.image_id, Decision())
    if decision.not_read:
        photo = without_reads(photo, decision.not_read, known)
    photo, listed_since = without_unlisted(photo, decision.not_listed, known)
    result = _identified(photo, known, threshold, decision, gallery, faces)
    # The official's assignment replaces every read: a read listed since is no question.
    return result if decision.assigned else asked_again(result, listed_since)


def _identified(
    photo: Photo,
    known: frozenset[str],
    threshold: float,
    decision: Decision,
    gallery: Gallery | None,
    faces: FaceRule | None,
) -> Identified:
    # An exact copy stays the copy of the photo decided: one row each, as read.
    if decision.overrides and photo.reason != EXACT_DUPLICATE:
        return apply_decision(photo, decision, known)
    if photo.reason == STATION_CONFLICT:
        return Identified(photo, (), (in_doubt(photo, known),))
    if photo.status == REJECTED and photo.reason in UNPLACED:
        return unplaced(photo, known)
    if photo.status is not None:
        return Identified(photo)  # duplicates and rejects keep their status
    cut_short = photo.facts.truncated
    result = identify(photo, known, math.inf if cut_short else threshold)  # every read weak
    if gallery is not None:
        result = identify_faces(result, gallery, faces, decision.not_faces)
    return held_cut_short(result) if cut_short else result


def without_unlisted(
    photo: Photo, not_listed: frozenset[str], known: frozenset[str]
) -> tuple[Photo, list[BibSeen]]:
    """The photo without the reads an official rejected while the start list did not list
    their numbers (`not_listed`), but for those it lists now, which count again; and those,
    as the listed bibs they stand for. A runner entered late, read surely and rejected as
    nobody of the race, stayed rejected once listed, and nothing said so."""
    rejected = [r for r in photo.facts.bibs if r.bib in not_listed]
    now = as_listed(rejected, known)
    still = frozenset(r.bib for r, m in zip(rejected, now, strict=True) if m is None)
    kept = without_reads(photo, still, known) if still else photo
    return kept, best_reads(tuple(m for m in now if m is not None))


def asked_again(result: Identified, listed_since: list[BibSeen]) -> Identified:
    """The photo's result with a review item for each read rejected while its number was not
    in the start list, listed now: it counts again, and the official who rejected it is
    asked again. A photo that times nothing (rejected, a duplicate) asks nothing."""
    if result.photo.status not in (PASSAGE, REVIEW, NO_ATHLETE):
        return result
    items = tuple(
        replace(
            _review(result.photo, LISTED_SINCE_REJECTED, [r.bib]),
            note=f"The number read here was rejected while no athlete in the start list had "
            f"it; the start list lists {r.bib} now, so the read counts again. X rejects it for "
            f"good; Approve keeps it (and confirms the photo's other reads).",
        )
        for r in listed_since
    )
    return replace(result, review=result.review + items)


def held_cut_short(result: Identified) -> Identified:
    """A photo cut short on its way (photos.arrived), identified on what arrived, its bibs
    read as weak only: one at the cut may have lost digits (bibs-dev's 3638, cut at 60 %,
    read 585), so they count where they fit the athlete's pace (CheckSplits). The photo is
    one review item naming every number read on it, or none: an official asks the
    photographer for the whole photo, or decides on what arrived. Its face items stay."""
    photo = result.photo
    about_bibs = [r for r in result.review if r.reason in BIB_REASONS]
    read = {b.bib for b in photo.facts.bibs} | {s.bib for s in result.sightings}
    item = _review(photo, CUT_SHORT, sorted(read.union(*(r.candidates for r in about_bibs))))
    faces = tuple(r for r in result.review if r.reason not in BIB_REASONS)
    status = PASSAGE if photo.status == PASSAGE else REVIEW  # a face may be sure
    return Identified(
        replace(photo, status=status, reason=CUT_SHORT), result.sightings, (item, *faces)
    )


def without_reads(photo: Photo, not_read: frozenset[str], known: frozenset[str]) -> Photo:
    """The photo without the reads an official said are not so (`not_read`: bibs, as read or
    as the listed bib they stand for), so that its other reads time it."""

    def stands_for(read: BibSeen) -> set[str]:
        listed = listed_bib(read.bib, read.confidence, known, read.unprefixed)
        return {read.bib} | ({listed[0]} if listed else set())

    kept = tuple(r for r in photo.facts.bibs if not stands_for(r) & not_read)
    return replace(photo, facts=replace(photo.facts, bibs=kept))


def hold_too_late(identified: Identified) -> Identified:
    """A photo that arrived after the allowed lateness (live modes): its sightings are not
    timed (the windows would drop them), the photo is kept and goes to review. A photo
    without sightings has nothing to be late for and keeps its status."""
    if not identified.sightings:
        return identified
    photo = identified.photo
    bibs = sorted({s.bib for s in identified.sightings})
    held = replace(photo, status=REVIEW, reason=TOO_LATE)
    return Identified(held, (), (_review(photo, TOO_LATE, bibs),))


def one_late_item(items: Iterable[ReviewItem]) -> ReviewItem:
    """The too_late items of one station as one: the earliest photo, every athlete read."""
    items = list(items)
    first = min(items, key=lambda r: (r.taken_at, r.path))
    return replace(first, candidates=tuple(sorted({b for r in items for b in r.candidates})))


def late_batches(identified: Iterable[Identified]) -> list[Identified]:
    """The photos, with one too_late review item per station instead of one per photo held.

    A phone that uploads after the race sent every photo of its station to the queue, one
    item each. Its photos are one question for an official (accept them together, reject
    them, or open them one by one): the item shows the station's earliest late photo and
    names every athlete read on its late photos.
    """
    identified = list(identified)
    per_station: dict[str | None, list[ReviewItem]] = {}
    for item in (r for i in identified for r in i.review if r.reason == TOO_LATE):
        per_station.setdefault(item.station_id, []).append(item)
    shown = {(m.image_id, m.path): m for m in map(one_late_item, per_station.values())}

    def batched(i: Identified) -> Identified:
        item = shown.get((i.photo.image_id, i.photo.path))
        kept = tuple(r for r in i.review if r.reason != TOO_LATE)
        return replace(i, review=kept + ((item,) if item else ()))

    return [batched(i) for i in identified]


def held_athletes(item: ReviewItem) -> list[tuple[str | None, str]]:
    """(station, bib) of each athlete read on the photos a too_late item holds."""
    return [(item.station_id, bib) for bib in item.candidates] if item.reason == TOO_LATE else []


class LateBatches(beam.PTransform):
    """Review items -> the same, with the too_late items of each station as one
    (`late_batches` in a pipeline)."""

    def expand(self, review: beam.PCollection) -> beam.PCollection:
        late, other = review | "LateOrNot" >> beam.Partition(
            lambda item, _: 0 if item.reason == TOO_LATE else 1, 2
        )
        merged = (
            late
            | "ByStation" >> beam.Map(lambda item: (item.station_id or "", item))
            | "PerStation" >> beam.GroupByKey()
            | "OneEach" >> beam.MapTuple(lambda _, items: one_late_item(items))
        )
        return (merged, other) | "AllItems" >> beam.Flatten()


class _Identify(beam.DoFn):
    SIGHTINGS = "sightings"
    REVIEW = "review"

    def __init__(
        self,
        known: frozenset[str],
        threshold: float,
        decisions: dict[str, Decision],
        faces: FaceRule | None = None,
        held: frozenset[str] = frozenset(),
    ):
        self._known = known
        self._threshold = threshold
        self._decisions = decisions
        self._faces = faces
        self._held = held
        self._to_review = Metrics.counter("racelens", "review_items")

    def process(self, photo: Photo, gallery: Gallery | None = None) -> Iterator[object]:
        result = identify_photo(
            photo, self._known, self._threshold, self._decisions, gallery, self._faces
        )
        # Held as arrived too late by the live run that made the results re-timed, until an
        # official decides it.
        if photo.path in self._held and photo.image_id not in self._decisions:
            result = hold_too_late(result)
        yield result.photo
        for s in result.sightings:
            yield beam.pvalue.TaggedOutput(self.SIGHTINGS, s)
        for item in result.review:
            self._to_review.inc()
            yield beam.pvalue.TaggedOutput(self.REVIEW, item)


class IdentifyAthletes(beam.PTransform):
    """Timed photos -> (photos with a status, sightings, review items).

    With a gallery (a singleton PCollection of `Gallery`, from BuildGallery) and its
    FaceRule, faces identify the athletes that bibs did not. The photos whose paths are
    `held` (a live run's too_late photos, re-timed) stay held, one review item each.
    """

    def __init__(
        self,
        bibs: frozenset[str],
        threshold: float,
        decisions: dict[str, Decision],
        gallery: beam.PCollection | None = None,
        faces: FaceRule | None = None,
        held: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._fn = _Identify(bibs, threshold, decisions, faces, held)
        self._gallery = gallery

    def expand(self, photos: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        side = {} if self._gallery is None else {"gallery": beam.pvalue.AsSingleton(self._gallery)}
        return photos | "Identify" >> beam.ParDo(self._fn, **side).with_outputs(
            _Identify.SIGHTINGS, _Identify.REVIEW, main="photos"
        )
