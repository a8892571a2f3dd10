"""The records that flow between the pipeline's stages.

`PhotoFacts` is what the heavy per-photo analysis learns from a photo's bytes
alone; it knows nothing of the course, so it can be stored once per image_id
and reused when the course, the start list or an official's decision changes.
`Photo` is one input file on its way through race timing.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

# Bump when the analysis changes what it would store, so old facts are recomputed.
ANALYSIS_VERSION = 30


@dataclass(frozen=True)
class BibSeen:
    """One number read on a photo (the OCR's BibRead, in full-image pixels)."""

    bib: str
    confidence: float
    box: tuple[int, int, int, int]
    # The confidence of the bib without its first digit, which the recogniser saw may be a
    # prefix letter (transforms.bibs.listed_bib); 0.0 where nothing says so.
    unprefixed: float = 0.0


@dataclass(frozen=True)
class FaceSeen:
    """One face found on a photo: its box (full-image pixels) and 128-d descriptor."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    embedding: tuple[float, ...]  # dlib's descriptor, rounded (transforms/faces.py)


@dataclass(frozen=True)
class ExifFacts:
    """The EXIF tags that timing needs, as the camera wrote them."""

    datetime_original: str | None = None
    subsec: str | None = None
    offset: str | None = None
    serial: str | None = None
    camera: str | None = None  # "Make Model"
    gps: tuple[float, float] | None = None  # (lat, lon) in degrees


@dataclass(frozen=True)
class Quality:
    """Cheap image statistics on a small grey thumbnail, for covered/blurred cameras."""

    brightness: float  # mean, 0..255
    contrast: float  # standard deviation, 0..255
    sharpness: float  # variance of the Laplacian


@dataclass(frozen=True)
class PhotoFacts:
    image_id: str  # sha256 of the file's bytes, hex
    error: str | None = None  # why the content could not be analysed (a stable reason word)
    width: int = 0
    height: int = 0
    exif: ExifFacts = field(default_factory=ExifFacts)
    phash: str | None = None  # 64-bit perceptual hash, hex
    quality: Quality | None = None
    bibs: tuple[BibSeen, ...] = ()
    faces: tuple[FaceSeen, ...] | None = None  # None: not looked for (face matching off)
    truncated: bool = False  # a JPEG cut short: analysed on what arrived (photos.arrived)
    version: int = ANALYSIS_VERSION


def facts_to_json(facts: PhotoFacts) -> str:
    return json.dumps(asdict(facts), sort_keys=True, separators=(",", ":"))


def facts_from_json(text: str) -> PhotoFacts:
    raw = json.loads(text)
    exif = raw.get("exif") or {}
    if exif.get("gps") is not None:
        exif["gps"] = tuple(exif["gps"])
    quality = raw.get("quality")
    return PhotoFacts(
        image_id=raw["image_id"],
        error=raw.get("error"),
        width=raw.get("width", 0),
        height=raw.get("height", 0),
        exif=ExifFacts(**exif),
        phash=raw.get("phash"),
        quality=Quality(**quality) if quality else None,
        bibs=tuple(
            BibSeen(
                bib=b["bib"],
                confidence=b["confidence"],
                box=tuple(b["box"]),
                unprefixed=b.get("unprefixed", 0.0),
            )
            for b in raw.get("bibs", ())
        ),
        faces=None
        if raw.get("faces") is None
        else tuple(
            FaceSeen(box=tuple(f["box"]), embedding=tuple(f["embedding"])) for f in raw["faces"]
        ),
        truncated=raw.get("truncated", False),
        version=raw.get("version", 0),
    )


# Image statuses of the contract.
PASSAGE = "passage"
REVIEW = "review"
DUPLICATE = "duplicate"
REJECTED = "rejected"
NO_ATHLETE = "no_athlete"

# How a photo's station was decided (Photo.placed_by, images.parquet's placed_by): its folder,
# its camera (serial or name listed for the station), the one station around its GPS
# position, the one of several there its time fits, the one the waves of the athletes read
# on it fit (transforms.exif); its athletes' own passages at an out-and-back spot, or where
# those allow either station, their even pace (transforms.placing); an official's assignment
# (transforms.identify). A timer reading the results sees which stations were inferred.
FOLDER, CAMERA, GPS, TIME, WAVES = "folder", "camera", "gps", "time", "waves"
PASSAGES, PACE, OFFICIAL = "passages", "pace", "official"


@dataclass(frozen=True)
class Photo:
    """One input file: its facts, and what race timing has decided about it so far."""

    path: str
    folder: str  # first folder under the images root ("" for files directly in it)
    facts: PhotoFacts
    station_id: str | None = None
    taken_at: datetime | None = None  # UTC, clock offset applied
    status: str | None = None
    reason: str | None = None
    duplicate_of: str | None = None  # image_id of the photo this one repeats
    duplicate_of_path: str | None = None
    # A photo rejected for want of a station or time keeps taken_at None (dedup, health and
    # re-timing read a taken_at as placed); the official placing it is shown these instead:
    # the time its EXIF gives (UTC, whatever the day) and the stations it may be at (a
    # loop's start and finish, at one place). So is a photo in the folders of several
    # stations (station_conflict), which keeps its first copy's station and time.
    exif_taken_at: datetime | None = None
    could_be_at: tuple[str, ...] = ()
    # How its station was decided (FOLDER ... OFFICIAL above); None while it has no station.
    placed_by: str | None = None

    @property
    def image_id(self) -> str:
        return self.facts.image_id

    def __reduce__(self) -> tuple:
        # Beam encodes a Photo between stages by pickling it: packed, it takes half the bytes
        # (the DirectRunner's launcher holds each collection of Photos whole between stages).
        return unpack_photo, (pack_photo(self),)


@dataclass(frozen=True)
class Sighting:
    """Evidence that an athlete was at a station at a time, from one photo."""

    bib: str
    station_id: str
    at: datetime
    confidence: float
    image_id: str
    method: str  # bib_ocr, face_match, manual
    confirmed: bool  # confident enough (or decided by an official) to need no review
    # An official approved or assigned it: CheckSplits never flags it (internal, no column).
    official: bool = False


# A face descriptor's components are rounded to thousandths (transforms/faces.py) and lie
# within +-1: as int16 thousandths they pack into 256 bytes, exactly, against ~1.2 KB as
# pickled floats (a Photo with faces takes about half the bytes between stages).
MILLI = 1000
PACKED_COMPONENT = np.dtype("<i2")


def pack_embedding(embedding: tuple[float, ...]) -> bytes | tuple[float, ...]:
    """A face descriptor as int16 thousandths where that gives it back exactly, else as it is."""
    milli = np.rint(np.asarray(embedding, np.float64) * MILLI)
    fits = np.abs(milli).max(initial=0) <= np.iinfo(PACKED_COMPONENT).max
    if fits and tuple((milli / MILLI).tolist()) == embedding:
        return milli.astype(PACKED_COMPONENT).tobytes()
    return embedding


def unpack_embedding(packed: bytes | tuple[float, ...]) -> tuple[float, ...]:
    if isinstance(packed, bytes):
        return tuple((np.frombuffer(packed, PACKED_COMPONENT) / MILLI).tolist())
    return packed


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def pack_time(at: datetime | None) -> int | datetime | None:
    """A UTC time as microseconds since the epoch (9 bytes pickled, ~100 as a datetime);
    any other time as it is."""
    return (at - EPOCH) // MICROSECOND if at is not None and at.tzinfo is UTC else at


def unpack_time(packed: int | datetime | None) -> datetime | None:
    return EPOCH + packed * MICROSECOND if isinstance(packed, int) else packed


def _facts_fields(facts: PhotoFacts) -> tuple:
    exif, quality = facts.exif, facts.quality
    return (
        facts.image_id,
        facts.error,
        facts.width,
        facts.height,
        (exif.datetime_original, exif.subsec, exif.offset, exif.serial, exif.camera, exif.gps),
        facts.phash,
        None if quality is None else (quality.brightness, quality.contrast, quality.sharpness),
        tuple((b.bib, b.confidence, b.box, b.unprefixed) for b in facts.bibs),
        None
        if facts.faces is None
        else tuple((f.box, pack_embedding(f.embedding)) for f in facts.faces),
        facts.truncated,
        facts.version,
    )


def _facts_of(fields: tuple) -> PhotoFacts:
    image_id, error, width, height, exif, phash, quality, bibs, faces, truncated, version = fields
    return PhotoFacts(
        image_id=image_id,
        error=error,
        width=width,
        height=height,
        exif=ExifFacts(*exif),
        phash=phash,
        quality=None if quality is None else Quality(*quality),
        bibs=tuple(BibSeen(*b) for b in bibs),
        faces=None
        if faces is None
        else tuple(FaceSeen(box, unpack_embedding(packed)) for box, packed in faces),
        truncated=truncated,
        version=version,
    )


def pack_photo(photo: Photo) -> bytes:
    """A Photo as bytes: its fields as plain tuples, pickled without class or field names.

    About half of what Beam's own encoding of a Photo takes, and a third of the Photo in
    memory: what a GroupByKey of Photos holds in the DirectRunner's launcher."""
    fields = (
        photo.path,
        photo.folder,
        _facts_fields(photo.facts),
        photo.station_id,
        pack_time(photo.taken_at),
        photo.status,
        photo.reason,
        photo.duplicate_of,
        photo.duplicate_of_path,
        pack_time(photo.exif_taken_at),
        photo.could_be_at,
        photo.placed_by,
    )
    return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)


def unpack_photo(data: bytes) -> Photo:
    path, folder, facts, station_id, taken_at, *decided, exif_taken_at, could_be_at, placed_by = (
        pickle.loads(data)
    )
    return Photo(
        path,
        folder,
        _facts_of(facts),
        station_id,
        unpack_time(taken_at),
        *decided,
        unpack_time(exif_taken_at),
        could_be_at,
        placed_by,
    )
