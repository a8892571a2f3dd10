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
CPU seconds, of `analyse_photo`, of the thread that runs it and of the whole process (the
rest is Dask's and the libraries' other threads). Measured in this process: photos that
phase 2 analysed again (0 unless facts went missing). On a shared machine wall time counts
other jobs too, and even CPU time per photo grows when the other core is busy: a fixed
CPU-bound loop, timed alone and two side by side (the machine check, first), shows how
much, and so the most a second worker can give on this machine.

Prints the analysis speed-up from the first worker count to each other one, photos per
second per worker, and a 300,000-photo marathon on N workers from these figures.
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from dask.distributed import Client, WorkerPlugin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from pipeline import engines  # noqa: E402
from pipeline.demo import generate_race  # noqa: E402
from pipeline.graph import build, build_from_groups, run  # noqa: E402
from transforms.write import LEADERBOARD_FILE, PASSAGES_FILE  # noqa: E402

COMPARED = (PASSAGES_FILE, LEADERBOARD_FILE)
MARATHON_PHOTOS = 300_000
MARATHON_WORKERS = (1, 16, 64, 256)
GOAL_SPEED_UP = 1.7
SPIN_LOOPS = 3_000_000  # ~0.2 CPU s of the machine check's loop on an idle core
SPIN_ROUNDS = 7


def count_analyses() -> None:
    """Counts, in this process from now on, the photos analysed, their CPU time and the
    threads that analysed them (`photos.analyse_photo.tally`)."""
    from transforms import photos

    analyse = photos.analyse_photo
    # Kept on the function: this script is __main__ here, and a worker would get a copy of
    # a global of it with every call.
    tally = {"photos": 0, "cpu": 0.0, "threads": set()}

    @functools.wraps(analyse)
    def counted(*args: object, **kwargs: object) -> object:
        started = time.thread_time()
        try:
            return analyse(*args, **kwargs)
        finally:
            tally["photos"] += 1
            tally["cpu"] += time.thread_time() - started
            tally["threads"].add(threading.get_native_id())

    counted.tally = tally
    photos.analyse_photo = counted  # the DoFns look it up when they call it


class CountAnalyses(WorkerPlugin):
    """`count_analyses` in each worker process."""

    def setup(self, worker: object) -> None:
        count_analyses()


def thread_cpu(native_id: int) -> float:
    """CPU seconds of one thread of this process so far (Linux)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_state() -> dict[str, float]:
    """What a process counted, its CPU seconds so far and those of its analysing threads."""
    from transforms import photos

    usage = resource.getrusage(resource.RUSAGE_SELF)
    tally = getattr(photos.analyse_photo, "tally", {"photos": 0, "cpu": 0.0, "threads": ()})
    return {
        "photos": tally["photos"],
        "cpu": tally["cpu"],
        "task_cpu": sum(thread_cpu(t) for t in tally["threads"]),
        "process_cpu": usage.ru_utime + usage.ru_stime,
    }


def spin(_: int) -> float:
    """CPU seconds of a fixed pure-Python loop: no memory traffic, no threads, no I/O."""
    started = time.thread_time()
    total = 0
    for i in range(SPIN_LOOPS):
        total += i * i
    return time.thread_time() - started


def idle_ticks() -> tuple[int, int]:
    """Idle and all clock ticks of every core so far (Linux)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


@dataclass(frozen=True)
class MachineCheck:
    alone: float  # median CPU s of the loop with the other processes of this check idle
    side_by_side: float  # median CPU s of each of two loops run at once
    idle_alone: float  # share of the machine idle while the loop ran alone

    @property
    def slowdown(self) -> float:
        return self.side_by_side / self.alone


