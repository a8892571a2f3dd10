"""The recogniser's folded model computes what the shipped one does, with fewer ops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from transforms import ppocr
from transforms.ppocr_model import folded, folded_model_bytes

REPO = Path(__file__).resolve().parents[1]


def _constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    tensor = numpy_helper.from_array(np.asarray(value, np.float32), name)
    return helper.make_node("Constant", [], [name], value=tensor)


def _block(pads: int) -> onnx.ModelProto:
    """PP-LCNetV3's pattern at opset 12: conv, affine, hard-swish spelt out, affine, conv
    (3x3 padded by pads, else 1x1)."""
    rng = np.random.default_rng(0)
    kernel = 3 if pads else 1
    nodes = [
        _constant("w1", rng.normal(size=(4, 2, 3, 3))),
        _constant("b1", rng.normal(size=4)),
        _constant("w2", rng.normal(size=(3, 4, kernel, kernel))),
        *(_constant(k, [v]) for k, v in [("s1", 1.7), ("c1", 0.4), ("three", 3.0)]),
        *(_constant(k, [v]) for k, v in [("six", 6.0), ("s2", 0.3), ("c2", -0.2), ("one", 1.0)]),
        _constant("zero", 0.0),
        _constant("clip_max", 6.0),
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["s1", "conv1"], ["scaled1"]),
        helper.make_node("Add", ["scaled1", "c1"], ["y"]),
        helper.make_node("Add", ["y", "three"], ["y3"]),
        helper.make_node("Clip", ["y3", "zero", "clip_max"], ["clipped"]),
        helper.make_node("Mul", ["y", "clipped"], ["y_clipped"]),
        helper.make_node("Div", ["y_clipped", "six"], ["swish"]),
        helper.make_node("Mul", ["s2", "swish"], ["scaled2"]),
        helper.make_node("Add", ["scaled2", "c2"], ["z"]),
        helper.make_node("Conv", ["z", "w2"], ["conv2"], pads=[pads] * 4),
        helper.make_node("Mul", ["conv2", "one"], ["same"]),
        helper.make_node("Relu", ["same"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 9])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=8)


def _run(model: onnx.ModelProto | bytes, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    ("pads", "ops"),
    [
        (0, ["Conv", "HardSwish", "Conv", "Relu"]),
        (1, ["Conv", "HardSwish", "Conv", "Conv", "Relu"]),
    ],
)
def test_folded__affine_blocks_and_hard_swish_folded_same_output(pads: int, ops: list[str]) -> None:
    x = np.random.default_rng(1).normal(size=(1, 2, 6, 9)).astype(np.float32)
    expected = _run(_block(pads), x)

    model = folded(_block(pads))

    assert [n.op_type for n in model.graph.node] == ops
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


def test_folded__an_affine_read_by_other_than_a_conv_becomes_a_depthwise_conv() -> None:
    model = _block(0)
    model.graph.node.append(helper.make_node("Relu", ["z"], ["z_out"]))
    model.graph.output.append(helper.make_tensor_value_info("z_out", TensorProto.FLOAT, None))
    x = np.random.default_rng(2).normal(size=(1, 2, 6, 9)).astype(np.float32)
    expected = _run(model, x)

    model = folded(model)

    ops = ["Conv", "HardSwish", "Conv", "Conv", "Relu", "Relu"]
    assert [n.op_type for n in model.graph.node] == ops
    assert helper.get_attribute_value(model.graph.node[2].attribute[0]) == 4  # group
    np.testing.assert_allclose(_run(model, x), expected, rtol=1e-5, atol=1e-5)


def test_folded_model_bytes__the_recogniser_reads_as_the_shipped_model() -> None:
    path = os.path.join(ppocr.models_dir(), ppocr.REC_MODEL)
    line = np.full((60, 200), 235, np.uint8)
    cv2.putText(line, "4063", (12, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 20, 4)
    x = ppocr._normalise(line)

    shipped, fast = _run(onnx.load(path), x), _run(folded_model_bytes(path), x)

    np.testing.assert_allclose(fast, shipped, atol=1e-3)
    assert np.array_equal(fast.argmax(axis=2), shipped.argmax(axis=2))
    assert len(onnx.load_from_string(folded_model_bytes(path)).graph.node) < 0.6 * len(
        [n for n in onnx.load(path).graph.node if n.op_type != "Constant"]
    )


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return options


def _line_input() -> np.ndarray:
    line = np.full((60, 200), 235, np.uint8)
    cv2.putText(line, "2178", (12, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 20, 4)
    return ppocr._normalise(line)


def _output(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture
def rec_model(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shipped recogniser, racelens' cache folder empty under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return os.path.join(ppocr.models_dir(), ppocr.REC_MODEL)


def test_folded_session__folded_once_then_loaded_from_the_kept_file(
    rec_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _line_input()
    expected = _run(folded_model_bytes(rec_model), x)

    first = _output(ppocr.folded_session(rec_model, _options()), x)
    with open(ppocr.kept_model(rec_model), "rb") as f:
        kept = f.read()

    def no_folding(path: str) -> bytes:
        raise AssertionError("folded again")

    monkeypatch.setattr("transforms.ppocr_model.folded_model_bytes", no_folding)
    again = _output(ppocr.folded_session(rec_model, _options()), x)

    assert kept == folded_model_bytes(rec_model)
    assert np.array_equal(first, expected)
    assert np.array_equal(again, expected)


def test_kept_model__another_model_is_kept_apart(rec_model: str, tmp_path) -> None:
    other = tmp_path / ppocr.REC_MODEL
    with open(rec_model, "rb") as f:
        other.write_bytes(f.read() + b"\0")

    assert ppocr.kept_model(str(other)) != ppocr.kept_model(rec_model)
    assert os.path.basename(ppocr.kept_model(rec_model)).startswith("ch_PP-OCRv4_rec_infer-")


def test_recogniser__loads_without_importing_rapidocrs_package() -> None:
    # Its package imports all of rapidocr's pipeline (~0.1-0.3 CPU s): the workers' zygote
    # (pipeline/workers.py) no longer imports it, so loading must not either.
    probe = (
        "import sys; from transforms import ppocr; ppocr.recogniser(); "
        "print(sorted(m for m in sys.modules if m.startswith('rapidocr')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
