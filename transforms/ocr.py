"""Find race bib numbers on a photo and read them with PP-OCR or tesseract.

Two stages:

1. Region finding, pure OpenCV/numpy on a grayscale copy at a working resolution. For both
   polarities (dark digits on a light bib, light digits on a dark bib) and four adaptive
   threshold windows, connected components with digit-like geometry are chained into text
   lines of 2-5 characters, ranked by how bib-like their background is (contrast over
   spread) times how many binarisations found them; the same line found by several
   binarisations is kept once, in its longest version.
2. Reading, by the engine RACELENS_OCR_ENGINE names (default "auto": PP-OCR where
   rapidocr-onnxruntime is installed, else tesseract):
   - ppocr: each line is cut from the full-resolution grey image with some room around it
     and PP-OCRv4's recogniser (transforms.ppocr) reads the crops in small batches. It
     reads real bibs far better than tesseract (bench/bib_eval.py), so the region finder
     may hand it looser candidates; a crop of a word or a clock reads as such and is
     rejected by the digit rules (transforms.bibs).
   - tesserocr / pytesseract: each line is deskewed, binarised to black digits on white
     and rescaled to two digit heights; all crops are stacked into one page, so tesseract
     (transforms.tesseract) runs once per photo. Only lines on a clearly uniform background
     are read: tesseract reads clutter as digits. Words are mapped back to their crop by
     vertical position, and the confidence is discounted when the read disagrees with the
     region (a digit count the line's glyphs cannot hold, a split number) or when the two
     views of a region read differently.

Reads then pass the bib rules, or the start list as a dictionary where one is given
(transforms.bibs): the same code serves `racelens bibs --start-list` and the pipeline.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple

import cv2
import numpy as np

from transforms.bibs import StartList, bib_digits, bib_span
from transforms.ppocr import LineRead, recogniser
from transforms.tesseract import default_engine, engine_name

# Working resolution for region finding: large photos are shrunk (speed; 1600 px photos are
# halved, which OpenCV does fastest), tiny crops of a single bib are enlarged so that their
# digits span enough pixels to binarise cleanly.
WORK_MAX_SIDE = 800
WORK_MIN_SIDE = 160

# Digit components, in working pixels and relative units.
MIN_DIGIT_HEIGHT = 8
MAX_DIGIT_HEIGHT_FRACTION = 0.8  # of the working image's shorter side
# Width / height: "1" can be a thin bar; above 1 are digits that touch (thick fonts, blur).
DIGIT_ASPECT = (0.12, 3.2)
# Width / height of one digit, narrowest and widest: how many touching digits a wide
# component can hold. A lone "1" can be narrower; it still counts as one.
ONE_DIGIT_ASPECT = (0.45, 0.95)
DIGIT_FILL = (0.15, 0.95)  # component pixels / bounding box area

# Grana's block-based labelling numbers the components as OpenCV's default (Spaghetti) does,
# the same labels and stats, at 0.6 of its CPU time on the threshold images of 12 MP photos:
# labelling is half the region finding's cost (bench/perf.py's photos, 10 calls a photo).
LABELLING = cv2.CCL_GRANA
# Its labels as 16-bit integers where they provably fit: labelling with stats costs 0.78x the
# CPU of 32-bit labels on the 800 px binaries of 12 MP photos (half the bytes written). On one
# thread Grana's first scan gives a 2x2 block at most one new provisional label, and only a
# block holding ink; on several, each stripe numbers its blocks from the count of all blocks
# above it. So a binary with fewer blocks than this, or on one thread fewer blocks holding
# ink, fits: OpenCV 5 raises on a label that does not, older versions may wrap it silently.
LABELS_16U = np.iinfo(np.uint16).max

# Chaining components into a line.
MAX_HEIGHT_RATIO = 1.2
MAX_CENTRE_SHIFT = 0.35  # vertical, of the pair's mean height: bibs tilt up to ~15 degrees
GAP_RANGE = (-0.15, 0.7)  # horizontal gap between neighbours, relative to their height
MAX_LINE_CHARS = 5

# A thin bar ending a line may be the bib's edge: then the far side differs from the paper.
BAR_ASPECT = 0.3
EDGE_PROBE = 0.2  # width of the strips compared either side of the bar, of its height
EDGE_CHANGE = 0.5  # far side differs from the paper by this share of the ink contrast

SIDE_MARGIN = 0.25  # background beside the line's ends, relative to digit height

# Adaptive threshold windows, as fractions of the working image's shorter side. A window
# must be larger than a stroke (else thick digits are hollowed out) but not much larger
# than a digit (else a dark shirt around a small bib drags the mean below thin strokes),
# so small, medium and close-up digits each get their own. The smallest is for bibs of
# 15-20 px digits with thin strokes, which 1/24 (as large as such a digit at 800 px) breaks
# up or merges with the bib's edge: with it and the votes of _suppress_duplicates, bibs-dev
# at 12 MP, tuning half, has 42 of 46 bibs among the first 16 lines (was 36).
BLOCK_FRACTIONS = (1 / 48, 1 / 24, 1 / 8, 1 / 3)
# Windows this large look for large digits, which the working image halved still holds
# whole: searched there, they cost a quarter.
HALVED_FROM = 1 / 8
MIN_BLOCK = 11
ADAPTIVE_OFFSET = 8  # grey levels a pixel must differ from its neighbourhood mean

# Digits that touch what lies around them (the bib's shadowed edge, a logo band above the
# number, the shirt) join it into a blob no digit filter accepts. The small windows are
# searched again with the dark ink cut to the light paper around it: the paper's mask closed
# over the digits (a window of PAPER_CLOSE times the threshold window), then shrunk by
# PAPER_ERODE px, which severs what reaches in from beyond the paper. Dark digits only: most
# bibs print them, and light digits on a dark bib, searched the same way, found no more
# bibs on bibs-dev. bibs-dev, first 8 lines: 89 of 100 bibs (87 without).
PAPER_MAX_BLOCK = 1 / 20  # of the searched image's short side: the windows of 1/48 and 1/24
PAPER_CLOSE = 0.5
PAPER_ERODE = 2
PAPER_RANK = 8
PAPER_SAME_HEIGHT = 1.5  # a paper line this much shorter than a found line on it is its part

# The torso below a face (torso_lines): half its width and its top and bottom below the
# chin, in face widths and heights; the face's height it is searched at; lines kept.
# torso_reads needs faces, so the pipeline runs it only with face matching on, below the
# faces its faces stage found. bibs-dev with its labelled faces: 92 of 100 bibs at >= 0.75
# with the start list (89 without), none wrong (bench/bib_eval.py --torso labelled); as 12 MP
# JPEGs with the pipeline's faces, recall 0.880 -> 0.900 (--megapixels 12 --torso pipeline).
TORSO = (1.5, 0.5, 4.5)
TORSO_FACE_PX = 48
TORSO_LINES = 2

_NEIGHBOURS = np.ones((3, 3), np.uint8)  # a pixel's 8 neighbours and itself

REGION_PAD = 0.15  # padding of returned boxes, relative to line height

# The page for tesseract: every region becomes two text lines, one per digit height.
# Tesseract's misreads depend on scale and on the page around a line (a flat-topped 3 read
# as 5 in one view only), so a number both views agree on is trustworthy. Views much
# smaller than 40 px lose "1"s among larger lines.
OCR_DIGIT_HEIGHTS = (48, 56)
OCR_SIDE_PAD = 1.5  # crop margin left and right of a line, relative to its height
OCR_TOP_PAD = 0.5  # crop margin above and below a line, relative to its height
MIN_SKEW_DEG = 1.0  # lines tilted less are not rotated
MIN_PIECE = 0.4  # of a digit's height: smaller ink within the line is noise, not a digit's part
LINE_BAND = 0.65  # ink kept within this many digit heights above and below the line centre
DIGIT_ALIGNMENT = 0.2  # beside the line: a digit's top and bottom within this of the line's
MIN_SIDE_DIGIT_WIDTH = 0.15  # beside the line: thinner is a bib edge (a "1" has a flag)
OCR_MARGIN = 24  # white around the page
OCR_LINE_GAP = 40  # white between crops, so that tesseract never merges two lines

# PP-OCR crops: room around the line (sideways, above and below), relative to its height.
# More room sideways for every line lets clutter in (bibs-dev with a start list at 0.75:
# 2.0 line heights, R 0.870 -> 0.810), so only a number read against its crop's side is
# followed further: where it ends within FURTHER_WHEN line heights of a side the photo goes
# on beyond, that side is widened by FURTHER along the line's tilt, at most FURTHER_ROUNDS
# times (bib-crops-dev, whose line finder often misses a digit fused with its neighbour or
# the bib's edge: S0847 read "084", T4012 as "401" and "012", S0711 as "711"; with a start
# list at 0.75 R 0.696 -> 0.758, P 0.944 -> 0.980; bibs-dev unchanged).
PP_VIEW = (1.0, 0.15)
FURTHER_WHEN = 0.75
FURTHER = 1.5
FURTHER_ROUNDS = 2
# A line whose crop holds READ_PLACE of a line already read as a bib at SURELY_READ or more
# is not read: it reads that bib again, a part of it or its edge, and the better read in one
# place stands anyway (match_start_list). Bibs-dev at 12 MP: 22 of 862 lines, every
# bench/bib_eval.py figure the same on its five sets.
SURELY_READ = 0.97
READ_PLACE = 0.5
# A weak read is read again from a tighter crop (half a digit height of room): the
# recogniser's doubt often comes from what lies beside the number (the bib's edge, a fold).
# Where both views read the same number, its doubt is the product of theirs (tuning half of
# bibs-dev: one bib more over 0.75, none wrong; bib-crops-dev, another race: 21 more, 3 wrong).
PP_SECOND_VIEW = (0.5, 0.15)
# A line tilted more than STRAIGHTEN_DEG is turned level before it is read (_cut), with
# STRAIGHT_ROOM of its own height above and below: the recogniser reads level text, and on a
# bib tilted by some 20 degrees drops an end digit and is sure of the rest (bibs-dev as 12 MP
# JPEGs: 1463 read as 463 at 1.00 and as 163 at 0.82; with the start list at 0.75 and the
# label omissions P 0.968 R 0.867 -> P 0.989 R 0.876; at the photos' size R 0.886 -> 0.895).
# Lines tilted less read as well as they are (straightened from 5 degrees: 12 MP R 0.857).
# A level crop's bib edges stand upright like a "1": with 0.15 of room, the edge beside a
# 979 was read as 1979 at 0.81; PP-OCR's own detector leaves more room around its lines.
STRAIGHTEN_DEG = 10.0
STRAIGHT_ROOM = 0.3

BIB_DIGITS = (2, 5)
MISMATCH_FACTOR = 0.6  # confidence kept when the digit count does not fit the glyphs
SPLIT_FACTOR = 0.7  # confidence kept when tesseract splits a region into several words
DISAGREEMENT_FACTOR = 0.6  # confidence kept when a region's views read differently


@dataclass(frozen=True)
class Candidates:
    """Which lines go to the reader: those on a bib-like background, the most bib-like first."""

    min_contrast: float  # grey levels between digit and background medians
    max_spread: float  # background's interquartile range relative to the contrast
    max_regions: int  # per photo; bounds reading time on cluttered scenes


# Tesseract reads clutter as confident digits: only lines whose digits sit on a uniform
# background with clear contrast (a bib) are worth its time.
STRICT = Candidates(min_contrast=35.0, max_spread=0.35, max_regions=24)
# PP-OCR reads clutter as clutter, so it gets any digit line, the most bib-like first (red
# digits on a creased bib, a bib in shadow fail the strict rule). Reading costs most of the
# time, in proportion to the lines read, so the best PP_FIRST_LINES are read, and the rest
# only on a photo where those gave no sure read (tuning half of bibs-dev: the bibs read from
# all lines are 43, in the best 8 lines 41, in the best 16 all 43).
LOOSE = Candidates(min_contrast=1.0, max_spread=float("inf"), max_regions=16)
PP_FIRST_LINES = 8
# Where faces were found on the photo (read_bibs' faces), the torso pass (torso_reads) reads
# next below each face without a sure read, at the face's scale, where the runners' bibs that
# the whole photo's ranking puts low are found: so the whole photo's best
# PP_FIRST_LINES_BEFORE_TORSO lines are read first, not PP_FIRST_LINES (the rest still one at
# a time where they give no sure read), and a photo without faces reads as before. bibs-dev
# as 12 MP JPEGs with the pipeline's faces, after the torso pass, with the start list and the
# label omissions at 0.75: P 0.990 R 0.914 with 2 to 8 first lines (1: R 0.905); with 3, 4
# and 6 every figure after the torso pass is 8 lines' (2 and 5: fewer false reads without
# the start list); 6.4 recogniser calls a photo with 3 lines, 9.6 with 8 (session 15).
PP_FIRST_LINES_BEFORE_TORSO = 3
SURE_READ = 0.75  # the default review threshold: a read the pipeline would confirm
# Probability of a separator (":", ".") between two digits from which a number is a time.
# Measured on the line reads at 0.5 or more of bibs-dev and bib-crops-dev: none of 500 right
# reads reaches 0.03; five reads of a race clock on bibs-dev reach 0.13-0.45, and one of the
# same clock on bibs-dev as 12 MP JPEGs 0.096.
UNREAD_SEPARATOR = 0.05
# Probability of a letter in a number's first digit's place from which that digit may be a
# prefix letter read as a digit ("S0424" read "80424", "T2135" read "12135"): the read then
# also stands for its other digits, which a start list settles (transforms.bibs.listed_bib).
# Measured on the line reads of bib-crops-dev: 82 of 85 prefix letters read as digits reach
# it (median 0.09), 12 of 312 leading digits that are a bib's (median 0.0002).
PREFIX_EVIDENCE = 0.01
# A line whose box overlaps a face found on the photo (faces on) by this share of the
# smaller box is not read: eyes, brows, mouths and heads chained into digit lines read as
# junk, never as a bib (bench/perf.py's 12 MP photos: 44 of the 220 lines read, 20 %, on
# faces, none a bib; bibs-dev as 12 MP JPEGs: 56 of the best 16 lines of its 92 photos, two
# reads, both wrong, "129" at 0.12 and "66" at 0.41).
FACE_LINE = 0.5
# Two reads whose boxes overlap by this share of the smaller are one bib read twice.
SAME_PLACE = 0.1


@dataclass(frozen=True)
class BibRead:
    """One bib number read on a photo."""

    bib: str  # digits only, e.g. "1234"
    confidence: float  # 0..1
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the given image's pixels
    # The confidence of the bib without its first digit, which may be a prefix letter read
    # as a digit (PREFIX_EVIDENCE); 0.0 where nothing says so.
    unprefixed: float = 0.0


@dataclass(frozen=True)
class _Line:
    """A candidate bib number line, in working-image pixels."""

    components: np.ndarray  # (n, 4) float: x, y, w, h of each character, left to right
    dark_digits: bool
    # Contrast over background spread, times digits beyond one, times the binarisations that
    # found the line (_suppress_duplicates): the most bib-like first.
    score: float

    @cached_property
    def box(self) -> tuple[float, float, float, float]:
        # 2-5 rows: Python's min and max over them cost a fifth of numpy's four reductions,
        # and _suppress_duplicates asks for the boxes of ~150 lines a photo.
        xs, ys, ws, hs = self.components.T.tolist()
        return min(xs), min(ys), max(map(operator.add, xs, ws)), max(map(operator.add, ys, hs))

    @cached_property
    def fewest_chars(self) -> int:
        """The fewest characters the line can hold (_char_range's first), in Python floats:
        _fewest_chars' numbers (round, as np.rint, rounds halves to even) at ~0.4 of its
        cost on 2-5 rows, for the ~90 lines a photo that _suppress_duplicates sorts."""
        return sum(
            max(1, round(w / h / ONE_DIGIT_ASPECT[1])) for _, _, w, h in self.components.tolist()
        )

    @cached_property
    def digit_height(self) -> float:
        return float(statistics.median(self.components[:, 3].tolist()))

    @cached_property
    def angle_deg(self) -> float:
        """Slope of the least-squares line through the character centres.

        From the centres' sums in Python floats: the whole photo's centres are multiples of a
        half, so there the sums are exact and the slope their one rounded quotient (np.polyfit's
        SVD strayed from it by up to 7e-11 degrees on bibs-dev's lines). np.polyfit cost ~200 us
        a line in the pipeline, where LAPACK's code is cold after the recogniser's runs; this
        ~5 us.
        """
        centres = [(x + w / 2, y + h / 2) for x, y, w, h in self.components.tolist()]
        xs, ys = [x for x, _ in centres], [y for _, y in centres]
        if len(set(xs)) == 1:  # one column of centres: no slope, np.polyfit settles it
            return float(np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0])))
        n, sx, sy = len(xs), sum(xs), sum(ys)
        sxy, sxx = sum(map(operator.mul, xs, ys)), sum(map(operator.mul, xs, xs))
        return float(np.degrees(np.arctan((n * sxy - sx * sy) / (n * sxx - sx * sx))))


@dataclass(frozen=True)
class _Read:
    """A bib number read on one candidate line."""

    bib: str
    confidence: float
    line: _Line
    unprefixed: float = 0.0  # as BibRead's


class _Bib(NamedTuple):
    """The bib number on a recognised line."""

    bib: str
    confidence: float  # its digits' weakest probability
    unprefixed: float  # as BibRead's


@dataclass(frozen=True)
class _Crop:
    """A line's OCR crop, and what its wider view shows beside the line."""

    pixels: np.ndarray  # black digits on white
    side_digits: int  # whole digits beside the line, kept for tesseract to read


@dataclass(frozen=True)
class _Word:
    """A word tesseract read on the page of crops."""

    text: str
    confidence: float  # 0..1
    left: int
    centre_y: float


def _to_gray(image_bgr: np.ndarray) -> np.ndarray:
    """Grayscale view of a BGR (or already grayscale) uint8 image; ValueError otherwise."""
    if not isinstance(image_bgr, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image_bgr).__name__}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image_bgr.dtype}")
    if image_bgr.ndim not in (2, 3) or (image_bgr.ndim == 3 and image_bgr.shape[2] != 3):
        raise ValueError(
            f"expected a 2-D grayscale or HxWx3 BGR image, got shape {image_bgr.shape}"
        )
    if image_bgr.size == 0:
        raise ValueError(f"expected a non-empty image, got shape {image_bgr.shape}")
    if image_bgr.ndim == 2:
        return image_bgr
    return cv2.cvtColor(np.ascontiguousarray(image_bgr), cv2.COLOR_BGR2GRAY)


