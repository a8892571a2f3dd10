"""Synthetic demo race: a course, a start list, the true passages and the photos they produce.

`generate_race` writes a complete, deterministic 10 km race into a directory so racelens can
be tried (and tested end to end) without real photos. Besides ordinary finish-line shots, the
photos contain the awkward cases the pipeline has to cope with: stations recognised only by
camera serial or by GPS, a camera clock that runs fast, a camera without a UTC offset, bursts,
the same file uploaded twice, bibs hidden by an arm, empty frames, a covered lens and a
corrupt file. `truth.csv` records what really happened, for scoring the pipeline's output.

Two options add what the default race has not (its files stay byte for byte the same): an
out-and-back course (`layout=OUT_AND_BACK`), whose checkpoints on the way back stand where
those on the way out stood, each such place photographed by one phone known only by its
GPS (the pipeline places its photos by the runners' own passages); and an approach camera
(`approach=STATION`) that photographs each runner coming up to the line, its station given
`crossing: last`.

With real faces (`faces=DIR`, see `pipeline.demo_faces`) some runners wear a real person's
face, the start list gives their reference photo, and some of them have their bib hidden at
one station, where only the face can identify them (truth.csv's `face_only` column). Faces
draw from a random stream of their own, so the race itself is the same as without them.

Generation has two phases. Planning draws every random decision, in a fixed order, from one
seeded generator and yields plain data (athletes, passages, shots). Rendering turns each shot
into a JPEG as a pure function of that plan, so the output is byte-identical for a seed no
matter how many threads render it.
"""

from __future__ import annotations

import csv
import enum
import math
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont
from PIL.TiffImagePlugin import IFDRational

from pipeline.demo_faces import FACE_PX, Person, load_cast, paste_head

__all__ = ["DemoSummary", "generate_race"]

Color = tuple[int, int, int]  # RGB
T = TypeVar("T")

# --- The race -----------------------------------------------------------------------------

RACE_ID = "demo-10k"
RACE_NAME = "Demo 10k"
TIMEZONE = ZoneInfo("Europe/Oslo")
RACE_START = datetime(2026, 5, 1, 10, 0, tzinfo=TIMEZONE)
WAVE_DELAYS = {"A": timedelta(0), "B": timedelta(minutes=5)}
COURSE_OPEN = timedelta(hours=3)  # the course closes three hours after the gun
COURSE_KM = 10.0
# The course's layout: a line from start to finish, or out to half way and back.
LINE, OUT_AND_BACK = "line", "out-and-back"
LAYOUTS = (LINE, OUT_AND_BACK)
START_SPREAD_MS = 60_000  # athletes cross the start line up to a minute after their wave
PACE_S_PER_KM = (210.0, 420.0)  # 3:30 to 7:00 min/km
SECTOR_PACE_VARIATION = 0.05
DROPOUT_SHARE = 0.02  # both for DNS and for DNF

# Stations step ~1.7 km north and ~1.1 km east (~2 km apart), far more than the GPS radius,
# so a GPS position can never match two stations.
START_LAT, START_LON = 59.91, 10.75
STATION_STEP_DEG = (0.015, 0.02)
RADIUS_M = 60
METRES_PER_DEGREE_LAT = 111_320.0
GPS_ERROR_M = (10.0, 30.0)  # how far the phone at cp2 is from the station's coordinates
START_CLOCK_FAST_MS = 3_000  # the start camera's clock runs 3 s fast

# --- Photos ---------------------------------------------------------------------------------

FRAME_W, FRAME_H = 1600, 1067
JPEG_QUALITY = 88
HORIZON_Y = 430
BACKGROUND_NOISE_SIGMA = 2.0
PHOTO_JITTER_MS = 800  # a trigger fires this close to the crossing, either side
# An approach camera (demo --approach) faces the oncoming runners: it photographs each from
# 10-25 s before the line, every 4-8 s (more than burst_gap_s, less than merge_window_s).
APPROACH_MS = (10_000, 25_000)
APPROACH_STEP_MS = (4_000, 8_000)
COMPANION_WINDOW_MS = 1_500  # other runners this close to the photo time are in the frame
MAX_RUNNERS = 3  # the frame is split into this many slots, one runner each
BURST_SHARE = 0.15
BURST_GAP_MS = 300
BURST_SHIFT_PX = (4, 10)  # per frame; two frames at most, so slots keep 20 px spare
OCCLUDED_SHARE = 0.03
EMPTY_SHARE = 0.02
BLURRED_SHARE = 0.3
MAX_BLUR_SIGMA = 1.0
DUPLICATE_UPLOADS = 3
CORRUPT_KEEP_SHARE = 0.4
DARK_FRAMES = 3
DARK_GAIN = 0.04  # keeps a covered lens's mean brightness far below 15
DARK_LEAD_MS = 30_000  # how long before its first real photo the finish lens is covered

# Runner geometry in pixels; the torso is sized from the bib so the bib always fits on it.
LEG_LEN, TORSO_H, NECK, HEAD_R = 300, 280, 14, 50
LEG_W, ARM_W = 40, 30
TORSO_MARGIN = 35  # shirt visible either side of the bib
ARM_REACH = 60  # beyond the torso edge, including the arm's thickness
BIB_CENTRE = 0.42  # of the torso height, from its top

# --- Bibs -----------------------------------------------------------------------------------

BIB_WIDTH, BIB_HEIGHT, DIGIT_HEIGHT = (120, 170), (80, 110), (45, 58)
BIB_PAD = 14  # paper around the digits when a number is too wide for the drawn bib
BIB_MAX_ANGLE = 5.0
HERSHEY_FONTS = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "triplex": cv2.FONT_HERSHEY_TRIPLEX,
}
BIB_FONTS = ("pillow", *HERSHEY_FONTS)
STROKE = (3, 5)  # Hershey line thickness; Pillow's outline is a third of it
INK_THRESHOLD = 60  # grey levels from the paper that count as ink when locating digits

