"""Writing the results: one Parquet file per output, complete or not at all.

Each table is gathered, sorted into a stable order (so two runs on the same
input give byte-identical files) and written under a temporary name that is
renamed into place, on any Beam filesystem. The write happens in `process()`,
which every runner executes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import io
import logging
import os
import pickle
import posixpath
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from transforms import schemas
from transforms.course import Course
from transforms.export import CSV_ENCODING, results_csv
from transforms.identify import ReviewItem, best_reads
from transforms.passages import Passage
from transforms.records import Photo
from transforms.results import results_order
from transforms.schemas import (
    ATHLETE_PHOTOS_FILE,
    IMAGES_FILE,
    LEADERBOARD_FILE,
    PASSAGES_FILE,
    RESULTS_CSV,
    REVIEW_FILE,
    STATIONS_FILE,
)

# A file being written is named `<name>.tmp-<suffix>` (temporary_name): it never ends in
# .parquet or .json, so nobody mistakes one a killed run left for an output.
TEMPORARY_MARK = ".tmp-"
# Writing a file takes seconds; a temporary file this old was left by a run that died.
STALE_AFTER_S = 3600.0

log = logging.getLogger(__name__)


def write_parquet(table: pa.Table, sink: object) -> None:
    pq.write_table(table, sink, compression="zstd")


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    write_parquet(table, buffer)
    return buffer.getvalue()


def table_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    return parquet_bytes(pa.Table.from_pylist(rows, schema=schema))


def temporary_name(path: str) -> str:
    """A name to write `path` under before renaming it, that no other writer uses: processes
    on several machines (same pid) and threads of one process may write the same path at
    once (exact copies of a photo analysed side by side)."""
    return f"{path}{TEMPORARY_MARK}{os.getpid()}-{uuid.uuid4().hex}"


def write_atomically(path: str, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    write_atomically_by(path, lambda f: f.write(data))


def write_atomically_by(path: str, write: Callable[[object], object]) -> None:
    """As write_atomically, the file's bytes written by `write(file)`. Where it fails, the
    temporary file is removed; where the disk (or quota) is full, whatever `no_room_told_to`
    gave is told `path` first, then NoRoom is raised."""
    tmp = temporary_name(path)
    try:
        with FileSystems.create(tmp) as f:
            write(f)
        # Local rename is os.rename (atomic replace); object stores copy then delete.
        FileSystems.rename([tmp], [path])
    except BaseException as e:
        with contextlib.suppress(BeamIOError):  # not made, or gone
            delete_files([tmp])
        if not is_no_room(e):
            raise
        tell_no_room(path)
        raise NoRoom(errno.ENOSPC, "no space left on device", path) from e


# What a write that finds its disk full fails with: no space, or the user's quota used up.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


class NoRoom(OSError):
    """A write found its disk (or quota) full; `filename` is the file it was writing."""


def is_no_room(error: BaseException) -> bool:
    """Whether `error` is a write's that found its disk full (Beam wraps a rename's)."""
    if isinstance(error, BeamIOError):
        return any(map(is_no_room, error.exception_details.values()))
    return isinstance(error, OSError) and error.errno in NO_ROOM


# Told the path of each write that finds its disk full, before it fails (no_room_told_to).
_TOLD_OF_NO_ROOM: list[Callable[[str], None]] = []


def tell_no_room(path: str) -> None:
    """Tells what `no_room_told_to` gave that a write of `path` found its disk full."""
    for tell in _TOLD_OF_NO_ROOM:
        tell(path)


@contextlib.contextmanager
def no_room_told_to(tell: Callable[[str], None]) -> Iterator[None]:
    """Meanwhile, a write that finds its disk full calls `tell(its path)` before it fails,
    in this process and in those it forks: a launcher ends its run there in one line
    (pipeline/interrupted.py) where the failure would end it with every worker's traceback."""
    _TOLD_OF_NO_ROOM.append(tell)
    try:
        yield
    finally:
        _TOLD_OF_NO_ROOM.remove(tell)