def _work_scale(height: int, width: int) -> float:
    """Resize factor for region finding; enlarging stops at WORK_MAX_SIDE (thin strips)."""
    shrink = min(1.0, WORK_MAX_SIDE / max(height, width))
    enlarge = min(WORK_MIN_SIDE / min(height, width), WORK_MAX_SIDE / max(height, width))
    return max(shrink, enlarge)


def _binarise(gray: np.ndarray, block: int) -> dict[bool, np.ndarray]:
    """Pixels clearly darker (True: dark digits) and lighter than their neighbourhood mean.

    What cv2.adaptiveThreshold's mean method gives for each polarity (the same box-filtered
    mean, and a pixel ADAPTIVE_OFFSET or more below it, or more than that above it), from
    one mean for both, by saturating differences: 0.35 of the CPU of two such calls.
    """
    mean = cv2.boxFilter(
        gray, -1, (block, block), borderType=cv2.BORDER_REPLICATE | cv2.BORDER_ISOLATED
    )
    darker = cv2.threshold(cv2.subtract(mean, gray), ADAPTIVE_OFFSET - 1, 255, cv2.THRESH_BINARY)
    lighter = cv2.threshold(cv2.subtract(gray, mean), ADAPTIVE_OFFSET, 255, cv2.THRESH_BINARY)
    return {True: darker[1], False: lighter[1]}


