""" "Photos of me": every photo on which an athlete was identified, by bib or by face.

An athlete is on a photo when a confirmed sighting says so (a confident bib read, a
confident face match, an official's assignment) or when the photo is the one a passage of
theirs was timed by (a weak read that the athlete's pace confirmed). One row per athlete
and photo, with the strongest evidence; the dashboard's athlete page and `racelens photos`
read these rows, so both show the same photos.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.passages import Passage
from transforms.records import DUPLICATE, Photo, Sighting, pack_time, unpack_time


def passage_evidence(p: Passage) -> Sighting:
    """A passage as the sighting of its athlete on the photo it was timed by."""
    return Sighting(
        bib=p.bib,
        station_id=p.station_id,
        at=p.passed_at,
        confidence=p.confidence,
        image_id=p.image_id,
        method=p.method,
        confirmed=not p.needs_review,
    )


class PhotoFile(NamedTuple):
    """What a row needs of a Photo. The join holds the photos of a whole race at once (the
    DirectRunner's launcher keeps a grouping's input whole), so it carries these three
    fields rather than whole Photos with their reads and faces."""

    duplicate: bool
    path: str
    taken_at: datetime | None


def photo_file(photo: Photo) -> PhotoFile:
    return PhotoFile(photo.status == DUPLICATE, photo.path, photo.taken_at)


def photo_file_fields(photo: Photo) -> tuple:
    """A photo's PhotoFile as plain fields, its time packed: ~70 bytes encoded, against ~200
    as a PhotoFile (Beam encodes a NamedTuple with its pickled class)."""
    return photo.status == DUPLICATE, photo.path, pack_time(photo.taken_at)


def photo_file_of(fields: tuple) -> PhotoFile:
    duplicate, path, taken_at = fields
    return PhotoFile(duplicate, path, unpack_time(taken_at))


def _file_of(files: Iterable[PhotoFile]) -> PhotoFile | None:
    """The file that stands for a content: an exact copy only if there is no original."""
    return min(files, key=lambda f: (f.duplicate, f.path), default=None)


def athlete_photo_rows(
    image_id: str, evidence: Iterable[Sighting], files: Iterable[PhotoFile]
) -> list[dict]:
    """One row per athlete on the photo with this image_id (none when it has no file)."""
    photo = _file_of(files)
    if photo is None:
        return []
    best: dict[str, Sighting] = {}
    for s in evidence:
        if s.bib not in best or s.confidence > best[s.bib].confidence:
            best[s.bib] = s
    taken_at = photo.taken_at
    return [
        {
            "bib": s.bib,
            "image_id": image_id,
            "path": photo.path,
            "station_id": s.station_id,
            # An official may place a photo that has no EXIF time; the sighting has theirs.
            "taken_at": taken_at or s.at,
            "method": s.method,
            "confidence": s.confidence,
        }
        for s in sorted(best.values(), key=lambda s: s.bib)
    ]


def athlete_photos_of(
    sightings: Iterable[Sighting], passages: Iterable[Passage], photos: Iterable[Photo]
) -> list[dict]:
    """What AthletePhotos gives, without a pipeline (the local live mode)."""
    evidence: dict[str, list[Sighting]] = defaultdict(list)
    for s in [s for s in sightings if s.confirmed] + [passage_evidence(p) for p in passages]:
        evidence[s.image_id].append(s)
    files: dict[str, list[PhotoFile]] = defaultdict(list)
    for photo in photos:
        files[photo.image_id].append(photo_file(photo))
    return [row for i, found in evidence.items() for row in athlete_photo_rows(i, found, files[i])]


class _JoinPhotos(beam.DoFn):
    def __init__(self):
        super().__init__()
        self._without_file = Metrics.counter("racelens", "athlete_photo_without_file")

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterator[dict]:
        image_id, groups = joined
        files = map(photo_file_of, groups["photos"])
        rows = athlete_photo_rows(image_id, groups["evidence"], files)
        if groups["evidence"] and not rows:
            self._without_file.inc()
        yield from rows


class AthletePhotos(beam.PTransform):
    """(sightings, passages, photos) -> one row per athlete and photo they are on."""

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> beam.PCollection:
        sightings, passages, photos = inputs
        # Passages come out of session windows; a photo is the athlete's whatever its time.
        confirmed = (
            sightings
            | "SightingsGlobal" >> beam.WindowInto(GlobalWindows())
            | "Confirmed" >> beam.Filter(lambda s: s.confirmed)
        )
        timed_by = (
            passages
            | "PassagesGlobal" >> beam.WindowInto(GlobalWindows())
            | "PassageEvidence" >> beam.Map(passage_evidence)
        )
        evidence = (confirmed, timed_by) | "AllEvidence" >> beam.Flatten()
        files = photos | "PhotosGlobal" >> beam.WindowInto(GlobalWindows())
        return (
            {
                "evidence": evidence | "EvidenceByImage" >> beam.Map(lambda s: (s.image_id, s)),
                "photos": files
                | "PhotosByImage" >> beam.Map(lambda p: (p.image_id, photo_file_fields(p))),
            }
            | "JoinOnImage" >> beam.CoGroupByKey()
            | "Rows" >> beam.ParDo(_JoinPhotos())
        )
