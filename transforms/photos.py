"""Reading photos and analysing each one once: the heavy, embarrassingly parallel half.

ReadPhotos lists every file under the images location (any Beam filesystem).
AnalysePhotos hashes each file, groups exact copies so their content is
analysed once, and turns the bytes into `PhotoFacts`: EXIF tags, a perceptual
hash, quality statistics, bib reads and (where face matching is on) faces, all
from a single grey decode. Facts are
kept in a `FactStore` keyed by image_id and written from `process()` (engines
such as Beam's DaskRunner drop what `finish_bundle` emits), so a re-run, a
live batch or a crashed run resumes without analysing a photo twice.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import posixpath
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import apache_beam as beam
import cv2
import imagehash
import numpy as np
from apache_beam import coders
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.watch import PollFn, PollResult
from apache_beam.metrics import Metrics
from apache_beam.utils.timestamp import Timestamp
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from transforms.bibs import StartList
from transforms.exif import exif_facts
from transforms.faces import FaceModels, face_models, find_faces
from transforms.hashes import HashCache, Stamp
from transforms.ocr import BibRead, read_bibs, torso_reads
from transforms.ppocr import recogniser
from transforms.quality import measure_quality
from transforms.records import (
    ANALYSIS_VERSION,
    BibSeen,
    FaceSeen,
    Photo,
    PhotoFacts,
    Quality,
    facts_from_json,
    facts_to_json,
)
from transforms.tesseract import PPOCR, engine_name
from transforms.write import _is_local, listed_files, write_atomically

# Larger images are refused before decoding: a decompression bomb must not exhaust memory.
MAX_PIXELS = 120_000_000
# Decode with libjpeg's DCT scaling down to about this long side: enough for bib digits.
TARGET_LONG_SIDE = 2000
THUMB_WIDTH = 256
_KEEP_WHAT_ARRIVED = threading.Lock()  # Pillow's switch for cut-short JPEGs is process-wide
# Every stage works on grey (bib search, OCR, phash, quality), so photos are decoded straight
# to grey: libjpeg skips the colour planes' IDCT and upsampling and there is no colour
# conversion, about 10 of 25 ms (CPU) per 12 MP photo (bench/perf.py).
_REDUCED = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
}
_DECODABLE = {"JPEG", "PNG", "MPO", "WEBP", "TIFF", "BMP"}
# How a damaged JPEG or PNG begins, to tell a broken photo from a file that is none.
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
# HEIC/AVIF photos are ISO media files whose first box names one of these brands; racelens
# has no decoder for them. Other ISO media files (MP4, MOV) are videos.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif"}
_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")

log = logging.getLogger(__name__)


class ListPhotos(PollFn):
    """A poll of the images location (for `apache_beam.io.watch.Watch`): every file under it
    as a text path, as ReadPhotos lists them. Beam's MatchContinuously matched a pattern,
    walked from the folder holding its first wildcard character: for a photos folder named
    'race [2026]', the folder above, every race on that disk, at each poll; and it left out
    the entries list_photos gives a row (broken links, folders it cannot list)."""

    def __call__(self, images_root: str) -> PollResult:
        now = Timestamp.now()
        return PollResult.incomplete(list_photos(images_root), timestamp=now).with_watermark(now)

    def default_output_coder(self) -> coders.Coder:
        return coders.StrUtf8Coder()


def list_photos(images_root: str) -> list[str]:
    """Every file under the images location, listed now rather than inside the pipeline."""
    matched = listed_files(images_root)
    return sorted([text_path(m.path) for m in matched] + skipped_entries(images_root))


def text_path(path: str) -> str:
    """A listed path as UTF-8 text, which Beam's coders, JSON and Parquet require.

    Python reads a file name that is not UTF-8 with each undecodable byte as a lone
    surrogate (os.fsdecode); such a byte is written as \\xNN instead (caf\\xe9.jpg).
    UTF-8 names, which cameras and phones write, are unchanged.
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def os_path(path: str) -> str:
    """The local file name behind a `text_path` (unchanged for every UTF-8 name)."""
    if not _is_local(path) or "\\x" not in path or os.path.lexists(path):
        return path  # a real name may contain a backslash and an x: it exists as written
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), path)


