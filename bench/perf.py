"""Throughput, cost per stage, peak memory, decode floor and a naive baseline, in one run.

    python bench/perf.py [--photos 200] [--megapixels 12] [--marginal 1000]
                         [--memory 1000 10000] [--sample 40] [--faces ../shared/data/faces-dev]
                         [--real ../shared/data/bibs-dev]
    python bench/perf.py --startup RUNS [--faces ../shared/data/faces-dev]   # start-up only

Makes a demo race of about --photos photos (with --faces, real faces on its runners and
faces on in its course) and upscales every photo to --megapixels (4:3, re-encoded, EXIF
kept), so the pipeline times them against the demo's course and start list. Then it prints:
- photos/s end to end of `racelens run` (a fresh process each, start-up included) on the
  DirectRunner in-process and with 2 worker processes, every photo analysed afresh, and the
  start-up alone: a 2-worker run of the same race without its photos;
- the cost per photo of each stage of the analysis, on --sample photos (faces: dlib's
  find_faces, where the course and the installed models turn faces on; n/a otherwise), and
  of the timing half (re-timing from stored facts, which is what `racelens results` runs),
  split into writing (the output files encoded and written again) and the rest (EXIF
  placing, dedup, windowing into passages, leaderboard);
- the cost of a further photo, start-up left out: a 2-worker run of --marginal photos (the
  photos again, each copy made byte-distinct so that it is hashed and analysed anew)
  against the run of --photos;
- the peak RSS of the launcher and of the largest worker of the 2-worker runs, and at each
  --memory count of photos, copies again whose facts are stored beforehand (the originals'
  facts: same pixels), so that what grows with the photos is not hidden under what the
  analysis holds per photo in flight (each set of copies is deleted after its run);
- the decode-only floor in one process (full size in colour, in colour at the pipeline's
  reduction, and as the pipeline decodes) and the pipeline's cost over each;
- a naive baseline: a sequential loop of `analyse_photo` without Beam, then the timing half;
- with --real DIR, the stages and the decode floors again on real race photos (e.g.
  ../shared/data/bibs-dev, enlarged to --megapixels): the demo's drawn scenes hold far fewer
  edges and lines than a real race's photos, so the analysis costs less on them; and
  `racelens run` (2 workers) end to end on the race with each photo's pixels one of those
  real photos (its EXIF kept), and on its photos twice over, for a further photo's cost.
Every figure is taken as wall time and as CPU time (all threads, and the Beam workers): on
a shared machine wall time also counts other jobs, CPU time does not. Ratios compare
figures taken in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import psutil
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from bench.bib_eval import as_jpeg  # noqa: E402
from bench.common import spread  # noqa: E402
from pipeline.demo import generate_race, with_exif  # noqa: E402
from pipeline.graph import build_from_groups, run  # noqa: E402
from pipeline.score import score_run  # noqa: E402
from transforms import ocr  # noqa: E402
from transforms.course import load_course  # noqa: E402
from transforms.exif import exif_facts  # noqa: E402
from transforms.faces import FaceModels, face_models, faces_enabled, find_faces  # noqa: E402
from transforms.photos import (  # noqa: E402
    FactStore,
    analyse_photo,
    bib_reads,
    decode,
    image_id_of,
    list_photos,
    open_photo,
    read_bytes,
    reduction_for,
    thumbnail_facts,
)
from transforms.write import PASSAGES_FILE, table_bytes, write_atomically  # noqa: E402

PHOTOS_PER_ATHLETE = 7.7  # what the demo race makes with 4 stations
JPEG_QUALITY = 92  # a camera's "fine" setting
WORKERS = 2
MULTI = ["--direct_running_mode=multi_processing", f"--direct_num_workers={WORKERS}"]
IN_PROCESS = ["--direct_running_mode=in_memory"]
# Goals of issue 9.
GOAL_PHOTOS_PER_S = 8.0
GOAL_FLOOR_RATIO = 2.5
REAL_COPIES = 2  # the real race's photos again, for the cost of a further one
GOAL_MEMORY_GROWTH = 1.25  # flat: the peak grows less than this for several times the photos
STARTED = time.monotonic()
ANALYSIS = "analyse_photo (all but read, hash)"
FULL_SIZE = "full size, colour"
REDUCED_COLOUR = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}


@dataclass(frozen=True)
class Cost:
    wall: float  # seconds
    cpu: float  # CPU seconds

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.wall - other.wall, self.cpu - other.cpu)

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu)

    def per(self, count: int) -> Cost:
        return Cost(self.wall / count, self.cpu / count)


@dataclass(frozen=True)
class Measured:
    cost: Cost
    peak_rss_mb: float  # peak RSS of the largest process of the run
    launcher_rss_mb: float  # peak RSS of the launcher
    worker_rss_mb: float  # peak RSS of its largest worker (0: none)


@dataclass(frozen=True)
class Race:
    root: Path
    photos: int

    @property
    def images(self) -> Path:
        return self.root / "images"


def now() -> Cost:
    """Wall clock and this process's CPU time (all its threads)."""
    return Cost(time.perf_counter(), time.process_time())


