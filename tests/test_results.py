"""The leaderboard: chip and gun times, waves, ties, categories and statuses, by hand."""

from __future__ import annotations

from dataclasses import replace

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import PROPERTY, at, athlete, make_course, passage
from transforms.course import Athlete, Course
from transforms.export import clock, pace
from transforms.passages import Passage
from transforms.results import (
    BuildLeaderboard,
    build_leaderboard,
    competition_ranks,
    tenths,
)

COURSE: Course = make_course()  # start (km 0), cp1, finish; wave A at the gun, B 300 s later

ATHLETES = (
    athlete("107", "M40", "A"),
    athlete("101", "F35", "A"),
    athlete("102", "M40", "A"),
    athlete("103", "F35", "B"),
    athlete("104", "M40", "B"),
    athlete("105", "M40", "A"),
    athlete("106", "F35", "A"),
    athlete("108", "M40", "A"),
)

PASSAGES = [
    # 101: chip time, crossed the start 30 s after the gun: 2430 - 30 = 2400.
    passage("101", "start", 30),
    passage("101", "cp1", 1230),
    passage("101", "finish", 2430),
    passage("101", "finish", 2410, needs_review=True),  # waits for an official: ignored
    # 102: the start camera missed them: gun time of wave A, 2500.
    passage("102", "cp1", 1300),
    passage("102", "finish", 2500),
    # 103: wave B, no start passage: gun time from the wave's own start, 2800 - 300 = 2500.
    passage("103", "finish", 2800),
    # 104: wave B, own start at 320: chip time 2920 - 320 = 2600.
    passage("104", "start", 320),
    passage("104", "finish", 2920),
    # 105 reached cp1, 106 only the start (their finish needs review): both still running.
    passage("105", "start", 5),
    passage("105", "cp1", 1000),
    passage("106", "start", 20),
    passage("106", "finish", 2300, needs_review=True),
    # 107 never seen; 108 only on a photo nobody has confirmed: both dns.
    passage("108", "start", 40, needs_review=True),
]


AS_OF = at(3 * 3600)  # results as published three hours after the gun
# The columns this file computes by hand; the leaderboard has more (extensions).
COLUMNS = (
    "rank",
    "bib",
    "category_rank",
    "status",
    "total_s",
    "gun_s",
    "chip_start",
    "at_start_s",
    "at_cp1_s",
    "at_finish_s",
)


def row(bib: str, status: str, **values: object) -> dict:
    base = dict.fromkeys(COLUMNS)
    base.update(bib=bib, status=status, chip_start="gun")
    base.update(values)
    return base


def board(passages: list[Passage], course: Course = COURSE, **kwargs: object) -> list[dict]:
    rows = build_leaderboard(passages, course, ATHLETES, kwargs.pop("as_of", AS_OF), **kwargs)
    return [{c: r[c] for c in COLUMNS} for r in rows]


EXPECTED = [
    row(
        "101",
        "finished",
        rank=1,
        category_rank=1,
        total_s=2400.0,
        gun_s=2430.0,
        chip_start="own",
        at_start_s=0.0,
        at_cp1_s=1200.0,
        at_finish_s=2400.0,
    ),
    row(
        "102",
        "finished",
        rank=2,
        category_rank=1,
        total_s=2500.0,
        gun_s=2500.0,
        at_cp1_s=1300.0,
        at_finish_s=2500.0,
    ),
    row(
        "103",
        "finished",
        rank=2,
        category_rank=2,
        total_s=2500.0,
        gun_s=2500.0,
        at_finish_s=2500.0,
    ),
    row(
        "104",
        "finished",
        rank=4,
        category_rank=2,
        total_s=2600.0,
        gun_s=2620.0,
        chip_start="own",
        at_start_s=0.0,
        at_finish_s=2600.0,
    ),
    row("105", "running", chip_start="own", at_start_s=0.0, at_cp1_s=995.0),
    row("106", "running", chip_start="own", at_start_s=0.0),
    row("107", "dns"),
    row("108", "dns"),
]


