"""Course (YAML) and start list (CSV): what parses, and the one-line errors an organiser sees.

Every ConfigError must name the file and the line, so an organiser can fix the file
without reading code; the CLI prints the message as it is and exits 2.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import COURSE_YAML, PROPERTY, START_LIST_CSV, athlete, make_course
from transforms.course import (
    Athlete,
    ConfigError,
    Settings,
    check_waves,
    load_course,
    load_start_list,
    parse_start_list,
)

RACE = 'race: {id: x, timezone: Europe/Oslo, start: "2026-05-01T10:00:00+02:00"}\n'
TWO_STATIONS = "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10}\n"

# (case, course text, line the message must name, what it must say)
BAD_COURSES = {
    "bad_csv_separator": (
        RACE + TWO_STATIONS + "settings:\n  csv_separator: '|'\n",
        6,
        "csv_separator must be ',', ';' or tab, not '|'",
    ),
    "duplicate_station_id": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: start, km: 5}\n",
        4,
        "duplicate station id 'start'",
    ),
    "stations_out_of_km_order": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: cp1, km: 5}\n"
        "  - {id: cp2, km: 3}\n  - {id: finish, km: 10}\n",
        5,
        "station 'cp2' (km 3.0) is not after 'cp1'",
    ),
    # Without its start line the chip times ran from the first checkpoint (the demo's winner
    # 0:23:23.1 instead of 0:34:47.7), exit 0; a start at km 1 or -1 was taken too.
    "first_station_not_the_start": (
        RACE + "stations:\n  - {id: cp1, km: 3.5}\n  - {id: finish, km: 10}\n",
        3,
        "the first station 'cp1' is at km 3.5; the start comes first, at km 0",
    ),
    "start_at_minus_one_km": (
        RACE + "stations:\n  - {id: start, km: -1.0}\n  - {id: finish, km: 10}\n",
        3,
        "the first station 'start' is at km -1.0; the start comes first, at km 0",
    ),
    "missing_race_start": (
        "race:\n  id: x\n  timezone: Europe/Oslo\n" + TWO_STATIONS,
        1,
        "race needs 'start'",
    ),
    "bad_timezone": (
        'race:\n  id: x\n  timezone: Europe/Olso\n  start: "2026-05-01T10:00:00+02:00"\n'
        + TWO_STATIONS,
        3,
        "unknown timezone 'Europe/Olso'",
    ),
    "invalid_yaml": (
        RACE + "stations:\n  - id: start\n    km: 0\n  - id: finish\n\tkm: 10\n",
        6,
        "not valid YAML",
    ),
    # A close on the wrong day made every athlete out on the course dnf from the gun on.
    "close_before_start": (
        'race:\n  id: x\n  timezone: Europe/Oslo\n  start: "2026-05-01T10:00:00+02:00"\n'
        '  close: "2026-04-01T13:00:00+02:00"\n' + TWO_STATIONS,
        5,
        "race.close (2026-04-01 11:00 UTC) is not after the start of the race",
    ),
    "close_before_a_wave": (
        RACE.replace("}", ', close: "2026-05-01T10:30:00+02:00"}')
        + TWO_STATIONS
        + 'waves:\n  - {id: A, start: "2026-05-01T10:00:00+02:00"}\n'
        + '  - {id: B, start: "2026-05-01T10:45:00+02:00"}\n',
        1,
        "race.close (2026-05-01 08:30 UTC) is not after the start of wave B",
    ),
    # An offset that is not the race's timezone's (last winter's +01:00 copied into a May
    # race) moved the gun, and every gun time, by an hour without a word.
    "start_offset_not_the_timezones": (
        'race:\n  id: x\n  timezone: Europe/Oslo\n  start: "2026-05-01T10:00:00+01:00"\n'
        + TWO_STATIONS,
        4,
        "race.start '2026-05-01T10:00:00+01:00' has UTC offset +01:00, but Europe/Oslo is at "
        "+02:00 then (write +02:00, or the time in UTC with Z)",
    ),
    "wave_offset_not_the_timezones": (
        RACE
        + TWO_STATIONS
        + 'waves:\n  - {id: A, start: "2026-05-01T10:00:00+02:00"}\n'
        + '  - {id: B, start: "2026-05-01T10:30:00+01:00"}\n',
        7,
        "wave 'B' start '2026-05-01T10:30:00+01:00' has UTC offset +01:00, but Europe/Oslo",
    ),
    # Last winter's course copied whole: the race's start, read first, is named first.
    "winter_course_copied_whole": (
        'race:\n  id: x\n  timezone: Europe/Oslo\n  start: "2026-05-01T10:00:00+01:00"\n'
        + TWO_STATIONS
        + 'waves:\n  - {id: A, start: "2026-05-01T10:00:00+01:00"}\n',
        4,
        "race.start '2026-05-01T10:00:00+01:00' has UTC offset +01:00",
    ),
    "winter_close_with_summer_offset": (
        'race: {id: x, timezone: Europe/Oslo, start: "2026-01-10T10:00:00+01:00",\n'
        '       close: "2026-01-10T16:00:00+02:00"}\n' + TWO_STATIONS,
        2,
        "race.close '2026-01-10T16:00:00+02:00' has UTC offset +02:00, but Europe/Oslo is at "
        "+01:00 then",
    ),
    "unknown_setting": (
        RACE + TWO_STATIONS + "settings:\n  merge_window_s: 15\n  burst_gap: 2\n",
        7,
        "unknown setting 'burst_gap'",
    ),
    # Each was taken, exit 0: a radius of 0 or less placed no photo by GPS there (a demo
    # race's 71 GPS-placed photos rejected unknown_station); a camera listed twice put its
    # photos at the first station listing it.
    "radius_not_above_0": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, lat: 59.9, "
        "lon: 10.7, radius_m: -5}\n",
        4,
        "station 'finish' radius_m must be above 0, not -5",
    ),
    "camera_at_two_stations": (
        RACE + "stations:\n  - {id: start, km: 0, cameras: [SN1]}\n"
        "  - {id: finish, km: 10, cameras: [SN2, SN1]}\n",
        4,
        "camera 'SN1' is listed for 'start' and 'finish'",
    ),
    # Three days made every photo of the station bad_exif, blaming the photos' EXIF.
    "clock_offset_over_a_day": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "clock_offset_s: 259200}\n",
        4,
        "station 'finish' clock_offset_s 259200 is more than a day (86400 s)",
    ),
    # A camera of its own clock (a phone beside the finish's DSLR): a mapping under cameras.
    "camera_without_serial_or_name": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [{clock_offset_s: -2}]}\n",
        4,
        "station 'finish': a camera mapping needs serial or name",
    ),
    "camera_with_serial_and_name": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [{serial: SN1, name: Apple iPhone 15}]}\n",
        4,
        "station 'finish': a camera mapping has serial or name, not both",
    ),
    "camera_unknown_key": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [{serial: SN1, offset: -2}]}\n",
        4,
        "station 'finish': camera 'SN1': unknown key 'offset' (serial or name, clock_offset_s)",
    ),
    "camera_clock_offset_not_a_number": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [{serial: SN1, clock_offset_s: fast}]}\n",
        4,
        "camera 'SN1': clock_offset_s must be a number, not 'fast'",
    ),
    "camera_clock_offset_over_a_day": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [{name: Apple iPhone 15, clock_offset_s: 90000}]}\n",
        4,
        "camera 'Apple iPhone 15' clock_offset_s 90000 is more than a day (86400 s)",
    ),
    "camera_neither_text_nor_mapping": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, cameras: [[SN1]]}\n",
        4,
        "station 'finish': a camera is a serial or name, or a mapping of serial or name and "
        "clock_offset_s, not '['SN1']'",
    ),
    "camera_twice_at_one_station": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, "
        "cameras: [SN1, {serial: SN1, clock_offset_s: 1}]}\n",
        4,
        "camera 'SN1' is listed twice for 'finish'",
    ),
    # A wave named twice: its athletes were timed from the first wave's start, silently.
    "duplicate_wave_id": (
        RACE + TWO_STATIONS + 'waves:\n  - {id: A, start: "2026-05-01T10:00:00+02:00"}\n'
        '  - {id: A, start: "2026-05-01T10:15:00+02:00"}\n',
        7,
        "duplicate wave id 'A' (first on line 6)",
    ),
    # A misspelt key was ignored, silently: every photo of the station timed without its
    # clock offset, no close, chip ranking instead of the gun's. Keys far from any known
    # one (an organiser's notes) are still ignored.
    "misspelt_station_key": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: finish, km: 10, clock_offset: -2.5}\n",
        4,
        "station 'finish': unknown key 'clock_offset' (did you mean clock_offset_s?)",
    ),
    "misspelt_race_key": (
        'race:\n  id: x\n  timezone: Europe/Oslo\n  start: "2026-05-01T10:00:00+02:00"\n'
        '  closes: "2026-05-01T16:00:00+02:00"\n' + TWO_STATIONS,
        5,
        "race: unknown key 'closes' (did you mean close?)",
    ),
    "misspelt_section": (
        RACE + TWO_STATIONS + "setting:\n  rank_by: gun\n",
        5,
        "unknown key 'setting' (did you mean settings?)",
    ),
    "misspelt_wave_key": (
        RACE + TWO_STATIONS + 'waves:\n  - {id: A, starts: "2026-05-01T10:00:00+02:00", '
        'start: "2026-05-01T10:00:00+02:00"}\n',
        6,
        "wave 'A': unknown key 'starts' (did you mean start?)",
    ),
    # Photo folders are matched to station ids ignoring case: 'Finish' and 'finish' are one.
    "station_ids_differ_in_case_only": (
        RACE + "stations:\n  - {id: start, km: 0}\n  - {id: Start, km: 5}\n",
        4,
        "station id 'Start' differs from 'start' only in case",
    ),
}


# Messages that say the problem and the file but not (yet) where in the file.
def _error(load: Callable[[str], object], path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message, "the CLI prints the message as one line"
    return message


def test_load_course__valid_course_parses_into_stations_waves_and_utc_start(
    write_file: Callable[..., str],
) -> None:
    assert load_course(write_file("course.yaml", COURSE_YAML)) == make_course()


def test_load_course__a_camera_may_have_its_own_clock_offset(
    write_file: Callable[..., str],
) -> None:
    # A phone (its clock 1.5 s fast) and a DSLR (0.4 s slow) at the finish, a plain entry
    # beside them: each photo's clock is corrected by its camera's own offset where the course
    # gives one (wherever the photo is placed: by folder, serial or GPS), else its station's.
    text = COURSE_YAML.replace(
        "  - {id: finish, name: Finish, km: 10.0, lat: 59.94, lon: 10.79}",
        "  - {id: finish, name: Finish, km: 10.0, lat: 59.94, lon: 10.79, clock_offset_s: 1,\n"
        "     cameras: [SN-DSLR, {serial: SN-X, clock_offset_s: 0.4},\n"
        "               {name: Apple iPhone 15, clock_offset_s: -1.5}]}",
    )
    course = load_course(write_file("course.yaml", text))
    finish = course.station("finish")
    assert finish.cameras == ("SN-DSLR", "SN-X", "Apple iPhone 15")
    assert finish.camera_clock_offsets == (("SN-X", 0.4), ("Apple iPhone 15", -1.5))
    offsets = [
        course.photo_clock_offset_s(station, serial, name)
        for station, serial, name in (
            ("finish", "SN-X", "Canon EOS R5"),
            ("finish", "F2GX", "Apple iPhone 15"),
            ("finish", "SN-DSLR", "Nikon Z 6II"),
            ("finish", None, None),
            ("cp1", "SN1234", None),
            ("start", None, "Apple iPhone 15"),  # the phone moved to the start: its own clock
        )
    ]
    assert offsets == [0.4, -1.5, 1.0, 1.0, -2.5, -1.5]


def test_load_course__keys_far_from_any_known_one_are_notes(
    write_file: Callable[..., str],
) -> None:
    text = COURSE_YAML.replace("race: {", "description: spring race\nrace: {organiser: IL, ")
    assert load_course(write_file("course.yaml", text)) == make_course()


def test_load_course__times_in_utc_or_the_timezones_offset_are_the_same_gun(
    write_file: Callable[..., str],
) -> None:
    # UTC is always a way to write a time; so is the zone's own offset, unquoted too (YAML's
    # timestamp).
    for start in (
        '"2026-05-01T08:00:00Z"',
        '"2026-05-01T08:00:00+00:00"',
        "2026-05-01T10:00:00+02:00",
    ):
        text = f"race: {{id: x, timezone: Europe/Oslo, start: {start}}}\n" + TWO_STATIONS
        course = load_course(write_file("course.yaml", text))
        assert course.start == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    # A course in UTC (the cameras' clocks) takes the start in the race's own local time.
    text = 'race: {id: x, timezone: UTC, start: "2026-05-01T10:00:00+02:00"}\n' + TWO_STATIONS
    assert load_course(write_file("utc.yaml", text)).start == datetime(2026, 5, 1, 8, tzinfo=UTC)


def test_load_course__settings_override_the_defaults(write_file: Callable[..., str]) -> None:
    text = RACE + TWO_STATIONS + "settings: {merge_window_s: 15, near_duplicate_bits: 6}\n"
    course = load_course(write_file("course.yaml", text))
    assert course.settings == Settings(merge_window_s=15.0, near_duplicate_bits=6)


@pytest.mark.parametrize(
    "setting",
    ["merge_window_s: 0", "burst_gap_s: -1", "health_window_s: 0", "health_window_s: -300"],
)
def test_load_course__a_window_or_gap_of_no_length_is_a_config_error(
    write_file: Callable[..., str], setting: str
) -> None:
    # Beam's windows refuse them: a run ended with Beam's traceback, not the one line.
    path = write_file("course.yaml", RACE + TWO_STATIONS + f"settings: {{{setting}}}\n")
    name = setting.split(":")[0]
    assert f"settings: {name} must be above 0" in _error(load_course, path)


def test_load_course__time_limit_from_each_wave_start(write_file: Callable[..., str]) -> None:
    # race.close is one clock time: wave B, 30 min after A, had 30 min less. A time limit
    # counts from each wave's start; with race.close too, the earlier of the two closes.
    waves = 'waves: [{id: A, start: "2026-05-01T10:00:00+02:00"}, '
    waves += '{id: B, start: "2026-05-01T10:30:00+02:00"}]\n'
    text = RACE + TWO_STATIONS + waves + "settings: {time_limit_s: 7200}\n"
    course = load_course(write_file("course.yaml", text))
    assert course.settings.time_limit_s == 7200.0
    assert course.close_of("A") == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert course.close_of("B") == datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    assert course.close_of(None) == course.close_of("A")  # no wave: the race's start
    closing = text.replace("Europe/Oslo,", 'Europe/Oslo, close: "2026-05-01T12:15:00+02:00",')
    course = load_course(write_file("closing.yaml", closing))
    assert course.close_of("B") == datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    assert course.closes() == (course.close_of("A"), course.close_of("B"))
    assert load_course(write_file("none.yaml", RACE + TWO_STATIONS)).closes() == ()


def test_load_course__start_crossing_and_same_place_are_settings(
    write_file: Callable[..., str],
) -> None:
    # A big city race's back crosses the start long after 15 minutes: until then (after its
    # last wave's gun) a photo at a loop's line may still be a start.
    waves = 'waves: [{id: A, start: "2026-05-01T10:00:00+02:00"}, '
    waves += '{id: B, start: "2026-05-01T10:30:00+02:00"}]\n'
    text = RACE + TWO_STATIONS + waves + "settings: {start_crossing_s: 2400, same_place_m: 25}\n"
    course = load_course(write_file("course.yaml", text))
    assert (course.settings.start_crossing_s, course.settings.same_place_m) == (2400.0, 25.0)
    assert course.passing_window("start")[1] == datetime(2026, 5, 1, 9, 10, tzinfo=UTC)
    default = load_course(write_file("default.yaml", RACE + TWO_STATIONS + waves))
    assert default.passing_window("start")[1] == datetime(2026, 5, 1, 8, 45, tzinfo=UTC)
    assert (default.settings.start_crossing_s, default.settings.same_place_m) == (900.0, 1.0)


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("start_crossing_s: -60", "settings: start_crossing_s must be at least 0, not -60"),
        ("same_place_m: -1", "settings: same_place_m must be at least 0, not -1"),
        ("same_place_m: near", "settings: same_place_m must be a number"),
    ],
)
def test_load_course__a_negative_start_crossing_or_same_place_is_refused(
    write_file: Callable[..., str], setting: str, problem: str
) -> None:
    # Below 0, no photo at the nearest station's distance was at it: every photo placed by
    # GPS had no station; a start that closes before its gun took every start photo away.
    path = write_file("course.yaml", RACE + TWO_STATIONS + f"settings: {{{setting}}}\n")
    assert problem in _error(load_course, path)


def test_status_changes__each_start_and_each_close_in_order(
    write_file: Callable[..., str],
) -> None:
    # Without a photo arriving, statuses change as each wave's start closes (waiting: dns)
    # and as the course closes for it (running: dnf); a live run publishes again at each.
    waves = 'waves: [{id: A, start: "2026-05-01T10:00:00+02:00"}, '
    waves += '{id: B, start: "2026-05-01T10:30:00+02:00"}]\n'
    text = RACE + TWO_STATIONS + waves + "settings: {time_limit_s: 7200}\n"
    course = load_course(write_file("course.yaml", text))
    assert course.status_changes() == tuple(
        datetime(2026, 5, 1, hour, minute, tzinfo=UTC)
        for hour, minute in ((8, 15), (8, 45), (10, 0), (10, 30))
    )


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("time_limit_s: 0", "time_limit_s must be at least 60 seconds"),
        ("time_limit_s: 6", "time_limit_s must be at least 60 seconds (6 hours: 21600), not 6"),
        ("time_limit_s: six hours", "time_limit_s must be a number"),
    ],
)
def test_load_course__a_time_limit_that_is_no_length_of_race_is_refused(
    write_file: Callable[..., str], setting: str, problem: str
) -> None:
    path = write_file("course.yaml", RACE + TWO_STATIONS + f"settings: {{{setting}}}\n")
    assert problem in _error(load_course, path)


def test_load_course__a_bom_is_tolerated(write_file: Callable[..., str]) -> None:
    path = write_file("course.yaml", "\ufeff".encode() + COURSE_YAML.encode())
    assert load_course(path) == make_course()


@pytest.mark.parametrize("case", sorted(BAD_COURSES))
def test_load_course__error_names_the_file_and_the_problem(
    write_file: Callable[..., str], case: str
) -> None:
    text, _, problem = BAD_COURSES[case]
    path = write_file("course.yaml", text)
    message = _error(load_course, path)
    assert message.startswith(f"{path}: ")
    assert problem in message


@pytest.mark.parametrize("case", sorted(BAD_COURSES))
def test_load_course__error_names_the_line(write_file: Callable[..., str], case: str) -> None:
    text, line, _ = BAD_COURSES[case]
    message = _error(load_course, write_file("course.yaml", text))
    assert f"line {line}:" in message


def test_load_start_list__valid_list_parses_every_column(write_file: Callable[..., str]) -> None:
    athletes = load_start_list(write_file("startlist.csv", START_LIST_CSV))
    assert athletes == (
        Athlete("101", "Ingrid Berg", "F35", "F", "Tjalve", "A"),
        Athlete("102", "Ola Hansen", "M40", "M", "", "A"),
        Athlete("103", "Kari Lie", "F35", "F", "BUL", "B"),
    )


def test_load_start_list__only_bib_and_name_are_required(write_file: Callable[..., str]) -> None:
    path = write_file("startlist.csv", "name,bib\n Ola Hansen , 7 \n")
    assert load_start_list(path) == (Athlete("7", "Ola Hansen"),)


def test_load_start_list__headers_in_any_case(write_file: Callable[..., str]) -> None:
    # A spreadsheet's export heads its columns "Bib", "Name", "Category": read as the
    # lower-case ones (a "Category" beside "bib,name" was ignored: no category places).
    path = write_file("startlist.csv", "Bib,Name,Category, GENDER ,Notes\n7,Ola Hansen,M40,m,x\n")
    assert load_start_list(path) == (Athlete("7", "Ola Hansen", "M40", "M"),)


def test_load_start_list__first_and_last_name_are_joined_into_name(
    write_file: Callable[..., str],
) -> None:
    # Registration systems export "First Name,Last Name", no "name": the list was refused
    # ("missing column 'name'"); the parts are joined, first then last, into the name shown.
    text = "Bib,First Name,Last_Name,Category\n7,Ola,Hansen,M40\n8,,Madonna,F35\n"
    path = write_file("startlist.csv", text)
    assert load_start_list(path) == (
        Athlete("7", "Ola Hansen", "M40"),
        Athlete("8", "Madonna", "F35"),
    )
    # A name column, where there is one, is the name.
    path = write_file("named.csv", "bib,name,FirstName,lastname\n7,Ola H.,Ola,Hansen\n")
    assert load_start_list(path)[0].name == "Ola H."


def test_load_start_list__first_or_last_name_alone_is_refused(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "bib,first_name,club\n7,Ola,IL Tyrving\n")
    message = _error(load_start_list, path)
    assert message.startswith(f"{path}: line 1: ")
    assert "first_name without last_name" in message


def test_load_start_list__a_bom_from_a_spreadsheet_is_tolerated(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "\ufeff".encode() + START_LIST_CSV.encode())
    assert [a.bib for a in load_start_list(path)] == ["101", "102", "103"]


@pytest.mark.parametrize(("mark", "encoding"), [("", "utf-16"), ("\ufeff", "utf-16-be")])
def test_load_start_list__utf16_with_its_byte_order_mark_is_read(
    write_file: Callable[..., str], mark: str, encoding: str
) -> None:
    # A spreadsheet's "Unicode text" (Python's utf-16 writes the mark, little-endian here):
    # it was "not UTF-8 text (byte 0)".
    path = write_file("startlist.csv", (mark + START_LIST_CSV).encode(encoding))
    assert load_start_list(path) == load_start_list(write_file("utf8.csv", START_LIST_CSV))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        # It said "not UTF-8 text (byte 11)": neither the line nor what the byte is.
        (
            "bib,name\n1,Åse Berg\n".encode("cp1252"),
            "line 2: not UTF-8 text (byte 11, 0xC5, 'Å' in Windows-1252): save it as UTF-8",
        ),
        ("bib,name\n1,Åse Berg\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
    ],
    ids=["windows_1252", "utf16_without_bom"],
)
def test_load_start_list__other_text_says_what_it_is_and_how_to_save_it(
    write_file: Callable[..., str], content: bytes, problem: str
) -> None:
    path = write_file("startlist.csv", content)
    message = _error(load_start_list, path)
    assert message.startswith(f"{path}: {problem}") and "'CSV UTF-8'" in message


@pytest.mark.parametrize("separator", [";", "\t"])
def test_load_start_list__columns_separated_as_a_spreadsheet_saves_them_are_read(
    write_file: Callable[..., str], separator: str
) -> None:
    # Excel's "CSV" where the list separator is ';' (Norway, Germany; its "CSV UTF-8" too) and
    # its "Unicode text" (tabs) were refused ("columns are separated by ';', expected ','"); a
    # comma in a name is then no separator.
    text = START_LIST_CSV.replace(",", separator) + f"104{separator}Hansen, Ola\n"
    expected = load_start_list(write_file("commas.csv", START_LIST_CSV + '104,"Hansen, Ola"\n'))
    assert load_start_list(write_file("startlist.csv", text)) == expected


def test_load_start_list__duplicate_bib_names_both_lines(write_file: Callable[..., str]) -> None:
    path = write_file("startlist.csv", "bib,name\n101,Ingrid Berg\n102,Ola Hansen\n101,Kari Lie\n")
    message = _error(load_start_list, path)
    assert message.startswith(f"{path}: line 4: duplicate bib 101")
    assert "line 2" in message


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("bib,name\n101,Ingrid Berg\n102,  \n", 3, "empty name for bib 102"),
        ("bib,name\n101,Ingrid Berg\n,Ola Hansen\n", 3, "empty bib"),
        # A database's or pandas' number column: the athlete was dns, their photos unknown_bib.
        ("bib,name\n101.0,Ingrid Berg\n", 2, "bib 101.0 is a number with decimals"),
        ("number,name\n101,Ingrid Berg\n", 1, "missing column 'bib'"),
        # The quote ran on to the file's end: bib 102 was lost, 101 named "Ingrid\n102,Ola".
        ('bib,name\n100,Kari Lie\n101,"Ingrid\n102,Ola\n', 4, "bib 101: a value runs over"),
        # On the last line it took the rest of the line as the name, with or without a line
        # break after it.
        ('bib,name,category\n100,Kari Lie,F35\n110,"Unclosed quote,M40\n', 3, "bib 110: a value"),
        ('bib,name,category\n100,Kari Lie,F35\n110,"Unclosed quote,M40', 3, "bib 110: a value"),
        # Ignored: a comma in a name, unquoted, shifted the category into the gender.
        (
            "bib,name,category,gender\n101,Hansen, Ola,M40,M\n",
            2,
            "bib 101: more values than the 4 columns ('M' beyond the last",
        ),
        # Ignored, the misspelt column left every athlete without a category: no places.
        (
            "bib,name,categroy\n101,Ingrid Berg,F35\n",
            1,
            "unknown column 'categroy' (did you mean category?)",
        ),
        ("Bib,Name,Gender,Gender\n101,Ingrid Berg,F,M\n", 1, "column 'gender' twice"),
    ],
    ids=[
        "empty_name",
        "empty_bib",
        "bib_with_decimals",
        "missing_bib_column",
        "unclosed_quote",
        "unclosed_quote_on_the_last_line",
        "unclosed_quote_on_the_last_line_without_its_line_break",
        "extra_value",
        "misspelt_column",
        "column_twice",
    ],
)
def test_load_start_list__error_names_the_file_the_line_and_the_problem(
    write_file: Callable[..., str], text: str, line: int, problem: str
) -> None:
    path = write_file("startlist.csv", text)
    message = _error(load_start_list, path)
    assert message.startswith(f"{path}: line {line}: ")
    assert problem in message


def test_load_start_list__a_spreadsheets_trailing_commas_are_no_values(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "bib,name\n101,Ingrid Berg,,\n102,Ola Hansen, \n")
    assert [a.bib for a in load_start_list(path)] == ["101", "102"]


# Start-list rows as written by a spreadsheet: distinct bibs, a name (commas and quotes
# included, which it quotes), a category.
NAMES = (
    st.text(st.characters(codec="utf-8", exclude_categories=["C", "Zl", "Zp"]), min_size=1)
    .filter(str.strip)
    .map(lambda name: name.replace('"', "'"))
)
ROWS = st.lists(
    st.tuples(st.integers(1, 99_999), NAMES, st.sampled_from(["", "F35", "M40"])),
    min_size=1,
    max_size=6,
    unique_by=lambda row: row[0],
)


def start_list(rows: list[tuple[int, str, str]], ending: str, last_break: bool) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=ending).writerows([("bib", "name", "category"), *rows])
    return out.getvalue() if last_break else out.getvalue().removesuffix(ending)


@PROPERTY
@given(ROWS, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_parse_start_list__rows_as_a_spreadsheet_writes_them_are_read_as_written(
    rows: list[tuple[int, str, str]], ending: str, last_break: bool
) -> None:
    athletes = parse_start_list(start_list(rows, ending, last_break))
    assert [(a.bib, a.name, a.category) for a in athletes] == [
        (str(bib), name.strip(), category) for bib, name, category in rows
    ]


@PROPERTY
@given(ROWS, st.data(), st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_parse_start_list__a_row_with_an_unclosed_quote_or_an_extra_value_is_refused(
    rows: list[tuple[int, str, str]], data: st.DataObject, ending: str, last_break: bool
) -> None:
    # Any row, the last one included: there the quote took the rest of the line as the
    # name, and values beyond the header's were ignored on every row.
    bad = data.draw(st.integers(0, len(rows) - 1))
    bib, name, category = rows[bad]
    text = start_list(rows, ending, last_break).splitlines(keepends=True)
    extra = data.draw(st.booleans())
    written = text[bad + 1].rstrip("\r\n")
    broken = f"{written},x" if extra else f'{bib},"{name.replace(",", ";")},{category}'
    text[bad + 1] = broken + text[bad + 1][len(written) :]
    with pytest.raises(ConfigError) as caught:
        parse_start_list("".join(text), "s.csv")
    message = str(caught.value)
    if extra:
        assert message.startswith(f"s.csv: line {bad + 2}: bib {bib}: more values than the 3 ")
    else:  # the value ends at the next quote, or at the file's end
        assert f"bib {bib}: a value runs over several lines" in message
        assert bad + 1 < len(rows) or message.startswith(f"s.csv: line {bad + 2}: ")


def test_check_waves__every_listed_wave_exists() -> None:
    check_waves(make_course(), (athlete("1", wave="A"), athlete("2", wave="B"), athlete("3")), "x")


def test_check_waves__wave_not_in_course_names_the_file_bib_and_wave() -> None:
    with pytest.raises(ConfigError) as caught:
        check_waves(make_course(), (athlete("1"), athlete("2", wave="C")), "startlist.csv")
    message = str(caught.value)
    assert message.startswith("startlist.csv: ")
    assert "bib 2" in message and "wave 'C'" in message


def test_check_waves__wave_not_in_course_names_the_line(write_file: Callable[..., str]) -> None:
    path = write_file("startlist.csv", "bib,name,wave\n1,Ola Hansen,A\n2,Kari Lie,C\n")
    with pytest.raises(ConfigError, match="line 3"):
        check_waves(make_course(), load_start_list(path), path)


def test_load_start_list__gender_is_one_group_whatever_its_case(
    write_file: Callable[..., str],
) -> None:
    # "F", "f" and " F " from three people typing into one sheet are one gender: as written,
    # each was its own group with its own places (two "first woman").
    path = write_file("startlist.csv", "bib,name,gender\n1,A,F\n2,B,f\n3,C, F \n4,D,\n")
    assert [a.gender for a in load_start_list(path)] == ["F", "F", "F", ""]


def test_load_start_list__categories_differing_only_in_case_name_both_lines(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "bib,name,category\n1,A,M40\n2,B, M40 \n3,C,m40\n")
    message = _error(load_start_list, path)
    assert message.startswith(
        f"{path}: line 4: bib 3: category 'm40' differs from 'M40' (line 2) only in case"
    )


def test_load_start_list__bibs_equal_as_numbers_name_both_lines(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "bib,name\n007,A\n101,B\n7,C\n")
    message = _error(load_start_list, path)
    assert message.startswith(f"{path}: line 4: bib 7 is bib 007 (line 2) as a number")


def test_load_start_list__bibs_with_letters_are_compared_as_written(
    write_file: Callable[..., str],
) -> None:
    path = write_file("startlist.csv", "bib,name\nA7,A\nA07,B\n7,C\n")
    assert [a.bib for a in load_start_list(path)] == ["A7", "A07", "7"]
