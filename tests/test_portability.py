"""The pipeline can leave this machine: what Flink and Dataflow need of it, checked here.

Neither engine runs here (no job server, no Docker engine, no network), so these tests
check what a submission depends on: the graph builds with each engine's options and
survives its portable representation; every DoFn survives Beam's pickler and carries no
open file or socket to the workers; no transform touches data except through Beam's
filesystems (which also reach gs:// and s3://); and the worker container installs what
scripts/bootstrap.sh installs on a developer's machine.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shutil
import socket
import subprocess
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.internal import cloudpickle_pickler, pickler
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.graph import build
from pipeline.options import RaceConfig, RacelensOptions

REPO = Path(__file__).resolve().parents[1]

ENGINES = {
    "flink": [
        "--runner=FlinkRunner",
        "--flink_master=localhost:8081",
        "--environment_type=DOCKER",
        "--environment_config=racelens-worker:0.1.0",
    ],
    "dataflow": [
        "--runner=DataflowRunner",
        "--project=racelens-demo",
        "--region=europe-north1",
        "--temp_location=gs://racelens-demo/tmp",
        "--sdk_container_image=europe-north1-docker.pkg.dev/racelens-demo/racelens/worker:0.1.0",
    ],
}


@pytest.fixture(params=sorted(ENGINES))
def engine_pipeline(request: pytest.FixtureRequest, race: Path, tmp_path: Path) -> beam.Pipeline:
    """The whole race, built (not run) for one engine."""
    opts = PipelineOptions(
        [
            *("--images", str(race / "images"), "--course", str(race / "course.yaml")),
            *("--start-list", str(race / "startlist.csv"), "--out", str(tmp_path / "out")),
            *ENGINES[request.param],
        ]
    )
    try:
        p = beam.Pipeline(options=opts)
    except ImportError as e:  # Beam 2.77 builds for both without its GCP extra; a later one may not
        pytest.skip(f"{request.param}: the runner needs an extra to build a graph: {e}")
    build(p, RaceConfig(opts.view_as(RacelensOptions)))
    return p


def transform_labels(proto: beam_runner_api_pb2.Pipeline) -> list[str]:
    return sorted(t.unique_name for t in proto.components.transforms.values())


def test_graph__survives_the_portable_representation_an_engine_receives(
    engine_pipeline: beam.Pipeline,
) -> None:
    proto = engine_pipeline.to_runner_api()
    sent = beam_runner_api_pb2.Pipeline.FromString(proto.SerializeToString())
    received = beam.Pipeline.from_runner_api(sent, engine_pipeline.runner, engine_pipeline.options)
    labels = transform_labels(proto)
    assert {"ReadPhotos", "AnalysePhotos", "WriteResults"} <= set(labels)
    assert transform_labels(received.to_runner_api()) == labels


class _DoFns(PipelineVisitor):
    """Every DoFn of a graph by the label of its step (Map, Create and combiners are ParDos)."""

    def __init__(self) -> None:
        self.fns: dict[str, beam.DoFn] = {}

    def visit_transform(self, node: AppliedPTransform) -> None:
        if isinstance(node.transform, beam.ParDo):
            self.fns[node.full_label] = node.transform.fn


class _HandleFinder(cloudpickle.CloudPickler):
    """Beam's cloudpickle, noting every open file or socket it is asked to pickle.

    cloudpickle pickles a text file by reading it, so a handle kept by a DoFn would
    not fail: the workers would silently get a copy of what it held at submission.
    """

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, config=cloudpickle_pickler.DEFAULT_CONFIG)
        self.handles: list[object] = []

    def persistent_id(self, obj: object) -> None:
        if isinstance(obj, (io.IOBase, socket.socket)):
            self.handles.append(obj)


def test_dofns__every_one_survives_beams_pickler_and_holds_no_open_handle(
    engine_pipeline: beam.Pipeline,
) -> None:
    visitor = _DoFns()
    engine_pipeline.visit(visitor)
    assert len(visitor.fns) > 20, "the visitor found the graph's steps"
    for label, fn in visitor.fns.items():
        assert type(pickler.loads(pickler.dumps(fn))) is type(fn), label
        finder = _HandleFinder(io.BytesIO())
        finder.dump(fn)
        assert not finder.handles, f"{label} keeps {finder.handles}"


# Calls that reach a filesystem directly, where a worker sees only its own disk.
_DIRECT_IO = re.compile(
    r"open|io\.open|glob\..*|shutil\..*|Path"
    r"|os\.(?!getpid|environ|cpu_count).*"  # the process and its environment are no files
)
# Modules where that is right: the course, start list and corrections log are read on the
# launcher before the graph exists (the log is appended by the dashboard), and tesseract's
# language data, PP-OCR's and dlib's models lie on every worker's own disk, installed by the
# worker container, and what is derived from them is kept in its own cache folder (kept.py).
_OWN_DISK_MODULES = {
    "course.py",
    "corrections.py",
    "tesseract.py",
    "ppocr.py",
    "faces.py",
    "face_net.py",
    "kept.py",
    "hashes.py",
}
# Elsewhere, a function may touch a path's disk only after asking this whether it is local:
# photos.py does, for the links, FIFOs and odd names that Beam's listing passes over.
_LOCAL_CHECK = "_is_local"


def _unguarded_direct_io(tree: ast.Module) -> list[str]:
    """The direct filesystem calls of a module, except in functions that ask _LOCAL_CHECK."""
    guarded = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef)
        and any(
            isinstance(c, ast.Call) and ast.unparse(c.func) == _LOCAL_CHECK for c in ast.walk(fn)
        )
        for node in ast.walk(fn)
    }
    return [
        ast.unparse(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and id(node) not in guarded
        and _DIRECT_IO.fullmatch(ast.unparse(node.func))
    ]


def test_transforms__read_and_write_data_only_through_beam_filesystems() -> None:
    direct = sorted(
        f"{path.name}: {call}"
        for path in (REPO / "transforms").glob("*.py")
        if path.name not in _OWN_DISK_MODULES
        for call in _unguarded_direct_io(ast.parse(path.read_text(encoding="utf-8")))
    )
    assert not direct, f"use Beam's FileSystems, or check {_LOCAL_CHECK} first: {direct}"


# --- The worker container ---------------------------------------------------------------------


def _commands(script: str, command: str) -> list[list[str]]:
    """The arguments of every `command` in a shell script or a Dockerfile's RUN lines."""
    joined = script.replace("\\\n", " ")
    return [m.group(1).split() for m in re.finditer(rf"{command}\s+([^\n;&|]*)", joined)]


