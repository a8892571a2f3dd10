"""`racelens run --streaming` on a runner with unbounded sources (Flink, Dataflow, Prism).

The images location is watched with Beam's `Watch` (as `fileio.MatchContinuously`); each new file
is hashed and analysed once, stamped with its event time (ParseExif) and
judged late or not on arrival (MarkTooLate). Sightings go through the real
event-time windows of VisitsPerStation: session windows per (station, bib)
with early panes every EARLY_S seconds for the live view, the on-time pane
at the watermark, a late pane per late photo, accumulating, and the course's
allowed lateness. Every SNAPSHOT_S seconds of processing time, the photos
and the passage panes seen so far are gathered and the results rewritten
atomically: the latest pane of each window replaces the earlier ones
(`current_passages`), and the per-photo statuses, split checks, leaderboard
and station health are computed by the same functions as the local live mode.

Faces are matched against a gallery side input that grows as photos arrive
(the start list's reference photos, then each clean enrolment), republished
as often as the results: a photo is matched against the gallery as it stood
when it arrived, so a face-only photo that lands before the athlete's first
clean bib read (and who has no reference photo) gets no face passage, where a
batch run, with the whole day's gallery, times it.

The snapshots know more than the windows did: burst duplicates are marked over
every photo seen (a frame that repeats its neighbour is known as such in
whatever order the burst arrived), faces are matched against the whole gallery
seen so far. A passage is merged again from those of its window's sightings
that the snapshot's timing keeps, so a burst duplicate adds nothing to it.

Beam's DirectRunner cannot run this graph with live windows here
(../shared/DESIGN.md): on it, `racelens run --streaming` is the local live
mode (`pipeline.live`). tests/test_streaming.py builds this graph and runs
its windowed parts with TestStream.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.watch import Watch, never
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import trigger, window

from pipeline.graph import identify_athletes
from pipeline.options import RaceConfig, RacelensOptions, runner_name
from pipeline.retime import identify_all, passages_per_station, results_of
from transforms.course import waves_by_bib
from transforms.exif import ParseExif
from transforms.faces import BuildGallery, faces_enabled, reference_photos
from transforms.passages import (
    TOO_LATE,
    MarkTooLate,
    VisitsPerStation,
    WithPane,
    current_passages,
)
from transforms.photos import AnalyseContent, ListPhotos, _HashFile
from transforms.write import write_results

POLL_S = 5.0  # how often the images location is listed
EARLY_S = 5  # early panes of open passage windows, for the live view
SNAPSHOT_S = 5  # results rewritten this often (processing time)

PHOTO, LATE, PANE = "photo", "late", "pane"
# Runners that have no unbounded file source here: `--streaming` on them is the local live mode.
# By the short name without "Runner", in lower case: Beam and racelens take any of a runner's
# names ("dask" ended in Beam's 'Unexpected pipeline runner' traceback, "direct" ran Beam's).
LOCAL_RUNNERS = {"direct", "switchingdirect", "bundlebaseddirect", "dask"}


def publish_snapshot(items: list[tuple[str, object]], cfg: RaceConfig) -> list[str]:
    """Writes the results from everything seen so far: photos, late paths, passage panes."""
    photos = [item for kind, item in items if kind == PHOTO]
    late = frozenset(item for kind, item in items if kind == LATE)
    panes = [item for kind, item in items if kind == PANE]
    identified = identify_all(photos, cfg, late)
    sightings = {s for i in identified for s in i.sightings}
    # A photo that arrived too late never entered a passage window: where an official has
    # decided one since, the passages are merged from every sighting timed, as the windows
    # would have merged them.
    last_at = cfg.course.last_at
    released = any(i.photo.path in late and i.sightings for i in identified)
    passages = (
        passages_per_station(list(sightings), cfg.course.settings.merge_window_s, last_at)
        if released
        else current_passages(panes, sightings, last_at)
    )
    timed = results_of(identified, passages, cfg, live=True)
    return write_results(timed.tables(), cfg.out, cfg.course)


class WatchPhotos(beam.PTransform):
    """The images location, watched: each file once, as it appears."""

    def __init__(self, images_root: str, poll_s: float = POLL_S):
        super().__init__()
        self._root = images_root
        self._poll_s = poll_s

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        # As MatchContinuously polls (Watch, each path once), but listing the folder itself.
        return (
            pbegin
            | "Root" >> beam.Create([self._root])
            | "Watch" >> Watch(ListPhotos(), poll_interval=self._poll_s, termination=never())
            | "Paths" >> beam.Map(lambda polled: polled[1])
        )


class TimeLive(beam.PTransform):
    """Analysed photos, as they arrive -> the results, rewritten every SNAPSHOT_S seconds."""

    def __init__(
        self, cfg: RaceConfig, early_s: int | None = EARLY_S, snapshot_s: int | None = SNAPSHOT_S
    ):
        super().__init__()
        self._cfg = cfg
        self._early_s = early_s
        self._snapshot_s = snapshot_s

    def expand(self, photos: beam.PCollection) -> beam.PCollection:
        cfg, settings = self._cfg, self._cfg.course.settings
        placed = photos | "ParseExif" >> ParseExif(cfg.course, waves_by_bib(cfg.athletes))
        judged = placed.timed | "MarkTooLate" >> MarkTooLate(
            settings.merge_window_s, settings.allowed_lateness_s
        )
        known = frozenset(a.bib for a in cfg.athletes)
        gallery = (
            judged.on_time
            | "BuildGallery"
            >> BuildGallery(
                reference_photos(cfg.athletes, cfg.start_list_file),
                known,
                settings.review_threshold,
                self._fire(),
            )
            if faces_enabled(settings)
            else None
        )
        identified = judged.on_time | "IdentifyAthletes" >> identify_athletes(cfg, known, gallery)
        panes = (
            identified.sightings
            | "VisitsPerStation"
            >> VisitsPerStation(settings.merge_window_s, settings.allowed_lateness_s, self._early_s)
            | "WithPane" >> beam.ParDo(WithPane(cfg.course.last_at))
        )
        seen = {
            "Photos": photos | "Photos" >> beam.Map(lambda p: (PHOTO, p)),
            "LatePaths": judged[TOO_LATE] | "LatePaths" >> beam.Map(lambda p: (LATE, p.path)),
            "Panes": panes | "Panes" >> beam.Map(lambda p: (PANE, p)),
        }
        return (
            [pcoll | f"{label}Snapshots" >> self._snapshots() for label, pcoll in seen.items()]
            | "Seen" >> beam.Flatten()
            | "SoFar" >> beam.CombineGlobally(beam.combiners.ToListCombineFn()).without_defaults()
            | "WriteResults" >> beam.Map(publish_snapshot, cfg)
        )

    def _fire(self) -> trigger.TriggerFn:
        """Every snapshot_s seconds of processing time (or once, when the stream ends, for
        snapshot_s None)."""
        return (
            trigger.Repeatedly(trigger.AfterProcessingTime(self._snapshot_s))
            if self._snapshot_s
            else trigger.AfterWatermark()
        )

    def _snapshots(self) -> beam.WindowInto:
        """All that was seen so far, fired by `_fire`."""
        return beam.WindowInto(
            window.GlobalWindows(),
            trigger=self._fire(),
            accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
        )


def build_streaming(p: beam.Pipeline, cfg: RaceConfig) -> beam.PCollection:
    """The live race on a runner with unbounded sources; returns the paths written."""
    return (
        p
        | "WatchPhotos" >> WatchPhotos(cfg.images)
        | "HashFiles" >> beam.ParDo(_HashFile())
        # One file at a time: copies uploaded later are duplicates by their image_id.
        | "OneFileEach" >> beam.MapTuple(lambda image_id, path: (image_id, [path]))
        | "AnalyseContent"
        >> AnalyseContent(cfg.facts, cfg.images, faces_enabled(cfg.course.settings))
        | "TimeLive" >> TimeLive(cfg)
    )


def runs_locally(opts: PipelineOptions) -> bool:
    """Is the runner one without unbounded sources here, so the local live mode serves?"""
    return runner_name(opts) in LOCAL_RUNNERS


def run_streaming(argv: list[str], stop_after: float | None) -> RaceConfig:
    """Runs the live graph until the job ends, or for `stop_after` seconds and cancels it."""
    opts = PipelineOptions(argv)
    cfg = RaceConfig(opts.view_as(RacelensOptions))
    p = beam.Pipeline(options=opts)
    build_streaming(p, cfg)
    result = p.run()
    result.wait_until_finish(duration=int(stop_after * 1000) if stop_after else None)
    if stop_after:
        result.cancel()
    return cfg
