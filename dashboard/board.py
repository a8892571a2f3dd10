"""The leaderboard as officials read it: selection, podium, a table of readable times, positions.

Pure functions of leaderboard.parquet (as a DataFrame) and the race's stations, so tests
can call them without Streamlit; values are written as `dashboard.formats` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboard.data import Race, StationInfo
from dashboard.formats import clock_or_blank, local_time, missing, pace_or_blank, place_text
from transforms.course import still_running
from transforms.export import clock, gap, split_label
from transforms.schemas import pace_column, sector_column, split_column, time_of_day_column

STATUSES = ("finished", "running", "dnf", "dns", "dsq")
UNKNOWN = "unknown"  # an unknown bib's row (a number not in the start list): no athlete
WAITING = "waiting"  # not seen before their wave's start closed (results.WAITING)
PODIUM = 3
# Short headers (their help says them whole), so that a four-station race's table fits.
CATEGORY, CATEGORY_PLACE, PACE = "Cat.", "Cat. pl.", "Pace /km"
HELP = {
    CATEGORY: "Category",
    CATEGORY_PLACE: "Place in the category",
    PACE: "The chip time's pace, per km",
}
SPLIT, SECTOR_PACE, TIME_OF_DAY = "Split", "Sector pace", "Time of day"
PER_STATION = (SPLIT, SECTOR_PACE, TIME_OF_DAY)


@dataclass(frozen=True)
class Placing:
    place: int
    bib: str
    name: str
    category: str
    time: str

    def line(self) -> str:
        """One line of plain text: what a screen reader (or a browser test) reads out."""
        category = f" ({self.category})" if self.category else ""
        return f"{self.place}. {self.name}{category}, bib {self.bib}, {self.time}"


def categories(board: pd.DataFrame) -> list[str]:
    return sorted(c for c in board["category"].dropna().unique() if c)


def select(board: pd.DataFrame, category: str | None = None, query: str = "") -> pd.DataFrame:
    """The athletes of a category (None: everyone) whose bib starts with, or whose name
    contains, the query (case-insensitive)."""
    rows = board if category is None else board[board["category"] == category]
    query = query.strip().casefold()
    if query:
        hit = rows["bib"].str.casefold().str.startswith(query) | rows["name"].fillna(
            ""
        ).str.casefold().str.contains(query, regex=False)
        rows = rows[hit]
    return rows


def place_column(category: str | None) -> str:
    return "rank" if category is None else "category_rank"


def podium(board: pd.DataFrame, category: str | None = None) -> list[Placing]:
    """The first three places (more on a tie for third) overall or in one category."""
    column = place_column(category)
    ranked = select(board, category).dropna(subset=[column]).sort_values(column)
    ranked = ranked[ranked[column] <= PODIUM]
    return [
        Placing(int(r[column]), r["bib"], r["name"] or "", r["category"] or "", clock(r["total_s"]))
        for _, r in ranked.iterrows()
    ]


def status_counts(board: pd.DataFrame) -> dict[str, int]:
    """Athletes by status; those waiting for their start and unknown bibs read, where
    there are any, counted apart."""
    counts = board["status"].value_counts()
    apart = {s: int(counts[s]) for s in (WAITING, UNKNOWN) if s in counts}
    return {s: int(counts.get(s, 0)) for s in STATUSES} | apart


def running_note(board: pd.DataFrame, race: Race) -> str:
    """Why athletes stay running, where the course has no race.close (nobody is ever dnf
    then, even days after the race); '' otherwise, or where the course is not known."""
    running = int((board["status"] == "running").sum())
    if not running or race.start is None or race.close is not None:
        return ""
    return still_running(running)


def station_label(station: StationInfo) -> str:
    """The station's name, with its distance unless the name already says it."""
    return split_label(station.name, station.km)


def _gap(seconds: object) -> str:
    return "" if missing(seconds) else gap(float(seconds))  # type: ignore[arg-type]


def _flags(row: pd.Series, names: dict[str, str]) -> str:
    missed = [names.get(s, s) for s in (row["missed"] if row["missed"] is not None else ())]
    notes = [f"missed {', '.join(missed)}"] if missed else []
    flags = row["flags"] if row["flags"] is not None else ()
    # missed_checkpoint is said above, with the stations' names.
    notes += [f.replace("_", " ") for f in flags if f != "missed_checkpoint"]
    return "; ".join(notes)


def _per_station(row: pd.Series, station: StationInfo, show: str, timezone: str) -> str:
    if show == SECTOR_PACE:
        return pace_or_blank(row.get(pace_column(station.id)))
    if show == TIME_OF_DAY:
        return local_time(row.get(time_of_day_column(station.id)), timezone)
    return clock_or_blank(row.get(split_column(station.id)))


