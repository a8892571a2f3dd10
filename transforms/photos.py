"""Reading photos and analysing each one once: the heavy, embarrassingly parallel half.

ReadPhotos lists every file under the images location (any Beam filesystem).
AnalysePhotos hashes each file, groups exact copies so their content is
analysed once, and turns the bytes into `PhotoFacts`: EXIF tags, a perceptual
hash, quality statistics and bib reads, all from a single decode. Facts are
kept in a `FactStore` keyed by image_id and written from `process()` (engines
such as Beam's DaskRunner drop what `finish_bundle` emits), so a re-run, a
live batch or a crashed run resumes without analysing a photo twice.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Iterator

import apache_beam as beam
import cv2
import imagehash
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from PIL import Image, UnidentifiedImageError

from transforms.exif import exif_facts
from transforms.ocr import read_bibs
from transforms.quality import measure_quality
from transforms.records import (
    ANALYSIS_VERSION,
    BibSeen,
    Photo,
    PhotoFacts,
    Quality,
    facts_from_json,
    facts_to_json,
)

# Larger images are refused before decoding: a decompression bomb must not exhaust memory.
MAX_PIXELS = 120_000_000
# Decode with libjpeg's DCT scaling down to about this long side: enough for bib digits.
TARGET_LONG_SIDE = 2000
THUMB_WIDTH = 256
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
_DECODABLE = {"JPEG", "PNG", "MPO", "WEBP", "TIFF", "BMP"}


def photos_pattern(images_root: str) -> str:
    """The glob of every file under the images location, at any depth."""
    return images_root.rstrip("/") + "/**"


def list_photos(images_root: str) -> list[str]:
    """Every file under the images location, listed now rather than inside the pipeline."""
    return sorted(m.path for m in FileSystems.match([photos_pattern(images_root)])[0].metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def image_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unreadable_id(path: str) -> str:
    # A file that cannot be read has no content hash; its path keeps it distinct.
    return hashlib.sha256(b"unreadable:" + path.encode("utf-8", "surrogateescape")).hexdigest()


def folder_of(path: str, root: str) -> str:
    """The first folder of `path` below `root` ("" when the file lies in root itself)."""
    relative = path[len(root) :].lstrip("/") if path.startswith(root) else posixpath.basename(path)
    head, _, rest = relative.partition("/")
    return head if rest else ""


def reduction_for(width: int, height: int) -> int:
    """The largest DCT scale (1, 2, 4) that keeps the long side at TARGET_LONG_SIDE or more."""
    factor = 1
    while factor < 4 and max(width, height) / (factor * 2) >= TARGET_LONG_SIDE:
        factor *= 2
    return factor


def _is_truncated(data: bytes, image_format: str) -> bool:
    # A JPEG cut short still decodes (the rest turns grey), so look for its end marker;
    # 0xFFD9 cannot occur inside entropy-coded data, where 0xFF is always stuffed.
    return image_format in ("JPEG", "MPO") and b"\xff\xd9" not in data[-4096:]


def _scaled(box: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
    return tuple(int(v * factor) for v in box)  # type: ignore[return-value]


def analyse_photo(data: bytes, image_id: str) -> PhotoFacts:
    """Everything the race needs to know from one photo's bytes, from a single decode."""
    try:
        header = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        return PhotoFacts(image_id=image_id, error="not_an_image")
    width, height = header.size
    fmt = header.format or ""
    if fmt not in _DECODABLE:
        return PhotoFacts(image_id=image_id, error="unsupported_format", width=width, height=height)
    if width * height > MAX_PIXELS:
        return PhotoFacts(image_id=image_id, error="image_too_large", width=width, height=height)
    try:
        exif = exif_facts(header)
    except (OSError, ValueError, SyntaxError):
        return PhotoFacts(image_id=image_id, error="bad_exif", width=width, height=height)
    if _is_truncated(data, fmt):
        return PhotoFacts(image_id=image_id, error="truncated_image", width=width, height=height)
    image, factor = decode(data, width, height, fmt)
    if image is None:
        return PhotoFacts(image_id=image_id, error="corrupt_image", width=width, height=height)
    phash, quality = thumbnail_facts(image)
    return PhotoFacts(
        image_id=image_id,
        width=width,
        height=height,
        exif=exif,
        phash=phash,
        quality=quality,
        bibs=bib_reads(image, factor),
    )


