"""What counts as a bib number: digit rules, and the start list as a dictionary.

Without a start list a read is a bib when it is 2-5 digits, optionally after one or two
letters (a wave or distance prefix such as "T2182" or "CT4018" reads as "2182", "4018"; an O
right after the prefix is the digit 0, "SO495" reads as "0495") and between scraps of the bib's edge
or holes (read as "." "=" "#" and the like); anything else (clock times "1:49:58", words,
prices) is not. With a start list, a read that is not listed
is mapped to the listed bib one edit away (a digit misread, lost or invented) when exactly
one such bib exists, and its confidence is cut by SNAP_FACTOR so that such a read goes to
review; a read further from every listed bib is not a bib of this race. A prefix letter
read as a digit ("S0424" read "80424") is the one guess a start list settles: where the
read is longer than every listed bib and the recogniser saw a letter in its first digit's
place too, it stands for its other digits if those are listed, at their confidence. A read
carries no prefix letter (the rules leave it out), so where the list has a number both bare
and after a letter (12 and A12), a read of it cannot tell the two runners apart: it stands
for the bare one at SNAP_FACTOR of its confidence, to review, and the review names both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

DIGITS = "0123456789"

# Scraps at either end are any characters but letters, digits and a clock's colon. The
# recogniser reads a prefixed bib's leading 0 as the letter O ("SO495" for S0495): an O
# between the prefix and the digits is taken as 0 (the lazy prefix leaves it to the number).
# Digits are ASCII or full-width: the recogniser knows Chinese text and reads widely spaced
# digits as full-width ones ("４０６３"); other scripts' digits (\d) are no bib.
_DIGIT = "[0-9\uff10-\uff19]"
BIB_PATTERN = re.compile(
    rf"[^\w:]*[A-Za-z]{{0,2}}?((?<=[A-Za-z])[Oo]{_DIGIT}{{1,4}}|{_DIGIT}{{2,5}})[^\w:]*"
)
# The characters read for a digit inside a bib number's span: an O, a full-width digit.
LOOKALIKE_DIGITS = str.maketrans("Oo" + "".join(chr(0xFF10 + d) for d in range(10)), "00" + DIGITS)
# A bib one edit from the read: 0.7 keeps a perfect read (1.0) just under the default review
# threshold 0.75, so a corrected read is always looked at by an official.
SNAP_FACTOR = 0.7


def bib_span(text: str) -> tuple[int, int] | None:
    """Where the bib number lies in a recognised text line (start, end), or None."""
    match = BIB_PATTERN.fullmatch(text)
    return match.span(1) if match else None


def bib_digits(text: str, span: tuple[int, int]) -> str:
    """The digits of the bib number at span in text (an O read for a 0 made the digit)."""
    return text[span[0] : span[1]].translate(LOOKALIKE_DIGITS)


def parse_bib(text: str) -> str | None:
    """The bib number a recognised text line holds, or None when it holds no bib."""
    span = bib_span(text)
    return bib_digits(text, span) if span else None


def _one_edit(bib: str) -> set[str]:
    """Every string one substitution, deletion or insertion of a digit away from bib."""
    splits = [(bib[:i], bib[i:]) for i in range(len(bib) + 1)]
    deletions = {a + b[1:] for a, b in splits if b}
    substitutions = {a + d + b[1:] for a, b in splits if b for d in DIGITS if d != b[0]}
    insertions = {a + d + b for a, b in splits for d in DIGITS}
    return deletions | substitutions | insertions


def listed_bib(
    bib: str, confidence: float, listed: frozenset[str], unprefixed: float = 0.0
) -> tuple[str, float] | None:
    """The listed bib a read stands for and the read's confidence, or None.

    A listed read stands as it is; a read longer than every listed bib whose first digit
    may be a prefix letter (its other digits' confidence unprefixed > 0) stands for those
    digits where they are listed; a read one edit from exactly one listed bib becomes that
    bib at SNAP_FACTOR of its confidence; anything else is no bib of this race.
    """
    if bib in listed:
        return bib, _unsure_of_letter(bib, confidence, listed)
    # Only a read too long for any bib of the race: a digit is more often misread than a
    # letter is (a race clock's edge read "6157" has a little of a letter in its 6).
    if unprefixed > 0.0 and len(bib) > _longest(listed) and bib[1:] in listed:
        return bib[1:], _unsure_of_letter(bib[1:], unprefixed, listed)
    near = _one_edit(bib) & listed
    if len(near) != 1:  # none, or ambiguous: no guessing between runners
        return None
    return next(iter(near)), confidence * SNAP_FACTOR


@lru_cache(maxsize=4)  # a race's list, looked up for every read
def _longest(listed: frozenset[str]) -> int:
    return max(map(len, listed), default=0)


def _unsure_of_letter(bib: str, confidence: float, listed: frozenset[str]) -> float:
    """The confidence of a read of the listed `bib`: cut by SNAP_FACTOR where the list has
    it after a letter too (A12 beside 12), which the read cannot exclude (its prefix is
    left out, or its letter was not seen): a sure read of 12 timed runner A12 as 12."""
    return confidence * SNAP_FACTOR if bib in _lettered(listed) else confidence


@lru_cache(maxsize=4)
def _lettered(listed: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """The listed bibs a read gives as another listed bib, by that bib: A12 and B12 by 12,
    where 12 is listed too (a prefix of one or two letters, as the bib rules read one)."""
    twins: dict[str, list[str]] = {}
    for entry in sorted(listed):
        number = parse_bib(entry)
        if number is not None and number != entry and number in listed:
            twins.setdefault(number, []).append(entry)
    return {number: tuple(bibs) for number, bibs in twins.items()}


def with_lettered(bibs: Iterable[str], listed: frozenset[str]) -> list[str]:
    """The bibs and, after each, the listed bibs a read of it cannot be told from (A12 after
    12): what an official chooses between."""
    return list(dict.fromkeys(b for bib in bibs for b in (bib, *_lettered(listed).get(bib, ()))))


class StartList:
    """The bibs of one race, for mapping a read to the listed bib it most likely is."""

    def __init__(self, bibs: Iterable[str]):
        self.bibs = frozenset(str(b) for b in bibs)
        if not self.bibs:
            raise ValueError("a start list needs at least one bib")

    def match(
        self, bib: str, confidence: float, unprefixed: float = 0.0
    ) -> tuple[str, float] | None:
        """The listed bib a read stands for and the read's confidence, or None (listed_bib)."""
        return listed_bib(bib, confidence, self.bibs, unprefixed)
