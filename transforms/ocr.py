"""Find race bib numbers on a photo and read them with tesseract.

Two stages:

1. Region finding, pure OpenCV/numpy on a grayscale copy at a working resolution. For both
   polarities (dark digits on a light bib, light digits on a dark bib) and two adaptive
   threshold windows, connected components with digit-like geometry are chained into text
   lines of 2-5 characters. Lines that sit on a locally uniform patch with clear contrast (a
   bib) are kept; the same line found by several binarisations is kept once.
2. Reading: each line is cut from the full-resolution image, deskewed, rescaled to a common
   digit height and binarised to black digits on white. All crops are stacked into one page,
   so tesseract (whose process start-up dominates the cost of a call) runs once per photo.
   Words are mapped back to their line by vertical position and given a confidence that
   combines tesseract's word confidence with shape checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import pytesseract

# Working resolution for region finding: large photos are shrunk (speed; 1600 px photos are
# halved, which OpenCV does fastest), tiny crops of a single bib are enlarged so that their
# digits span enough pixels to binarise cleanly.
WORK_MAX_SIDE = 800
WORK_MIN_SIDE = 160

# Digit components, in working pixels and relative units.
MIN_DIGIT_HEIGHT = 8
MAX_DIGIT_HEIGHT_FRACTION = 0.8  # of the working image's shorter side
# width / height: "1" is a thin bar; above 1 are digits that touch (thick fonts, blur)
DIGIT_ASPECT = (0.12, 3.2)
CHAR_ASPECT = 0.75  # a component this many heights wide is counted as one more character
DIGIT_FILL = (0.15, 0.95)  # component pixels / bounding box area

# Chaining components into a line.
MAX_HEIGHT_RATIO = 1.35
MAX_CENTRE_SHIFT = 0.25  # vertical, relative to the mean height of the pair
GAP_RANGE = (-0.15, 0.7)  # horizontal gap between neighbours, relative to their height
LINE_CHARS = (2, 5)

# A bib: the background right around the digits is uniform compared with the contrast.
RING_WIDTH = 0.25  # of the digit height
MIN_CONTRAST = 35.0  # grey levels between digit and background medians
MAX_BACKGROUND_SPREAD = 0.35  # background's interquartile range relative to the contrast

# Adaptive threshold windows, as fractions of the working image's shorter side. A window
# must be larger than a stroke (else thick digits are hollowed out) but not much larger
# than a digit (else a dark shirt around a small bib drags the mean below thin strokes),
# so small, medium and close-up digits each get their own.
BLOCK_FRACTIONS = (1 / 24, 1 / 8, 1 / 3)
MIN_BLOCK = 11
ADAPTIVE_OFFSET = 8  # grey levels a pixel must differ from its neighbourhood mean
MAX_REGIONS = 24  # per photo; bounds tesseract time on cluttered scenes
REGION_PAD = 0.15  # padding of returned boxes, relative to line height

# Tesseract page layout: every region becomes one text line of this digit height.
OCR_DIGIT_HEIGHT = 48
OCR_SIDE_PAD = 1.5  # crop margin left and right of a line, relative to its height
OCR_MARGIN = 24
OCR_LINE_GAP = 40
# Dictionaries are useless for numbers and cost start-up time.
TESSERACT_CONFIG = (
    "--oem 1 --psm 6 -c tessedit_char_whitelist=0123456789 -c user_defined_dpi=300"
    " -c load_system_dawg=0 -c load_freq_dawg=0"
)
# Tesseract's OpenMP threads make a call 2x slower on a busy or small machine, and pipeline
# workers already use every core. setdefault keeps an explicit setting of the deployment.
TESSERACT_ENV_DEFAULTS = {"OMP_THREAD_LIMIT": "1"}

BIB_DIGITS = (2, 5)


@dataclass(frozen=True)
class BibRead:
    """One bib number read on a photo."""

    bib: str  # digits only, e.g. "1234"
    confidence: float  # 0..1
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the given image's pixels


@dataclass(frozen=True)
class _Line:
    """A candidate bib number line, in working-image pixels."""

    components: np.ndarray  # (n, 4) float: x, y, w, h of each character, left to right
    dark_digits: bool
    score: float  # contrast / background spread; higher is more bib-like

    @property
    def box(self) -> tuple[float, float, float, float]:
        c = self.components
        return (
            float(c[:, 0].min()),
            float(c[:, 1].min()),
            float((c[:, 0] + c[:, 2]).max()),
            float((c[:, 1] + c[:, 3]).max()),
        )

    @property
    def digit_height(self) -> float:
        return float(np.median(self.components[:, 3]))

    @property
    def angle_deg(self) -> float:
        """Slope of the character centres; zero for a line of one component."""
        c = self.components
        if len(c) < 2:
            return 0.0
        cx, cy = c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2
        slope = np.polyfit(cx, cy, 1)[0]
        return float(np.degrees(np.arctan(slope)))


def _to_gray(image_bgr: np.ndarray) -> np.ndarray:
    if not isinstance(image_bgr, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image_bgr).__name__}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image_bgr.dtype}")
    if image_bgr.ndim == 2:
        return image_bgr
    if image_bgr.ndim == 3 and image_bgr.shape[2] == 3:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    raise ValueError(
        f"expected a 2-D grayscale or HxWx3 BGR image, got shape {image_bgr.shape}"
    )


def _work_scale(height: int, width: int) -> float:
    scale = min(1.0, WORK_MAX_SIDE / max(height, width))
    return max(scale, WORK_MIN_SIDE / min(height, width))


def _binarise(gray: np.ndarray, block: int, dark_digits: bool) -> np.ndarray:
    """Pixels clearly darker (or lighter) than their neighbourhood mean."""
    if dark_digits:
        return cv2.adaptiveThreshold(
            gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, ADAPTIVE_OFFSET
        )
    return cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, -ADAPTIVE_OFFSET
    )


def _digit_components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label image and (n, 5) rows of x, y, w, h, label of components shaped like a digit."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    x, y, w, h, area = (stats[1:, i].astype(np.float64) for i in range(5))
    max_height = MAX_DIGIT_HEIGHT_FRACTION * min(binary.shape)
    aspect = w / h
    fill = area / (w * h)
    keep = (
        (h >= MIN_DIGIT_HEIGHT)
        & (h <= max_height)
        & (aspect >= DIGIT_ASPECT[0])
        & (aspect <= DIGIT_ASPECT[1])
        & (fill >= DIGIT_FILL[0])
        & (fill <= DIGIT_FILL[1])
    )
    ids = np.flatnonzero(keep) + 1
    rows = np.column_stack([x[keep], y[keep], w[keep], h[keep], ids.astype(np.float64)])
    return labels, rows


def _char_count(components: np.ndarray) -> int:
    """Characters in a line, counting a wide component as several touching digits."""
    widths, heights = components[:, 2], components[:, 3]
    return int(np.maximum(1, np.rint(widths / (CHAR_ASPECT * heights))).sum())


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _group_lines(rows: np.ndarray) -> list[np.ndarray]:
    """Chain components of similar height that sit side by side into lines of 2-5."""
    rows = rows[np.argsort(rows[:, 0])]
    x0, y0, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    x1, cy = x0 + w, y0 + h / 2
    parent = list(range(len(rows)))
    for i in range(len(rows)):
        reach = x1[i] + GAP_RANGE[1] * h[i]
        j = i + 1
        while j < len(rows) and x0[j] <= reach:
            pair_h = (h[i] + h[j]) / 2
            gap = x0[j] - x1[i]
            if (
                max(h[i], h[j]) <= MAX_HEIGHT_RATIO * min(h[i], h[j])
                and abs(cy[i] - cy[j]) <= MAX_CENTRE_SHIFT * pair_h
                and gap >= GAP_RANGE[0] * pair_h
            ):
                parent[_find(parent, j)] = _find(parent, i)
            j += 1
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(_find(parent, i), []).append(i)
    # At least two components even where one wide component could be two touching digits:
    # a lone blob is far more often a bib, a logo or a limb than a fused number.
    lines = [rows[members] for members in groups.values() if len(members) >= 2]
    return [line for line in lines if LINE_CHARS[0] <= _char_count(line) <= LINE_CHARS[1]]


def _bib_score(gray: np.ndarray, labels: np.ndarray, line: np.ndarray) -> float | None:
    """Contrast over background spread around a line's digits, or None if not on a bib.

    Only a ring hugging the digits is looked at: a bib may be barely larger than its
    number, and whatever lies beyond it (shirt, arms) says nothing about the bib.
    """
    ring_width = max(2, round(RING_WIDTH * float(np.median(line[:, 3]))))
    x0, y0 = int(line[:, 0].min()) - ring_width, int(line[:, 1].min()) - ring_width
    x1 = int((line[:, 0] + line[:, 2]).max()) + ring_width
    y1 = int((line[:, 1] + line[:, 3]).max()) + ring_width
    rows, cols = slice(max(0, y0), y1 + 1), slice(max(0, x0), x1 + 1)
    patch = gray[rows, cols]
    digits = np.isin(labels[rows, cols], line[:, 4].astype(np.int32)).astype(np.uint8)
    # The pixel next to a stroke is a blend of ink and bib: skip it.
    near = cv2.dilate(digits, np.ones((3, 3), np.uint8))
    around = cv2.dilate(digits, np.ones((2 * ring_width + 1,) * 2, np.uint8))
    background = patch[(around > 0) & (near == 0)]
    if background.size == 0:
        return None
    q1, median, q3 = np.percentile(background, (25, 50, 75))
    contrast = abs(median - float(np.median(patch[digits > 0])))
    if contrast < MIN_CONTRAST or (q3 - q1) > MAX_BACKGROUND_SPREAD * contrast:
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


def _suppress_duplicates(lines: list[_Line]) -> list[_Line]:
    kept: list[_Line] = []
    # Of overlapping candidates the longest wins: a binarisation that lost a digit yields a
    # shorter line that would read as a wrong number, and a confident one.
    ranked = sorted(lines, key=lambda ln: (_char_count(ln.components), ln.score), reverse=True)
    for line in ranked:
        if all(_overlap(line.box, k.box) < 0.5 for k in kept):
            kept.append(line)
    return kept[:MAX_REGIONS]


def _find_lines(gray_work: np.ndarray) -> list[_Line]:
    short = min(gray_work.shape)
    blocks = {max(MIN_BLOCK, round(short * f)) | 1 for f in BLOCK_FRACTIONS}
    lines: list[_Line] = []
    for dark_digits in (True, False):
        for block in sorted(blocks):
            labels, rows = _digit_components(_binarise(gray_work, block, dark_digits))
            for members in _group_lines(rows):
                score = _bib_score(gray_work, labels, members)
                if score is not None:
                    lines.append(_Line(members[:, :4], dark_digits, score))
    return _suppress_duplicates(lines)


def _padded_box(
    line: _Line, scale: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Line box in the given image's pixels, padded and clipped to the image."""
    x0, y0, x1, y1 = (v / scale for v in line.box)
    pad = REGION_PAD * (y1 - y0)
    return (
        max(0, int(x0 - pad)),
        max(0, int(y0 - pad)),
        min(shape[1], int(np.ceil(x1 + pad))),
        min(shape[0], int(np.ceil(y1 + pad))),
    )


