"""A camera that stops mid-race (flat battery, full card) is silent while runners it did not
see were due there: its silent windows run to the last of them, and one camera_silent item
shows its last photo; a camera that saw its last runner goes silent nowhere after them."""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import pandas as pd
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from dashboard.review_queue import Item, silent_while_due
from pipeline.retime import station_health
from tests.conftest import GUN, at, athlete, make_course, passage, photo
from transforms.health import AWAITED, ReviewStationHealth, awaited, review_of_health
from transforms.identify import ReviewItem
from transforms.passages import StationHealth, silent_windows
from transforms.splits import Arrivals, DueAtStations, all_in, due_at

COURSE = make_course()  # start km 0, cp1 km 5, finish km 10
ATHLETES = (athlete("101"), athlete("102"), athlete("103"))
WINDOW_S = 300.0


def window(start_s: float) -> tuple[str, object, object]:
    return "cp1", at(start_s), at(start_s) + timedelta(seconds=WINDOW_S)


def silent_at(rows: list[dict]) -> list[tuple[str, object, object]]:
    return sorted(
        (r["station_id"], r["window_start"], r["window_end"])
        for r in rows
        if r["health"] == "silent" and r["station_id"] == "cp1"
    )


def test_due_at__unseen_at_a_checkpoint_is_due_there_between_their_passages() -> None:
    ps = [passage("102", "start", 10), passage("102", "finish", 3010)]
    assert due_at(ps, COURSE, GUN) == [("cp1", (at(1510), False))]


def test_due_at__seen_there_or_stopped_before_it_is_due_nowhere() -> None:
    everywhere = [passage("101", "start", 10), passage("101", "cp1", 1500)]
    assert due_at([*everywhere, passage("101", "finish", 3010)], COURSE, GUN) == []
    assert due_at(everywhere[:1], COURSE, GUN) == [], "a runner who stopped is due nowhere further"
    unsure = passage("101", "cp1", 1500, needs_review=True, review_reason="low_confidence")
    finished = [everywhere[0], unsure, passage("101", "finish", 3010)]
    assert due_at(finished, COURSE, GUN) == [], "seen there, if unsurely: the camera worked"


def _row(start_s: float, passages: int) -> dict:
    return {"station_id": "cp1", "window_start": at(start_s), "passages": passages}


def between(*seconds: float) -> list[tuple[object, bool]]:
    """Runners due at these times between their passages."""
    return [(at(s), False) for s in seconds]


def test_silent_windows__a_camera_that_stops_is_silent_until_its_last_runner_was_due() -> None:
    rows = [_row(1500, 2)]  # photos and passages in [1500, 1800), then nothing
    silent = silent_windows(rows, WINDOW_S, due=between(2010, 2420))
    assert silent_at(silent) == [window(1800), window(2100), window(2400)]
    assert silent_windows(rows, WINDOW_S) == [], "no runner due after its last passage"


def test_silent_windows__a_camera_dead_from_the_start_is_silent_when_runners_were_due() -> None:
    silent = silent_windows([], WINDOW_S, due=between(1510), station_id="cp1")
    assert silent_at(silent) == [window(1500)]


def test_silent_windows__a_gap_nobody_missed_was_due_in_is_no_silence() -> None:
    # The leader minutes ahead of the pack (session 19's audit: a working finish camera,
    # 10:35-10:40 reported silent, an official sent to check it); or one photo timed wrong,
    # hours before the pack.
    rows = [_row(0, 1), _row(1500, 5), _row(1800, 4)]
    assert silent_windows(rows, WINDOW_S) == []
    later = silent_windows(rows, WINDOW_S, due=between(2400))
    assert silent_at(later) == [window(2100), window(2400)], "a runner missed after the pack"


def test_silent_windows__a_gap_a_missed_runner_was_due_in_is_silent_from_photo_to_photo() -> None:
    rows = [_row(0, 3), _row(1500, 5)]
    silent = silent_windows(rows, WINDOW_S, due=between(700))
    assert silent_at(silent) == [window(s) for s in (300, 600, 900, 1200)]


def test_silent_windows__a_runner_due_past_their_last_passage_counts_between_photos_only() -> None:
    # A finish camera silent in the pack: its runners are seen at cp2, due at the finish
    # after it; past the last photo they may simply have stopped.
    rows = [_row(0, 3), _row(900, 5)]
    assert silent_at(silent_windows(rows, WINDOW_S, due=[(at(400), True)])) == [
        window(300),
        window(600),
    ]
    assert silent_windows(rows, WINDOW_S, due=[(at(1500), True)]) == [], "stopped, maybe"


# cp1's camera photographs 101 at 1500 s, then dies: 102 and 103 finish, unseen at cp1, due
# there at 2010 s and 2420 s (halfway in time between their start and finish). (The finish,
# with one photo here, has gaps of its own: not this test's.)
LAST_PHOTO = photo("cp1-last", station="cp1", seconds=1501)
PHOTOS = [
    photo("cp1-101", station="cp1", seconds=1500),
    LAST_PHOTO,
    photo("finish-103", station="finish", seconds=4820),
]
PASSAGES = [
    passage("101", "start", 5),
    passage("101", "cp1", 1500),
    passage("101", "finish", 3000),
    passage("102", "start", 10),
    passage("102", "finish", 4010),
    passage("103", "start", 20),
    passage("103", "finish", 4820),
]
SILENT = [window(1800), window(2100), window(2400)]
ONE_ITEM = [
    ReviewItem(
        LAST_PHOTO.image_id, LAST_PHOTO.path, "camera_silent", (), "cp1", LAST_PHOTO.taken_at
    )
]