def frame_size(megapixels: float) -> tuple[int, int]:
    """Width and height of a 4:3 frame of about this many megapixels (12 -> 4000x3000)."""
    height = round(math.sqrt(megapixels * 1e6 * 3 / 4))
    return round(height * 4 / 3), height


def upscale(path: str, size: tuple[int, int]) -> None:
    """Replaces the photo by itself at `size`, its EXIF bytes kept as they were. The demo's
    corrupt file stays as it is: the pipeline must still reject it."""
    try:
        with Image.open(path) as original:
            exif = original.info["exif"]
            pixels = original.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    except OSError:
        return
    pixels.save(path, "JPEG", quality=JPEG_QUALITY, exif=exif)


def athletes_for(photos: int) -> int:
    """Athletes of a demo race of about `photos` photos."""
    return max(1, round(photos / PHOTOS_PER_ATHLETE))


def make_race(
    root: Path, photos: int, megapixels: float, seed: int, faces: str | None = None
) -> Race:
    """A demo race of about `photos` photos, every one upscaled (in WORKERS processes);
    with `faces`, real faces on its runners and faces on in its course."""
    generate_race(str(root), athletes=athletes_for(photos), stations=4, seed=seed, faces=faces)
    paths = list_photos(str(root / "images"))
    size = frame_size(megapixels)
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(upscale, paths, [size] * len(paths), chunksize=4))
    return Race(root, len(paths))


def distinct_copy(data: bytes, tag: int) -> bytes:
    """The same JPEG with a comment segment after its start marker: new bytes, same pixels."""
    comment = f"racelens bench copy {tag}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:2] + segment + data[2:]


def make_copies(
    race: Race,
    root: Path,
    copies: int,
    known: FactStore | None = None,
    store: FactStore | None = None,
) -> Race:
    """The race's photos `copies` times over (course, start list and its reference photos
    shared), each copy a file of its own. With `known`, the facts of each original found
    there go into `store` for each of its copies: same pixels, same facts, so the run that
    reads them skips the analysis."""
    root.mkdir(parents=True)
    for name in ("course.yaml", "startlist.csv"):
        shutil.copy(race.root / name, root / name)
    if (race.root / "faces").is_dir():  # the start list's reference photos
        shutil.copytree(race.root / "faces", root / "faces")
    count = 0
    for path in map(Path, list_photos(str(race.images))):
        data = path.read_bytes()
        original = known.get(image_id_of(data)) if known else None
        folder = root / "images" / path.parent.relative_to(race.images)
        folder.mkdir(parents=True, exist_ok=True)
        for tag in range(copies):
            copy = distinct_copy(data, tag)
            (folder / f"{path.stem}_{tag}{path.suffix}").write_bytes(copy)
            if original is not None:
                store.put(replace(original, image_id=image_id_of(copy)))
            count += 1
    return Race(root, count)


def race_argv(race: Race, out: Path) -> list[str]:
    return [
        *("--images", str(race.images), "--course", str(race.root / "course.yaml")),
        *("--start-list", str(race.root / "startlist.csv"), "--out", str(out), "--no-progress"),
    ]


