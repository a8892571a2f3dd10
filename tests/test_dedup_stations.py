"""One photo in the folders of two stations: an official places it, nothing guesses."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from pipeline.cli import main
from pipeline.retime import identify_all
from tests.conftest import athlete, make_course, photo, read, restored_logging
from transforms.corrections import Correction, append_corrections
from transforms.records import ExifFacts

AS_OF = "2026-05-01T16:00:00+00:00"


def _rows(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / name).to_pylist()


def _run(race: Path, images: Path, out: Path, *extra: str) -> None:
    argv = [
        "run", "--images", str(images), "--course", str(race / "course.yaml"),
        "--start-list", str(race / "startlist.csv"), "--out", str(out),
        "--as-of", AS_OF, "--no-progress", *extra,
    ]  # fmt: skip
    with restored_logging():
        assert main(argv) == 0


def test_run__a_start_photo_copied_into_finish_waits_for_an_official(
    race: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    shutil.copytree(race / "images", images)
    first = _rows_of_run(race, images, tmp_path / "before")
    start = next(
        r
        for r in sorted(first, key=lambda r: r["path"])
        if r["station_id"] == "start" and r["status"] == "passage" and len(r["bibs"]) >= 2
    )
    copy = images / "finish" / Path(start["path"]).name
    shutil.copyfile(start["path"], copy)
    out = tmp_path / "out"
    _run(race, images, out)

    rows = {r["path"]: r for r in _rows(out, "images.parquet")}
    assert len(rows) == len(first) + 1  # every file one row
    kept, other = rows[str(copy)], rows[start["path"]]  # finish/ comes first by path
    assert (kept["status"], kept["reason"]) == ("review", "station_conflict")
    assert (other["status"], other["reason"]) == ("duplicate", "exact_duplicate")
    assert other["duplicate_of"] == start["image_id"]
    [item] = [r for r in _rows(out, "review.parquet") if r["image_id"] == start["image_id"]]
    assert item["reason"] == "station_conflict"
    assert set(item["candidates"]) == set(start["bibs"])
    assert (item["station_id"], item["taken_at"]) == (None, None)
    # What an official (or any reader of review.parquet) places it by: the stations its
    # copies came in for and its time, the camera's own as the start's clock offset (-3 s)
    # is not the finish's (0, so the finish copy's time). Both were empty: failed before,
    # passes.
    assert (item["could_be_at"], item["exif_taken_at"]) == (["finish", "start"], kept["taken_at"])
    assert kept["taken_at"] - start["taken_at"] == timedelta(seconds=3)
    # Timed at neither station: no passage from it, no implausible finish to review.
    passages = _rows(out, "passages.parquet")
    assert start["image_id"] not in {p["image_id"] for p in passages}
    assert not [r for r in _rows(out, "review.parquet") if r["reason"] == "implausible_split"]

    # The official says it is the start's: assigned there, at the start copy's time.
    log = tmp_path / "corrections.csv"
    decided = datetime(2026, 5, 1, 12, tzinfo=UTC)
    append_corrections(
        str(log),
        [
            Correction(start["image_id"], "assign", b, "start", start["taken_at"], decided, "kari")
            for b in start["bibs"]
        ],
    )
    _run(race, images, out, "--corrections", str(log))
    timed = {(p["bib"], p["station_id"], p["passed_at"]) for p in _rows(out, "passages.parquet")}
    assert {(b, "start", start["taken_at"]) for b in start["bibs"]} <= timed
    rows = {r["path"]: r for r in _rows(out, "images.parquet")}
    assert rows[str(copy)]["reason"] == "assigned_by_official"
    # Its row says where and when the official placed it.
    assert (rows[str(copy)]["station_id"], rows[str(copy)]["taken_at"]) == (
        "start",
        start["taken_at"],
    )
    assert rows[start["path"]]["status"] == "duplicate"  # still the other copy's row
    assert start["image_id"] not in {r["image_id"] for r in _rows(out, "review.parquet")}


def _rows_of_run(race: Path, images: Path, out: Path) -> list[dict]:
    _run(race, images, out)
    return _rows(out, "images.parquet")


def test_identify_all__a_copy_in_no_station_folder_is_nothing_to_review(tmp_path: Path) -> None:
    # The finish photo is also in misc/ (a folder of no station): that copy is rejected as
    # unknown_station; it was queued as a photo to place, while the photo is timed already.
    exif = ExifFacts(datetime_original="2026:05:01 10:40:00", offset="+02:00")
    finish = photo("f", folder="finish", station=None, seconds=None, exif=exif, bibs=(read("101"),))
    misc = replace(finish, path="/race/images/misc/f.jpg", folder="misc")
    cfg = SimpleNamespace(
        course=make_course(),
        athletes=(athlete("101"),),
        corrections=(),
        start_list_file=str(tmp_path / "startlist.csv"),
    )
    identified = identify_all([finish, misc], cfg)
    assert [s.station_id for i in identified for s in i.sightings] == ["finish"]
    assert [r.reason for i in identified for r in i.review] == []
    # Its row is a duplicate of the photo timed, not a rejected photo of no station.
    [copy] = [i.photo for i in identified if i.photo.path == misc.path]
    assert (copy.status, copy.reason, copy.duplicate_of_path) == (
        "duplicate",
        "exact_duplicate",
        finish.path,
    )


def _cfg(tmp_path: Path) -> SimpleNamespace:
    return SimpleNamespace(
        course=make_course(),
        athletes=(athlete("101"),),
        corrections=(),
        start_list_file=str(tmp_path / "startlist.csv"),
    )


def test_identify_all__a_unique_photo_of_no_station_is_queued(tmp_path: Path) -> None:
    # A camera folder named wrongly: its photos are copies of nothing; an official places them.
    exif = ExifFacts(datetime_original="2026:05:01 10:40:00", offset="+02:00")
    lost = photo("f", folder="Finsh", station=None, seconds=None, exif=exif, bibs=(read("101"),))
    [shown] = identify_all([lost], _cfg(tmp_path))
    assert (shown.photo.status, shown.photo.reason) == ("rejected", "unknown_station")
    assert [(r.reason, r.candidates) for r in shown.review] == [("unknown_station", ("101",))]


def test_identify_all__copies_of_a_rejected_photo_are_one_to_review(tmp_path: Path) -> None:
    # Two copies of a photo with a broken clock: one rejected photo, one duplicate of it.
    broken = ExifFacts(datetime_original="nonsense", offset="+02:00")
    first = photo(
        "f", folder="finish", station=None, seconds=None, exif=broken, bibs=(read("101"),)
    )
    second = replace(first, path="/race/images/finish/g.jpg")
    identified = identify_all([second, first], _cfg(tmp_path))
    rows = sorted((i.photo.path, i.photo.status, i.photo.reason) for i in identified)
    assert rows == [
        (first.path, "rejected", "bad_exif"),
        (second.path, "duplicate", "exact_duplicate"),
    ]
    assert [r.reason for i in identified for r in i.review] == ["bad_exif"]


def test_run__copies_in_folders_of_no_station(race: Path, tmp_path: Path) -> None:
    # A finish photo copied into misc/; another moved into lost/ and copied into lost2/.
    images = tmp_path / "images"
    shutil.copytree(race / "images", images)
    first = _rows_of_run(race, images, tmp_path / "before")
    timed, moved = [
        r
        for r in sorted(first, key=lambda r: r["path"])
        if r["station_id"] == "finish" and r["status"] == "passage"
    ][:2]
    (images / "misc").mkdir()
    shutil.copyfile(timed["path"], images / "misc" / "a.jpg")
    for folder in ("lost", "lost2"):
        (images / folder).mkdir()
        shutil.copyfile(moved["path"], images / folder / "b.jpg")
    Path(moved["path"]).unlink()
    out = tmp_path / "out"
    _run(race, images, out)

    rows = {r["path"]: r for r in _rows(out, "images.parquet")}
    copy = rows[str(images / "misc" / "a.jpg")]
    assert (copy["status"], copy["reason"], copy["duplicate_of_path"]) == (
        "duplicate",
        "exact_duplicate",
        timed["path"],
    )
    lost, lost2 = rows[str(images / "lost" / "b.jpg")], rows[str(images / "lost2" / "b.jpg")]
    assert (lost["status"], lost["reason"]) == ("rejected", "unknown_station")
    assert (lost2["status"], lost2["reason"]) == ("duplicate", "exact_duplicate")
    review = _rows(out, "review.parquet")
    assert timed["image_id"] not in {r["image_id"] for r in review}
    [item] = [r for r in review if r["image_id"] == moved["image_id"]]
    assert item["reason"] == "unknown_station"
