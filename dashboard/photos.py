"""The photos of a run for the pages: found by image_id only, drawn with their bib boxes.

A photo is opened only when images.parquet lists its image_id, at the path listed there.
Nothing a page receives (a widget value, a query parameter) is ever used as a path, so a
crafted `../../etc/passwd` can only fail to match an image_id. Decoded and drawn photos
are cached as JPEG bytes, keyed by path and file version.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw, ImageFile, ImageFont, ImageOps

from dashboard.data import CACHE_ENTRIES, CACHE_TTL_S, Version, version
from dashboard.review_queue import text_or_none

PHOTO_WIDTH = 1200  # wide enough to judge a finish-line photo on a laptop screen
THUMBNAIL_WIDTH = 360
CROP_WIDTH = 420
CROP_MARGIN = 0.6  # of the box's size on every side: the number with some shirt around it
BOX_COLOUR = (255, 190, 0)
LABEL_TEXT = (20, 20, 20)
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Read:
    """A bib number read on a photo, with its box in full-image pixels (x0, y0, x1, y1)."""

    bib: str
    confidence: float
    box: tuple[int, int, int, int]


def _row(images: pd.DataFrame, image_id: str) -> pd.Series | None:
    rows = images[images["image_id"] == image_id]
    if rows.empty:
        return None
    # An exact copy shares its original's image_id; the original's row has the reads.
    originals = rows[rows["status"] != "duplicate"]
    return (originals if not originals.empty else rows).iloc[0]


def placed_by(images: pd.DataFrame, image_id: str) -> str | None:
    """How the photo's station was decided (images.parquet's placed_by); None where it has
    no row or none was decided, or the results (of a run before the column) do not say."""
    row = _row(images, image_id)
    return None if row is None else text_or_none(row.get("placed_by"))


def listed_path(images: pd.DataFrame, image_id: str) -> str | None:
    """The path images.parquet lists for the photo with this image_id, there or not."""
    row = _row(images, image_id)
    return None if row is None else row["path"]


def photo_path(images: pd.DataFrame, image_id: str) -> str | None:
    """The listed path of the photo with this image_id, if it is listed and still exists."""
    path = listed_path(images, image_id)
    return path if path is not None and os.path.isfile(path) else None


def reads_of(images: pd.DataFrame, image_id: str) -> tuple[Read, ...]:
    row = _row(images, image_id)
    if row is None or row["reads"] is None:
        return ()
    return tuple(
        Read(r["bib"], float(r["confidence"]), tuple(int(v) for v in r["box"]))  # type: ignore[arg-type]
        for r in row["reads"]
        if r["box"] is not None and len(r["box"]) == 4
    )


def _open(path: str) -> Image.Image | None:
    # A JPEG cut short on upload is timed on what arrived (transforms.photos.arrived): the
    # official deciding it must see that part, the rest grey, not "no photo". Pillow keeps
    # what arrived only under a process-wide switch: on for this load alone (a page shown
    # meanwhile in another session at worst shows no photo of such a JPEG).
    before, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, True
    try:
        with Image.open(path) as img:
            # The pipeline decodes with EXIF orientation applied; its boxes are in that frame.
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, Image.DecompressionBombError):
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _fit(img: Image.Image, width: int) -> tuple[Image.Image, float]:
    scale = min(1.0, width / img.width)
    if scale == 1.0:
        return img, scale
    return img.resize((round(img.width * scale), round(img.height * scale))), scale


def _draw_reads(img: Image.Image, reads: Iterable[Read], scale: float) -> None:
    draw = ImageDraw.Draw(img)
    # Sized to the photo so that labels stay legible when the page shrinks it to a column.
    font = ImageFont.load_default(size=max(14, round(img.width / 36)))
    line = max(2, round(img.width / 250))
    for r in reads:
        x0, y0, x1, y1 = (round(v * scale) for v in r.box)
        draw.rectangle((x0, y0, x1, y1), outline=BOX_COLOUR, width=line)
        label = f"{r.bib}  {r.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((x0, y0), label, font=font)
        lift = bottom - top + 2 * line
        # Above the box when there is room, else inside its top edge.
        y = y0 - lift if y0 >= lift else y0
        draw.rectangle((x0, y, x0 + right - left + 2 * line, y + lift), fill=BOX_COLOUR)
        draw.text((x0 + line, y + line - (top - y0)), label, fill=LABEL_TEXT, font=font)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _annotated(
    path: str, file_version: Version, reads: tuple[Read, ...], width: int
) -> bytes | None:
    img = _open(path)
    if img is None:
        return None
    img, scale = _fit(img, width)
    _draw_reads(img, reads, scale)
    return _jpeg(img)


@st.cache_data(ttl=CACHE_TTL_S, max_entries=CACHE_ENTRIES, show_spinner=False)
def _crop(path: str, file_version: Version, box: tuple[int, int, int, int]) -> bytes | None:
    img = _open(path)
    if img is None:
        return None
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
    area = (max(0, x0 - dx), max(0, y0 - dy), min(img.width, x1 + dx), min(img.height, y1 + dy))
    if area[2] <= area[0] or area[3] <= area[1]:
        return None
    crop = img.crop(tuple(round(v) for v in area))
    zoom = CROP_WIDTH / crop.width
    return _jpeg(crop.resize((CROP_WIDTH, round(crop.height * zoom)), Image.Resampling.LANCZOS))


def annotated_photo(
    images: pd.DataFrame, image_id: str, width: int = PHOTO_WIDTH, boxes: bool = True
) -> bytes | None:
    """The photo as JPEG, at most `width` wide, with its bib boxes and reads drawn on it."""
    path = photo_path(images, image_id)
    if path is None:
        return None
    return _annotated(path, version(path), reads_of(images, image_id) if boxes else (), width)


def bib_crops(
    images: pd.DataFrame, image_id: str, bibs: Collection[str] | None = None
) -> list[tuple[Read, bytes]]:
    """A zoomed crop around each bib box on the photo (of these bibs only, if given), most
    confident read first."""
    path = photo_path(images, image_id)
    if path is None:
        return []
    reads = [r for r in reads_of(images, image_id) if bibs is None or r.bib in bibs]
    reads.sort(key=lambda r: -r.confidence)
    crops = [(r, _crop(path, version(path), r.box)) for r in reads]
    return [(r, jpeg) for r, jpeg in crops if jpeg is not None]


def photos_zip(images: pd.DataFrame, image_ids: Iterable[str]) -> bytes:
    """The listed photos in a zip, as station/file name; unlisted ids are left out."""
    out = io.BytesIO()
    # JPEGs do not compress further: store them and save the CPU.
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        names: set[str] = set()
        for image_id in dict.fromkeys(image_ids):
            path = photo_path(images, image_id)
            if path is None:
                continue
            station = _row(images, image_id)["station_id"] or "unknown"
            name = f"{station}/{os.path.basename(path)}"
            if name in names:
                name = f"{station}/{image_id[:12]}-{os.path.basename(path)}"
            names.add(name)
            archive.write(path, name)
    return out.getvalue()


def photos_of(athlete_photos: pd.DataFrame, bib: str) -> pd.DataFrame:
    """The photos one athlete was identified on (athlete_photos.parquet), in time order."""
    mine = athlete_photos[athlete_photos["bib"] == bib]
    return mine.sort_values(["taken_at", "path"], na_position="last")
