"""dlib's face recognition ResNet, run by onnxruntime: the same 128 numbers at a twentieth
of the cost.

The dlib-bin wheel is built without BLAS, so its network costs ~145 CPU ms per face on
this machine. `FaceNet` reads the weights from the same model file
(`dlib_face_recognition_resnet_model_v1.dat`), writes the same layers as an ONNX graph
and runs it in onnxruntime (installed for PP-OCR): ~8 ms a face, against ~33 ms as numpy
matrix products, and descriptors within 1e-6 of dlib's (tests/test_face_net.py). The
network is dlib's published `anet_type` (dlib's dnn_face_recognition_ex.cpp): a 7x7
convolution, a max pool, 14 residual blocks of two 3x3 convolutions (32 to 256 filters,
4 of them halving the size), an average over the last map and a 128-wide linear layer.
Batch norm was frozen into per-channel affine layers when the model was saved; they are
folded into the convolutions here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

from transforms.kept import PROVIDERS, kept_path, kept_session

MODEL_STEM = "dlib_face_recognition_resnet_model_v1"
CHIP_SIZE = 150  # dlib aligns each face to a 150 x 150 RGB chip (get_face_chip)
CHIP_PADDING = 0.25
# dlib's input_rgb_image: each channel less its mean over the training set, / 256.
CHANNEL_MEANS = np.array([122.782, 117.001, 104.298], np.float32)
# Residual blocks per stage (of 32, 64, 128, 256 and 256 filters); every stage but the first
# begins with a block that halves the map.
STAGE_BLOCKS = (3, 4, 3, 3, 1)
# How dlib serialises a layer: its name as a string (a length byte, then the name), then its
# parameters as one tensor. Only these three layers carry parameters in this model.
_PARAMETRISED = re.compile(rb"\x01(\x05con_4|\x07affine_|\x04fc_2)")


@dataclass(frozen=True)
class Conv:
    weights: np.ndarray  # (filters, channels * height * width), the affine layer folded in
    bias: np.ndarray  # (filters, 1)
    size: int  # the kernel's height and width
    stride: int
    padding: int


def unpack_int(data: bytes, at: int) -> tuple[int, int]:
    """dlib's integer: a byte with the count of little-endian bytes that follow (0x80: <0),
    and where the next field begins."""
    head = data[at]
    value = int.from_bytes(data[at + 1 : at + 1 + (head & 0x0F)], "little")
    return (-value if head & 0x80 else value), at + 1 + (head & 0x0F)


def pack_int(value: int) -> bytes:
    """dlib's serialised form of an integer (see unpack_int)."""
    body = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def read_parameters(data: bytes) -> list[tuple[str, np.ndarray]]:
    """(layer kind, its parameters as float32) of each parametrised layer, input first."""
    layers = []
    for match in _PARAMETRISED.finditer(data):
        kind, at = match.group(1)[1:].decode(), match.end()
        if kind == "fc_2":  # its output and input counts come before its tensor
            at = unpack_int(data, unpack_int(data, at)[1])[1]
        version, at = unpack_int(data, at)
        if version != 2:
            raise ValueError(f"unknown dlib tensor version {version} in layer {kind}")
        count = 1
        for _ in range(4):  # samples, channels, rows, columns
            dim, at = unpack_int(data, at)
            count *= dim
        layers.append((kind, np.frombuffer(data, "<f4", count, at).astype(np.float32)))
    return layers


def _conv(params: np.ndarray, scale_shift: np.ndarray, size: int, stride: int) -> Conv:
    """A convolution with the affine layer after it folded in; 3x3 ones keep the size
    (padded by 1) unless they halve it (stride 2), as dlib's con_ does by default."""
    filters = scale_shift.size // 2
    weights, bias = params[:-filters].reshape(filters, -1), params[-filters:]
    if weights.shape[1] % (size * size):
        raise ValueError("not dlib's face recognition ResNet")
    gamma, beta = scale_shift[:filters], scale_shift[filters:]
    padding = size // 2 if stride == 1 else 0
    return Conv(weights * gamma[:, None], (bias * gamma + beta)[:, None], size, stride, padding)


