"""bench/recogniser_ab.py's comparison of recogniser variants, with stand-in models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.recogniser_ab import STEP, compare, compare_joined, joined, read_joined, report, steps
from transforms import ppocr
from transforms.ppocr import LineRead


def _read(probabilities: np.ndarray) -> LineRead:
    """A stand-in decoder: the input's first value as a one-character text at 0.9."""
    return LineRead(str(int(probabilities[0])), (0.9,))


def test_compare__every_variant_reads_every_line_and_is_timed() -> None:
    runs = {"folded": lambda x: x, "other": lambda x: x % 2}
    inputs = [np.array([float(v)]) for v in range(4)]

    measured = compare(runs, inputs, _read)

    assert [r.text for r in measured["folded"].reads] == ["0", "1", "2", "3"]
    assert [r.text for r in measured["other"].reads] == ["0", "1", "0", "1"]
    assert all(m.cpu_s >= 0 for m in measured.values())


def test_report__lines_read_otherwise_than_the_folded_model_counted() -> None:
    runs = {"folded": lambda x: x, "other": lambda x: x % 2}
    measured = compare(runs, [np.array([float(v)]) for v in range(4)], _read)
    for m in measured.values():
        m.cpu_s = 1.0

    lines = report(measured, 4)

    assert lines[0].startswith("folded: 250.00 CPU ms a line, x1.000; the same text on 4 of 4")
    assert "the same text on 2 of 4 lines, 2 of the 4 read at >= 0.75" in lines[1]


def _step_maxima(x: np.ndarray) -> np.ndarray:
    """A stand-in model: per CTC step (steps x 1), the largest value of the columns it spans."""
    columns = x[0, 0].max(axis=0)
    return np.array(
        [[columns[STEP * j : STEP * (j + 1)].max()] for j in range(steps(len(columns)))]
    )


def test_steps__as_many_as_the_recogniser_reads() -> None:
    session = ppocr.recogniser()._session
    for width in range(ppocr.MIN_WIDTH, 72):
        x = np.zeros((1, 3, ppocr.REC_HEIGHT, width), np.float32)
        assert session.run(None, {"x": x})[0].shape[1] == steps(width), width


def test_joined__each_input_starts_a_step_gap_columns_of_grey_after_the_one_before() -> None:
    inputs = [np.full((1, 3, 4, w), v, np.float32) for w, v in ((13, 1.0), (20, 2.0), (8, 3.0))]

    x, first = joined(inputs, 4)

    assert first == [0, 3, 6]  # 13 + 4 columns end in step 2, 24 + 20 + 4 in step 5
    assert x.shape == (1, 3, 4, 56)
    assert np.array_equal(x[0, 0, 0], np.repeat([1.0, 0, 2, 0, 3], [13, 11, 20, 4, 8]))


@pytest.mark.parametrize("widths", [(16, 17), (21, 23, 30), (44, 16, 91)])
def test_read_joined__each_input_gets_its_own_steps_to_the_last(widths: tuple[int, ...]) -> None:
    inputs = [np.full((1, 3, 4, w), k + 1.0, np.float32) for k, w in enumerate(widths)]

    reads = read_joined(_step_maxima, inputs, 0)

    assert [len(r) for r in reads] == [steps(w) for w in widths]
    assert all((r == k + 1.0).all() for k, r in enumerate(reads))


def test_compare_joined__clear_lines_read_as_alone() -> None:
    lines = []
    for text in ("2178", "63", "40515"):
        width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.6, 4)[0][0]
        line = np.full((60, width + 24), 235, np.uint8)
        cv2.putText(line, text, (12, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 20, 4)
        lines.append(ppocr._normalise(line))
    rec = ppocr.recogniser()

    measured = compare_joined(
        lambda x: rec._session.run(None, {"x": x})[0][0], [lines], [16], rec._decode
    )

    assert [r.text for r in measured["alone"].reads] == ["2178", "63", "40515"]
    assert [r.text for r in measured["joined, gap 16"].reads] == ["2178", "63", "40515"]