def test_station_health__a_camera_that_stops_mid_race_is_one_camera_silent_item() -> None:
    with TestPipeline() as p:
        photos = p | "Photos" >> beam.Create(PHOTOS)
        passages = p | "Passages" >> beam.Create(PASSAGES)
        due = passages | DueAtStations(COURSE, ATHLETES)
        stations = (photos, passages, due) | StationHealth(WINDOW_S)
        silent = (
            stations
            | beam.Filter(lambda r: r["health"] == "silent" and r["station_id"] == "cp1")
            | beam.Map(lambda r: (r["station_id"], r["window_start"], r["window_end"]))
        )
        assert_that(silent, equal_to(SILENT), label="SilentWindows")
        review = (stations, photos) | ReviewStationHealth()
        at_cp1 = review | "AtCp1" >> beam.Filter(lambda i: i.station_id == "cp1")
        assert_that(at_cp1, equal_to(ONE_ITEM), label="OneItem")


def test_station_health__in_process_the_same_silence_and_item() -> None:
    due = [
        d
        for bib in ("101", "102", "103")
        for d in due_at([p for p in PASSAGES if p.bib == bib], COURSE, GUN)
    ]
    rows = station_health(PHOTOS, PASSAGES, WINDOW_S, due)
    assert silent_at(rows) == SILENT
    assert [i for i in review_of_health(rows, PHOTOS) if i.station_id == "cp1"] == ONE_ITEM


def test_silent_while_due__a_missed_checkpoint_in_the_silence_says_so() -> None:
    due = [("cp1", (at(2010), False))]
    stations = pd.DataFrame(station_health(PHOTOS, PASSAGES, WINDOW_S, due))
    passages = pd.DataFrame([vars(p) for p in PASSAGES])
    order = ["start", "cp1", "finish"]
    missed = Item("finish-102", "missed_checkpoint", "cp1", ("102",))
    assert silent_while_due(missed, stations, passages, order) == (at(1501), at(2100))
    quick = passages.assign(passed_at=[at(s) for s in (5, 1500, 3000, 10, 1790, 20, 4820)])
    assert silent_while_due(missed, stations, quick, order) is None, "finished before it"


def test_station_health__a_camera_with_no_photo_all_day_is_one_item_without_a_photo() -> None:
    # cp1's camera never sent a photo: 102 and 103 were due there, its windows were silent,
    # and no item said so, as a silent spell's item showed the photo before it (failed
    # before, passes). The item names no photo, and says since when.
    photos = [p for p in PHOTOS if p.station_id != "cp1"]
    passages = [p for p in PASSAGES if p.station_id != "cp1"]
    due = [d for bib in ("101", "102", "103") for d in due_at(
        [p for p in passages if p.bib == bib], COURSE, GUN)]  # fmt: skip
    rows = station_health(photos, passages, WINDOW_S, due)
    first = min(start for _, start, _ in silent_at(rows))
    assert [i for i in review_of_health(rows, photos) if i.station_id == "cp1"] == [
        ReviewItem("", None, "camera_silent", (), "cp1", first)
    ]


def _arrivals(latest_s: float | None, watermark_s: float, lateness_s: float = 3600) -> Arrivals:
    """cp1's photos in up to latest_s (the finish's all in), the race's watermark."""
    latest = {"finish": at(4820)} | ({"cp1": at(latest_s)} if latest_s is not None else {})
    return Arrivals(latest, at(watermark_s), timedelta(seconds=lateness_s))


def test_awaited__live_a_silence_whose_photos_may_still_come_is_awaited_not_silent() -> None:
    # A phone uploading in batches: cp1's photos after 1501 s are not in yet, within the
    # allowed lateness. It was reported silent (a camera_silent item, an official sent to a
    # working phone) until they came (failed before, passes).
    due = [("cp1", (at(2010), False)), ("cp1", (at(2420), False))]
    rows = station_health(PHOTOS, PASSAGES, WINDOW_S, due)
    live = awaited(rows, _arrivals(1501, 4820))
    assert [(r["station_id"], r["window_start"], r["window_end"]) for r in live
            if r["health"] == AWAITED] == SILENT  # fmt: skip
    assert not [i for i in review_of_health(live, PHOTOS) if i.station_id == "cp1"]
    # Nothing from cp1 yet: the same.
    assert awaited(rows, _arrivals(None, 4820)) == live
    # The photos can no longer come (the race's watermark an hour past, or the watch
    # ended): silent, one item, as in a batch run.
    for done in (_arrivals(1501, 2700 + 3601), all_in()):
        assert awaited(rows, done) == rows
    # A gap before the station's latest photo is a silence, not photos on their way.
    assert awaited(rows, _arrivals(2800, 4820)) == rows