def _digit_components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label image and (n, 5) rows of x, y, w, h, label of components shaped like a digit."""
    _, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        binary, 8, _label_type(binary), LABELLING
    )
    # Most components are specks lower than a digit: the shape is measured on the rest.
    heights = stats[1:, 3]
    tall = np.flatnonzero(
        (heights >= MIN_DIGIT_HEIGHT) & (heights <= MAX_DIGIT_HEIGHT_FRACTION * min(binary.shape))
    )
    shapes = stats[tall + 1].astype(np.float64)
    _, _, w, h, area = shapes.T
    aspect = w / h
    fill = area / (w * h)
    keep = (
        (aspect >= DIGIT_ASPECT[0])
        & (aspect <= DIGIT_ASPECT[1])
        & (fill >= DIGIT_FILL[0])
        & (fill <= DIGIT_FILL[1])
    )
    rows = shapes[keep]
    rows[:, 4] = tall[keep] + 1  # the label in place of the area: one copy, not five stacked
    return labels, rows


def _label_type(binary: np.ndarray) -> int:
    """CV_16U where the binary's labels fit in 16 bits whatever it holds, or on one thread
    for what it holds (LABELS_16U); CV_32S otherwise."""
    height, width = binary.shape
    if ((height + 1) // 2) * ((width + 1) // 2) < LABELS_16U:
        return cv2.CV_16U
    if cv2.getNumThreads() == 1 and _ink_blocks(binary) < LABELS_16U:
        return cv2.CV_16U
    return cv2.CV_32S


def _ink_blocks(binary: np.ndarray) -> int:
    """How many of the binary's 2x2 blocks (from its top left, padded) hold ink: each pair of
    rows joined, each pair of their bytes read as one 16-bit number (~70 us on 800 px)."""
    height, width = binary.shape
    even = cv2.copyMakeBorder(binary, 0, height % 2, 0, width % 2, cv2.BORDER_CONSTANT, value=0)
    rows = cv2.bitwise_or(even[0::2], even[1::2])
    return int(np.count_nonzero(rows.view(np.uint16)))


def _char_range(components: np.ndarray) -> tuple[int, int]:
    """Fewest and most characters a line can hold, a wide component being touching digits."""
    aspect = components[:, 2] / components[:, 3]
    most = np.maximum(1, np.floor(aspect / ONE_DIGIT_ASPECT[0])).sum()
    return int(_fewest_chars(components).sum()), int(most)


def _fewest_chars(components: np.ndarray) -> np.ndarray:
    """The fewest characters each component can hold (a wide one being touching digits)."""
    return np.maximum(1, np.rint(components[:, 2] / components[:, 3] / ONE_DIGIT_ASPECT[1]))


def _smallest_member(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Each of n nodes labelled with the smallest node it is linked to through pairs (i, j).

    A line has a handful of links (16 per call on bibs-dev's photos), so spreading the
    smallest label with pointer jumping settles in a few rounds: eight times cheaper
    than building a sparse graph for scipy's connected components, which the 10 calls
    per photo paid 2-3 ms for.
    """
    group = np.arange(n)
    while True:
        low = np.minimum(group[i], group[j])
        spread = group.copy()
        np.minimum.at(spread, i, low)
        np.minimum.at(spread, j, low)
        spread = spread[spread]
        if (spread == group).all():  # np.array_equal's checks cost more on ~200 nodes
            return group
        group = spread


