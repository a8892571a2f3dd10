"""The `racelens` command: demo race, pipeline run, bib reading and scoring.

    racelens demo --out DIR [--athletes N] [--stations M] [--seed S] [--faces DIR]
                  [--course line|out-and-back] [--approach STATION]
    racelens run --images DIR --course FILE --start-list FILE --out DIR [Beam options]
    racelens results --out DIR [--corrections FILE] [--course FILE] [--start-list FILE]
    racelens bibs IMAGE... [--start-list FILE]
    racelens score --out DIR --truth FILE --images DIR [--check]
    racelens photos --out DIR --to DEST [--link] [--bib B ...]
    racelens selfcheck
    racelens faces-eval DIR [--bibs DIR] [--threshold T] [--margin M]   (from the source tree)
    racelens dashboard --out DIR [--port P] [--corrections FILE] [--password-file FILE]

Bad arguments or unreadable configuration end with one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import stat
import sys
import time
from typing import TYPE_CHECKING, NoReturn

from pipeline.signals import ending_at_once, handled_by
from transforms.course import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.interrupted import Ender
    from pipeline.options import RaceConfig

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, as the contract asks."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _demo(args: argparse.Namespace, _: list[str]) -> int:
    from pipeline.demo import generate_race

    summary = generate_race(
        args.out, args.athletes, args.stations, args.seed, args.faces, args.course, args.approach
    )
    print(
        f"demo race in {args.out}: {summary.images} images, {summary.athletes} athletes, "
        f"{summary.stations} stations, {summary.passages} true passages (truth.csv)"
    )
    if args.faces:
        print(
            f"real faces on {summary.face_runners} athletes (photo column of startlist.csv); "
            f"{summary.face_only_passages} passages show the face but hide the bib "
            "(face_only in truth.csv)"
        )
    return 0


def count_files(images: str) -> int:
    """The entries under `images` that the run gives a row each, links and folders it cannot
    list included (Beam's listing alone left them out of the progress lines' total)."""
    from transforms.photos import list_photos

    return len(list_photos(images))


RUN_FILE = "run.json"


def record_inputs(cfg: RaceConfig) -> None:
    """Saves the run's inputs (run.json) for `racelens results`, `racelens photos` and the
    dashboard (the race's name, stations and time zone); a live run, with its first results."""
    from pipeline.options import run_inputs
    from transforms.write import write_atomically

    write_atomically(f"{cfg.out}/{RUN_FILE}", json.dumps(run_inputs(cfg), indent=2).encode())


def _finish(cfg: RaceConfig, retime: bool = False) -> int:
    """Records the run's inputs for `racelens results` and prints the summary; re-timed, with
    the photos added to or gone from the run's folder since."""
    from pipeline.summary import summarise

    record_inputs(cfg)
    print(
        summarise(
            cfg.out, cfg.corrections, course=cfg.course, corrections_file=cfg.corrections_file
        )
    )
    changed = photos_changed(cfg.images, cfg.out) if retime else None
    if changed:
        print(changed)
    return 0


def photos_changed(images: str, out: str) -> str | None:
    """The files added under `images` and gone from it since the run whose results are in
    `out`, as one line, or None: `racelens results` re-times that run's files only, and said
    nothing of the others (a photo added and one deleted: the same results, no word)."""
    from pipeline.graph import last_run
    from transforms.photos import list_photos

    timed = {row["path"] for row in last_run(out)}
    there = set(list_photos(images))
    added, gone = len(there - timed), len(timed - there)
    if not (added or gone):
        return None
    return (
        f"photos since the run under {images}: {added} added, {gone} gone; these results are "
        "of the run's photos (`racelens run` takes the changes in)"
    )


def _execute(beam_argv: list[str], retime: bool = False, own_process: bool = False) -> int:
    """Validates, runs the pipeline (with progress unless it only re-times) and summarises;
    `own_process`: this process runs only this command (pipeline/workers.py forks it, and
    Ctrl-C, SIGTERM and SIGHUP end it cleanly: pipeline/interrupted.py; code calling main() keeps
    its own handling)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.interrupted import stopped_on_signals
    from pipeline.options import RaceConfig, RacelensOptions

    check_options(beam_argv)
    opts = PipelineOptions(beam_argv)
    streaming = opts.view_as(StandardOptions).streaming
    cfg = RaceConfig(opts.view_as(RacelensOptions))  # validate before anything starts
    for flag, location in (("--images", cfg.images), ("--out", cfg.out), ("--facts", cfg.facts)):
        check_filesystem(flag, location)
    check_images_folder(cfg.images)
    if not (streaming or retime):  # a live run's folder starts empty; re-timing lists none
        check_not_emptied(cfg)
    check_reference_photos(cfg)
    # A live run makes its log (race morning: no decision yet; a live run reads no log as
    # none): after every check, so that a run refused leaves no log folder behind.
    check_output_folders(cfg, opts.view_as(RacelensOptions).corrections if streaming else None)
    stopping = stopped_on_signals(cfg.out, cfg.facts) if own_process else contextlib.nullcontext([])
    if streaming:
        from pipeline.streaming import run_streaming, runs_locally

        stop_after = opts.view_as(RacelensOptions).stop_after
        if runs_locally(opts):
            with stopping:
                return _live(cfg, beam_argv, stop_after)
        run_streaming(beam_argv, stop_after)
        return _finish(cfg)
    with stopping as ends:
        return _batch(opts, cfg, beam_argv, retime, own_process, ends)


# Held by a batch run (`racelens run`, `racelens results`) in its results folder while it
# runs, with its pid inside (pipeline/live_lock.py): two at once would mix their results.
RUN_LOCK_FILE = ".run.lock"


def another_run_writes(out: str, pid: str) -> str:
    return (
        f"--out {out}: another racelens run (pid {pid}) writes these results; wait for it "
        "to end, or give another --out"
    )


@contextlib.contextmanager
def held_by_this_run(out: str) -> Iterator[None]:
    """Meanwhile a local `out` is this process's; raises ConfigError when another batch run
    holds it (a live run is refused in check_output_folders)."""
    from pipeline.live_lock import hold_lock, lock_holder
    from transforms.write import is_no_room, tell_no_room

    if "://" in out:
        yield
        return
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, RUN_LOCK_FILE)
    try:
        lock = hold_lock(path, str(os.getpid()))
    except OSError as e:
        if is_no_room(e):  # a first run on a full disk: one line naming `out`, as any write's
            tell_no_room(path)
        raise
    if lock is None:  # started since check_output_folders looked
        holder = lock_holder(path)
        raise ConfigError(another_run_writes(out, holder or "?"))
    with lock:
        yield


def check_options(beam_argv: list[str]) -> None:
    """Raises ConfigError for an option that neither racelens nor Beam knows, a value of the
    wrong kind, or a runner Beam does not have. Beam warned of an unknown option and dropped
    it (`--correction FILE` timed the race without the officials' decisions, exit 0), printed
    its whole usage for a wrong value, and ended an unknown runner with a traceback."""
    import difflib

    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    from pipeline.engines import DASK_RUNNER_NAMES, LocalDaskOptions  # noqa: F401 - registers

    if any(arg.startswith("--dask") for arg in beam_argv):
        with contextlib.suppress(ImportError):  # registers Beam's DaskOptions
            import apache_beam.runners.dask.dask_runner  # noqa: F401

    class OneLine(_BeamArgumentParser):  # Beam's, for the options it adds with ValueProviders
        def error(self, message: str) -> NoReturn:
            raise ConfigError(message)

    parser = OneLine(allow_abbrev=False, add_help=False)
    for options in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        options._add_argparse_args(parser)
    known, unknown = parser.parse_known_args(beam_argv)
    for arg in unknown:
        if not arg.startswith("-"):  # `--facts /tmp/my facts`: the facts went to /tmp/my
            raise ConfigError(f"unexpected argument '{arg}' (a path with spaces needs quotes)")
        flag = arg.split("=", 1)[0]
        names = [name for action in parser._actions for name in action.option_strings]
        close = difflib.get_close_matches(flag, names, n=1)
        raise ConfigError(
            f"unknown option {flag}" + (f" (did you mean {close[0]}?)" if close else "")
        )
    if known.runner and not runner_known(known.runner, DASK_RUNNER_NAMES):
        raise ConfigError(f"--runner: no runner named '{known.runner}' (see Beam's runners)")
    if known.stop_after is not None and known.stop_after < 0:  # it stopped at once, exit 0
        raise ConfigError(f"--stop-after must be 0 or more seconds, not {known.stop_after:g}")
    if known.direct_num_workers < 0:  # Beam's runner failed on it with an IndexError
        raise ConfigError(
            f"{WORKERS_FLAG} must be 0 (one per core) or more, not {known.direct_num_workers}"
        )
    check_worker_count(WORKERS_FLAG, known.direct_num_workers)
    check_worker_count("--dask_local_workers", known.dask_local_workers)


# Worker processes on this machine beyond this many per core only take memory: the analysis
# keeps a core busy each. A mistyped --dask_local_workers=1000 started a thousand processes.
MOST_WORKERS_PER_CORE = 4


def check_worker_count(flag: str, given: int | None) -> None:
    """Raises ConfigError for more worker processes than MOST_WORKERS_PER_CORE per core."""
    most = MOST_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if given is not None and given > most:
        raise ConfigError(
            f"{flag}={given}: at most {most} worker processes here ({MOST_WORKERS_PER_CORE} per "
            "core): the analysis keeps a core busy each, more only take memory"
        )


def runner_known(name: str, own: tuple[str, ...]) -> bool:
    """Whether Beam (or racelens, `own` names) has a runner of that name, as Beam resolves it:
    short, without 'Runner', or a class's full name."""
    from apache_beam.options.pipeline_options import StandardOptions

    short = {path.rsplit(".", 1)[-1].lower() for path in StandardOptions.ALL_KNOWN_RUNNERS}
    lower = name.lower()
    return "." in name or lower in own or lower in short or f"{lower}runner" in short


def within(path: str, folder: str) -> bool:
    """Whether local `path` is `folder` or lies below it, links resolved."""
    root, target = os.path.realpath(folder), os.path.realpath(path)
    return os.path.commonpath([root, target]) == root


def unwritable(folder: str) -> str | None:
    """Why files cannot be made in local `folder` (created as needed), or None: the nearest
    part of it that exists must be a folder this process may write in. Asked before a run
    starts, as a file in the way or a read-only disk otherwise failed its first write, in a
    worker, with Beam's traceback. (A full disk shows only when written to.)"""
    existing = os.path.abspath(folder)  # its parents end at the root, never at ''
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"'{existing}' is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):  # also false on a read-only file system
        return f"'{existing}' is not writable"
    return None


def check_reference_photos(cfg: RaceConfig) -> None:
    """Raises ConfigError naming the first local reference photo of the start list that is
    not there, where faces are matched: a typo was a warning ('no face found on reference
    photo') and the athlete went without face matching."""
    from transforms.faces import faces_enabled, reference_photos

    if not faces_enabled(cfg.course.settings):
        return  # the photo column is not read
    line_of = {a.bib: a.line for a in cfg.athletes}
    for bib, path in reference_photos(cfg.athletes, cfg.start_list_file):
        if "://" not in path and not os.path.isfile(path):
            raise ConfigError(
                f"{cfg.start_list_file}: line {line_of[bib]}: bib {bib}: "
                f"reference photo {path} not found"
            )


def check_filesystem(flag: str, location: str) -> None:
    """Raises ConfigError where Beam has no filesystem here for a location's scheme (gs://
    without the GCP extra, a typo): the run ended in a traceback of 141 lines, exit 1."""
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    if "://" not in location:
        return
    scheme = location.split("://", 1)[0]
    try:
        FileSystems.get_filesystem(location)
    except (ValueError, BeamIOError) as e:
        extra = EXTRAS.get(scheme)
        hint = f" (pip install '.[{extra}]' installs it)" if extra else ""
        raise ConfigError(f"{flag}: no filesystem for {scheme}:// here{hint}") from e


# racelens' extras (setup.py) that install a remote filesystem, by its scheme.
EXTRAS = {"gs": "gcp", "s3": "aws"}


def check_images_folder(images: str) -> None:
    """Raises ConfigError where a local --images cannot be listed: the run found no photo
    there, and every athlete was dns."""
    if "://" in images:
        return
    try:
        with os.scandir(images):  # opened, not read: a folder of many photos costs nothing
            pass
    except OSError as e:
        raise ConfigError(f"--images: cannot list '{images}': {e.strerror}") from e


def holds_files(folder: str) -> bool:
    """Whether local `folder` or a folder below it holds a file (read until the first)."""
    return any(files for _, _, files in os.walk(folder))


def check_not_emptied(cfg: RaceConfig) -> None:
    """Raises ConfigError where a local --images holds no file at all and --out the results of
    an earlier run on photos: a card not mounted (its mount point an empty folder) replaced
    the published results by every athlete dns, exit 0."""
    if "://" in cfg.images or "://" in cfg.out or holds_files(cfg.images):
        return
    earlier = earlier_run(cfg.out)
    if earlier is not None:
        photos, folder = earlier
        raise ConfigError(
            f"--images {cfg.images}: no file there, but --out {cfg.out} holds the results of "
            f"an earlier run on {photos} photos in {folder} (a card not mounted?); to time no "
            f"photo deliberately, remove {cfg.out} first"
        )


def earlier_run(out: str) -> tuple[int, str] | None:
    """The photo count and photos folder of the run whose results are in local `out`, or
    None where there are none, or of no photo."""
    import pyarrow.parquet as pq

    from transforms.schemas import IMAGES_FILE

    try:
        with open(os.path.join(out, RUN_FILE), encoding="utf-8") as f:
            folder = json.load(f)["images"]
        photos = pq.read_metadata(os.path.join(out, IMAGES_FILE)).num_rows
    except (OSError, ValueError, KeyError, TypeError):  # pyarrow's ArrowInvalid is a ValueError
        return None
    return (photos, folder) if photos else None


def check_output_folders(cfg: RaceConfig, log: str | None = None) -> None:
    """Raises ConfigError where a local --out or --facts cannot hold the run's files, or lies
    inside --images, where a second run read the first one's outputs and facts as photos, or
    where a live run keeps the results in --out: each run would replace the other's files
    (a batch run, `racelens results` by hand or the dashboard's, another live run). Makes
    them where all is well, and the corrections log `log` where given and not there yet."""
    from pipeline.live_lock import live_run_log, lock_holder
    from transforms.corrections import start_log

    for flag, folder in (("--out", cfg.out), ("--facts", cfg.facts)):
        if "://" in folder:
            continue
        if "://" not in cfg.images and within(folder, cfg.images):
            raise ConfigError(
                f"{flag}: '{folder}' is inside --images: its files would be read as photos "
                "(put it beside the photos' folder)"
            )
        problem = unwritable(folder)
        if problem:
            raise ConfigError(f"{flag}: cannot write in '{folder}': {problem}")
    batch = None if "://" in cfg.out else lock_holder(os.path.join(cfg.out, RUN_LOCK_FILE))
    if batch is not None:
        raise ConfigError(another_run_writes(cfg.out, batch))
    live_log = live_run_log(cfg.out)
    if live_log is not None:
        raise ConfigError(
            f"--out {cfg.out}: a live run keeps these results (it times the decisions in "
            f"{live_log} itself); stop it first, or give another --out"
        )
    folders = [("--out", cfg.out), ("--facts", cfg.facts)]
    if log is not None:
        folders.append(("--corrections", os.path.dirname(os.path.abspath(log))))
    with folders_made(folders):
        if log is not None:
            start_log(log)


def missing_folders(folder: str) -> list[str]:
    """The folder and those of its parents that do not exist yet, deepest first."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


@contextlib.contextmanager
def folders_made(flagged: list[tuple[str, str]]) -> Iterator[None]:
    """Makes each local folder (its flag, its path) with its parents, for the block to put
    files in; raises ConfigError, one line, at the first one a mount refuses, where access()
    said yes (sysfs, FUSE). Where that or the block raises ConfigError, removes the folders
    it made: a refused --facts left the new, empty --out, a refused log its new folder."""
    local = [(flag, folder) for flag, folder in flagged if "://" not in folder]
    made = {path for _, folder in local for path in missing_folders(folder)}
    try:
        for flag, folder in local:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"{flag}: cannot write in '{folder}': {e.strerror}") from e
        yield
    except ConfigError:
        for path in sorted(made, key=len, reverse=True):  # a folder before its parent
            with contextlib.suppress(OSError):  # not made, or holds what another put there
                os.rmdir(path)
        raise


def _batch(
    opts: PipelineOptions,
    cfg: RaceConfig,
    beam_argv: list[str],
    retime: bool,
    own_process: bool,
    ends: list[Ender],
) -> int:
    """_execute's batch run; puts what ends its worker processes at once in `ends`."""
    from pipeline.engines import run_on_dask, runs_on_dask
    from pipeline.graph import build, build_retime, load_models, run
    from pipeline.progress import Progress
    from pipeline.workers import forked_workers, no_workers_to_end
    from transforms.photos import FactStore
    from transforms.write import remove_stale_temporaries

    remove_stale_temporaries([cfg.out, cfg.facts])
    graph = build_retime if retime else build
    execute = run_on_dask if runs_on_dask(opts) else run  # Dask only analyses: see engines
    started = time.monotonic()
    # Forked before the progress thread starts, and only from a process that has run no
    # pipeline before: gRPC's state would be copied, broken (see pipeline/workers.py).
    loading = functools.partial(load_models, cfg, analyses=not retime)
    in_here = contextlib.nullcontext(no_workers_to_end)
    # Held once the zygote is forked: a lock its processes shared would outlive a killed run.
    with (
        forked_workers(opts, loading) if own_process else in_here as end_workers,
        held_by_this_run(cfg.out),
    ):
        ends.append(end_workers)
        if cfg.progress and not retime:
            total = count_files(cfg.images)
            print(f"racelens: {total} files under {cfg.images}", file=sys.stderr)
            with Progress(FactStore(cfg.facts), total):
                execute(beam_argv, graph=graph)
        else:
            execute(beam_argv, graph=graph)
    print(f"finished in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return _finish(cfg, retime)


def _live(cfg: RaceConfig, beam_argv: list[str], stop_after: float | None) -> int:
    """Live mode: keeps the results in cfg.out current while photos arrive."""
    from pipeline.live import watch

    until = f"for {stop_after:g} s" if stop_after is not None else "until Ctrl-C"
    state = watch(beam_argv, stop_after, watching=f"racelens: watching {cfg.images} {until}")
    print(f"live: stopped after {state.cycles} updates", file=sys.stderr)
    # The log the live run read and its decisions at the end (cfg has none: it was made
    # before the run found its log, and the summary counted settled items as open).
    return _finish(state.config or cfg)


def _run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    if args.own_process:  # the workers are forked from this process: see pipeline/workers.py
        beam_argv = with_worker_processes(beam_argv, usable_cores())
    return _execute(beam_argv, own_process=args.own_process)


# Beam's options that choose how a run is executed: where a user gives one, it stands.
EXECUTION_FLAGS = ("--runner", "--direct_running_mode", "--streaming")
WORKERS_FLAG = "--direct_num_workers"


def with_worker_processes(beam_argv: list[str], cores: int) -> list[str]:
    """`racelens run`'s default: worker processes, one per core (`cores`) unless
    WORKERS_FLAG says how many, where Beam's default would analyse every photo on one
    thread of this process. On this 2-core machine the 205 photos of bench/perf.py's race
    took half the time that way, and a race of one photo took no longer (README
    Performance). Unless the command line chose how to execute."""
    given = {arg.split("=", 1)[0] for arg in beam_argv}
    if given.intersection(EXECUTION_FLAGS):
        return beam_argv
    if WORKERS_FLAG in given:
        return [*beam_argv, "--direct_running_mode=multi_processing"]
    if cores < 2:  # Beam's in-process default is the fastest there
        return beam_argv
    return [*beam_argv, "--direct_running_mode=multi_processing", f"{WORKERS_FLAG}={cores}"]


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _results(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Re-times the last run in --out from its stored facts, with the given changes."""
    if "--images" in {arg.split("=", 1)[0] for arg in beam_argv}:
        # Beam's options would take it, and no photo of the last run would lie in it.
        raise ConfigError(
            "racelens results re-times the last run's photos: --images is not taken "
            "(run `racelens run` on other photos)"
        )
    saved_path = os.path.join(args.out, RUN_FILE)
    try:
        with open(saved_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{saved_path}: no earlier run to re-time ({e})") from e
    images = saved["images"]
    if "://" not in images and not os.path.isdir(images):  # RaceConfig would name --images
        raise ConfigError(
            f"{saved_path}: the run's photos folder {images} is not there any more (moved?); "
            "run `racelens run` on them where they are now"
        )
    check_facts_stored(saved["facts"], images, saved_path)
    inputs = {
        "images": saved["images"],
        "course": args.course or saved["course"],
        "start-list": args.start_list or saved["start_list"],
        "facts": saved["facts"],
        "corrections": args.corrections or saved["corrections"],
        "as-of": args.as_of,
    }
    argv = [f"--{k}={v}" for k, v in inputs.items() if v] + ["--out", args.out]
    return _execute(argv + beam_argv, retime=True, own_process=args.own_process)


def check_facts_stored(facts: str, images: str, saved_path: str) -> None:
    """Raises ConfigError where a local run's photos have no stored facts of this racelens at
    all: `racelens results` analysed every one again without a word (45 s instead of ~3 s
    for 299 photos; the dashboard's re-timing after each decision as long as a first run).
    Some missing (photos added since the run) are analysed, as they must be."""
    from transforms.photos import FactStore

    version_root = FactStore(facts).version_root
    if "://" in facts or os.path.isdir(version_root):
        return
    if "://" in images or not holds_files(images):
        return  # no photo: nothing to analyse
    others = _fact_versions(facts)
    if others:  # an upgrade whose analysis differs: "moved or deleted?" read as facts lost
        raise ConfigError(
            f"{saved_path}: the facts in {facts} are of another racelens ({others[-1]}, this "
            f"one's {os.path.basename(version_root)}): `racelens run` analyses the photos again, "
            "then racelens results re-times from them"
        )
    raise ConfigError(
        f"{saved_path}: no stored facts in {facts} (moved or deleted?): racelens results "
        "re-times from them; `racelens run` analyses the photos again"
    )


def _fact_versions(facts: str) -> list[str]:
    """The analysis versions' folders in a fact store (v27, v28), oldest first."""
    names = os.listdir(facts) if os.path.isdir(facts) else []
    versions = [n for n in names if n[:1] == "v" and n[1:].isdigit()]
    return sorted(versions, key=lambda n: int(n[1:]))


def _bibs(args: argparse.Namespace, _: list[str]) -> int:
    from transforms.bibs import StartList
    from transforms.course import load_start_list
    from transforms.photos import Unusable, read_photo_bibs

    listed = StartList(a.bib for a in load_start_list(args.start_list)) if args.start_list else None
    for path in photo_files(args.images):
        started = time.perf_counter()
        try:
            reads, error = read_photo_bibs(path, listed), None
        except Unusable as e:  # the pipeline's reason, as its images.parquet row would give
            reads, error = (), e.reason
        line = {
            "path": path,
            "bibs": [{"bib": r.bib, "confidence": r.confidence, "box": list(r.box)} for r in reads],
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        print(json.dumps(line if error is None else {**line, "error": error}), flush=True)
    return 0


def photo_files(paths: list[str]) -> list[str]:
    """The paths, once each is seen to be a file; raises ConfigError naming the first that is
    not, before any photo is read: a folder or a mistyped name is a bad argument, not a photo
    to report (it ended the command with a traceback, after the lines of the photos before it)."""
    for path in paths:
        try:
            is_file = stat.S_ISREG(os.stat(path).st_mode)
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
        if not is_file:
            hint = f" (a folder: give its photos, e.g. {path}/*.jpg)" if os.path.isdir(path) else ""
            raise ConfigError(f"{path}: not a photo file{hint}")
    return paths


def _score(args: argparse.Namespace, _: list[str]) -> int:
    from pipeline.score import score_faces, score_leaderboard, score_run

    check_score_inputs(args.out, args.truth, args.images)
    race = os.path.dirname(os.path.abspath(args.truth))
    score = score_run(args.out, args.truth, args.images, args.tolerance)
    board = score_leaderboard(
        args.out,
        args.truth,
        args.course or os.path.join(race, "course.yaml"),
        args.start_list or os.path.join(race, "startlist.csv"),
        args.tolerance,
    )
    faces = score_faces(args.out, args.truth, args.tolerance)
    print(score.report())
    print(faces.report())
    print(board.report())
    ok = score.meets_foundation() and faces.face_match_wrong == 0 and board.all_agree()
    return 1 if args.check and not ok else 0


def check_score_inputs(out: str, truth: str, images: str) -> None:
    """Raises ConfigError naming the first input `racelens score` reads that is not there (a
    results file, truth.csv: it ended with a traceback), or an --images that is no folder
    (the run was scored against no file at all)."""
    from transforms.schemas import IMAGES_FILE, LEADERBOARD_FILE, PASSAGES_FILE

    results = [os.path.join(out, name) for name in (PASSAGES_FILE, IMAGES_FILE, LEADERBOARD_FILE)]
    for path in [*results, truth]:
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: not found")
    if not os.path.isdir(images):
        raise ConfigError(f"--images: '{images}' is not a folder")


def _photos(args: argparse.Namespace, _: list[str]) -> int:
    from pipeline.photo_export import DestinationFull, export_photos

    try:
        summary = export_photos(args.out, args.to, link=args.link, bibs=args.bib or ())
    except DestinationFull as e:
        print(f"racelens: {e}", file=sys.stderr)
        return 1
    print(summary.report(args.to, "linked" if args.link else "copied"))
    return 0


def dashboard_command(args: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line of the dashboard on the results in args.out."""
    from pathlib import Path

    import dashboard
    from dashboard.settings import SettingsError, parse_settings
    from pipeline.live_lock import live_run_log

    # A live run writes its first results with its first photos: its folder is one to open.
    has_results = os.path.isfile(os.path.join(args.out, "leaderboard.parquet"))
    if not has_results and live_run_log(args.out) is None:
        raise ConfigError(
            f"{args.out}: no results here (run `racelens run --out {args.out}` first)"
        )
    app_args = ["--out", os.path.abspath(args.out)]
    for flag, value in (
        ("--corrections", args.corrections),
        ("--password-file", args.password_file),
    ):
        if value:
            app_args += [flag, os.path.abspath(value)]
    try:  # as the app will read them: a password file it cannot use let nobody in
        parse_settings(app_args, os.environ)
    except SettingsError as e:
        raise ConfigError(str(e)) from e
    check_port(args.port)
    app = Path(dashboard.__file__).with_name("app.py")
    server = ["--server.port", str(args.port), "--server.headless", "true"]
    # The finish line is often offline: no usage statistics, and no welcome banner, whose
    # "External URL" asks a web service for this machine's public address. No watching of
    # the installed app's source for changes either, and no developer menu for officials.
    server += ["--browser.gatherUsageStats", "false", "--logger.hideWelcomeMessage", "true"]
    server += ["--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    return [sys.executable, "-m", "streamlit", "run", str(app), *server, "--", *app_args]


def check_port(port: int) -> None:
    """Raises ConfigError where the dashboard cannot serve on `port`: Streamlit said 'Port P
    is not available' after racelens had said it served there, or, above 65535, ended with
    its traceback. Asked as Streamlit's server binds: every address, reusing one in
    TIME_WAIT."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: no such port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as e:
            raise ConfigError(
                f"--port {port}: cannot serve there: {e.strerror} (a dashboard already on it? "
                "give another --port)"
            ) from e


def _dashboard(args: argparse.Namespace, _: list[str]) -> int:
    command = dashboard_command(args)
    print(f"racelens: dashboard on http://localhost:{args.port} (Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)  # Streamlit takes over this process, and Ctrl-C with it


def _selfcheck(_: argparse.Namespace, __: list[str]) -> int:
    from pipeline.selfcheck import selfcheck

    return selfcheck()


def _faces_eval(_: argparse.Namespace, rest: list[str]) -> int:
    try:
        from bench.face_eval import main as evaluate
    except ImportError as e:
        raise ConfigError("faces-eval runs from the source tree (bench/ is not installed)") from e
    return evaluate(rest)


def _command(sub: argparse._SubParsersAction, name: str, **kwargs: object) -> OneLineParser:
    """A subcommand whose own --help starts with what its line in `racelens --help` says."""
    return sub.add_parser(name, description=kwargs.get("help"), **kwargs)


def _parser() -> OneLineParser:
    from pipeline.options import RacelensOptions

    parser = OneLineParser(prog="racelens", description="Photo-based race timing.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    command = functools.partial(_command, sub)

    demo = command("demo", help="Write a synthetic demo race.")
    demo.add_argument("--out", required=True, help="Folder for the demo race.")
    demo.add_argument("--athletes", type=int, default=200, help="Number of athletes (200).")
    demo.add_argument("--stations", type=int, default=4, help="Number of stations (4).")
    demo.add_argument("--seed", type=int, default=7, help="Random seed (7).")
    demo.add_argument(
        "--faces",
        default=None,
        help="Folder of real face photos (one folder per person, or labels.csv file,person) "
        "to put on some runners.",
    )
    demo.add_argument(
        "--course",
        choices=("line", "out-and-back"),
        default="line",
        help="line (start to finish), or out-and-back: checkpoints of the way out and back "
        "at one place, photographed by one phone known only by its GPS (line).",
    )
    demo.add_argument(
        "--approach",
        default=None,
        metavar="STATION",
        help="Station whose camera faces the oncoming runners, photographing them from "
        "10-25 s before the line; course.yaml gives it crossing: last (none).",
    )
    demo.set_defaults(handler=_demo)

    run = command(
        "run",
        help="Run the pipeline on a folder of photos.",
        usage="racelens run --images DIR --course FILE --start-list FILE --out DIR [options]",
        epilog="--images, --course, --start-list and --out are required. Any Apache Beam "
        "pipeline option (e.g. --runner, --direct_running_mode, --direct_num_workers) is "
        "passed to Beam; --runner=DaskRunner [--dask_local_workers=N] analyses the photos on "
        "Dask.",
    )
    RacelensOptions._add_argparse_args(run)
    run.add_argument("--streaming", action="store_true", help="Live mode: watch --images.")
    run.set_defaults(handler=_run)

    results = command(
        "results",
        help="Time the last run again from its stored facts (no OCR): after corrections, "
        "a changed course or start list.",
    )
    results.add_argument("--out", required=True, help="Output folder of an earlier run.")
    results.add_argument(
        "--corrections",
        default=None,
        help="Corrections log CSV (default: the run's, else OUT/corrections.csv where it exists).",
    )
    results.add_argument("--course", default=None, help="Course YAML (default: the run's).")
    results.add_argument("--start-list", default=None, help="Start list CSV (default: the run's).")
    results.add_argument(
        "--as-of", default=None, help="The results at this time (ISO 8601): later passages wait."
    )
    results.set_defaults(handler=_results)

    bibs = command(
        "bibs",
        help="Read bib numbers on photos, one JSON line per photo (with 'error', the reason, "
        "where none could be read).",
    )
    bibs.add_argument("images", nargs="+", help="Photo files.")
    bibs.add_argument(
        "--start-list",
        default=None,
        help="Read only bibs in this start list (a near miss is mapped to its listed bib).",
    )
    bibs.set_defaults(handler=_bibs)

    check = command(
        "selfcheck",
        help="Run race day's worst files through the pipeline twice and count what went wrong.",
    )
    check.set_defaults(handler=_selfcheck)

    score = command("score", help="Score a run against a demo race's truth.csv.")
    score.add_argument("--out", required=True, help="Output folder of the run.")
    score.add_argument("--truth", required=True, help="truth.csv of the demo race.")
    score.add_argument("--images", required=True, help="Images folder of the run.")
    score.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="Seconds a passage may be off its true time (2.0).",
    )
    score.add_argument("--course", default=None, help="Course (default: beside truth.csv).")
    score.add_argument("--start-list", default=None, help="Start list (default: beside truth.csv).")
    score.add_argument("--check", action="store_true", help="Exit 1 below the targets.")
    score.set_defaults(handler=_score)

    # Its arguments belong to bench/face_eval.py, which parses them (and answers --help).
    faces = command(
        "faces-eval",
        add_help=False,
        help="Measure face identification on labelled faces (correct/wrong/review).",
    )
    faces.set_defaults(handler=_faces_eval)

    photos = command(
        "photos",
        help="Copy (or link) each athlete's photos, by bib or face, into DEST/<bib>/.",
    )
    photos.add_argument("--out", required=True, help="Output folder of a run.")
    photos.add_argument("--to", required=True, help="Folder to put one folder per athlete in.")
    photos.add_argument(
        "--link", action="store_true", help="Symbolic links to the photos instead of copies."
    )
    photos.add_argument(
        "--bib", nargs="+", default=None, help="Only these athletes (default: everyone)."
    )
    photos.set_defaults(handler=_photos)

    board = command("dashboard", help="Start the dashboard for race officials.")
    board.add_argument("--out", required=True, help="Output folder of a run.")
    board.add_argument("--port", type=int, default=8501, help="Port to serve on (8501).")
    board.add_argument(
        "--corrections",
        default=None,
        help="Corrections log (default: the one the results are kept from: a live run's, "
        "else the last run's, else OUT/corrections.csv).",
    )
    board.add_argument(
        "--password-file",
        default=None,
        help="File holding a password every page asks for (or set RACELENS_DASHBOARD_PASSWORD).",
    )
    board.set_defaults(handler=_dashboard)
    return parser


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger(WORKER_LOG_RELAY).addFilter(_without_beams_worker_noise)


# The launcher's logger that passes on its workers' log lines, and what of them is noise: each
# worker warned that no main session was staged for it (for Dataflow's workers), twice a run
# on the terminal. racelens' workers need none: they import what they run.
WORKER_LOG_RELAY = "apache_beam.runners.portability.local_job_service"
WORKER_NOISE = "No semi_persistent_directory found"


def _without_beams_worker_noise(record: logging.LogRecord) -> bool:
    return WORKER_NOISE not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    if argv is not None:  # a call from other code, which keeps its own handling of Ctrl-C
        return _main(argv, own_process=False)
    handled_by(_noting_ctrl_c)
    try:
        return _main(sys.argv[1:], own_process=True)
    except (KeyboardInterrupt, ImportError) as e:
        # Ctrl-C in a command that has no stopping of its own (demo, bibs, photos, selfcheck):
        # one line, not the traceback of wherever it was (28-92 lines). Ctrl-C while a
        # compiled module initialises (onnxruntime, dlib) comes out as that module's
        # ImportError ("initialization failed"), the KeyboardInterrupt lost inside it.
        if isinstance(e, ImportError) and not _STOPPED_BY:
            raise
        with contextlib.suppress(OSError):  # a terminal hung up
            os.write(sys.stderr.fileno(), b"racelens: interrupted\n")
        _ended(128 + (_STOPPED_BY[0] if _STOPPED_BY else signal.SIGINT))


# The signals that stopped a command with no stopping of its own, in order.
_STOPPED_BY: list[int] = []


def _noting_ctrl_c(signum: int, frame: object) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt), noted, so that main can tell it where an
    import turned it into an ImportError. SIGTERM and SIGHUP are taken as Ctrl-C, so that
    a command ends through its clean-ups too: killed by them, `racelens photos` left a
    half-made copy under a temporary name in an athlete's folder."""
    _STOPPED_BY.append(signum)
    signal.default_int_handler(signum, frame)


def _main(argv: list[str], own_process: bool) -> int:
    """The `racelens` program (`own_process`: it runs only this command) on `argv`."""
    if own_process and argv[:1] in (["run"], ["results"]):
        _stop_plainly_on_signals()  # while Beam is imported, before a run has anything to stop
    _configure_logging()
    args, rest = _parser().parse_known_args(argv)
    args.own_process = own_process
    if args.command not in ("run", "results", "faces-eval") and rest:
        print(f"racelens: error: unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # `run` hands all its arguments to Beam; the others pass on only what they do not know.
        code = args.handler(args, argv[1:] if args.command == "run" else rest)
    except ConfigError as e:
        print(f"racelens: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        if args.command == "demo":
            print(f"racelens: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    if own_process and args.command in ("run", "results"):
        _ended(code)
    return code


def _stop_plainly_on_signals() -> None:
    """Meanwhile (until a run's own handling, pipeline/interrupted.py, and after it), Ctrl-C,
    SIGTERM and SIGHUP end this process with one line, not a traceback of whatever it
    imports."""
    handled_by(ending_at_once(b"racelens: interrupted; nothing was being written\n"))


def _ended(code: int) -> NoReturn:
    """Ends this process with `code` once its exit handlers have run and its output is
    flushed, without the interpreter's teardown: after a pipeline run, freeing Beam's,
    pyarrow's and gRPC's objects one by one took 0.5-1.5 s (load 6-8) for nothing."""
    atexit._run_exitfuncs()  # logging's flush among them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