def skipped_entries(images_root: str) -> list[str]:
    """Entries under a local images folder that Beam's listing leaves out, as text paths.

    Beam walks folders without following links (a link loop would list files forever, a
    folder linked twice would count its photos twice) and drops entries it cannot stat:
    links to folders, broken links and link loops; and folders it cannot list (their
    photos would be lost without a word). Each is still an input that gets a row.
    """
    if not _is_local(images_root):
        return []
    skipped: list[str] = []
    unlisted: list[str] = []  # os.walk reports each folder it cannot list, the error naming it
    for folder, dirs, files in os.walk(images_root, onerror=lambda e: unlisted.append(e.filename)):
        subfolders = [os.path.join(folder, d) for d in dirs]
        skipped += filter(os.path.islink, subfolders)
        # os.path.exists follows links: False for a broken link or a link loop.
        skipped += (p for p in (os.path.join(folder, f) for f in files) if not os.path.exists(p))
    return sorted(text_path(path) for path in skipped + unlisted)


def read_bytes(path: str) -> bytes:
    """The bytes of a listed file; OSError for an entry that is no regular file."""
    with _opened(path) as f:
        return f.read()


def _opened(path: str) -> BinaryIO:
    if _is_local(path):
        path = os_path(path)
        if not stat.S_ISREG(os.stat(path).st_mode):
            # Reading a FIFO would wait forever for a writer; a folder has no bytes.
            raise OSError(errno.EINVAL, "not a regular file", path)
    return FileSystems.open(path, compression_type="uncompressed")


# A listed file is read this much at a time where it is no photo: a camera's videos under
# --images (gigabytes each) were read whole into a worker's memory, on every run.
HEAD_BYTES = 2**20
# How the photos begin whose header may lie beyond the head, or that are damaged: read whole.
_PHOTO_STARTS = (*_SIGNATURES, b"II*\x00", b"MM\x00*")  # JPEG, PNG, TIFF


def read_photo_bytes(path: str, digest: hashlib._Hash | None = None) -> bytes:
    """The bytes of a listed file that may be a photo; of one that is none, its first
    HEAD_BYTES, which tell that as well as the whole file would (analyse_photo says why
    from them). With `digest`, all of its bytes are hashed into it, a chunk at a time.
    OSError for an entry that is no regular file."""
    with _opened(path) as f:
        head = f.read(HEAD_BYTES)
        whole = len(head) < HEAD_BYTES
        if not whole and _may_be_photo(head):
            f.seek(0)
            head, whole = f.read(), True
        if digest is not None:
            digest.update(head)
            while not whole and (chunk := f.read(HEAD_BYTES)):
                digest.update(chunk)
        return head


def _may_be_photo(head: bytes) -> bool:
    """Whether a file beginning with `head` may be a photo whose rest is needed."""
    if head.startswith(_PHOTO_STARTS):
        return True
    try:
        open_photo(head)
    except Unusable:
        return False  # no photo, a format it cannot decode, or one too large: the head tells
    return True


def file_id(path: str) -> str:
    """The image_id of a listed file: its bytes' sha256, read a chunk at a time where it is
    no photo; `unreadable_id` where it cannot be read."""
    digest = hashlib.sha256()
    try:
        read_photo_bytes(path, digest)
    except (BeamIOError, OSError):
        return unreadable_id(path)
    return digest.hexdigest()


def stamp_of(path: str) -> Stamp | None:
    """The stamp of a local listed file, links followed; None for another or none."""
    if not _is_local(path):
        return None
    try:
        st = os.stat(os_path(path))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cached_file_id(path: str, hashes: HashCache | None) -> str:
    """file_id(path), taken from `hashes` where they hold it, kept there where not."""
    if hashes is None:
        return file_id(path)
    stamp = stamp_of(path)
    image_id = hashes.get(path, stamp)
    if image_id is None:
        image_id = file_id(path)
        # Not where it changed while it was read, nor where it could not be read (its
        # permissions changed may not change its stamp on every filesystem).
        if stamp_of(path) == stamp and image_id != unreadable_id(path):
            hashes.put(path, stamp, image_id)
    return image_id


