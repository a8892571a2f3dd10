"""Faces: who a runner is when the bib is hidden, and whose face a read bib belongs to.

dlib's HOG frontal detector finds faces, its 5-point shape predictor aligns
them and its ResNet model turns each into a 128-d descriptor whose Euclidean
distance is small for the same person (the models ship in the
`face-recognition-models` package; nothing is downloaded; the ResNet runs in
onnxruntime, `transforms.face_net`, 18 times cheaper than in dlib). A `Gallery` holds
the known descriptors of each athlete: reference photos from the start list
and the faces above the pipeline's own confident bib reads. `match_face`
names the nearest athlete only when the distance is under a threshold and
clearly smaller than the second-best athlete's; otherwise the face goes to
review with its candidates. `associate` ties each read bib to the face above
it, so a bib is never credited to another runner's face and the gallery
stays clean.

Everything here is a small function on arrays and records; `MatchFaces` and
`BuildGallery` are the Beam shells.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import apache_beam as beam
import cv2
import numpy as np
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger

from transforms.course import Athlete, Settings
from transforms.face_net import CHIP_PADDING, CHIP_SIZE, FaceNet, pack_int, unpack_int
from transforms.kept import cache_dir, keep
from transforms.records import ANALYSIS_VERSION, BibSeen, FaceSeen, Photo

log = logging.getLogger(__name__)

SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# HOG's sliding window is 80 px, so it finds faces of 80 px and more in the image it
# searches. Each photo is scaled so that its smallest face worth identifying meets that
# window: a face under MIN_FACE_PX has too little detail for a descriptor to tell people
# apart, and one under MIN_FACE_FRACTION of the photo's long side is a face in the crowd,
# not a runner the photo was taken of; both are ignored rather than guessed at. A 12 MP
# photo is thus searched at 2000 px (faces from 160 px of the full photo), a 720 px one
# at 1440 px (faces from 40 px).
HOG_WINDOW_PX = 80
MIN_FACE_PX = 40
MIN_FACE_FRACTION = 0.04
# HOG scans a pyramid of the searched image, each level 5/6 of the one above, so a face is found
# at the level where it is 80 to 96 px. The three finest levels (faces of 80 to 138 px) are two
# thirds of the work. So the pyramid from its fourth level on is searched whole, and the finer
# levels only around what that search finds at least a little face-like (score PROPOSAL_THRESHOLD,
# under the detector's 0) in its 4th level (SEED_LEVELS), each finer level around those
# at most three levels above it: a face of 80 to 138 px still scores so in a window up to three
# levels too large. Chosen on bibs-dev at 12 MP among 2 to 4 levels searched finer and thresholds
# from -0.6 to -1.8 (`faces-eval --bibs`); until session 10 every proposal under 1.3 windows of
# the 4th level searched all three finer levels (the 6th level's narrower boxes among them): the
# same faces for 0.7 of their CPU on bibs-dev at 12 MP. Of the coarser levels, only WHOLE_LEVELS
# (the 4th, 6th and 8th, then every third: faces of 138 to 166 px, 199 to 239, 287 to 344, 594 to
# 713, ...) are scanned whole; each level between only around what the nearest whole levels on
# either side find a little face-like (one level off, a face still scores so, and each such level
# has a whole one next to it): the same faces for 0.56 of the coarser levels' pixels (every other
# level whole, session 6: 0.61, 7 CPU ms more a 4:3 12 MP photo; every third level from the 4th
# on: 0.46, but 4 boxes of bibs-dev at 12 MP move; whole levels 3, 5, 8, 11, ...: 2 faces lost). A
# region is searched on the level's own pixels, cut at a multiple of HOG's 8 px cell, so that its
# cells are the very ones the whole level's scan sees (cut anywhere, scores move: 108 of the 110
# faces and 4 other boxes). A level's regions are cut together where one scan costs less than two
# (merged_cuts; each scan has a fixed cost), each region keeping the windows a scan of it alone
# scores, the best of overlapping ones (window_detector keeps them all); only windows near a
# region's cuts score otherwise, as in the whole level (bibs-dev at 12 MP: the same boxes but one,
# a cell off, for 0.95 of the CPU). The levels are made by OpenCV's bilinear resize in dlib's
# sizes, each scanned alone (dlib's own resampling costs 3 times as much; an area average, which
# smooths edges, lost 5 proposals near the threshold). bibs-dev at 12 MP: 109 of the 110 faces
# dlib's whole pyramid finds and 1 other box, 86 of its 100 labelled faces (the whole pyramid 85).
# Photos enlarged to be searched (under 2000 px) are searched whole by dlib (see hog_faces).
PYRAMID_RATE = 6  # dlib's pyramid_down<6>: each level 5/6 of the one above
FINE_LEVELS = 3
# The finer levels are searched around proposals of the 4th level alone (every finer level is
# within three levels of it); until session 15 the 2nd and 3rd also around the 5th level's:
# the same faces on bibs-dev at 12 MP (92 of 92 photos, `faces-eval --bibs` 109 of 110) and on
# bench/faces_ab.py's demo photos, at 0.985x the CPU of bibs-dev's whole analysis.
SEED_LEVELS = 1
WHOLE_LEVELS = (3, 5, 7, 10, 13, 16)  # and the levels below the last, around its finds
PROPOSAL_THRESHOLD = -1.2
MIN_LEVEL_PX = 64  # dlib's detector scans no smaller level
# dlib's frontal detector is five detectors in one, each a filter over the same HOG features of a
# window: a face looking ahead (FRONT_FILTER), to the left, to the right, and ahead rotated left
# and right; a window scores the best of the five. Of a level's scan, the features are ~0.6 of
# the CPU, each filter ~0.08 (bibs-dev at 12 MP, the 4th level). The whole levels from the 6th on,
# whose proposals the finest levels are not searched around, are scanned with the front filter
# alone, then with all five only around the windows it scores PROPOSAL_THRESHOLD or more (cut as
# textured_cuts cuts, each such window scored as in the whole level): of the windows the front
# filter sees, they keep the best of overlapping ones, as their whole scan keeps them. A face
# there that only another filter sees is found a level off (bibs-dev: two windows of the 6th
# level scoring 0.5 and 1.25, their front filter under -1.2, each outscored by its face at the
# 5th, which is searched around the 4th's proposals too).
# bench/faces_ab.py: the same faces on bibs-dev at 12 MP, the bench's photos and a 205-photo demo
# race at 0.88-0.90x the CPU. Tried: the 4th level so too (6 of bibs-dev's 110 faces lost, each
# seeded there only by a window another filter scores -1.2 or more, its front -1.65 to -2.3); a
# front threshold of -1.5 (0.96x HOG's search); the left and right filters too, at 0 (0.95x).
FRONT_FILTER = 0
HOG_CELL_PX = 8
# dlib's windows in a level: HOG_WINDOW_PX square, their corners WINDOW_SHIFT_PX before a
# multiple of HOG's cell, up to HANGING_CELLS cells off the level's top and left edges.
WINDOW_SHIFT_PX = 3
HANGING_CELLS = 3
# dlib boxes a window of its scan with right and bottom edges this far past a multiple of
# HOG's cell (its left and top edges move where it hangs off the scanned image).
WINDOW_END_PX = HOG_WINDOW_PX - HANGING_CELLS * HOG_CELL_PX - WINDOW_SHIFT_PX
# A window scanned in a region cut from its level at a multiple of HOG's cell scores as in
# the whole level when it is EXACT_MARGIN_PX or more inside the cuts (measured on bibs-dev).
EXACT_MARGIN_PX = 21
# Flat windows. A face is not flat: every window scoring PROPOSAL_THRESHOLD or more on
# bibs-dev and the demo's photos at 12 MP has a mean |dx| and a mean |dy| of 1.23 grey levels
# a pixel or more each in its centre (FLAT_INSET_PX in from each side), faces 4.7 and more
# (HOG's face filters weigh edges across and along the face); a clear sky, a road, a
# backdrop, the straight horizontal edges of a track or a hedge under 0.4 in one of them
# (3.1 and 11.7 times under those; session 8's |dx| + |dy| under 1: 2.9 and 10.5). So a
# whole level finer than MEASURE_LEVEL (the 4th, 6th and 8th) is scanned only in regions
# around its textured windows (scan_regions) where those cover under MOSTLY_SCANNED of it,
# each window's texture measured on MEASURE_LEVEL's pixels (~0.3 CPU ms a photo; the
# coarser levels are small, a scan's fixed cost most of theirs). The boxes are the whole
# level's, their scores to ~1e-7 (dlib's vector sums round differently in a cut). On
# bench/perf.py's 12 MP demo photos, half sky and track: 0.81x the CPU of finding their
# faces (session 8, |dx| + |dy| tested: 0.26 of the 4th level's windows textured, 0.56 of
# the 8th's), 0.95x that again with each direction tested (0.16, 0.29); on bibs-dev at
# 12 MP, textured throughout: 1.02x, then 1.00x (0.94 -> 0.92 of the 4th level textured).
FLAT_GRADIENT = 0.4
FLAT_INSET_PX = 16
MEASURE_LEVEL = 8
MOSTLY_SCANNED = 0.8
SCAN_FIXED_CELLS = 110  # a dlib scan's fixed cost (~0.2 ms), in cells of a whole level's scan
PROPOSAL_MARGIN = 0.35  # the finer search spans this many box widths around a proposal
# Two detections are one face when they overlap by more than this (intersection over union),
# or when the smaller lies almost wholly inside the larger: the highest score stands.
SAME_FACE_OVERLAP = 0.5
SAME_FACE_COVERED = 0.9
# Descriptors are stored rounded: 3 decimals move a distance by < 0.005, two orders
# below the threshold, and keep a face at ~0.8 KB of facts JSON.
EMBEDDING_DECIMALS = 3
# dlib's published operating point: same person below 0.6 (99.38 % on LFW pairs).
DEFAULT_THRESHOLD = 0.6
# The best athlete must be nearer than the second best by this much: LFW's same-person
# and different-person distance distributions overlap over about 0.1 around 0.6.
DEFAULT_MARGIN = 0.1
# Width of the logistic that turns distance and margin into a confidence (see match_confidence).
CONFIDENCE_WIDTH = 0.05
MAX_FACE_CONFIDENCE = 0.95
# A face crop (a reference portrait, a cropped face) is at most this big; when HOG finds no
# face in one, the whole crop is the face (HOG needs a margin around the face it finds).
CROP_LONG_SIDE = 300
# Association: a runner's bib is on the chest, below the face, within this many face heights
# (centre to centre), and horizontally within this many face widths of the face's centre.
BIB_BELOW_FACE_HEIGHTS = (1.0, 6.0)
BIB_BESIDE_FACE_WIDTHS = 1.0
# A bib near two faces is tied to the nearer only if the other is this much farther away.
ASSOCIATION_RATIO = 1.5


# ---------------------------------------------------------------------------------- models


def models_dir() -> str | None:
    """Folder of the model files from `face-recognition-models`, found without importing it
    (its __init__ imports pkg_resources, which new setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = posixpath.join(list(spec.submodule_search_locations)[0], "models")
    wanted = (SHAPE_MODEL, DESCRIPTOR_MODEL)
    return folder if all(FileSystems.exists(posixpath.join(folder, f)) for f in wanted) else None


def models_available() -> bool:
    """True where dlib and the model files are installed, so faces can be matched."""
    return importlib.util.find_spec("dlib") is not None and models_dir() is not None


def faces_enabled(settings: Settings) -> bool:
    """Face matching runs when the race allows it and the models are installed; otherwise
    the pipeline runs exactly as it does without faces."""
    return settings.faces and models_available()


@dataclass(frozen=True)
class FaceModels:
    detector: object
    level_detector: object  # the same detector, scanning only the image it is given
    overlap: tuple[float, float]  # its test of two boxes being one face (see boxes_overlap)
    window_detector: object  # level_detector keeping every window scored (see unsuppressed)
    front_detector: object  # window_detector with its FRONT_FILTER alone (see with_filters)
    shape: object
    descriptor: FaceNet


@functools.cache
def face_models() -> FaceModels:
    """The dlib models, loaded once per process (from a DoFn's setup, never at import)."""
    import dlib

    folder = models_dir()
    if folder is None:
        raise RuntimeError("face models are not installed (pip install face-recognition-models)")
    detector = frontal_detector()
    level_detector = single_level(detector)
    window_detector = unsuppressed(level_detector)
    return FaceModels(
        detector=detector,
        level_detector=level_detector,
        overlap=overlap_thresholds(detector),
        window_detector=window_detector,
        front_detector=with_filters(window_detector, [FRONT_FILTER]),
        shape=dlib.shape_predictor(posixpath.join(folder, SHAPE_MODEL)),
        descriptor=FaceNet.kept(posixpath.join(folder, DESCRIPTOR_MODEL)),
    )


def frontal_detector():
    """dlib's HOG face detector, loaded from its saved form in `cache_dir()`.

    dlib.get_frontal_face_detector() decodes the detector from a text form compiled into
    dlib: 0.8 CPU s, which every worker of every run paid before its first photo. The saved
    form (the same bytes as dlib saves the built detector) loads in 2 ms, so it is saved
    once per dlib version; a missing, damaged or unwritable copy costs only the build.
    """
    import dlib

    path = os.path.join(cache_dir(), f"frontal_face_detector-dlib-{dlib.__version__}.svm")
    try:
        return dlib.fhog_object_detector(path)
    except RuntimeError:  # no copy yet, or a damaged one: built and saved again
        pass
    detector = dlib.get_frontal_face_detector()
    keep(path, saved_form(detector))
    return detector


def saved_form(detector) -> bytes:
    """The bytes dlib saves a HOG detector as."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "detector.svm")
        detector.save(path)
        with open(path, "rb") as f:
            return f.read()


# How dlib serialises its HOG detector, up to the pyramid's depth: the object detector's
# version, the scanner's version, its feature extractor and cached features (none), cell
# size, padding and window width and height; then the most pyramid levels it scans, the
# smallest level's width and height, a double (the training's regularisation), the feature
# count, its overlap test's two thresholds (doubles: mantissa and power of two), and its
# filters: their count, then each one's weights (a column: rows, columns, then doubles).
_DETECTOR_HEAD = (2, 1, 0, 0, 8, 0, 80, 80)


def _depth_at(data: bytes) -> int:
    """Where the saved HOG detector `data` holds its pyramid's depth."""
    at, head = 0, []
    for _ in range(len(_DETECTOR_HEAD)):
        value, at = unpack_int(data, at)
        head.append(value)
    if tuple(head) != _DETECTOR_HEAD:
        raise ValueError(f"not dlib's HOG detector as dlib 19-20 saves it: {head}")
    return at


def single_level(detector):
    """`detector` scanning the image it is given and no smaller level of it (dlib's Python
    API has no such setting, so its serialised form is edited and loaded again)."""
    data = saved_form(detector)
    at = _depth_at(data)
    return _loaded(data[:at] + pack_int(1) + data[unpack_int(data, at)[1] :])


def unsuppressed(detector):
    """`detector` keeping every window scoring its threshold, not only the best of
    overlapping ones: its test of two boxes being one set to never hold (both thresholds
    1; see boxes_overlap), so that the windows of a merged scan can be kept as a scan of
    each region alone keeps them (see _level_faces)."""
    data = saved_form(detector)
    return _loaded(
        data[: _overlap_at(data)] + (pack_int(1) + pack_int(0)) * 2 + data[_filters_at(data) :]
    )


def with_filters(detector, keep: Sequence[int]):
    """`detector` holding only its filters `keep` (see FRONT_FILTER), in that order: each scores
    a window as it does in `detector` (its serialised form edited, as dlib's Python API cannot)."""
    data = saved_form(detector)
    at = _filters_at(data)
    count, start = unpack_int(data, at)
    spans = []
    for _ in range(count):
        rows, end = unpack_int(data, start)
        columns, end = unpack_int(data, end)
        for _ in range(2 * abs(rows * columns)):  # each weight a mantissa and a power of two
            end = unpack_int(data, end)[1]
        spans.append(data[start:end])
        start = end
    return _loaded(data[:at] + pack_int(len(keep)) + b"".join(spans[k] for k in keep))


def _loaded(data: bytes):
    """The HOG detector dlib saved as `data`."""
    import dlib

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "detector.svm")
        with open(path, "wb") as f:
            f.write(data)
        return dlib.fhog_object_detector(path)