@dataclass(frozen=True)
class FaceNet:
    """The network, ready to describe aligned face chips."""

    session: onnxruntime.InferenceSession

    @staticmethod
    def of(data: bytes) -> FaceNet:
        """The network of a dlib_face_recognition_resnet_model_v1.dat file's bytes."""
        return FaceNet(onnxruntime.InferenceSession(model_bytes(data), _options(), PROVIDERS))

    @staticmethod
    def kept(path: str) -> FaceNet:
        """The network of the model file at path, written as ONNX once and kept in racelens'
        cache folder: parsing dlib's file and writing the graph cost 0.10-0.13 CPU s in the
        zygote of every run, naming and loading the kept graph 0.04 (most of it the digest
        of the 22 MB file)."""
        kept = kept_path("faces", MODEL_STEM, [path, __file__], "onnx")
        return FaceNet(kept_session(kept, lambda: model_bytes(Path(path).read_bytes()), _options()))

    def describe(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """The 128-d descriptors, (faces, 128), of aligned 150 x 150 face chips (uint8, RGB,
        or grey: a grey chip is its three channels), run as one batch (a photo's faces
        together cost 0.8 of them one by one from two faces on, the same numbers)."""
        for chip in chips:
            if chip.shape not in ((CHIP_SIZE, CHIP_SIZE, 3), (CHIP_SIZE, CHIP_SIZE)):
                raise ValueError(
                    f"a face chip is {CHIP_SIZE}x{CHIP_SIZE}x3 or grey, not {chip.shape}"
                )
        x = np.empty((len(chips), 3, CHIP_SIZE, CHIP_SIZE), np.float32)
        for i, chip in enumerate(chips):
            channels = chip.transpose(2, 0, 1) if chip.ndim == 3 else chip[None]
            x[i] = (channels - CHANNEL_MEANS[:, None, None]) / 256
        return self.session.run(None, {_INPUT: x})[0]


def model_bytes(data: bytes) -> bytes:
    """The network of a dlib_face_recognition_resnet_model_v1.dat file's bytes, as a
    serialised ONNX model."""
    layers = read_parameters(data)
    convs = 2 * sum(STAGE_BLOCKS) + 1
    if [kind for kind, _ in layers] != ["con_4", "affine_"] * convs + ["fc_2"]:
        raise ValueError("not dlib's face recognition ResNet")
    pairs = [
        (conv, affine) for (_, conv), (_, affine) in zip(layers[:-1:2], layers[1::2], strict=True)
    ]
    strides = [
        2 if stage and i == 0 else 1 for stage, n in enumerate(STAGE_BLOCKS) for i in range(n)
    ]
    blocks = tuple(
        (_conv(*pairs[1 + 2 * b], 3, stride), _conv(*pairs[2 + 2 * b], 3, 1))
        for b, stride in enumerate(strides)
    )
    return onnx_model(_conv(*pairs[0], 7, 2), blocks, layers[-1][1].reshape(256, 128))


def _options() -> onnxruntime.SessionOptions:
    # One thread: the workers already use every core, and a face is too small a job to
    # share (spread over BLAS threads while other workers ran, the numpy version of this
    # network cost 8x the CPU).
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


# ------------------------------------------------------------------- the network as ONNX

_INPUT = "chip"
_BATCH = "faces"  # the batch axis, of any length
_OPSET = 17
_IR_VERSION = 8
_FLOAT, _INT64 = 1, 7  # ONNX's TensorProto data types
_INTS = 7  # ONNX's AttributeProto type of a list of integers


def onnx_model(stem: Conv, blocks: Sequence[tuple[Conv, Conv]], linear: np.ndarray) -> bytes:
    """The network as a serialised ONNX ModelProto (written by hand: the `onnx` package
    is not needed to run one). Shapes are static, so dlib's add_prev (the sum as if the
    smaller tensor were padded with zeros at its end) becomes explicit Pad nodes."""
    graph = _Graph()
    x, shape = graph.conv(_INPUT, stem, (3, CHIP_SIZE, CHIP_SIZE))
    x = graph.node("Relu", [x])
    x = graph.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    shape = (shape[0], (shape[1] - 3) // 2 + 1, (shape[2] - 3) // 2 + 1)
    for first, second in blocks:
        y, inner = graph.conv(x, first, shape)
        y, inner = graph.conv(graph.node("Relu", [y]), second, inner)
        if first.stride == 2:
            x = graph.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        summed = tuple(max(p, q) for p, q in zip(inner, shape, strict=True))
        x = graph.node("Add", [graph.padded(y, inner, summed), graph.padded(x, shape, summed)])
        x, shape = graph.node("Relu", [x]), summed
    x = graph.node("Flatten", [graph.node("GlobalAveragePool", [x])])
    x = graph.node("MatMul", [x, graph.constant(linear)])
    body = _message(
        *[(1, n) for n in graph.nodes],
        (2, MODEL_STEM),
        *[(5, t) for t in graph.constants],
        (11, _value_info(_INPUT, (_BATCH, 3, CHIP_SIZE, CHIP_SIZE))),
        (12, _value_info(x, (_BATCH, 128))),
    )
    return _message((1, _IR_VERSION), (8, _message((1, ""), (2, _OPSET))), (7, body))


class _Graph:
    """Nodes and constants of an ONNX graph, each output named after its node."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.constants: list[bytes] = []

    def _name(self, kind: str) -> str:
        return f"{kind}_{len(self.nodes) + len(self.constants)}"

    def node(self, op: str, inputs: Sequence[str], **ints: Sequence[int]) -> str:
        output = self._name(op)
        attributes = [
            (5, _message((1, name), (20, _INTS), *[(8, v) for v in values]))
            for name, values in ints.items()
        ]
        self.nodes.append(_message(*[(1, i) for i in inputs], (2, output), (4, op), *attributes))
        return output

    def constant(self, array: np.ndarray) -> str:
        name = self._name("constant")
        kind = _INT64 if array.dtype == np.int64 else _FLOAT
        data = np.ascontiguousarray(array, np.int64 if kind == _INT64 else np.float32)
        self.constants.append(
            _message(*[(1, d) for d in data.shape], (2, kind), (8, name), (9, data.tobytes()))
        )
        return name

    def conv(self, x: str, conv: Conv, shape: tuple[int, int, int]) -> tuple[str, tuple]:
        """`conv` on x of (channels, rows, columns) `shape`: the output and its shape."""
        filters, k = conv.weights.shape[0], conv.size
        output = self.node(
            "Conv",
            [
                x,
                self.constant(conv.weights.reshape(filters, shape[0], k, k)),
                self.constant(conv.bias[:, 0]),
            ],
            kernel_shape=[k, k],
            strides=[conv.stride] * 2,
            pads=[conv.padding] * 4,
        )
        rows, cols = ((n + 2 * conv.padding - k) // conv.stride + 1 for n in shape[1:])
        return output, (filters, rows, cols)

    def padded(self, x: str, shape: tuple, to: tuple) -> str:
        """x padded with zeros at the end of each axis to `to` (x itself if it is so)."""
        if shape == to:
            return x
        ends = [t - s for s, t in zip(shape, to, strict=True)]
        return self.node("Pad", [x, self.constant(np.array([0] * 4 + [0] + ends, np.int64))])


def _value_info(name: str, shape: Sequence[int | str]) -> bytes:
    """A tensor's name and shape, each axis a length or a name (any length)."""
    dims = b"".join(_field(1, _message((1 if isinstance(d, int) else 2, d))) for d in shape)
    tensor_type = _message((1, _FLOAT), (2, dims))
    return _message((1, name), (2, _message((1, tensor_type))))


def _message(*fields: tuple[int, int | str | bytes]) -> bytes:
    """A protobuf message of (field number, value) pairs, in order."""
    return b"".join(_field(number, value) for number, value in fields)


def _field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: an integer as a varint, text and bytes length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