def unreadable_reason(path: str) -> str:
    """Why a listed entry could not be read: symlink_loop, not_a_file or unreadable."""
    if not _is_local(path):
        return "unreadable"
    local = os_path(path)
    try:
        mode = os.stat(local).st_mode
    except OSError as e:
        return "symlink_loop" if e.errno == errno.ELOOP else "unreadable"  # ELOOP: a -> b -> a
    if stat.S_ISDIR(mode) and not os.path.islink(local):
        return "unreadable"  # a folder is listed only where it could not be listed itself
    if stat.S_ISDIR(mode):
        # A link to the folder it lies in, or above it, is a loop; others are linked folders.
        target, folder = os.path.realpath(local), os.path.realpath(os.path.dirname(local))
        return "symlink_loop" if os.path.commonpath([target, folder]) == target else "not_a_file"
    return "unreadable" if stat.S_ISREG(mode) else "not_a_file"  # FIFO, socket, device


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
    # A PNG ends with its IEND chunk.
    if image_format == "PNG":
        return b"IEND" not in data[-4096:]
    return image_format in ("JPEG", "MPO") and b"\xff\xd9" not in data[-4096:]


def unopenable_reason(data: bytes) -> str:
    """Why bytes that Pillow cannot open are no photo: empty, broken, HEIC or something else."""
    if not data:
        return "empty_file"
    for signature, image_format in _SIGNATURES.items():
        if data.startswith(signature):
            return "truncated_image" if _is_truncated(data, image_format) else "corrupt_image"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "unsupported_format"
    return "not_an_image"  # a video, an archive, a document...


class Unusable(Exception):
    """Bytes that are no photo racelens can analyse, with the stable reason word why."""

    def __init__(self, reason: str, width: int = 0, height: int = 0):
        super().__init__(reason)
        self.reason, self.width, self.height = reason, width, height


def open_photo(data: bytes) -> Image.Image:
    """The photo's header, opened without decoding pixels; raises Unusable."""
    try:
        header = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # Pillow's own limit, far above MAX_PIXELS
        raise Unusable("image_too_large") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise Unusable(unopenable_reason(data)) from e
    width, height = header.size
    if header.format not in _DECODABLE:
        raise Unusable("unsupported_format", width, height)
    if width * height > MAX_PIXELS:
        raise Unusable("image_too_large", width, height)
    return header