def test_competition_ranks__ties_share_a_rank_and_the_next_skips() -> None:
    assert competition_ranks([2400.0, 2500.0, 2500.0, 2600.0]) == [1, 2, 2, 4]


@PROPERTY
@given(st.lists(st.integers(0, 20), max_size=30).map(sorted))
def test_competition_ranks__rank_is_one_plus_the_number_of_faster(values: list[int]) -> None:
    assert competition_ranks(values) == [1 + sum(v < x for v in values) for x in values]


def test_build_leaderboard__hand_computed_race() -> None:
    assert board(PASSAGES) == EXPECTED


def test_build_leaderboard__after_the_close_those_still_out_are_dnf() -> None:
    closed = replace(COURSE, close=at(2 * 3600))
    statuses = {r["bib"]: r["status"] for r in board(PASSAGES, closed)}
    assert [statuses[b] for b in ("101", "105", "106", "107")] == [
        "finished",
        "dnf",
        "dnf",
        "dns",
    ]


def test_build_leaderboard__as_of_a_time_counts_only_the_passages_until_then() -> None:
    # "The results at 0:42": 101 had finished (2430 s), 102 was past cp1 but not yet in
    # (finish at 2500 s), 103 (wave B) had not been seen at all.
    rows = {r["bib"]: r for r in board(PASSAGES, as_of=at(2450))}
    assert (rows["101"]["status"], rows["101"]["rank"]) == ("finished", 1)
    assert (rows["102"]["status"], rows["102"]["at_cp1_s"]) == ("running", 1300.0)
    assert rows["103"]["status"] == "dns"
    assert {r["bib"]: r["status"] for r in board(PASSAGES, as_of=at(2500))}["102"] == "finished"


def test_build_leaderboard__until_their_start_closes_an_athlete_is_waiting_not_dns() -> None:
    # Live results 1000 s after the first gun: wave B's gun was at 300 s and its back may
    # cross the start until 300 + 900 s (start_crossing_s), so 103, not seen yet, is
    # waiting, listed after those running (104, seen at the start at 320 s); wave A's 107
    # (its start closed at 900 s) is dns. Before the gun, every athlete not seen is waiting.
    rows = board(PASSAGES, as_of=at(1000))
    statuses = {r["bib"]: r["status"] for r in rows}
    assert [statuses[b] for b in ("103", "104", "107")] == ["waiting", "running", "dns"]
    order = [r["status"] for r in rows]
    assert order.index("running") < order.index("waiting") < order.index("dns")
    assert {r["bib"] for r in board(PASSAGES, as_of=at(-60)) if r["status"] == "waiting"} == {
        a.bib for a in ATHLETES
    }
    assert "waiting" not in {r["status"] for r in board(PASSAGES, as_of=at(1200))}


def test_build_leaderboard__without_a_time_every_passage_counts_as_of_now() -> None:
    assert board(PASSAGES, as_of=None) == EXPECTED
    closed = replace(COURSE, close=at(2 * 3600))  # at() is in the past: the race has closed
    assert {r["bib"]: r["status"] for r in board(PASSAGES, closed, as_of=None)}["105"] == "dnf"


def test_build_leaderboard__an_official_dsq_loses_the_rank() -> None:
    rows = board(PASSAGES, officials={"101": "dsq"})
    finished = [(r["bib"], r["rank"]) for r in rows if r["status"] == "finished"]
    assert finished == [("102", 1), ("103", 1), ("104", 3)]
    assert next(r for r in rows if r["bib"] == "101")["rank"] is None


def test_build_leaderboard__no_passages_every_athlete_is_dns_in_bib_order() -> None:
    rows = board([])
    assert [(r["bib"], r["status"], r["rank"]) for r in rows] == [
        (bib, "dns", None) for bib in sorted(a.bib for a in ATHLETES)
    ]