def apt_packages(script: str) -> set[str]:
    return {
        word
        for args in _commands(script, "apt-get install")
        for word in args
        if not word.startswith(("-", ">"))
    }


def pip_targets(script: str) -> set[str]:
    """What `pip install` installs, without its extras: the project's `[dev]` extra is test
    tools, which a worker does not need."""
    return {
        re.sub(r"\[.*\]$", "", word.strip("\"'"))
        for args in _commands(script, "pip install")
        for word in args
        if not word.startswith(("-", ">"))
    }


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return (REPO / "scripts" / "bootstrap.sh").read_text(encoding="utf-8")


def test_dockerfile__installs_what_bootstrap_installs(dockerfile: str, bootstrap: str) -> None:
    # chromium is for the dashboard's browser test only, as the [dev] extra is test tools.
    worker_apt = apt_packages(bootstrap) - {"chromium", "chromium-driver"}
    assert apt_packages(dockerfile) == worker_apt
    assert "tesseract-ocr" in worker_apt
    # `pip install .` installs setup.py's install_requires: dlib-bin, face-recognition-models,
    # rapidocr-onnxruntime and the rest, with the models they ship.
    assert pip_targets(dockerfile) == pip_targets(bootstrap) == {"."}


# Libraries every image with a CPython has: glibc's, the C++ runtime's and zlib.
BASE_LIBRARIES = {
    *("libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1"),
    *("ld-linux-x86-64.so.2", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"),
}
# The Debian package of each other system library that an installed wheel's native code
# loads (opencv-python's bundled Qt: GL, GLib, X11).
DEBIAN_PACKAGE = {
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libxcb.so.1": "libxcb1",
}


def installed_requirements() -> set[str]:
    """setup.py's install_requires and everything they require, as installed here."""
    from importlib import metadata

    from packaging.requirements import Requirement

    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    listed = setup[
        setup.index("install_requires=[") : setup.index("],", setup.index("install_requires"))
    ]
    todo, seen = re.findall(r'"([A-Za-z0-9_.-]+)', listed), set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            for raw in metadata.requires(name) or []:
                requirement = Requirement(raw)
                if not requirement.marker or requirement.marker.evaluate({"extra": ""}):
                    todo.append(requirement.name)
    return seen


def system_libraries_needed() -> set[str]:
    """The shared libraries that the installed requirements' native code loads and does not
    bundle (readelf's NEEDED entries)."""
    from importlib import metadata

    objects = []
    for name in installed_requirements():
        with contextlib.suppress(metadata.PackageNotFoundError):
            files = metadata.distribution(name).files or []
            objects += [
                Path(metadata.distribution(name).locate_file(f)) for f in files if ".so" in f.name
            ]
    needed: set[str] = set()
    for path in objects:
        elf = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True).stdout
        needed |= set(re.findall(r"\(NEEDED\).*\[(.+)\]", elf))
    return needed - {path.name for path in objects}


@pytest.mark.skipif(not shutil.which("readelf"), reason="readelf (binutils) is not installed")
def test_dockerfile_and_bootstrap__install_the_system_libraries_the_wheels_load(
    dockerfile: str, bootstrap: str
) -> None:
    missing = system_libraries_needed() - BASE_LIBRARIES
    unknown = missing - DEBIAN_PACKAGE.keys()
    assert not unknown, f"name the Debian package of {sorted(unknown)} in DEBIAN_PACKAGE"
    packages = {DEBIAN_PACKAGE[library] for library in missing}
    assert packages <= apt_packages(dockerfile), "the Dockerfile installs them"
    assert packages <= apt_packages(bootstrap), "scripts/bootstrap.sh installs them"


def test_dockerfile__starts_from_the_sdk_image_of_the_beam_version_racelens_pins(
    dockerfile: str,
) -> None:
    [pinned] = re.findall(r'"apache-beam==([\d.]+)"', (REPO / "setup.py").read_text())
    assert re.search(rf"^FROM apache/beam_python3\.11_sdk:{re.escape(pinned)}$", dockerfile, re.M)
