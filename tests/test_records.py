"""Records: a Photo packed for a grouping comes back the same, in a fraction of the bytes."""

from __future__ import annotations

import pickle
from dataclasses import replace

from apache_beam.coders import coders

from tests.conftest import photo, read
from transforms.records import DUPLICATE, ExifFacts, FaceSeen, pack_photo, unpack_photo

EXIF = ExifFacts("2026:05:01 10:42:07", "3", "+02:00", "SN1234", "Canon EOS R6", (59.91, 10.75))
FACE = FaceSeen(box=(100, 120, 180, 200), embedding=tuple(i / 997 - 0.0625 for i in range(128)))


def test_unpack_photo__gives_back_every_fact_and_decision() -> None:
    seen = photo("f1", bibs=(read("101"), read("7", 0.41)), exif=EXIF)
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
