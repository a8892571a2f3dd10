"""PP-OCRv4 text-line recognition through onnxruntime (the models ship in rapidocr-onnxruntime).

Only the recogniser is used: racelens finds the candidate lines itself (transforms.ocr), far
cheaper than PP-OCR's detector on a whole photo (measured on bibs-dev: the detector costs
200-550 ms per photo on one core at the resolutions small bibs need, the line finder 85 ms).
The recogniser reads a grey crop of one text line and returns its characters with their
probabilities; the model knows Chinese, Latin letters and digits, so a crop of a sponsor's
word reads as letters and is rejected later instead of being forced into digits.

Sessions are created on first use in each process (never at import) with one intra-op
thread: pipeline workers already use every core, and a second thread per session only adds
contention (the same policy as tesseract's OMP_THREAD_LIMIT). The model is loaded with its
affine blocks folded into its convolutions (transforms.ppocr_model): the same reads at 0.66
of the CPU time. The folded model is kept as a file in racelens' cache folder, made once per
shipped model and folding code (`kept_model`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from transforms.kept import kept_path, kept_session

if TYPE_CHECKING:
    import onnxruntime as ort

REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"
REC_HEIGHT = 48  # the model's input height
MIN_WIDTH = 16  # narrower inputs leave the model too few time steps for two digits
# Time grows with the width; a bib line with its margins is at most ~6 digit widths, and a
# longer line (a sponsor's slogan) is squeezed rather than allowed to cost more.
MAX_WIDTH = 8 * REC_HEIGHT
# Punctuation that splits a number: a clock's colons, a decimal point (the model's own
# characters, half- and full-width).
SEPARATORS = ":.：。·．"
# Latin letters but the shapes of a 0 (O, o, Q: a bib's rules read an O as 0): what a bib's
# prefix letter ("T2182", "S0374") is read as when it is not read as a digit.
LETTERS = "ABCDEFGHIJKLMNPRSTUVWXYZabcdefghijklmnpqrstuvwxyz"
# The glyphs of a 0: the recogniser splits its belief in a printed 0 between 0 and O (a
# prefixed bib's leading 0, "S0495", is read 0 at 0.6 and O at 0.35).
ZEROS = "0Oo\uff10"
# A blank (CTC class 0) more probable than this is a step's best class: the model's float32
# softmax over its 6,625 classes sums to 1 within 6,625 roundings of 2**-24 (< 4e-4), so the
# other classes share less than 1 + 4e-4 - 0.51 < 0.51 between them.
BLANK_SURE = 0.51


@dataclass(frozen=True)
class LineRead:
    """What the recogniser read on one crop."""

    text: str
    char_confidences: tuple[float, ...]  # one per character of text, 0..1
    # Per gap between neighbouring characters: the highest probability of a separator there,
    # read or not (a race clock's colons are thin dots that the recogniser half sees).
    separators: tuple[float, ...] = ()
    # Per character: where the recogniser read it, as (start, end) fractions of the crop's
    # width (its CTC steps), so that a number read against the crop's edge can be told.
    extents: tuple[tuple[float, float], ...] = ()
    # Per character: the highest probability, over its steps, that a letter was read there
    # (LETTERS), so that a prefix letter read as a digit ("S0424" as "80424") can be told.
    letters: tuple[float, ...] = ()
    # Per character: the probability that a 0 of any glyph was read there (ZEROS), where
    # it was read, so that a 0 read as much as O is a sure 0 where the bib rules read O so.
    zeros: tuple[float, ...] = ()

    @property
    def confidence(self) -> float:
        """The weakest character's probability: one doubtful digit makes a doubtful bib."""
        return min(self.char_confidences, default=0.0)


