"""A small finished race written straight as results files, for the dashboard's tests.

Three stations, six athletes (one whose name is HTML), small real JPEGs with a painted
bib where the reads' boxes say, and a review queue with one item of each kind the
dashboard treats differently (a camera's: cover_the_finish). The Parquet files are
written with the pipeline's own schemas (and the leaderboard with its own builder) in
milliseconds, where a pipeline run would take many seconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from transforms import schemas
from transforms.course import load_course, load_start_list
from transforms.passages import TOO_LATE, Passage
from transforms.results import build_leaderboard

GUN = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)  # 10:00 in Oslo
HTML_NAME = "<b>Kari</b> <script>alert(1)</script>"
PHOTO_SIZE = (400, 260)
BIB_BOX = (150, 110, 250, 160)

COURSE_YAML = """\
race: {id: test-10k, name: Test 10k, timezone: Europe/Oslo, start: "2026-05-01T10:00:00+02:00"}
stations:
  - {id: start, name: Start, km: 0.0}
  - {id: cp1, name: "5 km", km: 5.0}
  - {id: finish, name: Finish, km: 10.0}
"""

START_LIST_CSV = f"""\
bib,name,category,gender
101,Ingrid Berg,F35,F
102,Ola Hansen,M40,M
103,{HTML_NAME},F35,F
104,Per Dahl,M40,M
105,Anne Moe,F35,F
106,Siri Lunde,F35,F
"""

# bib -> seconds after the gun at each station it was seen at.
TIMES = {
    "101": {"start": 5, "cp1": 1200, "finish": 2400},
    "102": {"start": 6, "finish": 2600},  # its cp1 read was weak: in review
    "103": {"start": 7, "cp1": 1250, "finish": 2500},
    "104": {"start": 8, "cp1": 1500},  # still running
    "106": {"start": 9, "cp1": 1100, "finish": 2200},  # disqualified by an official
}
OFFICIALS = {"106": "dsq"}


@dataclass
class Race:
    """Where the race's files are, and the image_ids the tests act on."""

    root: Path
    out: Path
    images: Path
    ids: dict[str, str] = field(default_factory=dict)  # photo name -> image_id

    @property
    def corrections(self) -> Path:
        return self.out / "corrections.csv"


def _at(seconds: float) -> datetime:
    return GUN + timedelta(seconds=seconds)


