"""The racelens pipeline: photos in, passages, leaderboard and review queue out.

Photos are read and analysed one by one (hash, EXIF tags, perceptual hash,
quality, bib reads, faces; facts stored by image_id), then timed as a race: EXIF
gives each photo its station and event time, duplicates are marked, bib
reads are checked against the start list (a photo at a spot the course passes twice
that its time cannot place is placed by its athletes' own passages), faces without a
read bib are matched against a gallery of the athletes' faces, sightings of a bib at a station
merge into one passage per session window, implausible splits and cameras in
bad health or on another time zone than the race's go to review, and the leaderboard,
the review queue, station health and each athlete's photos are written as Parquet
(and the results as CSV).

Run it with `racelens run --images DIR --course FILE --start-list FILE --out DIR`;
`racelens results --out DIR` times the race again from the stored facts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import apache_beam as beam
import cv2
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, WorkerOptions

import pipeline.dofn_specs  # noqa: F401  (applied at import: see there)
import pipeline.state_sampler  # noqa: F401  (applied at import: see there)
from pipeline import workers
from pipeline.memory import launching_workers
from pipeline.options import RaceConfig, RacelensOptions, ViewedOnce
from transforms.athlete_photos import AthletePhotos
from transforms.clocks import EstimateClocks, clock_review_of, with_clock_error
from transforms.corrections import TOO_LATE, decisions_by_image, official_statuses
from transforms.course import ConfigError, waves_by_bib
from transforms.dedup import DedupPhotos
from transforms.exif import ParseExif
from transforms.faces import (
    BuildGallery,
    faces_enabled,
    load_kept_reference,
    reference_photos,
)
from transforms.health import ReviewStationHealth
from transforms.identify import FaceRule, IdentifyAthletes, LateBatches, held_athletes
from transforms.passages import PassagesPerStation, StationHealth
from transforms.photos import (
    AnalyseContent,
    AnalysePhotos,
    ReadPhotos,
    StoreFacts,
    analysis_models,
    list_photos,
)
from transforms.placing import IdentifyAtSharedPlaces, unplaced_sightings
from transforms.results import BuildLeaderboard
from transforms.splits import CheckedUntil, CheckSplits, DueAtStations
from transforms.write import IMAGES_FILE, WriteResults
from transforms.zones import ReviewTimeZones

# The transforms that analyse photos: with forked worker processes, they run in those, each
# worker taking photos while it is free, and so does the hashing of each file before them
# (PER_PHOTO); all else, the listing of the photos and the timing half, runs in the launcher
# (pipeline/workers.py).
ANALYSIS = ("AnalysePhotos/AnalyseContent", "AnalyseContent", "StoreFacts")
PER_PHOTO = ("AnalysePhotos/HashFiles",)


def build(p: beam.Pipeline, cfg: RaceConfig) -> beam.PCollection:
    """Wires the whole race into `p`; returns the paths of the files written."""
    photos = (
        p
        | "ReadPhotos" >> ReadPhotos(cfg.images)
        | "AnalysePhotos" >> AnalysePhotos(cfg.facts, cfg.images, faces_on(cfg))
    )
    return time_race(photos, cfg)


def build_analysis(p: beam.Pipeline, cfg: RaceConfig) -> beam.PCollection:
    """Only the analysis half: every photo's facts into the fact store, nothing timed;
    returns (image_id, path) of every file.

    For engines that run per-photo work correctly but not windows (Beam's DaskRunner).
    The files are listed here, on the launcher: a listing made inside the pipeline is a
    single element, and the DaskRunner keeps all that follows it in one partition, on one
    worker, whereas a `Create` is split into partitions that the workers share.
    """
    return (
        p
        | "ListedPhotos" >> beam.Create(list_photos(cfg.images))
        | "StoreFacts" >> StoreFacts(cfg.facts, faces_on(cfg))
    )


def build_retime(p: beam.Pipeline, cfg: RaceConfig) -> beam.PCollection:
    """The race again from the photos of the last run and their stored facts, no OCR. The
    photos its results held as arrived too late (a live run's) stay held until an official
    decides them: re-timing after a decision is no backfill."""
    rows, decided = last_run(cfg.out), decisions_by_image(cfg.corrections)
    held = frozenset(
        row["path"] for row in rows if row["reason"] == TOO_LATE and row["image_id"] not in decided
    )
    groups = grouped_copies((row["image_id"], row["path"]) for row in rows)
    return build_from_groups(p, cfg, groups, held)


def build_from_groups(
    p: beam.Pipeline,
    cfg: RaceConfig,
    groups: list[tuple[str, list[str]]],
    held: frozenset[str] = frozenset(),
) -> beam.PCollection:
    """The race from files already hashed: (image_id, paths); photos without stored facts
    are analysed, the others reuse their facts."""
    photos = (
        p
        | "HashedPhotos" >> beam.Create(groups)
        | "AnalyseContent" >> AnalyseContent(cfg.facts, cfg.images, faces_on(cfg))
    )
    return time_race(photos, cfg, held)


def identify_athletes(
    cfg: RaceConfig,
    known: frozenset[str],
    gallery: beam.PCollection | None,
    held: frozenset[str] = frozenset(),
) -> IdentifyAthletes:
    """IdentifyAthletes as the race's course, start list (`known`) and the officials'
    decisions set it, batch and live alike; the photos `held` as arrived too late stay so."""
    settings = cfg.course.settings
    return IdentifyAthletes(
        known,
        settings.review_threshold,
        decisions_by_image(cfg.corrections, cfg.course.station_ids),
        gallery,
        FaceRule(settings.face_threshold, settings.face_margin),
        held,
    )


def time_race(
    photos: beam.PCollection, cfg: RaceConfig, held: frozenset[str] = frozenset()
) -> beam.PCollection:
    """Photos with facts -> the race's results, written; returns the paths written. The
    photos `held` (paths) arrived too late in the live run whose results are re-timed."""
    course, settings = cfg.course, cfg.course.settings
    placed = photos | "ParseExif" >> ParseExif(course, waves_by_bib(cfg.athletes))
    # Rejected photos too: a copy in a folder of no station is a duplicate of the photo
    # placed, and an official may place one that EXIF could not.
    deduped = (
        (placed.timed, placed.rejected)
        | "TimedAndRejected" >> beam.Flatten()
        | "DedupPhotos" >> DedupPhotos(course, held)
    )
    known = frozenset(a.bib for a in cfg.athletes)
    gallery = (
        deduped
        | "BuildGallery"
        >> BuildGallery(
            reference_photos(cfg.athletes, cfg.start_list_file), known, settings.review_threshold
        )
        if faces_on(cfg)
        else None
    )
    identified = deduped | "IdentifyAthletes" >> IdentifyAtSharedPlaces(
        course, cfg.athletes, identify_athletes(cfg, known, gallery, held), held
    )
    # A station's photos held as too late are one item (as the live modes give them), and
    # the athletes read on them are not missing at that station.
    photo_review, on_held = identified["review"], None
    if held:
        photo_review = identified["review"] | "LateBatches" >> LateBatches()
        on_held = photo_review | "OnHeldPhotos" >> beam.FlatMap(held_athletes)
    merged = identified["sightings"] | "PassagesPerStation" >> PassagesPerStation(
        settings.merge_window_s, settings.allowed_lateness_s, course.last_at
    )
    # A passage an approach camera timed before its athlete's photo placed nowhere waits.
    unplaced = identified["photos"] | "Unplaced" >> beam.FlatMap(unplaced_sightings, course, known)
    checked = merged | "CheckSplits" >> CheckSplits(course, cfg.athletes, on_held, unplaced)
    passages = checked.passages
    counted = (
        passages
        if cfg.as_of is None
        else merged | "CheckedAsOf" >> CheckedUntil(course, cfg.athletes, cfg.as_of, unplaced)
    )
    leaderboard = counted | "BuildLeaderboard" >> BuildLeaderboard(
        course, cfg.athletes, cfg.as_of, official_statuses(cfg.corrections)
    )
    images = identified["photos"]  # every photo, timed, rejected or duplicate: images.parquet
    due = passages | "DueAtStations" >> DueAtStations(course, cfg.athletes)
    health = (images, passages, due) | "StationHealth" >> StationHealth(settings.health_window_s)
    health_review = (health, images) | "ReviewStationHealth" >> ReviewStationHealth()
    # Before the split check, which doubts the passages of a clock far off.
    clocks = merged | "EstimateClocks" >> EstimateClocks(course, cfg.athletes)
    stations = health | "StationClocks" >> beam.Map(with_clock_error, beam.pvalue.AsList(clocks))
    clock_review = clocks | "ReviewClocks" >> beam.FlatMap(clock_review_of, course)
    zone_review = (merged, images) | "ReviewTimeZones" >> ReviewTimeZones(course, cfg.athletes)
    return {
        "images": images,
        "passages": passages,
        "review": (photo_review, checked.review, health_review, clock_review, zone_review)
        | "AllReview" >> beam.Flatten(),
        "leaderboard": leaderboard,
        "stations": stations,
        "athlete_photos": (identified["sightings"], passages, images)
        | "AthletePhotos" >> AthletePhotos(),
    } | "WriteResults" >> WriteResults(cfg.out, course)


def faces_on(cfg: RaceConfig) -> bool:
    return faces_enabled(cfg.course.settings)


def load_models(cfg: RaceConfig, analyses: bool = True) -> None:
    """Loads what the race's workers load before or on their first photo: where the run
    `analyses` photos, the analysis' models; with faces, the descriptors of the local
    reference photos kept on disk (BuildGallery's; each process keeps them). Called by the
    zygote (pipeline/workers.py) while the launcher builds the graph, it spares every
    worker of the run its own loading (with faces ~0.9 CPU s each). Reference faces not
    kept yet (~0.1 CPU s each) are left to the workers, which share them out and keep them
    for the next run: a long start list's would hold up both workers here."""
    # OpenCV on one thread, as in the workers (_FactsDoFn.setup): a thread pool of its own,
    # once started here, would be copied into each worker without its threads, and the
    # worker's first OpenCV call would wait for them for good.
    cv2.setNumThreads(1)
    if analyses:
        analysis_models(faces_on(cfg))
    if faces_on(cfg):
        for _, path in reference_photos(cfg.athletes, cfg.start_list_file):
            # Local only: a remote filesystem's client may start threads.
            if "://" not in path:
                load_kept_reference(path)


def run(
    argv: list[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    graph: Callable[[beam.Pipeline, RaceConfig], beam.PCollection] = build,
) -> RaceConfig:
    """Validates the options, builds the pipeline (`build`, or `build_retime`) and runs it."""
    opts = ViewedOnce(argv)
    cfg = RaceConfig(opts.view_as(RacelensOptions))
    quiet_workers(opts)
    # With worker processes, this one analyses no photo (it times the race): pipeline/memory.py.
    launcher_only = opts.view_as(DirectOptions).direct_running_mode == "multi_processing"
    runner = workers.runner_for(opts, ANALYSIS, PER_PHOTO)
    p = test_pipeline or beam.Pipeline(runner=runner, options=opts)
    graph(p, cfg)
    with launching_workers() if launcher_only else contextlib.nullcontext():
        p.run().wait_until_finish()
    return cfg


# Beam's SDK worker processes log at INFO by default: a dozen lines of their own start and
# stop each, on the terminal of `racelens run`. WARNING keeps what may matter.
WORKER_LOG_LEVEL = "WARNING"
# And each worker parses the pipeline's options again and warns of every flag it does not
# know: racelens' own (--images, --out, ...) and two of Beam's that its re-parsing misreads
# (--pipeline_type_check, --direct_runner_use_stacked_bundle; apache/beam#29474). The
# launcher has parsed and checked every flag already, and warns of a mistyped one itself.
WORKER_LOG_LEVELS = {"apache_beam.options.pipeline_options": "ERROR"}


def quiet_workers(opts: PipelineOptions) -> None:
    """Sets the workers' log levels to WORKER_LOG_LEVEL(S) where the user set none."""
    worker = opts.view_as(WorkerOptions)
    worker.default_sdk_harness_log_level = worker.default_sdk_harness_log_level or WORKER_LOG_LEVEL
    worker.sdk_harness_log_level_overrides = {
        **WORKER_LOG_LEVELS,
        **(worker.sdk_harness_log_level_overrides or {}),
    }


def last_run(out_dir: str) -> list[dict]:
    """image_id, path and reason of every file in the last run's images.parquet."""
    path = FileSystems.join(out_dir, IMAGES_FILE)
    try:
        with FileSystems.open(path) as f:
            return pq.read_table(f, columns=["image_id", "path", "reason"]).to_pylist()
    except (OSError, BeamIOError) as e:
        raise ConfigError(f"{path}: no results of an earlier run to re-time ({e})") from e


def grouped_copies(files: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(image_id, path) of every file -> (image_id, paths of its exact copies), sorted."""
    paths: dict[str, list[str]] = {}
    for image_id, path in files:
        paths.setdefault(image_id, []).append(path)
    return sorted((image_id, sorted(copies)) for image_id, copies in paths.items())
