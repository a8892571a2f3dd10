"""A station renamed in the course after officials decided at it (decisions keyed by its id).

The log names a station by its id: renamed in course.yaml, the station's decisions matched
no station. Its items came back to the queue unseen, and an assignment there made racelens
results end in a traceback (KeyError 'cp1' in the split check). The run's summary names
those decisions, so the official decides again or puts the id back."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cli import main
from tests.conftest import restored_logging

HEADER = "image_id,action,bib,station_id,passed_at,decided_at,by\n"


def racelens(*argv: str) -> int:
    with restored_logging():
        return main(list(argv))


@pytest.fixture(scope="module")
def timed(race: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("renamed") / "results"
    assert (
        racelens(
            "run",
            *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
            *("--start-list", str(race / "startlist.csv"), "--out", str(out)),
            "--no-progress",
        )
        == 0
    )
    return out


def decisions_at_cp1(out: Path, log: Path) -> None:
    """An official's decisions at cp1: a photo assigned there, its camera seen to, and a
    runner kept there (the reinstate of a missed checkpoint's 'result stands')."""
    images = pq.read_table(out / "images.parquet").to_pylist()
    shot = next(i for i in images if i["station_id"] == "cp1" and i["status"] == "passage")
    at = shot["taken_at"].isoformat()
    decided = "2026-05-01T12:00:00+00:00"
    log.write_text(
        HEADER
        + f"{shot['image_id']},assign,{shot['bibs'][0]},cp1,{at},{decided},ola\n"
        + f"{shot['image_id']},seen,,cp1,,{decided},ola\n"
        + f"{shot['image_id']},reinstate,{shot['bibs'][0]},cp1,,{decided},ola\n"
        + f"{shot['image_id']},approve,,cp1,,{decided},ola\n",  # about the photo: it applies
        encoding="utf-8",
    )


def test_results__decisions_at_a_renamed_station_are_named_in_the_summary(
    race: Path, timed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    log = tmp_path / "corrections.csv"
    decisions_at_cp1(timed, log)
    course = yaml.safe_load((race / "course.yaml").read_text(encoding="utf-8"))
    (cp1,) = [s for s in course["stations"] if s["id"] == "cp1"]
    cp1["id"] = "km3"
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(yaml.safe_dump(course, allow_unicode=True), encoding="utf-8")
    capsys.readouterr()
    code = racelens(
        "results",
        *("--out", str(timed), "--course", str(renamed), "--corrections", str(log)),
    )
    summary = capsys.readouterr().out
    assert code == 0, summary  # a traceback before (KeyError 'cp1')
    assert f"corrections applied: 1 from {log}" in summary
    assert (
        "  not applied: 3 about stations no longer in the course (renamed or removed since?): "
        "cp1 (3); put the station's id back in the course, or decide them again in the review "
        "queue"
    ) in summary.splitlines()
    # The photo is timed at the renamed station as read, not at a station gone.
    stations = set(pq.read_table(timed / "passages.parquet").column("station_id").to_pylist())
    assert "km3" in stations and "cp1" not in stations