def _scaled(box: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
    return tuple(int(v * factor) for v in box)  # type: ignore[return-value]


def _reduced(box: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
    """A full-size box in the frame of a decode at 1/`factor` (the inverse of _scaled)."""
    return tuple(v // factor for v in box)  # type: ignore[return-value]


def analyse_photo(data: bytes, image_id: str, faces: FaceModels | None = None) -> PhotoFacts:
    """Everything the race needs to know from one photo's bytes, from a single decode.

    Faces are looked for only with `faces` (the models); without, `faces` stays None.
    dlib's descriptors are as good on the grey decode as on colour (faces-dev: the same
    correct, wrong and review counts), so faces need no decode of their own.
    """
    try:
        header = open_photo(data)
    except Unusable as e:
        return PhotoFacts(image_id=image_id, error=e.reason, width=e.width, height=e.height)
    width, height = header.size
    fmt = header.format or ""
    try:
        exif = exif_facts(header)
    except (OSError, ValueError, SyntaxError):
        return PhotoFacts(image_id=image_id, error="bad_exif", width=width, height=height)
    truncated = _is_truncated(data, fmt)
    gray, factor = (arrived if truncated else decode)(data, width, height, fmt)
    if gray is None:
        error = "truncated_image" if truncated else "corrupt_image"
        return PhotoFacts(image_id=image_id, error=error, width=width, height=height)
    width, height = upright(width, height, gray)
    phash, quality = thumbnail_facts(gray)
    found = None if faces is None else find_faces(gray, factor, faces)
    bibs = bib_reads(gray, factor, faces=found or ())
    return PhotoFacts(
        image_id=image_id,
        width=width,
        height=height,
        exif=exif,
        phash=phash,
        quality=quality,
        bibs=bibs if not found else torso_bibs(gray, factor, found, bibs),
        faces=found,
        truncated=truncated,
    )


def upright(width: int, height: int, decoded: np.ndarray) -> tuple[int, int]:
    """The stored photo's width and height in the frame it was `decoded` in: the decoders turn
    it upright by its EXIF orientation (as the dashboard shows it), and its boxes are in that
    frame, so a portrait shot with the camera on its side is taller than wide here too."""
    rows, columns = decoded.shape[:2]
    return (height, width) if (rows > columns) != (height > width) else (width, height)


def thumbnail_facts(gray: np.ndarray) -> tuple[str, Quality]:
    """Perceptual hash and quality statistics of the grey photo, from one small thumbnail."""
    thumb = thumbnail(gray)
    return str(imagehash.phash(Image.fromarray(thumb))), measure_quality(thumb)


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The photo THUMB_WIDTH wide, without aliasing. Gaussian pyramid steps halve it while it
    is twice as wide or more, then INTER_AREA shrinks the rest: INTER_AREA alone costs
    4.6 CPU ms from 2000 px, this 1.2 ms."""
    size = (THUMB_WIDTH, max(1, THUMB_WIDTH * gray.shape[0] // gray.shape[1]))
    while gray.shape[1] >= 2 * THUMB_WIDTH:
        gray = cv2.pyrDown(gray)
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def decode(data: bytes, width: int, height: int, fmt: str) -> tuple[np.ndarray | None, int]:
    """The photo in grey at the resolution bibs need, and the reduction factor used."""
    factor = reduction_for(width, height) if fmt in ("JPEG", "MPO") else 1
    return cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor]), factor


def arrived(data: bytes, width: int, height: int, fmt: str) -> tuple[np.ndarray | None, int]:
    """What arrived of a JPEG cut short (an upload that broke off), in grey as `decode` gives
    it, the part lost grey; None where nothing decodes (a PNG, a JPEG cut in its header).

    The top of the photo holds its runner as often as not, and its EXIF is intact: rejecting
    it lost the athlete with no word (a finish photo cut at 97 %: the athlete dns). OpenCV
    decodes nothing of such a JPEG, so Pillow reads it, at the same DCT scale; Pillow keeps
    what arrived only under a process-wide switch, held here for this one load."""
    if fmt not in ("JPEG", "MPO"):
        return None, 1
    factor = reduction_for(width, height)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (width // factor, height // factor))  # the scale, as OpenCV's
            with _KEEP_WHAT_ARRIVED:
                ImageFile.LOAD_TRUNCATED_IMAGES = True
                try:
                    image.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
            # Upright, as OpenCV decodes a whole photo: its boxes are in the frame shown.
            grey = np.asarray(ImageOps.exif_transpose(image).convert("L"))
    except (OSError, ValueError, SyntaxError):
        return None, factor
    return grey, round(max(width, height) / max(grey.shape))


def bib_reads(
    image: np.ndarray,
    factor: int,
    start_list: StartList | None = None,
    faces: tuple[FaceSeen, ...] = (),
) -> tuple[BibSeen, ...]:
    """Bib reads with boxes in the full-size photo's pixels (only listed bibs, given a list)."""
    boxes = [_reduced(f.box, factor) for f in faces]
    return _seen(read_bibs(image, start_list, boxes), factor)


def _seen(reads: list[BibRead], factor: int) -> tuple[BibSeen, ...]:
    """Reads in a decode at 1/`factor` as facts, boxes in full-size pixels."""
    return tuple(
        BibSeen(
            bib=r.bib,
            confidence=round(r.confidence, 4),
            box=_scaled(r.box, factor),
            unprefixed=round(r.unprefixed, 4),
        )
        for r in reads
    )


def torso_bibs(
    image: np.ndarray, factor: int, faces: tuple[FaceSeen, ...], bibs: tuple[BibSeen, ...]
) -> tuple[BibSeen, ...]:
    """The bib reads joined by those below the faces without a sure read (ocr.torso_reads):
    faces found anyway guide a second search to bibs the whole photo's search misses."""
    found = [BibRead(b.bib, b.confidence, _reduced(b.box, factor), b.unprefixed) for b in bibs]
    boxes = [_reduced(f.box, factor) for f in faces]
    return _seen(torso_reads(image, boxes, found), factor)


def analysis_models(faces: bool) -> FaceModels | None:
    """Loads what analysing photos loads (once per process: DoFn setup the face models,
    the first photo PP-OCR's recogniser where it reads the bibs), for a zygote to load
    once before it forks the workers that share them (pipeline/workers.py)."""
    if engine_name() == PPOCR:
        recogniser()
    return face_models() if faces else None


def read_photo_bibs(path: str, start_list: StartList | None = None) -> tuple[BibSeen, ...]:
    """The bib reads of one photo file, as the pipeline makes them (for `racelens bibs`);
    raises Unusable with the pipeline's reason for a file it reads none on, unreadable ones
    too (an I/O error ended `racelens bibs` with a traceback). A file that is no photo is not
    read whole (a 2 GB video took 2.3 GB of memory and 4.5 s)."""
    try:
        data = read_photo_bytes(path)
    except (BeamIOError, OSError) as e:
        raise Unusable(unreadable_reason(path)) from e
    header = open_photo(data)
    fmt = header.format or ""
    if _is_truncated(data, fmt):
        raise Unusable("truncated_image", *header.size)
    image, factor = decode(data, *header.size, fmt)
    if image is None:
        raise Unusable("corrupt_image", *header.size)
    return bib_reads(image, factor, start_list)


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
        write_atomically(self.path_of(facts.image_id), facts_to_json(facts).encode("utf-8"))


class _HashFile(beam.DoFn):
    """path -> (image_id, path); with a fact store, a file hashed before is not read again
    while its stamp is unchanged (HashCache)."""

    def __init__(self, store_root: str | None = None):
        self._store_root = store_root
        self._hashes: HashCache | None = None

    def setup(self) -> None:
        self._hashes = HashCache(self._store_root) if self._store_root else None

    def process(self, path: str) -> Iterator[tuple[str, str]]:
        yield cached_file_id(path, self._hashes), path


class _FactsDoFn(beam.DoFn):
    """Analyses photos into the fact store, from `process()`."""

    def __init__(self, store_root: str, faces: bool = False):
        self._store_root = store_root
        self._faces = faces
        self._models: FaceModels | None = None
        self._analysed = Metrics.counter("racelens", "photos_analysed")
        self._reused = Metrics.counter("racelens", "photos_reused")
        self._store: FactStore | None = None

    def setup(self) -> None:
        self._store = FactStore(self._store_root)
        # Workers already use every core: OpenCV's own threads only add hand-over costs,
        # as tesseract's do (measured: 59 against 67 CPU ms per 12 MP photo).
        cv2.setNumThreads(1)
        if self._faces:
            self._models = face_models()

    def _reusable(self, image_id: str) -> PhotoFacts | None:
        """The stored facts as this run needs them; None where they must be analysed.

        Where face matching is off, faces an earlier run found are not used, and a photo
        where it found some is analysed again (the torso pass below them may have added bib
        reads); where it is on, facts stored while it was off are analysed again.
        """
        stored = self._store.get(image_id)
        if stored is None or stored.error:
            return stored
        if not self._faces:
            if stored.faces:
                return None
            return stored if stored.faces is None else replace(stored, faces=None)
        return stored if stored.faces is not None else None

    def _analyse(self, data: bytes, image_id: str, path: str) -> PhotoFacts:
        """The photo's facts, stored unless the analysis failed."""
        try:
            facts = analyse_photo(data, image_id, self._models)
        except Exception:  # a library's bug on one photo must not stop the race: not stored
            log.exception("analysing %s failed", path)
            return PhotoFacts(image_id=image_id, error="analysis_failed")
        self._store.put(facts)
        self._analysed.inc()
        return facts


class _AnalyseContent(_FactsDoFn):
    """(image_id, paths of identical files) -> one Photo per path, analysed once."""

    def __init__(self, store_root: str, images_root: str, faces: bool = False):
        super().__init__(store_root, faces)
        self._images_root = images_root

    def _facts(self, image_id: str, path: str) -> PhotoFacts:
        """The facts of the file `path`, hashed as `image_id`; where it was replaced since
        (an upload app rewriting it under its name), of its new bytes under their own id:
        analysed under the old one, they were stored as its facts and reused so."""
        stored = self._reusable(image_id)
        if stored is not None:
            self._reused.inc()
            return stored
        digest = hashlib.sha256()
        try:
            data = read_photo_bytes(path, digest)
        except (BeamIOError, OSError):
            # Not stored: the file may be readable on the next run.
            return PhotoFacts(image_id=image_id, error=unreadable_reason(path))
        read_id = digest.hexdigest()
        if read_id != image_id and (stored := self._reusable(read_id)) is not None:
            self._reused.inc()
            return stored
        return self._analyse(data, read_id, path)

    def process(self, element: tuple[str, list[str]]) -> Iterator[Photo]:
        image_id, paths = element
        paths = sorted(paths)
        while paths:
            facts = self._facts(image_id, paths[0])
            # A copy replaced since it was hashed is its own; the others are still copies.
            alike = paths if facts.image_id == image_id else paths[:1]
            for path in alike:
                yield Photo(path=path, folder=folder_of(path, self._images_root), facts=facts)
            paths = paths[len(alike) :]


class _StoreFacts(_FactsDoFn):
    """path -> (image_id, path), the photo's facts stored first; the file is read once."""

    def setup(self) -> None:
        super().setup()
        self._hashes = HashCache(self._store_root)

    def process(self, path: str) -> Iterator[tuple[str, str]]:
        stamp = stamp_of(path)
        known = self._hashes.get(path, stamp)
        if known is not None and self._reusable(known) is not None:
            self._reused.inc()  # hashed before and its facts stored: not read at all
            yield known, path
            return
        digest = hashlib.sha256()
        try:
            data = read_photo_bytes(path, digest)
        except (BeamIOError, OSError):
            yield unreadable_id(path), path  # the timing run finds why it cannot be read
            return
        image_id = digest.hexdigest()
        if stamp_of(path) == stamp:  # not changed while it was read
            self._hashes.put(path, stamp, image_id)
        if self._reusable(image_id) is None:
            self._analyse(data, image_id, path)
        else:
            self._reused.inc()
        yield image_id, path


class ReadPhotos(beam.PTransform):
    """Every file under the images location, as a path."""

    def __init__(self, images_root: str):
        super().__init__()
        self._root = images_root

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return pbegin | "Root" >> beam.Create([self._root]) | "Entries" >> beam.FlatMap(list_photos)


class AnalyseContent(beam.PTransform):
    """(image_id, paths of identical files) -> one Photo per path; stored facts are reused."""

    def __init__(self, store_root: str, images_root: str, faces: bool = False):
        super().__init__()
        # Listed paths are text_paths: the root they start with must be one too.
        self._fn = _AnalyseContent(store_root, text_path(images_root.rstrip("/")), faces)

    def expand(self, groups: beam.PCollection) -> beam.PCollection:
        return groups | "Analyse" >> beam.ParDo(self._fn)


class AnalysePhotos(beam.PTransform):
    """Paths -> Photos with their facts (exact copies share one analysis)."""

    def __init__(self, store_root: str, images_root: str, faces: bool = False):
        super().__init__()
        self._store_root = store_root
        self._images_root = images_root.rstrip("/")
        self._faces = faces

    def expand(self, paths: beam.PCollection) -> beam.PCollection:
        return (
            paths
            | "HashFiles" >> beam.ParDo(_HashFile(self._store_root))
            | "GroupCopies" >> beam.GroupByKey()
            | "AnalyseContent" >> AnalyseContent(self._store_root, self._images_root, self._faces)
        )


class StoreFacts(beam.PTransform):
    """Paths -> (image_id, path), every photo's facts in the store: the analysis alone.

    One step per file, no grouping: a shuffle costs a distributed engine more than it
    saves here. Exact copies may then both be analysed, into the same stored facts.
    """

    def __init__(self, store_root: str, faces: bool = False):
        super().__init__()
        self._fn = _StoreFacts(store_root, faces)

    def expand(self, paths: beam.PCollection) -> beam.PCollection:
        return paths | "Store" >> beam.ParDo(self._fn)
