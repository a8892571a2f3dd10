"""bench/recogniser_ab.py's comparison of recogniser variants, with stand-in models."""

from __future__ import annotations

import numpy as np

from bench.recogniser_ab import compare, report
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
