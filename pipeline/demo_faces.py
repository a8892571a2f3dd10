"""Real faces for the demo race (`racelens demo --faces DIR`).

A folder of real face photos becomes a cast: each person with at least two photos on
which dlib finds exactly one face can play one runner. Their first such photo is the
runner's reference photo for the start list; the others are cropped around the face and
drawn as the runner's head, a different photo at each station, so matching a race photo
to the reference never compares the same pixels.

DIR holds one folder per person, or a `labels.csv` with the columns `file,person`, or
folders that themselves hold such sets (e.g. `faces-dev/` with `bbt/` and `misc/`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["FACE_PX", "Person", "find_people", "load_cast", "paste_head"]

LABELS = "labels.csv"
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# The drawn head is FACE_PX square; the face dlib found fills 1 / (1 + 2 * FACE_MARGIN) of it
# (about 125 px), well above the ~80 px that dlib's HOG detector needs without upsampling.
FACE_PX = 200
FACE_MARGIN = 0.3  # of the found face's side, added on every side: forehead, chin, ears
# Big photos are searched at this long side (faces in portraits stay far above 80 px), small
# ones (the 150 px crops of faces-dev/bbt) once upsampled.
DETECT_LONG_SIDE = 800
UPSAMPLE_BELOW = 400
# A face goes on a runner only if HOG finds it, as drawn, at each of these scales: found at
# one scale and missed at the next is a face in half profile or half in shadow, which a
# pipeline (searching at whatever scale its photos need) finds or not by chance.
CHECK_SCALES = (1.0, 1.1, 1.25, 1.4, 1.6)
CHECK_BACKGROUND = 150  # grey around the drawn head while checking


@dataclass(frozen=True)
class Person:
    """One real person: a reference photo (the file itself) and face crops for the race."""

    name: str  # "<set>/<person>", unique across the sets of DIR
    reference: Path
    faces: tuple[np.ndarray, ...]  # FACE_PX x FACE_PX x 3 uint8 RGB, one per race photo


def _labelled(folder: Path) -> dict[str, list[Path]]:
    with (folder / LABELS).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"file", "person"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{folder / LABELS}: needs the columns file,person")
        people: dict[str, list[Path]] = {}
        for row in reader:
            people.setdefault(row["person"], []).append(folder / row["file"])
    return people


def _photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def find_people(root: Path) -> dict[str, list[Path]]:
    """Every person under root with their photo files, in a stable order.

    A folder with a labels.csv is one set labelled by it; a folder of photos is one person;
    other folders are searched further. Names are prefixed with the set's path below root.
    """
    if not root.is_dir():
        raise ValueError(f"--faces {root}: not a folder")
    people: dict[str, list[Path]] = {}

    def visit(folder: Path, prefix: str) -> None:
        if (folder / LABELS).is_file():
            for person, files in _labelled(folder).items():
                people[f"{prefix}{person}"] = sorted(files)
            return
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if (sub / LABELS).is_file() or not _photos_in(sub):
                visit(sub, f"{prefix}{sub.name}/")
            else:
                people[f"{prefix}{sub.name}"] = _photos_in(sub)

    visit(root, "")
    return dict(sorted(people.items()))


def _rgb(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError):
        return None


def face_box(rgb: np.ndarray, detector) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the one face dlib finds on the photo; None for none or several."""
    long_side = max(rgb.shape[:2])
    scale = min(1.0, DETECT_LONG_SIDE / long_side)
    small = (
        rgb
        if scale == 1.0
        else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    found = detector(small, 1 if long_side < UPSAMPLE_BELOW else 0)
    if len(found) != 1:
        return None
    r = found[0]
    return tuple(round(v / scale) for v in (r.left(), r.top(), r.right(), r.bottom()))  # type: ignore[return-value]


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face with FACE_MARGIN around it, square, FACE_PX wide; edges repeat beyond the photo."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * FACE_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    size = round(side)
    h, w = rgb.shape[:2]
    pad = max(0, -left, -top, left + size - w, top + size - h)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    square = padded[top + pad : top + pad + size, left + pad : left + pad + size]
    return cv2.resize(square, (FACE_PX, FACE_PX), interpolation=cv2.INTER_AREA)


@cache
def head_mask() -> np.ndarray:
    """FACE_PX square alpha of an upright oval head with a soft edge.

    The oval's half-axes (0.42, 0.5 of the side) contain the whole face dlib found, which
    fills the middle 1 / (1 + 2 * FACE_MARGIN) of the crop.
    """
    mask = np.zeros((FACE_PX, FACE_PX), np.float32)
    centre, axes = (FACE_PX // 2, FACE_PX // 2), (round(0.42 * FACE_PX), FACE_PX // 2 - 2)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), 2.0)[:, :, None]


def paste_head(roi: np.ndarray, face: np.ndarray) -> None:
    """Draws the face crop as an oval head into roi (FACE_PX square, same channels)."""
    alpha = head_mask() if roi.ndim == 3 else head_mask()[:, :, 0]
    roi[:] = (face * alpha + roi * (1 - alpha)).astype(np.uint8)


def found_at_every_scale(face: np.ndarray, detector) -> bool:
    """Does HOG find exactly one face in the crop drawn as a head, at every CHECK_SCALES?"""
    canvas = np.full((2 * FACE_PX, 2 * FACE_PX), CHECK_BACKGROUND, np.uint8)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    paste_head(canvas[FACE_PX // 2 : -FACE_PX // 2, FACE_PX // 2 : -FACE_PX // 2], grey)
    return all(
        len(detector(cv2.resize(canvas, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR), 0)) == 1
        for s in CHECK_SCALES
    )


def _faces(files: Sequence[Path], detector) -> Iterator[tuple[Path, np.ndarray]]:
    for path in files:
        rgb = _rgb(path)
        box = None if rgb is None else face_box(rgb, detector)
        if box is not None:
            yield path, crop_face(rgb, box)


def load_cast(root: str) -> tuple[Person, ...]:
    """The people under root who can play a runner: a reference photo (the first with one
    face) and at least one other photo whose face HOG finds at every scale when drawn.

    Raises ValueError when root is no folder or nobody qualifies.
    """
    import dlib  # only `demo --faces` needs it; the HOG detector ships inside dlib

    detector = dlib.get_frontal_face_detector()
    cast = []
    for name, files in find_people(Path(root)).items():
        found = list(_faces(files, detector))
        drawn = tuple(face for _, face in found[1:] if found_at_every_scale(face, detector))
        if drawn:
            cast.append(Person(name, found[0][0], drawn))
    if not cast:
        raise ValueError(
            f"--faces {root}: no person with two photos showing one face each "
            "(one folder per person, or labels.csv with file,person)"
        )
    return tuple(cast)
