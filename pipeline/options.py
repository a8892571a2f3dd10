"""racelens pipeline options: one PipelineOptions subclass, validated before any work."""

from __future__ import annotations

import os
from datetime import datetime

from apache_beam.options.pipeline_options import PipelineOptions, PipelineOptionsT, StandardOptions

from dashboard.settings import results_log
from transforms.corrections import Correction, load_corrections, read_corrections_leniently
from transforms.course import (
    Athlete,
    ConfigError,
    Course,
    check_waves,
    load_course,
    load_start_list,
    local_instant,
)


def runner_name(opts: PipelineOptions) -> str:
    """The runner's short name, in lower case and without "Runner" ("direct" for none given):
    Beam takes any of a runner's names (direct, Direct, DirectRunner, a module path), so
    racelens compares them so too."""
    runner = opts.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    return (name or "direct").rsplit(".", 1)[-1].lower().removesuffix("runner")


class RacelensOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--images",
            default=None,
            help="Folder (or bucket prefix) of photos, one folder per "
            "station or any layout the course can resolve.",
        )
        parser.add_argument("--course", default=None, help="Course YAML file.")
        parser.add_argument(
            "--start-list",
            "--start_list",
            dest="start_list",
            default=None,
            help="Start list CSV (bib,name[,category,gender,club,wave,photo]).",
        )
        parser.add_argument("--out", default=None, help="Output folder for the Parquet results.")
        parser.add_argument(
            "--corrections",
            default=None,
            help="Corrections log CSV written by the dashboard (default: the dashboard's, where "
            "it exists: the last run's log, else OUT/corrections.csv).",
        )
        parser.add_argument(
            "--facts",
            default=None,
            help="Where photo facts are stored between runs (default OUT/facts).",
        )
        parser.add_argument(
            "--stop-after",
            "--stop_after",
            dest="stop_after",
            type=float,
            default=None,
            help="Streaming: stop after this many seconds and write complete outputs.",
        )
        parser.add_argument(
            "--as-of",
            "--as_of",
            dest="as_of",
            default=None,
            help="Time (ISO 8601) the results are for: passages after it do not count, and "
            "after the course's close athletes still out are dnf. Default: now, every passage.",
        )
        parser.add_argument(
            "--no-progress",
            "--no_progress",
            dest="progress",
            action="store_false",
            default=True,
            help="Do not print progress lines while photos are analysed.",
        )


class ViewedOnce(PipelineOptions):
    """Pipeline options that make each view of themselves once.

    Beam asks a pipeline's options for a view (`view_as`) each time it applies a transform
    or checks a type: ~1,100 times while the race's graph is built, each time building an
    argument parser and parsing the flags again, 0.7 CPU s of a run's start-up. A view
    keeps its values in the dict it shares with the options, so one view per class reads
    and writes what a new one would.
    """

    def view_as(self, cls: type[PipelineOptionsT]) -> PipelineOptionsT:
        views = self.__dict__.setdefault("_views", {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self) -> dict:
        # A copy (Beam's Pipeline deep-copies its options) makes views of its own.
        return {k: v for k, v in super().__getstate__().items() if k != "_views"}


class RaceConfig:
    """The validated inputs of a run: everything the graph needs, loaded once."""

    def __init__(self, opts: RacelensOptions):
        for name in ("images", "course", "start_list", "out"):
            if not getattr(opts, name):
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} is required")
        if "://" not in opts.images and not os.path.isdir(opts.images):
            raise ConfigError(f"--images: '{opts.images}' is not a folder")
        if opts.stop_after is not None and not opts.view_as(StandardOptions).streaming:
            raise ConfigError("--stop-after needs --streaming")
        self.images: str = _absolute(opts.images)
        self.out: str = _absolute(opts.out)
        self.facts: str = _absolute(opts.facts) if opts.facts else f"{self.out}/facts"
        self.course: Course = load_course(opts.course)
        self.athletes: tuple[Athlete, ...] = load_start_list(opts.start_list)
        check_waves(self.course, self.athletes, opts.start_list)
        streaming = opts.view_as(StandardOptions).streaming
        corrections = opts.corrections or (None if streaming else _dashboards_log(self.out))
        self.corrections: tuple[Correction, ...] = (
            decisions(corrections, self.course, streaming) if corrections else ()
        )
        self.course_file: str = _absolute(opts.course)
        self.start_list_file: str = _absolute(opts.start_list)
        self.corrections_file: str | None = _absolute(corrections) if corrections else None
        self.progress: bool = opts.progress
        # As the corrections log's: without an offset the race's local time, on its day.
        self.as_of: datetime | None = local_instant(
            opts.as_of, "--as-of", self.course.timezone, self.course.start
        )


def decisions(log: str, course: Course, live: bool) -> tuple[Correction, ...]:
    """The corrections log's decisions. A batch run refuses a bad line in one line (exit 2),
    so no result silently drops a decision; a live run, restarted mid-race, takes the valid
    rows as it does at each poll, which names the lines it leaves out (pipeline/live.py):
    one mistyped line stopped the race's timing until someone found it."""
    if live:
        return read_corrections_leniently(log, course.timezone, course.start).corrections
    return load_corrections(log, course.timezone, course.start)


def run_inputs(cfg: RaceConfig) -> dict[str, str | None]:
    """What a later `racelens results` needs to time the same race again (saved as run.json)."""
    return {
        "images": cfg.images,
        "course": cfg.course_file,
        "start_list": cfg.start_list_file,
        "facts": cfg.facts,
        "corrections": cfg.corrections_file,
    }


def _dashboards_log(out: str) -> str | None:
    """The log a dashboard on `out` appends to by default (the last run's, else
    OUT/corrections.csv), where it exists: a batch run or re-timing without --corrections
    applies it, as the dashboard shows it, rather than dropping the officials' decisions (a
    dsq vanished from results.csv after a backfill run). A live run reads that log itself,
    leniently, at every poll (pipeline/live.py)."""
    if "://" in out or not os.path.isdir(out):  # none yet, or a file in its way (refused later)
        return None
    log = results_log(out)
    return log if os.path.isfile(log) else None


def _absolute(location: str) -> str:
    """Local paths are made absolute so that images.parquet names every file unambiguously."""
    location = location.rstrip("/") or "/"
    return location if "://" in location else os.path.abspath(location)