def test_build_leaderboard__unlisted_bib_gets_an_unranked_row_of_its_own() -> None:
    # "Unknown #999" is no athlete of the race: status unknown (was finished, which a
    # results import or a count of finishers took for a finisher), its time kept for the
    # official who settles it, after every athlete of the start list.
    seen = [passage("999", "finish", 2000, needs_review=True, review_reason="unknown_bib")]
    rows = build_leaderboard(seen + PASSAGES, COURSE, ATHLETES, AS_OF)
    unknown = next(r for r in rows if r["bib"] == "999")
    assert (unknown["name"], unknown["rank"], unknown["status"], unknown["total_s"]) == (
        "Unknown #999",
        None,
        "unknown",
        None,
    )
    assert (unknown["gun_s"], unknown["at_finish_s"]) == (2000.0, 2000.0)
    assert "unknown_bib" in unknown["flags"]
    assert [r["rank"] for r in rows if r["bib"] == "101"] == [1]
    assert rows[-1] is unknown


def test_build_leaderboard__a_finish_after_the_close_is_dnf_over_the_time_limit() -> None:
    # The course closes at 2500 s (41:40): 102 crossed the line at the close (in time), 103
    # (wave B) and 104 after it. A timer lists those two unranked, dnf over the time limit,
    # with the times they ran still shown; the others' places close up.
    closed = replace(COURSE, close=at(2500))
    rows = {r["bib"]: r for r in build_leaderboard(PASSAGES, closed, ATHLETES, AS_OF)}
    assert [(b, rows[b]["status"], rows[b]["rank"]) for b in ("101", "102", "103", "104")] == [
        ("101", "finished", 1),
        ("102", "finished", 2),
        ("103", "dnf", None),
        ("104", "dnf", None),
    ]
    late = rows["104"]
    assert "over_time_limit" in late["flags"] and "over_time_limit" not in rows["102"]["flags"]
    assert (late["total_s"], late["chip_s"], late["gun_s"], late["at_finish_s"]) == (
        None,
        2600.0,
        2620.0,
        2600.0,
    )
    assert late["pace_s_per_km"] == 260.0 and late["gap_s"] is None
    # Before the close nobody is over it: as of 2450 s, 102 is still running.
    assert {r["bib"]: r["status"] for r in board(PASSAGES, closed, as_of=at(2450))}["102"] == (
        "running"
    )


def test_build_leaderboard__a_time_limit_counts_from_each_athletes_wave_start() -> None:
    # race.close is one clock time: wave B (gun at 300 s) had 300 s less than wave A. With
    # time_limit_s: 2550 A closes at 2550 s and B at 2850 s: 103 (B, finish at 2800) is in
    # time, 104 (B, 2920) over it; as of 2700 s, A's runners still out are dnf, B's running.
    limited = replace(COURSE, settings=replace(COURSE.settings, time_limit_s=2550.0))
    rows = {r["bib"]: r for r in build_leaderboard(PASSAGES, limited, ATHLETES, AS_OF)}
    assert [(b, rows[b]["status"], rows[b]["rank"]) for b in ("101", "102", "103", "104")] == [
        ("101", "finished", 1),
        ("102", "finished", 2),
        ("103", "finished", 2),
        ("104", "dnf", None),
    ]
    assert "over_time_limit" in rows["104"]["flags"] and rows["104"]["chip_s"] == 2600.0
    early = {r["bib"]: r["status"] for r in board(PASSAGES, limited, as_of=at(2700))}
    assert (early["104"], early["105"], early["106"]) == ("running", "dnf", "dnf")


def test_build_leaderboard__pace_is_of_the_time_shown() -> None:
    # 39:59.99 reads 0:39:59.9: its pace over 10 km is 3:59 /km, not 4:00 (3:59.999 rounded
    # to the tenth and then to the second), as 3:59.9 x 10 is under 40:00; so is the sector's.
    seen = [passage("1", "start", 0), passage("1", "cp1", 1199.99), passage("1", "finish", 2399.99)]
    (row,) = build_leaderboard(seen, COURSE, [athlete("1")], AS_OF)
    assert clock(row["total_s"]) == "0:39:59.9"
    assert (pace(row["pace_s_per_km"]), pace(row["pace_cp1_s_per_km"])) == ("3:59", "3:59")
    assert pace(row["pace_finish_s_per_km"]) == "4:00"