def rss_high_water(process: psutil.Process) -> int:
    """The peak RSS of a process so far, in bytes (Linux's VmHWM: a sample misses no spike).

    Not wait4's ru_maxrss: a child's counts the RSS of the process that forked it, this
    benchmark (hundreds of MB once it has profiled the stages), as if the child had it."""
    with open(f"/proc/{process.pid}/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    return int(peak[0]) * 1024 if peak else 0  # none: a zombie, its memory freed


class RssPeaks(threading.Thread):
    """The peak RSS of a process and of its largest descendant, read until it ends."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self._process = psutil.Process(pid)
        self._every_s = every_s
        self.launcher = self.worker = 0  # bytes

    def run(self) -> None:
        while True:
            try:
                self.launcher = max(self.launcher, rss_high_water(self._process))
                children = self._process.children(recursive=True)
            except (psutil.Error, OSError):
                return  # it ended
            for child in children:
                with suppress(psutil.Error, OSError):
                    self.worker = max(self.worker, rss_high_water(child))
            time.sleep(self._every_s)


def run_measured(command: list[str]) -> tuple[Measured, str]:
    """Wall time, CPU time and peak RSS of a fresh process (start-up included) and the
    workers it reaps; and what it printed."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr)
        peaks = RssPeaks(process.pid)
        peaks.start()
        stdout = process.stdout.read().decode()
        # wait4 reports this child alone, with the descendants it waited for (Beam's
        # workers): getrusage(RUSAGE_CHILDREN) would mix in every earlier run here.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            stderr.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{stderr.read().decode(errors='replace')}")
    cost = Cost(time.perf_counter() - started, usage.ru_utime + usage.ru_stime)
    peaks.join()
    launcher, worker = peaks.launcher / 2**20, peaks.worker / 2**20
    return Measured(cost, max(launcher, worker), launcher, worker), stdout


def racelens(*argv: str) -> Measured:
    return run_measured([sys.executable, "-m", "pipeline", *argv])[0]


class Stopwatch:
    """Wall and CPU time per stage, summed over photos."""

    def __init__(self) -> None:
        self.costs: dict[str, list[Cost]] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = now()
        yield
        self.costs.setdefault(stage, []).append(now() - started)

    def mean(self) -> dict[str, Cost]:
        return {
            stage: Cost(sum(c.wall for c in costs), sum(c.cpu for c in costs)).per(len(costs))
            for stage, costs in self.costs.items()
        }


def stage_profile(paths: list[str], models: FaceModels | None) -> dict[str, Cost | None]:
    """Seconds per photo of each analysis stage, each called as analyse_photo calls it
    (faces with `models`); None for faces without them."""
    analyse_photo(read_bytes(paths[0]), "warm-up", models)  # models load once, then cached
    timed = Stopwatch()
    for path in paths:
        with timed("read"):
            data = read_bytes(path)
        with timed("hash (SHA-256)"):
            image_id = image_id_of(data)
        with timed("EXIF"):
            header = open_photo(data)
            exif_facts(header)
        with timed("decode"):
            image, factor = decode(data, *header.size, header.format)
        found = ()
        if models:
            with timed("faces"):
                found = find_faces(image, factor, models)
        with timed("bib search"):
            ocr.find_bib_regions(image, ocr.LOOSE)  # the lines read_bibs reads
        with timed("OCR"):
            bib_reads(image, factor, faces=found)  # not the lines on faces, as in the pipeline
        with timed("phash+quality"):
            thumbnail_facts(image)
        with timed("analyse_photo"):  # all but read and sha256 in one call: a cross-check
            analyse_photo(data, image_id, models)
    costs: dict[str, Cost | None] = timed.mean()
    costs["OCR"] -= costs["bib search"]  # bib_reads searches, then reads: OCR is the rest
    costs["faces"] = costs.get("faces")
    costs[ANALYSIS] = costs.pop("analyse_photo")
    return costs


def race_face_models(race: Race) -> FaceModels | None:
    """dlib's models where the race's pipeline looks for faces (course setting, models
    installed), else None: the stages and the naive loop then do what the pipeline does."""
    settings = load_course(str(race.root / "course.yaml")).settings
    return face_models() if faces_enabled(settings) else None


def full_size_colour(data: bytes) -> None:
    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def reduced_colour(data: bytes) -> None:
    """In colour at the pipeline's reduction (the header is read to choose it, as there)."""
    factor = reduction_for(*open_photo(data).size)
    cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_COLOUR[factor])


def as_the_pipeline(data: bytes) -> None:
    header = open_photo(data)
    decode(data, *header.size, header.format)


def enlarged_real_photos(folder: Path, out: Path, count: int, megapixels: float) -> list[str]:
    """count photos of folder, spread over it, each enlarged to about megapixels as
    bench/bib_eval.py --megapixels makes them (their own aspect, JPEG quality 90)."""
    out.mkdir()
    paths = []
    for path in spread(sorted(str(p) for p in folder.glob("*.[jJ][pP][gG]")), count):
        enlarged = out / Path(path).name
        enlarged.write_bytes(as_jpeg(cv2.imread(path), megapixels))
        paths.append(str(enlarged))
    if not paths:
        raise SystemExit(f"perf.py: error: no JPEG in --real {folder}")
    return paths