def table(
    rows: pd.DataFrame, race: Race, category: str | None = None, show: str = SPLIT
) -> pd.DataFrame:
    """The leaderboard as text columns, in place order, one column per station."""
    column = place_column(category)
    names = {s.id: s.name for s in race.stations}

    shown = pd.DataFrame(
        {
            "Place": rows[column].map(place_text),
            "Bib": rows["bib"],
            "Name": rows["name"],
            CATEGORY: rows["category"],
            "Status": rows["status"],
            # Before the times, where a missed checkpoint cannot scroll out of sight.
            "Flags": [_flags(row, names) for _, row in rows.iterrows()],
            "Chip": rows["chip_s"].map(clock_or_blank),
            # The chip time's pace whatever rank_by says: beside Gun it read as the gun time's.
            PACE: rows["pace_s_per_km"].map(pace_or_blank),
            "Gun": rows["gun_s"].map(clock_or_blank),
            "Gap": rows["gap_s"].map(_gap),
        }
    )
    if category is None:
        shown.insert(4, CATEGORY_PLACE, rows["category_rank"].map(place_text))
    # Chip splits and sector paces start at the first station; its time of day still counts.
    for station in race.stations if show == TIME_OF_DAY else race.stations[1:]:
        shown[station_label(station)] = [
            _per_station(row, station, show, race.timezone) for _, row in rows.iterrows()
        ]
    return shown.reset_index(drop=True)


# Each column's width in pixels, for values of known form (a place, a time; a name and the
# flags are cut where longer, and whole on the athlete's page). Sized by their contents and
# headers, the columns of a four-station race took ~1,070 px, and at 1440 px with the
# sidebar open (968 px for the table) the last splits were behind a horizontal scroll.
COLUMN_WIDTHS = {
    "Place": 48,
    "Bib": 50,
    "Name": 110,
    CATEGORY: 54,
    CATEGORY_PLACE: 58,
    "Status": 64,
    "Flags": 70,
    "Chip": 66,
    PACE: 64,
    "Gun": 66,
    "Gap": 76,
}
TIME_WIDTH = 66  # a split, sector pace or time of day, whose header is the station's label


def column_widths(shown: pd.DataFrame) -> dict[str, int]:
    """The width of each column of `table`'s result, in pixels."""
    return {name: COLUMN_WIDTHS.get(name, TIME_WIDTH) for name in shown.columns}


def positions(rows: pd.DataFrame, race: Race, leaders: int) -> pd.DataFrame:
    """Long table (bib, athlete, station, order, position, split) of the first `leaders`
    athletes of `rows`: their position among `rows` at each station after the start, by
    split. An unknown bib's row is no athlete: it takes no position and is not followed."""
    rows = rows[rows["status"] != UNKNOWN]
    followed = rows.head(leaders)
    out = []
    for order, station in enumerate(race.stations[1:]):
        column = split_column(station.id)
        if column not in rows.columns:
            continue
        place = rows[column].rank(method="min")
        for _, r in followed.iterrows():
            if not missing(r[column]):
                out.append(
                    {
                        "bib": r["bib"],
                        "athlete": f"{r['bib']} {r['name'] or ''}".strip(),
                        "station": station_label(station),
                        "order": order,
                        "position": int(place[r.name]),
                        "split": clock_or_blank(r[column]),
                    }
                )
    return pd.DataFrame(out, columns=["bib", "athlete", "station", "order", "position", "split"])


def passages_table(athlete: pd.Series, passages: pd.DataFrame, race: Race) -> pd.DataFrame:
    """One athlete's passages station by station: the counted one with its split, sector and
    pace, any others the pipeline put aside (and why), and the stations not seen."""
    mine = passages[passages["bib"] == athlete["bib"]].sort_values("passed_at")
    rows = []
    for station in race.stations:
        seen = mine[mine["station_id"] == station.id]
        timing = {
            "Split": clock_or_blank(athlete.get(split_column(station.id))),
            "Sector": clock_or_blank(athlete.get(sector_column(station.id))),
            "Pace /km": pace_or_blank(athlete.get(pace_column(station.id))),
        }
        if seen.empty:
            rows.append({"Station": station_label(station), "Passed at": "not seen"} | timing)
        for _, p in seen.iterrows():
            counted = not p["needs_review"]
            rows.append(
                {
                    "Station": station_label(station),
                    "Passed at": local_time(p["passed_at"], race.timezone),
                }
                | (timing if counted else dict.fromkeys(timing, ""))
                | {
                    "Method": p["method"],
                    "Confidence": f"{p['confidence']:.0%}",
                    "Counted": "yes" if counted else "no",
                    "Why not": "" if counted else (p["review_reason"] or "needs review"),
                }
            )
    return pd.DataFrame(rows).fillna("")