PAPERS: tuple[Color, ...] = ((248, 248, 245), (252, 243, 170), (198, 225, 250), (250, 210, 222))
INKS: tuple[Color, ...] = ((15, 15, 15), (15, 30, 120), (130, 15, 25))
SHIRTS: tuple[Color, ...] = (
    (200, 30, 40),
    (30, 90, 200),
    (20, 150, 70),
    (240, 120, 20),
    (120, 40, 160),
    (25, 25, 30),
    (0, 140, 150),
    (220, 50, 130),
    (90, 90, 95),
    (170, 140, 20),
)
SKINS: tuple[Color, ...] = (
    (255, 219, 172),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (141, 85, 36),
    (95, 60, 40),
)
SHORTS: tuple[Color, ...] = ((25, 25, 30), (40, 40, 90), (60, 60, 60), (15, 60, 40))
SHOE: Color = (35, 35, 35)

# --- Start list -----------------------------------------------------------------------------

FIRST_BIB = 101
FIRST_NAMES = {
    "F": ("Ingrid", "Sofie", "Emma", "Nora", "Kari", "Maja", "Ida", "Hanna", "Åse", "Thea"),
    "M": ("Ola", "Lars", "Jakob", "Emil", "Henrik", "Magnus", "Sindre", "Bjørn", "Jonas", "Aksel"),
}
LAST_NAMES = (
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Berg",
    "Haugen",
    "Bakken",
    "Lie",
    "Dahl",
    "Moen",
    "Sæther",
    "Ødegård",
    "Strand",
)
AGE_GROUPS = (20, 35, 40, 45, 50, 55, 60)
CLUBS = ("IL Gneist", "Tjalve", "BUL", "Koll", "Romerike ULK")
NO_CLUB_SHARE = 0.3

# --- Real faces (demo --faces) ------------------------------------------------------------------

FACES_STREAM = 1  # the faces' random stream: (seed, FACES_STREAM)
FACE_SHARE = 0.5  # of the athletes who pass two stations or more, as far as there are people
HIDDEN_SHARE = 0.75  # of the face runners: their bib is hidden at one station after the start
FACES_FOLDER = "faces"  # reference photos, beside the start list that names them


@dataclass(frozen=True)
class DemoSummary:
    """What `generate_race` wrote."""

    images: int  # every file under images/, including the duplicate uploads and corrupt file
    passages: int  # rows in truth.csv
    athletes: int
    stations: int
    out_dir: str
    face_runners: int = 0  # athletes with a real face (demo --faces)
    face_only_passages: int = 0  # passages where only the face shows who it is


@dataclass(frozen=True)
class Station:
    id: str
    name: str
    km: float
    lat: float
    lon: float


@dataclass(frozen=True)
class Camera:
    """One camera and how the pipeline can tell which station it photographs."""

    station_id: str
    folder: str  # under images/
    prefix: str  # of its file names
    make: str
    model: str
    serial: str
    clock_fast_ms: int = 0
    writes_offset: bool = True  # False: no OffsetTimeOriginal, the course timezone applies
    listed: bool = False  # its serial is in the station's `cameras` in course.yaml
    gps: tuple[float, float] | None = None
    approach: bool = False  # faces the oncoming runners: `crossing: last` in course.yaml


@dataclass(frozen=True)
class BibStyle:
    """How one athlete's bib is printed; the same paper bib is worn all race."""

    font: str  # "pillow" or a key of HERSHEY_FONTS
    paper: Color
    ink: Color
    width: int
    height: int
    digit_height: int
    stroke: int


@dataclass(frozen=True)
class Athlete:
    bib: int
    name: str
    category: str
    gender: str
    club: str
    wave: str
    shirt: Color
    skin: Color
    shorts: Color
    bib_style: BibStyle


@dataclass(frozen=True)
class Passage:
    athlete: Athlete
    station_id: str
    time_ms: int  # UTC, milliseconds since the Unix epoch


@dataclass(frozen=True)
class Figure:
    """One runner as seen in one photo."""

    athlete: Athlete
    x: int  # centre of the torso
    ground: int  # y of the feet
    stride: int
    arm_swing: int
    bib_angle: float
    occluded: bool
    face: int | None = None  # index into the race's real faces; None draws a plain head


class ShotKind(enum.Enum):
    SCENE = "scene"  # the background and zero or more runners
    DARK = "dark"  # covered lens
    CORRUPT = "corrupt"  # an empty scene whose file is cut short


@dataclass(frozen=True)
class Shot:
    camera: Camera
    time_ms: int  # true UTC time; the EXIF time adds the camera's clock error
    figures: tuple[Figure, ...] = ()
    kind: ShotKind = ShotKind.SCENE
    blur_sigma: float = 0.0


@dataclass(frozen=True, eq=False)
class BibPatch:
    """A printed, rotated bib ready to paste; `digits` bounds the ink within the patch."""

    pixels: np.ndarray  # h x w x 3 uint8 RGB; beyond the bib's edge it repeats the paper
    alpha: np.ndarray  # h x w x 1 float32 coverage of the bib
    digits: tuple[int, int, int, int]  # x0, y0, x1, y1


@dataclass(frozen=True)
class FaceCasting:
    """Who wears a real face, which photo of it at each station, and where bibs are hidden."""

    people: dict[int, Person] = field(default_factory=dict)  # bib -> person
    faces: tuple[np.ndarray, ...] = ()  # every face drawn, indexed by Figure.face
    face_at: dict[tuple[int, str], int] = field(default_factory=dict)  # (bib, station) -> face
    hidden: frozenset[tuple[int, str]] = frozenset()  # (bib, station): the bib is hidden there

    def face_only(
        self, passages: Iterable[Passage], visible: set[tuple[int, str]]
    ) -> set[tuple[int, str]]:
        """Passages whose photos show the athlete's face but never the bib."""
        return {
            (p.athlete.bib, p.station_id)
            for p in passages
            if p.athlete.bib in self.people and (p.athlete.bib, p.station_id) not in visible
        }


