"""A batch run or re-timing without --corrections applies the log the dashboard appends to.

The dashboard defaults to the last run's log, else OUT/corrections.csv (a live run to the
latter); a batch `racelens run` over the same folder (the backfill) or `racelens results`
without --corrections ignored it, and an official's dsq vanished from the published
results."""

import json
from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import RaceConfig, RacelensOptions
from transforms.course import ConfigError

LOG = (
    "image_id,action,bib,station_id,passed_at,decided_at,by\n"
    ",dsq,101,,,2026-05-01T12:00:00+00:00,ref\n"
)


def _config(race: Path, out: Path, *extra: str) -> RaceConfig:
    argv = [
        f"--images={race / 'images'}",
        f"--course={race / 'course.yaml'}",
        f"--start-list={race / 'startlist.csv'}",
        f"--out={out}",
        *extra,
    ]
    return RaceConfig(PipelineOptions(argv).view_as(RacelensOptions))


def test_batch_run__the_dashboards_log_in_out_is_applied(race: Path, tmp_path: Path) -> None:
    (tmp_path / "corrections.csv").write_text(LOG, encoding="utf-8")

    cfg = _config(race, tmp_path)

    assert cfg.corrections_file == str(tmp_path / "corrections.csv")
    assert [(c.action, c.bib) for c in cfg.corrections] == [("dsq", "101")]


def test_batch_run__no_log_in_out_no_corrections(race: Path, tmp_path: Path) -> None:
    cfg = _config(race, tmp_path)

    assert (cfg.corrections_file, cfg.corrections) == (None, ())


def test_batch_run__a_log_given_stands(race: Path, tmp_path: Path) -> None:
    (tmp_path / "corrections.csv").write_text(LOG, encoding="utf-8")
    other = tmp_path / "other.csv"
    other.write_text(LOG.splitlines()[0] + "\n", encoding="utf-8")

    cfg = _config(race, tmp_path, f"--corrections={other}")

    assert (cfg.corrections_file, cfg.corrections) == (str(other), ())


def test_live_run__reads_the_log_itself(race: Path, tmp_path: Path) -> None:
    """Live mode reads OUT/corrections.csv leniently at every poll (pipeline/live.py)."""
    (tmp_path / "corrections.csv").write_text(LOG, encoding="utf-8")

    cfg = _config(race, tmp_path, "--streaming")

    assert cfg.corrections_file is None


def test_live_run__restarted_over_a_mistyped_line_takes_the_valid_rows(
    race: Path, tmp_path: Path
) -> None:
    # A live run restarted mid-race with --corrections refused to start over one mistyped
    # line (exit 2), though it leaves such a line out at each poll and says so: the race's
    # timing stopped until someone found the line. A batch run still refuses it.
    log = tmp_path / "decisions.csv"
    log.write_text(LOG + ",dsq,,,,2026-05-01T12:01:00+00:00,ref\n", encoding="utf-8")

    cfg = _config(race, tmp_path, f"--corrections={log}", "--streaming")

    assert [(c.action, c.bib) for c in cfg.corrections] == [("dsq", "101")]
    with pytest.raises(ConfigError, match="line 3: dsq needs a bib"):
        _config(race, tmp_path, f"--corrections={log}")


def test_batch_run__the_log_the_last_run_recorded_is_applied(race: Path, tmp_path: Path) -> None:
    """`racelens run --corrections decisions.csv`, the dashboard then appending to that log
    (the one run.json records), then a backfill run without --corrections."""
    log = tmp_path / "decisions.csv"
    log.write_text(LOG, encoding="utf-8")
    (tmp_path / "run.json").write_text(json.dumps({"corrections": str(log)}), encoding="utf-8")

    cfg = _config(race, tmp_path)

    assert cfg.corrections_file == str(log)
    assert [(c.action, c.bib) for c in cfg.corrections] == [("dsq", "101")]


def test_batch_run__a_time_typed_without_offset_is_the_courses_local_time(
    race: Path, tmp_path: Path
) -> None:
    """The course is in Europe/Oslo (+02:00 in May): a hand-typed 10:42:07 is 08:42:07 UTC."""
    log = tmp_path / "typed.csv"
    log.write_text(LOG.splitlines()[0] + "\nabc,assign,101,finish,2026-05-01T10:42:07,,ref\n")

    cfg = _config(race, tmp_path, f"--corrections={log}")

    assert [c.passed_at for c in cfg.corrections] == [datetime(2026, 5, 1, 8, 42, 7, tzinfo=UTC)]
    log.write_text(LOG.splitlines()[0] + "\nabc,assign,101,finish,10:42:07,,ref\n")  # day: race's
    assert [c.passed_at for c in _config(race, tmp_path, f"--corrections={log}").corrections] == [
        datetime(2026, 5, 1, 8, 42, 7, tzinfo=UTC)
    ]


def test_as_of__without_an_offset_is_the_races_local_time_as_the_logs_times(
    race: Path, tmp_path: Path
) -> None:
    # --as-of refused 2026-05-01T10:03:00 ("needs a UTC offset") where the corrections log
    # reads the same text as the race's local time: a timer asking for the standings at
    # 10:03 means the race's clock, as in the log they type.
    zone = ZoneInfo(_config(race, tmp_path).course.timezone)
    day = _config(race, tmp_path).course.start.astimezone(zone).date()
    local = datetime.combine(day, time(10, 3), zone).astimezone(UTC)

    for written in (f"{day}T10:03:00", "10:03", f"{day}T10:03:00{local.astimezone(zone):%z}"):
        assert _config(race, tmp_path, f"--as-of={written}").as_of == local, written


def test_as_of__no_time_is_one_line(race: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--as-of 'noon' is not an ISO 8601 time$"):
        _config(race, tmp_path, "--as-of=noon")
