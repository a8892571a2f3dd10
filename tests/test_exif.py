"""EXIF: reading the tags out of real JPEGs, and turning them into a station and a UTC time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import GUN, PROPERTY, at, make_course, photo, write_jpeg
from transforms.course import Course, Station, Wave
from transforms.exif import (
    CAMERA,
    FOLDER,
    GPS,
    MAX_DISTANCE_FROM_RACE,
    TIME,
    WAVES,
    ParseExif,
    distance_m,
    exif_facts,
    parse_taken_at,
    place_in_race,
    resolve_station,
)
from transforms.records import REJECTED, BibSeen, ExifFacts

METRES_PER_DEGREE_LAT = 111_320.0
START_POS = (59.91, 10.75)  # the start station of make_course(), radius 60 m


def north_of(position: tuple[float, float], metres: float) -> tuple[float, float]:
    return (position[0] + metres / METRES_PER_DEGREE_LAT, position[1])


def facts_of(path: Path) -> ExifFacts:
    with Image.open(path) as image:
        return exif_facts(image)


# --- exif_facts -------------------------------------------------------------------------------


def test_exif_facts__copies_time_offset_serial_camera_and_gps(tmp_path: Path) -> None:
    path = write_jpeg(
        tmp_path / "a.jpg",
        datetime_original="2026:05:01 10:42:07",
        subsec="25",
        offset="+02:00",
        serial="SN1234",
        make="Sony",
        model="ILCE-7M3",
        gps=(59.925, 10.77),
    )
    facts = facts_of(path)
    assert replace(facts, gps=None) == ExifFacts(
        datetime_original="2026:05:01 10:42:07",
        subsec="25",
        offset="+02:00",
        serial="SN1234",
        camera="Sony ILCE-7M3",
    )
    assert facts.gps == pytest.approx((59.925, 10.77), abs=1e-5)


def test_exif_facts__south_and_west_are_negative(tmp_path: Path) -> None:
    path = write_jpeg(
        tmp_path / "a.jpg", datetime_original="2026:05:01 10:00:00", gps=(-33.9, -70.6)
    )
    assert facts_of(path).gps == pytest.approx((-33.9, -70.6), abs=1e-5)


def test_exif_facts__photo_without_exif_has_no_facts(tmp_path: Path) -> None:
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (32, 32)).save(path, "JPEG")
    assert facts_of(path) == ExifFacts()


def test_exif_facts__falls_back_to_datetime_digitized(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg", datetime_digitized="2026:05:01 10:00:01")
    assert facts_of(path).datetime_original == "2026:05:01 10:00:01"


# --- parse_taken_at ---------------------------------------------------------------------------


def exif(when: str = "2026:05:01 10:42:07", subsec: str | None = None, offset: str | None = None):
    return ExifFacts(datetime_original=when, subsec=subsec, offset=offset)


@pytest.mark.parametrize(
    ("subsec", "fraction_us"),
    [("25", 250_000), ("250", 250_000), ("025", 25_000), ("5", 500_000), (None, 0)],
)
def test_parse_taken_at__subseconds_are_a_decimal_fraction(
    subsec: str | None, fraction_us: int
) -> None:
    taken = parse_taken_at(exif(subsec=subsec, offset="+02:00"), "Europe/Oslo")
    assert taken == datetime(2026, 5, 1, 8, 42, 7, fraction_us, tzinfo=UTC)


def test_parse_taken_at__offset_in_the_photo_beats_the_course_timezone() -> None:
    # A camera left on winter time in May: its own offset says what its clock means.
    taken = parse_taken_at(exif(offset="+01:00"), "Europe/Oslo")
    assert taken == datetime(2026, 5, 1, 9, 42, 7, tzinfo=UTC)


@pytest.mark.parametrize("zero", ["Z", "z", "+00:00"])
def test_parse_taken_at__z_is_utc_not_the_course_timezone(zero: str) -> None:
    # ISO 8601's "Z", which some writers put in OffsetTimeOriginal: read as no offset, the
    # photo was timed in Oslo's +02:00, two hours early.
    taken = parse_taken_at(exif("2026:05:01 08:42:07", offset=zero), "Europe/Oslo")
    assert taken == datetime(2026, 5, 1, 8, 42, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "utc"),
    [
        ("2026:05:01 10:42:07", datetime(2026, 5, 1, 8, 42, 7, tzinfo=UTC)),  # CEST, +02:00
        ("2026:01:15 10:42:07", datetime(2026, 1, 15, 9, 42, 7, tzinfo=UTC)),  # CET, +01:00
    ],
    ids=["summer", "winter"],
)
def test_parse_taken_at__without_offset_the_course_timezone_applies_with_dst(
    when: str, utc: datetime
) -> None:
    assert parse_taken_at(exif(when), "Europe/Oslo") == utc


def test_parse_taken_at__clock_offset_corrects_a_fast_camera() -> None:
    taken = parse_taken_at(exif(subsec="50", offset="+02:00"), "Europe/Oslo", clock_offset_s=-2.5)
    assert taken == datetime(2026, 5, 1, 8, 42, 5, tzinfo=UTC)


@pytest.mark.parametrize("when", [None, "", "0000:00:00 00:00:00", "yesterday"])
def test_parse_taken_at__no_usable_datetime_original_raises(when: str | None) -> None:
    with pytest.raises(ValueError):
        parse_taken_at(ExifFacts(datetime_original=when, offset="+02:00"), "Europe/Oslo")


@PROPERTY
@given(
    local=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31)),
    digits=st.text("0123456789", min_size=1, max_size=6),
    offset_quarters=st.integers(-12 * 4, 14 * 4),
    clock_ms=st.integers(-120_000, 120_000),
)
def test_parse_taken_at__equals_the_hand_computed_utc_instant(
    local: datetime, digits: str, offset_quarters: int, clock_ms: int
) -> None:
    minutes = abs(offset_quarters) * 15
    offset = f"{'-' if offset_quarters < 0 else '+'}{minutes // 60:02d}:{minutes % 60:02d}"
    facts = ExifFacts(
        datetime_original=local.strftime("%Y:%m:%d %H:%M:%S"), subsec=digits, offset=offset
    )
    expected = (
        local.replace(microsecond=int(digits.ljust(6, "0")))
        - timedelta(minutes=offset_quarters * 15)
        + timedelta(milliseconds=clock_ms)
    ).replace(tzinfo=UTC)
    taken = parse_taken_at(facts, "America/Chicago", clock_offset_s=clock_ms / 1000)
    assert taken == expected
    assert taken.utcoffset() == timedelta(0)


# --- resolve_station --------------------------------------------------------------------------


def test_resolve_station__folder_wins_over_serial_and_gps(course: Course) -> None:
    facts = ExifFacts(serial="SN1234", gps=START_POS)
    assert resolve_station("finish", facts, course) == ("finish", FOLDER)


@pytest.mark.parametrize("folder", ["Finish", "FINISH", "Finish ", " finish"])
def test_resolve_station__a_folder_named_as_a_station_id_in_other_case(
    course: Course, folder: str
) -> None:
    # A photographer's 'Finish' folder was no station: its photos were placed by serial or
    # GPS, or rejected unknown_station (77 of a 299-photo demo race, 39 athletes dnf). So was
    # one named with a space at its end, as a copy on another computer may leave it.
    assert resolve_station(folder, ExifFacts(), course) == ("finish", FOLDER)


def test_resolve_station__listed_camera_serial_in_an_unknown_folder(course: Course) -> None:
    placed = resolve_station("unsorted", ExifFacts(serial="SN1234", gps=START_POS), course)
    assert placed == ("cp1", CAMERA)


def test_resolve_station__listed_camera_name(course: Course) -> None:
    phones = replace(course.stations[2], cameras=("Google Pixel 8",))
    course = replace(course, stations=(*course.stations[:2], phones))
    assert resolve_station("", ExifFacts(camera="Google Pixel 8"), course) == ("finish", CAMERA)


def test_resolve_station__gps_within_radius(course: Course) -> None:
    placed = resolve_station("unsorted", ExifFacts(gps=north_of(START_POS, 40)), course)
    assert placed == ("start", GPS)


def test_resolve_station__gps_picks_the_nearest_of_overlapping_stations() -> None:
    course = make_course(
        stations=(
            Station("start", "Start", 0.0, *START_POS, radius_m=500),
            Station("cp1", "Near", 1.0, *north_of(START_POS, 300), radius_m=500),
            Station("finish", "Finish", 10.0, 60.5, 11.0),
        )
    )
    assert resolve_station("", ExifFacts(gps=north_of(START_POS, 200)), course) == ("cp1", GPS)
    assert resolve_station("", ExifFacts(gps=north_of(START_POS, 100)), course)[0] == "start"


def test_resolve_station__gps_outside_every_radius_is_no_station(course: Course) -> None:
    assert resolve_station("unsorted", ExifFacts(gps=north_of(START_POS, 80)), course)[0] is None


def test_resolve_station__no_folder_serial_or_gps_is_no_station(course: Course) -> None:
    assert resolve_station("unsorted", ExifFacts(serial="SN9999"), course)[0] is None


def loop_course(wave_b_min: float = 5.0) -> Course:
    """A 10 km loop: start and finish at one place (a cp1 elsewhere), wave B after A."""
    start, cp1, finish = make_course().stations
    loop = (start, cp1, replace(finish, lat=start.lat, lon=start.lon, radius_m=60))
    waves = (Wave("A", GUN), Wave("B", GUN + timedelta(minutes=wave_b_min)))
    return make_course(stations=loop, waves=waves)


def gps_photo_at(minutes: float) -> ExifFacts:
    """A phone's photo by the loop's line, by GPS only, `minutes` after the gun."""
    local = datetime(2026, 5, 1, 10, 0) + timedelta(minutes=minutes)
    return ExifFacts(datetime_original=f"{local:%Y:%m:%d %H:%M:%S}", gps=START_POS)


@pytest.mark.parametrize(
    ("minutes", "station"),
    [(-5, "start"), (8, "start"), (25, "finish"), (90, "finish"), (22, None)],
    ids=["in_the_pen", "wave_b_crossing", "earliest_finish", "finishing", "nobody_there"],
)
def test_resolve_station__a_loops_start_and_finish_by_the_photos_time(
    minutes: float, station: str | None
) -> None:
    # Start and finish share coordinates: a photo placed by GPS was at both, and went to the
    # station whose id sorts first ("finish": every start photo timed as a finish). The time
    # tells them apart: the start from before the gun until 15 min after the last wave's, the
    # finish from the fastest plausible run of 10 km (min_pace 150 s/km: 25 min).
    how = TIME if station else None
    assert resolve_station("", gps_photo_at(minutes), loop_course()) == (station, how)


def test_place_in_race__a_loop_photo_its_time_cannot_place_goes_to_an_official() -> None:
    # Wave B leaves 40 min after A, while A's fastest finish: a photo at the line at 45 min
    # is B's start or A's finish, and the photo is the same for both: an official places it.
    course = loop_course(wave_b_min=40)
    assert resolve_station("", gps_photo_at(45), course)[0] is None
    placed = place_in_race(photo("a", station=None, seconds=None, exif=gps_photo_at(45)), course)
    assert (placed.status, placed.reason) == (REJECTED, "ambiguous_station")
    # Without a time on it, nothing tells: not guessed either.
    assert resolve_station("", ExifFacts(gps=START_POS), course)[0] is None


@pytest.mark.parametrize(
    ("reads", "station"),
    [
        ((("101", 0.95),), "finish"),
        ((("103", 0.95),), "start"),
        ((("101", 0.95), ("102", 0.9)), "finish"),
        ((("101", 0.95), ("103", 0.95)), None),
        ((("101", 0.5),), None),
        ((("999", 0.95),), None),
        ((), None),
    ],
    ids=[
        "wave_a_finishing",
        "wave_b_starting",
        "two_of_wave_a",
        "both_waves",
        "weak",
        "unlisted",
        "no_bib",
    ],
)
def test_place_in_race__a_loop_photo_its_time_cannot_place_is_placed_by_its_athletes_waves(
    reads: tuple[tuple[str, float], ...], station: str | None
) -> None:
    # Wave B leaves 40 min after A: at 45 min a photo at the line is B's start or A's finish.
    # Wave A's runners read surely on it can only be finishing, wave B's only starting.
    course = loop_course(wave_b_min=40)
    waves = {"101": "A", "102": "A", "103": "B"}
    bibs = tuple(BibSeen(bib, confidence, (0, 0, 10, 10)) for bib, confidence in reads)
    shot = photo("a", station=None, seconds=None, exif=gps_photo_at(45), bibs=bibs)
    placed = place_in_race(shot, course, waves)
    if station is None:
        assert (placed.status, placed.reason, placed.station_id) == (
            REJECTED,
            "ambiguous_station",
            None,
        )
    else:
        assert (placed.status, placed.station_id, placed.taken_at) == (None, station, at(45 * 60))
        assert placed.placed_by == WAVES
    assert place_in_race(shot, course).reason == "ambiguous_station"  # no start list: as before


def test_resolve_station__same_place_m_ties_stations_a_few_metres_apart() -> None:
    # A loop's start and finish gantries 10 m apart: a phone's GPS, metres off, took the
    # nearer one (a finish photo at 90 min as a start). With same_place_m: 15 both are at
    # the photo's place, and its time tells them apart.
    course = loop_course()
    start, cp1, finish = course.stations
    apart = (start, cp1, replace(finish, lat=north_of(START_POS, 10)[0]))
    photo_90 = ExifFacts(datetime_original="2026:05:01 11:30:00", gps=north_of(START_POS, 2))
    assert resolve_station("", photo_90, replace(course, stations=apart))[0] == "start"
    settings = replace(course.settings, same_place_m=15.0)
    assert resolve_station("", photo_90, replace(course, stations=apart, settings=settings)) == (
        "finish",
        TIME,
    )


@st.composite
def courses(draw: st.DrawFn) -> Course:
    """2-5 stations within a few km of START_POS, some without a position or a camera."""
    stations = []
    for i in range(draw(st.integers(2, 5))):
        placed = draw(st.booleans()) or i == 0
        position = north_of(START_POS, draw(st.floats(-3000, 3000))) if placed else (None, None)
        stations.append(
            Station(
                f"s{i}",
                f"Station {i}",
                float(i),
                *position,
                radius_m=draw(st.floats(10, 1500)),
                cameras=(f"SN{i}",) if draw(st.booleans()) else (),
            )
        )
    return make_course(stations=tuple(stations))


@PROPERTY
@given(course=courses(), data=st.data())
def test_resolve_station__folder_beats_serial_beats_gps(
    course: Course, data: st.DataObject
) -> None:
    # Taken right at the first station with a position, by a camera that may be listed.
    gps_station = next(s for s in course.stations if s.lat is not None)
    cameras = [c for s in course.stations for c in s.cameras]
    serial = data.draw(st.sampled_from(["SN-unknown", *cameras]))
    facts = ExifFacts(serial=serial, gps=(gps_station.lat, gps_station.lon))
    folder = data.draw(st.sampled_from(course.station_ids))
    assert resolve_station(folder, facts, course)[0] == folder
    by_serial = [s.id for s in course.stations if serial in s.cameras]
    at_one_place = [s for s in course.stations if _at_one_place(s, gps_station)]
    # Stations at one place, the photo without a time: GPS and time cannot tell them apart.
    by_gps = [gps_station.id] if len(at_one_place) == 1 else [None]
    assert resolve_station("unsorted", facts, course)[0] == (by_serial or by_gps)[0]


@PROPERTY
@given(course=courses(), metres=st.floats(-4000, 4000))
def test_resolve_station__gps_gives_the_nearest_station_within_its_radius_or_none(
    course: Course, metres: float
) -> None:
    position = north_of(START_POS, metres)
    distances = {
        s.id: distance_m(position, (s.lat, s.lon)) for s in course.stations if s.lat is not None
    }
    inside = {sid: d for sid, d in distances.items() if d <= course.station(sid).radius_m}
    found = resolve_station("unsorted", ExifFacts(gps=position), course)[0]
    nearest = [sid for sid, d in inside.items() if d - min(inside.values(), default=0) <= 1.0]
    if len(nearest) != 1:  # none, or several at one distance: no time on the photo to tell
        assert found is None
    else:
        assert found in inside, "never a station outside its radius"
        assert inside[found] == min(inside.values())


def _at_one_place(station: Station, other: Station) -> bool:
    """Is the station where the other is, and is a photo there inside its radius?"""
    if station.lat is None or other.lat is None:
        return False
    apart = distance_m((station.lat, station.lon), (other.lat, other.lon))
    return apart <= 1.0 and apart <= station.radius_m


# --- place_in_race ----------------------------------------------------------------------------

GOOD = ExifFacts(datetime_original="2026:05:01 10:42:07", subsec="25", offset="+02:00")


def test_place_in_race__sets_station_and_utc_time_with_the_station_clock_offset(
    course: Course,
) -> None:
    placed = place_in_race(photo("a", station=None, seconds=None, folder="cp1", exif=GOOD), course)
    assert (placed.station_id, placed.status) == ("cp1", None)
    assert placed.taken_at == datetime(2026, 5, 1, 8, 42, 4, 750_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("folder", "facts", "error", "reason"),
    [
        ("finish", GOOD, "truncated_image", "truncated_image"),
        ("unsorted", GOOD, None, "unknown_station"),
        ("finish", ExifFacts(offset="+02:00"), None, "bad_exif"),
        ("finish", replace(GOOD, datetime_original="2026:04:20 10:42:07"), None, "bad_exif"),
    ],
    ids=["analysis_error", "unknown_station", "no_time", "far_from_the_race"],
)
def test_place_in_race__rejects_with_a_reason(
    course: Course, folder: str, facts: ExifFacts, error: str | None, reason: str
) -> None:
    placed = place_in_race(
        photo("a", station=None, seconds=None, folder=folder, exif=facts, error=error), course
    )
    assert (placed.status, placed.reason, placed.taken_at) == (REJECTED, reason, None)


EXIF_TIME = st.from_regex(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}", fullmatch=True)
OFFSET = st.from_regex(r"[+-]\d{2}:?\d{2}", fullmatch=True)
FINISH_COURSE = make_course()


@PROPERTY
@given(
    when=st.none() | EXIF_TIME | st.text(max_size=25),
    subsec=st.none() | st.text("0123456789", max_size=9) | st.text(max_size=9),
    offset=st.none() | OFFSET | st.text(max_size=8),
)
def test_place_in_race__any_exif_text_is_timed_near_the_race_or_rejected_as_bad_exif(
    when: str | None, subsec: str | None, offset: str | None
) -> None:
    facts = ExifFacts(datetime_original=when, subsec=subsec, offset=offset)
    placed = place_in_race(
        photo("a", station=None, seconds=None, folder="finish", exif=facts), FINISH_COURSE
    )
    if placed.status is None:
        assert placed.taken_at.utcoffset() == timedelta(0)
        assert abs(placed.taken_at - GUN) <= MAX_DISTANCE_FROM_RACE
    else:
        assert (placed.status, placed.reason, placed.taken_at) == (REJECTED, "bad_exif", None)


@PROPERTY
@given(
    utc=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))
    | st.datetimes(
        min_value=GUN.replace(tzinfo=None) - timedelta(days=3),
        max_value=GUN.replace(tzinfo=None) + timedelta(days=3),
    )
)
@example(utc=datetime(1970, 1, 1))
@example(utc=datetime(2099, 12, 31, 23, 59, 59))
def test_place_in_race__a_photo_more_than_two_days_from_the_start_is_bad_exif(
    utc: datetime,
) -> None:
    facts = ExifFacts(datetime_original=utc.strftime("%Y:%m:%d %H:%M:%S"), offset="+00:00")
    placed = place_in_race(
        photo("a", station=None, seconds=None, folder="finish", exif=facts), FINISH_COURSE
    )
    far = abs(utc.replace(microsecond=0, tzinfo=UTC) - GUN) > MAX_DISTANCE_FROM_RACE
    assert (placed.reason == "bad_exif") == far


def test_place_in_race__a_day_after_the_race_still_counts(course: Course) -> None:
    facts = replace(GOOD, datetime_original="2026:05:02 10:42:07")
    placed = place_in_race(
        photo("a", station=None, seconds=None, folder="finish", exif=facts), course
    )
    assert placed.status is None
    assert placed.taken_at - GUN == timedelta(days=1, minutes=42, seconds=7.25)


# --- ParseExif --------------------------------------------------------------------------------


def test_parse_exif__timed_photos_are_stamped_and_rejected_ones_tagged(course: Course) -> None:
    good = photo("good", station=None, seconds=None, folder="finish", exif=GOOD)
    lost = photo("lost", station=None, seconds=None, folder="unsorted", exif=GOOD)
    broken = photo("broken", station=None, seconds=None, folder="start", error="not_an_image")
    taken = at(42 * 60 + 7.25)
    with TestPipeline() as p:
        placed = p | beam.Create([good, lost, broken]) | ParseExif(course)
        assert_that(
            placed.timed,
            equal_to([replace(good, station_id="finish", taken_at=taken, placed_by=FOLDER)]),
            label="Timed",
        )
        assert_that(
            placed.timed | beam.Map(lambda ph, ts=beam.DoFn.TimestampParam: (ph.path, float(ts))),
            equal_to([(good.path, taken.timestamp())]),
            label="EventTime",
        )
        assert_that(
            placed.rejected,
            equal_to(
                [
                    # Placed nowhere, with the time its EXIF gives for the official.
                    replace(lost, status=REJECTED, reason="unknown_station", exif_taken_at=taken),
                    replace(broken, status=REJECTED, reason="not_an_image"),
                ]
            ),
            label="Rejected",
        )
