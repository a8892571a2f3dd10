"""Records: a Photo packed for a grouping comes back the same, in a fraction of the bytes."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
from apache_beam.coders import coders

from tests.conftest import photo, read
from transforms.faces import face_seen
from transforms.records import (
    DUPLICATE,
    BibSeen,
    ExifFacts,
    FaceSeen,
    PhotoFacts,
    facts_from_json,
    facts_to_json,
    pack_embedding,
    pack_photo,
    pack_time,
    unpack_embedding,
    unpack_photo,
)

EXIF = ExifFacts("2026:05:01 10:42:07", "3", "+02:00", "SN1234", "Canon EOS R6", (59.91, 10.75))
FACE = FaceSeen(box=(100, 120, 180, 200), embedding=tuple(i / 997 - 0.0625 for i in range(128)))


def test_unpack_photo__gives_back_every_fact_and_decision() -> None:
    prefixed = replace(read("8101", 0.6), unprefixed=0.95)  # "S101": its S may be the 8
    seen = photo("f1", bibs=(read("101"), read("7", 0.41), prefixed), exif=EXIF)
    seen = replace(
        seen,
        facts=replace(seen.facts, faces=(FACE, FACE)),
        status=DUPLICATE,
        reason="near_duplicate",
        duplicate_of="id-f0",
        duplicate_of_path="/race/images/finish/f0.jpg",
    )
    assert unpack_photo(pack_photo(seen)) == seen


def test_unpack_photo__keeps_what_is_missing_missing() -> None:
    bare = photo("bad", station=None, seconds=None, phash=None, quality=None, error="bad_exif")
    back = unpack_photo(pack_photo(bare))
    assert back == bare
    assert (back.facts.faces, back.taken_at, back.facts.quality) == (None, None, None)


def test_photo__beam_encodes_it_packed_in_under_60_percent_of_its_fields_bytes() -> None:
    seen = photo("f1", bibs=(read("101"),), exif=EXIF)
    coder = coders.FastPrimitivesCoder()
    encoded = coder.encode(seen)
    assert coder.decode(encoded) == seen
    # The fields pickled as they are: each record's class and field names with its values.
    assert len(encoded) < 0.6 * len(pickle.dumps(vars(seen)))


def test_facts_json__bib_reads_round_trip_with_their_prefix_evidence() -> None:
    facts = PhotoFacts("x", bibs=(BibSeen("8101", 0.6, (10, 10, 60, 40), unprefixed=0.95),))
    stored_before = (
        '{"image_id": "y", "bibs": [{"bib": "101", "confidence": 0.9, "box": [1, 2, 3, 4]}]}'
    )

    assert facts_from_json(facts_to_json(facts)) == facts
    assert facts_from_json(stored_before).bibs == (BibSeen("101", 0.9, (1, 2, 3, 4)),)


def _descriptor(seed: int) -> np.ndarray:
    """A descriptor as dlib's ResNet gives one: 128 float32 components of a unit vector."""
    vector = np.random.default_rng(seed).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def test_unpack_photo__found_faces_come_back_exactly_in_under_half_the_bytes() -> None:
    faces = tuple(face_seen((10 * i, 20, 10 * i + 60, 80), _descriptor(i)) for i in range(3))
    seen = photo("f1", bibs=(read("101"),), exif=EXIF)
    with_faces = replace(seen, facts=replace(seen.facts, faces=faces))
    as_floats = pickle.dumps(tuple(f.embedding for f in faces))

    back = unpack_photo(pack_photo(with_faces))

    assert back == with_faces
    assert all(type(v) is float for f in back.facts.faces for v in f.embedding)
    assert len(pack_photo(with_faces)) - len(pack_photo(seen)) < 0.35 * len(as_floats)


def test_pack_embedding__a_descriptor_it_cannot_give_back_exactly_is_kept_as_it_is() -> None:
    finer = FACE.embedding  # not in thousandths
    too_large = (40.0,) + tuple(0.001 * i for i in range(127))
    assert pack_embedding(finer) is finer
    assert pack_embedding(too_large) is too_large
    assert unpack_embedding(pack_embedding(finer)) == finer


def test_unpack_photo__its_utc_time_comes_back_to_the_microsecond_in_fewer_bytes() -> None:
    seen = photo("f1", bibs=(read("101"),), exif=EXIF)
    exact = replace(seen, taken_at=datetime(2026, 5, 1, 8, 42, 7, 123456, tzinfo=UTC))
    as_datetime = len(pickle.dumps(exact.taken_at, protocol=pickle.HIGHEST_PROTOCOL))

    back = unpack_photo(pack_photo(exact))

    assert back == exact and back.taken_at.tzinfo is UTC
    assert len(pack_photo(exact)) < len(pack_photo(replace(exact, taken_at=None))) + as_datetime / 4


def test_pack_time__a_time_in_another_zone_is_kept_as_it_is() -> None:
    oslo = datetime(2026, 5, 1, 10, 42, 7, tzinfo=timezone(timedelta(hours=2)))
    assert pack_time(oslo) is oslo
    assert unpack_photo(pack_photo(photo("f1", exif=EXIF))).taken_at.tzinfo is not None
