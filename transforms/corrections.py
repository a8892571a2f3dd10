"""An official's decisions: the append-only corrections log, and what it decides per image.

Each row of the log says what one official decided about one image
(`image_id, action, bib, station_id, passed_at, decided_at, by`). Rows are
applied in `decided_at` order: `reject` clears what the image says, `assign`
credits a bib (the official's word replaces the OCR's for that image), and
`approve` confirms the reads the pipeline was unsure of. Two further actions
concern an athlete rather than an image (image_id may be empty): `dsq`
disqualifies and `dnf` retires the athlete with that bib; `reinstate` undoes
either.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from transforms.course import ConfigError

CORRECTION_COLUMNS = ("image_id", "action", "bib", "station_id", "passed_at", "decided_at", "by")
IMAGE_ACTIONS = ("assign", "reject", "approve")
ATHLETE_ACTIONS = ("dsq", "dnf", "reinstate")
ACTIONS = IMAGE_ACTIONS + ATHLETE_ACTIONS


@dataclass(frozen=True)
class Correction:
    image_id: str
    action: str
    bib: str = ""
    station_id: str = ""
    passed_at: datetime | None = None
    decided_at: datetime | None = None  # UTC; decisions apply in this order
    by: str = ""


@dataclass(frozen=True)
class Decision:
    """The net effect of all corrections of one image."""

    rejected: bool = False
    approved: bool = False
    assigned: tuple[Correction, ...] = ()


def _utc(text: str, where: str, column: str) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"{where}: {column} '{text}' is not an ISO 8601 time") from e
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
        if values["action"] in ("assign",) + ATHLETE_ACTIONS and not values["bib"]:
            raise ConfigError(f"{where}: {values['action']} needs a bib")
        if values["action"] in IMAGE_ACTIONS and not values["image_id"]:
            raise ConfigError(f"{where}: {values['action']} needs an image_id")
        values["passed_at"] = _utc(values["passed_at"], where, "passed_at")
        values["decided_at"] = _utc(values["decided_at"], where, "decided_at")
        rows.append(Correction(**values))
    return tuple(rows)


def load_corrections(path: str) -> tuple[Correction, ...]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return parse_corrections(f.read(), path)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


_UNDATED = datetime.min.replace(tzinfo=UTC)


def in_order(corrections: Iterable[Correction]) -> list[Correction]:
    """In the order they were decided; undated rows first, the log's order breaking ties."""
    return sorted(corrections, key=lambda c: c.decided_at or _UNDATED)


def decide(corrections: Iterable[Correction]) -> Decision:
    """The net decision about one image from its corrections, in the order they were made."""
    decision = Decision()
    for c in in_order(corrections):
        if c.action == "reject":
            decision = Decision(rejected=True)
        elif c.action == "assign":
            decision = Decision(assigned=decision.assigned + (c,))
        elif c.action == "approve":
            decision = Decision(approved=True, assigned=decision.assigned)
    return decision


def decisions_by_image(corrections: Iterable[Correction]) -> dict[str, Decision]:
    grouped: dict[str, list[Correction]] = {}
    for c in corrections:
        if c.action in IMAGE_ACTIONS:
            grouped.setdefault(c.image_id, []).append(c)
    return {image_id: decide(rows) for image_id, rows in grouped.items()}


def official_statuses(corrections: Iterable[Correction]) -> dict[str, str]:
    """bib -> dsq or dnf, as the latest athlete decision says (reinstate clears it)."""
    statuses: dict[str, str] = {}
    for c in in_order(corrections):
        if c.action == "reinstate":
            statuses.pop(c.bib, None)
        elif c.action in ATHLETE_ACTIONS:
            statuses[c.bib] = c.action
    return statuses
