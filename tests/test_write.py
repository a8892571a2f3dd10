"""Writing results: Parquet files with exactly their schema, in a stable order, replaced whole."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.portability import common_urns
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import CONTRACT_COLUMNS, at, athlete, passage, photo, read
from transforms import schemas
from transforms.course import Course
from transforms.identify import ReviewItem
from transforms.passages import Passage
from transforms.results import build_leaderboard
from transforms.write import (
    ATHLETE_PHOTOS_FILE,
    BATCH_ROWS,
    IMAGES_FILE,
    LEADERBOARD_FILE,
    PASSAGES_FILE,
    RESULTS_CSV,
    REVIEW_FILE,
    STATIONS_FILE,
    Gathered,
    GatherParts,
    GatherTable,
    OutputFile,
    Route,
    WriteFiles,
    WriteResults,
    outputs_of,
    passage_row,
    table_bytes,
    write_arrow,
)

SCHEMA = pa.schema(
    [
        pa.field("bib", pa.string(), nullable=False),
        pa.field("passed_at", schemas.UTC_TIME),
        pa.field("reads", pa.list_(pa.string())),
    ]
)
ROWS = [
    {"bib": "103", "passed_at": at(30.5), "reads": ["103"]},
    {"bib": "101", "passed_at": at(10.25), "reads": []},
    {"bib": "102", "passed_at": None, "reads": ["102", "12"]},
]


def _write_table(rows: beam.PCollection, path: Path, order) -> beam.PCollection:
    """Rows -> the one file at `path`, as WriteResults writes each of its Parquet files."""
    files = {path.name: OutputFile(GatherTable(SCHEMA, order), write_arrow)}
    return {"Rows": rows} | WriteFiles(str(path.parent), files, {"Rows": Route((path.name,))})


def _write(path: Path, rows: list[dict]) -> None:
    with TestPipeline() as p:
        written = _write_table(
            p | beam.Create(rows, reshuffle=False), path, order=lambda r: r["bib"]
        )
        assert_that(written, equal_to([str(path)]))


def test_write_table__file_has_exactly_the_schema_and_the_rows_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    _write(path, ROWS)
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    assert table.to_pylist() == sorted(ROWS, key=lambda r: r["bib"])
    assert os.listdir(tmp_path) == ["t.parquet"], "no temporary file is left behind"


def test_write_table__empty_pcollection_still_writes_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    _write(path, [])
    table = pq.read_table(path)
    assert (table.num_rows, table.schema.equals(SCHEMA)) == (0, True)


def test_write_table__same_rows_in_another_order_give_the_same_bytes(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", ROWS)
    _write(tmp_path / "b.parquet", ROWS[::-1])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def _many_rows(count: int) -> list[dict]:
    """Rows in no order, a few of them tied on the file's milliseconds."""
    rows = [
        {"bib": str(i % 97), "passed_at": at((i * 7919) % count / 3), "reads": [str(i)] * (i % 3)}
        for i in range(count)
    ]
    # Apart by 0.8 ms in the rows, in the same millisecond in the file; the later bib first.
    rows[5] = {"bib": "a", "passed_at": at(0.0009), "reads": []}
    rows[9] = {"bib": "b", "passed_at": at(0.0001), "reads": ["b"]}
    return rows


def _by_time(row: dict) -> tuple:
    return row["passed_at"], row["bib"]


def test_gather_table__batches_give_the_table_sorted_rows_give() -> None:
    rows = _many_rows(3 * BATCH_ROWS + 17)
    expected = pa.Table.from_pylist(sorted(rows, key=_by_time), schema=SCHEMA)
    with TestPipeline() as p:
        gathered = (
            p
            | beam.Create(rows)
            | beam.CombineGlobally(GatherTable(SCHEMA, _by_time))
            | beam.Map(lambda table: table.equals(expected))
        )
        assert_that(gathered, equal_to([True]))


