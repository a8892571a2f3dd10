"""What a dlib HOG scan costs, split into its fHOG features and its filters, level by level.

    python bench/hog_scans.py [--photos 3] [--repeats 5]

On bibs-dev's photos enlarged to 12 MP (decoded as the pipeline decodes them, as
bench/faces_ab.py makes them), each photo's searched image and HOG pyramid as
transforms.faces builds them: every level scanned whole (WHOLE_LEVELS) and square cuts of
the finest level, each by the detector holding none of its filters, the front one alone and
all five (`faces.with_filters`). A scan with no filter costs its features alone, so the rest
of a scan's CPU is its filters'; the smallest cut's cost bounds a scan's fixed cost (what
merging cuts into one scan could save). Prints the CPU ms of each, averaged over the photos.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from bench.bib_eval import as_jpeg  # noqa: E402
from bench.common import DATA, spread  # noqa: E402
from bench.faces_ab import MEGAPIXELS, decoded  # noqa: E402
from transforms import faces  # noqa: E402

CUT_SIDES = (24, 48, 96, 192, 384)  # px, square cuts of the finest level


def detectors(models: faces.FaceModels) -> dict[str, object]:
    """The level detector holding none, one (the front) and all five of its filters, each
    keeping every window it scores (as the pipeline's region scans do)."""
    return {
        "features": faces.with_filters(models.window_detector, []),
        "front": models.front_detector,
        "all five": models.window_detector,
    }


def scan_ms(detector, pixels: np.ndarray, repeats: int) -> float:
    """CPU ms of one scan of `pixels` at the proposals' threshold, the least of `repeats`
    (the least: other processes' load only ever adds)."""
    spent = []
    for _ in range(repeats):
        start = time.process_time()
        detector.run(pixels, 0, faces.PROPOSAL_THRESHOLD)
        spent.append(time.process_time() - start)
    return 1000 * min(spent)


def scanned(image: np.ndarray) -> dict[str, np.ndarray]:
    """The whole levels of the HOG pyramid of `image` (a photo as the pipeline decodes it) and
    square cuts of its finest level, each by name, as transforms.faces searches them."""
    levels = faces.pyramid(faces.searched_image(image)[0])
    parts = {f"level {lv + 1} whole": levels[lv] for lv in faces.WHOLE_LEVELS if lv < len(levels)}
    finest = levels[0]
    for side in CUT_SIDES:
        if side <= min(finest.shape[:2]):
            top, left = (finest.shape[0] - side) // 2, (finest.shape[1] - side) // 2
            cut = finest[top : top + side, left : left + side]
            parts[f"{side} px cut"] = np.ascontiguousarray(cut)
    return parts


def scan_costs(
    images: Sequence[np.ndarray], models: faces.FaceModels, repeats: int
) -> dict[str, dict[str, float]]:
    """Part name -> detector name -> CPU ms of a scan, the mean over `images`."""
    found = detectors(models)
    costs: dict[str, dict[str, list[float]]] = {}
    for image in images:
        for name, pixels in scanned(image).items():
            row = costs.setdefault(name, {kind: [] for kind in found})
            for kind, detector in found.items():
                row[kind].append(scan_ms(detector, pixels, repeats))
    return {
        name: {kind: statistics.mean(ms) for kind, ms in row.items()} for name, row in costs.items()
    }


def table(costs: dict[str, dict[str, float]]) -> list[str]:
    kinds = list(next(iter(costs.values()), {}))
    lines = ["CPU ms a scan" + "".join(f"{kind:>12}" for kind in kinds) + "     filters"]
    for name, row in costs.items():
        filters = row["all five"] - row["features"]
        lines.append(f"{name:<16}" + "".join(f"{row[k]:12.3f}" for k in kinds) + f"{filters:12.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=3, help="bibs-dev photos (3)")
    parser.add_argument("--repeats", type=int, default=5, help="scans of each, the least kept (5)")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(str(DATA / "bibs-dev" / "*.[jJ][pP][gG]")))
    if not paths or not faces.models_available():
        print(f"hog_scans: error: needs bibs-dev in {DATA} and the face models", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)  # one core, as in a pipeline worker
    images = [decoded(as_jpeg(cv2.imread(p), MEGAPIXELS))[0] for p in spread(paths, args.photos)]
    print(f"{len(images)} photos of bibs-dev at {MEGAPIXELS} MP, load {os.getloadavg()[0]:.1f}")
    print("\n".join(table(scan_costs(images, faces.face_models(), args.repeats))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
