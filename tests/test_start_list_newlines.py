"""A start list is read whatever its line endings: a spreadsheet on Windows writes CRLF,
Excel for Mac's "CSV (Macintosh)" CR alone (it ended in the csv module's traceback)."""

import pytest

from transforms.course import parse_start_list

ROWS = ["bib,name,category", "101,Ann Berg,F35", "102,Bo Lie,M40"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_start_list__any_line_ending(newline: str) -> None:
    athletes = parse_start_list(newline.join(ROWS) + newline)

    assert [(a.bib, a.name, a.category, a.line) for a in athletes] == [
        ("101", "Ann Berg", "F35", 2),
        ("102", "Bo Lie", "M40", 3),
    ]