def test_gathered__pickled_comes_back_the_same_in_under_half_the_bytes() -> None:
    rows = [
        {"bib": f"{i:04d}", "passed_at": at(i / 7), "reads": [f"/race/images/finish/IMG_{i}.jpg"]}
        for i in range(3 * BATCH_ROWS)
    ]
    gather = GatherTable(SCHEMA, _by_time)
    gathered = gather.create_accumulator()
    for row in rows + ROWS[:2]:  # the last two stay rows, not batched yet
        gathered = gather.add_input(gathered, row)
    as_fields = pickle.dumps((gathered.batches, gathered.rows, gathered.keys))

    back = pickle.loads(pickle.dumps(gathered))

    assert [b.equals(c) for b, c in zip(back.batches, gathered.batches, strict=True)] == [True] * 3
    assert (back.rows, back.keys) == (gathered.rows, gathered.keys)
    assert gather.extract_output(back).equals(gather.extract_output(gathered))
    assert pickle.loads(pickle.dumps(Gathered())) == Gathered()
    assert len(pickle.dumps(gathered)) < 0.5 * len(as_fields)


def test_gather_table__orders_by_the_rows_microseconds_not_the_files_milliseconds() -> None:
    rows = _many_rows(20)
    with TestPipeline() as p:
        bibs = (
            p
            | beam.Create(rows)
            | beam.CombineGlobally(GatherTable(SCHEMA, _by_time))
            | beam.Map(lambda table: table.column("bib").to_pylist()[:2])
        )
        assert_that(bibs, equal_to([["0", "b"]]))


def test_write_table__file_is_byte_for_byte_the_sorted_rows_file(tmp_path: Path) -> None:
    rows = _many_rows(2 * BATCH_ROWS + 5)
    path = tmp_path / "t.parquet"
    with TestPipeline() as p:
        _write_table(p | beam.Create(rows), path, order=_by_time)
    assert path.read_bytes() == table_bytes(sorted(rows, key=_by_time), SCHEMA)


def test_write_table__rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    _write(path, ROWS)
    with path.open("rb") as reader_of_the_old_file:
        _write(path, ROWS[:1])
        # A dashboard that opened the file before the rewrite still reads the complete old one.
        assert pq.read_table(reader_of_the_old_file).num_rows == 3
    assert pq.read_table(path).to_pylist() == ROWS[:1]
    assert os.listdir(tmp_path) == ["t.parquet"]


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        (IMAGES_FILE, schemas.IMAGES),
        (PASSAGES_FILE, schemas.PASSAGES),
        (REVIEW_FILE, schemas.REVIEW),
        (LEADERBOARD_FILE, schemas.leaderboard_schema(("start", "cp1", "finish"))),
        (STATIONS_FILE, schemas.STATIONS),
    ],
)
def test_schemas__start_with_the_contract_columns(name: str, schema: pa.Schema) -> None:
    contract = CONTRACT_COLUMNS[name]
    assert tuple(schema.names[: len(contract)]) == contract


def test_schemas__leaderboard_has_one_split_per_station_in_course_order() -> None:
    names = schemas.leaderboard_schema(("start", "cp1", "finish")).names
    splits = [n for n in names if n.startswith("at_")]
    assert splits == ["at_start_s", "at_cp1_s", "at_finish_s"]


def _write_results(
    out: Path,
    course: Course,
    leaderboard: list[dict],
    passages: list[Passage] | None = None,
    athlete_photos: list[dict] | None = None,
    review: list[ReviewItem] | None = None,
) -> None:
    review = review or [ReviewItem("id-r", "/x/r.jpg", "unknown_bib", ("999",), "finish", at(5))]
    image = photo("b", status="passage", bibs=(read("101"),))
    with TestPipeline() as p:
        outputs = {
            "images": p | "Images" >> beam.Create([image]),
            "passages": p | "Passages" >> beam.Create(passages or [], reshuffle=False),
            "review": p | "Review" >> beam.Create(review),
            # One element unpacked in one bundle: the arrival order is exactly this list's.
            "leaderboard": p | "Board" >> beam.Create([leaderboard]) | beam.FlatMap(lambda r: r),
            "stations": p | "Stations" >> beam.Create([]),
            "athlete_photos": p | "AthletePhotos" >> beam.Create(athlete_photos or []),
        }
        outputs | WriteResults(str(out), course)


def test_write_results__five_files_and_passages_in_course_order(
    tmp_path: Path, course: Course
) -> None:
    passages = [
        passage("101", "finish", 2400),
        passage("101", "start", 30),
        passage("102", "cp1", 1300),
        passage("101", "cp1", 1230),
    ]
    _write_results(tmp_path, course, [], passages)
    assert set(CONTRACT_COLUMNS) <= set(os.listdir(tmp_path))
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n], "no temporary file is left"
    written = pq.read_table(tmp_path / PASSAGES_FILE)
    assert written.schema.equals(schemas.PASSAGES)
    assert written.to_pylist() == [
        passage_row(passages[1]),
        passage_row(passages[3]),
        passage_row(passages[2]),
        passage_row(passages[0]),
    ]


