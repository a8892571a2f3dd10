"""CPU of finding and reading bibs, another tree's code against this one's, photo by photo.

    python bench/bib_ab.py OLD_TREE --race DIR [--photos 40]   # bench/perf.py's photos
    python bench/bib_ab.py OLD_TREE FOLDER [--photos 40]       # any folder of photos

OLD_TREE is another checkout of racelens (`git worktree add --detach /tmp/old COMMIT`): its
transforms/ocr.py and transforms/ppocr.py are loaded beside this tree's, each with its own
recogniser. --race DIR reads bench/perf.py's race (seed 7, 12 MP, faces from
$RACELENS_DATA/faces-dev), made in DIR first unless it is there. The photos are taken evenly
spread, at most --photos (as bench/perf.py samples its stages), each decoded as the pipeline
decodes it (transforms.photos.decode) afresh before each timed call, so that both find it as
fresh in the caches as the pipeline does. The two versions take
turns, the first of each photo alternating, on one machine at one moment: their ratio holds
where the machine's load would move separate runs apart. It prints the CPU ms a photo of
finding the lines (ocr._detect, as read_bibs finds them) and of read_bibs (finding and
reading), their ratios, and on how many photos the two read the same (bibs, confidences and
boxes, to the last bit).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import cv2

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import DATA, load_module, spread  # noqa: E402
from transforms import ocr  # noqa: E402
from transforms.photos import Unusable, decode, list_photos, open_photo, read_bytes  # noqa: E402

STAGES = ("finding", "read_bibs")


def load_other(tree: Path) -> ModuleType:
    """The other tree's transforms.ocr, reading with its own transforms.ppocr."""
    modules = {
        name: load_module(f"other_{name}", tree / "transforms" / f"{name}.py")
        for name in ("ppocr", "ocr")
    }
    modules["ocr"].recogniser = modules["ppocr"].recogniser
    return modules["ocr"]


def perf_race(root: Path) -> Path:
    """The images of bench/perf.py's race in root, made there first unless it is there."""
    if not (root / "images").is_dir():
        from bench.perf import make_race

        make_race(root, 200, 12, 7, str(DATA / "faces-dev"))
    return root / "images"


def reads_of(version: ModuleType, gray) -> list[tuple]:
    """read_bibs' reads as plain values: the two trees' BibRead classes never compare equal."""
    return [(r.bib, r.confidence, r.box, r.unprefixed) for r in version.read_bibs(gray)]


def compare(other: ModuleType, paths: list[str]) -> tuple[dict[str, list[float]], int, int]:
    """CPU seconds of each stage of (other, this), summed over the photos; the photos both
    read alike; the photos decoded."""
    costs = {stage: [0.0, 0.0] for stage in STAGES}
    alike = decoded = 0
    versions = (other, ocr)
    for k, path in enumerate(paths):
        data = read_bytes(path)
        try:
            header = open_photo(data)
        except Unusable:  # the pipeline rejects it
            continue
        if decode(data, *header.size, header.format or "")[0] is None:
            continue
        decoded += 1
        reads = [None, None]
        for v in (0, 1) if k % 2 == 0 else (1, 0):
            version = versions[v]
            gray = decode(data, *header.size, header.format or "")[0]
            start = time.process_time()
            version._detect(gray, version.LOOSE)
            costs["finding"][v] += time.process_time() - start
            gray = decode(data, *header.size, header.format or "")[0]
            start = time.process_time()
            reads[v] = reads_of(version, gray)
            costs["read_bibs"][v] += time.process_time() - start
        alike += reads[0] == reads[1]
    return costs, alike, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="another checkout of racelens")
    parser.add_argument("folder", nargs="?", help="a folder of photos")
    parser.add_argument("--race", type=Path, help="bench/perf.py's race, made here if absent")
    parser.add_argument("--photos", type=int, default=40, help="photos, at most (40)")
    args = parser.parse_args()
    if not (args.old / "transforms" / "ocr.py").is_file():
        parser.error(f"{args.old} holds no transforms/ocr.py")
    if (args.folder is None) == (args.race is None):
        parser.error("give a FOLDER or --race DIR")
    if args.folder is not None and not os.path.isdir(args.folder):
        parser.error(f"no folder {args.folder}")
    cv2.setNumThreads(1)  # as in the pipeline's workers
    if args.race is not None:
        args.folder = str(perf_race(args.race))
    other = load_other(args.old)
    paths = spread(list_photos(args.folder), args.photos)
    compare(other, paths[:1])  # the recognisers load on their first line
    costs, alike, decoded = compare(other, paths)
    print(f"{decoded} photos of {args.folder}, load average {os.getloadavg()[0]:.1f}")
    for stage, (old, new) in costs.items():
        print(
            f"  {stage:10s} {1000 * old / decoded:7.1f} -> {1000 * new / decoded:7.1f} "
            f"CPU ms a photo ({new / old:.3f}x)"
        )
    print(f"  the same reads on {alike} of {decoded} photos")


if __name__ == "__main__":
    main()
