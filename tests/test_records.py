"""Records: a Photo packed for a grouping comes back the same, in a fraction of the bytes."""

from __future__ import annotations

import pickle
from dataclasses import replace

from apache_beam.coders import coders

from tests.conftest import photo, read
from transforms.records import (
    DUPLICATE,
    BibSeen,
    ExifFacts,
    FaceSeen,
    PhotoFacts,
    facts_from_json,
    facts_to_json,
    pack_photo,
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
