"""dlib's face recognition ResNet, run in numpy: the same 128 numbers at a quarter of the cost.

The dlib-bin wheel is built without BLAS, so its network costs ~145 CPU ms per face on
this machine. `FaceNet` reads the weights from the same model file
(`dlib_face_recognition_resnet_model_v1.dat`) and runs the same layers as numpy matrix
products: ~38 ms, and descriptors within 1e-6 of dlib's (tests/test_face_net.py). The
network is dlib's published `anet_type` (dlib's dnn_face_recognition_ex.cpp): a 7x7
convolution, a max pool, 14 residual blocks of two 3x3 convolutions (32 to 256 filters,
4 of them halving the size), an average over the last map and a 128-wide linear layer.
Batch norm was frozen into per-channel affine layers when the model was saved; they are
folded into the convolutions here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

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


def _unpack_int(data: bytes, at: int) -> tuple[int, int]:
    """dlib's integer: a byte with the count of little-endian bytes that follow (0x80: <0)."""
    head = data[at]
    value = int.from_bytes(data[at + 1 : at + 1 + (head & 0x0F)], "little")
    return (-value if head & 0x80 else value), at + 1 + (head & 0x0F)


def read_parameters(data: bytes) -> list[tuple[str, np.ndarray]]:
    """(layer kind, its parameters as float32) of each parametrised layer, input first."""
    layers = []
    for match in _PARAMETRISED.finditer(data):
        kind, at = match.group(1)[1:].decode(), match.end()
        if kind == "fc_2":  # its output and input counts come before its tensor
            at = _unpack_int(data, _unpack_int(data, at)[1])[1]
        version, at = _unpack_int(data, at)
        if version != 2:
            raise ValueError(f"unknown dlib tensor version {version} in layer {kind}")
        count = 1
        for _ in range(4):  # samples, channels, rows, columns
            dim, at = _unpack_int(data, at)
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

    stem: Conv
    blocks: tuple[tuple[Conv, Conv], ...]  # (first, second); the first strides 2 to halve
    linear: np.ndarray  # (256, 128)

    @staticmethod
    def of(data: bytes) -> FaceNet:
        """The network of a dlib_face_recognition_resnet_model_v1.dat file's bytes."""
        layers = read_parameters(data)
        convs = 2 * sum(STAGE_BLOCKS) + 1
        if [kind for kind, _ in layers] != ["con_4", "affine_"] * convs + ["fc_2"]:
            raise ValueError("not dlib's face recognition ResNet")
        pairs = [
            (conv, affine)
            for (_, conv), (_, affine) in zip(layers[:-1:2], layers[1::2], strict=True)
        ]
        strides = [
            2 if stage and i == 0 else 1 for stage, n in enumerate(STAGE_BLOCKS) for i in range(n)
        ]
        blocks = tuple(
            (_conv(*pairs[1 + 2 * b], 3, stride), _conv(*pairs[2 + 2 * b], 3, 1))
            for b, stride in enumerate(strides)
        )
        return FaceNet(_conv(*pairs[0], 7, 2), blocks, layers[-1][1].reshape(256, 128))

    def describe(self, chip: np.ndarray) -> np.ndarray:
        """The 128-d descriptor of an aligned 150 x 150 RGB face chip (uint8)."""
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"a face chip is {CHIP_SIZE}x{CHIP_SIZE}x3, not {chip.shape}")
        # Its matrix products are many and small: spread over BLAS threads while the other
        # cores run other workers, they cost 8x the CPU (294 against 38 ms per face).
        with _blas().limit(limits=1, user_api="blas"):
            x = (chip.transpose(2, 0, 1).astype(np.float32) - CHANNEL_MEANS[:, None, None]) / 256
            x = _max_pool(np.maximum(_convolve(x, self.stem), 0))
            for first, second in self.blocks:
                y = _convolve(np.maximum(_convolve(x, first), 0), second)
                x = np.maximum(_add_prev(y, _average_pool(x) if first.stride == 2 else x), 0)
            return x.mean(axis=(1, 2)) @ self.linear


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once per process


def _convolve(x: np.ndarray, conv: Conv) -> np.ndarray:
    """Correlation of (channels, rows, columns) with the filters, as one matrix product."""
    if conv.padding:
        x = np.pad(x, ((0, 0), (conv.padding,) * 2, (conv.padding,) * 2))
    channels, rows, cols = x.shape
    k, s = conv.size, conv.stride
    out_rows, out_cols = (rows - k) // s + 1, (cols - k) // s + 1
    patches = np.empty((channels, k, k, out_rows, out_cols), np.float32)
    for dy in range(k):
        for dx in range(k):
            patches[:, dy, dx] = x[:, dy : dy + s * out_rows : s, dx : dx + s * out_cols : s]
    out = conv.weights @ patches.reshape(channels * k * k, -1) + conv.bias
    return out.reshape(-1, out_rows, out_cols)


def _max_pool(x: np.ndarray) -> np.ndarray:
    """3x3 windows, stride 2, no padding."""
    rows, cols = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    out = x[:, : 2 * rows : 2, : 2 * cols : 2].copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(out, x[:, dy : dy + 2 * rows : 2, dx : dx + 2 * cols : 2], out=out)
    return out


def _average_pool(x: np.ndarray) -> np.ndarray:
    """2x2 windows, stride 2, no padding (a last odd row or column is left out)."""
    channels, rows, cols = x.shape[0], x.shape[1] // 2, x.shape[2] // 2
    return x[:, : 2 * rows, : 2 * cols].reshape(channels, rows, 2, cols, 2).mean(axis=(2, 4))


def _add_prev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's add_prev: the sum as if the smaller tensor were padded with zeros at its end."""
    out = np.zeros(tuple(max(p, q) for p, q in zip(a.shape, b.shape, strict=True)), np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out