# What Beam's file patterns take as wildcards, and each written as a class that matches it:
# '[' as '[][]' (']' or '['), since a class that starts with '[' makes Python's re warn of a
# nested set (a FutureWarning on the terminal).
_WILDCARD = re.compile(r"[\[*?]")
_LITERALLY = {"[": "[][]", "*": "[*]", "?": "[?]"}


def files_in(folder: str, depth: str = "**") -> str:
    """The Beam file pattern of the files in `folder`, at any depth (`**`) or directly in it
    (`*`), its name taken literally: `[`, `*` and `?` in it were wildcards, so a photos
    folder named 'race [2026]' listed no photo (every athlete dns), or a folder beside it."""
    return _WILDCARD.sub(lambda m: _LITERALLY[m[0]], folder.rstrip("/")) + "/" + depth


def listed_files(folder: str, depth: str = "**", marked: str = "") -> list[FileMetadata]:
    """The files in `folder`, at any depth (`**`) or directly in it (`*`), as Beam's match
    lists them (`files_in`); only those whose name holds `marked`, where given. A local
    folder is walked from itself: Beam walks from the folder that holds a pattern's first
    wildcard character, so for a photos folder named 'race [2026]' it walked the folder above
    whole, every race on that disk. Nor is a local file not `marked` looked at: the search
    for temporary files (a stat a file) took 0.25 CPU s per 40,000 facts, at every run's
    start and in every stop."""
    if not _is_local(folder):
        matched = FileSystems.match([files_in(folder, depth)])[0].metadata_list
        return [m for m in matched if marked in posixpath.basename(m.path)]
    # As Beam's LocalFileSystem lists them: links to files followed, links to folders not,
    # entries that cannot be looked at (a broken link, a file gone meanwhile) left out.
    found = []
    for parent, _, names in os.walk(folder.rstrip("/") or "/"):
        for path in (os.path.join(parent, name) for name in names if marked in name):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found.append(FileMetadata(path, st.st_size, st.st_mtime))
        if depth != "**":
            break
    return found


def _is_local(path: str) -> bool:
    """Whether `path` is on this machine's disk (no Beam filesystem's scheme://)."""
    return "://" not in path


def delete_files(paths: list[str]) -> None:
    """Deletes the files named, each taken literally (one gone already is no error); raises
    BeamIOError naming those that could not be. Beam's delete takes each path for a pattern:
    a temporary file in 'race [2026]/out' was never found, and one in 'race */out' would be
    deleted in 'race 1/out' too."""
    failed: dict[str, Exception] = {}
    remote = [path for path in paths if not _is_local(path)]
    for path in (path for path in paths if _is_local(path)):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            failed[path] = e
    if remote:
        try:
            FileSystems.delete(remote)
        except BeamIOError as e:
            failed.update(e.exception_details)
    if failed:
        raise BeamIOError("Delete operation failed", failed)


def remove_stale_temporaries(
    folders: Iterable[str], older_than_s: float = STALE_AFTER_S
) -> list[str]:
    """Deletes the temporary files that killed runs left under `folders`; returns them.

    Only old ones: a fresh one may belong to a run still writing into the same folder (live
    mode, or the dashboard re-timing the results).
    """
    cutoff = time.time() - older_than_s
    stale = sorted(
        {
            m.path
            for folder in folders
            for m in listed_files(folder, marked=TEMPORARY_MARK)
            if m.last_updated_in_seconds < cutoff
        }
    )
    try:
        delete_files(stale)
    except BeamIOError as e:  # another run cleaned up at the same time: nothing is lost
        log.warning("could not remove every stale temporary file: %s", e)
    return stale


def write_table(rows: list[dict], path: str, schema: pa.Schema, order: Callable | None) -> str:
    ordered = sorted(rows, key=order) if order else rows
    write_atomically(path, table_bytes(ordered, schema))
    return path


# Rows are held as Arrow record batches of this many rows while they are gathered: columns
# hold a row in a fraction of what its dict does (an images.parquet row: ~1.8 KB as a dict).
BATCH_ROWS = 256


# How Gathered parts travel between stages (the DirectRunner's launcher holds them whole):
# the batches as an Arrow stream compressed with zstd, the rest pickled and deflated.
PARTS_IPC = pa.ipc.IpcWriteOptions(compression="zstd")


