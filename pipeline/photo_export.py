"""`racelens photos`: each athlete's photos into a folder of their own.

    racelens photos --out RESULTS --to DEST [--link] [--bib B ...]

Reads RESULTS/athlete_photos.parquet (every photo an athlete was identified on, by bib or
face) and copies each photo, or links to it with --link, as DEST/<bib>/<station>_<file>.
Sources are only read. A photo already in place (the same copy, or a link to the same
file) is left alone, so a second run after more photos arrived adds only the new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.cli import unwritable, within
from pipeline.results_files import read_table
from transforms.course import ConfigError
from transforms.photos import os_path
from transforms.schemas import ATHLETE_PHOTOS_FILE, LEADERBOARD_FILE
from transforms.write import is_no_room, temporary_name

RUN_FILE = "run.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ExportSummary:
    athletes: int
    photos: int
    written: int
    unchanged: int
    missing: int  # photos listed whose file is gone
    unreadable: int = 0  # photos whose file could not be read (each told on stderr)

    def report(self, dest: str, verb: str) -> str:
        unreadable = f", {self.unreadable} unreadable" if self.unreadable else ""
        return (
            f"racelens: {self.photos} photos of {self.athletes} athletes in {dest} "
            f"({self.written} {verb}, {self.unchanged} already there, "
            f"{self.missing} missing at their source{unreadable})"
        )


def safe_name(text: str) -> str:
    """A file or folder name from text a start list or a camera chose ("../x" cannot climb)."""
    name = _UNSAFE.sub("_", text)
    return "_" if name.strip(".") == "" else name


def export_plan(rows: Iterable[dict], dest: str) -> list[tuple[str, str]]:
    """(source, target) per athlete and photo; two photos of one athlete never share a name."""
    plan: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: (r["bib"], r["path"])):
        folder = os.path.join(dest, safe_name(row["bib"]))
        station = safe_name(row["station_id"] or "unknown")
        target = os.path.join(folder, f"{station}_{safe_name(os.path.basename(row['path']))}")
        if target in plan and plan[target] != row["path"]:
            base = f"{station}_{row['image_id'][:12]}_{safe_name(os.path.basename(row['path']))}"
            target = os.path.join(folder, base)
        plan[target] = row["path"]
    return [(source, target) for target, source in plan.items()]


def _in_place(source: str, target: str, link: bool) -> bool:
    if link:
        return os.path.islink(target) and os.readlink(target) == source
    if os.path.islink(target) or not os.path.isfile(target):
        return False
    have, want = os.stat(target), os.stat(source)
    return (have.st_size, have.st_mtime_ns) == (want.st_size, want.st_mtime_ns)


def place(source: str, target: str, link: bool) -> bool:
    """Copies (or links) source to target unless it is there already; True when written.

    Written under a temporary name and renamed over the target, so the target is never
    written through: an earlier link to a source is replaced, never the source behind it.
    """
    if _in_place(source, target, link):
        return False
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = temporary_name(target)
    try:
        if link:
            os.symlink(source, temporary)
        else:
            shutil.copy2(source, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):  # not made: nothing half-written stays
            os.remove(temporary)
        raise
    return True


class DestinationFull(Exception):
    """The destination's disk filled; what was written before stays, whole."""

    def __init__(self, dest: str, written: int, link: bool):
        done = f"{written} photo{'' if written == 1 else 's'} {'linked' if link else 'copied'}"
        super().__init__(
            f"no space left on device in {dest}; the {done} so far are kept; "
            "make room there, then run the same command again to carry on"
        )


def _placed(source: str, target: str, link: bool, so_far: tuple[str, int]) -> bool | None:
    """`place`, its disk filling up raised as DestinationFull (`so_far`: dest, written);
    None where the source cannot be read, told in one line on stderr: a photo's I/O error
    ended the export with a traceback, the photos after it not copied."""
    try:
        return place(source, target, link)
    except OSError as e:
        if is_no_room(e):
            raise DestinationFull(*so_far, link) from e
        if e.filename != source:
            raise
        print(f"racelens: cannot read {source}: {e.strerror}; left out", file=sys.stderr)
        return None


def _read(out: str, name: str, columns: Sequence[str]) -> list[dict]:
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path}: not found (run `racelens run --out {out}`, or re-time an earlier run "
            f"with `racelens results --out {out}`)"
        )
    try:
        return read_table(path, columns).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's errors are both
        raise ConfigError(f"{path}: cannot read it ({e})") from e


def _run_inputs(out: str) -> dict:
    """The inputs of the run that wrote `out` (its run.json); none where it cannot be read."""
    try:
        with open(os.path.join(out, RUN_FILE), encoding="utf-8") as f:
            inputs = json.load(f)
    except (OSError, ValueError):
        return {}
    return inputs if isinstance(inputs, dict) else {}


def _check_dest(dest: str, out: str) -> None:
    problem = unwritable(dest)
    if problem:
        raise ConfigError(f"--to {dest}: cannot write in it: {problem}")
    inputs = _run_inputs(out)
    images, facts = inputs.get("images"), inputs.get("facts")
    if isinstance(images, str) and "://" not in images and within(dest, images):
        raise ConfigError(
            f"--to {dest}: inside the race's photos ({images}); the copies would join the race"
        )
    # Bib folders among the results would mix with them (a bib "facts" would write into the
    # fact store): a folder below them, e.g. OUT/photos, keeps them apart.
    if os.path.realpath(dest) == os.path.realpath(out):
        raise ConfigError(
            f"--to {dest}: the results folder itself; name a folder inside it or beside"
        )
    if isinstance(facts, str) and "://" not in facts and within(dest, facts):
        raise ConfigError(f"--to {dest}: inside the race's stored facts ({facts})")


def export_photos(
    out: str, dest: str, link: bool = False, bibs: Sequence[str] = ()
) -> ExportSummary:
    """Every identified photo (of `bibs` only, if given) into dest/<bib>/.

    Raises ConfigError for results that cannot be read, a destination that is a file or lies
    among the race's photos, and a bib that is neither in the results nor on a photo.
    """
    _check_dest(dest, out)
    rows = _read(out, ATHLETE_PHOTOS_FILE, ("bib", "image_id", "path", "station_id"))
    if bibs:
        known = {r["bib"] for r in _read(out, LEADERBOARD_FILE, ("bib",))} | {
            r["bib"] for r in rows
        }
        unknown = [b for b in bibs if b not in known]
        if unknown:
            raise ConfigError(f"--bib {' '.join(unknown)}: no athlete with this bib in {out}")
        rows = [r for r in rows if r["bib"] in set(bibs)]
    written = unchanged = missing = unreadable = 0
    plan = export_plan(rows, dest)
    for source, target in plan:
        local = os.path.abspath(os_path(source))
        if not os.path.isfile(local):
            missing += 1
            continue
        placed = _placed(local, target, link, (dest, written))
        if placed is None:
            unreadable += 1
        elif placed:
            written += 1
        else:
            unchanged += 1
    athletes = len({os.path.dirname(target) for _, target in plan})
    return ExportSummary(athletes, len(plan), written, unchanged, missing, unreadable)
