"""bench/faces_ab.py's comparison of two faces.py versions, with stand-in versions."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from bench.faces_ab import compare, line, load_version
from transforms import faces
from transforms.records import FaceSeen


def version(name: str, faces_of) -> ModuleType:
    module = ModuleType(name)
    module.face_models = lambda: name
    module.find_faces = lambda image, factor, models: faces_of(int(image[0, 0]))
    return module


def test_compare__photos_with_the_same_faces_counted_and_both_timed() -> None:
    face = FaceSeen(box=(0, 0, 80, 80), embedding=(0.1,) * 128)
    before = version("before", lambda value: (face,))
    after = version("after", lambda value: (face,) if value < 2 else ())
    photos = [(np.full((4, 4), value, np.uint8), 2) for value in range(3)]

    result = compare(before, after, photos, repeats=2)

    assert (result.photos, result.same, result.faces) == (3, 2, 2)
    assert result.before_s >= 0 and result.after_s >= 0
    assert "the same faces (boxes and descriptors) on 2" in line("set", result)


def test_load_version__a_faces_module_of_its_own_beside_this_one() -> None:
    before = load_version(faces.__file__)

    assert before is not faces
    assert before.FaceModels is not faces.FaceModels
    assert before.search_scale(4000) == faces.search_scale(4000)
