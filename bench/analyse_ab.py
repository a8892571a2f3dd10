"""analyse_photo of another tree's code against this one's, photo by photo, in one process.

    git archive COMMIT | tar -x -C /tmp/old          # another checkout of racelens
    python bench/analyse_ab.py /tmp/old FOLDER [--photos 46] [--repeats 2] [--no-faces]

The whole analysis of a photo (decode, phash and quality, faces, bib search and reading, the
torso pass), as the pipeline's workers run it: OpenCV on one thread, OpenBLAS's threads as
pipeline/__init__.py sets them. The other tree's `transforms` package is imported under its
own names while this tree's modules are set aside, then this tree's are set back, so each
version runs its own code (and loads its own models; imports made inside a function, such as
the recogniser's folding, find this tree's). Each photo is analysed by both in
turn, --repeats times, the first alternating, on one machine at one moment: their ratio
holds where the machine's load would move separate runs apart. FOLDER is read as the
pipeline lists photos (bench/perf.py's `--real` photos: bibs-dev enlarged to 12 MP with
`bench.bib_eval.as_jpeg`). It prints the CPU ms a photo of each, their ratio (mean, and the
median photo's), and on how many photos the two give the same facts, to the last bit
(all but the analysis version).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402, F401  (the workers' environment: one OpenBLAS thread)
from bench.common import spread  # noqa: E402
from transforms import faces, photos  # noqa: E402

PACKAGE = "transforms"


@dataclass(frozen=True)
class Version:
    """One tree's analysis: analyse_photo(data, image_id) with that tree's models."""

    analyse: Callable[[bytes, str], Any]


def _own(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


@contextmanager
def _set_aside() -> Iterator[None]:
    """This tree's transforms modules out of sys.modules meanwhile, then back."""
    kept = {name: sys.modules.pop(name) for name in list(sys.modules) if _own(name)}
    try:
        yield
    finally:
        for name in [name for name in sys.modules if _own(name)]:
            del sys.modules[name]
        sys.modules.update(kept)


def version_of(tree: Path, with_faces: bool) -> Version:
    """analyse_photo of the racelens checkout at `tree`, its models loaded."""
    with _set_aside():
        sys.path.insert(0, str(tree))
        try:
            other_photos = importlib.import_module(f"{PACKAGE}.photos")
            other_faces = importlib.import_module(f"{PACKAGE}.faces")
            models = other_faces.face_models() if with_faces else None
        finally:
            sys.path.remove(str(tree))
    return Version(lambda data, image_id: other_photos.analyse_photo(data, image_id, models))


def this_version(with_faces: bool) -> Version:
    models = faces.face_models() if with_faces else None
    return Version(lambda data, image_id: photos.analyse_photo(data, image_id, models))


def facts(result: Any) -> dict[str, Any]:
    """A PhotoFacts as plain values (the two trees' classes never compare equal), all but
    the analysis version, which a change that moves facts bumps."""
    values = asdict(result)
    values.pop("version", None)
    return values


@dataclass(frozen=True)
class Comparison:
    photos: int
    same: int  # photos on which both give the same facts
    other_ms: list[float]  # CPU ms of each photo, the other tree
    this_ms: list[float]  # this tree

    def lines(self) -> list[str]:
        other, this = statistics.mean(self.other_ms), statistics.mean(self.this_ms)
        ratios = [b / a for a, b in zip(self.other_ms, self.this_ms, strict=True) if a > 0]
        median = statistics.median(ratios) if ratios else float("nan")
        return [
            f"  analyse_photo {other:7.1f} -> {this:7.1f} CPU ms a photo ({this / other:.3f}x, "
            f"the median photo {median:.3f}x)",
            f"  the same facts on {self.same} of {self.photos} photos",
        ]


def compare(other: Version, this: Version, paths: list[str], repeats: int) -> Comparison:
    """Each photo analysed by both versions in turn, `repeats` times, the first alternating."""
    versions = (other, this)
    spent: tuple[list[float], list[float]] = ([], [])
    same = 0
    for k, path in enumerate(paths):
        data = photos.read_bytes(path)
        name = os.path.basename(path)
        cpu, seen = [0.0, 0.0], [None, None]
        for turn in range(repeats):
            for v in (0, 1) if (k + turn) % 2 == 0 else (1, 0):
                start = time.process_time()
                seen[v] = facts(versions[v].analyse(data, name))
                cpu[v] += time.process_time() - start
        for v in (0, 1):
            spent[v].append(1000 * cpu[v] / repeats)
        same += seen[0] == seen[1]
    return Comparison(len(paths), same, *spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="another checkout of racelens")
    parser.add_argument("folder", help="a folder of photos")
    parser.add_argument("--photos", type=int, default=46, help="photos, at most (46)")
    parser.add_argument("--repeats", type=int, default=2, help="turns a photo (2)")
    parser.add_argument("--no-faces", action="store_true", help="faces off, as without a gallery")
    args = parser.parse_args()
    if not (args.old / PACKAGE / "photos.py").is_file():
        parser.error(f"{args.old} holds no {PACKAGE}/photos.py")
    if not os.path.isdir(args.folder):
        parser.error(f"no folder {args.folder}")
    import cv2

    cv2.setNumThreads(1)  # as in the pipeline's workers
    other = version_of(args.old, not args.no_faces)
    this = this_version(not args.no_faces)
    paths = spread(photos.list_photos(args.folder), args.photos)
    compare(other, this, paths[:1], 1)  # the recognisers load on their first line
    result = compare(other, this, paths, args.repeats)
    print(f"{result.photos} photos of {args.folder}, load average {os.getloadavg()[0]:.1f}")
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
