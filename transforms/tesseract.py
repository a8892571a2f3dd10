"""Tesseract engines behind one interface (words with confidences and boxes on a page), and
the choice of OCR engine (RACELENS_OCR_ENGINE) between them and PP-OCR (transforms.ppocr).

pytesseract starts a tesseract process per call, and that start-up is most of
its cost (measured: 231 ms per stitched page against 9 ms in-process through
tesserocr, same words on 28 of 28 pages). So the default engine runs
tesseract in-process through tesserocr (its wheel bundles libtesseract; the
language data comes from Debian's tesseract-ocr), and pytesseract stays as
the fallback where tesserocr is not installed. Both read digits only, in one
block of text lines, with the LSTM recogniser.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

WHITELIST = "0123456789"
DPI = "300"  # the stitched pages have no resolution; tell tesseract a sane one
# Word dictionaries are useless for numbers and cost start-up time (init-only settings).
NO_DICTIONARIES = {"load_system_dawg": "0", "load_freq_dawg": "0"}
# Tesseract's OpenMP threads make a call 2x slower on a busy or small machine, and pipeline
# workers already use every core. setdefault keeps an explicit setting of the deployment;
# it must be set before libtesseract starts its thread pool.
THREAD_ENV = {"OMP_THREAD_LIMIT": "1"}


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float  # 0..1
    left: int
    top: int
    height: int


class Engine(Protocol):
    name: str

    def words(self, page: np.ndarray) -> list[Word]: ...


def tessdata_dir() -> str:
    """Where the language data lies: TESSDATA_PREFIX, else Debian's tesseract-ocr location."""
    candidates = (
        [os.environ["TESSDATA_PREFIX"]] if "TESSDATA_PREFIX" in os.environ else []
    ) + sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"), reverse=True)
    for path in candidates:
        if os.path.isfile(os.path.join(path, "eng.traineddata")):
            return path
    raise RuntimeError("no tesseract language data: apt-get install tesseract-ocr")


class InProcessTesseract:
    """libtesseract through tesserocr: one API object per thread, loaded once."""

    name = "tesserocr"

    def __init__(self) -> None:
        for name, value in THREAD_ENV.items():
            os.environ.setdefault(name, value)
        import tesserocr  # imported here so that the fallback works without it

        self._tesserocr = tesserocr
        self._local = threading.local()  # the C++ API object is not thread-safe

    def _api(self):  # noqa: ANN202 (tesserocr has no type stubs)
        api = getattr(self._local, "api", None)
        if api is None:
            t = self._tesserocr
            api = t.PyTessBaseAPI(
                path=tessdata_dir(),
                lang="eng",
                psm=t.PSM.SINGLE_BLOCK,
                oem=t.OEM.LSTM_ONLY,
                variables=NO_DICTIONARIES,
            )
            api.SetVariable("tessedit_char_whitelist", WHITELIST)
            api.SetVariable("user_defined_dpi", DPI)
            self._local.api = api
        return api

    def words(self, page: np.ndarray) -> list[Word]:
        from PIL import Image

        api = self._api()
        api.SetImage(Image.fromarray(page))
        api.Recognize()
        level = self._tesserocr.RIL.WORD
        found: list[Word] = []
        iterator = api.GetIterator()
        while iterator is not None:
            try:
                text = (iterator.GetUTF8Text(level) or "").strip()
            except RuntimeError:  # tesserocr raises where a page has no text at all
                break
            box = iterator.BoundingBox(level)
            if text and box:
                x0, y0, _, y1 = box
                found.append(Word(text, iterator.Confidence(level) / 100.0, x0, y0, y1 - y0))
            if not iterator.Next(level):
                break
        return found


class ProcessTesseract:
    """The tesseract command through pytesseract: slower, but needs only Debian's package."""

    name = "pytesseract"
    CONFIG = f"--oem 1 --psm 6 -c tessedit_char_whitelist={WHITELIST} -c user_defined_dpi={DPI}"

    def words(self, page: np.ndarray) -> list[Word]:
        import pytesseract

        data = pytesseract.image_to_data(
            page, config=self.CONFIG, output_type=pytesseract.Output.DICT
        )
        return [
            Word(text.strip(), float(conf) / 100.0, left, top, height)
            for text, conf, left, top, height in zip(
                data["text"], data["conf"], data["left"], data["top"], data["height"], strict=True
            )
            if text.strip() and float(conf) >= 0
        ]


_ENGINES = {"tesserocr": InProcessTesseract, "pytesseract": ProcessTesseract}
PPOCR = "ppocr"  # transforms.ppocr: not a tesseract, but chosen by the same setting
ENGINE_ENV = "RACELENS_OCR_ENGINE"
_default: Engine | None = None
_lock = threading.Lock()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def engine_name() -> str:
    """The engine RACELENS_OCR_ENGINE names: ppocr, tesserocr or pytesseract.

    "auto" (the default) is ppocr where rapidocr-onnxruntime is installed (it reads real bibs
    best, bench/bib_eval.py), else tesserocr, else pytesseract.
    """
    name = os.environ.get(ENGINE_ENV, "auto")
    if name == "auto":
        if _installed("rapidocr_onnxruntime") and _installed("onnxruntime"):
            return PPOCR
        return "tesserocr" if _installed("tesserocr") else "pytesseract"
    if name != PPOCR and name not in _ENGINES:
        raise ValueError(
            f"unknown OCR engine '{name}' (use {PPOCR}, {', '.join(_ENGINES)} or auto)"
        )
    return name


def make_engine(name: str = "auto") -> Engine:
    """A tesseract engine by name; "auto" is tesserocr when it is installed, else pytesseract."""
    if name == "auto":
        try:
            return InProcessTesseract()
        except ImportError:
            return ProcessTesseract()
    if name not in _ENGINES:
        raise ValueError(f"unknown OCR engine '{name}' (use {', '.join(_ENGINES)} or auto)")
    return _ENGINES[name]()


def default_engine() -> Engine:
    """The process's tesseract engine, created on first use (never at import time)."""
    global _default
    with _lock:
        if _default is None:
            name = os.environ.get(ENGINE_ENV, "auto")
            _default = make_engine(name if name in _ENGINES else "auto")
        return _default