def machine_check() -> MachineCheck:
    """The loop alone and two side by side, alternately: what a second busy process costs
    the first on this machine (shared physical cores, caches or host), apart from racelens."""
    alone, side_by_side, idle, ticks = [], [], 0, 0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for _ in range(SPIN_ROUNDS):
            before = idle_ticks()
            alone += pool.map(spin, [0])
            after = idle_ticks()
            idle, ticks = idle + after[0] - before[0], ticks + after[1] - before[1]
            side_by_side += pool.map(spin, [0, 1], chunksize=1)
    return MachineCheck(
        statistics.median(alone), statistics.median(side_by_side), idle / max(1, ticks)
    )


@dataclass(frozen=True)
class Worker:
    photos: int
    analyse_cpu: float  # seconds in analyse_photo
    task_cpu: float  # seconds of the threads that ran analyse_photo, during phase 1
    process_cpu: float  # seconds of the whole worker process during phase 1


@dataclass(frozen=True)
class Measured:
    workers: int
    analysis: float  # wall seconds of phase 1
    launcher_cpu: float  # CPU seconds of this process (client, LocalCluster's scheduler) in it
    timing: float  # wall seconds of phase 2
    timing_cpu: float  # CPU seconds of phase 2 (this process)
    reanalysed: int  # photos phase 2 analysed (in this process): 0 when every fact was stored
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

    @property
    def task_cpu_per_photo(self) -> float:
        return sum(w.task_cpu for w in self.per_worker) / max(1, self.photos)


def race_argv(race: Path, out: Path) -> list[str]:
    return [
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
    ]


def compared_rows(out: Path) -> dict[str, list[dict]]:
    return {name: pq.read_table(out / name).to_pylist() for name in COMPARED}


def on_dask(race: Path, out: Path, workers: int) -> Measured:
    """Both phases of a Dask run on a fresh LocalCluster of `workers` processes."""
    with engines.local_cluster(workers) as cluster, Client(cluster) as client:
        client.register_plugin(CountAnalyses())
        before = client.run(worker_state)
        argv = [*race_argv(race, out), "--runner=DaskRunner"]
        started, launcher_cpu = time.perf_counter(), time.process_time()
        groups = engines.analyse_on_dask(
            [*argv, f"--dask_client_address={cluster.scheduler_address}"]
        )
        analysed, launcher_cpu = time.perf_counter(), time.process_time() - launcher_cpu
        after = client.run(worker_state)
    launcher_before = worker_state()
    timing_cpu = time.process_time()  # the DirectRunner runs in this process
    run(
        [*argv, "--runner=DirectRunner"],
        graph=functools.partial(build_from_groups, groups=groups),
    )
    timed, timing_cpu = time.perf_counter(), time.process_time() - timing_cpu
    reanalysed = int(worker_state()["photos"] - launcher_before["photos"])
    per_worker = [
        Worker(
            photos=int(after[w]["photos"] - before[w]["photos"]),
            analyse_cpu=after[w]["cpu"] - before[w]["cpu"],
            task_cpu=after[w]["task_cpu"] - before[w]["task_cpu"],
            process_cpu=after[w]["process_cpu"] - before[w]["process_cpu"],
        )
        for w in sorted(after)
    ]
    return Measured(
        workers,
        analysed - started,
        launcher_cpu,
        timed - analysed,
        timing_cpu,
        reanalysed,
        per_worker,
        compared_rows(out),
    )


def direct_in_process(race: Path, out: Path) -> dict[str, list[dict]]:
    run([*race_argv(race, out), "--direct_running_mode=in_memory"], graph=build)
    return compared_rows(out)


