"""Live mode, measured: photos dripped into a watched folder, latency to the results.

    python bench/live_latency.py [--athletes 40] [--seconds 60]

Generates a demo race, then copies its photos into an empty folder in event
time order, squeezed into `--seconds`, the way cameras upload on race day:
one station's phone has no signal and uploads everything at the end (late
photos), and a share of photos is uploaded twice. Meanwhile `racelens run
--streaming` keeps the results current. Prints the median and 95th
percentile latency from a photo landing in the folder to its row in the
results, and whether the live results equal a batch run on the same files.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from pipeline.cli import main
from pipeline.demo import generate_race
from pipeline.live import watch
from transforms.exif import exif_facts

LATE_FOLDER_PREFIX = "IMG_"  # the demo's cp2 phone: uploads when the race is over
TWICE_EVERY = 25  # every 25th photo is uploaded a second time


def taken(path: Path) -> str:
    with Image.open(path) as image:
        return exif_facts(image).datetime_original or ""


def upload_plan(images: Path) -> list[Path]:
    """Photos in the order they reach the folder: event time, the late phone last."""
    photos = sorted((p for p in images.rglob("*") if p.is_file()), key=lambda p: (taken(p), p))
    on_time = [p for p in photos if not p.name.startswith(LATE_FOLDER_PREFIX)]
    return on_time + [p for p in photos if p.name.startswith(LATE_FOLDER_PREFIX)]


def drip(
    plan: list[Path],
    source: Path,
    target: Path,
    seconds: float,
    landed: dict[str, float],
    done: threading.Event,
) -> None:
    gap = seconds / max(1, len(plan))
    for i, photo in enumerate(plan):
        copies = [photo.relative_to(source)]
        if i % TWICE_EVERY == 0:
            copies.append(copies[0].with_name(f"{photo.stem} (again){photo.suffix}"))
        for relative in copies:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, destination)
            landed[str(destination)] = time.time()
        time.sleep(gap)
    done.set()


def table(out: Path, name: str) -> list[dict]:
    return sorted(pq.read_table(out / name).to_pylist(), key=repr)


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
    plan = upload_plan(race / "images")
    dripper = threading.Thread(
        target=drip, args=(plan, race / "images", live_images, seconds, landed, done)
    )
    dripper.start()
    state = watch(
        [*argv, "--out", str(work / "live")], str(live_images), None, 0.5, should_stop=done.is_set
    )
    dripper.join()
    latencies = sorted(state.published[p] - landed[p] for p in landed if p in state.published)
    assert (
        main(["run", *argv, "--out", str(work / "batch"), "--facts", str(work / "live" / "facts")])
        == 0
    )
    same = all(
        table(work / "live", name) == table(work / "batch", name)
        for name in ("passages.parquet", "leaderboard.parquet")
    )
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"photos uploaded: {len(landed)} in {seconds:g} s; live updates: {state.cycles}")
    print(f"latency to results: median {statistics.median(latencies):.1f} s, p95 {p95:.1f} s")
    print(f"live results equal batch results (passages, leaderboard): {same}")
    return 0 if same else 1


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of the drip.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        return measure(args.athletes, args.seconds, Path(work))


if __name__ == "__main__":
    sys.exit(cli())
