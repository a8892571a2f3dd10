"""Live mode, measured: photos dripped into a watched folder, latency to the results.

    python bench/live_latency.py [--athletes 40] [--seconds 120]

Generates a demo race, then drips its photos into an empty folder in the
order they were taken, squeezed into `--seconds` (pipeline/drip.py: one
station's phone uploads everything when the race is over, and every 25th
photo is uploaded twice), while the local live mode keeps the results
current. Prints the median and 95th percentile latency from a photo landing
in the folder to its row in the results, the machine's load, and whether the
live results equal a batch run on the same files.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from pipeline.cli import main
from pipeline.demo import generate_race
from pipeline.drip import differing, drip
from pipeline.live import watch


def measure(athletes: int, seconds: float, work: Path) -> int:
    race = work / "race"
    generate_race(str(race), athletes=athletes, stations=4, seed=11)
    live_images = work / "live-images"
    live_images.mkdir()
    argv = [
        "--images", str(live_images), "--course", str(race / "course.yaml"),
        "--start-list", str(race / "startlist.csv"), "--as-of", "2026-05-01T16:00:00+00:00",
        "--no-progress",
    ]  # fmt: skip
    landed: dict[str, float] = {}
    done = threading.Event()
    dripper = threading.Thread(
        target=drip, args=(race / "images", live_images, seconds, landed, done)
    )
    load = os.getloadavg()[0]
    dripper.start()
    state = watch([*argv, "--out", str(work / "live")], None, should_stop=done.is_set)
    dripper.join()
    latencies = sorted(state.published[p] - landed[p] for p in landed if p in state.published)
    batch = ["run", *argv, "--out", str(work / "batch"), "--facts", str(work / "live" / "facts")]
    assert main(batch) == 0
    diff = differing(work / "live", work / "batch")
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"photos uploaded: {len(landed)} in {seconds:g} s; live updates: {state.cycles}")
    print(f"too late: {len(state.too_late)}; load average at the start {load:.1f}, at the end "
          f"{os.getloadavg()[0]:.1f} (2 cores)")  # fmt: skip
    print(f"latency to results: median {statistics.median(latencies):.1f} s, p95 {p95:.1f} s")
    print(f"live results equal batch results (passages, leaderboard): {not diff}")
    return 1 if diff else 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=120.0, help="Length of the drip.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        return measure(args.athletes, args.seconds, Path(work))


if __name__ == "__main__":
    sys.exit(cli())
