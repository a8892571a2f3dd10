"""Event-time semantics of the live race, with TestStream: late photos correct passages,
photos after the allowed lateness are held, duplicates across panes count once, and each
station health state shows in its window and reaches review."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from tests.conftest import BLURRED, COVERED, at, passage, photo, read, sighting
from transforms.health import ReviewStationHealth
from transforms.identify import Identified, hold_too_late
from transforms.passages import (
    TOO_LATE,
    MarkTooLate,
    Passage,
    PassagePane,
    StationHealth,
    VisitsPerStation,
    WithPane,
    current_passages,
    is_too_late,
    merge_sightings,
)
from transforms.records import Photo, Sighting

GAP_S = 20.0
LATENESS_S = 3600.0


def _streaming() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def _stamped(s: Sighting) -> TimestampedValue:
    return TimestampedValue(s, s.at.timestamp())


def _panes(p: beam.Pipeline, stream: TestStream) -> beam.PCollection:
    return p | stream | VisitsPerStation(GAP_S, LATENESS_S) | beam.ParDo(WithPane())


def _current_are(expected: list[Passage]):  # type: ignore[no-untyped-def]
    """assert_that matcher: all panes fired, reduced to the current passages."""

    def match(panes: list[PassagePane]) -> None:
        current = sorted(current_passages(panes), key=repr)
        if current != sorted(expected, key=repr):
            raise BeamAssertException(f"current passages {current} != {expected} from {panes}")
        if len(panes) <= len(expected):
            raise BeamAssertException(f"expected a late pane to replace a passage: {panes}")

    return match


def test_passage_windows__late_photo_corrects_the_passage_instead_of_adding_one() -> None:
    first = sighting("101", 100.0, image_id="first-upload")
    late = sighting("101", 95.0, image_id="phone-upload")  # 5 s earlier, uploaded later
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(first)])
        .advance_watermark_to(at(300).timestamp())  # the on-time pane has fired
        .add_elements([_stamped(late)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        expected = passage("101", "finish", 95.0, photos=2, image_id="phone-upload")
        assert_that(_panes(p, stream), _current_are([expected]))


def test_passage_windows__late_photo_between_two_sessions_merges_them_into_one() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(sighting("101", 100.0)), _stamped(sighting("101", 130.0))])
        .advance_watermark_to(at(300).timestamp())  # two passages fired, 30 s apart
        .add_elements([_stamped(sighting("101", 115.0))])  # bridges the two sessions
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        assert_that(_panes(p, stream), _current_are([passage("101", "finish", 100.0, photos=3)]))


def test_passage_windows__duplicate_upload_in_a_later_pane_counts_once() -> None:
    once = sighting("101", 100.0, image_id="same-bytes")
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(once)])
        .advance_watermark_to(at(300).timestamp())
        .add_elements([_stamped(once)])  # the same photo uploaded again
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        expected = passage("101", "finish", 100.0, image_id="same-bytes")
        assert_that(_panes(p, stream), _current_are([expected]))


def test_current_passages__sightings_left_out_by_the_timing_are_merged_out() -> None:
    kept = sighting("101", 100.0, image_id="kept")
    burst = sighting("101", 101.0, image_id="burst", confidence=0.99)  # a near duplicate
    pane = PassagePane(merge_sightings([kept, burst]), 100.0, 121.0, 0, (kept, burst))
    assert pane.passage.photos == 2
    assert current_passages([pane], {kept}) == [passage("101", "finish", 100.0, image_id="kept")]
    assert current_passages([pane], set()) == [], "nothing the timing keeps: no passage"


# --- Too late ---------------------------------------------------------------------------------


def _photo_at(name: str, seconds: float) -> TimestampedValue:
    p = photo(name, seconds=seconds, bibs=(read("101"),))
    return TimestampedValue(p, p.taken_at.timestamp())


def test_mark_too_late__photo_behind_the_watermark_by_more_than_the_lateness() -> None:
    # Lateness 60 s: a photo from 100 s arriving once photos from 5000 s were seen is held;
    # one from 4900 s (within 60 s + the merge window of the watermark) is not.
    stream = (
        TestStream()
        .add_elements([_photo_at("early", 100.0)])
        .add_elements([_photo_at("latest", 5000.0)])
        .add_elements([_photo_at("phone-late", 100.0), _photo_at("slightly-late", 4930.0)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        judged = p | stream | MarkTooLate(GAP_S, 60.0)
        names = {
            "OnTime": (judged.on_time, ["early", "latest", "slightly-late"]),
            "TooLate": (judged[TOO_LATE], ["phone-late"]),
        }
        for label, (photos, expected) in names.items():
            assert_that(
                photos | f"{label}Names" >> beam.Map(lambda ph: ph.path.rsplit("/", 1)[1][:-4]),
                equal_to(expected),
                label=f"Check{label}",
            )


def test_is_too_late__judged_like_the_windows_drop_elements() -> None:
    watermark = at(1000.0)
    # The window the photo opens ends GAP_S after it; lateness counts from there.
    assert not is_too_late(at(1000 - GAP_S - 60), watermark, GAP_S, 60.0)
    assert is_too_late(at(1000 - GAP_S - 60.001), watermark, GAP_S, 60.0)
    assert not is_too_late(at(0), None, GAP_S, 60.0), "nothing seen yet: nothing is late"


def test_hold_too_late__photo_kept_for_review_with_its_bibs_and_no_sightings() -> None:
    late = photo("late", seconds=100.0, bibs=(read("101"),))
    s = sighting("101", 100.0, image_id=late.image_id)
    held = hold_too_late(Identified(late, (s,)))
    assert (held.photo.status, held.photo.reason, held.sightings) == ("review", TOO_LATE, ())
    assert [(r.reason, r.candidates) for r in held.review] == [(TOO_LATE, ("101",))]
    empty = Identified(photo("nobody", seconds=100.0))
    assert hold_too_late(empty) == empty, "no sighting: nothing was late"


# --- Station health, streaming ----------------------------------------------------------------


def _frames(station: str, start_s: float, n: int, **kw: object) -> list[Photo]:
    """n photos a second apart, each a different picture unless phash is given."""
    return [
        photo(
            f"{station}-{start_s:.0f}-{i}",
            station=station,
            seconds=start_s + i,
            **({"phash": f"{i:02x}{i * 37 % 256:02x}c0a0ff4020{i:02x}"} | kw),
        )
        for i in range(n)
    ]


def test_station_health__each_state_in_its_window_as_photos_stream_in() -> None:
    photos = (
        _frames("start", 0, 3, quality=COVERED)  # window [0, 300): covered
        + _frames("start", 600, 3)  # [600, 900): ok; [300, 600) had none, 102 due: silent
        + _frames("cp1", 0, 3, quality=BLURRED)  # blurred
        + _frames("finish", 0, 5, phash="f0e0c0a080402010")  # the same picture: frozen
    )
    passages = [passage("101", "start", 10.0), passage("101", "start", 610.0)]
    due = ("start", (at(320), False))  # 102, never seen at the start, was due in [300, 600)
    stream = TestStream().advance_watermark_to(at(0).timestamp())
    for item in sorted(
        photos + passages, key=lambda x: getattr(x, "taken_at", None) or x.passed_at
    ):
        at_s = (getattr(item, "taken_at", None) or item.passed_at).timestamp()
        stream = stream.add_elements([TimestampedValue(item, at_s)])
    stream = stream.add_elements([TimestampedValue(due, at(320).timestamp())])
    stream = stream.advance_watermark_to(at(400).timestamp()).advance_watermark_to_infinity()
    with TestPipeline(options=_streaming()) as p:
        items = p | stream
        streamed = items | "Photos" >> beam.Filter(lambda x: isinstance(x, Photo))
        rows = (
            streamed,
            items | "Passages" >> beam.Filter(lambda x: isinstance(x, Passage)),
            items | "Due" >> beam.Filter(lambda x: isinstance(x, tuple)),
        ) | StationHealth(300.0)
        assert_that(
            rows | beam.Map(lambda r: (r["station_id"], r["window_start"], r["health"])),
            equal_to(
                [
                    ("start", at(0), "covered"),
                    ("start", at(300), "silent"),
                    ("start", at(600), "ok"),
                    ("cp1", at(0), "blurred"),
                    ("finish", at(0), "frozen"),
                ]
            ),
            label="CheckHealth",
        )
        # The covered frames are no camera_covered photos here (they went through no
        # IdentifyAthletes), so the covered window goes to review too.
        review = (rows, streamed) | ReviewStationHealth()
        assert_that(
            review | beam.Map(lambda r: (r.station_id, r.reason, r.image_id)),
            equal_to(
                [
                    ("start", "camera_covered", "id-start-0-2"),
                    ("start", "camera_silent", "id-start-0-2"),
                    ("cp1", "camera_blurred", "id-cp1-0-2"),
                    ("finish", "camera_frozen", "id-finish-0-4"),
                ]
            ),
            label="CheckReview",
        )