def generate_race(
    out_dir: str,
    athletes: int = 200,
    stations: int = 4,
    seed: int = 7,
    faces: str | None = None,
    layout: str = LINE,
    approach: str | None = None,
) -> DemoSummary:
    """Writes course.yaml, startlist.csv, truth.csv and images/ for a demo race into out_dir.

    The output depends only on the arguments (and the photos under `faces`): the same seed
    gives byte-identical files. With `faces`, real faces from that folder go on some runners
    and their reference photos into out_dir/faces/. `layout` OUT_AND_BACK turns the course
    back at half way; `approach` (a station id) gives that station an approach camera.
    Raises ValueError for fewer than 1 athlete or 2 stations, an unknown course or approach
    station, when out_dir is not empty (stale photos from an earlier run would silently join
    the race) or when `faces` holds no usable person.
    """
    if athletes < 1:
        raise ValueError(f"a demo race needs at least 1 athlete, got {athletes}")
    if stations < 2:
        raise ValueError(f"a demo race needs at least 2 stations (start, finish), got {stations}")
    if layout not in LAYOUTS:
        raise ValueError(f"a demo course is one of {', '.join(LAYOUTS)}, got {layout!r}")
    course = _course(stations, layout == OUT_AND_BACK)
    if approach is not None and approach not in {s.id for s in course}:
        ids = ", ".join(s.id for s in course)
        raise ValueError(f"no station {approach!r} for the approach camera; the demo's: {ids}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty directory; choose a new one")

    cast = load_cast(faces) if faces is not None else ()
    rng = np.random.default_rng(seed)
    cameras = _cameras(rng, course, approach)
    roster = _athletes(rng, athletes)
    passages = _passages(rng, roster, course)
    shots = _shots(rng, passages, cameras)
    casting = FaceCasting()
    if cast:
        casting = _cast_faces(np.random.default_rng((seed, FACES_STREAM)), cast, passages, course)
        shots = [_with_faces(shot, casting) for shot in shots]
    photos = _file_names(shots)
    duplicates = _duplicate_uploads(rng, photos)
    backgrounds = {station.id: _background(rng) for station in course}

    images = out / "images"
    for folder in sorted({camera.folder for camera in cameras}):
        (images / folder).mkdir(parents=True, exist_ok=True)
    _write_course(out / "course.yaml", course, cameras, seed, faces is not None)
    references = _copy_references(out, casting)
    _write_startlist(out / "startlist.csv", roster, references if cast else None)
    visible = _visible(shots)
    face_only = casting.face_only(passages, visible) if cast else None
    _write_truth(out / "truth.csv", passages, visible, face_only)
    _write_photos(images, photos, backgrounds, casting.faces)
    for original in duplicates:
        shutil.copyfile(images / original, images / original.replace(".jpg", " (1).jpg"))
    return DemoSummary(
        images=len(photos) + len(duplicates),
        passages=len(passages),
        athletes=athletes,
        stations=stations,
        out_dir=str(out),
        face_runners=len(casting.people),
        face_only_passages=len(face_only or ()),
    )


# --- Planning -------------------------------------------------------------------------------


def _course(n_stations: int, out_and_back: bool = False) -> tuple[Station, ...]:
    """Start, cp1..cp{n-2} and finish, evenly spaced along the 10 km; `out_and_back`, the
    way back passes the places of the way out (of four stations, km 3.3 and 6.7 at one
    place, the start and finish at another)."""
    course = []
    for i in range(n_stations):
        km = round(COURSE_KM * i / (n_stations - 1), 3)
        if i == 0:
            station_id, name = "start", "Start"
        elif i == n_stations - 1:
            station_id, name = "finish", "Finish"
        else:
            station_id, name = f"cp{i}", f"{km:.1f} km"
        along = min(i, n_stations - 1 - i) if out_and_back else i  # stations from the start
        lat = round(START_LAT + along * STATION_STEP_DEG[0], 4)
        lon = round(START_LON + along * STATION_STEP_DEG[1], 4)
        course.append(Station(station_id, name, km, lat, lon))
    return tuple(course)


def _cameras(
    rng: np.random.Generator, course: Sequence[Station], approach: str | None = None
) -> tuple[Camera, ...]:
    """One camera per station, each exercising a different way of finding its station;
    checkpoints at one place (out and back) share one phone known only by its GPS, and the
    station `approach` faces the oncoming runners."""
    cameras = []
    phones = _turn_phones(rng, course)
    for station in course:
        sid = station.id
        if (station.lat, station.lon) in phones:
            camera = replace(phones[(station.lat, station.lon)], station_id=sid)
        elif sid == "start":
            camera = Camera(
                sid,
                sid,
                "START",
                "Canon",
                "EOS R6",
                "SN-START-0001",
                clock_fast_ms=START_CLOCK_FAST_MS,
            )
        elif sid == "finish":
            camera = Camera(
                sid, sid, "FINISH", "Canon", "EOS R5", "SN-FINISH-0001", writes_offset=False
            )
        elif sid == "cp1":
            # Listed in the course's `cameras`; the photos carry no GPS.
            camera = Camera(sid, "unsorted", "CP1", "Sony", "ILCE-7M3", "SN-CP1-0001", listed=True)
        elif sid == "cp2":
            # A phone nobody registered: only its GPS position tells where it stood.
            camera = Camera(
                sid,
                "unsorted",
                "IMG",
                "Google",
                "Pixel 8",
                "PX8-4471-2093",
                gps=_near(rng, station.lat, station.lon),
            )
        else:
            camera = Camera(sid, sid, sid.upper(), "Nikon", "Z 6II", f"SN-{sid.upper()}-0001")
        cameras.append(replace(camera, approach=sid == approach))
    return tuple(cameras)


