"""find_faces of another version of transforms/faces.py against this one, photo by photo.

    git show 1fa91e3:transforms/faces.py > /tmp/faces_before.py
    python bench/faces_ab.py /tmp/faces_before.py [--photos 70] [--repeats 2]

On two sets of 12 MP photos, each decoded as the pipeline decodes them (transforms.photos):
bench/perf.py's demo race with faces-dev's faces on its runners (about --photos photos,
--seed), and bibs-dev enlarged to 12 MP as `bench/bib_eval.py --megapixels 12` makes them.
Prints, for each set, on how many photos both versions give the same faces (boxes and
descriptors, as stored) and their CPU time a photo, each photo run by both in turn
--repeats times (the order alternating): a ratio measured in one run, so machine load
moves both alike. The other version is loaded as a module of its own beside this one.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Importing Beam warns that its GCP extra is missing: noise for a benchmark on this machine.
logging.basicConfig(level=logging.ERROR)

from bench.bib_eval import as_jpeg  # noqa: E402
from bench.common import DATA, load_module  # noqa: E402
from bench.perf import make_race  # noqa: E402
from transforms import faces  # noqa: E402
from transforms.photos import decode, list_photos, open_photo, read_bytes  # noqa: E402

MEGAPIXELS = 12


@dataclass(frozen=True)
class Comparison:
    photos: int
    same: int  # photos on which both versions give the same faces
    faces: int  # faces this version finds
    before_s: float  # CPU seconds a photo, the other version
    after_s: float  # this version
    median_ratio: float  # the median photo's this version / the other


def load_version(path: str) -> ModuleType:
    """The faces module at `path`, loaded beside transforms.faces."""
    return load_module("faces_before", Path(path))


def decoded(data: bytes) -> tuple[np.ndarray, int]:
    """A photo's grey decode and its reduction factor, as the pipeline decodes it."""
    header = open_photo(data)
    return decode(data, *header.size, header.format or "")


def compare(
    before: ModuleType, after: ModuleType, photos: list[tuple[np.ndarray, int]], repeats: int
) -> Comparison:
    """find_faces of `before` and `after` on each of `photos`, in turn `repeats` times."""
    models = {before: before.face_models(), after: after.face_models()}
    cpu = {before: 0.0, after: 0.0}
    same, found, ratios = 0, 0, []
    for i, (image, factor) in enumerate(photos):
        spent, seen = {before: 0.0, after: 0.0}, {}
        for turn in range(repeats):
            for version in (before, after) if (i + turn) % 2 else (after, before):
                start = time.process_time()
                seen[version] = version.find_faces(image, factor, models[version])
                spent[version] += time.process_time() - start
        same += seen[before] == seen[after]
        found += len(seen[after])
        ratios.append(spent[after] / max(spent[before], 1e-9))
        for version in cpu:
            cpu[version] += spent[version]
    runs = max(1, len(photos) * repeats)
    return Comparison(
        len(photos),
        same,
        found,
        cpu[before] / runs,
        cpu[after] / runs,
        statistics.median(ratios) if ratios else 1.0,
    )


def line(name: str, c: Comparison) -> str:
    return (
        f"{name}: {c.photos} photos, the same faces (boxes and descriptors) on {c.same}, "
        f"{c.faces} faces; find_faces {1000 * c.before_s:.1f} -> {1000 * c.after_s:.1f} CPU ms "
        f"a photo ({c.after_s / max(c.before_s, 1e-9):.3f}x, median photo {c.median_ratio:.3f}x)"
    )


def perf_photos(root: Path, count: int, seed: int) -> list[tuple[np.ndarray, int]]:
    race = make_race(root, count, MEGAPIXELS, seed, str(DATA / "faces-dev"))
    photos = []
    for path in list_photos(str(race.images)):
        try:
            image, factor = decoded(read_bytes(path))
        except (OSError, ValueError):  # the demo's corrupt photo
            continue
        if image is not None:
            photos.append((image, factor))
    return photos


def bibs_photos() -> list[tuple[np.ndarray, int]]:
    paths = sorted(glob.glob(str(DATA / "bibs-dev" / "*.[jJ][pP][gG]")))
    return [decoded(as_jpeg(cv2.imread(path), MEGAPIXELS)) for path in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", help="The other version's faces.py (e.g. from git show).")
    parser.add_argument("--photos", type=int, default=70, help="Demo race photos (70).")
    parser.add_argument("--seed", type=int, default=7, help="Demo race seed (7).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each photo (2).")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.before):
        print(f"faces_ab: error: no file '{args.before}'", file=sys.stderr)
        return 2
    if not (DATA / "bibs-dev").is_dir() or not (DATA / "faces-dev").is_dir():
        print(f"faces_ab: error: no bibs-dev and faces-dev in {DATA}", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)  # one core, as in a pipeline worker
    before = load_version(args.before)
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {
            "bench/perf.py's photos": perf_photos(Path(tmp) / "race", args.photos, args.seed),
            "bibs-dev at 12 MP": bibs_photos(),
        }
    for name, photos in sets.items():
        print(line(name, compare(before, faces, photos, args.repeats)), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