def test_build_leaderboard__pace_is_of_the_chip_time_when_ranked_by_gun() -> None:
    # Ranked by gun time, the pace was of the gun time: 104 (wave B, crossed the start 20 s
    # after its gun) read 4:22 /km beside a chip time of 43:20 (4:20 /km). Timers publish the
    # pace of the chip time, the time the athlete ran, whichever time ranks.
    by_gun = replace(COURSE, settings=replace(COURSE.settings, rank_by="gun"))
    rows = {r["bib"]: r for r in build_leaderboard(PASSAGES, by_gun, ATHLETES, AS_OF)}
    assert (rows["104"]["total_s"], rows["104"]["chip_s"]) == (2620.0, 2600.0)
    assert pace(rows["104"]["pace_s_per_km"]) == "4:20"
    assert pace(rows["102"]["pace_s_per_km"]) == "4:10"  # no start seen: chip time is gun time


def test_build_leaderboard_transform__ranks_the_whole_race() -> None:
    with TestPipeline() as p:
        rows = (
            p
            | beam.Create(PASSAGES)
            | BuildLeaderboard(COURSE, ATHLETES, AS_OF, {})
            | beam.Map(lambda r: {c: r[c] for c in COLUMNS})
        )
        assert_that(rows, equal_to(EXPECTED))


def finishers(times: list[float]) -> list[dict]:
    """Leaderboard rows of athletes 1..n who finished in these chip times (no start photo)."""
    athletes = [athlete(str(i + 1)) for i in range(len(times))]
    seen = [passage(a.bib, "finish", t) for a, t in zip(athletes, times, strict=True)]
    return build_leaderboard(seen, COURSE, athletes, AS_OF)


def test_build_leaderboard__ties_are_equal_times_as_shown_to_the_tenth() -> None:
    # 40:00.04 and 40:00.06 both read 0:40:00.0 (tenths truncated): one place, no gap.
    # 40:00.14 reads 0:40:00.1, a tenth behind; 40:01.05 reads 0:40:01.0, a second behind.
    rows = finishers([2400.04, 2400.06, 2400.14, 2401.05])
    assert [(clock(r["total_s"]), r["rank"], r["gap_s"]) for r in rows] == [
        ("0:40:00.0", 1, 0.0),
        ("0:40:00.0", 1, 0.0),
        ("0:40:00.1", 3, 0.1),
        ("0:40:01.0", 4, 1.0),
    ]


@PROPERTY
@given(st.lists(st.integers(2_400_000, 2_400_400).map(lambda ms: ms / 1000), min_size=1))
def test_build_leaderboard__place_and_gap_follow_the_times_as_shown(times: list[float]) -> None:
    rows = finishers(times)
    shown = [clock(r["total_s"]) for r in rows]
    assert [r["rank"] for r in rows] == [1 + sum(s < x for s in shown) for x in shown]
    assert [clock(r["gap_s"]) for r in rows] == [
        clock(tenths(r["total_s"]) / 10 - tenths(rows[0]["total_s"]) / 10) for r in rows
    ]


def test_build_leaderboard__no_category_or_gender_no_place_in_one() -> None:
    # A start list's blank category (or gender) is no category: those athletes get no
    # category place (results.csv's Category Place stays blank), and the others' places
    # are within their own category ("M 40": a category with a space is one like any other).
    runners = [Athlete("1", "Åse Ødegård"), Athlete("2", "Bo", gender="M")]
    runners += [Athlete("3", "Li", category="M 40", gender="M"), Athlete("4", "Per", "M 40")]
    seen = [passage(a.bib, "finish", 2400 + 100 * i) for i, a in enumerate(runners)]
    rows = build_leaderboard(seen, COURSE, runners, AS_OF)
    assert [(r["bib"], r["rank"], r["category_rank"], r["gender_rank"]) for r in rows] == [
        ("1", 1, None, None),
        ("2", 2, None, 1),
        ("3", 3, 1, 2),
        ("4", 4, 2, None),
    ]