def test_write_results__leaderboard_and_csv_are_in_rank_order_whatever_the_arrival(
    tmp_path: Path, course: Course
) -> None:
    athletes = tuple(athlete(b) for b in ("101", "102", "103"))
    ranked = build_leaderboard(
        [passage("102", "finish", 2000), passage("101", "finish", 2100)], course, athletes, at(9999)
    )
    _write_results(tmp_path, course, ranked[::-1])
    board = pq.read_table(tmp_path / LEADERBOARD_FILE).to_pylist()
    assert [r["bib"] for r in board] == ["102", "101", "103"]
    with (tmp_path / RESULTS_CSV).open(encoding="utf-8") as f:
        assert [r["Bib"] for r in csv.DictReader(f)] == ["102", "101", "103"]


def test_write_results__every_file_is_gathered_in_one_grouping(course: Course) -> None:
    # Each worker sets up every stage of the graph at start-up: one grouping for the seven
    # files, not one (and a stage for its default) per file.
    p = beam.Pipeline()
    outputs = {key: p | key >> beam.Create([]) for key in outputs_of(course)}
    outputs | "WriteResults" >> WriteResults("/nowhere", course)
    transforms = p.to_runner_api().components.transforms.values()
    groupings = [
        t.unique_name
        for t in transforms
        if t.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn
        and t.unique_name.startswith("WriteResults/")
    ]
    assert len(groupings) == 1, groupings


def test_write_results__review_rows_without_a_photo_path_have_it_null(
    tmp_path: Path, course: Course
) -> None:
    # A missed checkpoint is about an athlete, not a photo file: its path is null, not ''
    # (failed before, passes), and sorts beside photos that have no time either.
    missed = ReviewItem("id-fin", None, "missed_checkpoint", ("101",), "cp1", None)
    no_time = ReviewItem("id-x", "/x/x.jpg", "bad_exif", ("102",), None, None)
    _write_results(tmp_path, course, [], review=[no_time, missed])
    rows = pq.read_table(tmp_path / REVIEW_FILE).to_pylist()
    assert [(r["reason"], r["path"]) for r in rows] == [
        ("missed_checkpoint", None),
        ("bad_exif", "/x/x.jpg"),
    ]


def test_write_results__athlete_photos_by_bib_then_time(tmp_path: Path, course: Course) -> None:
    def row(bib: str, image: str, seconds: float | None) -> dict:
        taken = None if seconds is None else at(seconds)
        return {
            "bib": bib,
            "image_id": f"id-{image}",
            "path": f"/x/{image}.jpg",
            "station_id": "finish",
            "taken_at": taken,
            "method": "face_match",
            "confidence": 0.8,
        }

    rows = [
        row("102", "a", 50),
        row("101", "c", 90),
        row("101", "no-exif", None),
        row("101", "b", 10),
    ]
    _write_results(tmp_path, course, [], athlete_photos=rows)
    written = pq.read_table(tmp_path / ATHLETE_PHOTOS_FILE)
    assert written.schema.equals(schemas.ATHLETE_PHOTOS)
    assert [(r["bib"], r["image_id"]) for r in written.to_pylist()] == [
        ("101", "id-no-exif"),
        ("101", "id-b"),
        ("101", "id-c"),
        ("102", "id-a"),
    ]


def test_gather_parts__yields_each_files_part_and_keeps_none_after_its_bundle() -> None:
    rows = _many_rows(BATCH_ROWS + 3)
    files = {"t.parquet": OutputFile(GatherTable(SCHEMA, _by_time), write_arrow)}
    parts = GatherParts(("t.parquet",), None, files)
    parts.start_bundle()
    for row in rows:
        parts.process(row)
    [(name, part)] = [value.value for value in parts.finish_bundle()]
    expected = pa.Table.from_pylist(sorted(rows, key=_by_time), schema=SCHEMA)
    assert name == "t.parquet"
    assert files[name].gather.extract_output(pickle.loads(part)).equals(expected)
    assert parts._parts == {}