def _turn_phones(
    rng: np.random.Generator, course: Sequence[Station]
) -> dict[tuple[float, float], Camera]:
    """A phone (station_id left to set) at each place that several checkpoints share: on
    an out-and-back course, the way out and the way back pass it. None on a line course."""
    checkpoints = [(s.lat, s.lon) for s in course[1:-1]]
    shared = sorted({place for place in checkpoints if checkpoints.count(place) > 1})
    return {
        place: Camera(
            "",
            "unsorted",
            f"TURN{k}",
            "Apple",
            "iPhone 15",
            f"IP15-{k:04d}",
            gps=_near(rng, *place),
        )
        for k, place in enumerate(shared, start=1)
    }


def _near(rng: np.random.Generator, lat: float, lon: float) -> tuple[float, float]:
    """A point a GPS error (10-30 m) away from lat/lon, in a random direction."""
    distance = rng.uniform(*GPS_ERROR_M)
    bearing = rng.uniform(0, 2 * np.pi)
    d_lat = distance * np.cos(bearing) / METRES_PER_DEGREE_LAT
    d_lon = distance * np.sin(bearing) / (METRES_PER_DEGREE_LAT * np.cos(np.radians(lat)))
    return (float(lat + d_lat), float(lon + d_lon))


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def random_bib_style(rng: np.random.Generator) -> BibStyle:
    return BibStyle(
        font=_pick(rng, BIB_FONTS),
        paper=_pick(rng, PAPERS),
        ink=_pick(rng, INKS),
        width=int(rng.integers(BIB_WIDTH[0], BIB_WIDTH[1] + 1)),
        height=int(rng.integers(BIB_HEIGHT[0], BIB_HEIGHT[1] + 1)),
        digit_height=int(rng.integers(DIGIT_HEIGHT[0], DIGIT_HEIGHT[1] + 1)),
        stroke=int(rng.integers(STROKE[0], STROKE[1] + 1)),
    )


def _athletes(rng: np.random.Generator, count: int) -> tuple[Athlete, ...]:
    roster = []
    for bib in range(FIRST_BIB, FIRST_BIB + count):
        gender = _pick(rng, ("F", "M"))
        club = "" if rng.random() < NO_CLUB_SHARE else _pick(rng, CLUBS)
        roster.append(
            Athlete(
                bib=bib,
                name=f"{_pick(rng, FIRST_NAMES[gender])} {_pick(rng, LAST_NAMES)}",
                category=f"{gender}{_pick(rng, AGE_GROUPS)}",
                gender=gender,
                club=club,
                wave=_pick(rng, tuple(WAVE_DELAYS)),
                shirt=_pick(rng, SHIRTS),
                skin=_pick(rng, SKINS),
                shorts=_pick(rng, SHORTS),
                bib_style=random_bib_style(rng),
            )
        )
    return tuple(roster)


def _epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _passages(
    rng: np.random.Generator, roster: Sequence[Athlete], course: Sequence[Station]
) -> tuple[Passage, ...]:
    """Every athlete's true crossing times; a few never start (DNS) or drop out (DNF)."""
    dropouts = round(DROPOUT_SHARE * len(roster))
    order = rng.permutation(len(roster))
    dns = set(order[:dropouts].tolist())
    dnf = set(order[dropouts : 2 * dropouts].tolist())
    sector_km = np.diff([station.km for station in course])
    passages = []
    for i, athlete in enumerate(roster):
        start_ms = _epoch_ms(RACE_START + WAVE_DELAYS[athlete.wave])
        start_ms += int(rng.integers(START_SPREAD_MS + 1))
        pace = rng.uniform(*PACE_S_PER_KM)
        factors = rng.uniform(
            1 - SECTOR_PACE_VARIATION, 1 + SECTOR_PACE_VARIATION, size=len(sector_km)
        )
        offsets = np.concatenate([[0.0], np.cumsum(sector_km * pace * factors * 1000)])
        # A DNF passes the start and (with any checkpoint) at least one checkpoint.
        last = len(course) - 1
        if i in dnf:
            last = int(rng.integers(min(1, len(course) - 2), len(course) - 1))
        if i in dns:
            continue
        passages += [
            Passage(athlete, station.id, start_ms + round(offset))
            for station, offset in zip(course[: last + 1], offsets[: last + 1], strict=True)
        ]
    return tuple(passages)


def _shots(
    rng: np.random.Generator, passages: Sequence[Passage], cameras: Sequence[Camera]
) -> list[Shot]:
    """Photos triggered by passages, plus empty frames, a covered lens and a corrupt file."""
    shots: list[Shot] = []
    for camera in cameras:
        here = sorted(
            (p for p in passages if p.station_id == camera.station_id), key=lambda p: p.time_ms
        )
        times = np.array([p.time_ms for p in here], dtype=np.int64)
        for index, passage in enumerate(here):
            if camera.approach:
                shots += _approach(rng, camera, passage)
            for _ in range(int(rng.integers(1, 3))):
                time_ms = passage.time_ms + int(rng.integers(-PHOTO_JITTER_MS, PHOTO_JITTER_MS + 1))
                runners = [passage.athlete] + _companions(times, here, index, time_ms)
                figures = _layout(rng, runners, _hides_bibs(camera))
                shot = Shot(camera, time_ms, figures, blur_sigma=_blur(rng))
                shots += _burst(rng, shot)
    first, last = min(s.time_ms for s in shots), max(s.time_ms for s in shots)
    for _ in range(round(EMPTY_SHARE * len(shots))):
        camera = _pick(rng, cameras)
        shots.append(Shot(camera, int(rng.integers(first, last + 1)), blur_sigma=_blur(rng)))
    # The finish camera starts with its lens covered: the dark frames come before its first
    # real photo, so they are consecutive by construction. Cameras are in course order.
    finish = cameras[-1]
    lens_off = min((s.time_ms for s in shots if s.camera == finish), default=first)
    shots += [
        Shot(finish, lens_off - DARK_LEAD_MS + k * 1000, kind=ShotKind.DARK)
        for k in range(DARK_FRAMES)
    ]
    shots.append(Shot(cameras[0], int(rng.integers(first, last + 1)), kind=ShotKind.CORRUPT))
    return shots


