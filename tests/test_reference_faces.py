"""What a run loads once, not per worker or per run: reference faces kept on disk by their
photo's content (transforms.faces.reference_face), the models and reference faces a zygote
loads for its workers (pipeline.graph.load_models)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from pipeline import graph
from transforms import faces, photos
from transforms.records import FaceSeen

DESCRIPTOR = tuple(float(i) / 128 for i in range(128))


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[int, int]]:
    """The shapes of the images the face search was given (a fake search: one face whose
    descriptor is DESCRIPTOR where the image is light, none where dark); the disk cache in
    tmp_path, the per-process cache emptied before and after."""
    found: list[tuple[int, int]] = []

    def portrait_face(image: np.ndarray, models: object) -> FaceSeen | None:
        found.append(image.shape)
        return FaceSeen((0, 0, 4, 4), DESCRIPTOR) if image.mean() > 127 else None

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(faces, "portrait_face", portrait_face)
    monkeypatch.setattr(faces, "face_models", lambda: None)
    faces.forget_reference_faces()
    yield found
    faces.forget_reference_faces()


def _photo(path: Path, shade: int, size: int = 32) -> str:
    cv2.imwrite(str(path), np.full((size, size), shade, np.uint8))
    return str(path)


def test_reference_face__found_once_then_read_from_disk_by_content(
    searches: list[tuple[int, int]], tmp_path: Path
) -> None:
    first = _photo(tmp_path / "a.png", 200)
    same = _photo(tmp_path / "b.png", 200)  # other name, same bytes

    assert faces.reference_face(first) == DESCRIPTOR
    faces.forget_reference_faces()  # a new run
    assert faces.reference_face(first) == DESCRIPTOR
    assert faces.reference_face(same) == DESCRIPTOR
    assert len(searches) == 1


def test_reference_face__changed_photo_or_damaged_cache_is_searched_again(
    searches: list[tuple[int, int]], tmp_path: Path
) -> None:
    path = _photo(tmp_path / "a.png", 200)
    faces.reference_face(path)
    Path(faces.reference_cache(Path(path).read_bytes())).write_text("{not json")
    faces.forget_reference_faces()
    assert faces.reference_face(path) == DESCRIPTOR

    _photo(tmp_path / "a.png", 200, size=40)
    faces.forget_reference_faces()
    assert faces.reference_face(path) == DESCRIPTOR
    assert searches == [(32, 32), (32, 32), (40, 40)]


def test_reference_face__no_face_is_kept_too_an_unreadable_photo_is_not(
    searches: list[tuple[int, int]], tmp_path: Path
) -> None:
    dark = _photo(tmp_path / "dark.png", 10)
    missing = str(tmp_path / "later.png")

    assert faces.reference_face(dark) is None
    assert faces.reference_face(missing) is None
    faces.forget_reference_faces()
    _photo(tmp_path / "later.png", 200)
    assert faces.reference_face(dark) is None
    assert faces.reference_face(missing) == DESCRIPTOR
    assert searches == [(32, 32), (32, 32)], "the dark photo searched once, the missing once"


def test_load_kept_reference__reads_a_kept_photo_once_never_searches(
    searches: list[tuple[int, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _photo(tmp_path / "kept.png", 200)
    unkept = _photo(tmp_path / "unkept.png", 200, size=40)
    faces.reference_face(kept)  # kept on disk from an earlier run
    faces.forget_reference_faces()
    reads: list[str] = []
    read_bytes = photos.read_bytes
    monkeypatch.setattr(photos, "read_bytes", lambda path: reads.append(path) or read_bytes(path))

    assert [faces.load_kept_reference(p) for p in (kept, unkept)] == [True, False]
    assert faces.reference_face(kept) == DESCRIPTOR
    assert reads == [kept, unkept], "the kept photo read once, the other not searched"
    assert searches == [(32, 32)]


def _race(photos: list[str]) -> SimpleNamespace:
    athletes = [SimpleNamespace(bib=str(100 + i), photo=p) for i, p in enumerate(photos)]
    return SimpleNamespace(athletes=athletes, start_list_file="/race/startlist.csv")


@pytest.mark.parametrize(
    ("faces_on", "analyses", "loaded"),
    [
        (True, True, ["models True", "/race/faces/a.jpg", "/abs/b.jpg"]),
        (True, False, ["/race/faces/a.jpg", "/abs/b.jpg"]),
        (False, True, ["models False"]),
        (False, False, []),
    ],
)
def test_load_models__analysis_models_and_the_local_reference_faces_kept(
    monkeypatch: pytest.MonkeyPatch, faces_on: bool, analyses: bool, loaded: list[str]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(graph, "faces_on", lambda cfg: faces_on)
    monkeypatch.setattr(graph, "analysis_models", lambda on: calls.append(f"models {on}"))
    monkeypatch.setattr(graph, "load_kept_reference", calls.append)
    race = _race(["faces/a.jpg", "/abs/b.jpg", "gs://bucket/c.jpg", ""])

    graph.load_models(race, analyses)

    assert calls == loaded


# A fresh interpreter (no OpenCV thread pool yet) loads as the zygote does, a race with
# faces whose reference photos are sys.argv[1:]; prints its threads before and after, and
# how many reference faces it then holds.
ZYGOTE_LOAD = """
import sys
from types import SimpleNamespace
from pipeline import graph
from pipeline.workers import native_threads
from transforms import faces

graph.faces_on = lambda cfg: True
before = native_threads()
athletes = [SimpleNamespace(bib=str(100 + i), photo=p) for i, p in enumerate(sys.argv[1:])]
graph.load_models(SimpleNamespace(athletes=athletes, start_list_file="/x/list.csv"))
print(before, native_threads(), len(faces._reference_faces))
"""


@pytest.mark.skipif(not faces.models_available(), reason="dlib face models not installed")
def test_load_models__starts_no_thread_and_reads_only_the_faces_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (1200, 900), np.uint8)
    cv2.imwrite(str(tmp_path / "large.jpg"), noise)  # searched by OpenCV's resizing, no face
    cv2.imwrite(str(tmp_path / "crop.jpg"), noise[:200, :150])  # a crop: described
    photos = [str(tmp_path / "large.jpg"), str(tmp_path / "crop.jpg")]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def zygote_load() -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", ZYGOTE_LOAD, *photos],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()

    before, after, held = zygote_load()
    assert (after, held) == (before, "0"), "nothing kept yet: left to the workers"
    faces.forget_reference_faces()
    assert [faces.reference_face(p) is None for p in photos] == [True, False]  # kept now
    faces.forget_reference_faces()
    before, after, held = zygote_load()
    assert (after, held) == (before, "2")
