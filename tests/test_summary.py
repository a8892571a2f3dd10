"""The summary a run prints: read back from the written results, whatever they hold."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.summary import summarise
from transforms.write import IMAGES_FILE, LEADERBOARD_FILE, PASSAGES_FILE, REVIEW_FILE


def finisher(rank: int | None, bib: str, name: str, category: str | None, total_s: float) -> dict:
    return {
        "rank": rank,
        "bib": bib,
        "name": name,
        "category": category,
        "status": "finished",
        "total_s": total_s,
        "flags": [] if rank is not None else ["unknown_bib"],
    }


def test_summary__top_lists_ranked_finishers_and_counts_an_unknown_bib_apart(
    tmp_path: Path,
) -> None:
    # A real race's photos read bibs that are not on the start list: each becomes an
    # unranked "Unknown #bib" finisher without a category, which once crashed the summary.
    pq.write_table(pa.table({"status": ["passage", "review"]}), tmp_path / IMAGES_FILE)
    pq.write_table(pa.table({"needs_review": [False, True]}), tmp_path / PASSAGES_FILE)
    pq.write_table(pa.table({"reason": ["unknown_bib"]}), tmp_path / REVIEW_FILE)
    board = [
        finisher(1, "101", "Ada Runner", "M40", 3600.0),
        finisher(None, "3638", "Unknown #3638", None, 3500.0),
    ]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    summary = summarise(str(tmp_path))

    assert "Ada Runner" in summary
    assert "Unknown #3638" not in summary
    assert "athletes: 1 finished; unknown bibs read: 1" in summary


def test_summary__says_so_when_no_finisher_is_ranked(tmp_path: Path) -> None:
    pq.write_table(pa.table({"status": ["review"]}), tmp_path / IMAGES_FILE)
    pq.write_table(pa.table({"needs_review": [True]}), tmp_path / PASSAGES_FILE)
    pq.write_table(pa.table({"reason": ["unknown_bib"]}), tmp_path / REVIEW_FILE)
    board = [finisher(None, "3638", "Unknown #3638", None, 3500.0)]
    pq.write_table(pa.Table.from_pylist(board), tmp_path / LEADERBOARD_FILE)

    summary = summarise(str(tmp_path))

    assert "no finisher ranked yet" in summary
    assert "athletes: none; unknown bibs read: 1" in summary
    assert "top 10" not in summary
