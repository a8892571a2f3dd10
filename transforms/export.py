"""Results as CSV, in the column order results websites import.

Place, bib and name first, then the athlete's details, one column per split
in course order, the finish times, and the places within gender and
category. Times are h:mm:ss.t; a blank cell is a time not taken. Only athletes of the
start list are published: an unknown bib's row stays in the leaderboard for officials.
Text from the start list or the course that a spreadsheet would take for a formula
(starting with = + - @, a tab or a carriage return) is written with a ' before it.
"""

from __future__ import annotations

import csv
import io

from transforms.course import CSV_SEPARATORS, Course
from transforms.results import tenths
from transforms.schemas import split_column


def clock(seconds: float | None) -> str:
    """1:02:03.4 (tenths truncated, as timing software shows them); '' for no time. A time
    before its start (an unknown bib's photo before the gun) is -0:01:40.0."""
    if seconds is None:
        return ""
    shown = tenths(seconds)
    whole, tenth = divmod(abs(shown), 10)
    sign = "-" if shown < 0 else ""
    return f"{sign}{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{tenth}"


def gap(seconds: float | None) -> str:
    """+0:01:43.7 behind the leader, as timers print a gap (results.csv and the dashboard
    alike); '' for the leader's (no gap) and for no time."""
    return f"+{clock(seconds)}" if seconds else ""


def pace(seconds_per_km: float | None) -> str:
    """m:ss per km, the seconds truncated as the times' tenths are (4:31.6 reads 4:31):
    one rule for every time a timer shows."""
    if seconds_per_km is None:
        return ""
    whole = abs(tenths(seconds_per_km)) // 10
    sign = "-" if seconds_per_km < 0 and whole else ""
    return f"{sign}{whole // 60}:{whole % 60:02d}"


def split_label(name: str, km: float | None) -> str:
    """A station's name, with its distance unless the name already says it ("3.3 km")."""
    if km is None or name.endswith("km"):
        return name
    return f"{name} ({km:g} km)"


# results.csv's bytes: UTF-8 with a byte-order mark, as timers open it in Excel, which reads
# a CSV without one in the Windows code page ("Åse" as "Ã…se"); Python's csv (through
# utf-8-sig), pandas, LibreOffice and results websites' importers read it as plain UTF-8.
CSV_ENCODING = "utf-8-sig"

# What a spreadsheet takes a cell's start for a formula by (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    """A start list's or course's text as a cell no spreadsheet runs as a formula: a name
    "=HYPERLINK(...)" is written '=HYPERLINK(...), as OWASP recommends; other text as is."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def results_csv(rows: list[dict], course: Course) -> str:
    splits = course.stations[1:-1]
    header = (
        ["Place", "Bib", "Name", "Gender", "Category", "Club", "Wave", "Status"]
        + [text_cell(split_label(s.name, s.km)) for s in splits]
        # The pace is of the chip time, whichever time ranks: the header says so, beside a
        # gun time it would be read as the pace of the time that ranks.
        + ["Chip Time", "Gun Time", "Chip Pace (min/km)", "Gap"]
        + ["Gender Place", "Category Place", "Flags"]
    )
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=CSV_SEPARATORS[course.settings.csv_separator], lineterminator="\n"
    )
    writer.writerow(header)
    # Unknown bibs are the officials' to settle (leaderboard.parquet, the review queue), not
    # results: imported, "Unknown #999" would be published as a finisher.
    for r in (r for r in rows if "unknown_bib" not in r["flags"]):
        writer.writerow(
            [
                r["rank"] or "",
                *(text_cell(r[k]) for k in ("bib", "name", "gender", "category", "club", "wave")),
                r["status"].upper(),
            ]
            + [clock(r[split_column(s.id)]) for s in splits]
            + [
                clock(r["chip_s"]),
                clock(r["gun_s"]),
                pace(r["pace_s_per_km"]),
                gap(r["gap_s"]),
                r["gender_rank"] or "",
                r["category_rank"] or "",
            ]
            + [" ".join(r["flags"])]
        )
    return out.getvalue()