@dataclass
class Gathered:
    """Rows on their way into one table: the batched ones, then those not batched yet, and
    the sort key of each, in that order."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    keys: list = field(default_factory=list)

    def __reduce__(self) -> tuple:
        # Paths and hex ids compress well: about a third of the bytes Beam's own pickling
        # of the batches and keys takes.
        stream = None
        if self.batches:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.batches[0].schema, options=PARTS_IPC) as writer:
                for batch in self.batches:
                    writer.write_batch(batch)
            stream = sink.getvalue().to_pybytes()
        rest = pickle.dumps((self.rows, self.keys), protocol=pickle.HIGHEST_PROTOCOL)
        return _gathered_of, (stream, zlib.compress(rest, 1))


def _gathered_of(stream: bytes | None, rest: bytes) -> Gathered:
    batches = list(pa.ipc.open_stream(stream)) if stream is not None else []
    rows, keys = pickle.loads(zlib.decompress(rest))
    return Gathered(batches, rows, keys)


class GatherTable(beam.CombineFn):
    """Rows -> one Arrow table of `schema`, sorted by `order` as `sorted(rows, key=order)`
    sorts them (stable; None: arrival order).

    The keys are taken from the rows as they arrive, not from the table: its timestamps
    are milliseconds, the rows' microseconds."""

    def __init__(self, schema: pa.Schema, order: Callable[[dict], object] | None = None):
        super().__init__()
        self._schema = schema
        self._order = order

    def create_accumulator(self) -> Gathered:
        return Gathered()

    def add_input(self, gathered: Gathered, row: dict) -> Gathered:
        gathered.rows.append(row)
        if self._order is not None:
            gathered.keys.append(self._order(row))
        if len(gathered.rows) >= BATCH_ROWS:
            self.compact(gathered)
        return gathered

    def compact(self, gathered: Gathered) -> Gathered:
        if gathered.rows:
            gathered.batches.append(pa.RecordBatch.from_pylist(gathered.rows, schema=self._schema))
            gathered.rows = []
        return gathered

    def merge_accumulators(self, accumulators: Iterable[Gathered]) -> Gathered:
        merged = Gathered()
        for gathered in accumulators:
            self.compact(gathered)
            merged.batches.extend(gathered.batches)
            merged.keys.extend(gathered.keys)
        return merged

    def extract_output(self, gathered: Gathered) -> pa.Table:
        table = pa.Table.from_batches(self.compact(gathered).batches, schema=self._schema)
        if self._order is not None:
            ordered = sorted(range(len(gathered.keys)), key=gathered.keys.__getitem__)
            table = table.take(pa.array(ordered, pa.int64()))
        # One chunk, as from_pylist makes: the file's bytes then do not depend on batching.
        return table.combine_chunks()


def write_arrow(table: pa.Table, path: str) -> str:
    # Straight into the file: the whole file in memory, and a copy of it, are not needed.
    write_atomically_by(path, functools.partial(write_parquet, table))
    return path


@dataclass(frozen=True)
class OutputFile:
    """How one file is gathered from its rows and written: `write(gather's output, path)`."""

    gather: beam.CombineFn
    write: Callable[[object, str], str]


class GatherParts(beam.DoFn):
    """An output's elements -> (file name, part) per file at the end of each bundle: the
    part gathers the bundle's rows of that file (`row` makes them from the elements) with
    the file's CombineFn, where the rows are made.

    As Beam does for a combine after a grouping, so that only the parts (Arrow batches,
    see GatherTable) travel to the launcher and wait there; done by hand because the parts
    of every file meet in one grouping (WriteFiles), whose input Beam's own lifting would
    hold whole, row by row. Each part waits pickled (its bytes, see Gathered): write_parts
    decodes one at a time as it merges them."""

    def __init__(self, names: tuple[str, ...], row: Callable | None, files: dict[str, OutputFile]):
        super().__init__()
        self._names = names
        self._row = row
        self._gathers = {name: files[name].gather for name in names}

    def start_bundle(self) -> None:
        self._parts = {name: gather.create_accumulator() for name, gather in self._gathers.items()}
        self._empty = True

    def process(self, element: object) -> None:
        row = self._row(element) if self._row else element
        for name, gather in self._gathers.items():
            self._parts[name] = gather.add_input(self._parts[name], row)
        self._empty = False

    def finish_bundle(self) -> Iterator[WindowedValue]:
        # The parts go with the bundle: Beam keeps this DoFn for its next bundle, and in the
        # launcher's in-process worker a bundle is the whole collection, held until then.
        parts, self._parts = self._parts, {}
        if self._empty:
            return
        for name, part in parts.items():
            pickled = (name, _pickled(self._gathers[name].compact(part)))
            yield WindowedValue(pickled, GlobalWindow().max_timestamp(), (GlobalWindow(),))