def models_dir() -> str:
    """Where rapidocr-onnxruntime keeps its ONNX models. Found, not imported: the package
    imports its own pipeline (shapely, pyclipper...), 0.09 CPU s that racelens never uses."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("rapidocr_onnxruntime is not installed")
    return os.path.join(os.path.dirname(spec.origin), "models")


def kept_model(source: str) -> str:
    """Where the folded form of the model at source is kept (transforms.kept), named by the
    digests of the shipped model and of the folding code (transforms/ppocr_model.py), so
    that a change to either makes a new file."""
    folding = importlib.util.find_spec("transforms.ppocr_model")
    if folding is None or folding.origin is None:
        raise ModuleNotFoundError("transforms.ppocr_model is missing")
    stem = os.path.splitext(os.path.basename(source))[0]
    return kept_path("ppocr", f"{stem}-folded", [source, folding.origin], "onnx")


def folded_session(source: str, options: ort.SessionOptions) -> ort.InferenceSession:
    """An onnxruntime session of the model at source, folded (transforms.ppocr_model).

    Folding costs 0.19 CPU s and importing onnx for it 0.15, in every process that reads
    bibs (the pipeline's zygote, before it forks the workers), so the folded model is kept
    once (`kept_model`, 0.02 CPU s to name) and loaded from there.
    """
    return kept_session(kept_model(source), lambda: _folded(source), options)


def _folded(source: str) -> bytes:
    from transforms.ppocr_model import folded_model_bytes  # imports onnx: only to fold

    return folded_model_bytes(source)


class PpOcrRecogniser:
    """PP-OCRv4 line recogniser, one onnxruntime session per process."""

    name = "ppocr"

    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = folded_session(os.path.join(models_dir(), REC_MODEL), options)
        self._input = self._session.get_inputs()[0].name
        # CTC classes: blank, the model's character list, then a space.
        characters = self._session.get_modelmeta().custom_metadata_map["character"]
        self._characters = ["", *characters.splitlines(), " "]
        self._separators = self._classes(SEPARATORS)
        self._letters = self._classes(LETTERS)
        self._zeros = self._classes(ZEROS)
        self._lock = threading.Lock()  # one run at a time per session keeps one thread

    def _classes(self, characters: str) -> list[int]:
        return [i for i, c in enumerate(self._characters) if c and c in characters]

    def read_lines(self, crops: list[np.ndarray]) -> list[LineRead]:
        """The text on each grey (or BGR) crop of one text line, in the crops' order."""
        # One crop per call: on one thread, batches (padded to their widest crop) cost more
        # per crop than single calls (measured: 8 crops 240 px wide, 44 against 31 ms each).
        # Nor are crops joined side by side: a call's fixed part is small (joined without a
        # gap, 0.96-0.98x the CPU), and half of the lines read otherwise beside others (the
        # model's squeeze-excite pools and attention span the whole input, and its
        # convolutions see a neighbour where they saw padding; bench/recogniser_ab.py --joined).
        reads = []
        for crop in crops:
            with self._lock:
                probabilities = self._session.run(None, {self._input: _normalise(crop)})[0]
            reads.append(self._decode(probabilities[0]))
        return reads

    def _decode(self, probabilities: np.ndarray) -> LineRead:
        """Greedy CTC decoding: best class per step, repeats merged, blanks dropped."""
        best = _best_classes(probabilities)
        keep = np.ones(len(best), bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        steps = np.flatnonzero(keep)  # where each character was read
        text = "".join(self._characters[i] for i in best[steps])
        confidences = probabilities[steps, best[steps]]
        zeros = probabilities[steps][:, self._zeros].sum(axis=1)
        separator = probabilities[:, self._separators].sum(axis=1)
        gaps = (separator[a:b].max() for a, b in zip(steps[:-1], steps[1:] + 1, strict=True))
        extents = _extents(best, steps)
        letter = probabilities[:, self._letters].sum(axis=1)
        n = len(best)
        letters = (letter[round(a * n) : round(b * n)].max() for a, b in extents)
        return LineRead(
            text,
            tuple(float(c) for c in confidences),
            tuple(float(g) for g in gaps),
            extents,
            tuple(float(v) for v in letters),
            tuple(float(z) for z in zeros),
        )


def _best_classes(probabilities: np.ndarray) -> np.ndarray:
    """probabilities.argmax(axis=1) of a softmax's steps by classes, the blank (class 0) first.

    A step whose blank takes more than BLANK_SURE has it for its best class; only the other
    steps (1 in 6 on the crops of bibs-dev's photos) are searched, and that search over the
    6,625 classes was half of decoding's CPU.
    """
    best = np.zeros(len(probabilities), np.intp)
    unsure = np.flatnonzero(probabilities[:, 0] <= BLANK_SURE)
    best[unsure] = probabilities[unsure].argmax(axis=1)
    return best


def _extents(best: np.ndarray, steps: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Each read character's steps, from its first to its last repeat, as width fractions."""
    n = len(best)
    extents = []
    for step in steps:
        end = step + 1
        while end < n and best[end] == best[step]:
            end += 1
        extents.append((float(step / n), float(end / n)))
    return tuple(extents)


def _normalise(crop: np.ndarray) -> np.ndarray:
    """The crop as the model's 1 x 3 x 48 x W input in [-1, 1], its aspect kept."""
    height, width = crop.shape[:2]
    width = int(np.clip(np.ceil(REC_HEIGHT * width / max(1, height)), MIN_WIDTH, MAX_WIDTH))
    resized = cv2.resize(crop, (width, REC_HEIGHT), interpolation=cv2.INTER_LINEAR)
    grey = resized if resized.ndim == 2 else cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)
    values = grey.astype(np.float32) / 127.5 - 1.0
    return np.broadcast_to(values, (1, 3, REC_HEIGHT, width)).copy()


_recogniser: PpOcrRecogniser | None = None
_lock = threading.Lock()


def recogniser() -> PpOcrRecogniser:
    """The process's recogniser, created on first use (never at import time)."""
    global _recogniser
    with _lock:
        if _recogniser is None:
            _recogniser = PpOcrRecogniser()
        return _recogniser
