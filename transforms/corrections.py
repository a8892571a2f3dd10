"""An official's decisions: the append-only corrections log, and what it decides per image.

Each row of the log says what one official decided about one image
(`image_id, action, bib, station_id, passed_at, decided_at, by`). Rows are
applied in `decided_at` order: `reject` clears what the image says, `assign`
credits a bib (the official's word replaces the OCR's for that image), and
`approve` confirms the reads the pipeline was unsure of.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from transforms.course import ConfigError

CORRECTION_COLUMNS = ("image_id", "action", "bib", "station_id", "passed_at", "decided_at", "by")
ACTIONS = ("assign", "reject", "approve")


@dataclass(frozen=True)
class Correction:
    image_id: str
    action: str
    bib: str = ""
    station_id: str = ""
    passed_at: datetime | None = None
    decided_at: str = ""
    by: str = ""


@dataclass(frozen=True)
class Decision:
    """The net effect of all corrections of one image."""

    rejected: bool = False
    approved: bool = False
    assigned: tuple[Correction, ...] = ()


def _utc(text: str, where: str) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"{where}: passed_at '{text}' is not an ISO 8601 time") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_corrections(text: str, path: str = "corrections.csv") -> tuple[Correction, ...]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "image_id" not in reader.fieldnames:
        raise ConfigError(f"{path}: line 1: expected header {','.join(CORRECTION_COLUMNS)}")
    rows = []
    for row in reader:
        where = f"{path}: line {reader.line_num}"
        values = {k: (row.get(k) or "").strip() for k in CORRECTION_COLUMNS}
        if values["action"] not in ACTIONS:
            raise ConfigError(f"{where}: action must be one of {', '.join(ACTIONS)}")
        if values["action"] == "assign" and not values["bib"]:
            raise ConfigError(f"{where}: assign needs a bib")
        values["passed_at"] = _utc(values["passed_at"], where)
        rows.append(Correction(**values))
    return tuple(rows)


def load_corrections(path: str) -> tuple[Correction, ...]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return parse_corrections(f.read(), path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


def decide(corrections: Iterable[Correction]) -> Decision:
    """The net decision about one image from its corrections, in the order they were made."""
    decision = Decision()
    for c in sorted(corrections, key=lambda c: c.decided_at):
        if c.action == "reject":
            decision = Decision(rejected=True)
        elif c.action == "assign":
            decision = Decision(assigned=decision.assigned + (c,))
        else:
            decision = Decision(approved=True, assigned=decision.assigned)
    return decision


def decisions_by_image(corrections: Iterable[Correction]) -> dict[str, Decision]:
    grouped: dict[str, list[Correction]] = {}
    for c in corrections:
        grouped.setdefault(c.image_id, []).append(c)
    return {image_id: decide(rows) for image_id, rows in grouped.items()}