def _pickled(part: object) -> bytes:
    return pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)


def empty_parts(_, files: dict[str, OutputFile]) -> Iterator[tuple[str, bytes]]:
    return ((name, _pickled(file.gather.create_accumulator())) for name, file in files.items())


def write_parts(
    named: tuple[str, Iterable[bytes]], out_dir: str, files: dict[str, OutputFile]
) -> str:
    """Writes one file from its pickled parts, each decoded only as it is merged: the
    grouping holds their bytes for the whole stage, so the decoded batches are the merged
    accumulator's alone, and go once the sorted table is made, before the file is written
    (decoded in the grouping, they were kept to its end: ~0.36 KB an images.parquet row).
    What they held goes back to the system before the writer takes its buffers."""
    name, parts = named
    gather = files[name].gather
    gathered = gather.extract_output(gather.merge_accumulators(map(pickle.loads, parts)))
    _give_back_freed()
    return files[name].write(gathered, FileSystems.join(out_dir, name))


def _give_back_freed() -> None:
    """Returns the heap's free pages to the system (glibc's malloc_trim): the batches are
    small blocks, whose pages the heap kept resident once freed, under the writer's buffers
    (without it, freeing them first left the launcher's peak as it was)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to give back
        ctypes.CDLL(None).malloc_trim(0)


@dataclass(frozen=True)
class Route:
    """Where the elements of one output go: a row each (`row` makes it from the element;
    None: the element is the row) into each file named."""

    names: tuple[str, ...]
    row: Callable | None = None


class WriteFiles(beam.PTransform):
    """Outputs (a dict of PCollections, keyed as `routes`) -> one file per name in
    `files`, in `out_dir`, each written even when no row goes into it; returns the paths.

    Every file is gathered in one grouping, whatever their number: at start-up each worker
    sets up every stage of the graph, and a CombineGlobally per file made two of each."""

    def __init__(self, out_dir: str, files: dict[str, OutputFile], routes: dict[str, Route]):
        super().__init__()
        self._out_dir = out_dir
        self._files = files
        self._routes = routes

    def expand(self, outputs: dict[str, beam.PCollection]) -> beam.PCollection:
        parts = [
            outputs[key]
            | f"{key}Parts" >> beam.ParDo(GatherParts(route.names, route.row, self._files))
            | f"{key}Global" >> beam.WindowInto(beam.window.GlobalWindows())
            for key, route in self._routes.items()
        ]
        empty = (
            parts[0].pipeline
            | "Start" >> beam.Impulse()
            | "EmptyParts" >> beam.FlatMap(empty_parts, self._files)
        )
        return (
            (*parts, empty)
            | "AllParts" >> beam.Flatten()
            | "GroupParts" >> beam.GroupByKey()
            | "Write" >> beam.Map(write_parts, self._out_dir, self._files)
        )


def output_path(out_dir: str, name: str) -> str:
    return FileSystems.join(out_dir, name)


def image_row(photo: Photo) -> dict:
    facts = photo.facts
    return {
        "image_id": photo.image_id,
        "path": photo.path,
        "station_id": photo.station_id,
        "taken_at": photo.taken_at,
        "status": photo.status,
        "reason": photo.reason,
        "bibs": [r.bib for r in best_reads(facts.bibs)],
        "faces": None if facts.faces is None else len(facts.faces),
        "duplicate_of": photo.duplicate_of,
        "duplicate_of_path": photo.duplicate_of_path,
        "reads": [
            {"bib": r.bib, "confidence": r.confidence, "box": list(r.box)} for r in facts.bibs
        ],
        "width": facts.width or None,
        "height": facts.height or None,
        "placed_by": photo.placed_by,
        "exif_taken_at": photo.exif_taken_at,
        "could_be_at": list(photo.could_be_at),
    }


def passage_row(p: Passage) -> dict:
    row = asdict(p)
    del row["official"]  # internal to CheckSplits, no column of passages.parquet
    return row


def review_row(item: ReviewItem) -> dict:
    row = asdict(item)
    row["candidates"] = list(item.candidates)
    row["could_be_at"] = list(item.could_be_at)
    return row


_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Output:
    """How one output of the graph is written: its file, schema, row and stable order."""

    label: str  # CamelCase, for the Beam step names
    name: str
    schema: pa.Schema
    order: Callable[[dict], object]
    row: Callable[[object], dict] | None = None  # None: the elements are rows already


def outputs_of(course: Course) -> dict[str, Output]:
    """The outputs of the graph (keyed as `time_race` names them) and how each is written."""
    course_order = {sid: i for i, sid in enumerate(course.station_ids)}
    return {
        "images": Output("Images", IMAGES_FILE, schemas.IMAGES, lambda r: r["path"], image_row),
        "passages": Output(
            "Passages",
            PASSAGES_FILE,
            schemas.PASSAGES,
            lambda r: (course_order[r["station_id"]], r["passed_at"], r["bib"]),
            passage_row,
        ),
        "review": Output(
            "Review",
            REVIEW_FILE,
            schemas.REVIEW,
            lambda r: (r["taken_at"] or _NEVER, r["path"] or "", r["reason"], r["candidates"]),
            review_row,
        ),
        "leaderboard": Output(
            "Leaderboard",
            LEADERBOARD_FILE,
            schemas.leaderboard_schema(course.station_ids),
            results_order(course),
        ),
        "stations": Output(
            "Stations",
            STATIONS_FILE,
            schemas.STATIONS,
            lambda r: (course_order[r["station_id"]], r["window_start"]),
        ),
        "athlete_photos": Output(
            "AthletePhotos",
            ATHLETE_PHOTOS_FILE,
            schemas.ATHLETE_PHOTOS,
            lambda r: (r["bib"], r["taken_at"] or _NEVER, r["path"]),
        ),
    }


def write_csv(rows: list[dict], path: str, course: Course) -> str:
    ordered = sorted(rows, key=results_order(course))
    write_atomically(path, results_csv(ordered, course).encode(CSV_ENCODING))
    return path


def write_results(tables: dict[str, Iterable], out_dir: str, course: Course) -> list[str]:
    """The same files as WriteResults, from tables held in memory (the local live mode)."""
    written = []
    for key, out in outputs_of(course).items():
        rows = [out.row(e) for e in tables[key]] if out.row else list(tables[key])
        written.append(
            write_table(rows, FileSystems.join(out_dir, out.name), out.schema, out.order)
        )
    csv_path = FileSystems.join(out_dir, RESULTS_CSV)
    return [*written, write_csv(list(tables["leaderboard"]), csv_path, course)]


class WriteResults(beam.PTransform):
    """The five Parquet files of the contract and athlete_photos.parquet (each with its
    explicit schema and a stable order), and the results as CSV (the leaderboard's rows)."""

    def __init__(self, out_dir: str, course: Course):
        super().__init__()
        self._out_dir = out_dir
        self._course = course

    def expand(self, outputs: dict[str, beam.PCollection]) -> beam.PCollection:
        outs = outputs_of(self._course)
        files = {
            out.name: OutputFile(GatherTable(out.schema, out.order), write_arrow)
            for out in outs.values()
        }
        files[RESULTS_CSV] = OutputFile(
            beam.combiners.ToListCombineFn(), functools.partial(write_csv, course=self._course)
        )
        routes = {
            out.label: Route(
                (out.name, RESULTS_CSV) if key == "leaderboard" else (out.name,), out.row
            )
            for key, out in outs.items()
        }
        return {out.label: outputs[key] for key, out in outs.items()} | "Write" >> WriteFiles(
            self._out_dir, files, routes
        )
