"""The streaming graph for runners with unbounded sources: built here, not run (Beam's
DirectRunner cannot run an unbounded file watcher with live windows, ../shared/DESIGN.md);
its windowed parts run with TestStream in tests/test_windows.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import TimestampedValue

from pipeline import streaming
from pipeline.cli import main
from pipeline.options import RaceConfig, RacelensOptions
from pipeline.streaming import TimeLive, build_streaming, runs_locally
from tests.conftest import at, athlete, make_course, photo, read
from tests.test_faces import bib_below, face, needs_models, unit
from transforms.corrections import Correction
from transforms.exif import parse_taken_at
from transforms.records import ExifFacts, FaceSeen


def _argv(race: Path, tmp_path: Path) -> list[str]:
    return [
        "--images", str(race / "images"), "--course", str(race / "course.yaml"),
        "--start-list", str(race / "startlist.csv"), "--out", str(tmp_path / "out"),
        "--streaming",
    ]  # fmt: skip


def _applied(p: beam.Pipeline) -> dict[str, beam.PTransform]:
    found: dict[str, beam.PTransform] = {}

    class Collect(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node) -> None:  # type: ignore[no-untyped-def]
            found[node.full_label] = node.transform

        def visit_transform(self, node) -> None:  # type: ignore[no-untyped-def]
            found[node.full_label] = node.transform

    p.visit(Collect())
    return found


def test_build_streaming__watches_the_folder_and_times_passages_in_event_time_windows(
    race: Path, tmp_path: Path
) -> None:
    opts = PipelineOptions(_argv(race, tmp_path))
    cfg = RaceConfig(opts.view_as(RacelensOptions))
    p = beam.Pipeline(options=opts)
    build_streaming(p, cfg)
    applied = _applied(p)
    assert "WatchPhotos/Watch" in applied
    assert "TimeLive/MarkTooLate" in applied
    sessions = applied["TimeLive/VisitsPerStation/MergeWindows/SessionWindows"].windowing
    settings = cfg.course.settings
    assert sessions.windowfn == window.Sessions(settings.merge_window_s)
    # Triggers have no equality: their text says what they are.
    assert repr(sessions.triggerfn) == repr(
        trigger.AfterWatermark(
            early=trigger.AfterProcessingTime(streaming.EARLY_S), late=trigger.AfterCount(1)
        )
    )
    assert sessions.accumulation_mode == trigger.AccumulationMode.ACCUMULATING
    assert sessions.allowed_lateness == settings.allowed_lateness_s
    snapshots = applied["TimeLive/PanesSnapshots"].windowing
    assert repr(snapshots.triggerfn) == repr(
        trigger.Repeatedly(trigger.AfterProcessingTime(streaming.SNAPSHOT_S))
    )
    assert snapshots.accumulation_mode == trigger.AccumulationMode.ACCUMULATING


@pytest.mark.parametrize(
    ("runner", "local"),
    [
        (None, True),
        ("DirectRunner", True),
        ("DaskRunner", True),
        ("FlinkRunner", False),
        # Any of a runner's names: "dask" ended in Beam's traceback.
        ("dask", True),
        ("direct", True),
        ("apache_beam.runners.dask.dask_runner.DaskRunner", True),
        ("flink", False),
    ],
)
def test_runs_locally__only_runners_without_unbounded_sources(
    runner: str | None, local: bool
) -> None:
    argv = ["--streaming"] + ([f"--runner={runner}"] if runner else [])
    assert runs_locally(PipelineOptions(argv)) is local


def test_run_streaming__chosen_for_a_runner_with_unbounded_sources(
    race: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], float | None]] = []
    monkeypatch.setattr(streaming, "run_streaming", lambda argv, stop: calls.append((argv, stop)))
    monkeypatch.setattr("pipeline.cli._finish", lambda cfg: 0)
    argv = ["run", *_argv(race, tmp_path), "--runner=FlinkRunner", "--stop-after", "5"]
    assert main(argv) == 0
    assert calls == [(argv[1:], 5.0)]


def _uploaded(
    name: str,
    folder: str,
    local_time: str,
    bib: str,
    image_id: str = "",
    faces: tuple[FaceSeen, ...] | None = None,
) -> object:
    """A photo as AnalyseContent gives it: facts only; ParseExif places and times it. Its
    bib is read below its face, if it has one."""
    exif = ExifFacts(datetime_original=f"2026:05:01 {local_time}", offset="+02:00")
    bibs = () if not bib else (bib_below(faces[0], bib),) if faces else (read(bib),)
    p = photo(name, folder=folder, station=None, seconds=None, exif=exif, bibs=bibs)
    p = replace(p, facts=replace(p.facts, image_id=image_id or p.image_id, faces=faces))
    return TimestampedValue(p, parse_taken_at(exif, "Europe/Oslo").timestamp())


def _config(tmp_path: Path, **settings: object) -> SimpleNamespace:
    return SimpleNamespace(
        course=make_course(**settings),
        athletes=(athlete("101"), athlete("102")),
        corrections=(),
        out=str(tmp_path),
        as_of=at(7200),
        start_list_file=str(tmp_path / "startlist.csv"),  # no reference photos
    )


def test_time_live__late_photo_corrects_copy_and_burst_frame_count_once_too_late_is_held(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path)
    stream = (
        TestStream()
        # The next frame of a burst (the same picture) lands before the first.
        .add_elements([_uploaded("a-burst", "finish", "10:30:01", "101")])
        .add_elements([_uploaded("a", "finish", "10:30:00", "101", "same-bytes")])
        .add_elements([_uploaded("start-102", "start", "10:00:05", "102")])
        .advance_processing_time(10)
        .add_elements([_uploaded("a-again", "finish", "10:30:00", "101", "same-bytes")])
        .add_elements([_uploaded("later", "finish", "11:20:00", "102")])  # watermark 11:20
        .add_elements([_uploaded("phone", "finish", "10:29:55", "101")])  # 50 min late: counts
        .add_elements([_uploaded("stale", "start", "10:00:30", "102")])  # 80 min: too late
        .advance_processing_time(10)
        .advance_watermark_to_infinity()
    )
    # Written once, when the stream ends: on Beam's DirectRunner, processing-time snapshots
    # of session-windowed panes never let a test pipeline finish.
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        _ = p | stream | TimeLive(cfg, early_s=None, snapshot_s=None)  # type: ignore[arg-type]
    passages = pq.read_table(tmp_path / "passages.parquet").to_pylist()
    assert sorted((r["bib"], r["station_id"], r["passed_at"], r["photos"]) for r in passages) == [
        ("101", "finish", at(1795), 2),  # corrected by the phone's photo, 5 s earlier; "a"
        ("102", "finish", at(4800), 1),
        ("102", "start", at(5), 1),
    ]
    images = {
        r["path"].rsplit("/", 1)[1]: (r["status"], r["reason"])
        for r in pq.read_table(tmp_path / "images.parquet").to_pylist()
    }
    assert images["stale.jpg"] == ("review", "too_late")
    assert images["a-burst.jpg"] == ("duplicate", "near_duplicate")
    copies = sorted([images["a.jpg"], images["a-again.jpg"]], key=repr)
    assert copies == [("duplicate", "exact_duplicate"), ("passage", None)]


@needs_models
def test_time_live__face_only_photo_timed_by_the_gallery_side_input(tmp_path: Path) -> None:
    runner = face(100, 100, embedding=unit(0.25, 0.5))
    stream = (
        TestStream()
        .add_elements([_uploaded("face-only", "start", "10:00:05", "", faces=(runner,))])
        .add_elements([_uploaded("finish", "finish", "10:30:00", "101", faces=(runner,))])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        _ = p | stream | TimeLive(_config(tmp_path), early_s=None, snapshot_s=None)  # type: ignore[arg-type]
    passages = pq.read_table(tmp_path / "passages.parquet").to_pylist()
    assert sorted((r["bib"], r["station_id"], r["passed_at"], r["method"]) for r in passages) == [
        ("101", "finish", at(1800), "bib_ocr"),  # the clean enrolment of 101's face
        ("101", "start", at(5), "face_match"),
    ]


@needs_models
def test_build_streaming__faces_matched_against_a_gallery_republished_as_it_grows(
    race: Path, tmp_path: Path
) -> None:
    course = tmp_path / "course.yaml"
    course.write_text(
        (race / "course.yaml").read_text().replace("faces: false", "faces: true"), "utf-8"
    )
    argv = _argv(race, tmp_path)
    argv[argv.index("--course") + 1] = str(course)
    opts = PipelineOptions(argv)
    p = beam.Pipeline(options=opts)
    build_streaming(p, RaceConfig(opts.view_as(RacelensOptions)))
    applied = _applied(p)
    gallery = applied["TimeLive/BuildGallery/Republished"].windowing
    assert repr(gallery.triggerfn) == repr(
        trigger.Repeatedly(trigger.AfterProcessingTime(streaming.SNAPSHOT_S))
    )
    assert gallery.accumulation_mode == trigger.AccumulationMode.ACCUMULATING
    assert applied["TimeLive/IdentifyAthletes/Identify/ParDo(_Identify)"].side_inputs, "the gallery"
    assert applied["AnalyseContent/Analyse"].fn._faces, "faces looked for on each new photo"


def _missed_checkpoints(tmp_path: Path, *later: object) -> list[tuple[str, str]]:
    """(bib, station) of the missed_checkpoint items once 101 and 102 have started and
    finished, cp1's camera having sent 102's photo only, and then the `later` photos."""
    stream = (
        TestStream()
        .add_elements([_uploaded("s101", "start", "10:00:05", "101")])
        .add_elements([_uploaded("s102", "start", "10:00:06", "102")])
        .add_elements([_uploaded("c102", "cp1", "10:20:00", "102")])
        .add_elements([_uploaded("f101", "finish", "10:45:00", "101")])
        .add_elements([_uploaded("f102", "finish", "10:46:00", "102")])
    )
    for photo_ in later:
        stream = stream.add_elements([photo_])
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        _ = (
            p
            | stream.advance_watermark_to_infinity()
            | TimeLive(_config(tmp_path), early_s=None, snapshot_s=None)  # type: ignore[arg-type]
        )
    review = pq.read_table(tmp_path / "review.parquet").to_pylist()
    return sorted(
        (r["candidates"][0], r["station_id"]) for r in review if r["reason"] == "missed_checkpoint"
    )


def test_time_live__no_missed_checkpoint_while_the_checkpoints_photos_can_still_come(
    tmp_path: Path,
) -> None:
    # cp1's phone has sent its photos up to 10:20 only: 101 passed it later, before their
    # finish at 10:45, and that photo may still come. An official told "not seen at cp1"
    # meanwhile might disqualify a runner who ran the whole course.
    assert _missed_checkpoints(tmp_path / "waiting") == []
    # It comes: 101's passage, nothing to review.
    assert _missed_checkpoints(tmp_path / "came", _uploaded("c101", "cp1", "10:22:00", "101")) == []
    # cp1's camera has sent photos from after 101's finish, none of 101: missed.
    past = _uploaded("c-none", "cp1", "10:50:00", "")
    assert _missed_checkpoints(tmp_path / "past", past) == [("101", "cp1")]
    # cp1's camera is silent, but the race is more than the allowed lateness past 101's finish:
    # a photo of 101 at cp1 would be too late to be timed now.
    hour_on = _uploaded("f-none", "finish", "11:46:00", "")
    assert _missed_checkpoints(tmp_path / "late", hour_on) == [("101", "cp1")]
    # Then cp1's photo of 101 comes, too late to be timed: held for the official, who sees
    # 101 on it; not a miss.
    held = _uploaded("c101", "cp1", "10:22:00", "101")
    assert _missed_checkpoints(tmp_path / "held", hour_on, held) == []


def test_time_live__a_late_photo_an_official_accepted_is_timed(tmp_path: Path) -> None:
    # 101's start photo is uploaded 80 minutes behind the race: held. The official accepts
    # it; it never entered a passage window, and the snapshots timed it nowhere.
    stale = _uploaded("stale", "start", "10:00:10", "101")
    accepted = Correction(stale.value.image_id, "accept", decided_at=at(9000))
    cfg = _config(tmp_path)
    cfg.corrections = (accepted,)
    stream = (
        TestStream()
        .add_elements([_uploaded("finish-102", "finish", "11:20:00", "102")])
        .add_elements([stale])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
        _ = p | stream | TimeLive(cfg, early_s=None, snapshot_s=None)  # type: ignore[arg-type]
    passages = pq.read_table(tmp_path / "passages.parquet").to_pylist()
    assert ("101", "start", at(10)) in {
        (r["bib"], r["station_id"], r["passed_at"]) for r in passages
    }
