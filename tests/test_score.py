"""Tests of scoring a run against a demo race's truth.csv, on hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.score import score_faces
from tests.conftest import at
from transforms.schemas import PASSAGES, PASSAGES_FILE


def _iso(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


def _write(
    out: Path, truth: list[tuple[str, str, float, str, str]], rows: list[tuple]
) -> tuple[str, str]:
    """truth: (bib, station, seconds, visible, face_only); rows: (bib, station, seconds,
    method)."""
    header = "bib,station_id,passed_at,visible,face_only\n"
    lines = [f"{b},{s},{_iso(t)},{v},{f}\n" for b, s, t, v, f in truth]
    (out / "truth.csv").write_text(header + "".join(lines), encoding="utf-8")
    passages = [
        {
            "bib": bib,
            "station_id": station,
            "passed_at": at(seconds),
            "method": method,
            "confidence": 0.9,
            "image_id": f"img-{bib}-{station}",
            "needs_review": False,
            "photos": 1,
            "review_reason": None,
        }
        for bib, station, seconds, method in rows
    ]
    pq.write_table(pa.Table.from_pylist(passages, schema=PASSAGES), out / PASSAGES_FILE)
    return str(out), str(out / "truth.csv")


TRUTH = [
    ("101", "start", 5, "true", "false"),
    ("101", "cp1", 900, "false", "true"),  # only the face shows who passed
    ("102", "start", 8, "true", "false"),
    ("102", "cp1", 950, "false", "true"),
    ("103", "cp1", 990, "false", "true"),
    ("104", "cp1", 1200, "true", "false"),
]


def test_score_faces__counts_recovered_face_only_passages_and_wrong_matches(
    tmp_path: Path,
) -> None:
    out, truth = _write(
        tmp_path,
        TRUTH,
        [
            ("101", "start", 5.2, "bib_ocr"),
            ("101", "cp1", 901.0, "face_match"),  # recovered
            ("102", "cp1", 950.5, "bib_ocr"),  # found, but not by the face
            ("104", "cp1", 990.3, "face_match"),  # 103's face taken for 104: wrong bib
            ("104", "cp1", 1203.0, "face_match"),  # right bib, 3 s off: wrong
            ("101", "finish", 1800.0, "face_match"),  # 101 never passed there: wrong
        ],
    )
    score = score_faces(out, truth, tolerance_s=2.0)
    assert (score.face_only_passages, score.face_only_found, score.face_recovered) == (3, 2, 1)
    assert (score.face_match_passages, score.face_match_wrong) == (4, 3)
    assert score.wrong[0] == "bib 104 at cp1 08:16:30: truly 103"
    assert score.wrong[2] == "bib 101 at finish 08:30:00: nobody passed then"
    assert "face_match_wrong: 3" in score.report()


def test_score_faces__truth_without_face_column_has_no_face_only_passages(
    tmp_path: Path,
) -> None:
    out, truth = _write(tmp_path, TRUTH, [("104", "cp1", 1200.0, "bib_ocr")])
    lines = Path(truth).read_text(encoding="utf-8").splitlines()
    plain = [",".join(line.split(",")[:4]) for line in lines]  # as `demo` without --faces
    Path(truth).write_text("\n".join(plain) + "\n", encoding="utf-8")
    score = score_faces(out, truth)
    assert score.face_only_passages == score.face_match_passages == score.face_match_wrong == 0


def test_score_faces__match_within_tolerance_either_side_is_right(tmp_path: Path) -> None:
    early, late = 900 - 1.9, 950 + 1.9
    out, truth = _write(
        tmp_path, TRUTH, [("101", "cp1", early, "face_match"), ("102", "cp1", late, "face_match")]
    )
    score = score_faces(out, truth, tolerance_s=2.0)
    assert (score.face_recovered, score.face_match_wrong) == (2, 0)
