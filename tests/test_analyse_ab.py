"""bench/analyse_ab.py: another tree's analyse_photo beside this one's, by turns."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from bench.analyse_ab import REPO, Comparison, compare, this_version, version_of
from transforms import photos


def _photos(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(5)
    paths = []
    for k in range(count):
        path = folder / f"p{k}.jpg"
        path.write_bytes(cv2.imencode(".jpg", rng.integers(0, 256, (120, 160), np.uint8))[1])
        paths.append(str(path))
    return paths


def test_compare__the_same_tree_gives_the_same_facts_and_this_trees_modules_stay(
    tmp_path: Path,
) -> None:
    other = version_of(REPO, with_faces=False)

    assert sys.modules["transforms.photos"] is photos
    result = compare(other, this_version(with_faces=False), _photos(tmp_path, 2), repeats=2)

    assert (result.photos, result.same) == (2, 2)
    assert len(result.other_ms) == len(result.this_ms) == 2


def test_lines__ratio_of_the_means_and_of_the_median_photo() -> None:
    lines = Comparison(2, 1, [100.0, 200.0], [90.0, 220.0]).lines()

    assert lines == [
        "  analyse_photo   150.0 ->   155.0 CPU ms a photo (1.033x, the median photo 1.000x)",
        "  the same facts on 1 of 2 photos",
    ]
