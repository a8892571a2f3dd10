"""Measure bib reading: precision, recall and F1 over bib instances, ms per image.

A data set is a folder with labels.csv (`file,bibs`, bibs joined by `;`, file relative to the
folder). Labels are compared by their digits, since reads are digits only: a crop labelled
"T2182" counts as read when "2182" is read. Each photo is read once; the figures are printed
without a start list and with one (transforms.bibs.StartList, the dictionary the pipeline
and `racelens bibs --start-list` use). The start list holds every labelled bib plus
distractors, as a race lists far more runners than its photos show: numbers drawn at random
(seeded) from the labelled bibs' range until the list holds --start-list-size bibs.

    python bench/bib_eval.py                              # $RACELENS_DATA/bibs-dev
    python bench/bib_eval.py --split tune                 # first half (choose parameters)
    python bench/bib_eval.py --split holdout              # second half (report)
    python bench/bib_eval.py --megapixels 12              # as 12 MP JPEGs, pipeline decode
    python bench/bib_eval.py --scale 0.8                  # the photos at 0.8 of their size
    python bench/bib_eval.py /work/shared/data/bib-crops-dev
    python bench/bib_eval.py --demo 60                    # a synthetic race of 60 athletes
    python bench/bib_eval.py --tesseract-opinion          # does tesseract agree with PP-OCR?
    python bench/bib_eval.py --torso labelled             # + the torso below each labelled face
    python bench/bib_eval.py --reads reads.tsv            # + every photo's reads, to diff

RACELENS_DATA defaults to ../shared/data beside the repository (bench/common.py);
RACELENS_OCR_ENGINE picks the engine (ppocr, tesserocr, pytesseract). --megapixels enlarges
each photo to that size, encodes it as a JPEG and times the pipeline's own decode and read
(transforms.photos), so that ms per photo is what ReadBibs costs on a camera's photo. --demo
generates a race with pipeline.demo into a temporary folder and labels each photo with the
bibs the generator drew unoccluded on it.

--scale reads each photo resized by that factor, as if its bibs were that much larger or
smaller in the frame. The figures move by a bib or two between nearby scales (the 8 and 16
lines read are a ranking's cut; 12 MP JPEGs are searched at 800 px, 1.1 to 1.6 times the
photos' own size, and read like the photos enlarged to 800 px), so a change is a gain only
where it holds at several: bibs-dev with the start list at 0.75 and the label omissions,
main at 2b8e82b, 0.8: P 0.966 R 0.800, 1.0: 1.000 / 0.895, 1.25: 0.989 / 0.895, 12 MP:
0.989 / 0.886.

Label omissions: the data's labels may lack a partly visible bib (its README says so), and a
right read of one counts as a wrong one. bench/label_omissions.csv lists such bibs, each
checked by eye on the photo, with its box (x0 y0 x1 y1, photo pixels) and what the photo
shows; the data folder is never changed. Where the list names bibs of the evaluated folder
(matched by the folder's name), every figure is printed twice: as labelled, and with those
bibs counted as labelled (they are in the start list either way).

--tesseract-opinion asks tesseract (the engine RACELENS_OCR_ENGINE=tesserocr uses) to read
every line PP-OCR read as a bib, on the photos as they are, and counts where it agrees, reads
another number or nothing, by PP-OCR's confidence and whether PP-OCR's read is right (labels
with the omissions), with tesseract's CPU time per photo: a second opinion is worth its cost
only if agreement or disagreement separates right reads from wrong ones.

--torso adds a second search below each runner's face without a sure read
(transforms.ocr.torso_reads): below the faces of the data's boxes.csv ("labelled") or of
dlib's HOG detector ("hog", its cost counted), at the data's own size; or, with --megapixels,
as the pipeline does it ("pipeline": transforms.faces.find_faces on the pipeline's decode,
then transforms.photos.torso_bibs; the faces' cost is the faces stage's, not counted). The
figures are printed before and after the torso pass, with the torso pass's own CPU time.

--errors lists the images read wrongly and counts why each labelled bib was missed with the
start list at the review threshold (miss_cause): nothing read, read only below the
threshold (right, or a prefix letter read as one more digit before it, or another near miss
the list corrected), digits missed, a digit misread, or another number read.

--reads writes every photo's final reads (bib, confidence, box, unprefixed) to a file, one
photo a line in label order: two versions of the reader read alike where the files are equal
(`diff`), a stricter proof than equal figures that a change (for speed, say) lost nothing.

Reliability: for the reads in each confidence bin, the share that is right, so that one can
see whether the review threshold (0.75) separates right reads from wrong ones.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA  # noqa: E402
from transforms import ocr  # noqa: E402
from transforms.bibs import StartList  # noqa: E402
from transforms.ocr import BibRead, match_start_list, read_bibs  # noqa: E402
from transforms.photos import bib_reads, decode, open_photo, torso_bibs  # noqa: E402
from transforms.tesseract import engine_name  # noqa: E402

THRESHOLDS = (0.0, 0.5, 0.75, 0.9)
REVIEW_THRESHOLD = 0.75  # the course setting's default: reads below it go to review
START_LIST_SEED = 0
FACE_BOX = ("minCol", "minRow", "maxCol", "maxRow")  # boxes.csv's face columns as x0 y0 x1 y1
Box = tuple[int, int, int, int]


@dataclass
class Tally:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, truth: Counter[str], read: Counter[str]) -> None:
        hits = sum((truth & read).values())
        self.true_positives += hits
        self.false_positives += sum(read.values()) - hits
        self.false_negatives += sum(truth.values()) - hits

    def line(self) -> str:
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return f"P {precision:.3f}  R {recall:.3f}  F1 {f1:.3f}  (tp {tp}, fp {fp}, fn {fn})"


# Upper edges of the reliability table's confidence bins; REVIEW_THRESHOLD is one of them.
BIN_EDGES = (0.3, 0.5, 0.75, 0.9, 0.97, 1.0)


@dataclass
class Reliability:
    """Per confidence bin: how many reads, how many right, their summed confidence."""

    reads: Counter[int] = field(default_factory=Counter)
    right: Counter[int] = field(default_factory=Counter)
    confidence: Counter[int] = field(default_factory=Counter)

    def add(self, truth: Counter[str], reads: list[BibRead]) -> None:
        for r in reads:
            b = next(i for i, edge in enumerate(BIN_EDGES) if r.confidence < edge or edge == 1.0)
            self.reads[b] += 1
            self.right[b] += r.bib in truth
            self.confidence[b] += r.confidence

    def share_right(self, bins: range) -> str:
        n = sum(self.reads[b] for b in bins)
        share = f"{sum(self.right[b] for b in bins) / n:.3f}" if n else "-"
        return f"precision {share} ({n} reads)"

    def lines(self) -> list[str]:
        review = BIN_EDGES.index(REVIEW_THRESHOLD) + 1  # bins below the threshold
        rows = [
            f"reads >= {REVIEW_THRESHOLD}: {self.share_right(range(review, len(BIN_EDGES)))}; "
            f"reads < {REVIEW_THRESHOLD}: {self.share_right(range(review))}",
            "reliability: confidence bin, reads, right, share right, mean confidence",
        ]
        for b, edge in enumerate(BIN_EDGES):
            low = BIN_EDGES[b - 1] if b else 0.0
            n, right = self.reads[b], self.right[b]
            shares = f"{right / n:.3f}  {self.confidence[b] / n:.3f}" if n else "-      -"
            close = "]" if edge == 1.0 else ")"
            rows.append(f"  [{low:.2f}, {edge:.2f}{close}  {n:4d}  {right:4d}  {shares}")
        return rows


@dataclass
class Result:
    tallies: dict[float, Tally] = field(default_factory=lambda: {t: Tally() for t in THRESHOLDS})
    reliability: Reliability = field(default_factory=Reliability)

    def add(self, truth: Counter[str], reads: list[BibRead]) -> None:
        for threshold, tally in self.tallies.items():
            tally.add(truth, Counter(r.bib for r in reads if r.confidence >= threshold))
        self.reliability.add(truth, reads)

    def print(self, title: str) -> None:
        print(f"  {title}")
        for threshold, tally in self.tallies.items():
            print(f"    confidence >= {threshold:.2f}: {tally.line()}")
        for line in self.reliability.lines():
            print(f"    {line}")


OPINION_BANDS = (REVIEW_THRESHOLD, 0.97)  # PP-OCR confidence: below, between, above
VERDICTS = ("agrees", "differs", "nothing")


@dataclass
class Opinions:
    """Tesseract's verdict on PP-OCR's line reads, by PP-OCR's confidence and correctness."""

    counts: Counter[tuple[int, bool, str]] = field(default_factory=Counter)
    cpu: float = 0.0
    photos: int = 0

    def add(self, image: np.ndarray, truth: Counter[str]) -> None:
        gray = ocr._to_gray(image)
        reads, scale = ocr._line_reads(gray, "ppocr")
        start = cpu_seconds()
        second = ocr._tesseract_reads(gray, [r.line for r in reads], scale) if reads else []
        self.cpu += cpu_seconds() - start
        self.photos += 1
        for r in reads:
            other = next((t.bib for t in second if t.line is r.line), None)
            verdict = VERDICTS[2] if other is None else VERDICTS[other != r.bib]
            band = sum(r.confidence >= edge for edge in OPINION_BANDS)
            self.counts[band, r.bib in truth, verdict] += 1

    def print(self) -> None:
        ms = 1000 * self.cpu / max(1, self.photos)
        print(f"  tesseract's opinion of PP-OCR's line reads ({ms:.0f} ms CPU per photo)")
        columns = [(right, verdict) for right in (True, False) for verdict in VERDICTS]
        names = (f"{'right' if right else 'wrong'} {verdict}" for right, verdict in columns)
        print(f"    {'PP-OCR confidence':18s}" + "".join(f"{n:>15s}" for n in names))
        edges = (0.0, *OPINION_BANDS, 1.0)
        for band in range(len(edges) - 1):
            cells = "".join(f"{self.counts[band, r, v]:15d}" for r, v in columns)
            close = "]" if band == len(edges) - 2 else ")"
            print(f"    [{edges[band]:.2f}, {edges[band + 1]:.2f}{close}{'':6s}{cells}")


