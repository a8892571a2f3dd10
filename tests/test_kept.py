"""Models derived once and kept in racelens' cache folder."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from transforms.kept import cache_dir, kept_path, kept_session


def _model(scale: float) -> bytes:
    """A model that multiplies its input by scale."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    factor = helper.make_tensor("factor", TensorProto.FLOAT, [1], [scale])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "factor"], ["y"])], "g", [x], [y])
    graph.initializer.append(factor)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def _output(session: ort.InferenceSession) -> list[float]:
    return session.run(None, {"x": np.array([1.0, 2.0], np.float32)})[0].tolist()


@pytest.fixture
def cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return os.path.join(str(tmp_path / "cache"), "racelens")


def test_kept_session__made_once_then_loaded_from_the_kept_file(cache: str) -> None:
    path = os.path.join(cache, "m", "model.onnx")
    made: list[float] = []

    def make(scale: float) -> bytes:
        made.append(scale)
        return _model(scale)

    first = kept_session(path, lambda: make(2.0), ort.SessionOptions())
    again = kept_session(path, lambda: make(3.0), ort.SessionOptions())

    assert made == [2.0]
    assert _output(first) == _output(again) == [2.0, 4.0]
    assert onnx.load(path).graph.node[0].op_type == "Mul"


def test_kept_session__a_damaged_kept_file_is_made_and_kept_again(cache: str) -> None:
    path = os.path.join(cache, "m", "model.onnx")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"not a model")

    session = kept_session(path, lambda: _model(2.0), ort.SessionOptions())

    assert _output(session) == [2.0, 4.0]
    with open(path, "rb") as f:
        assert f.read() == _model(2.0)


def test_kept_session__an_unwritable_cache_costs_only_the_making(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a file"
    blocked.write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # no folder can be made under it
    path = os.path.join(cache_dir(), "m", "model.onnx")

    session = kept_session(path, lambda: _model(2.0), ort.SessionOptions())

    assert _output(session) == [2.0, 4.0]
    assert not os.path.exists(path)


def test_kept_path__named_by_every_sources_bytes(cache: str, tmp_path) -> None:
    model, code = tmp_path / "model.bin", tmp_path / "code.py"
    model.write_bytes(b"weights")
    code.write_bytes(b"derivation")
    before = kept_path("m", "stem", [str(model), str(code)], "onnx")

    code.write_bytes(b"derivation, changed")
    after = kept_path("m", "stem", [str(model), str(code)], "onnx")

    assert before != after
    assert os.path.dirname(before) == os.path.join(cache, "m")
    assert os.path.basename(before).startswith("stem-") and before.endswith(".onnx")
