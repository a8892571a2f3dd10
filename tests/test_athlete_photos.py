"""Tests of "photos of me": the photos each athlete was identified on, by bib or by face."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import at, passage, photo, sighting
from transforms.athlete_photos import (
    AthletePhotos,
    athlete_photo_rows,
    athlete_photos_of,
    photo_file,
    photo_file_fields,
    photo_file_of,
)
from transforms.records import DUPLICATE


def _row(bib: str, image: str, seconds: float, method: str, confidence: float) -> dict:
    return {
        "bib": bib,
        "image_id": f"id-{image}",
        "path": f"/race/images/finish/{image}.jpg",
        "station_id": "finish",
        "taken_at": at(seconds),
        "method": method,
        "confidence": confidence,
    }


def _photo(name: str, seconds: float, **fields):
    return replace(photo(name, seconds=seconds, **fields), path=f"/race/images/finish/{name}.jpg")


def test_athlete_photos__bib_face_and_timed_photos_once_per_athlete_and_photo() -> None:
    photos = [
        _photo("a", 100),
        _photo("b", 110),
        _photo("c", 120),
        _photo("d", 130),
        # An exact copy uploaded again shares the content's image_id; the original is shown.
        replace(_photo("a", 100), path="/race/images/finish/a (1).jpg", status=DUPLICATE),
    ]
    sightings = [
        sighting("101", 100, image_id="id-a", confidence=0.97),
        sighting("102", 100, image_id="id-a", confidence=0.9),  # two athletes on one photo
        sighting("103", 110, image_id="id-b", method="face_match", confidence=0.88),
        sighting("104", 120, image_id="id-c", confidence=0.5, confirmed=False),  # weak read
        sighting("105", 130, image_id="id-d", confidence=0.4, confirmed=False),  # weak read
    ]
    # 105's weak read timed its passage (it fitted the pace); 101's passage is the same photo.
    passages = [
        passage("105", "finish", 130, image_id="id-d", confidence=0.4, needs_review=True),
        passage("101", "finish", 100, image_id="id-a", confidence=0.97),
    ]
    expected = [
        _row("101", "a", 100, "bib_ocr", 0.97),
        _row("102", "a", 100, "bib_ocr", 0.9),
        _row("103", "b", 110, "face_match", 0.88),
        _row("105", "d", 130, "bib_ocr", 0.4),
    ]
    with TestPipeline() as p:
        rows = (
            p | "Sightings" >> beam.Create(sightings),
            p | "Passages" >> beam.Create(passages),
            p | "Photos" >> beam.Create(photos),
        ) | AthletePhotos()
        assert_that(rows, equal_to(expected))
    # The local live mode's in-process twin gives the same rows.
    in_memory = athlete_photos_of(sightings, passages, photos)
    assert sorted(in_memory, key=lambda r: r["bib"]) == expected


def test_athlete_photo_rows__strongest_evidence_wins_and_official_time_without_exif() -> None:
    no_time = replace(_photo("e", 0), taken_at=None)
    evidence = [
        sighting("101", 200, image_id="id-e", method="face_match", confidence=0.8),
        sighting("101", 200, image_id="id-e", method="manual", confidence=1.0),
    ]
    rows = athlete_photo_rows("id-e", evidence, [photo_file(no_time)])

    assert rows == [_row("101", "e", 200, "manual", 1.0)]


def test_athlete_photo_rows__evidence_without_a_file_gives_no_row() -> None:
    assert athlete_photo_rows("id-x", [sighting("101", 5, image_id="id-x")], []) == []


def test_photo_file_fields__give_the_photos_file_back_in_half_the_encoded_bytes() -> None:
    for taken in (_photo("a", 3.25, status=DUPLICATE), _photo("b", None)):
        fields = photo_file_fields(taken)
        assert photo_file_of(fields) == photo_file(taken)
        encoded = coders.FastPrimitivesCoder().encode
        assert len(encoded(fields)) < 0.5 * len(encoded(photo_file(taken)))
