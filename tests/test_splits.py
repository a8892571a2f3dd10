"""CheckSplits: implausible passages go to review instead of into the results."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.retime import Timed, passages_per_station, results_of
from tests.conftest import GUN, at, athlete, make_course, passage, photo, read
from transforms.corrections import Correction, decisions_by_image
from transforms.course import Settings
from transforms.identify import identify_photo
from transforms.records import Photo
from transforms.results import build_leaderboard
from transforms.splits import CheckedUntil, CheckSplits, check_athlete, plausible

COURSE = make_course()  # start km 0, cp1 km 5, finish km 10; pace 150..1800 s/km


def flagged(passages: list) -> dict[str, str | None]:
    return {p.station_id: p.review_reason for p in passages if p.needs_review}


def test_plausible__pace_between_the_course_limits() -> None:
    assert plausible(COURSE, 0.0, at(0), 5.0, at(1500))  # 5:00 per km
    assert not plausible(COURSE, 0.0, at(0), 5.0, at(700))  # 2:20 per km: faster than 2:30
    assert not plausible(COURSE, 0.0, at(0), 5.0, at(5 * 1800 + 60))  # slower than 30:00
    assert not plausible(COURSE, 5.0, at(1500), 10.0, at(1400))  # earlier than the station before


def test_check_splits__a_clean_race_needs_no_review() -> None:
    ps = [passage("101", "start", 10), passage("101", "cp1", 1510), passage("101", "finish", 3010)]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert sorted(checked, key=lambda p: p.passed_at) == ps
    assert review == []


def test_check_splits__impossible_pace_goes_to_review_not_into_results() -> None:
    ps = [passage("101", "start", 10), passage("101", "cp1", 400), passage("101", "finish", 3010)]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"cp1": "implausible_split"}
    reasons = sorted((r.reason, r.station_id) for r in review)
    assert reasons == [("implausible_split", "cp1")]  # one item: not also missed there


def test_check_splits__earlier_than_the_station_before_is_implausible() -> None:
    ps = [passage("101", "start", 10), passage("101", "cp1", 1500), passage("101", "finish", 1400)]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"finish": "implausible_split"}
    assert [r.reason for r in review] == ["implausible_split"]


def test_check_splits__the_largest_plausible_set_wins_over_a_wrong_first_read() -> None:
    # A misread at the start 40 minutes late would make both later passages impossible.
    ps = [
        passage("101", "start", 2400),
        passage("101", "cp1", 1500),
        passage("101", "finish", 3000),
    ]
    checked, _ = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"start": "implausible_split"}


def test_check_splits__a_checkpoint_at_odds_with_the_finish_is_doubted_not_the_finish() -> None:
    # A winner at 2:50/km, cp1's camera 4 minutes slow: start -> cp1 (3:38/km) and start ->
    # finish are plausible, cp1 -> finish (2:02/km) is not. Of the two chains of two, the one
    # holding the finish is kept: the other published the winner as not finished (the audit).
    ps = [passage("101", "start", 10), passage("101", "cp1", 1100), passage("101", "finish", 1710)]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"cp1": "implausible_split"}
    assert [(r.reason, r.station_id) for r in review] == [("implausible_split", "cp1")]


def test_check_splits__an_approved_passage_stays_and_the_read_against_it_is_flagged() -> None:
    # cp1 at 400 s is faster than the course allows, from the gun or the start read: the pace
    # check drops it (test above), but an official approved it, so the start read goes.
    ps = [
        passage("101", "start", 10),
        replace(passage("101", "cp1", 400), official=True),
        passage("101", "finish", 3010),
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"start": "implausible_split"}
    assert [(r.reason, r.station_id) for r in review] == [("implausible_split", "start")]


@pytest.mark.parametrize(
    ("official", "dropped"),
    [(None, "finish"), ("finish", "cp1"), ("cp1", "finish")],
    ids=["two_reads_as_before", "official_finish", "official_cp1"],
)
def test_check_splits__of_two_conflicting_passages_the_official_one_stays(
    official: str | None, dropped: str
) -> None:
    # The finish 100 s before cp1: one of them is wrong; without an official, the earlier
    # station's passage stays (ties keep the earlier passages).
    ps = [
        replace(p, official=p.station_id == official)
        for p in (passage("101", "cp1", 1500), passage("101", "finish", 1400))
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {dropped: "implausible_split"}
    assert [r.station_id for r in review if r.reason == "implausible_split"] == [dropped]


def test_check_splits__two_officials_that_conflict_are_both_kept() -> None:
    ps = [
        replace(passage("101", "cp1", 1500), official=True),
        replace(passage("101", "finish", 1400), official=True),
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {} and review == []


WALKER = photo("walker", station="finish", seconds=18600, bibs=(read("102"),))


def time_walker(*corrections: Correction) -> Timed:
    """Race timing of one photo as the live mode and the dashboard's re-timing do it: bib
    102 read surely at the finish 5 h 10 min after the gun, slower than the course's
    slowest pace (30:00 per km)."""
    return time_photos([WALKER], *corrections)


def time_photos(
    photos: list[Photo], *corrections: Correction, waves: tuple[str, str] = ("A", "A")
) -> Timed:
    """Race timing of `photos` as the live mode and the dashboard's re-timing do it; `waves`:
    of 101 and 102."""
    settings = COURSE.settings
    decisions = decisions_by_image(corrections)
    known = frozenset({"101", "102"})
    identified = [identify_photo(p, known, settings.review_threshold, decisions) for p in photos]
    sightings = [s for i in identified for s in i.sightings]
    passages = passages_per_station(sightings, settings.merge_window_s)
    cfg = SimpleNamespace(
        course=COURSE,
        athletes=(athlete("101", wave=waves[0]), athlete("102", wave=waves[1])),
        as_of=at(8 * 3600),
        corrections=corrections,
    )
    return results_of(identified, passages, cfg)


@pytest.mark.parametrize(
    "decision",
    [
        Correction(WALKER.image_id, "approve", decided_at=at(20000)),
        Correction(WALKER.image_id, "assign", bib="102", decided_at=at(20000)),
    ],
    ids=["approve", "assign"],
)
def test_check_splits__an_official_decision_on_an_implausible_split_times_the_athlete(
    decision: Correction,
) -> None:
    def outcome(timed: Timed) -> tuple:
        (p,) = timed.passages
        (row,) = [r for r in timed.leaderboard if r["bib"] == "102"]
        reasons = sorted(r.reason for r in timed.review if r.image_id == WALKER.image_id)
        return p.needs_review, reasons, row["status"], row["total_s"]

    assert outcome(time_walker()) == (True, ["implausible_split"], "dns", None)
    # The official approved (or assigned) the photo the review item showed: it counts.
    assert outcome(time_walker(decision)) == (False, ["missed_checkpoint"], "finished", 18600.0)


# 101 at cp1 (km 5) 6:30 after the start, 1:18 per km: a camera clock off, or a misread.
RUNNER = [
    photo(name, station=station, seconds=seconds, bibs=(read("101"),))
    for name, station, seconds in (("s", "start", 10), ("c", "cp1", 400), ("f", "finish", 3010))
]
CP1 = RUNNER[1].image_id


@pytest.mark.parametrize(
    ("decisions", "items"),
    [
        ((), ["implausible_split"]),
        ((Correction(CP1, "reject", decided_at=at(4000)),), ["missed_checkpoint"]),
        ((Correction(CP1, "approve", decided_at=at(4000)),), []),
    ],
    ids=["open", "rejected", "approved"],
)
def test_check_splits__a_doubted_passage_is_one_item_missed_only_once_rejected(
    decisions: tuple[Correction, ...], items: list[str]
) -> None:
    # Seen at cp1 at a doubted time, 101 is not also "not seen at a checkpoint" there: an
    # official working the missed checkpoints alone disqualified a runner who passed. Failed
    # before (open: both items), passes. Rejected, the passage is gone: missed; approved, it
    # counts (the start, now the doubted one, is that start's own item). The items about
    # 101: rejected, cp1's only photo is gone and its camera was silent when 101 was due
    # there (camera_silent, an item about the camera).
    timed = time_photos(RUNNER, *decisions)
    about_101 = [r for r in timed.review if r.station_id == "cp1" and r.candidates == ("101",)]
    assert sorted(r.reason for r in about_101) == items


# 101 read weakly at cp1 at 40 min, where their start and finish (50 min) do not back it up.
WEAK = [
    photo(name, station=station, seconds=seconds, bibs=(read("101", confidence),))
    for name, station, seconds, confidence in (
        ("s", "start", 10, 0.95),
        ("w", "cp1", 2400, 0.5),
        ("f", "finish", 3010, 0.95),
    )
]


@pytest.mark.parametrize(
    ("decisions", "items"),
    [
        ((), ["low_confidence"]),
        # Rejected, cp1's only photo is the reject: the camera sent none while 101 was due,
        # one camera_silent item (about no photo) beside the missed checkpoint.
        (
            (Correction(WEAK[1].image_id, "reject", decided_at=at(4000)),),
            ["camera_silent", "missed_checkpoint"],
        ),
        ((Correction(WEAK[1].image_id, "approve", decided_at=at(4000)),), []),
    ],
    ids=["open", "rejected", "approved"],
)
def test_check_splits__a_weak_read_is_one_item_missed_only_once_rejected(
    decisions: tuple[Correction, ...], items: list[str]
) -> None:
    # Read weakly at cp1, 101 is not also "not seen at a checkpoint" there: one doubt, one
    # item, as for a doubted passage. Failed before (open: low_confidence and
    # missed_checkpoint), passes.
    timed = time_photos(WEAK, *decisions)
    assert sorted(r.reason for r in timed.review if r.station_id == "cp1") == items


# The finish timed by its last photo (an approach camera): 101 there at 50:00 by the frames
# placed, and on a frame placed nowhere `after` seconds later.
LAST_AT_FINISH = make_course(
    stations=tuple(replace(s, crossing="last") if s.id == "finish" else s for s in COURSE.stations)
)
APPROACHED = [
    passage("101", "start", 10),
    passage("101", "cp1", 1510),
    passage("101", "finish", 3000),
]


@pytest.mark.parametrize(
    ("course", "after", "held"),
    [
        (LAST_AT_FINISH, 6, True),
        (LAST_AT_FINISH, 25, False),  # past the merge window (20 s): another visit's
        (LAST_AT_FINISH, -6, False),  # before the passage: its time is the later one
        (COURSE, 6, False),  # crossing: first: the passage is the visit's first photo
    ],
    ids=["line_frame_unplaced", "later_visit", "earlier_frame", "crossing_first"],
)
def test_check_splits__a_passage_before_a_frame_placed_nowhere_waits_for_it(
    course: object, after: float, held: bool
) -> None:
    # An approach camera's frames placed, the one at the line left to an official: the
    # finish would be timed up to half a minute early. It waits for that photo's item
    # (ambiguous_station), uncounted and not corroborated by the athlete's pace, with no
    # other item (the photo's is the one question). Failed before (timed at 50:00), passes.
    unplaced = [("finish", at(3000 + after))]
    checked, review = check_athlete(APPROACHED, course, GUN, listed=True, unplaced=unplaced)
    assert flagged(checked) == ({"finish": "ambiguous_station"} if held else {})
    assert review == []


def test_check_splits__an_officials_passage_never_waits_for_an_unplaced_frame() -> None:
    official = [*APPROACHED[:2], replace(APPROACHED[2], official=True)]
    unplaced = [("finish", at(3006))]
    checked, _ = check_athlete(official, LAST_AT_FINISH, GUN, listed=True, unplaced=unplaced)
    assert flagged(checked) == {}


def test_check_splits__finisher_not_seen_between_is_a_missed_checkpoint() -> None:
    ps = [passage("101", "start", 10), passage("101", "finish", 3010, image_id="fin")]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {}
    # No photo of the athlete there: the path is null, not '' (failed before, passes).
    assert [(r.reason, r.station_id, r.image_id, r.candidates, r.path) for r in review] == [
        ("missed_checkpoint", "cp1", "fin", ("101",), None)
    ]


def test_check_splits__unknown_bib_is_kept_for_review_without_more_items() -> None:
    ps = [passage("999", "cp1", 1500, needs_review=True, review_reason="low_confidence")]
    checked, review = check_athlete(ps, COURSE, GUN, listed=False)
    assert flagged(checked) == {"cp1": "unknown_bib"}
    assert review == []


def test_check_splits__course_can_set_a_stricter_minimum_pace() -> None:
    strict = make_course(settings=Settings(min_pace_s_per_km=240.0))
    ps = [passage("101", "start", 0), passage("101", "cp1", 1000), passage("101", "finish", 2500)]
    checked, _ = check_athlete(ps, strict, GUN, listed=True)
    assert flagged(checked) == {"cp1": "implausible_split"}  # 3:20 per km is too fast here


def test_check_splits__implausible_split_leaves_the_leaderboard_with_a_missed_checkpoint() -> None:
    ps = [passage("101", "start", 10), passage("101", "cp1", 400), passage("101", "finish", 3010)]
    checked, _ = check_athlete(ps, COURSE, GUN, listed=True)
    (row,) = build_leaderboard(checked, COURSE, [athlete("101")], at(99999))
    assert (row["status"], row["total_s"], row["at_cp1_s"]) == ("finished", 3000.0, None)
    assert row["missed"] == ["cp1"] and "missed_checkpoint" in row["flags"]


def test_check_splits_transform__flags_per_athlete() -> None:
    ps = [
        passage("101", "start", 10),
        passage("101", "cp1", 400),
        passage("101", "finish", 3010),
        passage("102", "start", 20),
        passage("102", "cp1", 1520),
        passage("102", "finish", 3020),
    ]
    with TestPipeline() as p:
        checked = p | beam.Create(ps) | CheckSplits(COURSE, (athlete("101"), athlete("102")))
        assert_that(
            checked.passages
            | beam.Filter(lambda x: x.needs_review)
            | beam.Map(lambda x: (x.bib, x.station_id, x.review_reason)),
            equal_to([("101", "cp1", "implausible_split")]),
            label="Flagged",
        )
        assert_that(
            checked.review | beam.Map(lambda r: (r.candidates, r.reason)),
            equal_to([(("101",), "implausible_split")]),
            label="Review",
        )


def test_check_splits__weak_finish_read_on_the_athletes_pace_counts() -> None:
    # 5:00 per km so far: the finish is predicted at 3010 s; a weak read at 3020 s fits.
    ps = [
        passage("101", "start", 10),
        passage("101", "cp1", 1510),
        passage("101", "finish", 3020, needs_review=True, review_reason="low_confidence"),
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {}
    assert review == []


def test_check_splits__weak_read_far_from_the_athletes_pace_stays_in_review() -> None:
    ps = [
        passage("101", "start", 10),
        passage("101", "cp1", 1510),
        passage("101", "finish", 2500, needs_review=True, review_reason="low_confidence"),
    ]
    checked, _ = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"finish": "low_confidence"}


def test_check_splits__weak_read_between_confirmed_passages_is_interpolated() -> None:
    ps = [
        passage("101", "start", 0),
        passage("101", "cp1", 1480, needs_review=True, review_reason="low_confidence"),
        passage("101", "finish", 3000),
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {} and review == []


def test_check_splits__weak_read_beside_a_confirmed_passage_adds_nothing() -> None:
    ps = [
        passage("101", "cp1", 1500),
        passage("101", "cp1", 1900, needs_review=True, review_reason="low_confidence"),
    ]
    checked, _ = check_athlete(ps, COURSE, GUN, listed=True)
    assert checked == [ps[0]]


def test_check_splits__weak_read_after_only_a_start_passage_waits_for_review() -> None:
    # Seen at the start, then only a weak read at cp1 (a runner who dropped out there; any
    # runner mid-race in a live run): the start gives no pace to predict cp1 by, so the read
    # waits for an official. The start was once an anchor twice, and CheckSplits stopped
    # the run with a ZeroDivisionError.
    ps = [
        passage("101", "start", 10),
        passage("101", "cp1", 1500, needs_review=True, review_reason="low_confidence"),
    ]
    checked, review = check_athlete(ps, COURSE, GUN, listed=True)
    assert flagged(checked) == {"cp1": "low_confidence"} and review == []


def test_check_splits__no_missed_checkpoint_for_an_athlete_on_a_photo_held_too_late() -> None:
    # Re-timed after a live run, 101's cp1 photo is held as arrived too late: the official
    # decides it (accept it, and 101 was at cp1); 102 is on no cp1 photo at all.
    ps = [passage(b, s, t) for b in ("101", "102") for s, t in (("start", 10), ("finish", 3000))]
    with TestPipeline() as p:
        held = p | "Held" >> beam.Create([("cp1", "101")])
        athletes = (athlete("101"), athlete("102"))
        checked = p | beam.Create(ps) | CheckSplits(COURSE, athletes, held)
        assert_that(
            checked.review | beam.Map(lambda r: (r.candidates, r.station_id, r.reason)),
            equal_to([(("102",), "cp1", "missed_checkpoint")]),
        )


# A weak cp1 read at 20:00 counts once the finish at 40:00 backs it up, not before: the
# results at 25:00 are those an official saw then, with the read still in review.
WEAK_CP1 = [
    passage("101", "start", 0),
    passage("101", "cp1", 1200, needs_review=True, confidence=0.5),
    passage("101", "finish", 2400),
]


@pytest.mark.parametrize(("as_of", "cp1_counts"), [(1500, False), (2500, True)])
def test_checked_until__a_weak_read_is_judged_by_the_passages_until_then(
    as_of: float, cp1_counts: bool
) -> None:
    with TestPipeline() as p:
        checked = (
            p
            | beam.Create(WEAK_CP1)
            | CheckedUntil(COURSE, (athlete("101"),), at(as_of))
            | beam.Map(lambda q: (q.station_id, q.needs_review))
        )
        expected = [("start", False), ("cp1", not cp1_counts)]
        assert_that(checked, equal_to(expected + ([("finish", False)] if cp1_counts else [])))


def test_results_of__as_of_a_time_a_weak_read_is_judged_by_the_passages_until_then() -> None:
    def cp1_at(as_of: float | None) -> float | None:
        cfg = SimpleNamespace(
            course=COURSE,
            athletes=(athlete("101"),),
            as_of=None if as_of is None else at(as_of),
            corrections=(),
        )
        (row,) = results_of([], WEAK_CP1, cfg).leaderboard
        return row["at_cp1_s"]

    assert cp1_at(None) == 1200.0
    assert cp1_at(2500) == 1200.0
    assert cp1_at(1500) is None


# 102 of wave B (gun at 300 s) crossed the start with wave A, 11 s after its gun (the
# audit's bib 110): cp1 (km 5) 1000 s and the finish 2000 s after that photo, 200 s per km;
# from wave B's gun cp1 is 142 s per km, faster than the course allows (150).
JUMPER = [
    photo(f"jumper-{station}", station=station, seconds=seconds, bibs=(read("102"),))
    for station, seconds in (("start", 11), ("cp1", 1011), ("finish", 2011))
]
JUMPER_START = JUMPER[0].image_id
DECIDED = at(4000)


def jumper_outcome(*corrections: Correction) -> tuple:
    timed = time_photos(JUMPER, *corrections, waves=("A", "B"))
    (row,) = [r for r in timed.leaderboard if r["bib"] == "102"]
    items = [(r.reason, r.station_id, r.image_id) for r in timed.review]
    times = (row["status"], row["chip_s"], row["gun_s"], row["tod_start"], row["flags"])
    return times, items


@pytest.mark.parametrize(
    "approved",
    [(), (JUMPER_START, JUMPER[1].image_id)],
    ids=["as_read", "start_and_cp1_approved"],
)
def test_check_splits__a_wave_jumper_is_timed_from_the_start_photo_flagged_and_queued(
    approved: tuple[str, ...],
) -> None:
    # The audit's case: timed from wave B's gun, 102 was 1st at 1711 s, 289 s short, with
    # the start and cp1 photos in review as implausible splits; once an official approved
    # them (he is on them), with no flag at all and the start shown at wave B's gun. From
    # the start photo his later passages are plausible and from the gun not: he crossed
    # there. Chip time from the photo, gun time from wave A's gun he left with, flagged,
    # and an item stays in the queue for the official to decide. Failed before, passes.
    decisions = [Correction(i, "approve", decided_at=DECIDED) for i in approved]
    assert jumper_outcome(*decisions) == (
        ("finished", 2000.0, 2011.0, at(11), ["early_start"]),
        [("early_start", "start", JUMPER_START)],
    )


@pytest.mark.parametrize(
    ("decision", "times"),
    [
        ("reinstate", ("finished", 2000.0, 2011.0, at(11), ["early_start"])),
        ("from_gun", ("finished", 1711.0, 1711.0, at(300), [])),
        ("dsq", ("dsq", None, None, at(11), ["early_start"])),
    ],
    ids=["from_the_photo", "from_the_gun", "dsq"],
)
def test_check_splits__an_officials_decision_on_an_early_start_times_the_athlete(
    decision: str, times: tuple
) -> None:
    # The item's three decisions: the result stands (the dashboard's approval of an athlete
    # item, logged as reinstate), timed from their wave's gun after all (the official
    # judged the photo shows 102 waiting, not crossing), or disqualified.
    row = Correction(JUMPER_START, decision, "102", "start", decided_at=DECIDED)
    assert jumper_outcome(row)[0] == times


def test_check_splits__a_later_waves_runner_in_the_pen_is_no_early_start() -> None:
    # 104 of wave B photographed at the start as wave A left, 290 s before their gun, then
    # at cp1 and the finish at 4:10 per km from it: plausible from the gun too, so nothing
    # says the photo was the crossing. The photo is in doubt as before (approved, the
    # results count it at the gun: test_results), no early start.
    ps = [passage("104", "start", 10), passage("104", "cp1", 1550), passage("104", "finish", 2800)]
    _, review = check_athlete(ps, COURSE, at(300), listed=True)
    assert [(r.reason, r.station_id) for r in review] == [("implausible_split", "start")]


@pytest.mark.parametrize(
    ("pace", "early"),
    [(300.0, True), (250.0, False)],
    ids=["jumper_at_5_00_per_km", "pen_then_own_gun"],
)
def test_check_splits__the_athletes_own_pace_tells_a_slower_wave_jumper(
    pace: float, early: bool
) -> None:
    # 102 of wave B photographed at the start at 11 s. At 5:00 per km from that photo, cp1
    # and the finish are plausible from wave B's gun too (4:02 per km to cp1), so "too fast
    # from the gun" cannot tell; his pace from cp1 to the finish, carried back to the
    # start, puts his crossing at the photo (11 s), not at his gun: he crossed with wave A.
    # Before, the photo was an implausible split and, approved, counted at wave B's gun:
    # 289 s credited. One who waited in the pen and left at his gun (300 s) at 4:10 per km
    # is timed from the gun as before, the photo in doubt. Failed before, passes.
    crossed = 11.0 if early else 300.0
    ps = [passage("102", "start", 11)]
    ps += [passage("102", s, crossed + pace * km) for s, km in (("cp1", 5), ("finish", 10))]
    checked, review = check_athlete(ps, COURSE, at(300), listed=True)
    expected = ("early_start", None) if early else ("implausible_split", "implausible_split")
    assert ([r.reason for r in review], flagged(checked).get("start")) == (
        [expected[0]],
        expected[1],
    )
    approved = [replace(p, official=True) for p in ps]
    (row,) = build_leaderboard(approved, COURSE, [athlete("102", wave="B")], at(3 * 3600))
    from_gun = 10 * pace + crossed - 300
    chip = (10 * pace, 10 * pace + 11) if early else (from_gun, from_gun)
    assert (row["chip_s"], row["gun_s"], row["flags"]) == (
        *chip,
        ["early_start"] if early else [],
    )