def real_photos(
    args: argparse.Namespace, tmp: Path, race: Race, models: FaceModels | None
) -> RealPhotos:
    """Stages, decode floors and `racelens run` on real race photos: the demo's drawn scenes
    hold far fewer lines and edges, so they cost the analysis less than a real race's do."""
    note(f"stages on real photos ({args.real})")
    paths = enlarged_real_photos(args.real, tmp / "real", args.sample, args.megapixels)
    size = max(Image.open(p).size for p in paths)
    floors = decode_floors(paths, reduction_for(*size))
    per_photo = {kind: cost.per(len(paths)) for kind, cost in floors.items()}
    stages = stage_profile(paths, models)
    pixels = real_race(race, paths, tmp / "real-race")
    note(f"racelens run, multi_processing, {pixels.photos} real photos (load {load()})")
    run = racelens("run", *race_argv(pixels, tmp / "out-real"), *MULTI)
    shutil.rmtree(tmp / "out-real")
    marginal = copies_run(pixels, tmp, REAL_COPIES * pixels.photos, prestored=False)
    return RealPhotos(args.real, len(paths), size, stages, per_photo, pixels.photos, run, marginal)


def real_race(race: Race, real: list[str], root: Path) -> Race:
    """The race with each photo's pixels those of a real photo (the `real` ones in turn), its
    EXIF kept: the demo's cameras, course and start list, so that `racelens run` places and
    times every photo as before, over a real race's pixels (whose bibs the start list lacks:
    they go to review). A photo without EXIF (the demo's corrupt file) is kept as it is."""
    root.mkdir()
    for name in ("course.yaml", "startlist.csv"):
        shutil.copy(race.root / name, root / name)
    if (race.root / "faces").is_dir():
        shutil.copytree(race.root / "faces", root / "faces")
    pixels = [read_bytes(p) for p in real]
    photos = list(map(Path, list_photos(str(race.images))))
    for i, path in enumerate(photos):
        target = root / "images" / path.relative_to(race.images)
        target.parent.mkdir(parents=True, exist_ok=True)
        exif = photo_exif(path)
        data = with_exif(pixels[i % len(pixels)], exif) if exif else path.read_bytes()
        target.write_bytes(data)
    return Race(root, len(photos))


def photo_exif(path: Path) -> bytes | None:
    """The photo's EXIF block as stored, or None (none, or not a photo Pillow opens)."""
    try:
        with Image.open(path) as photo:
            return photo.info.get("exif")
    except OSError:
        return None


def decode_floors(paths: list[str], factor: int) -> dict[str, Cost]:
    """Time to decode every photo once in each way the floors are taken (at 1/factor)."""
    return {
        FULL_SIZE: decode_floor(paths, full_size_colour),
        f"1/{factor} scale, colour": decode_floor(paths, reduced_colour),
        "as the pipeline decodes": decode_floor(paths, as_the_pipeline),
    }


def decode_floor(paths: list[str], decoder: Callable[[bytes], None]) -> Cost:
    """Time to decode every photo once, in this process."""
    photos = [read_bytes(p) for p in paths]
    started = now()
    for data in photos:
        decoder(data)
    return now() - started


def writing(out: Path) -> Cost:
    """Encoding and writing every output table of a run again, as WriteResults does."""
    tables = {path: pq.read_table(path) for path in sorted(out.glob("*.parquet"))}
    started = now()
    for path, table in tables.items():
        write_atomically(str(path), table_bytes(table.to_pylist(), table.schema))
    return now() - started


def naive_baseline(race: Race, out: Path) -> tuple[Cost, Cost, Cost]:
    """A plain loop analysing every photo (exact copies once) into a fact store, the
    timing half on those facts, which is what `racelens results` runs, and its writing."""
    store = FactStore(str(out / "facts"))
    models = race_face_models(race)
    groups: dict[str, list[str]] = {}
    started = now()
    for path in list_photos(str(race.images)):
        data = read_bytes(path)
        image_id = image_id_of(data)
        if image_id not in groups:
            store.put(analyse_photo(data, image_id, models))
        groups.setdefault(image_id, []).append(path)
    analysed = now()
    run(
        [*race_argv(race, out), *IN_PROCESS],
        graph=lambda p, cfg: build_from_groups(p, cfg, sorted(groups.items())),
    )
    timed = now()
    return analysed - started, timed - analysed, writing(out)


