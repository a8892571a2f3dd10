"""Dask with 1, 2, ... workers on one race: time of each phase, photos per second per worker
and CPU seconds per photo measured inside the workers; and whether every run writes the
same passages and leaderboard (with --reference, also the in-process DirectRunner's).

    python bench/engines.py --race DIR [--workers 1 2] [--reference]
    python bench/engines.py --athletes 400 [--stations 4] [--seed 7]   # a demo race first

Each worker count gets a fresh LocalCluster of single-threaded worker processes (as
`racelens run --runner=DaskRunner` starts one) and a fact store of its own, so every photo
is analysed. Measured in this process: phase 1, the analysis on Dask (`analyse_on_dask`:
listing, sending the tasks, gathering (image_id, path) of every file), and phase 2, the
timing on the DirectRunner from the stored facts; the cluster's start is left out (a
named scheduler's workers are already up). Measured in each worker: photos analysed and
CPU seconds, of `analyse_photo` and of the whole process. On a shared machine wall time
counts other jobs too; CPU time per photo does not, so it gives the per-worker rate.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from dask.distributed import Client, LocalCluster, WorkerPlugin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from pipeline import engines  # noqa: E402
from pipeline.demo import generate_race  # noqa: E402
from pipeline.graph import build, build_from_groups, run  # noqa: E402
from transforms.write import LEADERBOARD_FILE, PASSAGES_FILE  # noqa: E402

COMPARED = (PASSAGES_FILE, LEADERBOARD_FILE)


class CountAnalyses(WorkerPlugin):
    """Counts, in each worker process, the photos analysed and their CPU time."""

    def setup(self, worker: object) -> None:
        from transforms import photos

        analyse = photos.analyse_photo
        # Kept on the function: this script is __main__ here, and the worker would get a
        # copy of a global of it with every call.
        tally = {"photos": 0, "cpu": 0.0}

        @functools.wraps(analyse)
        def counted(*args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return analyse(*args, **kwargs)
            finally:
                tally["photos"] += 1
                tally["cpu"] += time.thread_time() - started

        counted.tally = tally
        photos.analyse_photo = counted  # the DoFns look it up when they call it


def worker_state() -> dict[str, float]:
    """What a worker counted, and its process's CPU seconds so far."""
    from transforms import photos

    usage = resource.getrusage(resource.RUSAGE_SELF)
    tally = getattr(photos.analyse_photo, "tally", {"photos": 0, "cpu": 0.0})
    return {**tally, "process_cpu": usage.ru_utime + usage.ru_stime}


@dataclass(frozen=True)
class Worker:
    photos: int
    analyse_cpu: float  # seconds in analyse_photo
    process_cpu: float  # seconds of the whole worker process during phase 1


@dataclass(frozen=True)
class Measured:
    workers: int
    analysis: float  # wall seconds of phase 1
    timing: float  # wall seconds of phase 2
    timing_cpu: float  # CPU seconds of phase 2 (this process)
    per_worker: list[Worker]
    rows: dict[str, list[dict]]

    @property
    def photos(self) -> int:
        return sum(w.photos for w in self.per_worker)

    @property
    def process_cpu_per_photo(self) -> float:
        return sum(w.process_cpu for w in self.per_worker) / max(1, self.photos)

    @property
    def analyse_cpu_per_photo(self) -> float:
        return sum(w.analyse_cpu for w in self.per_worker) / max(1, self.photos)


def race_argv(race: Path, out: Path) -> list[str]:
    return [
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
    ]


def compared_rows(out: Path) -> dict[str, list[dict]]:
    return {name: pq.read_table(out / name).to_pylist() for name in COMPARED}


