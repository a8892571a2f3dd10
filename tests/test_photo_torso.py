"""AnalysePhotos' torso pass: faces found on the photo guide a second bib search below them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_ocr import FACE, SMALL_BIB, Bib, _photo
from transforms import photos
from transforms.records import FaceSeen, PhotoFacts


@pytest.mark.parametrize(("faces_on", "bibs"), [(True, ["4807"]), (False, [])])
def test_analyse_photo__faces_on_read_the_bib_below_a_face(
    monkeypatch: pytest.MonkeyPatch, faces_on: bool, bibs: list[str]
) -> None:
    image, _ = _photo([SMALL_BIB])
    data = cv2.imencode(".png", image)[1].tobytes()  # a full-size decode: factor 1
    face = FaceSeen(box=FACE, embedding=(0.0,) * 128)
    monkeypatch.setattr(photos, "find_faces", lambda gray, factor, models: (face,))

    facts = photos.analyse_photo(data, "torso", object() if faces_on else None)

    assert [b.bib for b in facts.bibs if b.confidence >= 0.75] == bibs
    assert facts.faces == ((face,) if faces_on else None)


@pytest.mark.parametrize(("faces_on", "bibs"), [(True, []), (False, ["427"])])
def test_analyse_photo__faces_on_a_line_on_a_face_is_not_read(
    monkeypatch: pytest.MonkeyPatch, faces_on: bool, bibs: list[str]
) -> None:
    image, [digits] = _photo([Bib("427", (600, 450))])
    data = cv2.imencode(".png", image)[1].tobytes()  # a full-size decode: factor 1
    face = FaceSeen(
        box=(digits[0] - 10, digits[1] - 20, digits[2] + 10, digits[3] + 20), embedding=()
    )
    monkeypatch.setattr(photos, "find_faces", lambda gray, factor, models: (face,))

    facts = photos.analyse_photo(data, "face", object() if faces_on else None)

    assert [b.bib for b in facts.bibs if b.confidence >= 0.75] == bibs


def test_bib_reads__lines_on_faces_are_not_read_face_boxes_scaled_to_the_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = []
    monkeypatch.setattr(
        photos, "read_bibs", lambda image, start_list, faces: seen.append(faces) or []
    )
    face = FaceSeen(box=tuple(2 * v for v in FACE), embedding=())

    assert photos.bib_reads(np.zeros((60, 80), np.uint8), 2, faces=(face,)) == ()
    assert seen == [[FACE]]


def test_torso_bibs__face_boxes_are_scaled_to_the_decode_and_reads_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image, _ = _photo([SMALL_BIB])
    half = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None, fx=0.5, fy=0.5)
    seen = []
    monkeypatch.setattr(
        photos, "torso_reads", lambda gray, faces, found: seen.append((faces, found)) or found
    )
    bib = photos.BibSeen(bib="12", confidence=0.5, box=(20, 40, 60, 80))
    face = FaceSeen(box=tuple(2 * v for v in FACE), embedding=())

    assert photos.torso_bibs(half, 2, (face,), (bib,)) == (bib,)
    assert seen == [([FACE], [photos.BibRead("12", 0.5, (10, 20, 30, 40))])]


def test_analyse_content__faces_off_analyses_again_where_faces_were_found(
    tmp_path: Path,
) -> None:
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((200, 300), 128, np.uint8))
    store = photos.FactStore(str(tmp_path / "facts"))
    torso_read = (photos.BibSeen(bib="12", confidence=0.9, box=(0, 0, 9, 9)),)
    face = FaceSeen(box=(0, 0, 9, 9), embedding=())
    # From earlier runs with faces on: one photo with a face (and a torso read), one without.
    store.put(PhotoFacts("id-face", bibs=torso_read, faces=(face,)))
    store.put(PhotoFacts("id-none", bibs=torso_read, faces=()))
    off = photos._AnalyseContent(str(tmp_path / "facts"), str(tmp_path / "images"))
    off.setup()

    [again] = off.process(("id-face", [str(image)]))
    [reused] = off.process(("id-none", [str(image)]))

    assert (again.facts.bibs, again.facts.faces) == ((), None)
    assert (reused.facts.bibs, reused.facts.faces) == (torso_read, None)