def thumbnail_facts(image: np.ndarray) -> tuple[str, Quality]:
    """Perceptual hash and quality statistics of the photo, from one small grey thumbnail."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(
        gray, (THUMB_WIDTH, max(1, THUMB_WIDTH * gray.shape[0] // gray.shape[1])), cv2.INTER_AREA
    )
    return str(imagehash.phash(Image.fromarray(thumb))), measure_quality(thumb)


def decode(data: bytes, width: int, height: int, fmt: str) -> tuple[np.ndarray | None, int]:
    """The photo as BGR pixels at the resolution bibs need, and the reduction factor used."""
    factor = reduction_for(width, height) if fmt in ("JPEG", "MPO") else 1
    return cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor]), factor


def bib_reads(image: np.ndarray, factor: int) -> tuple[BibSeen, ...]:
    """Bib reads with boxes in the full-size photo's pixels."""
    return tuple(
        BibSeen(bib=r.bib, confidence=round(r.confidence, 4), box=_scaled(r.box, factor))
        for r in read_bibs(image)
    )


def read_photo_bibs(path: str) -> tuple[BibSeen, ...]:
    """The bib reads of one photo file, as the pipeline makes them (for `racelens bibs`)."""
    data = read_bytes(path)
    try:
        header = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        return ()
    image, factor = decode(data, *header.size, header.format or "")
    return () if image is None else bib_reads(image, factor)


class FactStore:
    """Photo facts on any Beam filesystem, one small JSON file per image_id.

    One file per photo makes every write atomic (temporary name, then rename)
    and independent of bundles, which is what crash safety and engines that
    drop `finish_bundle` output need.
    """

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.version_root = f"{self.root}/v{ANALYSIS_VERSION}"

    def path_of(self, image_id: str) -> str:
        return f"{self.version_root}/{image_id[:2]}/{image_id}.json"

    def get(self, image_id: str) -> PhotoFacts | None:
        path = self.path_of(image_id)
        try:
            if not FileSystems.exists(path):
                return None
            return facts_from_json(read_bytes(path).decode("utf-8"))
        except (BeamIOError, OSError, ValueError, KeyError):
            return None  # a damaged entry is recomputed, never trusted

    def put(self, facts: PhotoFacts) -> None:
        path = self.path_of(facts.image_id)
        tmp = f"{path}.tmp-{id(facts):x}"
        with FileSystems.create(tmp) as f:
            f.write(facts_to_json(facts).encode("utf-8"))
        FileSystems.rename([tmp], [path])


class _HashFile(beam.DoFn):
    def process(self, path: str) -> Iterator[tuple[str, str]]:
        try:
            yield image_id_of(read_bytes(path)), path
        except (BeamIOError, OSError):
            yield unreadable_id(path), path


class _AnalyseContent(beam.DoFn):
    """(image_id, paths of identical files) -> one Photo per path, analysed once."""

    def __init__(self, store_root: str, images_root: str):
        self._store_root = store_root
        self._images_root = images_root
        self._analysed = Metrics.counter("racelens", "photos_analysed")
        self._reused = Metrics.counter("racelens", "photos_reused")
        self._store: FactStore | None = None

    def setup(self) -> None:
        self._store = FactStore(self._store_root)

    def _facts(self, image_id: str, path: str) -> PhotoFacts:
        stored = self._store.get(image_id)
        if stored is not None:
            self._reused.inc()
            return stored
        try:
            data = read_bytes(path)
        except (BeamIOError, OSError):
            return PhotoFacts(image_id=image_id, error="unreadable")  # may be transient: not stored
        facts = analyse_photo(data, image_id)
        self._store.put(facts)
        self._analysed.inc()
        return facts

    def process(self, element: tuple[str, list[str]]) -> Iterator[Photo]:
        image_id, paths = element
        paths = sorted(paths)
        facts = self._facts(image_id, paths[0])
        for path in paths:
            yield Photo(path=path, folder=folder_of(path, self._images_root), facts=facts)


class ReadPhotos(beam.PTransform):
    """Every file under the images location, as a path."""

    def __init__(self, images_root: str):
        super().__init__()
        self._pattern = photos_pattern(images_root)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "MatchFiles"
            >> fileio.MatchFiles(
                self._pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW
            )
            | "Paths" >> beam.Map(lambda meta: meta.path)
        )


class AnalyseContent(beam.PTransform):
    """(image_id, paths of identical files) -> one Photo per path; stored facts are reused."""

    def __init__(self, store_root: str, images_root: str):
        super().__init__()
        self._fn = _AnalyseContent(store_root, images_root.rstrip("/"))

    def expand(self, groups: beam.PCollection) -> beam.PCollection:
        return groups | "Analyse" >> beam.ParDo(self._fn)


class AnalysePhotos(beam.PTransform):
    """Paths -> Photos with their facts (exact copies share one analysis)."""

    def __init__(self, store_root: str, images_root: str):
        super().__init__()
        self._store_root = store_root
        self._images_root = images_root.rstrip("/")

    def expand(self, paths: beam.PCollection) -> beam.PCollection:
        return (
            paths
            | "HashFiles" >> beam.ParDo(_HashFile())
            | "GroupCopies" >> beam.GroupByKey()
            | "AnalyseContent" >> AnalyseContent(self._store_root, self._images_root)
        )
