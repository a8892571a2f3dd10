"""What racelens derives from installed models, kept on disk so that no process derives it
again: PP-OCR's folded recogniser (transforms.ppocr), dlib's face ResNet written as ONNX
(transforms.face_net), dlib's saved HOG detector and reference faces (transforms.faces).

A kept file is named by the digests of everything it is derived from (the shipped model and
the code that derives it), so an upgrade of either makes a new file instead of reusing a
stale one; a missing, damaged or unwritable copy costs only the derivation.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime as ort

PROVIDERS = ["CPUExecutionProvider"]

log = logging.getLogger(__name__)


def cache_dir() -> str:
    """Where racelens keeps what it derives from installed models: $XDG_CACHE_HOME/racelens
    (~/.cache/racelens by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "racelens")


def kept_path(folder: str, stem: str, sources: Sequence[str], suffix: str) -> str:
    """cache_dir()/folder/stem-DIGEST.suffix, DIGEST of the bytes of every file in sources."""
    digest = hashlib.sha256()
    for path in sources:
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return os.path.join(cache_dir(), folder, f"{stem}-{digest.hexdigest()[:24]}.{suffix}")


def kept_session(
    path: str, make: Callable[[], bytes], options: ort.SessionOptions
) -> ort.InferenceSession:
    """An onnxruntime session of the model kept at path; made by `make` and kept there first
    when there is no such file or it is damaged."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        Fail,
        InvalidGraph,
        InvalidProtobuf,
        NoSuchFile,
    )

    try:
        return ort.InferenceSession(path, sess_options=options, providers=PROVIDERS)
    except (NoSuchFile, InvalidProtobuf, InvalidGraph, Fail):
        pass
    model = make()
    keep(path, model)
    return ort.InferenceSession(model, sess_options=options, providers=PROVIDERS)


def keep(path: str, data: bytes) -> None:
    """Writes data to path whole (processes starting together see no halves); an unwritable
    cache costs only what the next process derives again."""
    from apache_beam.io.filesystem import BeamIOError

    from transforms.write import write_atomically  # write imports faces, which imports this

    try:
        write_atomically(path, data)
    except (OSError, BeamIOError):
        log.debug("not kept in %s", path, exc_info=True)
