"""Face identification measured on real faces: correct, wrong and to review.

    racelens faces-eval ../shared/data/faces-dev [--threshold T] [--margin M] [--colour]
    python -m bench.face_eval ../shared/data/faces-dev

DIR holds one folder per set, each with labels.csv (`file,person`) and optionally
group_labels.csv (`file,persons`, persons joined by `;`). For every person ONE
other photo of them is in the gallery and the rest are probes; the gallery
choice rotates over all of a person's photos and the counts add up over the
rotations. People with a single photo stay in the gallery as distractors. A
probe is correct when matched to its person, wrong when matched to another,
and to review otherwise (no face, or a match that is not sure). In group
photos each face is matched against the same galleries: a labelled person is
found when one face is matched to them; a face matched to someone not in the
photo is wrong. Photos are decoded in grey, as the pipeline decodes them,
unless --colour.

With --bibs DIR (../shared/data/bibs-dev: boxes.csv has each bib's box and its
runner's face box), it also measures association, each labelled bib tied to the
labelled faces and to the faces the detector finds, and the time to find and
describe the faces of a 12 MP photo (bibs-dev photos enlarged to 12 MP, decoded
as the pipeline decodes them), and on all of them how many of the faces HOG's whole
pyramid finds the pipeline's cheaper search finds too.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from transforms.faces import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    FaceModels,
    Gallery,
    associate,
    detect_faces,
    detect_portrait_face,
    embed_face,
    face_models,
    find_faces,
    hog_faces,
    match_face,
    searched_image,
)
from transforms.photos import decode

TWELVE_MP = 12_000_000
TIMED_PHOTOS = 4


@dataclass(frozen=True)
class Probe:
    file: str
    person: str
    embedding: np.ndarray | None  # None: no face found


@dataclass(frozen=True)
class Group:
    file: str
    persons: frozenset[str]
    embeddings: tuple[np.ndarray, ...]


@dataclass
class Timing:
    photos: int = 0
    faces: int = 0
    detect_s: float = 0.0
    embed_s: float = 0.0


def _read(path: str, colour: bool) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path}: not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if colour else image


def _faces(image: np.ndarray, portrait: bool, models: FaceModels, timing: Timing) -> list:
    start = time.process_time()
    boxes = (detect_portrait_face if portrait else detect_faces)(image, models)
    middle = time.process_time()
    embeddings = [embed_face(image, box, models) for box in boxes]
    timing.photos += 1
    timing.faces += len(boxes)
    timing.detect_s += middle - start
    timing.embed_s += time.process_time() - middle
    return embeddings


def _rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_set(folder: str, colour: bool, models: FaceModels, timing: Timing):
    """Probes (one per labelled single-person photo; the largest face) and group photos."""
    probes = []
    for row in _rows(os.path.join(folder, "labels.csv")):
        faces = _faces(_read(os.path.join(folder, row["file"]), colour), True, models, timing)
        probes.append(Probe(row["file"], row["person"], faces[0] if faces else None))
    groups = [
        Group(
            row["file"],
            frozenset(row["persons"].split(";")),
            tuple(_faces(_read(os.path.join(folder, row["file"]), colour), False, models, timing)),
        )
        for row in _rows(os.path.join(folder, "group_labels.csv"))
    ]
    return probes, groups


def galleries(probes: list[Probe]) -> list[tuple[Gallery, set[str]]]:
    """One gallery per rotation (one photo per person) and the files it holds."""
    by_person: dict[str, list[Probe]] = {}
    for p in probes:
        by_person.setdefault(p.person, []).append(p)
    rotations = max(len(v) for v in by_person.values())
    result = []
    for r in range(rotations):
        chosen = [photos[r % len(photos)] for photos in by_person.values()]
        result.append(
            (
                Gallery.of((p.person, p.embedding) for p in chosen if p.embedding is not None),
                {p.file for p in chosen},
            )
        )
    return result


def score_probes(probes: list[Probe], threshold: float, margin: float) -> Counter:
    counts: Counter = Counter()
    for gallery, held in galleries(probes):
        for p in probes:
            if p.file in held or p.person not in gallery.athletes():
                continue
            if p.embedding is None:
                counts["review"] += 1
                counts["no_face"] += 1
                continue
            m = match_face(p.embedding, gallery, threshold, margin)
            outcome = "review" if m.bib is None else "correct" if m.bib == p.person else "wrong"
            counts[outcome] += 1
            if m.bib is not None:
                counts["confidence_sum"] += m.confidence
    return counts


def score_groups(
    groups: list[Group], probes: list[Probe], threshold: float, margin: float
) -> Counter:
    counts: Counter = Counter()
    for gallery, _ in galleries(probes):
        for g in groups:
            named = [match_face(e, gallery, threshold, margin).bib for e in g.embeddings]
            named = [b for b in named if b is not None]
            counts["persons"] += len(g.persons)
            counts["found"] += len(g.persons & set(named))
            counts["wrong"] += sum(1 for b in named if b not in g.persons)
            counts["faces"] += len(g.embeddings)
    return counts


def distances(probes: list[Probe]) -> tuple[list[float], list[float]]:
    """Same-person and different-person distances of all pairs of probes with a face."""
    same, other = [], []
    faced = [p for p in probes if p.embedding is not None]
    for i, a in enumerate(faced):
        for b in faced[i + 1 :]:
            d = float(np.linalg.norm(a.embedding - b.embedding))
            (same if a.person == b.person else other).append(d)
    return same, other


def _box(row: dict[str, str], kind: str) -> tuple[int, int, int, int]:
    return tuple(round(float(row[f"{kind}_{k}"])) for k in ("minCol", "minRow", "maxCol", "maxRow"))


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def association_report(bibs_dir: str, models: FaceModels) -> list[str]:
    """Each labelled bib tied to labelled faces, then to detected faces: right, wrong, none."""
    photos: dict[str, list[dict[str, str]]] = {}
    for row in _rows(os.path.join(bibs_dir, "boxes.csv")):
        photos.setdefault(row["file"], []).append(row)
    if not photos:
        raise ValueError(f"{bibs_dir}: no boxes.csv")
    labelled, detected = Counter(), Counter()
    for file, rows in sorted(photos.items()):
        bibs = [_box(r, "bib") for r in rows]
        truth = [_box(r, "face") for r in rows]
        for b, f in associate(bibs, truth).items():
            labelled["right" if f == b else "wrong"] += 1
        labelled["bibs"] += len(bibs)
        found = detect_faces(_read(os.path.join(bibs_dir, file), False), models)
        detected["faces"] += sum(any(_overlap(t, f) >= 0.3 for f in found) for t in truth)
        for b, f in associate(bibs, found).items():
            detected["right" if _overlap(found[f], truth[b]) >= 0.3 else "wrong"] += 1
        detected["bibs"] += len(bibs)
        detected["multi"] += len(rows) > 1
    n = labelled["bibs"]
    return [
        f"  association, {n} labelled bibs in {len(photos)} photos "
        f"({detected['multi']} with several runners):",
        f"    with the labelled faces: tied to their own face {_pct(labelled['right'], n)}, "
        f"to another {labelled['wrong']}, "
        f"untied {_pct(n - labelled['right'] - labelled['wrong'], n)}",
        f"    with detected faces (labelled faces found: {detected['faces']}/{n}): tied to their "
        f"own face {_pct(detected['right'], n)}, to another {detected['wrong']}, untied "
        f"{_pct(n - detected['right'] - detected['wrong'], n)}",
    ]


def _twelve_mp(path: str) -> tuple[np.ndarray, int]:
    """A photo enlarged to 12 MP, JPEG-encoded and decoded as the pipeline decodes it."""
    small = cv2.imread(path, cv2.IMREAD_COLOR)
    scale = (TWELVE_MP / (small.shape[0] * small.shape[1])) ** 0.5
    big = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return decode(data, big.shape[1], big.shape[0], "JPEG")


def twelve_mp_report(bibs_dir: str, models: FaceModels) -> list[str]:
    """CPU ms to find and describe the faces of a 12 MP JPEG decoded as the pipeline does,
    and the pipeline's HOG search against HOG's whole pyramid on every photo, each also
    against the labelled faces."""
    photos: dict[str, list[dict[str, str]]] = {}
    for row in _rows(os.path.join(bibs_dir, "boxes.csv")):
        photos.setdefault(row["file"], []).append(row)
    files = sorted(photos)
    timed = set(files[:: max(1, len(files) // TIMED_PHOTOS)][:TIMED_PHOTOS])
    cpu, faces, search = [], 0, Counter()
    for file in files:
        path = os.path.join(bibs_dir, file)
        gray, factor = _twelve_mp(path)
        if file in timed:
            start = time.process_time()
            faces += len(find_faces(gray, factor, models))
            cpu.append(time.process_time() - start)
        height, width = cv2.imread(path, cv2.IMREAD_GRAYSCALE).shape
        scale = searched_image(gray)[1] * max(gray.shape) / max(height, width)
        labelled = [tuple(v * scale for v in _box(r, "face")) for r in photos[file]]
        search.update(search_check(gray, models, labelled))
    return [
        f"  12 MP photos ({len(cpu)}, decoded in grey at 1/{factor}): faces found and described "
        f"in {1000 * float(np.median(cpu)):.0f} ms CPU per photo (median; {faces} faces)",
        f"  HOG at 12 MP ({len(files)} photos): of the {search['whole']} faces HOG's whole "
        f"pyramid finds, the pipeline's search finds {search['found']} ({search['other']} "
        f"other boxes), in {1000 * search['search_s'] / len(files):.0f} against "
        f"{1000 * search['whole_s'] / len(files):.0f} ms CPU per photo; of the "
        f"{search['labelled']} labelled faces the whole pyramid finds {search['labelled_whole']}, "
        f"the pipeline's search {search['labelled_found']}",
    ]


def search_check(
    gray: np.ndarray, models: FaceModels, labelled: list[tuple[float, ...]]
) -> Counter:
    """The pipeline's HOG search (finer levels around proposals) against the whole pyramid:
    faces of the whole pyramid found (a box overlapping by half), other boxes, CPU seconds;
    and of the `labelled` faces (boxes in the searched image's pixels), how many each finds
    (overlapping by 0.3, as association_report counts them)."""
    searched, _ = searched_image(gray)
    start = time.process_time()
    whole = [(r.left(), r.top(), r.right(), r.bottom()) for r in models.detector(searched, 0)]
    middle = time.process_time()
    found = hog_faces(searched, models)
    end = time.process_time()
    return Counter(
        whole=len(whole),
        found=sum(any(_overlap(w, f) >= 0.5 for f in found) for w in whole),
        other=sum(not any(_overlap(w, f) >= 0.5 for w in whole) for f in found),
        whole_s=middle - start,
        search_s=end - middle,
        labelled=len(labelled),
        labelled_whole=sum(any(_overlap(t, w) >= 0.3 for w in whole) for t in labelled),
        labelled_found=sum(any(_overlap(t, f) >= 0.3 for f in found) for t in labelled),
    )


def _pct(n: float, total: float) -> str:
    return f"{100 * n / total:5.1f} %" if total else "   - "


def report(
    root: str, threshold: float, margin: float, colour: bool, bibs_dir: str | None = None
) -> str:
    models = face_models()
    sets = sorted(
        d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "labels.csv"))
    )
    if not sets:
        raise ValueError(f"{root}: no folder with a labels.csv")
    lines = [
        f"faces-eval {root}: threshold {threshold}, margin {margin}, "
        f"{'colour' if colour else 'grey'} decode"
    ]
    total: Counter = Counter()
    timing = Timing()
    all_same, all_other = [], []
    for name in sets:
        probes, groups = load_set(os.path.join(root, name), colour, models, timing)
        c = score_probes(probes, threshold, margin)
        total.update(c)
        n = c["correct"] + c["wrong"] + c["review"]
        lines.append(
            f"  {name:8s} {len(probes):3d} photos, {n:4d} probes over rotations: "
            f"correct {_pct(c['correct'], n)}  wrong {_pct(c['wrong'], n)}  "
            f"review {_pct(c['review'], n)}  (no face found: {c['no_face']})"
        )
        if groups:
            g = score_groups(groups, probes, threshold, margin)
            lines.append(
                f"  {name:8s} {len(groups)} group photos ({g['faces'] // len(galleries(probes))}"
                f" faces): labelled persons found {g['found']}/{g['persons']}, "
                f"faces named wrongly {g['wrong']} (over rotations)"
            )
        same, other = distances(probes)
        all_same += same
        all_other += other
    n = total["correct"] + total["wrong"] + total["review"]
    accepted = total["correct"] + total["wrong"]
    lines.append(
        f"  all      {n:4d} probes: correct {_pct(total['correct'], n)}  "
        f"wrong {_pct(total['wrong'], n)}  review {_pct(total['review'], n)}"
    )
    if accepted:
        lines.append(
            f"  calibration: mean confidence of accepted matches "
            f"{total['confidence_sum'] / accepted:.3f}, observed precision "
            f"{total['correct'] / accepted:.3f}"
        )
    if all_same and all_other:
        lines.append(
            f"  distances: same person median {np.median(all_same):.3f}, 95th pct "
            f"{np.percentile(all_same, 95):.3f}, max {max(all_same):.3f}; other person min "
            f"{min(all_other):.3f}, 5th pct {np.percentile(all_other, 5):.3f}"
        )
    lines.append(
        f"  time: {1000 * timing.detect_s / timing.photos:.0f} ms detection per photo "
        f"({timing.photos} photos, mixed sizes), {1000 * timing.embed_s / max(1, timing.faces):.0f}"
        f" ms per face for landmarks + descriptor ({timing.faces} faces), CPU"
    )
    if bibs_dir:
        lines += association_report(bibs_dir, models) + twelve_mp_report(bibs_dir, models)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="racelens faces-eval", description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="Folder of face sets (e.g. ../shared/data/faces-dev).")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="Match distance threshold."
    )
    parser.add_argument(
        "--margin", type=float, default=DEFAULT_MARGIN, help="Margin over the second athlete."
    )
    parser.add_argument(
        "--bibs",
        default=None,
        help="bibs-dev folder (boxes.csv): also measure association and ms per 12 MP photo.",
    )
    parser.add_argument(
        "--colour", action="store_true", help="Decode in colour (the pipeline decodes grey)."
    )
    args = parser.parse_args(argv)
    for folder in (args.dir, args.bibs):
        if folder is not None and not os.path.isdir(folder):
            print(f"racelens faces-eval: error: '{folder}' is not a folder", file=sys.stderr)
            return 2
    try:
        print(report(args.dir, args.threshold, args.margin, args.colour, args.bibs))
    except ValueError as e:
        print(f"racelens faces-eval: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
