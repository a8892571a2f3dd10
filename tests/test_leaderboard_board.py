"""The dashboard's leaderboard counts, from the leaderboard's rows as the pipeline builds them."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from dashboard.board import HELP, positions, running_note, status_counts, table
from dashboard.data import Race, StationInfo
from tests.conftest import at, athlete, make_course, passage
from transforms.results import build_leaderboard


def test_status_counts__an_unknown_bib_is_no_finisher() -> None:
    # "Unknown #999" crossed the finish: counted as unknown, apart (the FINISHED count was 2);
    # without unknown bibs the five statuses are all there is.
    seen = [passage("101", "finish", 2400), passage("102", "finish", 2500)]
    seen += [passage("999", "finish", 2450, needs_review=True, review_reason="unknown_bib")]
    rows = build_leaderboard(seen, make_course(), [athlete("101"), athlete("102")], at(9999))
    counts = status_counts(pd.DataFrame(rows))
    assert counts == {"finished": 2, "running": 0, "dnf": 0, "dns": 0, "dsq": 0, "unknown": 1}
    listed = pd.DataFrame(rows[:2])
    assert list(status_counts(listed)) == ["finished", "running", "dnf", "dns", "dsq"]


def test_status_counts__athletes_waiting_for_their_wave_are_counted_apart() -> None:
    # Wave B's gun is 300 s after wave A's: at 1000 s its start is still open (900 s to
    # cross), so its athlete not seen yet is waiting; wave A's is dns.
    rows = build_leaderboard(
        [], make_course(), [athlete("101"), athlete("103", wave="B")], at(1000)
    )
    counts = status_counts(pd.DataFrame(rows))
    assert (counts["dns"], counts["waiting"]) == (1, 1)


def test_running_note__says_why_athletes_stay_running_without_a_close() -> None:
    # 102 was seen at the start only: without race.close they are running forever, which
    # the leaderboard page says under its counts, as the run summary does.
    course = make_course()
    seen = [passage("101", "finish", 2400), passage("102", "start", 5)]
    rows = pd.DataFrame(build_leaderboard(seen, course, [athlete("101"), athlete("102")], None))
    stations = tuple(StationInfo(s.id, s.name, s.km) for s in course.stations)
    race = Race("Oslo 10k", course.timezone, stations, course.start)
    assert running_note(rows, race) == (
        "1 athlete still running: the course has no race.close or time_limit_s, so nobody "
        "is dnf (add one to the course, then racelens results --course FILE)"
    )
    assert running_note(rows, replace(race, close=at(7200))) == ""  # closes later: running
    assert running_note(rows, replace(race, start=None)) == ""  # no course known: unsaid


def test_positions__an_unknown_bib_takes_no_position() -> None:
    # "Unknown #999" passed cp1 first: the athletes' positions there are 1 and 2, not 2 and 3.
    course = make_course()
    seen = [passage("101", "cp1", 1200), passage("102", "cp1", 1300)]
    seen += [passage("999", "cp1", 1100, needs_review=True, review_reason="unknown_bib")]
    rows = pd.DataFrame(build_leaderboard(seen, course, [athlete("101"), athlete("102")], None))
    stations = tuple(StationInfo(s.id, s.name, s.km) for s in course.stations)
    race = Race("Oslo 10k", course.timezone, stations, course.start)
    shown = positions(rows, race, leaders=3)
    assert list(zip(shown["bib"], shown["position"], strict=True)) == [("101", 1), ("102", 2)]


def test_table__the_pace_says_it_is_the_chip_times() -> None:
    # The pace is of the chip time whatever rank_by says: beside Gun it read as the gun
    # time's (results.csv heads it "Chip Pace (min/km)"). Short, so that the table fits: the
    # column after Chip, its help saying whose pace it is.
    course = replace(make_course(), settings=replace(make_course().settings, rank_by="gun"))
    seen = [passage("101", "start", 60), passage("101", "finish", 3060)]
    rows = pd.DataFrame(build_leaderboard(seen, course, [athlete("101")], at(9999)))
    stations = tuple(StationInfo(s.id, s.name, s.km) for s in course.stations)
    shown = table(rows, Race("Oslo 10k", course.timezone, stations, course.start))
    chip = list(shown.columns).index("Chip")
    assert list(shown.columns[chip : chip + 3]) == ["Chip", "Pace /km", "Gun"]
    assert shown.loc[0, ["Chip", "Pace /km", "Gun"]].tolist() == ["0:50:00.0", "5:00", "0:51:00.0"]
    assert "chip time" in HELP["Pace /km"]
