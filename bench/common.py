"""What the benchmarks and the tests that use real photos share."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def data_folder() -> Path:
    """The real photos for measuring (read their README): $RACELENS_DATA, else
    ../shared/data beside the repository, else /work/shared/data, where a clone made
    elsewhere on this machine (CI's clean clone) finds them."""
    if "RACELENS_DATA" in os.environ:
        return Path(os.environ["RACELENS_DATA"])
    beside = REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


DATA = data_folder()


def load_module(name: str, path: Path) -> ModuleType:
    """The Python file at `path` as a module called `name`, beside this tree's own: another
    version of one of them, to measure against it."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def spread(paths: list[str], count: int) -> list[str]:
    """At most count of the paths, evenly spread (as bench/perf.py samples its stages)."""
    return paths[:: max(1, len(paths) // count)][:count]