def _jpeg(path: Path, label: str, dark: bool = False) -> str:
    """A photo with its name and a painted bib (none when dark); returns its image_id."""
    img = Image.new("RGB", PHOTO_SIZE, (20, 20, 20) if dark else (90, 140, 200))
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), path.stem, fill=(200, 200, 200))  # every photo's bytes differ
    if not dark:
        draw.rectangle(BIB_BOX, fill=(255, 255, 255))
        draw.text((BIB_BOX[0] + 30, BIB_BOX[1] + 18), label, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image_row(race: Race, name: str, station: str, seconds: float, **fields) -> dict:
    path = race.images / station / f"{name}.jpg"
    reads = fields.pop("reads", [])
    race.ids[name] = _jpeg(path, " ".join(b for b, _ in reads), dark=fields.pop("dark", False))
    return {
        "image_id": race.ids[name],
        "path": str(path),
        "station_id": station,
        "taken_at": _at(seconds),
        "status": "passage",
        "reason": None,
        "bibs": [b for b, _ in reads],
        "faces": None,
        "duplicate_of": None,
        "duplicate_of_path": None,
        "reads": [{"bib": b, "confidence": c, "box": list(BIB_BOX)} for b, c in reads],
        "width": PHOTO_SIZE[0],
        "height": PHOTO_SIZE[1],
    } | fields


def _write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


# Athlete 104 was also recognised by face on 103's photo at cp1.
FACE_MATCH = ("104", "cp1-103", 0.9)


def _athlete_photos(images: list[dict], passages: list[Passage]) -> list[dict]:
    """The photo of each passage, and FACE_MATCH, as the pipeline lists them."""
    by_id = {row["image_id"]: row for row in images}

    def row(bib: str, image: dict, method: str, confidence: float) -> dict:
        fields = ("image_id", "path", "station_id", "taken_at")
        return {"bib": bib, "method": method, "confidence": confidence} | {
            f: image[f] for f in fields
        }

    rows = [row(p.bib, by_id[p.image_id], p.method, p.confidence) for p in passages]
    bib, name, confidence = FACE_MATCH
    face_photo = next(r for r in images if r["path"].endswith(f"/{name}.jpg"))
    return rows + [row(bib, face_photo, "face_match", confidence)]


def build_race(root: Path) -> Race:
    """Writes the race below root: course, start list, photos, run.json, five Parquet files."""
    race = Race(root, root / "results", root / "images")
    race.out.mkdir(parents=True)
    (root / "course.yaml").write_text(COURSE_YAML, encoding="utf-8")
    (root / "startlist.csv").write_text(START_LIST_CSV, encoding="utf-8")
    course = load_course(str(root / "course.yaml"))
    athletes = load_start_list(str(root / "startlist.csv"))

    images, passages = [], []
    for bib, seen in TIMES.items():
        for station, seconds in seen.items():
            row = _image_row(race, f"{station}-{bib}", station, seconds, reads=[(bib, 0.97)])
            images.append(row)
            passages.append(
                Passage(bib, station, _at(seconds), "bib_ocr", 0.97, row["image_id"], False, 1)
            )
    weak = _image_row(race, "cp1-weak", "cp1", 1300, reads=[("102", 0.55)], status="review")
    unknown = _image_row(race, "finish-999", "finish", 2700, reads=[("999", 0.95)])
    dark = _image_row(race, "finish-dark", "finish", 2800, dark=True, status="review")
    images += [weak | {"reason": "low_confidence"}, unknown, dark | {"reason": "camera_covered"}]
    passages.append(
        Passage(
            "102", "cp1", _at(1300), "bib_ocr", 0.55, weak["image_id"], True, 1, "low_confidence"
        )
    )

    def review(image_id: str, reason: str, bibs: list[str], station: str, at) -> dict:
        return {
            "image_id": image_id,
            "reason": reason,
            "candidates": bibs,
            "station_id": station,
            "taken_at": at,
            "path": "",
        }

    reviews = [
        review(weak["image_id"], "low_confidence", ["102"], "cp1", weak["taken_at"]),
        review(unknown["image_id"], "unknown_bib", ["999"], "finish", unknown["taken_at"]),
        review(race.ids["finish-102"], "missed_checkpoint", ["102"], "cp1", None),
    ]
    board = build_leaderboard(passages, course, athletes, _at(3000), OFFICIALS)
    windows = [
        {
            "station_id": s.id,
            "window_start": _at(0),
            "window_end": _at(3600),
            "images": sum(r["station_id"] == s.id for r in images),
            "passages": sum(p.station_id == s.id for p in passages),
            "health": "covered" if s.id == "finish" else "ok",
            "last_photo_at": max(r["taken_at"] for r in images if r["station_id"] == s.id),
        }
        for s in course.stations
    ]
    _write(race.out / "images.parquet", images, schemas.IMAGES)
    _write(race.out / "passages.parquet", [vars(p) for p in passages], schemas.PASSAGES)
    _write(race.out / "review.parquet", reviews, schemas.REVIEW)
    _write(race.out / "leaderboard.parquet", board, schemas.leaderboard_schema(course.station_ids))
    _write(race.out / "stations.parquet", windows, schemas.STATIONS)
    _write(
        race.out / schemas.ATHLETE_PHOTOS_FILE,
        _athlete_photos(images, passages),
        schemas.ATHLETE_PHOTOS,
    )
    (race.out / "results.csv").write_text("Place,Bib,Name\n1,101,Ingrid Berg\n", encoding="utf-8")
    run = {
        "images": str(race.images),
        "course": str(root / "course.yaml"),
        "start_list": str(root / "startlist.csv"),
        "facts": str(race.out / "facts"),
        "corrections": None,
    }
    (race.out / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return race


def cover_the_finish(race: Race) -> None:
    """The finish lens was covered (its dark photo, and stations.parquet's covered window,
    are in every race): its camera item joins the queue. Left out of the race itself, as it
    comes first in the queue, before the photos most tests decide."""
    dark = next(r for r in pq.read_table(race.out / "images.parquet").to_pylist()
                if r["reason"] == "camera_covered")  # fmt: skip
    review = pq.read_table(race.out / "review.parquet")
    item = {"image_id": dark["image_id"], "reason": "camera_covered", "candidates": [],
            "station_id": "finish", "taken_at": dark["taken_at"], "path": ""}  # fmt: skip
    rows = [*review.to_pylist(), item]
    pq.write_table(pa.Table.from_pylist(rows, schema=review.schema), race.out / "review.parquet")


def hold_too_late(race: Race, late: list[str]) -> None:
    """These finish photos came in after the allowed lateness: held, one item for them."""
    images = pq.read_table(race.out / "images.parquet")
    rows = images.to_pylist()
    for row in rows:
        if row["image_id"] in late:
            row.update(status="review", reason=TOO_LATE)
    pq.write_table(pa.Table.from_pylist(rows, schema=images.schema), race.out / "images.parquet")
    first = next(r for r in rows if r["image_id"] == late[0])
    review = [
        {"image_id": late[0], "reason": TOO_LATE, "candidates": ["101", "103"],
         "station_id": "finish", "taken_at": first["taken_at"], "path": ""}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")


def start_early(race: Race, bib: str) -> str:
    """The athlete's start photo shows them crossing before their wave's gun: the one item of
    the queue, early_start, as CheckSplits leaves it; returns the photo's image_id."""
    images = pq.read_table(race.out / "images.parquet").to_pylist()
    start = next(r for r in images if r["image_id"] == race.ids[f"start-{bib}"])
    review = [
        {"image_id": start["image_id"], "reason": "early_start", "candidates": [bib],
         "station_id": "start", "taken_at": start["taken_at"], "path": ""}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")
    return start["image_id"]


def await_cp1(race: Race) -> None:
    """Live: cp1's phone has sent nothing since its last photo (10:25:00, local) while runners
    were due there, and its photos may still come: its window from 11:00 is `awaited`."""
    windows = pq.read_table(race.out / "stations.parquet")
    awaited = {"station_id": "cp1", "window_start": _at(3600), "window_end": _at(3900),
               "images": 0, "passages": 0, "health": "awaited", "last_photo_at": None}  # fmt: skip
    rows = [*windows.to_pylist(), awaited]
    pq.write_table(pa.Table.from_pylist(rows, schema=windows.schema), race.out / "stations.parquet")


def silent_all_day(race: Race, station: str) -> None:
    """The station's camera sent no photo while runners were due there from 10:10: the one
    item of the queue, camera_silent about no photo (transforms.health)."""
    review = [
        {"image_id": "", "reason": "camera_silent", "candidates": [], "station_id": station,
         "taken_at": _at(600), "path": None}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")


def doubt_a_face(race: Race, candidates: list[str]) -> str:
    """A face on cp1's weak photo (102 read at 55 %) is like these athletes' reference photos,
    surely none of them: the one item of the queue; returns the photo's image_id."""
    image_id = race.ids["cp1-weak"]
    review = [
        {"image_id": image_id, "reason": "face_uncertain", "candidates": candidates,
         "station_id": "cp1", "taken_at": _at(1300), "path": ""}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")
    return image_id


CLOCK_NOTE = (
    "The clock of 5 km looks about 38 s fast: ... write clock_offset_s: -41 for station cp1"
)


def suspect_cp1_clock(race: Race) -> str:
    """cp1's clock looks 38 s fast (transforms.clocks), shown by 103's photo there: the one
    item of the queue; returns that photo's image_id."""
    image_id = race.ids["cp1-103"]
    review = [
        {"image_id": image_id, "reason": "clock_suspect", "candidates": [], "station_id": "cp1",
         "taken_at": _at(1250), "path": None, "note": CLOCK_NOTE, "clock_offset_s": -41.0}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")
    return image_id


def list_since_rejected(race: Race, bib: str) -> str:
    """The finish photo of 999, rejected while no athlete had that number, which the start
    list lists now: the one item of the queue, as transforms.identify raises it; returns the
    photo's image_id."""
    image_id = race.ids["finish-999"]
    note = (f"The number read here was rejected while no athlete in the start list had it; "
            f"the start list lists {bib} now, so the read counts again.")  # fmt: skip
    review = [
        {"image_id": image_id, "reason": "listed_since_rejected", "candidates": [bib],
         "station_id": "finish", "taken_at": _at(2700), "path": "", "note": note}
    ]  # fmt: skip
    schema = pq.read_schema(race.out / "review.parquet")
    pq.write_table(pa.Table.from_pylist(review, schema=schema), race.out / "review.parquet")
    return image_id
