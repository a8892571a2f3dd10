"""bench/lines_read.py: each recogniser call of read_bibs recorded by kind, reads unchanged."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.lines_read import Recorder, _text
from transforms import ocr
from transforms.ppocr import LineRead


@pytest.mark.parametrize(
    ("text", "confidence", "kind"),
    [
        ("3638", 0.99, "sure bib"),
        ("3638", 0.5, "weak bib"),
        ("1234567", 0.99, "digits, no bib"),
        ("RUN", 0.99, "no digit"),
        ("", 0.0, "nothing"),
    ],
)
def test_text__a_line_read_is_told_by_what_it_holds(
    text: str, confidence: float, kind: str
) -> None:
    assert _text(LineRead(text, (confidence,) * len(text))) == kind


def _photo() -> np.ndarray:
    """A grey scene with a bib: dark digits on a light patch."""
    image = np.full((600, 900), 110, np.uint8)
    cv2.rectangle(image, (300, 250), (560, 360), 235, -1)
    cv2.putText(image, "3638", (320, 335), cv2.FONT_HERSHEY_SIMPLEX, 2.4, 20, 8, cv2.LINE_AA)
    return image


def test_recorder__each_call_recorded_the_reads_unchanged_the_patches_undone() -> None:
    photo = _photo()
    plain = ocr.read_bibs(photo)
    original = ocr._ppocr_reads

    with Recorder() as recorder:
        recorder.photo()
        recorded = ocr.read_bibs(photo)

    assert recorded == plain
    assert [r.bib for r in plain][:1] == ["3638"]
    first = [c for c in recorder.calls if c.kind == "first"]
    assert 1 <= len(first) <= ocr.PP_FIRST_LINES
    assert all(c.line is not None and c.width >= 16 for c in first)
    assert "sure bib" in {c.text for c in first}
    assert not [c for c in recorder.calls if c.kind == "rest"]  # a sure read: no rest
    assert ocr._ppocr_reads is original
