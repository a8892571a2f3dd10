"""Which lines read_bibs reads on real photos, how wide their crops are, and what they hold.

    python bench/lines_read.py                        # bibs-dev as it is ($RACELENS_DATA)
    python bench/lines_read.py --megapixels 12        # bibs-dev as 12 MP JPEGs, pipeline decode
    python bench/lines_read.py $RACELENS_DATA/bib-crops-dev
    python bench/lines_read.py /work/race205/faces/images   # photos in a folder tree, decoded

Every recogniser call read_bibs makes is recorded with what asked for it: a candidate line
of the first PP_FIRST_LINES ("first") or of the rest, read where those gave no sure read
("rest"); a wider crop of a number read against its crop's side ("further"); the tighter
second view of a weak read ("again"). It prints, per photo, the calls and their CPU ms (the
recogniser's own, timed around each call); the crops' widths as the recogniser sees them
(48 px high); what the candidate lines read as (a bib at >= 0.75, a weaker bib, text with
digits but no bib, text without a digit, nothing); how many lines of 2..5 characters were
read and how many of each read a bib; the share of a crop's width that is the line itself
rather than the room beside it; and the photos where the rest was read, with its bibs.
The reads are read_bibs' own: the calls are recorded, not changed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bib_eval import load_labels, reader  # noqa: E402
from bench.common import DATA  # noqa: E402
from transforms import ocr, ppocr  # noqa: E402
from transforms.photos import Unusable, bib_reads, decode, open_photo, read_bytes  # noqa: E402

T = TypeVar("T")
KINDS = ("first", "rest", "further", "again")
TEXTS = ("sure bib", "weak bib", "digits, no bib", "no digit", "nothing")


@dataclass
class Call:
    kind: str
    width: int  # the recogniser's input width
    cpu_ms: float
    text: str  # one of TEXTS
    line: ocr._Line | None  # the candidate line, for "first" and "rest"
    scale: float


class Recorder:
    """Within `with`, records every recogniser call read_bibs makes, with its kind."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.kind = "first"
        self.line: ocr._Line | None = None  # the line of the crop last cut
        self.scale = 1.0
        self._patched: list[tuple[object, str, object]] = []

    def __enter__(self) -> Recorder:
        rec = ppocr.recogniser()
        read_lines, reads, cut = rec.read_lines, ocr._ppocr_reads, ocr._cut

        def recorded(crops: list[np.ndarray]) -> list[ppocr.LineRead]:
            out = []
            for crop in crops:
                start = time.process_time()
                read = read_lines([crop])[0]
                spent = (time.process_time() - start) * 1e3
                line = self.line if self.kind in ("first", "rest") else None
                self.calls.append(
                    Call(self.kind, _width(crop), spent, _text(read), line, self.scale)
                )
                out.append(read)
            return out

        def cut_of(
            gray: np.ndarray, box: tuple[int, ...], line: ocr._Line, scale: float
        ) -> np.ndarray:
            self.line = line
            return cut(gray, box, line, scale)

        def batch(gray: np.ndarray, lines: list[ocr._Line], scale: float) -> list[ocr._Read]:
            self.scale = scale
            try:
                return reads(gray, lines, scale)
            finally:
                self.kind = "rest"  # a photo's second batch is its rest

        self._patch(rec, "read_lines", recorded)
        self._patch(ocr, "_ppocr_reads", batch)
        self._patch(ocr, "_cut", cut_of)
        self._patch(ocr, "_looked_further", self._as("further", ocr._looked_further))
        self._patch(ocr, "_looked_again", self._as("again", ocr._looked_again))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def _patch(self, owner: object, name: str, value: object) -> None:
        self._patched.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def _as(self, kind: str, step: Callable[..., T]) -> Callable[..., T]:
        def wrapped(*args: object, **kwargs: object) -> T:
            before, self.kind = self.kind, kind
            try:
                return step(*args, **kwargs)
            finally:
                self.kind = before

        return wrapped

    def photo(self) -> None:
        """A new photo begins: its first candidate lines come first."""
        self.kind = "first"


def _width(crop: np.ndarray) -> int:
    height, width = crop.shape[:2]
    r = ppocr.REC_HEIGHT
    return int(np.clip(np.ceil(r * width / max(1, height)), ppocr.MIN_WIDTH, ppocr.MAX_WIDTH))