def overlap_thresholds(detector) -> tuple[float, float]:
    """The two thresholds of `detector`'s test of two boxes being one (see boxes_overlap)."""
    data = saved_form(detector)
    at = _overlap_at(data)
    values = []
    for _ in range(2):
        mantissa, at = unpack_int(data, at)
        exponent, at = unpack_int(data, at)
        values.append(math.ldexp(mantissa, exponent))
    return values[0], values[1]


def _overlap_at(data: bytes) -> int:
    """Where the saved HOG detector `data` holds its overlap test's two thresholds."""
    at = _depth_at(data)
    for _ in range(6):  # depth, smallest width and height, a double, the feature count
        at = unpack_int(data, at)[1]
    return at


def _filters_at(data: bytes) -> int:
    """Where the saved HOG detector `data` holds its count of filters."""
    at = _overlap_at(data)
    for _ in range(4):  # two doubles, each a mantissa and a power of two
        at = unpack_int(data, at)[1]
    return at


# ------------------------------------------------------------------------ detect and embed

Box = tuple[int, int, int, int]  # x0, y0, x1, y1
_Found = TypeVar("_Found", tuple[float, Box], tuple[float, Box, int])  # score, box, ...


def search_scale(long_side: int) -> float:
    """The scale at which HOG's window is the smallest face worth identifying."""
    return HOG_WINDOW_PX / max(MIN_FACE_PX, long_side * MIN_FACE_FRACTION)


