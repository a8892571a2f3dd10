"""The dashboard's leaderboard counts, from the leaderboard's rows as the pipeline builds them."""

from __future__ import annotations

import pandas as pd

from dashboard.board import status_counts
from tests.conftest import at, athlete, make_course, passage
from transforms.results import build_leaderboard


def test_status_counts__an_unknown_bib_is_no_finisher() -> None:
    # "Unknown #999" crossed the finish: counted as unknown, apart (the FINISHED count was 2);
    # without unknown bibs the five statuses are all there is.
    seen = [passage("101", "finish", 2400), passage("102", "finish", 2500)]
    seen += [passage("999", "finish", 2450, needs_review=True, review_reason="unknown_bib")]
    rows = build_leaderboard(seen, make_course(), [athlete("101"), athlete("102")], at(9999))
    counts = status_counts(pd.DataFrame(rows))
    assert counts == {"finished": 2, "running": 0, "dnf": 0, "dns": 0, "dsq": 0, "unknown": 1}
    listed = pd.DataFrame(rows[:2])
    assert list(status_counts(listed)) == ["finished", "running", "dnf", "dns", "dsq"]
