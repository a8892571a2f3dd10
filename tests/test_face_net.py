"""dlib's face recognition ResNet in numpy gives dlib's own descriptors."""

from __future__ import annotations

import os
import posixpath

import numpy as np
import pytest

from transforms.face_net import CHIP_SIZE, FaceNet
from transforms.faces import DESCRIPTOR_MODEL, face_models, models_available, models_dir

needs_models = pytest.mark.skipif(not models_available(), reason="dlib face models not installed")


def chip(seed: int) -> np.ndarray:
    """A smooth random 150 x 150 RGB image: any input must give dlib's numbers."""
    small = np.random.default_rng(seed).integers(0, 256, (15, 15, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 10, axis=0), 10, axis=1))


@needs_models
@pytest.mark.parametrize("seed", [1, 2])
def test_describe__dlibs_descriptor_of_the_same_chip(seed: int) -> None:
    import dlib

    dlib_net = dlib.face_recognition_model_v1(posixpath.join(models_dir(), DESCRIPTOR_MODEL))
    image = chip(seed)

    [ours] = face_models().descriptor.describe([image])

    theirs = np.asarray(dlib_net.compute_face_descriptor(image))
    assert ours.shape == (128,)
    assert np.abs(ours - theirs).max() < 1e-5


@needs_models
def test_describe__a_batch_gives_each_chips_own_descriptor() -> None:
    net = face_models().descriptor
    chips = [chip(1), chip(2), chip(3)]

    together = net.describe(chips)

    alone = np.concatenate([net.describe([c]) for c in chips])
    assert together.shape == (3, 128)
    assert np.abs(together - alone).max() < 1e-6
    assert np.abs(together[0] - together[1]).max() > 0.01  # three faces, not one three times


@needs_models
def test_describe__grey_chip_is_its_three_channels() -> None:
    net = face_models().descriptor
    grey = chip(4)[:, :, 0]

    [ours] = net.describe([grey])

    [rgb] = net.describe([np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))])
    assert np.abs(ours - rgb).max() < 1e-6


def test_of__bytes_of_another_file_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not dlib's face recognition ResNet"):
        FaceNet.of(b"\x01\x05con_4\x01\x02\x01\x02\x01\x01\x01\x01\x01\x01" + bytes(8))


@needs_models
def test_describe__chip_of_another_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="150x150x3"):
        face_models().descriptor.describe([np.zeros((CHIP_SIZE, CHIP_SIZE - 1), np.uint8)])


@needs_models
def test_kept__written_once_then_loaded_with_the_same_descriptors(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = posixpath.join(models_dir(), DESCRIPTOR_MODEL)
    with open(path, "rb") as f:
        [expected] = FaceNet.of(f.read()).describe([chip(5)])

    [first] = FaceNet.kept(path).describe([chip(5)])

    def no_parsing(data: bytes) -> bytes:
        raise AssertionError("parsed again")

    monkeypatch.setattr("transforms.face_net.model_bytes", no_parsing)
    [again] = FaceNet.kept(path).describe([chip(5)])

    assert np.array_equal(first, expected)
    assert np.array_equal(again, expected)
    assert os.listdir(tmp_path / "racelens" / "faces")[0].startswith("dlib_face_recognition")