def _detect(gray: np.ndarray) -> tuple[list[_Line], float]:
    scale = _work_scale(*gray.shape)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    work = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interpolation)
    return _find_lines(work), scale


def find_bib_regions(image_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Candidate boxes of bib numbers (text lines of 2-5 digits), most bib-like first."""
    gray = _to_gray(image_bgr)
    lines, scale = _detect(gray)
    return [_padded_box(line, scale, gray.shape) for line in lines]


def _normalise_crop(gray: np.ndarray, line: _Line, scale: float) -> np.ndarray:
    """Black digits on white at OCR_DIGIT_HEIGHT, straightened, clutter around removed.

    The crop reaches well beyond the line sideways so that a digit the region finder missed
    is still read (and the read then disagrees with the region instead of being short).
    """
    x0, y0, x1, y1 = (v / scale for v in line.box)
    height = y1 - y0
    c0, r0 = max(0, int(x0 - OCR_SIDE_PAD * height)), max(0, int(y0 - 0.5 * height))
    crop = gray[r0 : int(y1 + 0.5 * height) + 1, c0 : int(x1 + OCR_SIDE_PAD * height) + 1]
    zoom = OCR_DIGIT_HEIGHT / (line.digit_height / scale)
    crop = cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    # The threshold comes from the line alone (digits and the bib between them): the
    # surroundings, often a shirt darker than coloured ink, would pull Otsu off the digits.
    core = crop[
        int((y0 - r0) * zoom) : int(np.ceil((y1 - r0) * zoom)),
        int((x0 - c0) * zoom) : int(np.ceil((x1 - c0) * zoom)),
    ]
    threshold, _ = cv2.threshold(core, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if abs(line.angle_deg) > 1.0:
        centre = (crop.shape[1] / 2, crop.shape[0] / 2)
        rotation = cv2.getRotationMatrix2D(centre, line.angle_deg, 1.0)
        crop = cv2.warpAffine(
            crop, rotation, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REPLICATE
        )
    mode = cv2.THRESH_BINARY_INV if line.dark_digits else cv2.THRESH_BINARY
    _, ink = cv2.threshold(crop, threshold, 255, mode)
    return 255 - _keep_line_ink(ink)


def _keep_line_ink(ink: np.ndarray) -> np.ndarray:
    """Drop ink that is not part of the centred digit line: bib edges, text above/below."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    height, width = ink.shape
    top, left, w, h = stats[:, 1], stats[:, 0], stats[:, 2], stats[:, 3]
    centre_y = top + h / 2
    band = (centre_y > 0.3 * height) & (centre_y < 0.7 * height)
    touches_border = (top == 0) | (left == 0) | (top + h >= height) | (left + w >= width)
    tall_enough = h >= 0.4 * OCR_DIGIT_HEIGHT
    keep = band & ~touches_border & tall_enough
    keep[0] = False
    return np.where(keep[labels], 255, 0).astype(np.uint8)


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


@dataclass(frozen=True)
class _Word:
    text: str
    confidence: float  # 0..1
    left: int
    centre_y: float


def _ocr_words(page: np.ndarray) -> list[_Word]:
    # pytesseract passes os.environ to the tesseract process and has no per-call setting.
    for name, value in TESSERACT_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    data = pytesseract.image_to_data(
        page, config=TESSERACT_CONFIG, output_type=pytesseract.Output.DICT
    )
    return [
        _Word(text.strip(), float(conf) / 100.0, left, top + height / 2)
        for text, conf, left, top, height in zip(
            data["text"], data["conf"], data["left"], data["top"], data["height"]
        )
        if text.strip() and float(conf) >= 0
    ]


def _read_confidence(text: str, word_confidence: float, n_words: int, line: _Line) -> float:
    """Tesseract's confidence, discounted where the read disagrees with the region's shape."""
    agreement = 1.0 if len(text) == _char_count(line.components) else 0.6
    split = 1.0 if n_words == 1 else 0.7
    x0, y0, x1, y1 = line.box
    width_per_digit = (x1 - x0) / len(text) / line.digit_height
    plausible_width = 1.0 if 0.3 <= width_per_digit <= 1.2 else 0.6
    return word_confidence * agreement * split * plausible_width


def _read_line(words: list[_Word], line: _Line) -> tuple[str, float] | None:
    """Digits and confidence of one region, or None for junk."""
    if not words:
        return None
    words = sorted(words, key=lambda w: w.left)
    text = "".join(w.text for w in words)
    if not text.isdigit() or not BIB_DIGITS[0] <= len(text) <= BIB_DIGITS[1]:
        return None
    word_confidence = min(w.confidence for w in words)
    return text, _read_confidence(text, word_confidence, len(words), line)


def read_bibs(image_bgr: np.ndarray) -> list[BibRead]:
    """All bib numbers read on the photo, best first; at most one read per region."""
    gray = _to_gray(image_bgr)
    lines, scale = _detect(gray)
    if not lines:
        return []
    page, spans = _stack_page([_normalise_crop(gray, line, scale) for line in lines])
    words = _ocr_words(page)
    best: dict[str, BibRead] = {}
    for line, (top, bottom) in zip(lines, spans):
        read = _read_line([w for w in words if top <= w.centre_y < bottom], line)
        if read is None:
            continue
        bib, confidence = read
        if bib not in best or confidence > best[bib].confidence:
            best[bib] = BibRead(bib, confidence, _padded_box(line, scale, gray.shape))
    return sorted(best.values(), key=lambda r: r.confidence, reverse=True)
