"""Station health in the review queue: each spell of a covered, blurred, frozen or silent
camera is one review item showing the photo to judge it by."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
import pytest
from apache_beam.coders import coders
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from dashboard.review_queue import HEALTH_NOTES, REASON_TEXT
from tests.conftest import BLURRED, COVERED, at, passage, photo
from transforms.health import (
    HEALTH_REASONS,
    ReviewStationHealth,
    Shot,
    health_review,
    review_of_health,
    shot_fields,
    shot_of,
    shot_of_fields,
)
from transforms.identify import ReviewItem
from transforms.passages import StationHealth
from transforms.records import Photo

WINDOW_S = 300.0


def row(start_s: float, health: str, station: str = "cp1") -> dict:
    return {
        "station_id": station,
        "window_start": at(start_s),
        "window_end": at(start_s + WINDOW_S),
        "health": health,
    }


def shot(seconds: float, name: str = "", reason: str | None = None) -> Shot:
    name = name or f"at-{seconds:.0f}"
    return Shot(at(seconds), f"/race/images/cp1/{name}.jpg", f"id-{name}", reason)


def item(s: Shot, reason: str, station: str = "cp1") -> ReviewItem:
    return ReviewItem(s.image_id, s.path, reason, (), station, s.at)


@pytest.mark.parametrize(
    ("health", "reason"),
    [("blurred", "camera_blurred"), ("frozen", "camera_frozen"), ("covered", "camera_covered")],
)
def test_health_review__bad_window_shows_its_last_photo(health: str, reason: str) -> None:
    shots = [shot(290), shot(310), shot(320), shot(599), shot(600)]
    rows = [row(0, "ok"), row(300, health), row(600, "ok")]
    assert health_review("cp1", rows, shots) == [item(shot(599), reason)]


def test_health_review__silent_window_shows_the_last_photo_before_the_silence() -> None:
    shots = [shot(10), shot(250), shot(620)]
    rows = [row(0, "ok"), row(300, "silent"), row(600, "ok")]
    assert health_review("cp1", rows, shots) == [item(shot(250), "camera_silent")]


def test_health_review__back_to_back_windows_in_one_state_are_one_item() -> None:
    shots = [shot(100), shot(400), shot(700), shot(1000), shot(1300)]
    rows = [
        row(0, "frozen"),
        row(300, "frozen"),  # one spell with the first
        row(600, "blurred"),
        row(900, "frozen"),  # a new spell: not back to back with the first two
        row(1500, "silent"),
        row(1800, "silent"),
    ]
    assert health_review("cp1", rows, shots) == [
        item(shot(400), "camera_frozen"),
        item(shot(700), "camera_blurred"),
        item(shot(1000), "camera_frozen"),
        item(shot(1300), "camera_silent"),  # one silence, one item
    ]


def test_health_review__covered_frames_already_in_review_add_no_second_item() -> None:
    dark = [shot(300 + i, reason="camera_covered") for i in range(3)]
    assert health_review("cp1", [row(300, "covered")], [*dark, shot(400)]) == []
    # Silent from the start, no photo before: one item about no photo, silent since then
    # (there was none, and a camera with no photo all day went unreported).
    silent_from_start = [row(0, "silent")]
    assert health_review("cp1", silent_from_start, [shot(400)]) == [
        ReviewItem("", None, "camera_silent", (), "cp1", at(0))
    ]


def _frames(name: str, start_s: float, n: int, **kw: object) -> list[Photo]:
    """n photos a second apart at cp1, each a different picture unless phash is given."""
    return [
        photo(
            f"{name}-{i}",
            station="cp1",
            seconds=start_s + i,
            **({"phash": f"{i:02x}{i * 37 % 256:02x}c0a0ff4020{i:02x}"} | kw),
        )
        for i in range(n)
    ]


def test_review_station_health__each_state_reaches_review() -> None:
    # Windows of 300 s at cp1: frozen, blurred, silent, covered (frames not reviewed as
    # camera_covered one by one, say because a number was half read on them), ok.
    frozen = _frames("stuck", 0, 5, phash="f0e0c0a080402010")
    blurred = _frames("blur", 300, 3, quality=BLURRED)
    covered = [
        replace(p, status="review", reason="number_unreadable")
        for p in _frames("dark", 900, 3, quality=COVERED)
    ]
    clear = _frames("clear", 1200, 2)
    photos = frozen + blurred + covered + clear + [photo("elsewhere", station="finish")]
    passages = [passage("101", "cp1", 1), passage("101", "cp1", 1201)]
    expected = [
        ReviewItem(p.image_id, p.path, reason, (), "cp1", p.taken_at)
        for p, reason in [
            (frozen[-1], "camera_frozen"),
            (blurred[-1], "camera_blurred"),
            (blurred[-1], "camera_silent"),  # [600, 900), 102 due: the last photo before it
            (covered[-1], "camera_covered"),
        ]
    ]
    with TestPipeline() as p:
        photos_in = p | "Photos" >> beam.Create(photos)
        passages_in = p | "Passages" >> beam.Create(passages)
        due = p | "Due" >> beam.Create([("cp1", (at(700), False))])  # 102, missed at cp1
        stations = (photos_in, passages_in, due) | StationHealth(WINDOW_S)
        review = (stations, photos_in) | ReviewStationHealth()
        assert_that(review, equal_to(expected))
    rows = [row(0, "frozen"), row(300, "blurred"), row(600, "silent"), row(900, "covered")]
    assert sorted(review_of_health(rows, photos), key=repr) == sorted(expected, key=repr)


def test_health_reasons__each_has_its_words_in_the_dashboard_review_queue() -> None:
    for reason in HEALTH_REASONS.values():
        assert reason in REASON_TEXT and reason in HEALTH_NOTES, reason


def test_shot_fields__give_the_photos_shot_back_in_half_the_encoded_bytes() -> None:
    taken = replace(photo("f1", seconds=12.5), reason="camera_covered")
    fields = shot_fields(taken)
    assert shot_of_fields(fields) == shot_of(taken)
    encoded = coders.FastPrimitivesCoder().encode
    assert len(encoded(fields)) < 0.6 * len(encoded(shot_of(taken)))
