"""Tests of `racelens photos`: each athlete's photos into DEST/<bib>/, sources untouched."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.photo_export import export_photos, export_plan, safe_name
from tests.conftest import at
from transforms import schemas


def _row(bib: str, source: Path, station: str | None = "finish") -> dict:
    return {
        "bib": bib,
        "image_id": f"id-{source.name}",
        "path": str(source),
        "station_id": station,
        "taken_at": at(60),
        "method": "face_match" if bib == "102" else "bib_ocr",
        "confidence": 0.9,
    }


def _results(root: Path, rows_of: dict[str, list[str]]) -> tuple[Path, dict[str, Path]]:
    """A run's output folder listing the photos (file name -> bibs), and the photos."""
    images, out = root / "images", root / "results"
    (images / "finish").mkdir(parents=True)
    out.mkdir()
    sources = {}
    rows = []
    for name, bibs in rows_of.items():
        sources[name] = images / "finish" / name
        sources[name].write_bytes(f"jpeg bytes of {name}".encode())
        rows += [_row(bib, sources[name]) for bib in bibs]
    table = pa.Table.from_pylist(rows, schema=schemas.ATHLETE_PHOTOS)
    pq.write_table(table, out / schemas.ATHLETE_PHOTOS_FILE)
    board = [{"bib": b, "status": "finished"} for b in ("101", "102", "103", "104")]
    pq.write_table(pa.Table.from_pylist(board), out / schemas.LEADERBOARD_FILE)
    (out / "run.json").write_text(
        json.dumps({"images": str(images), "facts": str(out / "facts")}), encoding="utf-8"
    )
    return out, sources


def _snapshot(paths) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    return _results(tmp_path, {"a.jpg": ["101", "102"], "b.jpg": ["101"], "c.jpg": ["103"]})


def test_photos__copies_each_athletes_photos_into_their_folder(results, tmp_path: Path) -> None:
    out, sources = results
    before = _snapshot(sources.values())
    dest = tmp_path / "export"
    assert main(["photos", "--out", str(out), "--to", str(dest)]) == 0
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "101/finish_a.jpg",
        "101/finish_b.jpg",
        "102/finish_a.jpg",
        "103/finish_c.jpg",
    ]
    assert (dest / "102" / "finish_a.jpg").read_bytes() == sources["a.jpg"].read_bytes()
    assert not (dest / "101" / "finish_a.jpg").is_symlink()
    assert _snapshot(sources.values()) == before


def test_photos__link_makes_symbolic_links_to_the_sources(results, tmp_path: Path) -> None:
    out, sources = results
    dest = tmp_path / "export"
    summary = export_photos(str(out), str(dest), link=True, bibs=["101"])
    assert (summary.athletes, summary.photos, summary.written) == (1, 2, 2)
    assert os.readlink(dest / "101" / "finish_b.jpg") == str(sources["b.jpg"])
    assert not (dest / "102").exists()


def test_photos__second_run_writes_nothing_and_only_new_photos_later(
    results, tmp_path: Path
) -> None:
    out, sources = results
    dest = tmp_path / "export"
    for link in (False, True):
        first = export_photos(str(out), str(dest / str(link)), link=link)
        again = export_photos(str(out), str(dest / str(link)), link=link)
        assert (first.written, first.unchanged) == (4, 0)
        assert (again.written, again.unchanged) == (0, 4)
    # A later run found 101 on one more photo.
    new = sources["a.jpg"].with_name("d.jpg")
    new.write_bytes(b"jpeg bytes of d.jpg")
    listed = pq.read_table(out / schemas.ATHLETE_PHOTOS_FILE).to_pylist() + [_row("101", new)]
    table = pa.Table.from_pylist(listed, schema=schemas.ATHLETE_PHOTOS)
    pq.write_table(table, out / schemas.ATHLETE_PHOTOS_FILE)
    later = export_photos(str(out), str(dest / "False"))
    assert (later.written, later.unchanged) == (1, 4)
    assert (dest / "False" / "101" / "finish_d.jpg").read_bytes() == new.read_bytes()


def test_photos__copy_over_an_earlier_link_leaves_the_source_alone(results, tmp_path: Path) -> None:
    out, sources = results
    dest = tmp_path / "export"
    export_photos(str(out), str(dest), link=True)
    before = _snapshot(sources.values())
    summary = export_photos(str(out), str(dest), link=False)
    assert summary.written == 4
    assert not (dest / "101" / "finish_a.jpg").is_symlink()
    assert _snapshot(sources.values()) == before


def test_photos__missing_source_is_counted_not_fatal(results, tmp_path: Path) -> None:
    out, sources = results
    sources["c.jpg"].unlink()
    summary = export_photos(str(out), str(tmp_path / "export"))
    assert (summary.photos, summary.written, summary.missing) == (4, 3, 1)


