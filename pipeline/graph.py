"""The racelens pipeline: photos in, passages, leaderboard and review queue out.

Photos are read and analysed one by one (hash, EXIF tags, perceptual hash,
quality, bib reads; facts stored by image_id), then timed as a race: EXIF
gives each photo its station and event time, duplicates are marked, bib
reads are checked against the start list, sightings of a bib at a station
merge into one passage per session window, implausible splits go to review,
and the leaderboard, the review queue and station health are written as
Parquet (and the results as CSV).

Run it with `racelens run --images DIR --course FILE --start-list FILE --out DIR`.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import RaceConfig, RacelensOptions
from transforms.corrections import decisions_by_image, official_statuses
from transforms.dedup import DedupPhotos
from transforms.exif import ParseExif
from transforms.identify import IdentifyAthletes
from transforms.passages import PassagesPerStation, StationHealth
from transforms.photos import AnalysePhotos, ReadPhotos
from transforms.results import BuildLeaderboard
from transforms.splits import CheckSplits
from transforms.write import WriteResults


def build(p: beam.Pipeline, cfg: RaceConfig) -> beam.PCollection:
    """Wires the whole race into `p`; returns the paths of the files written."""
    course, settings = cfg.course, cfg.course.settings
    photos = (
        p
        | "ReadPhotos" >> ReadPhotos(cfg.images)
        | "AnalysePhotos" >> AnalysePhotos(cfg.facts, cfg.images)
    )
    placed = photos | "ParseExif" >> ParseExif(course)
    deduped = placed.timed | "DedupPhotos" >> DedupPhotos(
        settings.burst_gap_s, settings.near_duplicate_bits
    )
    # Rejected photos pass through too: an official may place one that EXIF could not.
    identified = (
        (deduped, placed.rejected)
        | "AllPhotos" >> beam.Flatten()
        | "IdentifyAthletes"
        >> IdentifyAthletes(
            frozenset(a.bib for a in cfg.athletes),
            settings.review_threshold,
            decisions_by_image(cfg.corrections),
        )
    )
    checked = (
        identified.sightings
        | "PassagesPerStation"
        >> PassagesPerStation(settings.merge_window_s, settings.allowed_lateness_s)
        | "CheckSplits" >> CheckSplits(course, cfg.athletes)
    )
    passages = checked.passages
    leaderboard = passages | "BuildLeaderboard" >> BuildLeaderboard(
        course, cfg.athletes, cfg.as_of, official_statuses(cfg.corrections)
    )
    return {
        "images": identified.photos,
        "passages": passages,
        "review": (identified.review, checked.review) | "AllReview" >> beam.Flatten(),
        "leaderboard": leaderboard,
        "stations": (identified.photos, passages)
        | "StationHealth" >> StationHealth(settings.health_window_s),
    } | "WriteResults" >> WriteResults(cfg.out, course)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> RaceConfig:
    """Validates the options, builds the pipeline and runs it to completion."""
    opts = PipelineOptions(argv)
    cfg = RaceConfig(opts.view_as(RacelensOptions))
    p = test_pipeline or beam.Pipeline(options=opts)
    build(p, cfg)
    p.run().wait_until_finish()
    return cfg