def searched_image(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image HOG searches for faces (see search_scale), and its scale."""
    scale = search_scale(max(image.shape[:2]))
    return (image if scale == 1.0 else _resized(image, scale)), scale


def detect_faces(image: np.ndarray, models: FaceModels) -> list[Box]:
    """Face boxes in `image` (grey or RGB), large enough to identify, largest first."""
    searched, scale = searched_image(image)
    boxes = []
    for found in hog_faces(searched, models, enlarged=scale > 1):
        box = _clipped(tuple(round(v / scale) for v in found), image)
        if min(box[2] - box[0], box[3] - box[1]) >= MIN_FACE_PX:
            boxes.append(box)
    return sorted(boxes, key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b))


def hog_faces(image: np.ndarray, models: FaceModels, enlarged: bool = False) -> list[Box]:
    """The faces dlib's HOG detector finds in `image`: its pyramid from the FINE_LEVELS-th
    level on searched (WHOLE_LEVELS whole, the rest around what those find), the finer
    levels only around proposals (see FINE_LEVELS). An enlarged image is searched whole:
    its finest levels are interpolated, proposals there are weaker (bibs-dev at its own
    size, enlarged about 2x: 65 of the 94 faces found)."""
    if enlarged:
        return [_box_of(rect) for rect in models.detector(image, 0)]
    levels = pyramid(image)
    proposals = _coarse_search(levels, models)
    found = [(score, box) for score, box, _ in proposals if score >= 0]
    for level in range(FINE_LEVELS):
        seeds = [box for _, box, at in proposals if at in _seed_levels(level)]
        found += _level_faces(levels[level], level, _regions(seeds, image), models, 0.0)
    return [box for _, box in _one_per_face(found, _same_face)]


def _seed_levels(level: int) -> range:
    """The levels whose proposals a finer `level` is searched around: the smallest proposals
    (SEED_LEVELS levels from FINE_LEVELS on), at most FINE_LEVELS levels above `level`."""
    return range(FINE_LEVELS, min(FINE_LEVELS + SEED_LEVELS, level + FINE_LEVELS + 1))


def pyramid(image: np.ndarray) -> list[np.ndarray]:
    """`image` and the levels of HOG's pyramid below it, each in the size dlib's
    pyramid_down<6> gives (5/6 of the one above, rounded down) while it is at least
    MIN_LEVEL_PX, made by OpenCV's bilinear resize (dlib's own costs 3 times as much)."""
    levels = [image]
    while True:
        height, width = ((PYRAMID_RATE - 1) * n // PYRAMID_RATE for n in levels[-1].shape[:2])
        if min(height, width) < MIN_LEVEL_PX:
            return levels
        levels.append(cv2.resize(levels[-1], (width, height), interpolation=cv2.INTER_LINEAR))


def _coarse_search(
    levels: Sequence[np.ndarray], models: FaceModels
) -> list[tuple[float, Box, int]]:
    """(score, box in the finest level's pixels, level) of what HOG finds at least a little
    face-like (PROPOSAL_THRESHOLD) in the pyramid's `levels` from FINE_LEVELS on: WHOLE_LEVELS
    scanned whole, every other level only around what the nearest of those on either side
    find; then of overlapping boxes the best only, as dlib's detector keeps them (highest
    score first, its own overlap test), best first."""
    whole = [lv for lv in WHOLE_LEVELS if lv < len(levels)]
    at = min(MEASURE_LEVEL, len(levels) - 1)
    sums = gradient_sums(levels[at])
    found = {level: _whole_level_faces(levels[level], level, sums, at, models) for level in whole}
    for level in (lv for lv in range(FINE_LEVELS, len(levels)) if lv not in whole):
        near = [box for lv in nearest_whole(level, whole) for _, box in found[lv]]
        regions = _regions(near, levels[0])
        found[level] = _level_faces(levels[level], level, regions, models, PROPOSAL_THRESHOLD)
    return _one_per_face(
        [(score, box, level) for level, faces in found.items() for score, box in faces],
        lambda a, b: boxes_overlap(a, b, models.overlap),
    )


def _whole_level_faces(
    pixels: np.ndarray,
    level: int,
    sums: tuple[np.ndarray, np.ndarray],
    at: int,
    models: FaceModels,
) -> list[tuple[float, Box]]:
    """What HOG finds scoring PROPOSAL_THRESHOLD and up in the pyramid's level `level` (its
    `pixels`) scanned whole; a level finer than level `at` (`sums`, its gradient_sums)
    only around its textured windows where that scans under MOSTLY_SCANNED of it (see
    FLAT_GRADIENT; coarser levels are small, each scan's fixed cost most of theirs). A
    level from the 6th on only around the windows its front filter scores so (see
    FRONT_FILTER)."""
    height, width = pixels.shape[:2]
    windows = textured_windows((height, width), level, sums, at) if level < at else None
    cuts = None
    if windows is not None and windows.mean() < MOSTLY_SCANNED:
        textured = textured_cuts(windows, (height, width))
        area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in textured)
        cuts = textured if area < MOSTLY_SCANNED * height * width else None
    if level >= FINE_LEVELS + SEED_LEVELS:  # the finest levels are not searched around its finds
        front = front_windows(pixels, cuts, windows, models)
        cuts = textured_cuts(front, (height, width))
    if cuts is None:
        return _level_faces(pixels, level, None, models, PROPOSAL_THRESHOLD)
    return _textured_level_faces(pixels, level, cuts, models, PROPOSAL_THRESHOLD)


def front_windows(
    pixels: np.ndarray, cuts: Sequence[Box] | None, windows: np.ndarray | None, models: FaceModels
) -> np.ndarray:
    """Whether each window dlib scans in a pyramid level (its `pixels`; see textured_windows)
    scores PROPOSAL_THRESHOLD or more by its front filter alone: the level scanned whole, or
    its `cuts` (see textured_cuts), where only the `windows` they were cut for count (each
    of those scored there as in the whole level)."""
    height, width = pixels.shape[:2]
    found = np.zeros((_windows_along(height), _windows_along(width)), bool)
    for cut in [None] if cuts is None else cuts:
        for _, box in _scan(pixels, cut, models.front_detector, PROPOSAL_THRESHOLD):
            found[_window_at(box)] = True
    return found if cuts is None else found & windows


def _textured_level_faces(
    pixels: np.ndarray, level: int, cuts: Sequence[Box], models: FaceModels, threshold: float
) -> list[tuple[float, Box]]:
    """What HOG finds scoring `threshold` and up in the pyramid's level `level` (its
    `pixels`) within `cuts` (see textured_cuts) as the whole level's scan finds it: a box
    at least EXACT_MARGIN_PX inside a cut scores as in the whole level; a box nearer a cut
    is another cut's or a flat window's, and is dropped. Of overlapping boxes the best
    only, as dlib's scan keeps them."""
    height, width = pixels.shape[:2]
    found: list[tuple[float, Box]] = []
    for x0, y0, x1, y1 in cuts:
        exact = (
            x0 + EXACT_MARGIN_PX if x0 else 0,
            y0 + EXACT_MARGIN_PX if y0 else 0,
            x1 - 1 - EXACT_MARGIN_PX if x1 < width else width,
            y1 - 1 - EXACT_MARGIN_PX if y1 < height else height,
        )
        found += [
            (score, box)
            for score, box in _scan(pixels, (x0, y0, x1, y1), models.level_detector, threshold)
            if _inside(_clipped(box, pixels), exact)
        ]
    kept = _one_per_face(found, lambda a, b: boxes_overlap(a, b, models.overlap))
    return [(score, _level_box_up(box, level)) for score, box in kept]