def load_labels(folder: Path) -> list[tuple[str, Counter[str]]]:
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = []
    for row in rows:
        digits = (re.sub(r"\D", "", bib) for bib in row["bibs"].split(";"))
        labels.append((row["file"], Counter(d for d in digits if d)))
    return labels


OMISSIONS = Path(__file__).with_name("label_omissions.csv")


def label_omissions(folder: Path, path: Path = OMISSIONS) -> dict[str, Counter[str]]:
    """Bibs visible on the folder's photos that its labels lack, by file (see the docstring)."""
    omitted: dict[str, Counter[str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["data"] == folder.name:
                omitted.setdefault(row["file"], Counter())[row["bib"]] += 1
    return omitted


def split(labels: list[tuple[str, Counter[str]]], part: str) -> list[tuple[str, Counter[str]]]:
    """The first half of the photos by name (tune), the second (holdout), or all.

    Halves by name rather than at random: consecutive photos are bursts of the same
    runners, which a random split would put on both sides.
    """
    labels = sorted(labels)
    half = len(labels) // 2
    return {"tune": labels[:half], "holdout": labels[half:], "all": labels}[part]


def race_start_list(labels: list[tuple[str, Counter[str]]], size: int) -> StartList:
    """Every labelled bib plus random numbers from their range, size bibs in all."""
    bibs = {bib for _, truth in labels for bib in truth}
    numbers = [int(b) for b in bibs]
    rng = random.Random(START_LIST_SEED)
    low, high = min(numbers), max(numbers)
    while len(bibs) < min(size, high - low + 1):
        bibs.add(str(rng.randint(low, high)))
    return StartList(bibs)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (tesseract may run as one)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def as_jpeg(image: np.ndarray, megapixels: float) -> bytes:
    """The image enlarged to about this many megapixels, as a camera's JPEG (quality 90)."""
    zoom = (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    large = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    """The image resized by factor: shrunk without aliasing, enlarged smoothly."""
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interpolation)


def reader(
    megapixels: float | None, torso: bool = False, scale: float | None = None
) -> Callable[[np.ndarray], list[BibRead]]:
    """Reads a photo directly, resized by scale, or as the pipeline reads a camera's JPEG of
    that size; with torso, the pipeline's torso pass follows (its reads in .torso, its CPU s
    in .torso_cpu)."""
    if scale is not None:
        return lambda image: read_bibs(resized(image, scale))
    if megapixels is None:
        return read_bibs
    models = None
    if torso:
        from transforms.faces import face_models, find_faces

        models = face_models()

    def read_as_pipeline(image: np.ndarray) -> list[BibRead]:
        data = as_jpeg(image, megapixels)  # not timed: the camera made it
        start = time.perf_counter(), cpu_seconds()
        header = open_photo(data)
        gray, factor = decode(data, *header.size, header.format or "")
        decoded = time.perf_counter() - start[0], cpu_seconds() - start[1]
        # Not timed: the faces stage's cost. As in the pipeline, lines on them are not read.
        found = () if models is None else find_faces(gray, factor, models)
        start = time.perf_counter(), cpu_seconds()
        bibs = bib_reads(gray, factor, faces=found)
        read_as_pipeline.spent = (
            decoded[0] + time.perf_counter() - start[0],
            decoded[1] + cpu_seconds() - start[1],
        )
        if models is not None:
            start_cpu = cpu_seconds()
            after = torso_bibs(gray, factor, found, bibs) if found else bibs
            read_as_pipeline.torso_cpu = cpu_seconds() - start_cpu
            read_as_pipeline.torso = [BibRead(*astuple(r)) for r in after]
        return [BibRead(*astuple(r)) for r in bibs]

    return read_as_pipeline


def evaluate(
    folder: Path, labels: list[tuple[str, Counter[str]]], args: argparse.Namespace
) -> None:
    read = reader(args.megapixels, args.torso == "pipeline", args.scale)
    named = {name for name, _ in labels}
    omitted = {name: bibs for name, bibs in label_omissions(folder).items() if name in named}
    start_list = race_start_list(labels, args.start_list_size)
    start_list = StartList(start_list.bibs | {b for bibs in omitted.values() for b in bibs})
    warm_up(folder, labels, read)
    # As labelled, and with the label omissions counted as bibs: without and with a start list.
    results = {(o, listed): Result() for o in (False, True) for listed in (False, True)}
    before = {key: Result() for key in results} if args.torso else None
    opinions = Opinions() if args.tesseract_opinion else None
    faces = torso_faces(folder, args.torso) if args.torso in ("labelled", "hog") else None
    wall = cpu = torso_cpu = 0.0
    causes: Counter[str] = Counter()  # why labelled bibs were missed (--errors)
    dump = [] if args.reads else None
    images = 0
    for name, truth in labels:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipped unreadable {name}", file=sys.stderr)
            continue
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        reads = read(image)
        spent = getattr(read, "spent", None)
        if spent is None:
            spent = (time.perf_counter() - start_wall, cpu_seconds() - start_cpu)
        full = truth + omitted.get(name, Counter())
        if before is not None:
            matched = match_start_list(reads, start_list)
            for (with_omitted, listed), result in before.items():
                result.add(full if with_omitted else truth, matched if listed else reads)
        if faces is not None:
            start_cpu = cpu_seconds()
            reads = ocr.torso_reads(image, faces(name, image), reads)
            torso_cpu += cpu_seconds() - start_cpu
        elif args.torso == "pipeline":
            reads, torso_cpu = read.torso, torso_cpu + read.torso_cpu
        wall, cpu = wall + spent[0], cpu + spent[1]
        images += 1
        matched = match_start_list(reads, start_list)
        for (with_omitted, listed), result in results.items():
            result.add(full if with_omitted else truth, matched if listed else reads)
        if args.errors:
            report_errors(name, truth, reads, matched, causes)
        if dump is not None:
            dump.append(reads_line(name, reads))
        if opinions is not None:
            opinions.add(image, full)
    if dump is not None:
        args.reads.write_text("".join(f"{line}\n" for line in dump))
    size = f"{args.megapixels} MP JPEGs, " if args.megapixels else ""
    size += f"scaled by {args.scale}, " if args.scale else ""
    print(
        f"{folder} ({args.split}, {size}engine {engine_name()}): {images} images, "
        f"{sum(sum(t.values()) for _, t in labels)} bibs"
    )
    extra = sum(sum(bibs.values()) for bibs in omitted.values())
    stages = [("", results)] if before is None else [("before the torso pass: ", before)]
    stages += [] if before is None else [(f"with the torso pass ({args.torso}): ", results)]
    for stage, tallies in stages:
        for with_omitted in (False, True) if extra else (False,):
            truths = "as labelled"
            if with_omitted:
                truths = f"with the {extra} label omission(s) of {OMISSIONS.name}"
            tallies[with_omitted, False].print(f"{stage}{truths}, without a start list")
            tallies[with_omitted, True].print(
                f"{stage}{truths}, with a start list of {len(start_list.bibs)} bibs "
                "(labels + random)"
            )
    if args.errors:
        print(f"  missed bibs with the start list at {REVIEW_THRESHOLD}, by cause (as labelled)")
        for cause in MISS_CAUSES:
            print(f"    {causes[cause]:4d}  {cause}")
    if opinions is not None:
        opinions.print()
    if images:
        print(f"  {1000 * wall / images:.0f} ms wall, {1000 * cpu / images:.0f} ms CPU per image")
    if images and args.torso:
        faces_cost = ", HOG's faces included" if args.torso == "hog" else ""
        print(f"  torso pass: {1000 * torso_cpu / images:.0f} ms CPU per image{faces_cost}")


def reads_line(name: str, reads: list[BibRead]) -> str:
    """A photo's reads as one line of text (--reads): name, then each read, best first."""
    return "\t".join(
        [
            name,
            *(
                f"{r.bib} {r.confidence:.6f} {' '.join(map(str, r.box))} {r.unprefixed:.6f}"
                for r in reads
            ),
        ]
    )


def torso_faces(folder: Path, source: str) -> Callable[[str, np.ndarray], list[Box]]:
    """Face boxes (x0, y0, x1, y1) of a photo: the labelled ones, or those HOG finds."""
    if source == "hog":
        from transforms.faces import detect_faces, face_models

        models = face_models()
        return lambda name, image: detect_faces(image, models)
    labelled: dict[str, list[Box]] = {}
    with open(folder / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            box = tuple(round(float(row[f"face_{k}"])) for k in FACE_BOX)
            labelled.setdefault(row["file"], []).append(box)  # type: ignore[arg-type]
    return lambda name, image: labelled.get(name, [])


def warm_up(
    folder: Path,
    labels: list[tuple[str, Counter[str]]],
    read: Callable[[np.ndarray], list[BibRead]],
) -> None:
    """Read one labelled photo untimed, so that the OCR engine's start-up is not counted."""
    for name, truth in labels:
        image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if image is not None and truth:
            read(image)
            return


MISS_CAUSES = (
    "nothing read",
    "right read, below the threshold",
    "prefix letter read as a digit, mapped below the threshold",
    "prefix letter read as a digit, not mapped",
    "other near miss, mapped below the threshold",
    "digits missed",
    "a digit misread",
    "another number",
)


def miss_cause(bib: str, reads: list[BibRead], matched: list[BibRead]) -> str:
    """Why a labelled bib was not read at the review threshold (one of MISS_CAUSES)."""
    read = [r.bib for r in reads]
    one_before = [b for b in read if len(b) == len(bib) + 1 and b.endswith(bib)]
    if not read:
        return MISS_CAUSES[0]
    if bib in read:
        return MISS_CAUSES[1]
    if one_before:
        return MISS_CAUSES[2 if bib in {r.bib for r in matched} else 3]
    if bib in {r.bib for r in matched}:
        return MISS_CAUSES[4]
    if any(len(b) < len(bib) and b in bib for b in read):
        return MISS_CAUSES[5]
    if any(len(b) == len(bib) for b in read):
        return MISS_CAUSES[6]
    return MISS_CAUSES[7]


def report_errors(
    name: str,
    truth: Counter[str],
    reads: list[BibRead],
    matched: list[BibRead],
    causes: Counter[str],
) -> None:
    """Prints an image read wrongly; counts its missed bibs in causes by miss_cause."""
    sure = Counter(r.bib for r in matched if r.confidence >= REVIEW_THRESHOLD)
    for bib in (truth - sure).elements():
        causes[miss_cause(bib, reads, matched)] += 1
    if sure != truth:
        found = ", ".join(f"{r.bib}@{r.confidence:.2f}" for r in reads)
        listed = ", ".join(f"{r.bib}@{r.confidence:.2f}" for r in matched)
        print(f"  {name}: truth {sorted(truth.elements())}, read [{found}], listed [{listed}]")


def demo_race(out: Path, athletes: int, stations: int, seed: int) -> Path:
    """Generates a demo race into out and labels the bibs visible on each of its photos.

    The generator records truth per passage, not per photo, so its plan is replayed here
    with the same seed; this leans on pipeline.demo's planning helpers and must follow them.
    """
    from pipeline import demo

    demo.generate_race(str(out), athletes=athletes, stations=stations, seed=seed)
    rng = np.random.default_rng(seed)
    course = demo._course(stations)
    cameras = demo._cameras(rng, course)
    roster = demo._athletes(rng, athletes)
    shots = demo._shots(rng, demo._passages(rng, roster, course), cameras)
    with open(out / "images" / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "bibs"])
        for path, shot in demo._file_names(shots):
            if shot.kind is not demo.ShotKind.CORRUPT:
                visible = (str(fig.athlete.bib) for fig in shot.figures if not fig.occluded)
                writer.writerow([path, ";".join(visible)])
    return out / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=DATA / "bibs-dev",
        help="folder with labels.csv (default: $RACELENS_DATA/bibs-dev)",
    )
    parser.add_argument(
        "--demo",
        type=int,
        metavar="ATHLETES",
        help="evaluate on a generated demo race of this many athletes instead",
    )
    parser.add_argument("--stations", type=int, default=4, help="demo race stations")
    parser.add_argument("--seed", type=int, default=7, help="demo race seed")
    parser.add_argument("--limit", type=int, help="evaluate only the first LIMIT images")
    parser.add_argument("--errors", action="store_true", help="list images read wrongly")
    parser.add_argument(
        "--tesseract-opinion",
        action="store_true",
        help="count where tesseract agrees with PP-OCR's line reads (see the docstring)",
    )
    parser.add_argument(
        "--split",
        choices=("all", "tune", "holdout"),
        default="all",
        help="photos to use: all, the first half by name (tune) or the second (holdout)",
    )
    parser.add_argument(
        "--start-list-size",
        type=int,
        default=1000,
        help="bibs in the generated start list: the labelled ones plus random numbers",
    )
    parser.add_argument(
        "--megapixels",
        type=float,
        help="enlarge each photo to this size and read it as the pipeline reads a JPEG",
    )
    parser.add_argument(
        "--torso",
        choices=("labelled", "hog", "pipeline"),
        help="also read the torso below each face: the folder's boxes.csv faces, HOG's, "
        "or as the pipeline does (with --megapixels)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        help="read each photo resized by this factor (see the docstring)",
    )
    parser.add_argument(
        "--reads",
        type=Path,
        metavar="FILE",
        help="write every photo's reads to FILE, one photo a line (to diff two versions)",
    )
    args = parser.parse_args()
    if args.scale is not None and (args.scale <= 0 or args.megapixels or args.torso):
        parser.error("--scale takes a factor above 0, without --megapixels or --torso")
    if args.torso in ("labelled", "hog") and (args.megapixels or args.demo is not None):
        parser.error("--torso labelled|hog reads the data's photos at their own size only")
    if args.torso == "pipeline" and not args.megapixels:
        parser.error("--torso pipeline needs --megapixels (the pipeline's decode)")
    cv2.setNumThreads(1)  # one core, as in a pipeline worker (transforms.photos)
    if args.demo is None:
        evaluate(args.folder, split(load_labels(args.folder), args.split)[: args.limit], args)
        return
    with tempfile.TemporaryDirectory(prefix="bib-eval-demo-") as out:
        images = demo_race(Path(out), args.demo, args.stations, args.seed)
        evaluate(images, split(load_labels(images), args.split)[: args.limit], args)


if __name__ == "__main__":
    main()