def test_photos__an_unreadable_source_is_told_and_the_others_copied(
    results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A photo's I/O error ended the export with a traceback, the photos after it not copied.
    out, sources = results
    copy = shutil.copy2

    def failing_disk(source: str, target: str) -> None:
        if source == str(sources["a.jpg"]):
            raise OSError(errno.EIO, "Input/output error", source)
        copy(source, target)

    monkeypatch.setattr(shutil, "copy2", failing_disk)
    summary = export_photos(str(out), str(tmp_path / "export"))
    assert (summary.photos, summary.written, summary.unreadable) == (4, 2, 2)  # a.jpg: 2 bibs
    err = capsys.readouterr().err
    assert err == f"racelens: cannot read {sources['a.jpg']}: Input/output error; left out\n" * 2
    assert "2 unreadable)" in summary.report("export", "copied")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_results", "athlete_photos.parquet: not found"),
        ("dest_is_file", "not a folder"),
        ("dest_under_a_file", "not a folder"),  # it was NotADirectoryError's traceback
        ("dest_in_images", "the copies would join the race"),
        ("dest_is_results", "the results folder itself"),  # its bib folders among the results
        ("dest_in_facts", "inside the race's stored facts"),
        ("unknown_bib", "--bib 999: no athlete"),
        ("no_dest", "the following arguments are required: --to"),
    ],
)
def test_photos__bad_arguments_exit_2_with_one_line(
    results, tmp_path: Path, capsys, case: str, message: str
) -> None:
    out, _ = results
    (tmp_path / "file").write_text("x")
    argv = {
        "no_results": ["--out", str(tmp_path / "nothing"), "--to", str(tmp_path / "e")],
        "dest_is_file": ["--out", str(out), "--to", str(tmp_path / "file")],
        "dest_under_a_file": ["--out", str(out), "--to", str(tmp_path / "file" / "mine")],
        "dest_in_images": ["--out", str(out), "--to", str(tmp_path / "images" / "mine")],
        "dest_is_results": ["--out", str(out), "--to", str(out) + "/"],
        "dest_in_facts": ["--out", str(out), "--to", str(out / "facts" / "e")],
        "unknown_bib": ["--out", str(out), "--to", str(tmp_path / "e"), "--bib", "101", "999"],
        "no_dest": ["--out", str(out)],
    }[case]
    assert _exit_code(["photos", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "e").exists()


def _exit_code(argv: list[str]) -> int:
    """What the command exits with: its return value, or argparse's exit on a usage error."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


def test_export_plan__unsafe_bibs_and_names_stay_inside_dest(tmp_path: Path) -> None:
    rows = [
        {"bib": "../..", "image_id": "a" * 64, "path": "/x/cp1/p.jpg", "station_id": None},
        {"bib": "7/8", "image_id": "b" * 64, "path": "/x/cp1/p.jpg", "station_id": "cp1"},
        {"bib": "7/8", "image_id": "c" * 64, "path": "/y/cp1/p.jpg", "station_id": "cp1"},
    ]
    plan = export_plan(rows, str(tmp_path))
    targets = [Path(t).relative_to(tmp_path) for _, t in plan]
    assert [str(t) for t in targets] == [
        ".._../unknown_p.jpg",
        "7_8/cp1_p.jpg",
        f"7_8/cp1_{'c' * 12}_p.jpg",
    ]
    assert safe_name("..") == "_"


def test_photos__a_full_disk_is_one_line_exit_1_nothing_half_written_and_a_rerun_carries_on(
    results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It ended with OSError's traceback (30 lines, exit 1), a half-copied photo left.
    out, sources = results
    dest = tmp_path / "export"
    copy = shutil.copy2

    def copy_to_a_disk_that_fills(source: str, target: str) -> None:
        if len(list(dest.rglob("*.jpg"))) >= 2:
            Path(target).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source, target)
        copy(source, target)

    monkeypatch.setattr(shutil, "copy2", copy_to_a_disk_that_fills)
    assert main(["photos", "--out", str(out), "--to", str(dest)]) == 1
    assert capsys.readouterr().err == (
        f"racelens: no space left on device in {dest}; the 2 photos copied so far are kept; "
        "make room there, then run the same command again to carry on\n"
    )
    assert len(list(dest.rglob("*"))) == 4, "two folders, two photos, nothing half written"
    monkeypatch.setattr(shutil, "copy2", copy)
    assert main(["photos", "--out", str(out), "--to", str(dest)]) == 0
    assert (dest / "103" / "finish_c.jpg").read_bytes() == sources["c.jpg"].read_bytes()
