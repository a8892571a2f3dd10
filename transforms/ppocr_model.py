"""PP-OCRv4's recogniser with its affine blocks folded away: the same function, 0.66 of the CPU.

The recogniser's backbone (PP-LCNetV3) follows each convolution with a learnable affine
block (x * s + c), a hard-swish spelt as four elementwise ops (+3, clip to 0..6, times x,
/6) and another affine block: nine passes over the feature map per convolution, which
onnxruntime runs one by one, and which were half of its time. Here the scalars move into the
convolutions' weights and biases and the hard-swish becomes one HardSwish op, which
onnxruntime fuses into the convolution before it:

- Conv, then * s + c: the convolution with weights s * W and bias s * b + c.
- Add 3, Clip 0..6, Mul, Div 6: HardSwish (ONNX opset 14).
- * s + c before convolutions only: conv(s * x + c) = conv'(x + c / s) with weights s * W,
  and where the convolutions pad nothing, + c / s goes into their biases as well.
- * s + c left (before a padded convolution, a pooling): a 1x1 depthwise convolution, which
  stays in onnxruntime's blocked channel layout where an Add would leave it and come back.
- * 1: nothing.

Only the float rounding differs (bench/bib_eval.py --reads on bibs-dev, as 12 MP JPEGs and
bib-crops-dev: the same bibs and boxes on every photo). The folding runs when a recogniser
first starts (0.19 CPU s, and 0.15 to import onnx), on the model as rapidocr-onnxruntime
ships it; the result is kept as a file, from which later processes load it
(transforms.ppocr.folded_session).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 14  # the first with HardSwish


class _Graph:
    """An ONNX graph's nodes and constant values (initializers and Constant nodes alike),
    with who reads each value: protobuf fields are slow to search, so the folds look up
    Python dicts and lists instead."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        graph = model.graph
        self.values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
                self.values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            else:
                self.nodes.append(node)
        self.outputs = {o.name for o in graph.output}
        self._gone: set[int] = set()  # ids of removed nodes
        self._readers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            self._read(node)

    def _read(self, node: onnx.NodeProto) -> None:
        for name in dict.fromkeys(node.input):
            self._readers.setdefault(name, []).append(node)

    def ops(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type == op_type and id(n) not in self._gone]

    def producer(self, name: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if name in n.output and id(n) not in self._gone), None)

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self._readers.get(name, ()) if id(n) not in self._gone]

    def set_inputs(self, node: onnx.NodeProto, names: list[str]) -> None:
        for name in dict.fromkeys(node.input):
            self._readers[name] = [n for n in self._readers[name] if n is not node]
        node.input[:] = names
        self._read(node)

    def remove(self, node: onnx.NodeProto) -> None:
        self._gone.add(id(node))

    def replace(self, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
        """new in old's place in the graph's order."""
        self.nodes[next(i for i, n in enumerate(self.nodes) if n is old)] = new
        self.remove(old)
        self._read(new)

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The one node that reads name, where it is an op_type and name is no graph output."""
        users = self.consumers(name)
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            return None
        return users[0]

    def scalar(self, name: str) -> float | None:
        value = self.values.get(name)
        return None if value is None or value.size != 1 else float(value.reshape(-1)[0])

    def scalar_operand(self, node: onnx.NodeProto) -> tuple[str, float] | None:
        """The variable input and the constant scalar of a binary op with one of each."""
        for k in (0, 1):
            value, other = self.scalar(node.input[k]), node.input[1 - k]
            if value is not None and other not in self.values:
                return other, value
        return None

    def bypass(self, node: onnx.NodeProto, source: str) -> None:
        """Removes node, its readers reading source instead of its output."""
        self.remove(node)
        for reader in self.consumers(node.output[0]):
            self.set_inputs(reader, [source if v == node.output[0] else v for v in reader.input])

    def set_weights(self, conv: onnx.NodeProto, weights: np.ndarray, bias: np.ndarray) -> None:
        """The convolution's weights and bias, as new values of its own."""
        names = (f"{conv.output[0]}.folded_w", f"{conv.output[0]}.folded_b")
        self.values[names[0]] = weights.astype(np.float32)
        self.values[names[1]] = bias.astype(np.float32)
        self.set_inputs(conv, [conv.input[0], *names])

    def conv_weights(self, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
        """Weights and bias (zeros without one) of a convolution, in float64."""
        weights = self.values[conv.input[1]].astype(np.float64)
        if len(conv.input) > 2:
            return weights, self.values[conv.input[2]].astype(np.float64)
        return weights, np.zeros(weights.shape[0])

    def to_model(self) -> onnx.ModelProto:
        graph = self.model.graph
        nodes = [n for n in self.nodes if id(n) not in self._gone]
        used = {name for n in nodes for name in n.input}
        del graph.node[:]
        graph.node.extend(nodes)
        del graph.initializer[:]
        graph.initializer.extend(
            numpy_helper.from_array(v, k) for k, v in self.values.items() if k in used
        )
        return self.model


def _to_opset_14(graph: _Graph) -> None:
    """The default domain at opset 14. Of the recogniser's ops only Squeeze changed meaning
    since 12 (its axes became an input); its Softmaxes work on the last axis, where opset
    13's Softmax computes what 12's did."""
    for opset in graph.model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = OPSET
    for node in graph.ops("Squeeze"):
        axes = [a for a in node.attribute if a.name == "axes"]
        if axes:
            name = f"{node.output[0]}.axes"
            graph.values[name] = np.array(axes[0].ints, np.int64)
            node.attribute.remove(axes[0])
            node.input.append(name)


def _affine(graph: _Graph, mul: onnx.NodeProto) -> tuple[onnx.NodeProto, str, float, float] | None:
    """(the Add, x, s, c) where `mul` and the one Add reading it compute x * s + c with
    constant scalars s and c; None otherwise."""
    operand = graph.scalar_operand(mul)
    add = operand and graph.only_consumer(mul.output[0], "Add")
    shift = add and graph.scalar_operand(add)
    if not shift:
        return None
    return add, operand[0], operand[1], shift[1]


def _fold_affine_after_convs(graph: _Graph) -> int:
    """Conv then * s + c: the convolution with weights s * W and bias s * b + c."""
    folded = 0
    for conv in graph.ops("Conv"):
        mul = graph.only_consumer(conv.output[0], "Mul")
        affine = mul and _affine(graph, mul)
        if not affine:
            continue
        add, _, scale, shift = affine
        weights, bias = graph.conv_weights(conv)
        graph.set_weights(conv, weights * scale, bias * scale + shift)
        graph.bypass(mul, conv.output[0])
        graph.bypass(add, conv.output[0])
        folded += 1
    return folded


def _fuse_hard_swish(graph: _Graph) -> int:
    """x * clip(x + 3, 0, 6) / 6 as one HardSwish."""
    fused = 0
    for add in graph.ops("Add"):
        operand = graph.scalar_operand(add)
        if operand is None or operand[1] != 3.0:
            continue
        x = operand[0]
        clip = graph.only_consumer(add.output[0], "Clip")
        if not clip or [graph.scalar(v) for v in clip.input[1:]] != [0.0, 6.0]:
            continue
        mul = graph.only_consumer(clip.output[0], "Mul")
        div = mul and graph.only_consumer(mul.output[0], "Div")
        if not div or set(mul.input) != {x, clip.output[0]} or div.input[0] != mul.output[0]:
            continue
        if graph.scalar(div.input[1]) != 6.0:
            continue
        graph.replace(add, helper.make_node("HardSwish", [x], [div.output[0]]))
        for node in (clip, mul, div):
            graph.remove(node)
        fused += 1
    return fused


def _pads_nothing(conv: onnx.NodeProto) -> bool:
    for a in conv.attribute:
        if (a.name == "pads" and any(a.ints)) or (a.name == "auto_pad" and a.s.startswith(b"SAME")):
            return False
    return True


def _reads_as_data(node: onnx.NodeProto, name: str) -> bool:
    """Whether node is a convolution that reads name as its data only (not as weights)."""
    return node.op_type == "Conv" and node.input[0] == name and name not in node.input[1:]


def _in_channels(conv: onnx.NodeProto, weights: np.ndarray) -> int:
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    return weights.shape[1] * group


def _fold_affine_into_convs(graph: _Graph) -> int:
    """* s + c read by convolutions only: conv(s * x + c) = conv'(x + c / s), W' = s * W;
    where no convolution pads (zeros that + c would no longer reach), c / s joins the biases."""
    folded = 0
    for mul in graph.ops("Mul"):
        affine = _affine(graph, mul)
        if not affine or affine[2] == 0.0:
            continue
        add, x, scale, shift = affine
        shift /= scale
        convs = graph.consumers(add.output[0])
        if add.output[0] in graph.outputs or not all(
            _reads_as_data(c, add.output[0]) for c in convs
        ):
            continue
        into_bias = all(_pads_nothing(c) for c in convs)
        for conv in convs:
            weights, bias = graph.conv_weights(conv)
            weights = weights * scale
            graph.set_weights(
                conv, weights, bias + shift * weights.sum(axis=(1, 2, 3)) if into_bias else bias
            )
        graph.bypass(mul, x)
        if into_bias:
            graph.bypass(add, x)
        else:
            channels = _in_channels(convs[0], graph.values[convs[0].input[1]])
            graph.replace(add, _per_channel(x, 1.0, shift, channels, add.output[0], graph))
        folded += 1
    return folded


def _per_channel(
    x: str, scale: float, shift: float, channels: int, output: str, graph: _Graph
) -> onnx.NodeProto:
    """x * scale + shift as a 1x1 depthwise convolution: onnxruntime runs convolutions in its
    blocked channel layout (NCHWc), an Add or Mul with a scalar only after converting the
    feature map out of it and back, two passes more."""
    names = (f"{output}.scale", f"{output}.shift")
    graph.values[names[0]] = np.full((channels, 1, 1, 1), scale, np.float32)
    graph.values[names[1]] = np.full(channels, shift, np.float32)
    return helper.make_node("Conv", [x, *names], [output], group=channels)


def _out_channels(graph: _Graph, name: str) -> int | None:
    """The channels of a value made by a convolution, through HardSwishes; None otherwise."""
    node = graph.producer(name)
    while node is not None and node.op_type == "HardSwish":
        node = graph.producer(node.input[0])
    if node is None or node.op_type != "Conv":
        return None
    return int(graph.values[node.input[1]].shape[0])


def _affine_as_convs(graph: _Graph) -> int:
    """The * s + c left (read by other than convolutions) as 1x1 depthwise convolutions."""
    replaced = 0
    for mul in graph.ops("Mul"):
        affine = _affine(graph, mul)
        channels = affine and _out_channels(graph, affine[1])
        if not channels:
            continue
        add, x, scale, shift = affine
        graph.replace(add, _per_channel(x, scale, shift, channels, add.output[0], graph))
        graph.remove(mul)
        replaced += 1
    return replaced


def _drop_identity_muls(graph: _Graph) -> int:
    """x * 1: x."""
    dropped = 0
    for mul in graph.ops("Mul"):
        operand = graph.scalar_operand(mul)
        if operand and operand[1] == 1.0 and mul.output[0] not in graph.outputs:
            graph.bypass(mul, operand[0])
            dropped += 1
    return dropped


def folded(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model (changed in place) with its affine blocks folded and hard-swishes fused."""
    graph = _Graph(model)
    _to_opset_14(graph)
    _fold_affine_after_convs(graph)
    _fuse_hard_swish(graph)
    _fold_affine_into_convs(graph)
    _affine_as_convs(graph)
    _drop_identity_muls(graph)
    return graph.to_model()


def folded_model_bytes(path: str) -> bytes:
    """The ONNX model at path, folded, serialised for onnxruntime."""
    return folded(onnx.load(path)).SerializeToString()