@dataclass(frozen=True)
class Naive:
    whole: Measured  # a fresh process, start-up included, like `racelens run`
    loop: Cost
    timing_half: Cost
    writing: Cost


def run_naive(race: Race, out: Path) -> Naive:
    """The naive baseline in a fresh process of this script (see `naive_main`)."""
    whole, printed = run_measured([sys.executable, __file__, "--naive", str(race.root), str(out)])
    loop, timing_half, written = (Cost(**part) for part in json.loads(printed.splitlines()[-1]))
    return Naive(whole, loop, timing_half, written)


def naive_main(race_root: str, out: str) -> None:
    """The child side of `run_naive`: runs the baseline, prints its parts as JSON."""
    parts = naive_baseline(Race(Path(race_root), 0), Path(out))
    print(json.dumps([asdict(part) for part in parts]))


def same_passages(a: Path, b: Path) -> bool:
    return pq.read_table(a / PASSAGES_FILE).equals(pq.read_table(b / PASSAGES_FILE))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass(frozen=True)
class CopiesRun:
    photos: int
    run: Measured  # multi_processing
    prestored: bool  # facts stored beforehand: nothing analysed


@dataclass(frozen=True)
class Results:
    race: Race
    in_process: Measured
    multi: Measured
    startup: Measured  # multi_processing, the race without its photos
    marginal: CopiesRun  # analysed
    memory: list[CopiesRun]  # facts stored beforehand
    stages: dict[str, Cost | None]
    naive: Naive
    floors: dict[str, Cost]  # how decoded -> cost
    recall: float
    false_confirmed: int
    identical: bool
    real: RealPhotos | None  # with --real


@dataclass(frozen=True)
class RealPhotos:
    """The analysis of real race photos enlarged to the bench's size, in one process."""

    folder: Path
    photos: int
    size: tuple[int, int]  # of the largest, width x height
    stages: dict[str, Cost | None]
    floors: dict[str, Cost]  # how decoded -> cost, per photo
    race_photos: int  # of the race run with their pixels (see real_race)
    run: Measured  # multi_processing, that race
    marginal: CopiesRun  # multi_processing, its photos REAL_COPIES times over


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def note(text: str) -> None:
    """Progress on stderr, so that a long run shows where it is."""
    print(f"[{time.monotonic() - STARTED:5.0f} s] {text}", file=sys.stderr, flush=True)


def copies_run(race: Race, tmp: Path, count: int, prestored: bool) -> CopiesRun:
    """A 2-worker run of about `count` photos, copies of the race's (at least twice over,
    so that it has more photos than the race); with `prestored`, their facts are stored
    beforehand, from the 2-worker run of the race's own photos."""
    name = f"{count}-prestored" if prestored else str(count)
    out = tmp / f"out-{name}"
    copies = make_copies(
        race,
        tmp / f"copies-{name}",
        max(2, round(count / race.photos)),
        FactStore(str(tmp / "out-multi" / "facts")) if prestored else None,
        FactStore(str(out / "facts")),
    )
    kind = "facts stored beforehand" if prestored else "analysed"
    note(f"racelens run, multi_processing, {copies.photos} photos, {kind} (load {load()})")
    measured = racelens("run", *race_argv(copies, out), *MULTI)
    shutil.rmtree(copies.root)  # 10,000 photos of 12 MP fill 7 GB
    shutil.rmtree(out)
    return CopiesRun(copies.photos, measured, prestored)


def startup_run(race: Race, tmp: Path) -> Measured:
    """A 2-worker run of the race without its photos (its course, start list and reference
    photos kept): what a run costs before and beside its photos."""
    empty = make_copies(race, tmp / "copies-none", 0)
    note(f"racelens run, multi_processing, no photo (load {load()})")
    measured = racelens("run", *race_argv(empty, tmp / "out-none"), *MULTI)
    shutil.rmtree(empty.root)
    shutil.rmtree(tmp / "out-none")
    return measured


def startup_only(args: argparse.Namespace, tmp: Path) -> None:
    """Prints the start-up of --startup runs on no photo, one by one, and their mean."""
    root = tmp / "race"
    athletes = athletes_for(args.photos)
    generate_race(str(root), athletes=athletes, stations=4, seed=args.seed, faces=args.faces)
    race = Race(root, 0)
    costs = []
    for _ in range(args.startup):
        measured = startup_run(race, tmp)
        costs.append(measured.cost)
        print(
            f"start-up, multi_processing, no photo: {measured.cost.wall:5.1f} s wall "
            f"{measured.cost.cpu:5.1f} CPU s  (load average {load()})",
            flush=True,
        )
    mean = sum(costs, Cost(0, 0)).per(len(costs))
    print(f"mean of {len(costs)}: {mean.wall:.1f} s wall, {mean.cpu:.1f} CPU s")