def _group_lines(rows: np.ndarray) -> list[np.ndarray]:
    """Chain components of similar height that sit side by side into lines of 2-5."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    x0, y0, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    x1, cy = x0 + w, y0 + h / 2
    n = len(rows)
    # Every pair (i, j), j after i, whose left edge lies within i's reach (x0 is sorted).
    ends = np.searchsorted(x0, x1 + GAP_RANGE[1] * h, side="right")
    counts = np.maximum(0, ends - np.arange(n) - 1)
    i = np.repeat(np.arange(n), counts)
    j = i + 1 + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    hi, hj = h[i], h[j]
    pair_h = (hi + hj) / 2
    linked = (
        (np.maximum(hi, hj) <= MAX_HEIGHT_RATIO * np.minimum(hi, hj))
        & (np.abs(cy[i] - cy[j]) <= MAX_CENTRE_SHIFT * pair_h)
        & (x0[j] - x1[i] >= GAP_RANGE[0] * pair_h)
    )
    group = _smallest_member(n, i[linked], j[linked])
    # At least two components even where one wide component could be two touching digits:
    # a lone blob is far more often a bib, a logo or a limb than a fused number.
    sizes = np.bincount(group, minlength=n)
    lengths = sizes[sizes >= 2]  # of the lines, in the order of their smallest member
    if not len(lengths):
        return []
    # Lines in the order of their smallest member, each in x order (the sort is stable).
    order = np.argsort(group, kind="stable")
    members = order[sizes[group[order]] >= 2]
    ends = np.cumsum(lengths)
    starts = ends - lengths
    fewest = np.add.reduceat(_fewest_chars(rows[members]), starts).tolist()
    rows = rows[members]
    return [
        rows[a:b]
        for a, b, chars in zip(starts.tolist(), ends.tolist(), fewest, strict=True)
        if chars <= MAX_LINE_CHARS
    ]


def _is_bib_edge(gray: np.ndarray, bar: np.ndarray, line_side: int) -> bool:
    """Whether a thin bar at the end of a line is the bib's edge rather than a "1".

    A "1" has bib paper on both sides; at an edge the far side is something else, often
    the shirt, whose border strip the adaptive threshold turns into a bar. line_side is
    -1 when the rest of the line lies to the bar's left, +1 when to its right.
    """
    x, y, w, h = (int(v) for v in bar[:4])
    probe = max(2, round(EDGE_PROBE * h))
    rows = gray[y : y + h]
    inner = x - probe if line_side < 0 else x + w
    outer = x + w if line_side < 0 else x - probe
    if outer < 0 or outer + probe > gray.shape[1] or inner < 0 or inner + probe > gray.shape[1]:
        return False
    paper, beyond, ink = _medians(
        [rows[:, a : a + width].ravel() for a, width in ((inner, probe), (outer, probe), (x, w))]
    )
    return abs(beyond - paper) > EDGE_CHANGE * abs(paper - ink)


def _trim_bib_edges(gray: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The line without bib edges that were taken for a "1" at either end."""
    if len(line) < 2:
        return line
    # The two ends' aspects as Python floats: numpy's per-call overhead on a handful of rows
    # cost more than the checks.
    sizes = line[:, 2:4].tolist()
    (w_first, h_first), (w_last, h_last) = sizes[0], sizes[-1]
    if w_last / h_last < BAR_ASPECT and _is_bib_edge(gray, line[-1], -1):
        line = line[:-1]
    if len(line) >= 2 and w_first / h_first < BAR_ASPECT and _is_bib_edge(gray, line[0], +1):
        line = line[1:]
    return line


def _medians(parts: Sequence[np.ndarray]) -> list[float]:
    """np.median of each of a few non-empty arrays of uint8 values, read off their histograms.

    The same numbers (ranks of integers interpolated at halves are exact in floats) at less
    cost: on the small strips _is_bib_edge compares, np.median's own overhead, not the
    sorting, is most of the work, and the histograms laid end to end are searched at once.
    """
    counts = np.concatenate([np.bincount(part, minlength=256) for part in parts]).cumsum()
    return _quantiles_of_parts(counts, tuple((k, 0.5) for k in range(len(parts))))


def _quantiles_of_parts(counts: np.ndarray, asked: tuple[tuple[int, float], ...]) -> list[float]:
    """Quantiles of the grey levels counted in histograms of 256 bins laid end to end,
    from their running count: for each (part, quantile) asked, that quantile of that part's
    values. All in one search: per call, numpy's overhead is most of the cost (so the parts'
    running totals are read in one call, not a numpy scalar at a time)."""
    totals = counts[255::256].tolist()
    ats, ranks = [], []
    for part, q in asked:
        below = totals[part - 1] if part else 0
        last = totals[part] - below - 1
        at = q * last
        ats.append(at)
        ranks += [below + int(at), below + min(int(at) + 1, last)]
    value = counts.searchsorted(ranks, side="right").tolist()
    out = []
    for k, ((part, _), p) in enumerate(zip(asked, ats, strict=True)):
        low, high = float(value[2 * k] - 256 * part), float(value[2 * k + 1] - 256 * part)
        t = p - int(p)
        out.append(low + (high - low) * t if t < 0.5 else high - (high - low) * (1 - t))
    return out


def _bib_score(
    gray: np.ndarray, labels: np.ndarray, line: np.ndarray, wanted: Candidates
) -> float | None:
    """Contrast over background spread around a line's digits, or None if not on a bib.

    The background looked at is the line's own band (between, inside and just beside the
    digits): a bib may end right above and below its number, and whatever lies beyond it
    (a sponsor band, the shirt) says nothing about whether the digits sit on paper.
    """
    xs, ys, ws, hs, ids = line.T.tolist()  # a few values: Python's min and max are cheaper
    margin = max(2, round(SIDE_MARGIN * statistics.median(hs)))
    y0, y1 = int(min(ys)), int(max(map(operator.add, ys, hs)))  # map: 0.75 of a generator's
    x0, x1 = int(min(xs)) - margin, int(max(map(operator.add, xs, ws))) + margin
    rows, cols = slice(y0, y1), slice(max(0, x0), x1)
    patch_labels = labels[rows, cols]
    digits = patch_labels == int(ids[0])
    for label in ids[1:]:  # 2-5 labels: cheaper than np.isin
        digits |= patch_labels == int(label)
    digits = digits.view(np.uint8)
    # The pixel next to a stroke is a blend of ink and bib: skip it. Each pixel's part (0 the
    # background, 1 that blend, 2 ink) put above its grey level, one count gives the parts'
    # histograms end to end (0.6 of the CPU of calcHist under two masks).
    part = cv2.dilate(digits, _NEIGHBOURS)
    part += digits
    keys = np.left_shift(part, 8, dtype=np.intp)
    keys |= gray[rows, cols]
    counts = np.bincount(keys.ravel(), minlength=768).cumsum()
    if not counts[255]:
        return None
    q1, median, q3, ink = _quantiles_of_parts(counts, ((0, 0.25), (0, 0.5), (0, 0.75), (2, 0.5)))
    contrast = abs(median - ink)
    if contrast < wanted.min_contrast or (q3 - q1) > wanted.max_spread * contrast:
        return None
    return contrast / (q3 - q1 + 1.0)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box: catches a line nested in another as well."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _same_texts(
    lines: list[_Line], others: list[_Line], height_ratio: float = MAX_HEIGHT_RATIO
) -> np.ndarray:
    """Whether each of lines (rows) is the same text line as each of others (columns), not,
    say, a small line on a large blob: boxes overlapping by half of the smaller (_overlap),
    digit heights within height_ratio. All pairs at once, in _overlap's own float operations
    (the same answers): tested a pair at a time in Python, they cost ~5 CPU ms a bibs-dev
    photo at 12 MP."""
    a = np.array([line.box for line in lines], np.float64).reshape(-1, 1, 4)
    b = np.array([line.box for line in others], np.float64).reshape(1, -1, 4)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    areas = [(box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]) for box in (a, b)]
    overlaps = np.where((iw > 0) & (ih > 0), iw * ih / np.minimum(*areas), 0.0)
    heights = [np.array([line.digit_height for line in group]) for group in (lines, others)]
    ratio = heights[0][:, None] / heights[1][None, :]
    return (overlaps >= 0.5) & (1 / height_ratio <= ratio) & (ratio <= height_ratio)