def _approach(rng: np.random.Generator, camera: Camera, passage: Passage) -> list[Shot]:
    """Photos of the runner coming up to the line, before the shots as they cross it: alone
    in the frame (the runners near them are photographed on their own way up)."""
    shots = []
    time_ms = passage.time_ms - int(rng.integers(APPROACH_MS[0], APPROACH_MS[1] + 1))
    while time_ms < passage.time_ms - PHOTO_JITTER_MS:
        figures = _layout(rng, [passage.athlete], _hides_bibs(camera))
        shots.append(Shot(camera, time_ms, figures, blur_sigma=_blur(rng)))
        time_ms += int(rng.integers(APPROACH_STEP_MS[0], APPROACH_STEP_MS[1] + 1))
    return shots


def _companions(
    times: np.ndarray, here: Sequence[Passage], index: int, time_ms: int
) -> list[Athlete]:
    """Up to MAX_RUNNERS - 1 other athletes crossing close enough to time_ms to be in frame."""
    distance = np.abs(times - time_ms)
    near = [
        i
        for i in np.argsort(distance, kind="stable")
        if distance[i] <= COMPANION_WINDOW_MS and i != index
    ]
    return [here[i].athlete for i in near[: MAX_RUNNERS - 1]]


def _hides_bibs(camera: Camera) -> bool:
    """Are bibs hidden by an arm at this camera's station now and then (see _layout)?"""
    return camera.station_id not in ("start", "finish")


def _blur(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.3, MAX_BLUR_SIGMA)) if rng.random() < BLURRED_SHARE else 0.0


def _torso_width(athlete: Athlete) -> int:
    card, _ = _bib_card(athlete.bib, athlete.bib_style)  # wider than drawn for long numbers
    return card.shape[1] + 2 * TORSO_MARGIN


