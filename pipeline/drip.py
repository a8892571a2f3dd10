"""A race day replayed: the demo race's photos dripped into a folder as cameras upload them.

    python -m pipeline.drip drip RACE/images TARGET [--seconds S]
    python -m pipeline.drip compare LIVE_OUT BATCH_OUT

`drip` copies the photos in the order they were taken, squeezed into
`--seconds`, except that one station's phone has no signal and uploads all
its photos when the race is over (late, within the course's allowed
lateness), and every TWICE_EVERY-th photo is uploaded a second time under
another name. `compare` says whether two runs' passages and leaderboards are
equal row for row (exit 1 if not). `run_local.sh --live`, bench/live_latency.py
and tests/test_live.py use both.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from pipeline.cli import OneLineParser
from pipeline.results_files import read_table
from transforms.exif import exif_facts
from transforms.schemas import LEADERBOARD_FILE, PASSAGES_FILE

LATE_PHONE_PREFIX = "IMG_"  # the demo's phone (placed by GPS): uploads when the race is over
TWICE_EVERY = 25  # every 25th photo is uploaded a second time
# Analysing a demo photo takes about 0.2 s of a core: a slower drip lets the live mode keep up.
SECONDS_PER_PHOTO = 0.4
COMPARED = (PASSAGES_FILE, LEADERBOARD_FILE)


def taken(path: Path) -> str:
    """EXIF DateTimeOriginal with sub-seconds, sortable as text ("" when unreadable)."""
    try:
        with Image.open(path) as image:
            exif = exif_facts(image)
    except OSError:
        return ""
    return f"{exif.datetime_original or ''}.{exif.subsec or ''}"


def upload_plan(images: Path) -> list[Path]:
    """Photos in the order they reach the folder: time taken, the late phone last."""
    photos = sorted((p for p in images.rglob("*") if p.is_file()), key=lambda p: (taken(p), p))
    late = [p for p in photos if p.name.startswith(LATE_PHONE_PREFIX)]
    return [p for p in photos if not p.name.startswith(LATE_PHONE_PREFIX)] + late


def uploads(plan: list[Path], source: Path) -> list[list[Path]]:
    """The files each photo of the plan lands as (relative to the folder): one or two."""
    landed = []
    for i, photo in enumerate(plan):
        relative = photo.relative_to(source)
        # After the first by path too ("_" sorts after "."), as it lands after it: a live run
        # keeps the copy that arrived first, a batch run the first by path; these agree.
        again = relative.with_name(f"{photo.stem}_again{photo.suffix}")
        landed.append([relative, again] if i % TWICE_EVERY == 0 else [relative])
    return landed


def drip(
    source: Path,
    target: Path,
    seconds: float | None = None,
    landed: dict[str, float] | None = None,
    done: threading.Event | None = None,
) -> None:
    """Copies the photos under `source` into `target` as planned, in `seconds` (default
    SECONDS_PER_PHOTO each); `landed` gets each file's path and the wall time it landed;
    `done` is set at the end."""
    plan = upload_plan(source)
    gap = SECONDS_PER_PHOTO if seconds is None else seconds / max(1, len(plan))
    for photo, copies in zip(plan, uploads(plan, source), strict=True):
        for relative in copies:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(photo, destination)
            except BaseException:  # Ctrl-C mid-copy: no half photo for the live run to reject
                destination.unlink(missing_ok=True)
                raise
            if landed is not None:
                landed[str(destination)] = time.time()
        time.sleep(gap)
    if done is not None:
        done.set()


def table(out: Path, name: str) -> list[dict]:
    return sorted(read_table(str(out / name)).to_pylist(), key=repr)


def differing(live: Path, batch: Path) -> list[str]:
    """The compared outputs whose rows differ between two runs."""
    return [name for name in COMPARED if table(live, name) != table(batch, name)]


def drip_problem(source: Path, target: Path) -> str | None:
    """Why the photos of `source` cannot be dripped into `target`, or None: a source that is
    no folder dripped nothing (exit 0); a target inside it would have its copies dripped
    again by the next drip."""
    if not source.is_dir():
        return f"{source}: not a folder"
    if target.resolve().is_relative_to(source.resolve()):
        return (
            f"{target} is inside {source}: its copies would be photos of the race (put it beside)"
        )
    return None


def missing_result(*outs: Path) -> Path | None:
    """The first results file `compare` reads that is not there (it ended in a traceback)."""
    return next(
        (out / name for out in outs for name in COMPARED if not (out / name).is_file()), None
    )


def main(argv: list[str] | None = None) -> int:
    # One line and exit 2 for a bad argument, as racelens' own commands (argparse: usage too).
    parser = OneLineParser(prog="python -m pipeline.drip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("drip", help="Drip a race's photos into a folder.")
    d.add_argument("source", type=Path, help="The race's images folder.")
    d.add_argument("target", type=Path, help="The folder the live run watches.")
    d.add_argument(
        "--seconds", type=float, default=None, help="Length of the drip (0.4 s per photo)."
    )
    c = sub.add_parser("compare", help="Do two runs have the same passages and leaderboard?")
    c.add_argument("live", type=Path)
    c.add_argument("batch", type=Path)
    args = parser.parse_args(argv)
    if args.command == "drip":
        if problem := drip_problem(args.source, args.target):
            parser.error(problem)
        landed: dict[str, float] = {}
        try:
            drip(args.source, args.target, args.seconds, landed)
        except KeyboardInterrupt:  # one line, not the traceback of its sleep
            print(
                f"drip: interrupted; {len(landed)} files copied into {args.target}", file=sys.stderr
            )
            return 130
        return 0
    if missing := missing_result(args.live, args.batch):
        parser.error(f"{missing}: not found")
    diff = differing(args.live, args.batch)
    same = ", ".join(n.removesuffix(".parquet") for n in COMPARED)
    print(f"streaming results equal batch results ({same}): {not diff}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
