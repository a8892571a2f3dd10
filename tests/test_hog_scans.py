"""bench/hog_scans.py: a dlib scan's cost split into its features and its filters."""

from __future__ import annotations

import numpy as np
import pytest

from bench.hog_scans import detectors, scan_costs, table
from transforms.faces import face_models, models_available

needs_models = pytest.mark.skipif(not models_available(), reason="dlib face models not installed")


def noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (height, width), dtype=np.uint8)


@needs_models
def test_detectors__the_one_without_filters_scores_no_window() -> None:
    # What makes its scan's cost the features' alone.
    rects, scores, _ = detectors(face_models())["features"].run(noise(200, 300), 0, -100.0)

    assert (len(rects), len(scores)) == (0, 0)


@needs_models
def test_scan_costs__each_whole_level_and_cut_timed_by_each_detector() -> None:
    costs = scan_costs([noise(900, 1350)], face_models(), repeats=1)

    assert {"level 4 whole", "level 6 whole", "24 px cut", "384 px cut"} <= set(costs)
    assert all(set(row) == {"features", "front", "all five"} for row in costs.values())
    assert all(ms >= 0 for row in costs.values() for ms in row.values())


def test_table__the_filters_are_what_five_cost_more_than_none() -> None:
    lines = table({"level 4 whole": {"features": 11.5, "front": 13.0, "all five": 19.0}})

    assert lines[0].split()[-5:] == ["features", "front", "all", "five", "filters"]
    assert lines[1].split() == ["level", "4", "whole", "11.500", "13.000", "19.000", "7.500"]