def _layout(
    rng: np.random.Generator, runners: Sequence[Athlete], hide_bibs: bool
) -> tuple[Figure, ...]:
    """Puts each runner in its own slot of the frame, so runners never overlap.

    Bibs are hidden by an arm only at intermediate checkpoints: a passage hidden
    there is a missed checkpoint that the timer can live with, while a hidden
    start or finish would change the athlete's result.
    """
    slot_w = FRAME_W // MAX_RUNNERS
    spare = 2 * BURST_SHIFT_PX[1]  # room for the burst frames to move right
    figures = []
    slots = rng.permutation(MAX_RUNNERS)[: len(runners)]
    for athlete, slot in zip(runners, slots, strict=True):
        torso_w = _torso_width(athlete)
        reach = torso_w // 2 + ARM_REACH
        room = max(1, slot_w - 2 * reach - spare)
        figures.append(
            Figure(
                athlete=athlete,
                x=int(slot * slot_w + reach + rng.integers(room)),
                ground=int(FRAME_H - 60 + rng.integers(-20, 21)),
                stride=int(rng.integers(20, torso_w // 4 + 1)),
                arm_swing=int(rng.integers(-25, 26)),
                bib_angle=float(rng.uniform(-BIB_MAX_ANGLE, BIB_MAX_ANGLE)),
                occluded=bool(rng.random() < OCCLUDED_SHARE) and hide_bibs,
            )
        )
    return tuple(figures)


def _burst(rng: np.random.Generator, shot: Shot) -> list[Shot]:
    """The shot, and sometimes 1-2 more frames a moment later with the runners moved on."""
    if rng.random() >= BURST_SHARE:
        return [shot]
    shift = int(rng.integers(BURST_SHIFT_PX[0], BURST_SHIFT_PX[1] + 1))
    frames = [shot]
    for k in range(1, int(rng.integers(1, 3)) + 1):
        moved = tuple(replace(f, x=f.x + k * shift) for f in shot.figures)
        frames.append(replace(shot, time_ms=shot.time_ms + k * BURST_GAP_MS, figures=moved))
    return frames


def _cast_faces(
    rng: np.random.Generator,
    cast: Sequence[Person],
    passages: Sequence[Passage],
    course: Sequence[Station],
) -> FaceCasting:
    """Gives real faces to a share of the athletes who pass two stations or more (one person
    each) and hides the bib of most of them at one station after the start."""
    stations_of: dict[int, list[str]] = {}
    for p in passages:  # each athlete's passages come in course order, the start first
        stations_of.setdefault(p.athlete.bib, []).append(p.station_id)
    eligible = sorted(bib for bib, seen in stations_of.items() if len(seen) >= 2)
    count = min(len(cast), math.ceil(FACE_SHARE * len(eligible)))
    if count == 0:
        return FaceCasting()
    bibs = sorted(int(b) for b in rng.choice(eligible, size=count, replace=False))
    people = {bib: cast[int(i)] for bib, i in zip(bibs, rng.permutation(len(cast)), strict=False)}
    faces: list[np.ndarray] = []
    face_at = {}
    for bib, person in people.items():
        # A different photo of the person at each station (as far as there are photos).
        first, shift = len(faces), int(rng.integers(len(person.faces)))
        faces += person.faces
        for k, station in enumerate(course):
            face_at[(bib, station.id)] = first + (shift + k) % len(person.faces)
    hiders = sorted(int(b) for b in rng.choice(bibs, math.ceil(HIDDEN_SHARE * count), False))
    hidden = frozenset((bib, _pick(rng, stations_of[bib][1:])) for bib in hiders)
    return FaceCasting(people, tuple(faces), face_at, hidden)


def _with_faces(shot: Shot, casting: FaceCasting) -> Shot:
    """The shot with each cast runner's face, and their bib hidden where the casting says."""
    station = shot.camera.station_id
    figures = []
    for figure in shot.figures:
        key = (figure.athlete.bib, station)
        if figure.athlete.bib in casting.people:
            figure = replace(
                figure,
                face=casting.face_at[key],
                occluded=figure.occluded or key in casting.hidden,
            )
        figures.append(figure)
    return replace(shot, figures=tuple(figures))


def _file_names(shots: Iterable[Shot]) -> list[tuple[str, Shot]]:
    """Each shot with its path under images/, numbered per camera in capture order (a
    phone shared by two stations, out and back, numbers its photos of both in one run)."""
    by_camera: dict[tuple[str, str], list[Shot]] = {}
    for shot in shots:
        by_camera.setdefault((shot.camera.folder, shot.camera.prefix), []).append(shot)
    photos = []
    for (folder, prefix), taken in by_camera.items():
        taken.sort(key=lambda s: s.time_ms)
        photos += [
            (f"{folder}/{prefix}_{n:05d}.jpg", shot) for n, shot in enumerate(taken, start=1)
        ]
    return photos


def _duplicate_uploads(rng: np.random.Generator, photos: Sequence[tuple[str, Shot]]) -> list[str]:
    """Photos with runners that an uploader will send twice."""
    candidates = [path for path, shot in photos if shot.figures]
    chosen = rng.choice(
        len(candidates), size=min(DUPLICATE_UPLOADS, len(candidates)), replace=False
    )
    return [candidates[i] for i in sorted(chosen)]


def _visible(shots: Iterable[Shot]) -> set[tuple[int, str]]:
    """(bib, station) pairs with at least one photo showing the bib unoccluded."""
    return {
        (f.athlete.bib, s.camera.station_id) for s in shots for f in s.figures if not f.occluded
    }


# --- Writing the race's files ---------------------------------------------------------------


def _write_course(
    path: Path, course: Sequence[Station], cameras: Sequence[Camera], seed: int, faces: bool
) -> None:
    by_station = {camera.station_id: camera for camera in cameras}
    stations = []
    for station in course:
        entry = {
            "id": station.id,
            "name": station.name,
            "km": station.km,
            "lat": station.lat,
            "lon": station.lon,
            "radius_m": RADIUS_M,
        }
        camera = by_station[station.id]
        if camera.clock_fast_ms:
            entry["clock_offset_s"] = -camera.clock_fast_ms / 1000
        if camera.listed:
            entry["cameras"] = [camera.serial]
        if camera.approach:
            entry["crossing"] = "last"  # its runners' last photo is the one at the line
        stations.append(entry)
    course_doc = {
        "race": {
            "id": RACE_ID,
            "name": RACE_NAME,
            "timezone": TIMEZONE.key,
            "start": RACE_START.isoformat(),
            "close": (RACE_START + COURSE_OPEN).isoformat(),
        },
        "stations": stations,
        "waves": [
            {"id": wave, "start": (RACE_START + delay).isoformat()}
            for wave, delay in WAVE_DELAYS.items()
        ],
    }
    if not faces:
        # The runners' heads are drawn, not faces: looking for faces would only cost time
        # (dlib's HOG is the dearest step of the analysis). `demo --faces` leaves them on.
        course_doc["settings"] = {"faces": False}
    text = yaml.safe_dump(
        course_doc, sort_keys=False, default_flow_style=None, width=1000, allow_unicode=True
    )
    path.write_text(f"# racelens demo race, generated with seed {seed}\n{text}", encoding="utf-8")


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _copy_references(out: Path, casting: FaceCasting) -> dict[int, str]:
    """Copies each face runner's reference photo beside the start list; bib -> its path
    relative to the start list."""
    paths = {}
    for bib, person in casting.people.items():
        relative = f"{FACES_FOLDER}/{bib}{person.reference.suffix.lower()}"
        (out / FACES_FOLDER).mkdir(exist_ok=True)
        shutil.copyfile(person.reference, out / relative)
        paths[bib] = relative
    return paths


def _write_startlist(
    path: Path, roster: Iterable[Athlete], photos: dict[int, str] | None = None
) -> None:
    """The start list; with `photos` (demo --faces), the optional `photo` column too."""
    header = ("bib", "name", "category", "gender", "club", "wave")
    rows = [(a.bib, a.name, a.category, a.gender, a.club, a.wave) for a in roster]
    if photos is not None:
        header += ("photo",)
        rows = [(*row, photos.get(a.bib, "")) for row, a in zip(rows, roster, strict=True)]
    _write_csv(path, header, rows)


def _utc_iso(time_ms: int) -> str:
    moment = datetime.fromtimestamp(time_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{time_ms % 1000:03d}Z"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _write_truth(
    path: Path,
    passages: Iterable[Passage],
    visible: set[tuple[int, str]],
    face_only: set[tuple[int, str]] | None = None,
) -> None:
    """The true passages; `visible`: some photo shows the bib. With faces, `face_only`: the
    photos show the athlete's real face but never the bib."""
    header = ("bib", "station_id", "passed_at", "visible")
    rows = []
    for p in sorted(passages, key=lambda p: (p.time_ms, p.athlete.bib)):
        key = (p.athlete.bib, p.station_id)
        row = (p.athlete.bib, p.station_id, _utc_iso(p.time_ms), _flag(key in visible))
        rows.append(row if face_only is None else (*row, _flag(key in face_only)))
    _write_csv(path, header if face_only is None else (*header, "face_only"), rows)


def _write_photos(
    images: Path,
    photos: Sequence[tuple[str, Shot]],
    backgrounds: dict[str, np.ndarray],
    faces: Sequence[np.ndarray] = (),
) -> None:
    # OpenCV releases the GIL while it draws and encodes, so threads share the work across
    # cores without copying the backgrounds into worker processes.
    def write(photo: tuple[str, Shot]) -> None:
        name, shot = photo
        frame = render_shot(shot, backgrounds[shot.camera.station_id], faces)
        data = _jpeg(frame, shot)
        if shot.kind is ShotKind.CORRUPT:
            data = data[: round(len(data) * CORRUPT_KEEP_SHARE)]
        (images / name).write_bytes(data)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, photos))  # list() re-raises the first error