def on_dask(race: Path, out: Path, workers: int) -> Measured:
    """Both phases of a Dask run on a fresh LocalCluster of `workers` processes."""
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(CountAnalyses())
        before = client.run(worker_state)
        argv = [*race_argv(race, out), "--runner=DaskRunner"]
        started = time.perf_counter()
        groups = engines.analyse_on_dask(
            [*argv, f"--dask_client_address={cluster.scheduler_address}"]
        )
        analysed = time.perf_counter()
        after = client.run(worker_state)
    timing_cpu = time.process_time()  # the DirectRunner runs in this process
    run(
        [*argv, "--runner=DirectRunner"],
        graph=functools.partial(build_from_groups, groups=groups),
    )
    timed, timing_cpu = time.perf_counter(), time.process_time() - timing_cpu
    per_worker = [
        Worker(
            photos=int(after[w]["photos"] - before[w]["photos"]),
            analyse_cpu=after[w]["cpu"] - before[w]["cpu"],
            process_cpu=after[w]["process_cpu"] - before[w]["process_cpu"],
        )
        for w in sorted(after)
    ]
    return Measured(
        workers, analysed - started, timed - analysed, timing_cpu, per_worker, compared_rows(out)
    )


def direct_in_process(race: Path, out: Path) -> dict[str, list[dict]]:
    run([*race_argv(race, out), "--direct_running_mode=in_memory"], graph=build)
    return compared_rows(out)


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def report(runs: list[Measured], photos: int) -> None:
    first = runs[0]
    print(
        f"\n{'workers':>7} {'phase 1 s':>9} {'photos/s':>8} {'speed-up':>8} {'phase 2 s':>9} "
        f"{'total s':>7} {'speed-up':>8}  per worker: photos, CPU ms/photo (analyse_photo, "
        "whole process)"
    )
    for m in runs:
        workers = ", ".join(
            f"{w.photos} {1000 * w.analyse_cpu / max(1, w.photos):.0f}/"
            f"{1000 * w.process_cpu / max(1, w.photos):.0f}"
            for w in m.per_worker
        )
        total = m.analysis + m.timing
        print(
            f"{m.workers:7d} {m.analysis:9.1f} {photos / m.analysis:8.2f} "
            f"{first.analysis / m.analysis:7.2f}x {m.timing:9.1f} {total:7.1f} "
            f"{(first.analysis + first.timing) / total:7.2f}x  {workers}"
        )
    print("\nper worker, from CPU time (what an idle core would do):")
    for m in runs:
        print(
            f"  {m.workers} workers: {1000 * m.process_cpu_per_photo:.0f} CPU ms/photo in the "
            f"worker ({1000 * m.analyse_cpu_per_photo:.0f} in analyse_photo) -> "
            f"{1 / m.process_cpu_per_photo:.2f} photos/s per worker; phase 2 "
            f"{1000 * m.timing_cpu / photos:.1f} CPU ms/photo ({1000 * m.timing / photos:.1f} wall)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--race", type=Path, help="A race folder (racelens demo --out).")
    parser.add_argument("--athletes", type=int, default=60, help="Demo athletes (60).")
    parser.add_argument("--stations", type=int, default=4, help="Demo stations (4).")
    parser.add_argument("--seed", type=int, default=7, help="Demo seed (7).")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="(1 2)")
    parser.add_argument(
        "--reference", action="store_true", help="Also run the in-process DirectRunner."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        race = args.race
        if race is None:
            race = Path(tmp) / "race"
            generate_race(str(race), athletes=args.athletes, stations=args.stations, seed=args.seed)
        photos = sum(1 for p in (race / "images").rglob("*") if p.is_file())
        print(f"{photos} files in {race}; {os.cpu_count()} cores, load {load()} at the start")
        runs = []
        for workers in args.workers:
            runs.append(on_dask(race, Path(tmp) / f"dask-{workers}", workers))
            print(f"  {workers} workers done, load {load()}", flush=True)
        report(runs, photos)
        same = all(m.rows == runs[0].rows for m in runs)
        print(f"\npassages and leaderboard identical across worker counts: {same}")
        if args.reference:
            identical = direct_in_process(race, Path(tmp) / "direct") == runs[0].rows
            print(f"identical to the in-process DirectRunner: {identical}")
        print(f"load {load()} at the end")


if __name__ == "__main__":
    main()