def textured_cuts(windows: np.ndarray, shape: tuple[int, int]) -> list[Box]:
    """The regions, (x0, y0, x1, y1), cut from a level of `shape` at multiples of HOG's
    cell to scan its textured `windows` (see textured_windows) EXACT_MARGIN_PX inside them:
    those of scan_regions."""
    height, width = shape
    return [
        (x0, y0, x1, y1)
        for r0, c0, r1, c1 in scan_regions(windows)
        for (x0, x1), (y0, y1) in [(_cut(c0, c1, width), _cut(r0, r1, height))]
    ]


def _cut(first: int, last: int, size: int) -> tuple[int, int]:
    """Where a level of `size` pixels along one side is cut, at multiples of HOG's cell, to
    scan its windows `first` to `last` (see textured_windows) EXACT_MARGIN_PX inside."""
    start = HOG_CELL_PX * (first - HANGING_CELLS) - WINDOW_SHIFT_PX - EXACT_MARGIN_PX
    end = start + HOG_CELL_PX * (last - first) + HOG_WINDOW_PX + 2 * EXACT_MARGIN_PX
    return max(0, start - start % HOG_CELL_PX), min(size, end - end % -HOG_CELL_PX)


def gradient_sums(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integral images, each (rows + 1, cols + 1), of |dx| and of |dy| (central
    differences, 0 on the edges) of grey `pixels` (RGB ones: of their grey)."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    dx = cv2.absdiff(pixels[:, 2:], pixels[:, :-2])
    dy = cv2.absdiff(pixels[2:], pixels[:-2])
    return (
        cv2.integral(cv2.copyMakeBorder(dx, 0, 0, 1, 1, cv2.BORDER_CONSTANT)),
        cv2.integral(cv2.copyMakeBorder(dy, 1, 1, 0, 0, cv2.BORDER_CONSTANT)),
    )


def textured_windows(
    shape: tuple[int, int], level: int, sums: tuple[np.ndarray, np.ndarray], at: int
) -> np.ndarray:
    """Whether each window dlib scans in the pyramid's level `level` (of `shape`) is
    textured: the mean |dx| and the mean |dy| of its centre (FLAT_INSET_PX in from each
    side) each at least FLAT_GRADIENT a pixel of `level`, measured on the pyramid's level
    `at` (`sums`, its gradient_sums). Window (row, col) is HOG_WINDOW_PX square, its
    top-left corner at HOG_CELL_PX * ((row, col) - HANGING_CELLS) - WINDOW_SHIFT_PX."""
    top, bottom, left, right, least = _window_centres(shape, level, sums[0].shape, at)
    across, along = (_box_sums(integral, top, bottom, left, right) for integral in sums)
    return (across >= least) & (along >= least)


def _box_sums(
    integral: np.ndarray, top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """(rows, cols): the sum of the image whose integral image is `integral` over rows
    top[i] to bottom[i] and columns left[j] to right[j] (each end excluded)."""
    rows = integral[bottom] - integral[top]
    return rows[:, right] - rows[:, left]


@functools.lru_cache(maxsize=32)
def _window_centres(
    shape: tuple[int, int], level: int, sums_shape: tuple[int, int], at: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For textured_windows: the rows and columns of level `at`'s integral image bounding
    each window's centre, and the least sum of |dx|, and of |dy|, over it of a textured one
    (the same for every photo of a size)."""
    scale = ((PYRAMID_RATE - 1) / PYRAMID_RATE) ** (at - level)  # of `level`'s pixels at `at`
    bounds = []
    for size, limit in zip(shape, sums_shape, strict=True):
        windows = np.arange(_windows_along(size))
        first = HOG_CELL_PX * (windows - HANGING_CELLS) - WINDOW_SHIFT_PX + FLAT_INSET_PX
        last = first + HOG_WINDOW_PX - 2 * FLAT_INSET_PX
        bounds += [
            np.clip(np.floor(first * scale).astype(int), 0, limit - 1),
            np.clip(np.ceil(last * scale).astype(int), 0, limit - 1),
        ]
    top, bottom, left, right = bounds
    area = np.outer(np.maximum(bottom - top, 1), np.maximum(right - left, 1))
    # A gradient of g a pixel of `level` is g / scale a pixel of `at`.
    return top, bottom, left, right, FLAT_GRADIENT / scale * area


def _windows_along(size: int) -> int:
    """The windows of textured_windows along a level's side of `size` pixels."""
    return -(-size // HOG_CELL_PX) + HANGING_CELLS


def _window_at(box: Box) -> tuple[int, int]:
    """(row, col) of textured_windows of the window dlib's scan of a level boxes `box`."""
    return (box[3] - WINDOW_END_PX) // HOG_CELL_PX, (box[2] - WINDOW_END_PX) // HOG_CELL_PX


Region = tuple[int, int, int, int]  # first row, first col, last row, last col (inclusive)


def scan_regions(windows: np.ndarray, top: int = 0, left: int = 0) -> list[Region]:
    """Rectangles of window positions (offset by `top`, `left`) holding every True of
    `windows`, cut in two where two scans cost less than one (see _scan_cost), and so on."""
    rows, cols = np.flatnonzero(windows.any(1)), np.flatnonzero(windows.any(0))
    if rows.size == 0:
        return []
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    part = windows[r0 : r1 + 1, c0 : c1 + 1]
    top, left = top + r0, left + c0
    cut = _best_cut(part)
    if cut is None:
        return [(top, left, top + r1 - r0, left + c1 - c0)]
    axis, at = cut
    if axis == 0:
        return scan_regions(part[:at], top, left) + scan_regions(part[at:], top + at, left)
    return scan_regions(part[:, :at], top, left) + scan_regions(part[:, at:], top, left + at)


def _best_cut(part: np.ndarray) -> tuple[int, int] | None:
    """(axis, index) of the cut of `part` (windows, True on its four edges) into two parts,
    each shrunk to its Trues, that costs least to scan, or None when none costs less than
    `part` whole."""
    best, cut = _scan_cost(*part.shape), None
    for axis in (0, 1):
        lines = part if axis == 0 else part.T
        count, length = lines.shape
        if count < 2:
            continue
        used = lines.any(1)
        first = np.where(used, lines.argmax(1), length)
        last = np.where(used, length - 1 - lines[:, ::-1].argmax(1), -1)
        index = np.arange(count)
        # the part before the cut after line k, and the part after it, for every k
        head_lines = np.maximum.accumulate(np.where(used, index, -1))[:-1] + 1
        tail_lines = count - np.minimum.accumulate(np.where(used, index, count)[::-1])[::-1][1:]
        head_span = np.maximum.accumulate(last)[:-1] - np.minimum.accumulate(first)[:-1] + 1
        tail_last = np.maximum.accumulate(last[::-1])[::-1][1:]
        tail_span = tail_last - np.minimum.accumulate(first[::-1])[::-1][1:] + 1
        costs = _scan_cost(head_lines, head_span) + _scan_cost(tail_lines, tail_span)
        k = int(costs.argmin())
        if costs[k] < best:
            best, cut = costs[k], (axis, k + 1)
    return cut


def _scan_cost(rows: np.ndarray | int, cols: np.ndarray | int) -> np.ndarray | int:
    """What scanning `rows` x `cols` window positions costs, in HOG cells scanned: the cells
    of the region cut for them (see _cut) and a scan's fixed cost."""
    extra = (HOG_WINDOW_PX + 2 * EXACT_MARGIN_PX) // HOG_CELL_PX + 1
    return (rows + extra) * (cols + extra) + SCAN_FIXED_CELLS


def nearest_whole(level: int, whole: Sequence[int]) -> tuple[int, ...]:
    """The levels of `whole` (ascending) nearest `level` below and above it, where any."""
    below = [lv for lv in whole if lv < level][-1:]
    above = [lv for lv in whole if lv > level][:1]
    return (*below, *above)


def _regions(proposals: Sequence[Box], image: np.ndarray) -> list[Box]:
    """The regions of `image` searched around `proposals` (each PROPOSAL_MARGIN wider on
    every side; one inside a region already searched is not searched again)."""
    regions: list[Box] = []
    for box in proposals:
        region = _grown(box, PROPOSAL_MARGIN, image)
        if not any(_inside(region, r) for r in regions):
            regions.append(region)
    return regions


def _level_faces(
    pixels: np.ndarray,
    level: int,
    regions: Sequence[Box] | None,
    models: FaceModels,
    threshold: float,
) -> list[tuple[float, Box]]:
    """(score, box in the finest level's pixels) of what HOG finds scoring `threshold` and
    up in the pyramid's level `level` (its `pixels`), scanned on its own pixels: whole, or
    within each of `regions` (boxes in the finest level's pixels) as a scan of that region
    alone keeps its windows (those it scans, the best of overlapping ones, by dlib's test),
    the regions' cuts scanned together where one scan costs less than two (merged_cuts)."""
    if regions is None:
        found = _scan(pixels, None, models.level_detector, threshold)
        return [(score, _level_box_up(box, level)) for score, box in found]
    cuts = [_region_cut(region, level, pixels) for region in regions]
    scanned = {
        merged: _scan(pixels, merged, models.window_detector, threshold)
        for merged in merged_cuts(cuts)
    }
    kept = []
    for cut in cuts:
        windows = next(found for merged, found in scanned.items() if _inside(cut, merged))
        kept += _one_per_face(
            [(score, box) for score, box in windows if _scanned_in(box, cut)],
            lambda a, b: boxes_overlap(a, b, models.overlap),
        )
    return [(score, _level_box_up(box, level)) for score, box in kept]


def _region_cut(region: Box, level: int, pixels: np.ndarray) -> Box:
    """The cut of the pyramid's level `level` (its `pixels`) scanned for `region` (a box in
    the finest level's pixels): the region's box in the level, its left and top edges
    moved out to a multiple of HOG's cell, so that its cells are the whole level's."""
    import dlib

    down = dlib.pyramid_down(PYRAMID_RATE).rect_down(dlib.rectangle(*region), level)
    left, top, right, bottom = _box_of(down)
    x0, y0, x1, y1 = _clipped((left, top, right + 1, bottom + 1), pixels)
    return (x0 - x0 % HOG_CELL_PX, y0 - y0 % HOG_CELL_PX, x1, y1)


def _scanned_in(box: Box, cut: Box) -> bool:
    """Whether a scan of `cut` alone scores the window of `box` (in the level's pixels, as
    dlib's scan reports it). dlib scans round(n / cell) - 2 windows along a side of n
    pixels, at HOG_CELL_PX steps from HANGING_CELLS cells and WINDOW_SHIFT_PX before its
    start. Their boxes' right and bottom edges are the windows' wherever the scan starts;
    their left and top edges are not (a window hanging off the scan's start is boxed
    HOG_WINDOW_PX wide, one inside it a cell narrower)."""
    return all(
        0 <= box[axis] - start - WINDOW_END_PX <= HOG_CELL_PX * (_cells(end - start) - 3)
        for axis, start, end in ((2, cut[0], cut[2]), (3, cut[1], cut[3]))
    )


def _cells(size: int) -> int:
    """HOG's cells along a side of `size` pixels, as dlib counts them (rounded)."""
    return (size + HOG_CELL_PX // 2) // HOG_CELL_PX


def merged_cuts(cuts: Sequence[Box]) -> list[Box]:
    """`cuts` of a level, those whose span costs less to scan than they do apart (see
    _cut_cost) replaced by it, the best such pair first, until no pair would gain."""
    merged = list(dict.fromkeys(cuts))
    costs = {cut: _cut_cost(cut) for cut in merged}
    while True:
        best, pair = 0.0, None
        for i, a in enumerate(merged):
            for b in merged[i + 1 :]:
                span = _span(a, b)
                gain = costs[a] + costs[b] - _cut_cost(span)
                if gain > best:
                    best, pair = gain, (a, b, span)
        if pair is None:
            return merged
        a, b, span = pair
        merged = [c for c in merged if c not in (a, b)] + [span]
        costs[span] = _cut_cost(span)


def _span(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _cut_cost(cut: Box) -> float:
    """What a dlib scan of `cut` costs, in units of ~1.7 CPU us: fitted on scans of 4 to 64
    cells a side, (rows + 8) x (columns + 12) cells and a fixed ~0.1 ms."""
    rows, cols = (cut[3] - cut[1]) / HOG_CELL_PX, (cut[2] - cut[0]) / HOG_CELL_PX
    return (rows + 8) * (cols + 12) + 50


def _scan(
    pixels: np.ndarray, cut: Box | None, level_detector, threshold: float
) -> list[tuple[float, Box]]:
    """(score, box in the level's pixels) of what HOG finds scoring `threshold` and up in a
    pyramid level's `pixels`, whole or cut to `cut` (its x0 and y0 multiples of HOG's cell,
    so that its cells are the whole level's), best first."""
    x0, y0 = 0, 0
    if cut is not None:
        x0, y0, x1, y1 = cut
        pixels = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    rects, scores, _ = level_detector.run(pixels, 0, threshold)
    return [
        (score, (rect.left() + x0, rect.top() + y0, rect.right() + x0, rect.bottom() + y0))
        for rect, score in zip(rects, scores, strict=True)
    ]


def _level_box_up(box: Box, level: int) -> Box:
    """A box in the pyramid level `level`'s pixels in the finest level's."""
    import dlib

    return _box_of(dlib.pyramid_down(PYRAMID_RATE).rect_up(dlib.rectangle(*box), level))


def boxes_overlap(a: Box, b: Box, thresholds: tuple[float, float]) -> bool:
    """dlib's test_box_overlap on inclusive boxes: the intersection over the box spanning
    both above the first threshold, or over either box above the second."""
    match, covered = thresholds
    inner = _inclusive_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = _inclusive_area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner > match * outer or inner > covered * min(_inclusive_area(a), _inclusive_area(b))


def _inclusive_area(box: Box) -> int:
    return max(0, box[2] - box[0] + 1) * max(0, box[3] - box[1] + 1)


def _one_per_face(found: list[_Found], same: Callable[[Box, Box], bool]) -> list[_Found]:
    """The best-scoring box of each face, best first, as the detector's own search keeps
    them: a box `same` as a better one is dropped. Each of `found` is (score, box, ...)."""
    kept: list[_Found] = []
    for face in sorted(found, key=lambda f: -f[0]):
        if not any(same(face[1], k[1]) for k in kept):
            kept.append(face)
    return kept


def _same_face(a: Box, b: Box) -> bool:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter > SAME_FACE_OVERLAP * (area_a + area_b - inter) or inter > SAME_FACE_COVERED * min(
        area_a, area_b
    )


def _box_of(rect) -> Box:
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


def _grown(box: Box, margin: float, image: np.ndarray) -> Box:
    pad = round(margin * (box[2] - box[0]))
    return _clipped((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), image)


def _inside(inner: Box, outer: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def detect_portrait_face(image: np.ndarray, models: FaceModels) -> list[Box]:
    """The face of a portrait (a reference photo or a face crop): as `detect_faces`, but a
    small crop in which HOG finds nothing is taken as the face itself.

    A face crop shows one face filling the frame, and HOG, which was trained on faces
    with a margin of background around them, can miss exactly such a face; the shape
    predictor then aligns the eyes and nose within the whole crop as it would within a
    detected box. A large photo gets no such benefit of the doubt.
    """
    boxes = detect_faces(image, models)
    height, width = image.shape[:2]
    if boxes or max(height, width) > CROP_LONG_SIDE or min(height, width) < MIN_FACE_PX:
        return boxes
    return [(0, 0, width, height)]


def embed_face(image: np.ndarray, box: Box, models: FaceModels) -> np.ndarray:
    """The 128-d descriptor of the face in `box` (see embed_faces)."""
    return embed_faces(image, [box], models)[0]


def embed_faces(image: np.ndarray, boxes: Sequence[Box], models: FaceModels) -> np.ndarray:
    """The 128-d descriptors, (faces, 128), of the faces in `boxes`, each aligned by its 5
    landmarks, described in one batch."""
    if not boxes:
        return np.zeros((0, 128), np.float32)
    chips = [face_chip(image, box, models) for box in boxes]
    return models.descriptor.describe(chips).astype(np.float32)


def face_chip(image: np.ndarray, box: Box, models: FaceModels) -> np.ndarray:
    """The face in `box` aligned by its 5 landmarks as dlib's ResNet takes it, grey or RGB
    as `image` is. Only a region around the face is cut out. A grey chip is the RGB one
    of the grey image, channel for channel (dlib's landmarks read a pixel's mean), at 0.6
    of its CPU with the conversion (faces-dev: the same descriptors)."""
    import dlib

    x0, y0, x1, y1 = box
    pad = max(x1 - x0, y1 - y0) // 2
    rx0, ry0 = max(0, x0 - pad), max(0, y0 - pad)
    region = np.ascontiguousarray(image[ry0 : y1 + pad, rx0 : x1 + pad])
    rect = dlib.rectangle(x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0)
    return dlib.get_face_chip(region, models.shape(region, rect), CHIP_SIZE, CHIP_PADDING)


def find_faces(image: np.ndarray, factor: int, models: FaceModels) -> tuple[FaceSeen, ...]:
    """Every identifiable face of a photo decoded at 1/`factor`, boxes in full-size pixels."""
    boxes = detect_faces(image, models)
    return tuple(
        face_seen(tuple(v * factor for v in box), embedding)
        for box, embedding in zip(boxes, embed_faces(image, boxes, models), strict=True)
    )


def portrait_face(image: np.ndarray, models: FaceModels) -> FaceSeen | None:
    """The face of a reference photo (its largest), or None when it shows none."""
    boxes = detect_portrait_face(image, models)
    return face_seen(boxes[0], embed_face(image, boxes[0], models)) if boxes else None


def face_seen(box: Sequence[int], embedding: np.ndarray) -> FaceSeen:
    return FaceSeen(
        box=tuple(int(v) for v in box),
        embedding=tuple(round(float(v), EMBEDDING_DECIMALS) for v in embedding),
    )


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` scaled for HOG: bilinear down to half size (as HOG's own pyramid steps are;
    INTER_AREA at such non-integer scales costs ~20 CPU ms from a 3:2 12 MP or a 24 MP
    decode, bilinear 3 to 4), averaging pixels below that, where bilinear would skip them."""
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _clipped(box: Sequence[int], image: np.ndarray) -> Box:
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    return (max(0, x0), max(0, y0), min(width, x1), min(height, y1))


# -------------------------------------------------------------------------- gallery, match


@dataclass(frozen=True)
class Gallery:
    """Known face descriptors, each labelled with the athlete's bib."""

    bibs: tuple[str, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 128), np.float32))

    @staticmethod
    def of(entries: Iterable[tuple[str, Sequence[float]]]) -> Gallery:
        entries = sorted((bib, tuple(v)) for bib, v in entries)
        if not entries:
            return Gallery()
        return Gallery(
            bibs=tuple(bib for bib, _ in entries),
            vectors=np.asarray([v for _, v in entries], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.bibs)

    def athletes(self) -> frozenset[str]:
        return frozenset(self.bibs)

    def nearest(self, embedding: Sequence[float]) -> list[tuple[str, float]]:
        """(bib, distance of the athlete's nearest descriptor), nearest athlete first."""
        if not self.bibs:
            return []
        distances = np.linalg.norm(self.vectors - np.asarray(embedding, np.float32), axis=1)
        best: dict[str, float] = {}
        for bib, d in zip(self.bibs, distances.tolist(), strict=True):
            best[bib] = min(d, best.get(bib, math.inf))
        return sorted(best.items(), key=lambda item: (item[1], item[0]))


@dataclass(frozen=True)
class FaceMatch:
    """What the gallery says about one face."""

    bib: str | None  # the athlete, when the match is sure; None otherwise
    distance: float  # to the nearest athlete (inf for an empty gallery)
    margin: float  # second-nearest athlete's distance minus the nearest's
    confidence: float  # calibrated: how likely `bib` (or the best candidate) is right
    candidates: tuple[str, ...]  # the athletes worth showing an official, nearest first


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def match_confidence(distance: float, margin: float, threshold: float) -> float:
    """How likely the nearest athlete is the right one, from distance and margin.

    dlib's descriptors put the same person below 0.6 and another above it, with the two
    distributions overlapping over about 0.1; a logistic of that width in (threshold -
    distance) gives 0.5 at the threshold and ~0.88 0.1 under it. A second athlete almost
    as near halves it (margin 0 gives 0), a clear margin leaves it whole. Capped below a
    clear bib read, which wins where the two disagree.
    """
    if not math.isfinite(distance):
        return 0.0
    near = _logistic((threshold - distance) / CONFIDENCE_WIDTH)
    apart = 1.0 if math.isinf(margin) else 2.0 * _logistic(margin / CONFIDENCE_WIDTH) - 1.0
    return round(min(MAX_FACE_CONFIDENCE, near * apart), 4)


def match_face(
    embedding: Sequence[float],
    gallery: Gallery,
    threshold: float = DEFAULT_THRESHOLD,
    margin: float = DEFAULT_MARGIN,
) -> FaceMatch:
    """The athlete whose face this is, if the gallery is sure: nearest under `threshold`
    and nearer than every other athlete by at least `margin`."""
    ranked = gallery.nearest(embedding)
    if not ranked:
        return FaceMatch(None, math.inf, math.inf, 0.0, ())
    best_bib, best = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else math.inf
    gap = second - best
    candidates = tuple(bib for bib, d in ranked[:3] if d < threshold + margin)
    confidence = match_confidence(best, gap, threshold)
    sure = best < threshold and gap >= margin
    return FaceMatch(best_bib if sure else None, best, gap, confidence, candidates)


# ----------------------------------------------------------------------------- association


def _centre(box: Sequence[int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def bib_face_cost(bib_box: Sequence[int], face_box: Sequence[int]) -> float | None:
    """How far a bib is from where the face's runner wears one (in face sizes), or None
    when the bib cannot be that runner's: not below the face, or too far to the side."""
    fx, fy = _centre(face_box)
    bx, by = _centre(bib_box)
    width = max(1, face_box[2] - face_box[0])
    height = max(1, face_box[3] - face_box[1])
    down = (by - fy) / height
    side = abs(bx - fx) / width
    low, high = BIB_BELOW_FACE_HEIGHTS
    if not low <= down <= high or side > BIB_BESIDE_FACE_WIDTHS:
        return None
    return math.hypot(side, down / high)


def associate(
    bib_boxes: Sequence[Sequence[int]], face_boxes: Sequence[Sequence[int]]
) -> dict[int, int]:
    """bib index -> face index, for the bibs tied to exactly one face without doubt.

    Each bib goes to the face above it with the lowest cost; a bib near two faces whose
    costs are within ASSOCIATION_RATIO of each other, or two bibs that want the same face,
    stay untied: an ambiguous pair must neither enrol a face nor credit a bib to it.
    """
    choice: dict[int, int] = {}
    for b, bib_box in enumerate(bib_boxes):
        costs = sorted(
            (cost, f)
            for f, face_box in enumerate(face_boxes)
            if (cost := bib_face_cost(bib_box, face_box)) is not None
        )
        if costs and (len(costs) == 1 or costs[1][0] >= ASSOCIATION_RATIO * costs[0][0]):
            choice[b] = costs[0][1]
    taken = list(choice.values())
    return {b: f for b, f in choice.items() if taken.count(f) == 1}


def enrolments(
    bibs: Sequence[BibSeen], faces: Sequence[FaceSeen], known: frozenset[str], threshold: float
) -> list[tuple[str, tuple[float, ...]]]:
    """(bib, face descriptor) for each confident read of a listed bib tied to one face."""
    reads = [r for r in bibs if r.bib in known and r.confidence >= threshold]
    tied = associate([r.box for r in reads], [f.box for f in faces])
    return [(reads[b].bib, faces[f].embedding) for b, f in sorted(tied.items())]


def untied_faces(bibs: Sequence[BibSeen], faces: Sequence[FaceSeen]) -> list[FaceSeen]:
    """The faces of a photo that no read bib is tied to: those the gallery must name."""
    tied = set(associate([r.box for r in bibs], [f.box for f in faces]).values())
    return [face for i, face in enumerate(faces) if i not in tied]


# ------------------------------------------------------------------------------ Beam shells


def reference_photos(athletes: Iterable[Athlete], start_list_file: str) -> list[tuple[str, str]]:
    """(bib, path) of each athlete's reference photo, relative paths read from the start
    list's folder."""
    folder = posixpath.dirname(start_list_file)
    return [
        (
            a.bib,
            a.photo
            if posixpath.isabs(a.photo) or "://" in a.photo
            else posixpath.join(folder, a.photo),
        )
        for a in athletes
        if a.photo
    ]


# Descriptors of reference photos by path (None: no face), per process: the live mode
# builds the gallery again at every update, and a zygote loads them for its workers.
_reference_faces: dict[str, tuple[float, ...] | None] = {}


def reference_face(path: str) -> tuple[float, ...] | None:
    """The descriptor of the face on a reference photo; None when the photo cannot be read
    or shows no face (logged with its path: descriptors never go to logs). Kept per
    process, and on disk by the photo's content (`reference_cache`): finding and describing
    a start list's faces cost every run ~0.1 CPU s a photo."""
    if path not in _reference_faces:
        _reference_faces[path] = _reference_lookup(path, search=True)[0]
    return _reference_faces[path]


def load_kept_reference(path: str) -> bool:
    """Whether the descriptor of the reference photo at `path` is kept on disk; if so, it is
    loaded as `reference_face` loads it (the photo read once), and never searched for."""
    kept = _reference_lookup(path, search=False)
    if kept is not None:
        _reference_faces[path] = kept[0]
    return kept is not None


def forget_reference_faces() -> None:
    """Empties this process's descriptors (those kept on disk stay)."""
    _reference_faces.clear()


def _reference_lookup(path: str, search: bool) -> tuple[tuple[float, ...] | None] | None:
    """(the descriptor of the reference photo at `path`, None for no face): the one kept on
    disk, else with `search` the one found (and kept); None where none is kept and not
    `search`."""
    from transforms.photos import read_bytes  # photos imports this module

    try:
        data = read_bytes(path)
    except (BeamIOError, OSError):
        data = b""  # not kept: the file may be readable next time
    cache = reference_cache(data) if data else None
    looked_up = _stored_reference(cache) if cache else None
    if looked_up is None and search:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
        found = None if image is None else portrait_face(image, face_models())
        looked_up = (None if found is None else found.embedding,)
        if cache:
            _store_reference(cache, looked_up[0])
    if looked_up == (None,):
        log.warning("no face found on reference photo %s", path)
    return looked_up


def reference_cache(data: bytes) -> str:
    """Where the descriptor of a reference photo with these bytes is kept: in `cache_dir()`,
    by the analysis version (a change to finding or describing faces bumps it) and the
    bytes' SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    return os.path.join(cache_dir(), "reference-faces", f"v{ANALYSIS_VERSION}", f"{digest}.json")


def _stored_reference(path: str) -> tuple[tuple[float, ...] | None] | None:
    """(the descriptor kept at `path`, None for no face); None where none is kept (or a
    damaged one, found again)."""
    try:
        with open(path, "rb") as f:
            face = json.loads(f.read())["embedding"]
        return (None if face is None else tuple(float(v) for v in face),)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_reference(path: str, face: tuple[float, ...] | None) -> None:
    keep(path, json.dumps({"embedding": face}).encode())


def photo_enrolments(
    photo: Photo, known: frozenset[str], threshold: float
) -> list[tuple[str, tuple[float, ...]]]:
    """What one timed photo adds to the gallery; duplicates and rejects (their status already
    set) teach it nothing new."""
    faces = (photo.facts.faces or ()) if photo.status is None else ()
    return enrolments(photo.facts.bibs, faces, known, threshold)


def gallery_of(
    photos: Iterable[Photo],
    references: Sequence[tuple[str, str]],
    known: frozenset[str],
    threshold: float,
) -> Gallery:
    """BuildGallery without a pipeline (for the live mode's in-process timing)."""
    entries = [(bib, v) for bib, path in references if (v := reference_face(path)) is not None]
    entries += [e for p in photos for e in photo_enrolments(p, known, threshold)]
    return Gallery.of(entries)


class _EmbedReference(beam.DoFn):
    """(bib, reference photo path) -> (bib, descriptor); photos without a face are skipped.
    No models loaded in setup: reference_face loads them for a photo not in its cache."""

    def __init__(self) -> None:
        self._unusable = Metrics.counter("racelens", "reference_photos_unusable")

    def process(self, element: tuple[str, str]) -> Iterator[tuple[str, tuple[float, ...]]]:
        bib, path = element
        embedding = reference_face(path)
        if embedding is not None:
            yield bib, embedding
        else:
            self._unusable.inc()


class _EnrolFaces(beam.DoFn):
    """Photo -> (bib, descriptor) for each face tied to a confident read of its bib."""

    def __init__(self, known: frozenset[str], threshold: float):
        self._known = known
        self._threshold = threshold
        self._enrolled = Metrics.counter("racelens", "faces_enrolled")

    def process(self, photo: Photo) -> Iterator[tuple[str, tuple[float, ...]]]:
        for entry in photo_enrolments(photo, self._known, self._threshold):
            self._enrolled.inc()
            yield entry


def _gallery_of_gathered(entries: Iterable[tuple[str, Sequence[float]] | None]) -> Gallery:
    return Gallery.of(e for e in entries if e is not None)  # None: the streaming seed


class BuildGallery(beam.PTransform):
    """Photos -> one Gallery (a singleton for a side input): the faces of the start list's
    reference photos plus the faces above the race's own confident bib reads.

    In a streaming run the gallery grows as photos arrive: it is published again each time
    `republish` fires (every few seconds of processing time, say), each time whole
    (accumulating), and a side input sees its latest firing. A seed makes the first firing
    carry a gallery even for a race without reference photos, since a side input holds
    back its main input until its first pane.
    """

    def __init__(
        self,
        references: Sequence[tuple[str, str]],
        known: frozenset[str],
        threshold: float,
        republish: trigger.TriggerFn | None = None,
    ):
        super().__init__()
        self._references = list(references)  # (bib, reference photo path)
        self._known = known
        self._threshold = threshold
        self._republish = republish

    def expand(self, photos: beam.PCollection) -> beam.PCollection:
        enrolled = photos | "EnrolFaces" >> beam.ParDo(_EnrolFaces(self._known, self._threshold))
        references = (
            photos.pipeline
            # A few paths: reshuffling them (Beam's default) is a stage more, for nothing.
            | "ReferencePhotos" >> beam.Create(self._references, reshuffle=False)
            | "ReferenceFaces" >> beam.ParDo(_EmbedReference())
        )
        if self._republish is None:
            return (
                (references, enrolled)
                | "AllFaces" >> beam.Flatten()
                | "Global" >> beam.WindowInto(beam.window.GlobalWindows())
                | "Gather" >> beam.combiners.ToList()
                | "Gallery" >> beam.Map(Gallery.of)
            )
        seed = photos.pipeline | "Seed" >> beam.Create([None])
        return (
            (seed, references, enrolled)
            | "AllFaces" >> beam.Flatten()
            | "Republished"
            >> beam.WindowInto(
                beam.window.GlobalWindows(),
                trigger=self._republish,
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
            )
            | "Gather" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
            | "Gallery" >> beam.Map(_gallery_of_gathered)
        )
