"""results.csv: the column order and formats a results website imports."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.board import table
from dashboard.data import Race
from dashboard.formats import pace_or_blank
from tests.conftest import PROPERTY, at, athlete, make_course, passage
from transforms.course import Settings
from transforms.export import clock, gap, pace, results_csv, split_label
from transforms.results import build_leaderboard
from transforms.write import write_csv

COURSE = make_course()


def test_clock__tenths_truncated_like_timing_software() -> None:
    assert clock(3725.46) == "1:02:05.4"
    assert clock(59.99) == "0:00:59.9"
    assert clock(None) == ""


def test_pace__minutes_and_seconds_per_km_truncated_like_the_times() -> None:
    # Truncated as the times are (4:31.6 per km reads 4:31, was rounded to 4:32): a timer's
    # m:ss, one rule for every time shown; the dashboard shows the same.
    assert pace(300.0) == "5:00"
    assert pace(271.6) == "4:31"
    assert pace(239.9999999) == "4:00"  # to the millisecond first, as the times
    assert pace_or_blank(271.6) == "4:31" and pace_or_blank(None) == ""


def test_results_csv__place_bib_name_then_splits_then_times() -> None:
    ps = [
        passage("101", "start", 10),
        passage("101", "cp1", 1510),
        passage("101", "finish", 3010),
        passage("102", "start", 5),
        passage("102", "cp1", 1300),
    ]
    rows = build_leaderboard(ps, COURSE, [athlete("101"), athlete("102")], at(99999))
    table = list(csv.reader(io.StringIO(results_csv(rows, COURSE))))
    assert table[0] == [
        "Place", "Bib", "Name", "Gender", "Category", "Club", "Wave", "Status", "5 km",
        "Chip Time", "Gun Time", "Chip Pace (min/km)", "Gap", "Gender Place", "Category Place",
        "Flags",
    ]  # fmt: skip
    assert table[1][:4] == ["1", "101", "Runner 101", ""]
    assert table[1][7:12] == ["FINISHED", "0:25:00.0", "0:50:00.0", "0:50:10.0", "5:00"]
    assert table[2][:2] == ["", "102"] and table[2][7:9] == [
        "RUNNING",
        "0:21:35.0",
    ]  # no close: still out


@pytest.mark.parametrize(("setting", "separator"), [(";", ";"), ("tab", "\t")])
def test_results_csv__separated_as_the_course_says_for_excel_in_europe(
    setting: str, separator: str
) -> None:
    # Excel splits a CSV at the region's list separator: a semicolon where the comma is the
    # decimal point, so a comma-separated results.csv opened there as one column.
    ps = [passage("101", "start", 10), passage("101", "finish", 3010)]
    entrants = [replace(athlete("101"), club="Tjalve, Oslo")]
    european = replace(COURSE, settings=Settings(csv_separator=setting))
    rows = build_leaderboard(ps, european, entrants, at(99999))
    text = results_csv(rows, european)
    assert text.startswith(separator.join(["Place", "Bib", "Name"]))
    table = list(csv.reader(io.StringIO(text), delimiter=separator))
    assert table == list(csv.reader(io.StringIO(results_csv(rows, COURSE))))
    assert table[1][5] == "Tjalve, Oslo"


def test_clock__a_time_before_its_start_keeps_its_sign() -> None:
    # An unknown bib photographed at the finish before the gun (a runner warming up through
    # it) has a negative time: it reads as one (100 s before: -0:01:40.0, was -1:58:20.0).
    assert clock(-100.0) == "-0:01:40.0"
    assert clock(-0.04) == "0:00:00.0"
    assert clock(-3725.46) == "-1:02:05.4"


@PROPERTY
@given(st.integers(-36_000_000, 36_000_000))
def test_clock__reads_back_as_the_time_truncated_to_the_tenth(ms: int) -> None:
    shown = clock(ms / 1000)
    hours, minutes, seconds = shown.lstrip("-").split(":")
    tenths_shown = (int(hours) * 3600 + int(minutes) * 60) * 10 + round(float(seconds) * 10)
    assert shown.startswith("-") == (ms <= -100)
    assert tenths_shown == abs(ms) // 100


def test_results_csv__an_unknown_bib_is_not_published() -> None:
    # A number read but not in the start list is the officials' to settle (its row in
    # leaderboard.parquet, its review item): imported as a finisher "Unknown #999", a results
    # website would publish a runner who is not registered.
    ps = [passage("101", "start", 10), passage("101", "finish", 3010)]
    ps += [passage("999", "finish", 2900, needs_review=True, review_reason="unknown_bib")]
    rows = build_leaderboard(ps, COURSE, [athlete("101")], at(99999))
    assert "999" in [r["bib"] for r in rows]
    table = list(csv.reader(io.StringIO(results_csv(rows, COURSE))))
    assert [(r[0], r[1], r[7]) for r in table[1:]] == [("1", "101", "FINISHED")]


def test_results_csv__a_split_is_headed_by_its_name_and_distance_once() -> None:
    # The demo's stations are named by their distance ("3.3 km" at km 3.333): the header is
    # the name alone, as the dashboard shows it, not "3.3 km (3.333 km)".
    named = (COURSE.stations[0], replace(COURSE.stations[1], name="Holmenkollen"))
    course = replace(COURSE, stations=(*named, COURSE.stations[2]))
    assert split_label("3.3 km", 3.333) == "3.3 km"
    assert split_label("Holmenkollen", 5.0) == "Holmenkollen (5 km)"
    assert results_csv([], course).splitlines()[0].split(",")[8] == "Holmenkollen (5 km)"


def test_results_csv__text_a_spreadsheet_would_run_is_written_as_text() -> None:
    # A start list's name "=HYPERLINK(...)" went into results.csv as it was: opened in a
    # spreadsheet it is a formula (CSV injection). OWASP's form: a ' before the cell's first
    # character, for the cells that start as a formula does; the times ("-0:01:40.0") are ours.
    evil = replace(athlete("101", category="+M40"), name='=HYPERLINK("http://x","y")', club="@x")
    tab = replace(athlete("102", category="-"), name="\tTab", wave="A")
    ps = [passage("101", "start", 10), passage("101", "finish", 3010)]
    named = (COURSE.stations[0], replace(COURSE.stations[1], name="=cp"), COURSE.stations[2])
    course = replace(COURSE, stations=named)
    rows = build_leaderboard(ps, course, [evil, tab], at(99999))
    table = list(csv.reader(io.StringIO(results_csv(rows, course))))
    assert table[0][8] == "'=cp (5 km)"
    assert table[1][2:6] == ['\'=HYPERLINK("http://x","y")', "", "'+M40", "'@x"]
    assert table[2][2:5] == ["'\tTab", "", "'-"]


def test_write_csv__excel_reads_it_as_utf8(tmp_path: Path) -> None:
    # Excel on Windows opens a CSV without a byte-order mark in the ANSI code page: "Åse
    # Ødegård" read "Ã…se Ã˜degÃ¥rd". With the BOM (utf-8-sig) it reads UTF-8; Python's csv
    # through utf-8-sig and pandas read the same header and names.
    ps = [passage("101", "start", 10), passage("101", "finish", 3010)]
    rows = build_leaderboard(ps, COURSE, [athlete("101", name="Åse Ødegård")], at(99999))
    path = write_csv(rows, str(tmp_path / "results.csv"), COURSE)
    raw = Path(path).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and raw.count(codecs.BOM_UTF8) == 1
    with open(path, encoding="utf-8-sig", newline="") as f:
        assert [(r["Place"], r["Name"]) for r in csv.DictReader(f)] == [("1", "Åse Ødegård")]
    assert list(pd.read_csv(path)["Name"]) == ["Åse Ødegård"]


def test_results_csv__a_gap_reads_as_the_dashboard_shows_it() -> None:
    # results.csv wrote the gap "0:01:43.7" where the dashboard showed "+0:01:43.7": timers
    # print a gap behind the leader with its "+", one text in both; the leader's is blank.
    ps = [passage("101", "start", 0), passage("101", "finish", 3000)]
    ps += [passage("102", "start", 0), passage("102", "finish", 3103.75)]
    rows = build_leaderboard(ps, COURSE, [athlete("101"), athlete("102")], at(99999))
    table_csv = list(csv.DictReader(io.StringIO(results_csv(rows, COURSE))))
    assert [r["Gap"] for r in table_csv] == ["", "+0:01:43.7"]
    race = Race(name="Oslo 10k", timezone="Europe/Oslo", stations=())
    assert list(table(pd.DataFrame(rows), race)["Gap"]) == ["", "+0:01:43.7"]
    assert (gap(None), gap(0.0), gap(103.79)) == ("", "", "+0:01:43.7")