def _text(read: ppocr.LineRead) -> str:
    bib = ocr._bib_of(read)
    if bib is not None:
        return "sure bib" if bib.confidence >= ocr.SURE_READ else "weak bib"
    if any(c.isdigit() for c in read.text):
        return "digits, no bib"
    return "no digit" if read.text.strip() else "nothing"


def photos(folder: Path, megapixels: float | None):  # noqa: ANN201
    """(name, read) per photo: a folder with labels.csv read as bib_eval reads it, else every
    photo under the folder decoded as the pipeline decodes it."""
    import cv2

    if (folder / "labels.csv").exists():
        read = reader(megapixels)
        for name, _ in load_labels(folder):
            yield name, lambda name=name: read(cv2.imread(str(folder / name)))
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = read_bytes(str(path))
        try:
            header = open_photo(data)
        except Unusable:
            continue
        gray, factor = decode(data, *header.size, header.format or "")
        if gray is not None:
            yield path.name, lambda gray=gray, factor=factor: bib_reads(gray, factor)


def share(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in np.percentile(values, [10, 25, 50, 75, 90]))


def report(calls_by_photo: dict[str, list[Call]]) -> None:
    n = len(calls_by_photo)
    calls = [c for cs in calls_by_photo.values() for c in cs]
    print(f"{n} photos, {len(calls) / n:.2f} recogniser calls a photo")
    for kind in KINDS:
        of = [c for c in calls if c.kind == kind]
        cpu = sum(c.cpu_ms for c in of)
        print(f"  {kind:8s} {len(of) / n:5.2f} calls, {cpu / n:6.1f} CPU ms a photo")
    print(f"  all      {sum(c.cpu_ms for c in calls) / n:6.1f} CPU ms a photo")
    lines = Counter(sum(c.kind in ("first", "rest") for c in cs) for cs in calls_by_photo.values())
    print("lines read a photo (count: photos):", dict(sorted(lines.items())))
    print("input width, 10/25/50/75/90th percentile:", share([c.width for c in calls]))
    for lo, hi in ((16, 96), (96, 128), (128, 160), (160, 192), (192, 385)):
        of = [c for c in calls if lo <= c.width < hi]
        ms = np.mean([c.cpu_ms for c in of]) if of else 0.0
        print(f"  {lo}-{hi - 1} px: {len(of)} calls, {ms:.1f} CPU ms a call")
    read = [c for c in calls if c.line is not None]
    print("candidate lines read as:", {t: sum(c.text == t for c in read) for t in TEXTS})
    for chars in range(2, ocr.MAX_LINE_CHARS + 1):
        of = [c for c in read if len(c.line.components) == chars]
        bibs = Counter(c.text for c in of)
        print(
            f"  {chars} characters: {len(of)} lines, {bibs['sure bib']} sure bibs, "
            f"{bibs['weak bib']} weak"
        )
    own = [
        (c.line.box[2] - c.line.box[0])
        / (c.line.box[2] - c.line.box[0] + 2 * ocr.PP_VIEW[0] * (c.line.box[3] - c.line.box[1]))
        for c in read
    ]
    print(
        "the line's share of its crop's width, 10/50/90th percentile:",
        " / ".join(f"{v:.2f}" for v in np.percentile(own, [10, 50, 90])),
    )
    rest = {p: cs for p, cs in calls_by_photo.items() if any(c.kind == "rest" for c in cs)}
    print(
        f"photos where the rest was read: {len(rest)}, "
        f"{sum(c.kind == 'rest' for cs in rest.values() for c in cs)} lines"
    )
    for p, cs in rest.items():
        found = Counter(c.text for c in cs if c.kind == "rest")
        if found["sure bib"] or found["weak bib"]:
            print(f"  {p}: {found['sure bib']} sure bibs, {found['weak bib']} weak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DATA / "bibs-dev")
    parser.add_argument("--megapixels", type=float, help="as bench/bib_eval.py's")
    args = parser.parse_args()
    if not args.folder.is_dir():
        parser.error(f"no folder {args.folder}")
    by_photo: dict[str, list[Call]] = {}
    with Recorder() as recorder:
        for name, read in photos(args.folder, args.megapixels):
            recorder.photo()
            start = len(recorder.calls)
            read()
            by_photo[name] = recorder.calls[start:]
    report(by_photo)


if __name__ == "__main__":
    main()
