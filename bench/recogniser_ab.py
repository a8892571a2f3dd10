"""CPU and reads of PP-OCR recogniser variants on real line crops, line by line, by turns.

    python bench/recogniser_ab.py FOLDER [--photos 40] [--int8] [MODEL.onnx ...]

The lines are those read_bibs reads on the folder's photos (taken evenly spread, at most
--photos, each decoded as the pipeline decodes it), kept as the recogniser's inputs. The
variants: the folded model racelens loads (transforms.ppocr.folded_session), any ONNX models
given (same input and output), and with --int8 two quantised forms of the folded model made
by onnxruntime.quantization: "int8 convs", every convolution statically quantised (QDQ,
int8 weights per output channel, uint8 activations with MinMax ranges calibrated on the
even lines), and "int8 matmuls", the attention's and head's MatMuls dynamically quantised.
Each line is read by every variant in turn, the first alternating, on one onnxruntime
thread as in the pipeline; int8 variants are measured on the odd lines only (not their
calibration's). It prints each variant's CPU ms a line, its ratio to the folded model's,
and how many lines it reads as the folded model does (the same text), of all and of those
the folded model reads at >= 0.75 (the review threshold), with the largest change of such
a line's confidence.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import spread  # noqa: E402
from transforms import ocr, ppocr  # noqa: E402
from transforms.kept import PROVIDERS  # noqa: E402
from transforms.photos import Unusable, decode, list_photos, open_photo, read_bytes  # noqa: E402

SURE = 0.75  # the review threshold
Run = Callable[[np.ndarray], np.ndarray]  # a model input to its probabilities


class _Recording:
    """The process's recogniser, keeping the input of every line it reads."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def read_lines(self, crops: list[np.ndarray]) -> list[ppocr.LineRead]:
        self.inputs.extend(ppocr._normalise(crop) for crop in crops)
        return ppocr.recogniser().read_lines(crops)


def line_inputs(paths: Sequence[str]) -> list[np.ndarray]:
    """The recogniser's input for every line read_bibs reads on the photos."""
    recording = _Recording()
    ocr.recogniser = lambda: recording  # read_bibs reads through this name
    for path in paths:
        data = read_bytes(path)
        try:
            header = open_photo(data)
        except Unusable:
            continue
        gray = decode(data, *header.size, header.format or "")[0]
        if gray is not None:
            ocr.read_bibs(gray)
    ocr.recogniser = ppocr.recogniser
    return recording.inputs


def runner(model: str | bytes) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=PROVIDERS)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0][0]


def int8_convs(folded: str, calibration: list[np.ndarray]) -> str:
    """The folded model with its convolutions statically quantised, as a temporary file."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Lines(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._inputs, None)
            return None if x is None else {"x": x}

    path = os.path.join(tempfile.mkdtemp(), "int8_convs.onnx")
    quantize_static(
        folded,
        path,
        Lines(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return path


def int8_matmuls(folded: str) -> str:
    """The folded model with its MatMuls dynamically quantised, as a temporary file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = os.path.join(tempfile.mkdtemp(), "int8_matmuls.onnx")
    quantize_dynamic(folded, path, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    return path


@dataclass
class Measured:
    cpu_s: float = 0.0
    reads: list[ppocr.LineRead] | None = None


def compare(
    runs: dict[str, Run],
    inputs: list[np.ndarray],
    decode_line: Callable[[np.ndarray], ppocr.LineRead],
) -> dict[str, Measured]:
    """Each variant's CPU seconds over the lines and its reads, the variants taking turns
    on each line, the first alternating."""
    measured = {name: Measured(reads=[]) for name in runs}
    names = list(runs)
    for k, x in enumerate(inputs):
        for name in names if k % 2 == 0 else names[::-1]:
            start = time.process_time()
            probabilities = runs[name](x)
            measured[name].cpu_s += time.process_time() - start
            measured[name].reads.append(decode_line(probabilities))
    return measured


def agreement(reads: list[ppocr.LineRead], reference: list[ppocr.LineRead]) -> str:
    """How many lines read as the reference reads them, of all and of its sure ones."""
    same = sum(a.text == b.text for a, b in zip(reads, reference, strict=True))
    sure = [(a, b) for a, b in zip(reads, reference, strict=True) if b.confidence >= SURE]
    sure_same = sum(a.text == b.text for a, b in sure)
    change = max((abs(a.confidence - b.confidence) for a, b in sure), default=0.0)
    return (
        f"the same text on {same} of {len(reads)} lines, {sure_same} of the {len(sure)} "
        f"read at >= {SURE} (confidence moved up to {change:.3f})"
    )


def report(measured: dict[str, Measured], lines: int) -> list[str]:
    """One line per variant, against the first (the folded model)."""
    reference = next(iter(measured.values()))
    return [
        f"{name}: {1000 * m.cpu_s / lines:.2f} CPU ms a line, x{m.cpu_s / reference.cpu_s:.3f}; "
        + agreement(m.reads or [], reference.reads or [])
        for name, m in measured.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of photos")
    parser.add_argument("models", nargs="*", help="other ONNX recognisers to measure")
    parser.add_argument("--photos", type=int, default=40, help="photos, at most (40)")
    parser.add_argument("--int8", action="store_true", help="also the int8 quantised forms")
    args = parser.parse_args()
    if not os.path.isdir(args.folder):
        parser.error(f"no folder {args.folder}")
    for model in args.models:
        if not os.path.isfile(model):
            parser.error(f"no model {model}")
    cv2.setNumThreads(1)  # as in the pipeline's workers
    inputs = line_inputs(spread(list_photos(args.folder), args.photos))
    if not inputs:
        parser.error(f"no line read on the photos of {args.folder}")
    folded = ppocr.kept_model(os.path.join(ppocr.models_dir(), ppocr.REC_MODEL))
    runs = {"folded": runner(folded), **{model: runner(model) for model in args.models}}
    if args.int8:
        runs["int8 convs"] = runner(int8_convs(folded, inputs[::2]))
        runs["int8 matmuls"] = runner(int8_matmuls(folded))
        inputs = inputs[1::2]
    decode_line = ppocr.recogniser()._decode
    compare(runs, inputs[:1], decode_line)  # first runs set up their sessions' buffers
    measured = compare(runs, inputs, decode_line)
    print(f"{len(inputs)} lines of {args.folder}, {os.cpu_count()} cores")
    print("\n".join(report(measured, len(inputs))))


if __name__ == "__main__":
    main()
