"""Passages: repeated sightings of a bib at a station become one passage, batch and live;
and the health of each station's camera per time window."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.windowed_value import PaneInfoTiming
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import BLURRED, COVERED, PROPERTY, SHARP, at, passage, photo, sighting
from transforms.course import Settings
from transforms.passages import (
    Frame,
    PassagePane,
    PassagesPerStation,
    StationHealth,
    current_passages,
    frame_of,
    merge_sightings,
    silent_windows,
    window_health,
)
from transforms.records import Sighting

LATENESS_S = 3600.0


# --- merge_sightings --------------------------------------------------------------------------


def test_merge_sightings__earliest_photo_times_the_passage() -> None:
    later = sighting("101", 12.0, confidence=0.97)
    first = sighting("101", 10.0, confidence=0.90)
    assert merge_sightings([later, first]) == passage(
        "101", "finish", 10.0, confidence=0.97, photos=2, image_id=first.image_id
    )


def test_merge_sightings__an_official_frame_joins_the_sure_reads_and_times_over_weak_ones() -> None:
    # The audit: an official placed a burst's second frame (a copy of it had gone astray);
    # the first frame's sure read was the crossing, and the finish moved 0.26 s later.
    read_first = sighting("101", 10.0)
    official = sighting("101", 12.0, confidence=1.0, method="manual")
    merged = merge_sightings([read_first, official])
    assert (merged.passed_at, merged.image_id, merged.confidence) == (
        at(10.0),
        read_first.image_id,
        1.0,
    )
    weak_first = sighting("101", 8.0, confidence=0.6, confirmed=False)
    assert merge_sightings([weak_first, official]).passed_at == at(12.0)


def test_merge_sightings__needs_review_only_when_nothing_is_confirmed() -> None:
    weak = sighting("101", 10.0, confidence=0.6, confirmed=False)
    weaker = sighting("101", 11.0, confidence=0.4, confirmed=False)
    confident = sighting("101", 12.0, confidence=0.8)
    unsure = merge_sightings([weak, weaker])
    assert (unsure.needs_review, unsure.review_reason, unsure.confidence) == (
        True,
        "low_confidence",
        0.6,
    )
    sure = merge_sightings([weak, weaker, confident])
    # The weak reads 2 s earlier may be someone else: they never move a confirmed passage.
    assert (sure.needs_review, sure.review_reason, sure.confidence, sure.passed_at) == (
        False,
        None,
        0.8,
        at(12.0),
    )


# Few distinct times and photos, so that ties (one photo read twice, two photos in the same
# instant) are common.
SIGHTINGS = st.lists(
    st.builds(
        sighting,
        st.just("101"),
        st.integers(0, 4).map(float),
        confidence=st.floats(0.0, 1.0),
        image_id=st.sampled_from(["img-a", "img-b"]),
        method=st.sampled_from(["bib_ocr", "face_match", "manual"]),
        confirmed=st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@PROPERTY
@given(sightings=SIGHTINGS, data=st.data())
def test_merge_sightings__earliest_of_the_best_evidence_in_any_input_order(
    sightings: list[Sighting], data: st.DataObject
) -> None:
    merged = merge_sightings(sightings)
    assert merge_sightings(data.draw(st.permutations(sightings))) == merged
    confirmed = [s for s in sightings if s.confirmed]
    assert merged.passed_at == min(s.at for s in confirmed or sightings)
    assert 0.0 <= merged.confidence <= 1.0
    # The same sighting twice (a photo uploaded twice) is one piece of evidence.
    assert (merged.photos, merged.needs_review) == (len(set(sightings)), not confirmed)


@PROPERTY
@given(sightings=SIGHTINGS, data=st.data())
def test_merge_sightings__last_crossing_is_the_latest_of_the_same_evidence(
    sightings: list[Sighting], data: st.DataObject
) -> None:
    first, last = merge_sightings(sightings), merge_sightings(sightings, {"finish"})
    assert merge_sightings(data.draw(st.permutations(sightings)), {"finish"}) == last
    confirmed = [s for s in sightings if s.confirmed]
    assert first.passed_at <= last.passed_at == max(s.at for s in confirmed or sightings)
    # Only the photo timing it moves: the evidence and what it says of the passage stay.
    same = ("bib", "station_id", "confidence", "needs_review", "review_reason", "photos")
    assert [getattr(last, f) for f in same] == [getattr(first, f) for f in same]
    assert merge_sightings(sightings, {"cp1"}) == first, "another station's setting: first"


def test_merge_sightings__last_crossing_keeps_the_evidence_rules() -> None:
    approach = [sighting("101", t, confidence=0.9) for t in (10.0, 14.0, 18.0)]
    weak_after = sighting("101", 21.0, confidence=0.5, confirmed=False)
    face_at_line = sighting("101", 18.0, confidence=0.99, method="face_match")
    merged = merge_sightings([*approach, weak_after, face_at_line], {"finish"})
    # The weak read after may be the next runner: it never moves a confirmed passage. At
    # the line's photo the surer read of it decides, as at the first photo.
    assert (merged.passed_at, merged.method, merged.photos) == (at(18.0), "face_match", 5)
    # An official's frame among the approach's is one more piece of sure evidence: the
    # line's photo still times it.
    official = sighting("101", 12.0, confidence=1.0, method="manual")
    assert merge_sightings([*approach, official], {"finish"}).passed_at == at(18.0)
    only_weak = [replace(s, confirmed=False) for s in approach]
    assert merge_sightings(only_weak, {"finish"}).passed_at == at(18.0)


# --- PassagesPerStation, batch ----------------------------------------------------------------


def test_passages_per_station__reads_close_together_are_one_passage_far_apart_two() -> None:
    sightings = [
        sighting("101", 10.0),
        sighting("101", 0.0),  # 10 s apart: one passage, at the earlier read
        sighting("102", 0.0),
        sighting("102", 60.0),  # 60 s apart: two passages
        sighting("103", 0.0, station="cp1"),
        sighting("103", 5.0, station="finish"),  # other station: its own passage
        sighting("104", 0.0),
        sighting("104", 15.0),
        sighting("104", 30.0),  # each read within the window of the last: one passage
    ]
    with TestPipeline() as p:
        passages = p | beam.Create(sightings) | PassagesPerStation(20.0, LATENESS_S)
        assert_that(
            passages,
            equal_to(
                [
                    passage("101", "finish", 0.0, photos=2),
                    passage("102", "finish", 0.0),
                    passage("102", "finish", 60.0),
                    passage("103", "cp1", 0.0),
                    passage("103", "finish", 5.0),
                    passage("104", "finish", 0.0, photos=3),
                ]
            ),
        )


def test_passages_per_station__default_merge_window_is_20_s() -> None:
    window_s = Settings().merge_window_s
    assert window_s == 20.0
    sightings = [sighting("101", 0.0), sighting("101", 19.0), sighting("102", 0.0)]
    sightings.append(sighting("102", 21.0))
    with TestPipeline() as p:
        passages = p | beam.Create(sightings) | PassagesPerStation(window_s, LATENESS_S)
        assert_that(
            passages,
            equal_to(
                [
                    passage("101", "finish", 0.0, photos=2),
                    passage("102", "finish", 0.0),
                    passage("102", "finish", 21.0),
                ]
            ),
        )


def test_passages_per_station__a_last_crossing_station_times_the_visit_at_its_last_photo() -> None:
    sightings = [
        sighting("101", 0.0, station="start"),
        sighting("101", 15.0, station="start"),  # shuffling to the line of a mass start
        sighting("101", 28.0, station="start"),
        sighting("101", 600.0, station="finish"),
        sighting("101", 604.0, station="finish"),  # beside the line: its first photo
    ]
    with TestPipeline() as p:
        passages = (
            p
            | beam.Create(sightings)
            | PassagesPerStation(20.0, LATENESS_S, last_at=frozenset({"start"}))
        )
        assert_that(
            passages,
            equal_to(
                [passage("101", "start", 28.0, photos=3), passage("101", "finish", 600.0, photos=2)]
            ),
        )


# --- PassagesPerStation, streaming ------------------------------------------------------------


class _WithPane(beam.DoFn):
    def process(self, p, pane=beam.DoFn.PaneInfoParam):  # type: ignore[no-untyped-def]
        yield p.passed_at, p.photos, pane.timing


def _live(
    p: beam.Pipeline, stream: TestStream, lateness_s: float, last_at: frozenset[str] = frozenset()
) -> beam.PCollection:
    return p | stream | PassagesPerStation(20.0, lateness_s, last_at) | beam.ParDo(_WithPane())


def _streaming() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def _stamped(seconds: float, image_id: str) -> TimestampedValue:
    s = sighting("101", seconds, image_id=image_id)
    return TimestampedValue(s, s.at.timestamp())


def test_passage_windows__late_upload_makes_the_passage_earlier() -> None:
    # A phone uploads a photo from 5 s before the first one, after the on-time pane fired.
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(100.0, "first-upload")])
        .advance_watermark_to(at(300).timestamp())
        .add_elements([_stamped(95.0, "late-upload")])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        assert_that(
            _live(p, stream, LATENESS_S),
            equal_to(
                [
                    (at(100.0), 1, PaneInfoTiming.ON_TIME),
                    (at(95.0), 2, PaneInfoTiming.LATE),  # accumulated: the whole passage
                ]
            ),
        )


def test_passage_windows__late_upload_moves_a_last_crossing_passage_later() -> None:
    # The phone facing the runners uploads its photo at the line after the on-time pane.
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(100.0, "approach")])
        .advance_watermark_to(at(300).timestamp())
        .add_elements([_stamped(108.0, "at-the-line")])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        assert_that(
            _live(p, stream, LATENESS_S, frozenset({"finish"})),
            equal_to(
                [
                    (at(100.0), 1, PaneInfoTiming.ON_TIME),
                    (at(108.0), 2, PaneInfoTiming.LATE),
                ]
            ),
        )


def test_current_passages__merged_again_at_a_last_crossing_station_at_its_last_photo() -> None:
    approach, line = sighting("101", 100.0), sighting("101", 108.0)
    pane = PassagePane(merge_sightings([approach, line]), 100.0, 128.0, 0, (approach, line))
    # The live run's passages, merged again from the sightings its timing keeps.
    (current,) = current_passages([pane], {approach, line}, frozenset({"finish"}))
    assert (current.passed_at, current.image_id) == (at(108.0), line.image_id)


def test_passage_windows__sighting_later_than_the_allowed_lateness_is_dropped() -> None:
    stream = (
        TestStream()
        .advance_watermark_to(at(0).timestamp())
        .add_elements([_stamped(100.0, "first-upload")])
        .advance_watermark_to(at(100 + 20 + 61).timestamp())
        .add_elements([_stamped(95.0, "too-late")])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=_streaming()) as p:
        assert_that(
            _live(p, stream, lateness_s=60.0), equal_to([(at(100.0), 1, PaneInfoTiming.ON_TIME)])
        )


# --- Station health ---------------------------------------------------------------------------


def frames(*flags: str) -> list[Frame]:
    return [
        Frame(at=at(i), covered=flag == "covered", blurred=flag == "blurred")
        for i, flag in enumerate(flags)
    ]


@pytest.mark.parametrize(
    ("flags", "health"),
    [
        (("ok", "covered", "covered", "covered", "ok"), "covered"),
        (("covered", "covered", "ok", "covered", "covered"), "ok"),
        (("blurred", "blurred", "blurred"), "blurred"),
        (("blurred", "blurred", "blurred", "covered", "covered", "covered"), "covered"),
        (("blurred", "ok", "blurred", "blurred"), "ok"),
        ((), "ok"),
    ],
    ids=["covered_run", "broken_run", "blurred_run", "covered_beats_blurred", "short", "empty"],
)
def test_window_health__runs_of_three_bad_frames(flags: tuple[str, ...], health: str) -> None:
    assert window_health(frames(*flags)) == health


def test_window_health__frames_are_taken_in_time_order() -> None:
    covered = [Frame(at=at(i), covered=True, blurred=False) for i in range(3)]
    clear = Frame(at=at(10), covered=False, blurred=False)
    # Arrival order breaks the run; time order (covered x3, then clear) does not.
    assert window_health([covered[0], clear, covered[1], covered[2]]) == "covered"


def test_frame_of__a_covered_lens_is_not_also_blurred() -> None:
    def health_flags(quality: object) -> tuple[bool, bool]:
        frame = frame_of(photo("a", quality=quality))
        return frame.covered, frame.blurred

    assert health_flags(COVERED) == (True, False)
    assert health_flags(BLURRED) == (False, True)
    assert health_flags(SHARP) == (False, False)


def test_window_health__the_same_picture_again_and_again_is_a_frozen_camera() -> None:
    still = [Frame(at(i), False, False, phash="f0e0c0a080402010") for i in range(5)]
    assert window_health(still) == "frozen"
    assert window_health(still[:4]) == "ok", "a burst of a few frames is no stuck camera"
    moving = [Frame(at(i), False, False, phash=f"{i:x}0e0c0a0ff40201{i:x}") for i in range(5)]
    assert window_health(moving) == "ok"


def test_window_health__a_copy_of_a_photo_is_no_second_frame() -> None:
    # A burst of four near-identical frames and a re-saved copy of one (its EXIF time kept,
    # the acceptance audit's FINISH_00013): four shots, no frozen camera.
    burst = [Frame(at(i * 0.3), False, False, phash="f0e0c0a080402010") for i in range(4)]
    copy = replace(burst[1], phash="f0e0c0a080402011")
    assert window_health([*burst, copy]) == "ok"
    # The camera repeating itself at new times is still frozen, copies or not.
    assert window_health([*burst, copy, replace(burst[0], at=at(60))]) == "frozen"
    covered = [Frame(at(i), True, False) for i in range(2)]
    assert window_health([*covered, covered[1]]) == "ok", "two covered shots, one sent twice"


def test_silent_windows__no_photo_while_runners_are_due() -> None:
    def row(minute: int, images: int, passages: int) -> dict:
        start = at(minute * 60)
        return {"station_id": "cp1", "window_start": start, "images": images, "passages": passages}

    rows = [row(0, 4, 2), row(10, 3, 1), row(20, 1, 0)]
    silent = silent_windows(rows, 300.0, due=[(at(320), False)])
    assert [(r["window_start"], r["health"], r["images"]) for r in silent] == [
        (at(300), "silent", 0)
    ], "the gap between two busy windows a missed runner was due in; not after the last photo"
    assert silent_windows(rows, 300.0) == [], "a gap nobody was due in"


def test_station_health__one_row_per_station_and_window() -> None:
    photos = [
        photo("f1", seconds=10, quality=COVERED),
        photo("f2", seconds=11, quality=COVERED),
        photo("f3", seconds=12, quality=COVERED),
        photo("f4", seconds=100),
        photo("f5", seconds=400),
        photo("c1", station="cp1", seconds=50, quality=BLURRED),
        photo("c2", station="cp1", seconds=60),
        photo("lost", station=None, seconds=None),  # rejected before it had a time
    ]
    passages = [
        passage("101", "finish", 100),
        passage("101", "cp1", 50),
        passage("102", "cp1", 60),
    ]

    def row(station: str, start_s: int, images: int, count: int, last_s: float, health: str):
        return {
            "station_id": station,
            "window_start": at(start_s),
            "window_end": at(start_s) + timedelta(seconds=300),
            "images": images,
            "passages": count,
            "last_photo_at": at(last_s),
            "health": health,
        }

    with TestPipeline() as p:
        rows = (
            p | "Photos" >> beam.Create(photos),
            p | "Passages" >> beam.Create(passages),
        ) | StationHealth(300.0)
        assert_that(
            rows,
            equal_to(
                [
                    row("finish", 0, 4, 1, 100, "covered"),
                    row("finish", 300, 1, 0, 400, "ok"),
                    row("cp1", 0, 2, 2, 60, "ok"),
                ]
            ),
        )


def test_frame__pickled_comes_back_the_same_in_under_60_percent_of_its_fields_bytes() -> None:
    frame = Frame(at=at(12.345678), covered=False, blurred=True, phash="ffff0000ffff0000")
    back = pickle.loads(pickle.dumps(frame))
    assert back == frame and back.at.tzinfo is frame.at.tzinfo
    assert len(pickle.dumps(frame)) < 0.6 * len(pickle.dumps(vars(frame)))
