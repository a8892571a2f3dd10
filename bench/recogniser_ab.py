"""CPU and reads of PP-OCR recogniser variants on real line crops, line by line, by turns.

    python bench/recogniser_ab.py FOLDER [--photos 40] [--int8] [MODEL.onnx ...]
    python bench/recogniser_ab.py FOLDER --joined 0,16   # lines joined side by side

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

With --joined GAPS, the folded model reads each photo's lines, in groups of PP_FIRST_LINES in
the order read_bibs reads them, one call a line and in one call per group with the lines
joined side by side (`joined`: each line starting on a CTC step's first column, at least GAP
columns of the grey the convolutions pad with apart, its steps split back out): each line's
CPU ms (a group's shared), and how many lines read as they read alone.
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
# Input columns a CTC step spans: the model's three width strides of 2 (its first
# convolution, a depthwise convolution and the average pool before the neck).
STEP = 8


class _Recording:
    """The process's recogniser, keeping the input of every line it reads, photo by photo."""

    def __init__(self) -> None:
        self.photos: list[list[np.ndarray]] = []

    def read_lines(self, crops: list[np.ndarray]) -> list[ppocr.LineRead]:
        self.photos[-1].extend(ppocr._normalise(crop) for crop in crops)
        return ppocr.recogniser().read_lines(crops)


def line_inputs(paths: Sequence[str]) -> list[list[np.ndarray]]:
    """The recogniser's input for every line read_bibs reads on each photo, in its order."""
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
            recording.photos.append([])
            ocr.read_bibs(gray)
    ocr.recogniser = ppocr.recogniser
    return [inputs for inputs in recording.photos if inputs]


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
    ways = {name: lambda group, run=run: [run(x) for x in group] for name, run in runs.items()}
    return by_turns(ways, [[x] for x in inputs], decode_line)


def by_turns(
    ways: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]],
    groups: list[list[np.ndarray]],
    decode_line: Callable[[np.ndarray], ppocr.LineRead],
) -> dict[str, Measured]:
    """CPU seconds and reads of each way of reading a group of inputs (one probabilities
    array an input), the ways taking turns on each group, the first alternating."""
    measured = {name: Measured(reads=[]) for name in ways}
    names = list(ways)
    for k, inputs in enumerate(groups):
        for name in names if k % 2 == 0 else names[::-1]:
            start = time.process_time()
            probabilities = ways[name](inputs)
            measured[name].cpu_s += time.process_time() - start
            measured[name].reads.extend(decode_line(p) for p in probabilities)
    return measured


def steps(width: int) -> int:
    """The CTC steps the model reads on an input this many columns wide: each width stride
    of 2 keeps ceil(width / 2) columns but the average pool's, which keeps floor(width / 2)."""
    return -(-width // 4) // 2


def joined(inputs: list[np.ndarray], gap: int) -> tuple[np.ndarray, list[int]]:
    """The inputs side by side in one, each starting on a step's first column (so that the
    strides cut it as alone) at least gap columns after the one before, the columns between
    0 (mid grey, what the convolutions pad with); and the step where each input starts."""
    starts, end = [], 0
    for x in inputs:
        starts.append(-(-end // STEP) * STEP)
        end = starts[-1] + x.shape[3] + gap
    out = np.zeros((*inputs[0].shape[:3], end - gap), np.float32)
    for start, x in zip(starts, inputs, strict=True):
        out[..., start : start + x.shape[3]] = x
    return out, [start // STEP for start in starts]


def read_joined(run: Run, inputs: list[np.ndarray], gap: int) -> list[np.ndarray]:
    """Each input's probabilities (steps x classes), read in one call with the inputs joined
    (`joined`) and cut back into each input's steps."""
    x, first = joined(inputs, gap)
    probabilities = run(x)
    return [probabilities[s : s + steps(x.shape[3])] for s, x in zip(first, inputs, strict=True)]


def compare_joined(
    run: Run,
    groups: list[list[np.ndarray]],
    gaps: list[int],
    decode_line: Callable[[np.ndarray], ppocr.LineRead],
) -> dict[str, Measured]:
    """CPU seconds and reads of each group's lines read one call a line ("alone") and joined
    with each gap, taking turns on each group, the first alternating."""
    ways: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]] = {
        "alone": lambda inputs: [run(x) for x in inputs]
    }
    for gap in gaps:
        ways[f"joined, gap {gap}"] = lambda inputs, gap=gap: read_joined(run, inputs, gap)
    return by_turns(ways, groups, decode_line)


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


def print_joined(
    run: Run,
    photos: list[list[np.ndarray]],
    gaps: list[int],
    decode_line: Callable[[np.ndarray], ppocr.LineRead],
) -> None:
    """The lines read alone and joined, in groups of PP_FIRST_LINES per photo."""
    n = ocr.PP_FIRST_LINES
    groups = [lines[i : i + n] for lines in photos for i in range(0, len(lines), n)]
    compare_joined(run, groups[:1], gaps, decode_line)  # the first runs set up buffers
    measured = compare_joined(run, groups, gaps, decode_line)
    lines = sum(len(g) for g in groups)
    print(f"{lines} lines in {len(groups)} groups, {os.cpu_count()} cores")
    print("\n".join(report(measured, lines)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of photos")
    parser.add_argument("models", nargs="*", help="other ONNX recognisers to measure")
    parser.add_argument("--photos", type=int, default=40, help="photos, at most (40)")
    parser.add_argument("--int8", action="store_true", help="also the int8 quantised forms")
    parser.add_argument("--joined", help="GAP[,GAP...]: the lines also joined side by side")
    args = parser.parse_args()
    if not os.path.isdir(args.folder):
        parser.error(f"no folder {args.folder}")
    for model in args.models:
        if not os.path.isfile(model):
            parser.error(f"no model {model}")
    cv2.setNumThreads(1)  # as in the pipeline's workers
    photos = line_inputs(spread(list_photos(args.folder), args.photos))
    if not photos:
        parser.error(f"no line read on the photos of {args.folder}")
    folded = ppocr.kept_model(os.path.join(ppocr.models_dir(), ppocr.REC_MODEL))
    decode_line = ppocr.recogniser()._decode
    if args.joined is not None:
        print_joined(runner(folded), photos, [int(g) for g in args.joined.split(",")], decode_line)
        return
    inputs = [x for lines in photos for x in lines]
    runs = {"folded": runner(folded), **{model: runner(model) for model in args.models}}
    if args.int8:
        runs["int8 convs"] = runner(int8_convs(folded, inputs[::2]))
        runs["int8 matmuls"] = runner(int8_matmuls(folded))
        inputs = inputs[1::2]
    compare(runs, inputs[:1], decode_line)  # first runs set up their sessions' buffers
    measured = compare(runs, inputs, decode_line)
    print(f"{len(inputs)} lines of {args.folder}, {os.cpu_count()} cores")
    print("\n".join(report(measured, len(inputs))))


if __name__ == "__main__":
    main()
