"""A start list as spreadsheets export it: any line endings (a spreadsheet on Windows writes
CRLF, Excel for Mac's "CSV (Macintosh)" CR alone: it ended in the csv module's traceback),
and rows cleared of their contents (Excel writes them as ',,': the list was refused)."""

import pytest

from transforms.course import parse_start_list

ROWS = ["bib,name,category", "101,Ann Berg,F35", "102,Bo Lie,M40"]
ATHLETES = [("101", "Ann Berg", "F35", 2), ("102", "Bo Lie", "M40", 3)]


def _read(text: str) -> list[tuple[str, str, str, int]]:
    return [(a.bib, a.name, a.category, a.line) for a in parse_start_list(text)]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_start_list__any_line_ending(newline: str) -> None:
    assert _read(newline.join(ROWS) + newline) == ATHLETES


def test_start_list__rows_of_empty_cells_are_no_athletes() -> None:
    text = "\n".join([ROWS[0], ROWS[1], ",,", " , ,", ROWS[2], ",,"]) + "\n"

    assert _read(text) == [ATHLETES[0], ("102", "Bo Lie", "M40", 5)]