def _suppress_duplicates(lines: list[_Line], max_regions: int) -> list[_Line]:
    """One candidate per text line, the most bib-like lines first, at most max_regions.

    A line's score is multiplied by the number of its versions (threshold windows and
    polarities that found it): printed digits stand out in most of them, chance blobs in few
    (bibs-dev at 12 MP, tuning half, with the four windows: 39 of 46 bibs among the first 8
    lines, was 35).
    """
    # Of the versions of a line the longest wins: a binarisation that lost a digit yields
    # a shorter line that would read as a wrong number, and a confident one.
    ordered = sorted(lines, key=lambda ln: (ln.fewest_chars, ln.score), reverse=True)
    kept: list[int] = []
    versions: list[int] = []
    # As Python lists: a line is checked against a few kept lines, where numpy's overhead
    # per row would cost more than the checks.
    for i, same in enumerate(_same_texts(ordered, ordered).tolist()):
        for slot, k in enumerate(kept):  # the first kept line it is a version of
            if same[k]:
                versions[slot] += 1
                break
        else:
            kept.append(i)
            versions.append(1)
    voted = [
        _Line(ordered[k].components, ordered[k].dark_digits, ordered[k].score * n)
        for k, n in zip(kept, versions, strict=True)
    ]
    return sorted(voted, key=lambda ln: ln.score, reverse=True)[:max_regions]