def test_build_leaderboard__a_start_photo_before_the_gun_starts_the_chip_at_the_gun() -> None:
    # The front row stands on the line before the gun: the start camera's photos of them
    # make a passage 30 s before it. Nobody's chip starts before their wave's gun, so chip
    # time is never longer than gun time. 104 (wave B, gun at 300 s) was photographed in the
    # pen as wave A left, at 10 s: their chip also starts at their own wave's gun.
    seen = [passage("101", "start", -30), passage("101", "cp1", 1200)]
    seen += [passage("101", "finish", 2400), passage("104", "start", 10)]
    seen += [passage("104", "finish", 2700)]
    rows = {r["bib"]: r for r in build_leaderboard(seen, COURSE, ATHLETES, AS_OF)}
    assert [
        (r["chip_s"], r["gun_s"], r["at_start_s"], r["at_cp1_s"], r["tod_start"])
        for r in (rows["101"], rows["104"])
    ] == [(2400.0, 2400.0, 0.0, 1200.0, at(0)), (2400.0, 2400.0, 0.0, None, at(300))]


def sectors(row: dict) -> list[tuple]:
    return [(row[f"sector_{s}_s"], row[f"pace_{s}_s_per_km"]) for s in ("start", "cp1", "finish")]


def test_build_leaderboard__sectors_run_from_the_chip_start_and_across_a_missed_station() -> None:
    # 102's start was not photographed: their first sector runs from the gun, as their
    # splits do (20:00 for 5 km: 240 s/km). 101 was not seen at cp1: one sector from the
    # start to the finish, 40:00 over 10 km.
    seen = [passage("102", "cp1", 1200), passage("102", "finish", 2500)]
    seen += [passage("101", "start", 0), passage("101", "finish", 2400)]
    rows = {r["bib"]: r for r in build_leaderboard(seen, COURSE, ATHLETES, AS_OF)}
    assert sectors(rows["102"]) == [(None, None), (1200.0, 240.0), (1300.0, 260.0)]
    assert sectors(rows["101"]) == [(None, None), (None, None), (2400.0, 240.0)]


@st.composite
def runner(draw: st.DrawFn, bib: int) -> tuple[Athlete, list[Passage]]:
    """An athlete of wave A or B and their passages: a start up to a minute before their gun
    to two after it, a pace of 3:20 to 6:40 per km, each station seen or missed."""
    wave = draw(st.sampled_from(["A", "B"]))
    start = (300 if wave == "B" else 0) + draw(st.integers(-60_000, 120_000)) / 1000
    pace = draw(st.integers(200_000, 400_000)) / 1000
    seen = [s for s in COURSE.stations if draw(st.booleans())]
    return athlete(str(bib), wave=wave), [
        passage(str(bib), s.id, start + pace * s.km) for s in seen
    ]


@PROPERTY
@given(
    st.lists(st.integers(1, 10**4), min_size=1, max_size=8, unique=True).flatmap(
        lambda bibs: st.tuples(*(runner(b) for b in bibs))
    )
)
def test_build_leaderboard__times_add_up_for_every_finisher(field: tuple) -> None:
    athletes = [a for a, _ in field]
    rows = build_leaderboard([p for _, ps in field for p in ps], COURSE, athletes, AS_OF)
    for r in (r for r in rows if r["status"] == "finished"):
        sectors = [r[f"sector_{s.id}_s"] for s in COURSE.stations]
        assert r["chip_s"] <= r["gun_s"]
        assert r["at_finish_s"] == r["chip_s"]
        assert abs(sum(s for s in sectors if s is not None) - r["chip_s"]) < 0.005