def load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def per_photo_ms(seconds: float, photos: int) -> float:
    return 1000 * seconds / max(1, photos)


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def report(runs: list[Measured], photos: int, check: MachineCheck) -> None:
    first = runs[0]
    print(
        f"\n{'workers':>7} {'phase 1 s':>9} {'photos/s':>8} {'speed-up':>8} {'phase 2 s':>9} "
        f"{'total s':>7} {'speed-up':>8} {'re-analysed':>11}  per worker: photos, CPU ms/photo "
        "(analyse_photo / its thread / whole process)"
    )
    for m in runs:
        workers = ", ".join(
            f"{w.photos} {per_photo_ms(w.analyse_cpu, w.photos):.0f}/"
            f"{per_photo_ms(w.task_cpu, w.photos):.0f}/{per_photo_ms(w.process_cpu, w.photos):.0f}"
            for w in m.per_worker
        )
        total = m.analysis + m.timing
        print(
            f"{m.workers:7d} {m.analysis:9.1f} {photos / m.analysis:8.2f} "
            f"{first.analysis / m.analysis:7.2f}x {m.timing:9.1f} {total:7.1f} "
            f"{(first.analysis + first.timing) / total:7.2f}x {m.reanalysed:11d}  {workers}"
        )
    print("\nper worker, from CPU time:")
    for m in runs:
        cpu, task = m.process_cpu_per_photo, m.task_cpu_per_photo
        print(
            f"  {m.workers} workers: {1000 * cpu:.0f} CPU ms/photo in the worker "
            f"({1000 * m.analyse_cpu_per_photo:.0f} in analyse_photo, {1000 * task:.0f} in its "
            f"thread, {1000 * (cpu - task):.0f} in other threads) -> {1 / cpu:.2f} photos/s per "
            f"busy core, {photos / m.analysis / m.workers:.2f} photos/s per worker measured; "
            f"launcher in phase 1 {per_photo_ms(m.launcher_cpu, photos):.1f} CPU ms/photo; "
            f"phase 2 {per_photo_ms(m.timing_cpu, photos):.1f} CPU ms/photo "
            f"({per_photo_ms(m.timing, photos):.1f} wall)"
        )
    print(
        f"\nmachine check: a CPU-bound loop takes {1000 * check.alone:.0f} CPU ms alone, "
        f"{1000 * check.side_by_side:.0f} with two side by side (x{check.slowdown:.2f}): "
        f"two busy processes give at most {2 / check.slowdown:.2f}x on this machine (the "
        f"machine was {100 * check.idle_alone:.0f} % idle while the loop ran alone; "
        f"{100 * (1 - 1 / (os.cpu_count() or 1)):.0f} % means nothing else ran)"
    )
    for m in runs[1:]:
        print(
            f"analysis speed-up {first.workers} -> {m.workers} workers: "
            f"{first.analysis / m.analysis:.2f}x (goal {GOAL_SPEED_UP}x from 1 to 2); CPU "
            f"per photo per worker x{m.process_cpu_per_photo / first.process_cpu_per_photo:.2f}"
        )
    busiest = runs[-1]  # every core busy: the per-worker cost a cluster of busy machines sees
    analysis_s = MARATHON_PHOTOS * busiest.process_cpu_per_photo
    timing_s = MARATHON_PHOTOS * busiest.timing_cpu / photos
    print(
        f"\n{MARATHON_PHOTOS:,} photos on paper, at {1000 * busiest.process_cpu_per_photo:.0f} CPU "
        f"ms/photo per worker ({busiest.workers} workers' figure) and "
        f"{per_photo_ms(busiest.timing_cpu, photos):.1f} CPU ms/photo of timing on the launcher:"
    )
    for n in MARATHON_WORKERS:
        print(
            f"  {n:4d} workers: analysis {duration(analysis_s / n)} + timing "
            f"{duration(timing_s)} = {duration(analysis_s / n + timing_s)}"
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
        check = machine_check()
        count_analyses()  # phase 2 runs here: it counts what the timing analyses again
        runs = []
        for workers in args.workers:
            runs.append(on_dask(race, Path(tmp) / f"dask-{workers}", workers))
            print(f"  {workers} workers done, load {load()}", flush=True)
        report(runs, photos, check)
        same = all(m.rows == runs[0].rows for m in runs)
        print(f"\npassages and leaderboard identical across worker counts: {same}")
        if args.reference:
            identical = direct_in_process(race, Path(tmp) / "direct") == runs[0].rows
            print(f"identical to the in-process DirectRunner: {identical}")
        print(f"load {load()} at the end")


if __name__ == "__main__":
    main()