def _find_lines(gray_work: np.ndarray, wanted: Candidates) -> list[_Line]:
    """Bib-like digit lines of every polarity and threshold window, duplicates removed."""
    halved = cv2.resize(
        gray_work,
        (max(1, gray_work.shape[1] // 2), max(1, gray_work.shape[0] // 2)),
        interpolation=cv2.INTER_AREA,
    )
    searches = {
        (factor, max(MIN_BLOCK, round(min(image.shape) * fraction)) | 1): image
        for fraction in BLOCK_FRACTIONS
        for factor, image in [(2.0, halved) if fraction >= HALVED_FROM else (1.0, gray_work)]
    }
    plain: list[_Line] = []
    paper: list[_Line] = []
    for (factor, block), image in searches.items():
        binaries = _binarise(image, block)
        for dark_digits, ink in binaries.items():
            plain += _lines_of(image, ink, factor, dark_digits, wanted)
        if block <= PAPER_MAX_BLOCK * min(image.shape):
            on_paper = _on_paper(binaries[True], binaries[False], block)
            paper += _lines_of(image, on_paper, factor, True, wanted)
    found = _suppress_duplicates(plain, wanted.max_regions)
    # A line the paper search finds as well is not more likely a bib for it (as a vote it
    # pushed other bibs down): it only adds lines the plain search missed. Light digits are
    # paper to it, and their counters a line a little shorter than theirs.
    candidates = _suppress_duplicates(paper, len(paper))
    known = _same_texts(candidates, found, PAPER_SAME_HEIGHT).any(axis=1)
    extra = [line for line, seen in zip(candidates, known, strict=True) if not seen]
    # Only among the first PAPER_RANK lines, on top of the others: in the tail, paper lines
    # took the places of bibs that rank there (bibs-dev as 12 MP JPEGs: 2 lost, 1 found).
    bar = sorted([ln.score for ln in found + extra], reverse=True)[:PAPER_RANK][-1:]
    admitted = [line for line in extra if bar and line.score >= bar[0]]
    return sorted(found + admitted, key=lambda ln: ln.score, reverse=True)


def _lines_of(
    image: np.ndarray, binary: np.ndarray, factor: float, dark_digits: bool, wanted: Candidates
) -> list[_Line]:
    """The bib-like digit lines of one binarisation, in working-image pixels."""
    labels, rows = _digit_components(binary)
    lines = []
    for members in _group_lines(rows):
        members = _trim_bib_edges(image, members)
        score = _bib_score(image, labels, members, wanted) if len(members) >= 2 else None
        if score is not None:
            # Two digit-shaped blobs side by side are often chance (limbs, letters,
            # folds); each further one makes a number likelier (tuning half: lines
            # of 2 components were 6 bibs in 888, of 4 components 20 in 48).
            rank = score * (len(members) - 1)
            lines.append(_Line(members[:, :4] * factor, dark_digits, rank))
    return lines


def _on_paper(ink: np.ndarray, paper: np.ndarray, block: int) -> np.ndarray:
    """The ink within the light paper around it, cut off from what touches the paper."""
    k = max(3, round(PAPER_CLOSE * block)) | 1
    region = cv2.morphologyEx(paper, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    region = cv2.erode(region, np.ones((3, 3), np.uint8), iterations=PAPER_ERODE)
    return cv2.bitwise_and(ink, region)


def _padded_box(line: _Line, scale: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Line box in the given image's pixels, padded and clipped to the image."""
    x0, y0, x1, y1 = (v / scale for v in line.box)
    pad = REGION_PAD * (y1 - y0)
    return (
        max(0, int(x0 - pad)),
        max(0, int(y0 - pad)),
        min(shape[1], int(np.ceil(x1 + pad))),
        min(shape[0], int(np.ceil(y1 + pad))),
    )


def _detect(gray: np.ndarray, wanted: Candidates) -> tuple[list[_Line], float]:
    """Candidate lines in working-image pixels, and the working image's scale."""
    scale = _work_scale(*gray.shape)
    work = _scaled_for_search(gray, scale)
    return ([] if work is None else _find_lines(work, wanted)), scale


def _scaled_for_search(gray: np.ndarray, scale: float) -> np.ndarray | None:
    """gray resized by scale, or None where that is too thin to hold a digit."""
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
    if min(size) < MIN_DIGIT_HEIGHT:
        return None
    if (2 * gray.shape[1], 2 * gray.shape[0]) == (5 * size[0], 5 * size[1]):
        return _shrink_by_5_2(gray)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(gray, size, interpolation=interpolation)


def _shrink_by_5_2(gray: np.ndarray) -> np.ndarray:
    """cv2.INTER_AREA's shrink by 2.5 in both axes (a 4:3 photo of 12 MP, decoded at half
    size, to the working size), the same pixels at about 0.4 of its CPU time: OpenCV takes
    its general path, pixel by pixel, for a factor that is not whole (~9 ms a photo).

    Each output pixel is the mean of 2.5 x 2.5 source pixels, weighted in fifths along each
    axis, so 25 times it is a whole number N. OpenCV averages in floats and rounds to the
    nearest; N / 25 lies at least 0.02 from any half, far beyond the floats' error, so N / 25
    rounded here is the same pixel. Columns are summed as strided views, not transposed
    there and back (0.88 of that version's CPU)."""
    out = np.empty((gray.shape[0] * 2 // 5, gray.shape[1] * 2 // 5), np.uint8)
    for row_parity, rows in enumerate(_in_fifths([gray[k::5] for k in range(5)])):
        for column_parity, sums in enumerate(_in_fifths([rows[:, k::5] for k in range(5)])):
            out[row_parity::2, column_parity::2] = cv2.convertScaleAbs(sums, alpha=1 / 25)
    return out


def _in_fifths(r: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every 5 rows (or columns) r0..r4 as two, in uint16: 2 r0 + 2 r1 + r2 and
    r2 + 2 r3 + 2 r4 (the fifths that the even and the odd output row of a shrink by 2.5
    take)."""
    first = np.add(r[0], r[1], dtype=np.uint16)
    second = np.add(r[3], r[4], dtype=np.uint16)
    for sums in (first, second):
        sums += sums
        sums += r[2]
    return first, second


def find_bib_regions(
    image_bgr: np.ndarray, wanted: Candidates = STRICT
) -> list[tuple[int, int, int, int]]:
    """Candidate boxes of bib numbers (text lines of 2-5 digits), most bib-like first."""
    gray = _to_gray(image_bgr)
    lines, scale = _detect(gray, wanted)
    return [_padded_box(line, scale, gray.shape) for line in lines]


def torso_box(
    face: tuple[float, float, float, float], shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Where the bib of the runner with this face (x0, y0, x1, y1) hangs, clipped to shape."""
    x0, y0, x1, y1 = face
    width, height = x1 - x0, y1 - y0
    side, top, bottom = TORSO
    centre = (x0 + x1) / 2
    return (
        max(0, int(centre - side * width)),
        max(0, int(y1 + top * height)),
        min(shape[1], int(centre + side * width)),
        min(shape[0], int(y1 + bottom * height)),
    )


def torso_lines(
    gray: np.ndarray, face: tuple[float, float, float, float], wanted: Candidates = LOOSE
) -> tuple[list[_Line], float]:
    """The most bib-like lines below a face (x0, y0, x1, y1 in gray's pixels), and their scale.

    The bib hangs below the runner's face (Ben-Ami et al.), its digits about half the face's
    height: the torso is searched at the scale where the face is TORSO_FACE_PX high, so that
    small bibs get the digit heights the threshold windows suit and the lines of the rest
    of the photo do not compete. The lines are shifted to the whole photo's frame at that
    scale, so that they are cut and boxed like the lines of _detect.
    """
    height = face[3] - face[1]
    if height <= 0 or face[2] <= face[0]:
        return [], 1.0
    c0, r0, c1, r1 = torso_box(face, gray.shape)
    scale = TORSO_FACE_PX / height
    work = _scaled_for_search(gray[r0:r1, c0:c1], scale)
    if work is None:  # the face is at the photo's bottom or edge
        return [], scale
    shift = np.array([c0 * scale, r0 * scale, 0.0, 0.0])
    lines = _find_lines(work, wanted)[:TORSO_LINES]
    return [replace(ln, components=ln.components + shift) for ln in lines], scale


def torso_reads(
    image_bgr: np.ndarray,
    faces: Sequence[tuple[float, float, float, float]],
    found: list[BibRead],
    start_list: StartList | None = None,
) -> list[BibRead]:
    """The reads found (read_bibs'), joined by those of the best lines below each face
    (x0, y0, x1, y1 in the image's pixels) whose torso holds no sure read yet; best first.

    A second pass only where it is needed: bibs too small or too far down the whole photo's
    ranking to be read there are searched at the face's scale (torso_lines). A torso read of
    a number already read, or in the same place as a read, is dropped: the found reads stand
    (bibs-dev at 12 MP: a torso read of a face beside a bib read "363" where "3638" was read).
    """
    gray = _to_gray(image_bgr)
    engine = engine_name()
    sure = [r.box for r in found if r.confidence >= SURE_READ]
    new: list[BibRead] = []
    for face in faces:
        if any(_overlap(box, torso_box(face, gray.shape)) >= 0.5 for box in sure):
            continue
        lines, scale = torso_lines(gray, face, _wanted_by(engine))
        if not lines:
            continue
        reader = _ppocr_reads if engine == "ppocr" else _tesseract_reads
        reads = reader(gray, lines, scale)
        new += _boxed(reads, scale, gray.shape)
    added = [
        r
        for r in match_start_list(new, start_list)
        if not any(f.bib == r.bib or _overlap(f.box, r.box) >= SAME_PLACE for f in found)
    ]
    return sorted(found + added, key=lambda r: r.confidence, reverse=True)


def _normalise_crop(gray: np.ndarray, line: _Line, scale: float, digit_height: int) -> _Crop:
    """Black digits on white at digit_height, straightened, clutter around removed.

    The crop reaches well beyond the line sideways, so that a digit the region finder
    missed is read too rather than giving a short, wrong number.
    """
    x0, y0, x1, y1 = (v / scale for v in line.box)
    height = y1 - y0
    c0, r0 = max(0, int(x0 - OCR_SIDE_PAD * height)), max(0, int(y0 - OCR_TOP_PAD * height))
    c1, r1 = int(x1 + OCR_SIDE_PAD * height) + 1, int(y1 + OCR_TOP_PAD * height) + 1
    crop = gray[r0:r1, c0:c1]
    zoom = digit_height / (line.digit_height / scale)
    crop = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    left, right = (x0 - c0) * zoom, (x1 - c0) * zoom
    top, bottom = (y0 - r0) * zoom, (y1 - r0) * zoom
    # The threshold comes from the line alone (digits and the bib between them): the
    # surroundings, often a shirt darker than coloured ink, would pull Otsu off the digits.
    core = crop[int(top) : int(np.ceil(bottom)), int(left) : int(np.ceil(right))]
    threshold, _ = cv2.threshold(core, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    centre = ((left + right) / 2, (top + bottom) / 2)
    if abs(line.angle_deg) > MIN_SKEW_DEG:
        rotation = cv2.getRotationMatrix2D(centre, line.angle_deg, 1.0)
        crop = cv2.warpAffine(
            crop, rotation, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REPLICATE
        )
    mode = cv2.THRESH_BINARY_INV if line.dark_digits else cv2.THRESH_BINARY
    _, ink = cv2.threshold(crop, threshold, 255, mode)
    return _keep_line_ink(ink, centre[1], (left, right), digit_height)


def _keep_line_ink(
    ink: np.ndarray, centre_y: float, core: tuple[float, float], digit: int
) -> _Crop:
    """The crop with only the ink of the digit line centred on row centre_y.

    Between the line's ends (core), any ink within the line's band is kept, so that a
    digit broken into pieces survives. Beside it only what is shaped like a whole digit of
    the line is kept: a missed digit, but not a bib edge or a scrap of a logo. Ink that
    runs off the crop (shirt, arms) is never kept.
    """
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    left, top, w, h = (stats[:, i].astype(np.float64) for i in range(4))
    bottom = top + h
    in_band = (top >= centre_y - LINE_BAND * digit) & (bottom <= centre_y + LINE_BAND * digit)
    in_core = (left + w / 2 >= core[0]) & (left + w / 2 <= core[1])
    whole_digit = (
        (np.abs(top - (centre_y - digit / 2)) <= DIGIT_ALIGNMENT * digit)
        & (np.abs(bottom - (centre_y + digit / 2)) <= DIGIT_ALIGNMENT * digit)
        & (w >= MIN_SIDE_DIGIT_WIDTH * digit)
    )
    touches_border = (
        (top == 0) | (left == 0) | (bottom >= ink.shape[0]) | (left + w >= ink.shape[1])
    )
    side_digit = ~in_core & whole_digit & ~touches_border
    keep = (in_core & in_band & (h >= MIN_PIECE * digit) & ~touches_border) | side_digit
    keep[0] = side_digit[0] = False  # background
    return _Crop(np.where(keep[labels], 0, 255).astype(np.uint8), int(side_digit.sum()))


def _stack_page(crops: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """One white page with the crops one under the other; returns the page and row spans."""
    width = max(c.shape[1] for c in crops) + 2 * OCR_MARGIN
    height = sum(c.shape[0] for c in crops) + OCR_LINE_GAP * (len(crops) - 1) + 2 * OCR_MARGIN
    page = np.full((height, width), 255, np.uint8)
    spans: list[tuple[int, int]] = []
    top = OCR_MARGIN
    for crop in crops:
        page[top : top + crop.shape[0], OCR_MARGIN : OCR_MARGIN + crop.shape[1]] = crop
        spans.append((top, top + crop.shape[0]))
        top += crop.shape[0] + OCR_LINE_GAP
    return page, spans


def _ocr_words(page: np.ndarray) -> list[_Word]:
    return [
        _Word(w.text, w.confidence, w.left, w.top + w.height / 2)
        for w in default_engine().words(page)
    ]


def _read_confidence(
    text: str, word_confidence: float, n_words: int, line: _Line, crop: _Crop
) -> float:
    """Tesseract's confidence, discounted where the read disagrees with the region's shape."""
    fewest, most = _char_range(line.components)
    side = crop.side_digits
    # A digit count the glyphs cannot hold means tesseract merged, split or invented
    # characters; a number split into words means it saw a gap no bib number has.
    agreement = 1.0 if fewest + side <= len(text) <= most + side else MISMATCH_FACTOR
    split = 1.0 if n_words == 1 else SPLIT_FACTOR
    return word_confidence * agreement * split


def _words_within(words: list[_Word], span: tuple[int, int]) -> list[_Word]:
    return [w for w in words if span[0] <= w.centre_y < span[1]]


def _read_crop(words: list[_Word], line: _Line, crop: _Crop) -> tuple[str, float] | None:
    """Digits and confidence read on one crop of a line, or None for junk."""
    if not words:
        return None
    words = sorted(words, key=lambda w: w.left)
    text = "".join(w.text for w in words)
    if not text.isdigit() or not BIB_DIGITS[0] <= len(text) <= BIB_DIGITS[1]:
        return None
    word_confidence = min(w.confidence for w in words)
    return text, _read_confidence(text, word_confidence, len(words), line, crop)


def _agreed_read(views: list[tuple[str, float] | None]) -> tuple[str, float] | None:
    """The most confident read of a region's views, discounted unless all views agree."""
    valid = [v for v in views if v is not None]
    if not valid:
        return None
    bib, confidence = max(valid, key=lambda v: v[1])
    agreed = all(v is not None and v[0] == bib for v in views)
    return bib, confidence if agreed else confidence * DISAGREEMENT_FACTOR


def _tesseract_reads(gray: np.ndarray, lines: list[_Line], scale: float) -> list[_Read]:
    """Reads of the lines by tesseract: one page of two views per line, one call."""
    views = [[_normalise_crop(gray, line, scale, h) for h in OCR_DIGIT_HEIGHTS] for line in lines]
    page, spans = _stack_page([crop.pixels for line_views in views for crop in line_views])
    words = _ocr_words(page)
    next_span = iter(spans)  # the page holds the views line by line, in order
    reads = []
    for line, line_views in zip(lines, views, strict=True):
        read = _agreed_read(
            [_read_crop(_words_within(words, next(next_span)), line, crop) for crop in line_views]
        )
        if read is not None:
            reads.append(_Read(read[0], read[1], line))
    return reads


def _crop_box(
    line: _Line, scale: float, shape: tuple[int, ...], room: tuple[float, float, float]
) -> tuple[int, int, int, int]:
    """Where a line's crop lies in the full-resolution image, clipped to it.

    room: left, right, and above and below the line, in line heights.
    """
    x0, y0, x1, y1 = (v / scale for v in line.box)
    height = y1 - y0
    left, right, top = room
    c0, r0 = max(0, int(x0 - left * height)), max(0, int(y0 - top * height))
    c1 = min(shape[1], int(x1 + right * height) + 1)
    r1 = min(shape[0], int(y1 + top * height) + 1)
    return c0, r0, c1, r1


def _cut(gray: np.ndarray, box: tuple[int, int, int, int], line: _Line, scale: float) -> np.ndarray:
    """The crop at box, turned level where its line tilts by more than STRAIGHTEN_DEG.

    Along the line, the level crop spans the line and the box's room beside it, that room
    counted in the line's own height rather than its tilted box's (a read's extents, as
    fractions of the width, still tell roughly how near the number ends to a side:
    _short_sides); across it, the line's own height with STRAIGHT_ROOM above and below.
    """
    angle = line.angle_deg
    if abs(angle) <= STRAIGHTEN_DEG:
        return gray[box[1] : box[3], box[0] : box[2]]
    slope = float(np.tan(np.radians(angle)))
    c = line.components / scale
    x0, y0, x1, y1 = (v / scale for v in line.box)
    own_height = max(statistics.median(c[:, 3].tolist()), (y1 - y0) - (x1 - x0) * abs(slope))
    shrink = own_height / (y1 - y0)
    left, right = x0 - (x0 - box[0]) * shrink, x1 + (box[2] - x1) * shrink
    middle = (left + right) / 2
    # The fitted line (angle_deg) passes through the mean of the characters' centres.
    centre_x, centre_y = (c[:, 0] + c[:, 2] / 2).mean(), (c[:, 1] + c[:, 3] / 2).mean()
    level_y = float(centre_y + (middle - centre_x) * slope)
    size = (
        max(1, round((right - left) / np.cos(np.radians(angle)))),
        max(1, round(own_height * (1 + 2 * STRAIGHT_ROOM))),
    )
    turn = cv2.getRotationMatrix2D((middle, level_y), angle, 1.0)
    turn[:, 2] += (size[0] / 2 - middle, size[1] / 2 - level_y)
    return cv2.warpAffine(gray, turn, size, borderMode=cv2.BORDER_REPLICATE)


def _line_crop(gray: np.ndarray, line: _Line, scale: float, pad: tuple[float, float]) -> np.ndarray:
    """The line cut from the full-resolution image with room around it for PP-OCR.

    Sideways room lets the recogniser see a digit the region finder missed (else it reads a
    short, wrong number); little room above and below keeps other lines out.
    """
    return _cut(gray, _crop_box(line, scale, gray.shape, (pad[0], pad[0], pad[1])), line, scale)


def _ppocr_reads(gray: np.ndarray, lines: list[_Line], scale: float) -> list[_Read]:
    """Reads of the lines by PP-OCR's recogniser, those that hold a bib number."""
    side, top = PP_VIEW
    reads: list[_Read] = []
    for line in lines:
        box = _crop_box(line, scale, gray.shape, (side, side, top))
        if _read_already(box, reads, scale, gray.shape):
            continue
        text = recogniser().read_lines([_cut(gray, box, line, scale)])[0]
        read = _looked_further(gray, line, scale, box, text)
        if read is not None:
            reads.append(_Read(read.bib, read.confidence, line, read.unprefixed))
    return _looked_again(gray, reads, scale)


def _read_already(
    box: tuple[int, int, int, int], reads: list[_Read], scale: float, shape: tuple[int, ...]
) -> bool:
    """Whether a crop at box holds a line already read as a bib surely (SURELY_READ)."""
    return any(
        r.confidence >= SURELY_READ
        and _overlap(box, _crop_box(r.line, scale, shape, (0.0, 0.0, 0.0))) >= READ_PLACE
        for r in reads
    )


def _short_sides(
    text: LineRead, box: tuple[int, int, int, int], height: float, width: int
) -> tuple[bool, bool]:
    """Whether the number read on the crop at box ends against its left, right side.

    A digit cut by the crop's side is not read at all: the number read stops short of it,
    next to that side. Where the crop reaches the photo's side, there is nothing further.
    """
    span = bib_span(text.text)
    if span is None or not text.extents:
        return False, False
    near = FURTHER_WHEN * height
    pixels = box[2] - box[0]
    left = bool(text.extents[span[0]][0] * pixels < near) and box[0] > 0
    right = bool((1.0 - text.extents[span[1] - 1][1]) * pixels < near) and box[2] < width
    return left, right


def _wider_box(
    box: tuple[int, int, int, int],
    grow: tuple[float, float],
    slope: float,
    shape: tuple[int, ...],
) -> tuple[int, int, int, int]:
    """The crop box grown by grow pixels left and right along a line of this slope, clipped."""
    drops = (-grow[0] * slope, grow[1] * slope)  # rows the line falls at each new end
    return (
        max(0, int(box[0] - grow[0])),
        max(0, int(box[1] + min(0.0, *drops))),
        min(shape[1], int(box[2] + grow[1])),
        min(shape[0], int(np.ceil(box[3] + max(0.0, *drops)))),
    )


def _looked_further(
    gray: np.ndarray, line: _Line, scale: float, box: tuple[int, int, int, int], text: LineRead
) -> _Bib | None:
    """The bib read on a line's crop, followed sideways while it ends against the crop's side.

    Where a wider crop reads the number with more digits on that side, they are the
    number's: the region finder missed them (a digit fused with its neighbour or with the
    bib's edge) and the narrower crop cut them. The crop widens along the line's tilt, so
    that the digits further on are not cut at the top or bottom either.
    """
    height = (line.box[3] - line.box[1]) / scale
    grow = FURTHER * height
    slope = float(np.tan(np.radians(line.angle_deg)))  # rows down per column rightwards
    read = _bib_of(text)
    for _ in range(FURTHER_ROUNDS):
        left, right = _short_sides(text, box, height, gray.shape[1])
        if read is None or not (left or right):
            break
        box = _wider_box(box, (grow * left, grow * right), slope, gray.shape)
        text = recogniser().read_lines([_cut(gray, box, line, scale)])[0]
        wider = _bib_of(text)
        if wider is None or len(wider.bib) <= len(read.bib) or read.bib not in wider.bib:
            break
        read = wider
    return read


def _looked_again(gray: np.ndarray, reads: list[_Read], scale: float) -> list[_Read]:
    """The reads, each weak one more confident where a second view reads the same number."""
    weak = [i for i, r in enumerate(reads) if r.confidence < SURE_READ]
    crops = [_line_crop(gray, reads[i].line, scale, PP_SECOND_VIEW) for i in weak]
    again = dict(zip(weak, recogniser().read_lines(crops) if crops else [], strict=True))
    return [r if i not in again else _agreement(r, _bib_of(again[i])) for i, r in enumerate(reads)]


def _agreement(read: _Read, second: _Bib | None) -> _Read:
    """The read, its doubt multiplied by the second view's where both read the same number.

    Where the second view reads the number without its first digit, which the first view
    saw may be a prefix letter, the doubt of the number without it is multiplied so.
    """
    if second is None:
        return read
    if second.bib == read.bib:
        return replace(
            read,
            confidence=_both(read.confidence, second.confidence),
            unprefixed=_both(read.unprefixed, second.unprefixed)
            if read.unprefixed and second.unprefixed
            else max(read.unprefixed, second.unprefixed),
        )
    if read.unprefixed and second.bib == read.bib[1:]:
        return replace(read, unprefixed=_both(read.unprefixed, second.confidence))
    return read


def _both(a: float, b: float) -> float:
    """The confidence of two views that read the same: their doubts multiplied."""
    return 1.0 - (1.0 - a) * (1.0 - b)


def _bib_of(read: LineRead) -> _Bib | None:
    """The bib number on a recognised line and the confidence of its digits, or None."""
    span = bib_span(read.text)
    if span is None:
        return None
    # A separator half seen between the digits makes a time, not a bib: a race clock's
    # "1:35:40" is read as "13540" with the colons' dots blurred away.
    if max(read.separators[span[0] : span[1] - 1], default=0.0) >= UNREAD_SEPARATOR:
        return None
    # The digits' confidence: scraps of the bib's edge beside them do not matter.
    bib = bib_digits(read.text, span)
    digits = read.char_confidences[span[0] : span[1]]
    known = len(read.zeros) == len(read.letters) == len(read.text)
    zeros = read.zeros[span[0] : span[1]] if known else digits
    after_letter = span[0] > 0 and read.text[span[0] - 1].isalpha()
    confidence = min(_after_prefix(bib, digits, zeros) if after_letter else digits)
    may_be_letter = known and len(bib) > BIB_DIGITS[0] and read.letters[span[0]] >= PREFIX_EVIDENCE
    unprefixed = min(_after_prefix(bib[1:], digits[1:], zeros[1:])) if may_be_letter else 0.0
    return _Bib(bib, confidence, unprefixed)


def _after_prefix(
    bib: str, confidences: Sequence[float], zeros: Sequence[float]
) -> Sequence[float]:
    """The digits' confidences where a prefix letter precedes them: a leading 0 is as much
    a 0 read as O (the bib rules read it so: "SO495"), since the recogniser splits its
    belief in a prefixed bib's 0 between the two."""
    first = max(confidences[0], zeros[0]) if bib[0] == "0" else confidences[0]
    return [first, *confidences[1:]]


def read_bibs(
    image_bgr: np.ndarray,
    start_list: StartList | None = None,
    faces: Sequence[tuple[float, float, float, float]] = (),
) -> list[BibRead]:
    """All bib numbers read on the photo, best first; at most one read per number.

    With a start list, only its bibs are returned (a near miss mapped to the listed bib, at
    a lower confidence); without one, every number that passes the bib rules. Lines on the
    faces (x0, y0, x1, y1 in the image's pixels) are not read (FACE_LINE), and with faces
    fewer lines are read first (PP_FIRST_LINES_BEFORE_TORSO): torso_reads reads below them.
    """
    gray = _to_gray(image_bgr)
    reads, scale = _line_reads(gray, engine_name(), faces)
    return match_start_list(_boxed(reads, scale, gray.shape), start_list)


def _boxed(reads: list[_Read], scale: float, shape: tuple[int, ...]) -> list[BibRead]:
    """Line reads as bib reads, each with its line's padded box in the photo's pixels."""
    return [
        BibRead(r.bib, r.confidence, _padded_box(r.line, scale, shape), r.unprefixed) for r in reads
    ]


def _wanted_by(engine: str) -> Candidates:
    """The candidate lines an engine reads (see STRICT and LOOSE)."""
    return LOOSE if engine == "ppocr" else STRICT


def _line_reads(
    gray: np.ndarray, engine: str, faces: Sequence[tuple[float, float, float, float]] = ()
) -> tuple[list[_Read], float]:
    """The engine's bib reads of the photo's candidate lines, and the lines' scale."""
    lines, scale = _detect(gray, _wanted_by(engine))
    if not lines:
        return [], scale
    if engine != "ppocr":
        return _tesseract_reads(gray, _off_faces(lines, faces, scale, gray.shape), scale), scale
    first_lines = PP_FIRST_LINES_BEFORE_TORSO if faces else PP_FIRST_LINES
    first, rest = lines[:first_lines], lines[first_lines:]
    reads = _ppocr_reads(gray, _off_faces(first, faces, scale, gray.shape), scale)
    if not any(r.confidence >= SURE_READ for r in reads):
        # The rest is read for a bib the first lines missed: one line at a time, up to the
        # first that reads a sure one.
        for line in _off_faces(rest, faces, scale, gray.shape):
            read = _ppocr_reads(gray, [line], scale)
            reads += read
            if any(r.confidence >= SURE_READ for r in read):
                break
    return reads, scale


def _off_faces(
    lines: list[_Line],
    faces: Sequence[tuple[float, float, float, float]],
    scale: float,
    shape: tuple[int, ...],
) -> list[_Line]:
    """The lines but those on a face (FACE_LINE)."""
    return [
        line
        for line in lines
        if not any(_overlap(_padded_box(line, scale, shape), face) >= FACE_LINE for face in faces)
    ]


def match_start_list(reads: list[BibRead], start_list: StartList | None) -> list[BibRead]:
    """One read per number and per bib, mapped through the start list if any, best first."""
    matched = (
        reads
        if start_list is None
        else [
            BibRead(m[0], m[1], r.box)
            for r in reads
            if (m := start_list.match(r.bib, r.confidence, r.unprefixed))
        ]
    )
    kept: list[BibRead] = []
    for read in sorted(matched, key=lambda r: r.confidence, reverse=True):
        # The same number twice on a photo is one runner; two numbers in one place are one
        # bib read twice (a part of it, or with its edge as a digit): the best read stands.
        if not any(k.bib == read.bib or _overlap(k.box, read.box) >= SAME_PLACE for k in kept):
            kept.append(read)
    return kept