def measure(args: argparse.Namespace, tmp: Path) -> Results:
    note(f"making {args.megapixels:g} MP photos")
    race = make_race(tmp / "race", args.photos, args.megapixels, args.seed, args.faces)
    paths = list_photos(str(race.images))
    mb = sum(os.path.getsize(p) for p in paths) / race.photos / 1e6
    width, height = frame_size(args.megapixels)
    models = race_face_models(race)
    faces = "on" if models else "off"
    print(
        f"{race.photos} photos of {width}x{height} ({mb:.1f} MB each), faces {faces}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    note("racelens run, multi_processing")
    multi = racelens("run", *race_argv(race, tmp / "out-multi"), *MULTI)
    note("racelens run, in-process")
    in_process = racelens("run", *race_argv(race, tmp / "out-in"), *IN_PROCESS)
    startup = startup_run(race, tmp)
    marginal = copies_run(race, tmp, args.marginal, prestored=False)
    memory = [copies_run(race, tmp, count, prestored=True) for count in args.memory]
    note("stages")
    stages = stage_profile(spread(paths, args.sample), models)
    note("naive baseline")
    naive = run_naive(race, tmp / "out-naive")
    note("decode-only floors")
    floors = decode_floors(paths, reduction_for(width, height))
    score = score_run(str(tmp / "out-multi"), str(race.root / "truth.csv"), str(race.images), 2)
    return Results(
        race=race,
        in_process=in_process,
        multi=multi,
        startup=startup,
        marginal=marginal,
        memory=memory,
        stages=stages,
        naive=naive,
        floors=floors,
        recall=score.recall,
        false_confirmed=score.false_confirmed,
        identical=same_passages(tmp / "out-multi", tmp / "out-naive"),
        real=real_photos(args, tmp, race, models) if args.real else None,
    )


def report(r: Results, sample: int) -> None:
    n = r.race.photos
    most = r.marginal.photos
    marginal = further_photo(r.multi, n, r.marginal)
    capacity = WORKERS / marginal.cpu
    print("\nend to end, racelens run (fresh process, start-up included):")
    print(f"  {'':38s} wall photos/s  CPU ms/photo")
    for name, cost in (
        ("DirectRunner in-process", r.in_process.cost),
        (f"DirectRunner multi_processing x{WORKERS}", r.multi.cost),
    ):
        print(f"  {name:38s} {n / cost.wall:13.2f} {1000 * cost.cpu / n:13.1f}")
    name = "multi_processing, marginal"
    print(f"  {name:38s} {1 / marginal.wall:13.2f} {1000 * marginal.cpu:13.1f}")
    print(f"  (marginal: {most} against {n} photos, so start-up is left out)")
    fixed = r.multi.cost - Cost(marginal.wall * n, marginal.cpu * n)  # less n further photos
    print(
        f"  start-up, multi_processing: {r.startup.cost.wall:.1f} s wall, "
        f"{r.startup.cost.cpu:.1f} CPU s on no photo; the {n}-photo run less {n} "
        f"further photos: {fixed.wall:.1f} s wall, {fixed.cpu:.1f} CPU s"
    )
    print(f"  capacity of {WORKERS} idle cores at the marginal CPU cost: {capacity:.1f} photos/s")

    print(f"\nper photo, one process ({min(sample, n)} photos; timing half: {n}):")
    timing = {
        "windowing and the rest of timing": (r.naive.timing_half - r.naive.writing).per(n),
        "writing": r.naive.writing.per(n),
        "timing half (the two above)": r.naive.timing_half.per(n),
    }
    print_stages({**r.stages, **timing})
    if r.real:
        print_real(r.real)

    runs = [CopiesRun(n, r.multi, False), r.marginal, *r.memory]
    fewest, biggest = r.memory[0].run, r.memory[-1].run
    growth = {
        "largest process": biggest.peak_rss_mb / fewest.peak_rss_mb,
        "launcher": biggest.launcher_rss_mb / fewest.launcher_rss_mb,
        "worker": biggest.worker_rss_mb / fewest.worker_rss_mb,
    }
    print("\npeak RSS, multi_processing (VmHWM of the launcher and of its largest worker):")
    for m in runs:
        print(
            f"  {m.photos:6d} photos  launcher {m.run.launcher_rss_mb:6.0f} MB  worker "
            f"{m.run.worker_rss_mb:6.0f} MB  largest {m.run.peak_rss_mb:6.0f} MB"
            + ("  (facts stored beforehand)" if m.prestored else "")
        )

    print("\ndecode-only floor, every photo decoded once, one process:")
    print(f"  {'':38s}    CPU ms  wall photos/s   pipeline / floor: CPU marginal, wall")
    ratios = {kind: marginal.cpu * n / floor.cpu for kind, floor in r.floors.items()}
    for kind, floor in r.floors.items():
        print(
            f"  {kind:38s} {1000 * floor.cpu / n:9.1f} {n / floor.wall:14.2f} "
            f"{ratios[kind]:22.2f}x {r.in_process.cost.wall / floor.wall:6.2f}x (in-process)"
        )

    naive = r.naive.whole.cost
    loop_rate = n / r.naive.loop.wall
    print("\nnaive baseline (a fresh process: a loop of analyse_photo, then the timing half):")
    print(f"  {n / naive.wall:.2f} photos/s, {1000 * naive.cpu / n:.1f} CPU ms/photo")
    for part, label in ((lambda c: c.wall, "wall"), (lambda c: c.cpu, "CPU")):
        in_process, multi = (part(m.cost) / part(naive) for m in (r.in_process, r.multi))
        print(
            f"  pipeline / naive, {label:4s} time: in-process {in_process:.2f}x, multi {multi:.2f}x"
        )
    print(
        f"  per further photo: multi_processing {1 / marginal.wall:.2f} photos/s, "
        f"the loop alone {loop_rate:.2f} photos/s"
    )
    print(f"  passages identical to the pipeline's: {r.identical}")
    print(
        f"\naccuracy of the multi_processing run: recall {r.recall:.4f}, "
        f"false confirmed passages {r.false_confirmed}"
    )
    print(f"load average {load()} at the end")

    best = max(n / r.in_process.cost.wall, n / r.multi.cost.wall)
    print("\ngoals:")
    print(
        f"  >= {GOAL_PHOTOS_PER_S:g} photos/s: measured {best:.2f} "
        f"({verdict(best >= GOAL_PHOTOS_PER_S)}), capacity {capacity:.1f} "
        f"({verdict(capacity >= GOAL_PHOTOS_PER_S)})"
    )
    print(f"  <= {GOAL_FLOOR_RATIO:g}x the decode floor (CPU):")
    for kind, ratio in ratios.items():
        print(f"    {kind:36s} {ratio:5.2f}x ({verdict(ratio <= GOAL_FLOOR_RATIO)})")
    if r.real:
        print_real_goals(r.real)
    photos = f"{r.memory[0].photos} -> {r.memory[-1].photos} photos"
    print(
        f"  peak memory flat, {photos} (facts stored beforehand): "
        + ", ".join(f"{name} x{ratio:.2f}" for name, ratio in growth.items())
        + f" ({verdict(growth['largest process'] <= GOAL_MEMORY_GROWTH)})"
    )
    print(
        f"  faster than naive (wall, multi_processing): end to end "
        f"{verdict(r.multi.cost.wall < naive.wall)}, per further photo "
        f"{verdict(1 / marginal.wall > loop_rate)}"
    )


def further_photo(run: Measured, photos: int, larger: CopiesRun) -> Cost:
    """The cost of a further photo, start-up left out: the larger run's photos beyond those
    of `run` (of `photos`), each analysed, against the difference of the two runs' costs."""
    return (larger.run.cost - run.cost).per(larger.photos - photos)


def print_real_goals(real: RealPhotos) -> None:
    capacity = WORKERS / real_analysis(real).cpu
    full_size = real_analysis(real).cpu / real.floors[FULL_SIZE].cpu
    print(
        f"  on real photos, one process: capacity {capacity:.1f} photos/s "
        f"({verdict(capacity >= GOAL_PHOTOS_PER_S)}), analyse_photo {full_size:.2f}x the "
        f"full-size decode ({verdict(full_size <= GOAL_FLOOR_RATIO)})"
    )
    end_to_end = real.race_photos / real.run.cost.wall
    further = real_further_photo(real)
    ratio = further.cpu / real.floors[FULL_SIZE].cpu
    print(
        f"  on real photos, end to end: {end_to_end:.2f} photos/s "
        f"({verdict(end_to_end >= GOAL_PHOTOS_PER_S)}), per further photo {1 / further.wall:.2f} "
        f"({verdict(1 / further.wall >= GOAL_PHOTOS_PER_S)}), its CPU {ratio:.2f}x the full-size "
        f"decode ({verdict(ratio <= GOAL_FLOOR_RATIO)})"
    )


def print_stages(stages: dict[str, Cost | None]) -> None:
    print(f"  {'':38s}    CPU ms       wall ms")
    for stage, cost in stages.items():
        if cost is None:
            print(f"  {stage:38s} {'n/a':>9s} {'n/a':>13s}")
        else:
            print(f"  {stage:38s} {1000 * cost.cpu:9.1f} {1000 * cost.wall:13.1f}")


def real_analysis(real: RealPhotos) -> Cost:
    analysis = real.stages[ANALYSIS]
    assert analysis is not None  # stage_profile always times it
    return analysis


def print_real(real: RealPhotos) -> None:
    width, height = real.size
    print(
        f"\nper photo, one process, real race photos ({real.photos} of {real.folder}, "
        f"enlarged to {width}x{height}):"
    )
    print_stages(real.stages)
    analysis = real_analysis(real)
    print(
        f"  capacity of {WORKERS} idle cores at analyse_photo's CPU (the read, the hash and "
        f"the timing half left out): {WORKERS / analysis.cpu:.1f} photos/s"
    )
    for kind, floor in real.floors.items():
        print(
            f"  decode floor, {kind:30s} {1000 * floor.cpu:9.1f}  analyse_photo / floor "
            f"{analysis.cpu / floor.cpu:5.2f}x"
        )
    n, further = real.race_photos, real_further_photo(real)
    print(
        f"end to end on real photos, racelens run multi_processing x{WORKERS} (the bench's "
        f"race, each photo's pixels one of the {real.photos} above, its EXIF kept):"
    )
    print(f"  {'':38s} wall photos/s  CPU ms/photo")
    for name, rate, cpu in (
        (f"{n} photos, start-up included", n / real.run.cost.wall, real.run.cost.cpu / n),
        (f"marginal ({real.marginal.photos} against {n})", 1 / further.wall, further.cpu),
    ):
        print(f"  {name:38s} {rate:13.2f} {1000 * cpu:13.1f}")
    print(
        f"  per further photo / full-size decode floor (CPU): "
        f"{further.cpu / real.floors[FULL_SIZE].cpu:.2f}x"
    )


def real_further_photo(real: RealPhotos) -> Cost:
    return further_photo(real.run, real.race_photos, real.marginal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="Photos, about (200).")
    parser.add_argument("--megapixels", type=float, default=12, help="Photo size (12).")
    parser.add_argument(
        "--marginal",
        type=int,
        default=1000,
        help="Photos of the run, analysed, that gives the cost of a further photo, about (1000).",
    )
    parser.add_argument(
        "--memory",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="Photos of each memory run, about; their facts are stored beforehand (1000 10000).",
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=40,
        help="Photos profiled by stage, spread over the race (40).",
    )
    parser.add_argument("--seed", type=int, default=7, help="Demo race seed (7).")
    parser.add_argument(
        "--faces",
        metavar="DIR",
        help="Real faces on the demo's runners (as `racelens demo --faces DIR`, e.g. "
        "../shared/data/faces-dev): the course then looks for faces, as a real race does. "
        "Default: none, and faces off.",
    )
    parser.add_argument(
        "--real",
        type=Path,
        metavar="DIR",
        help="Real race photos (e.g. ../shared/data/bibs-dev): the stages are also profiled on "
        "--sample of them, each enlarged to --megapixels as bench/bib_eval.py makes them. "
        "Default: none.",
    )
    parser.add_argument(
        "--startup",
        type=int,
        metavar="RUNS",
        help="Only the start-up: RUNS 2-worker runs of the race on no photo (its course, start "
        "list and reference faces), each timed; no photo is made, so it takes seconds a run.",
    )
    parser.add_argument("--naive", nargs=2, metavar=("RACE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # As in the pipeline's workers (transforms/photos.py): stages and the naive loop then
    # cost what they cost there.
    cv2.setNumThreads(1)
    if args.naive:
        naive_main(*args.naive)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.startup:
            startup_only(args, Path(tmp))
        else:
            report(measure(args, Path(tmp)), args.sample)


if __name__ == "__main__":
    main()