def _dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    minutes, seconds = divmod(round(abs(degrees) * 3600 * 100), 60 * 100)
    whole_degrees, minutes = divmod(minutes, 60)
    return IFDRational(whole_degrees), IFDRational(minutes), IFDRational(seconds, 100)


def _exif(camera: Camera, time_ms: int) -> bytes:
    """The tags a race camera writes, with its clock error applied to the times."""
    clock_ms = time_ms + camera.clock_fast_ms
    local = datetime.fromtimestamp(clock_ms // 1000, TIMEZONE)
    exif = Image.Exif()
    exif[0x010F] = camera.make
    exif[0x0110] = camera.model
    tags = exif.get_ifd(0x8769)
    tags[0x9003] = f"{local:%Y:%m:%d %H:%M:%S}"  # DateTimeOriginal
    tags[0x9291] = f"{clock_ms % 1000:03d}"  # SubSecTimeOriginal
    if camera.writes_offset:
        tags[0x9011] = local.isoformat()[-6:]  # OffsetTimeOriginal, e.g. "+02:00"
    tags[0xA431] = camera.serial  # BodySerialNumber
    if camera.gps is not None:
        lat, lon = camera.gps
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(lat)
        gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(lon)
    return exif.tobytes()


def _jpeg(frame: np.ndarray, shot: Shot) -> bytes:
    """The RGB frame as a JPEG carrying the camera's EXIF.

    OpenCV encodes twice as fast as Pillow, and JPEG encoding is most of the generator's
    time; Pillow builds the EXIF block.
    """
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY)
    )
    if not ok:
        raise RuntimeError("OpenCV could not encode a demo photo as JPEG")
    return with_exif(encoded.tobytes(), _exif(shot.camera, shot.time_ms))


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """The JPEG with the EXIF block as an APP1 segment right after its start-of-image
    marker, where readers look for it."""
    return jpeg[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + jpeg[2:]


# --- Rendering ------------------------------------------------------------------------------


def _background(rng: np.random.Generator) -> np.ndarray:
    """A station's view: sky, a band of trees, a road with a kerb line, and sensor noise.

    Drawn once per station, noise included, and copied for each photo.
    """
    jitter = rng.integers(-25, 26, size=(4, 3))
    sky_top, sky_low = np.array((90, 140, 210)) + jitter[0], np.array((190, 215, 240)) + jitter[1]
    road_far, road_near = np.array((150, 148, 145)) + jitter[2], np.array((95, 95, 98)) + jitter[3]
    rows = np.empty((FRAME_H, 3))
    rows[:HORIZON_Y] = np.linspace(sky_top, sky_low, HORIZON_Y)
    rows[HORIZON_Y:] = np.linspace(road_far, road_near, FRAME_H - HORIZON_Y)
    image = np.repeat(rows[:, None, :], FRAME_W, axis=1)
    tree_tops = HORIZON_Y - 40 - 30 * np.abs(np.sin(np.arange(FRAME_W) / rng.uniform(15, 40)))
    trees = np.arange(FRAME_H)[:, None] >= tree_tops[None, :]
    trees[HORIZON_Y:] = False
    image[trees] = (40, 85 + rng.integers(-15, 16), 45)
    kerb_y = HORIZON_Y + 60
    image[kerb_y : kerb_y + 8] = (225, 225, 220)
    image += rng.normal(0, BACKGROUND_NOISE_SIGMA, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_shot(shot: Shot, background: np.ndarray, faces: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The RGB frame of a planned shot; `faces` are the real faces its figures refer to."""
    if shot.kind is ShotKind.DARK:
        return cv2.convertScaleAbs(background, alpha=DARK_GAIN)
    frame = background.copy()
    for figure in shot.figures:
        _draw_runner(frame, figure)
        if figure.face is not None:
            _draw_face(frame, figure, faces[figure.face])
    if shot.blur_sigma:
        frame = cv2.GaussianBlur(frame, (0, 0), shot.blur_sigma)
    return frame


def _draw_runner(frame: np.ndarray, figure: Figure) -> None:
    athlete = figure.athlete
    half = _torso_width(athlete) // 2
    x, hip_y = figure.x, figure.ground - LEG_LEN
    top = hip_y - TORSO_H
    for side in (-1, 1):  # legs mid-stride, one forward and one back
        foot = (x + side * (half // 2 + figure.stride), figure.ground)
        cv2.line(frame, (x + side * half // 2, hip_y), foot, athlete.skin, LEG_W, cv2.LINE_AA)
        cv2.ellipse(frame, (foot[0] + 10, foot[1] + 8), (32, 13), 0, 0, 360, SHOE, -1, cv2.LINE_AA)
    cv2.rectangle(frame, (x - half + 6, hip_y - 40), (x + half - 6, hip_y + 70), athlete.shorts, -1)
    cv2.rectangle(frame, (x - half, top), (x + half, hip_y), athlete.shirt, -1)
    for side in (-1, 1):  # arms bent at the elbow, outside the torso so the bib stays clear
        arm = np.array(
            [
                (x + side * (half + 8), top + 25),
                (x + side * (half + 38), top + 130 + side * figure.arm_swing),
                (x + side * (half + 20), top + 235 + side * figure.arm_swing),
            ],
            dtype=np.int32,
        )
        cv2.polylines(frame, [arm], False, athlete.skin, ARM_W, cv2.LINE_AA)
    cv2.circle(frame, (x, top - NECK - HEAD_R), HEAD_R, athlete.skin, -1, cv2.LINE_AA)

    bib = render_bib(athlete.bib, athlete.bib_style, figure.bib_angle)
    h, w = bib.alpha.shape[:2]
    x0, y0 = x - w // 2, top + round(BIB_CENTRE * TORSO_H) - h // 2
    roi = frame[y0 : y0 + h, x0 : x0 + w]
    roi[:] = (bib.pixels * bib.alpha + roi * (1 - bib.alpha)).astype(np.uint8)
    if figure.occluded:
        # A forearm across the chest, from the torso's edge to just past the digits.
        _, dy0, dx1, dy1 = bib.digits
        cv2.rectangle(
            frame, (x - half - 10, y0 + dy0 - 10), (x0 + dx1 + 14, y0 + dy1 + 10), athlete.skin, -1
        )


def _draw_face(frame: np.ndarray, figure: Figure, face: np.ndarray) -> None:
    """A real face over the drawn head, its chin just above the shoulders."""
    top = figure.ground - LEG_LEN - TORSO_H
    x0, y0 = figure.x - FACE_PX // 2, top + NECK - FACE_PX
    paste_head(frame[y0 : y0 + FACE_PX, x0 : x0 + FACE_PX], face)


def render_bib(number: int, style: BibStyle, angle: float) -> BibPatch:
    """The bib as printed in `style` and turned by `angle` degrees (counter-clockwise)."""
    card, (left, top, right, bottom) = _bib_card(number, style)
    height, width = card.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    out_w = int(np.ceil(width * cos + height * sin))
    out_h = int(np.ceil(height * cos + width * sin))
    matrix[:, 2] += ((out_w - width) / 2, (out_h - height) / 2)
    # Replicating the border makes the patch's corners paper-coloured, so blending by alpha
    # gives a clean edge instead of a dark fringe.
    pixels = cv2.warpAffine(
        card, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = cv2.warpAffine(
        np.ones((height, width), np.float32),
        matrix,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderValue=0.0,
    )
    corners = (
        np.array([[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]])
        @ matrix.T
    )
    (x0, y0), (x1, y1) = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    return BibPatch(pixels, alpha[:, :, None], (int(x0), int(y0), int(x1), int(y1)))


@lru_cache(maxsize=512)
def _bib_card(number: int, style: BibStyle) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The unturned bib and the box of its digits.

    Cached because an athlete wears the same bib in every photo; the card is read-only.
    """
    digits = _print_digits(str(number), style)
    ink_h, ink_w = digits.shape[:2]
    width = max(style.width, ink_w + 2 * BIB_PAD)
    height = max(style.height, ink_h + 2 * BIB_PAD)
    card = np.empty((height, width, 3), np.uint8)
    card[:] = style.paper
    left, top = (width - ink_w) // 2, (height - ink_h) // 2
    card[top : top + ink_h, left : left + ink_w] = digits
    card.flags.writeable = False
    return card, (left, top, left + ink_w, top + ink_h)


def _print_digits(text: str, style: BibStyle) -> np.ndarray:
    """The number in ink on paper, cropped tightly to the ink."""
    if style.font == "pillow":
        printed = _pillow_digits(text, style)
    else:
        printed = _hershey_digits(text, style)
    ink = np.abs(printed.astype(np.int16) - style.paper).max(axis=2) > INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return printed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _hershey_digits(text: str, style: BibStyle) -> np.ndarray:
    font = HERSHEY_FONTS[style.font]
    (_, unit_h), _ = cv2.getTextSize("0", font, 1.0, 1)
    scale = (style.digit_height - style.stroke) / unit_h
    (w, h), baseline = cv2.getTextSize(text, font, scale, style.stroke)
    canvas = np.empty((h + baseline + 2 * style.stroke, w + 2 * style.stroke, 3), np.uint8)
    canvas[:] = style.paper
    cv2.putText(
        canvas,
        text,
        (style.stroke, h + style.stroke),
        font,
        scale,
        style.ink,
        style.stroke,
        cv2.LINE_AA,
    )
    return canvas


def _pillow_digits(text: str, style: BibStyle) -> np.ndarray:
    outline = style.stroke // 3
    # Photos are rendered on several threads, and a FreeType face must not be used by two
    # threads at once.
    with _FONT_LOCK:
        font = _pillow_font(style.digit_height)
        x0, y0, x1, y1 = font.getbbox(text, stroke_width=outline)
        image = Image.new("RGB", (x1 - x0, y1 - y0), style.paper)
        ImageDraw.Draw(image).text(
            (-x0, -y0), text, fill=style.ink, font=font, stroke_width=outline, stroke_fill=style.ink
        )
    return np.asarray(image)


_FONT_LOCK = threading.Lock()


@cache
def _pillow_font(digit_height: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font, sized so that its digits are digit_height pixels tall."""
    reference = 100
    _, top, _, bottom = ImageFont.load_default(size=reference).getbbox("0")
    return ImageFont.load_default(size=round(reference * digit_height / (bottom - top)))
