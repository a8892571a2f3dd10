"""Measure transforms.ocr.read_bibs: precision, recall and F1 over bib instances, ms per image.

A data set is a folder with labels.csv (`file,bibs`, bibs joined by `;`, file relative to the
folder). Labels are compared by their digits, since read_bibs returns digits only: a crop
labelled "T2182" counts as read when "2182" is read.

    python bench/bib_eval.py                              # $RACELENS_DATA/bibs-dev
    python bench/bib_eval.py /work/shared/data/bib-crops-dev
    python bench/bib_eval.py --demo 60                    # a synthetic race of 60 athletes

RACELENS_DATA defaults to /work/shared/data. --demo generates a race with pipeline.demo into
a temporary folder and labels each photo with the bibs the generator drew unoccluded on it.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.ocr import BibRead, read_bibs  # noqa: E402

THRESHOLDS = (0.0, 0.5, 0.75, 0.9)
ERROR_THRESHOLD = 0.75  # --errors lists images whose reads at this confidence are wrong


@dataclass
class Tally:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, truth: Counter[str], read: Counter[str]) -> None:
        hits = sum((truth & read).values())
        self.true_positives += hits
        self.false_positives += sum(read.values()) - hits
        self.false_negatives += sum(truth.values()) - hits

    def line(self) -> str:
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return f"P {precision:.3f}  R {recall:.3f}  F1 {f1:.3f}  (tp {tp}, fp {fp}, fn {fn})"


def load_labels(folder: Path) -> list[tuple[str, Counter[str]]]:
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = []
    for row in rows:
        digits = (re.sub(r"\D", "", bib) for bib in row["bibs"].split(";"))
        labels.append((row["file"], Counter(d for d in digits if d)))
    return labels


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (tesseract may run as one)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def evaluate(folder: Path, limit: int | None, show_errors: bool) -> None:
    labels = load_labels(folder)[:limit]
    warm_up(folder, labels)
    tallies = {t: Tally() for t in THRESHOLDS}
    wall = cpu = 0.0
    images = 0
    for name, truth in labels:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipped unreadable {name}", file=sys.stderr)
            continue
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        reads = read_bibs(image)
        wall += time.perf_counter() - start_wall
        cpu += cpu_seconds() - start_cpu
        images += 1
        for threshold, tally in tallies.items():
            tally.add(truth, Counter(r.bib for r in reads if r.confidence >= threshold))
        if show_errors:
            report_errors(name, truth, reads)
    print(f"{folder}: {images} images, {sum(sum(t.values()) for _, t in labels)} bibs")
    for threshold, tally in tallies.items():
        print(f"  confidence >= {threshold:.2f}: {tally.line()}")
    if images:
        print(f"  {1000 * wall / images:.0f} ms wall, {1000 * cpu / images:.0f} ms CPU per image")


def warm_up(folder: Path, labels: list[tuple[str, Counter[str]]]) -> None:
    """Read one labelled photo untimed, so that the OCR engine's start-up is not counted."""
    for name, truth in labels:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is not None and truth:
            read_bibs(image)
            return


def report_errors(name: str, truth: Counter[str], reads: list[BibRead]) -> None:
    if Counter(r.bib for r in reads if r.confidence >= ERROR_THRESHOLD) != truth:
        found = ", ".join(f"{r.bib}@{r.confidence:.2f}" for r in reads)
        print(f"  {name}: truth {sorted(truth.elements())}, read [{found}]")


def demo_race(out: Path, athletes: int, stations: int, seed: int) -> Path:
    """Generates a demo race into out and labels the bibs visible on each of its photos.

    The generator records truth per passage, not per photo, so its plan is replayed here
    with the same seed; this leans on pipeline.demo's planning helpers and must follow them.
    """
    from pipeline import demo

    demo.generate_race(str(out), athletes=athletes, stations=stations, seed=seed)
    rng = np.random.default_rng(seed)
    course = demo._course(stations)
    cameras = demo._cameras(rng, course)
    roster = demo._athletes(rng, athletes)
    shots = demo._shots(rng, demo._passages(rng, roster, course), cameras)
    with open(out / "images" / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "bibs"])
        for path, shot in demo._file_names(shots):
            if shot.kind is not demo.ShotKind.CORRUPT:
                visible = (str(fig.athlete.bib) for fig in shot.figures if not fig.occluded)
                writer.writerow([path, ";".join(visible)])
    return out / "images"


def main() -> None:
    data = Path(os.environ.get("RACELENS_DATA", "/work/shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=data / "bibs-dev",
        help="folder with labels.csv (default: $RACELENS_DATA/bibs-dev)",
    )
    parser.add_argument(
        "--demo",
        type=int,
        metavar="ATHLETES",
        help="evaluate on a generated demo race of this many athletes instead",
    )
    parser.add_argument("--stations", type=int, default=4, help="demo race stations")
    parser.add_argument("--seed", type=int, default=7, help="demo race seed")
    parser.add_argument("--limit", type=int, help="evaluate only the first LIMIT images")
    parser.add_argument("--errors", action="store_true", help="list images read wrongly")
    args = parser.parse_args()
    if args.demo is None:
        evaluate(args.folder, args.limit, args.errors)
        return
    with tempfile.TemporaryDirectory(prefix="bib-eval-demo-") as out:
        images = demo_race(Path(out), args.demo, args.stations, args.seed)
        evaluate(images, args.limit, args.errors)


if __name__ == "__main__":
    main()
