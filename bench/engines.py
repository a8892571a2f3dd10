"""Wall time of one demo race on each engine racelens runs on this machine, and whether
each one gives the in-process run's passages and leaderboard, row for row.

    python bench/engines.py [--athletes 60] [--stations 4] [--seed 7] [--workers 2]

Every engine times the race in a fresh `racelens run` process (start-up included) with a
fact store of its own, so every photo is analysed: the DirectRunner in-process, the
DirectRunner with worker processes, and Dask with a LocalCluster of worker processes
(analysis on Dask, timing on the DirectRunner; see pipeline/engines.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from pipeline.demo import generate_race  # noqa: E402
from transforms.write import LEADERBOARD_FILE, PASSAGES_FILE  # noqa: E402

ENGINES = {
    "DirectRunner in-process": ["--direct_running_mode=in_memory"],
    "DirectRunner multi_processing": [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers={workers}",
    ],
    "Dask LocalCluster": ["--runner=DaskRunner", "--dask_local_workers={workers}"],
}
COMPARED = (PASSAGES_FILE, LEADERBOARD_FILE)


def time_run(race: Path, out: Path, engine_argv: list[str]) -> float:
    """Seconds for one `racelens run` of the race into `out`; exits if the run fails."""
    argv = [
        *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
        *("--start-list", str(race / "startlist.csv"), "--out", str(out), "--no-progress"),
    ]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", *argv, *engine_argv],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"racelens run {' '.join(engine_argv)} failed:\n{done.stderr}")
    return time.monotonic() - started


def compared_rows(out: Path) -> dict[str, list[dict]]:
    return {name: pq.read_table(out / name).to_pylist() for name in COMPARED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=60, help="Athletes (60).")
    parser.add_argument("--stations", type=int, default=4, help="Stations (4).")
    parser.add_argument("--seed", type=int, default=7, help="Random seed (7).")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes (2).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        race = Path(tmp) / "race"
        summary = generate_race(
            str(race), athletes=args.athletes, stations=args.stations, seed=args.seed
        )
        print(
            f"demo race: {summary.images} images, {summary.athletes} athletes, "
            f"{summary.stations} stations; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} at the start"
        )
        reference: dict[str, list[dict]] | None = None
        for i, (engine, template) in enumerate(ENGINES.items()):
            out = Path(tmp) / f"out-{i}"
            seconds = time_run(race, out, [a.format(workers=args.workers) for a in template])
            rows = compared_rows(out)
            reference = reference or rows
            same = "yes" if rows == reference else "NO"
            print(f"{engine:<32} {seconds:7.1f} s   passages and leaderboard identical: {same}")


if __name__ == "__main__":
    main()
