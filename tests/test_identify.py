"""Who is on a photo: bib reads against the start list, and an official's corrections."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from dashboard.review_queue import Item, decision_rows, pending
from tests.conftest import COVERED, photo, read
from transforms.bibs import SNAP_FACTOR, listed_bib
from transforms.corrections import (
    Correction,
    Decision,
    append_corrections,
    decide,
    decisions_by_image,
    load_corrections,
    official_statuses,
    parse_corrections,
)
from transforms.course import ConfigError
from transforms.exif import FOLDER
from transforms.identify import (
    OFFICIAL,
    Identified,
    IdentifyAthletes,
    ReviewItem,
    apply_decision,
    identify,
    identify_photo,
)
from transforms.records import (
    DUPLICATE,
    NO_ATHLETE,
    PASSAGE,
    REJECTED,
    REVIEW,
    BibSeen,
    Photo,
    Sighting,
)

LISTED = frozenset({"101", "102", "103"})
THRESHOLD = 0.75
HEADER = "image_id,action,bib,station_id,passed_at,decided_at,by\n"


def seen(ph: Photo, bib: str, confidence: float, confirmed: bool, **changes: object) -> Sighting:
    s = Sighting(
        bib=bib,
        station_id=ph.station_id,
        at=ph.taken_at,
        confidence=confidence,
        image_id=ph.image_id,
        method="bib_ocr",
        confirmed=confirmed,
    )
    return replace(s, **changes)


def item(ph: Photo, reason: str, *candidates: str) -> ReviewItem:
    return ReviewItem(ph.image_id, ph.path, reason, candidates, ph.station_id, ph.taken_at)


# --- identify ---------------------------------------------------------------------------------


def test_identify__confident_listed_bib_is_a_passage_with_a_confirmed_sighting() -> None:
    ph = photo("a", bibs=(read("101", 0.93), read("101", 0.80)))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=PASSAGE), (seen(ph, "101", 0.93, True),)
    )


def test_identify__read_at_the_threshold_is_confident() -> None:
    ph = photo("a", bibs=(read("101", THRESHOLD),))
    assert identify(ph, LISTED, THRESHOLD).photo.status == PASSAGE


def test_identify__weak_listed_bib_needs_review_with_an_unconfirmed_sighting() -> None:
    ph = photo("a", bibs=(read("102", 0.5),))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=REVIEW, reason="low_confidence"),
        (seen(ph, "102", 0.5, False),),
        (item(ph, "low_confidence", "102"),),
    )


def test_identify__a_number_listed_bare_and_after_a_letter_is_one_item_naming_both() -> None:
    # A12's bib read 12 at 0.96 was timed as runner 12, with nothing to review.
    ph = photo("a", bibs=(read("12", 0.96),))
    result = identify(ph, LISTED | {"12", "A12"}, THRESHOLD)
    assert result == Identified(
        replace(ph, status=REVIEW, reason="low_confidence"),
        (seen(ph, "12", 0.96 * SNAP_FACTOR, False),),
        (item(ph, "low_confidence", "12", "A12"),),
    )


def test_identify__a_read_below_the_floor_is_only_a_review_item() -> None:
    ph = photo("a", bibs=(read("102", 0.1),))
    assert identify(ph, LISTED, THRESHOLD).sightings == ()


def test_identify__confident_unknown_bib_goes_to_review_as_unconfirmed_evidence() -> None:
    ph = photo("a", bibs=(read("999", 0.97),))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=REVIEW, reason="unknown_bib"),
        (seen(ph, "999", 0.97, False),),
        (item(ph, "unknown_bib", "999"),),
    )


def test_identify__unknown_bib_next_to_a_listed_one_is_reviewed_but_the_passage_stands() -> None:
    ph = photo("a", bibs=(read("101", 0.9), read("999", 0.95)))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=PASSAGE),
        (seen(ph, "101", 0.9, True), seen(ph, "999", 0.95, False)),
        (item(ph, "unknown_bib", "999"),),
    )


def test_identify__weak_listed_bib_next_to_a_confident_one_is_still_queued_for_review() -> None:
    ph = photo("a", bibs=(read("101", 0.95), read("102", 0.5)))
    result = identify(ph, LISTED, THRESHOLD)
    assert seen(ph, "102", 0.5, False) in result.sightings  # unconfirmed evidence ...
    assert item(ph, "low_confidence", "102") in result.review  # ... and the item to decide it


def test_identify__weak_unknown_number_is_unreadable() -> None:
    ph = photo("a", bibs=(read("99", 0.3),))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=REVIEW, reason="number_unreadable"),
        (),
        (item(ph, "number_unreadable", "99"),),
    )


def test_identify__read_one_edit_from_a_listed_bib_is_that_bib_to_review() -> None:
    ph = photo("a", bibs=(read("201", 0.9),))  # a misread first digit of 101
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=REVIEW, reason="low_confidence"),
        (seen(ph, "101", 0.9 * SNAP_FACTOR, False),),
        (item(ph, "low_confidence", "101"),),
    )


def test_identify__read_one_edit_from_two_listed_bibs_stays_unknown() -> None:
    ph = photo("a", bibs=(read("104", 0.9),))  # 101, 102 or 103: no guessing
    assert identify(ph, LISTED, THRESHOLD).photo.reason == "unknown_bib"


def test_identify__exact_read_of_a_bib_outranks_a_corrected_one() -> None:
    ph = photo("a", bibs=(read("1011", 0.99), read("101", 0.8)))
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=PASSAGE), (seen(ph, "101", 0.8, True),)
    )


def test_identify__start_list_is_looked_up_once_per_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []

    def counting(
        bib: str, confidence: float, known: frozenset[str], unprefixed: float = 0.0
    ) -> tuple[str, float] | None:
        looked_up.append(bib)
        return listed_bib(bib, confidence, known, unprefixed)

    monkeypatch.setattr("transforms.identify.listed_bib", counting)
    ph = photo("a", bibs=(read("101", 0.9), read("999", 0.9), read("102", 0.5)))
    identify(ph, LISTED, THRESHOLD)
    assert sorted(looked_up) == ["101", "102", "999"]


def test_identify__a_prefix_letter_read_as_a_digit_is_the_listed_bib_of_the_rest() -> None:
    # "S101" read "8101": longer than every listed bib, and its 8 may be a letter.
    ph = photo("a", bibs=(BibSeen("8101", 0.6, (10, 10, 60, 40), unprefixed=0.95),))

    result = identify(ph, LISTED, THRESHOLD)

    assert [(s.bib, s.confidence, s.confirmed) for s in result.sightings] == [("101", 0.95, True)]
    assert result.photo.status == PASSAGE


def test_identify__covered_frame_is_camera_covered() -> None:
    ph = photo("a", quality=COVERED)
    assert identify(ph, LISTED, THRESHOLD) == Identified(
        replace(ph, status=REVIEW, reason="camera_covered"), (), (item(ph, "camera_covered"),)
    )


def test_identify__nothing_read_is_no_athlete() -> None:
    ph = photo("a")
    assert identify(ph, LISTED, THRESHOLD) == Identified(replace(ph, status=NO_ATHLETE))


# --- corrections ------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def correction(action: str, decided_at: str, **fields: object) -> Correction:
    return Correction(image_id="id-a", action=action, decided_at=at(decided_at), **fields)


def test_apply_decision__reject_clears_what_the_photo_says() -> None:
    ph = photo("a", bibs=(read("101"),))
    assert apply_decision(ph, Decision(rejected=True), LISTED) == Identified(
        replace(ph, status=REJECTED, reason="rejected_by_official")
    )


def test_identify_photo__a_rejected_read_leaves_the_photo_s_other_reads_timing_it() -> None:
    # The race clock over the finish read as 3304 (no athlete) beside 101 at 99 %: X on the
    # item "Number not in the start list" rejected the whole photo, and 101 was dns (the
    # audit; failed before, passes). A reject with a bib rejects that read only.
    ph = photo("a", bibs=(read("101", 0.99), read("3304", 0.99)))
    decisions = {ph.image_id: decide([correction("reject", "2026-05-01T09:00:00Z", bib="3304")])}
    identified = identify_photo(ph, LISTED, THRESHOLD, decisions)
    kept = replace(ph, facts=replace(ph.facts, bibs=(read("101", 0.99),)))
    assert identified == Identified(replace(kept, status=PASSAGE), (seen(kept, "101", 0.99, True),))
    # A weak read rejected by the listed bib it stands for (201 read, 101 shown): gone too.
    weak = photo("a", bibs=(read("201", 0.6), read("102", 0.99)))
    decisions = {weak.image_id: decide([correction("reject", "2026-05-01T09:00:00Z", bib="101")])}
    assert [s.bib for s in identify_photo(weak, LISTED, THRESHOLD, decisions).sightings] == ["102"]


def test_identify_photo__a_number_rejected_unlisted_counts_again_and_is_asked_once_listed(
    tmp_path: Path,
) -> None:
    # 999 read surely beside 101: X on "Number not in the start list". The start list later
    # lists 999 (a late entry): the read stayed rejected and nothing said so (failed before,
    # passes). Now it counts again and is one review item, with a note, until an official
    # answers it; the log keeps its rows.
    ph = photo("a", bibs=(read("101", 0.99), read("999", 0.95)))
    log = str(tmp_path / "corrections.csv")

    def decided(item: ReviewItem, action: str, minute: int) -> None:
        queued = Item(item.image_id, item.reason, item.station_id, item.candidates)
        now = at(f"2026-05-01T09:{minute:02}:00Z")
        append_corrections(log, decision_rows(action, queued, official="kari", now=now))

    def timed(known: frozenset[str]) -> Identified:
        decisions = decisions_by_image(load_corrections(log)) if Path(log).exists() else {}
        return identify_photo(ph, known, THRESHOLD, decisions)

    [unknown] = timed(LISTED).review
    decided(unknown, "reject", 0)
    assert [(r.action, r.bib) for r in load_corrections(log)] == [("reject_unlisted", "999")]
    assert [s.bib for s in timed(LISTED).sightings] == ["101"]
    assert timed(LISTED).review == ()

    listed = LISTED | {"999"}
    again = timed(listed)
    assert [(s.bib, s.confirmed) for s in again.sightings] == [("101", True), ("999", True)]
    [item] = again.review
    assert (item.reason, item.candidates) == ("listed_since_rejected", ("999",))
    assert "the start list lists 999 now, so the read counts again" in item.note
    queued = Item(item.image_id, item.reason, item.station_id, item.candidates)
    assert pending([queued], load_corrections(log)) == [queued]  # the earlier X is no answer
    # Approve keeps it (an official's read); X rejects it for good.
    decided(item, "approve", 1)
    assert pending([queued], load_corrections(log)) == []
    assert [(s.bib, s.official) for s in timed(listed).sightings] == [
        ("101", True),
        ("999", True),
    ]
    decided(item, "reject", 2)
    assert ([s.bib for s in timed(listed).sightings], timed(listed).review) == (["101"], ())


def test_decide__a_rejected_read_stays_rejected_through_an_approval_not_a_photo_reject() -> None:
    read_rejected = correction("reject", "2026-05-01T09:00:00Z", bib="3304")
    approved = correction("approve", "2026-05-01T09:01:00Z")
    assert decide([read_rejected, approved]) == Decision(
        approved=True, not_read=frozenset({"3304"})
    )
    assert not decide([read_rejected]).overrides, "the photo's other reads stand"
    photo_rejected = correction("reject", "2026-05-01T09:02:00Z")
    assert decide([read_rejected, approved, photo_rejected]) == Decision(rejected=True)


def test_apply_decision__assign_credits_the_bib_at_the_photo_station_and_time() -> None:
    ph = photo("a", bibs=(read("101"),))
    decision = decide([correction("assign", "2026-05-01T09:00:00Z", bib="103")])
    assert apply_decision(ph, decision, LISTED) == Identified(
        replace(ph, status=PASSAGE, reason="assigned_by_official"),
        (seen(ph, "103", 1.0, True, method="manual", official=True),),
    )


def test_apply_decision__assign_with_its_own_station_and_time() -> None:
    ph = photo("a", station="finish", bibs=())
    passed = datetime(2026, 5, 1, 8, 30, 1, 500_000, tzinfo=UTC)
    decision = decide(
        [
            correction(
                "assign", "2026-05-01T09:00:00Z", bib="102", station_id="cp1", passed_at=passed
            )
        ]
    )
    assert apply_decision(ph, decision, LISTED).sightings == (
        seen(ph, "102", 1.0, True, method="manual", station_id="cp1", at=passed, official=True),
    )


@pytest.mark.parametrize(("station", "placed_by"), [("cp1", OFFICIAL), ("finish", FOLDER)])
def test_apply_decision__a_photo_an_official_moves_is_placed_by_the_official(
    station: str, placed_by: str
) -> None:
    # The row says who decided its station: the official where they moved it, its folder
    # where they kept the one the folder gave. Failed before (no placed_by), passes.
    ph = replace(photo("a", station="finish"), placed_by=FOLDER)
    decision = decide([correction("assign", "2026-05-01T09:00:00Z", bib="102", station_id=station)])
    assert apply_decision(ph, decision, LISTED).photo.placed_by == placed_by


def test_apply_decision__approve_confirms_the_weak_listed_reads() -> None:
    ph = photo("a", bibs=(read("102", 0.5), read("999", 0.6)))
    assert apply_decision(
        ph, decide([correction("approve", "2026-05-01T09:00:00Z")]), LISTED
    ) == Identified(
        replace(ph, status=PASSAGE, reason="approved_by_official"),
        (seen(ph, "102", 0.99, True, official=True),),
    )


def test_apply_decision__approve_confirms_the_corrected_bib_the_official_was_shown() -> None:
    ph = photo("a", bibs=(read("201", 0.9),))
    approved = apply_decision(ph, decide([correction("approve", "2026-05-01T09:00:00Z")]), LISTED)
    assert approved.sightings == (seen(ph, "101", 0.99, True, official=True),)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([("reject", "2026-05-01T09:00:00Z"), ("assign", "2026-05-01T09:05:00Z")], "assigned"),
        ([("assign", "2026-05-01T09:05:00Z"), ("reject", "2026-05-01T09:00:00Z")], "assigned"),
        ([("assign", "2026-05-01T09:00:00Z"), ("reject", "2026-05-01T09:05:00Z")], "rejected"),
        ([("reject", "2026-05-01T09:05:00Z"), ("assign", "2026-05-01T09:00:00Z")], "rejected"),
    ],
    ids=["reject_then_assign", "logged_out_of_order", "assign_then_reject", "reject_last"],
)
def test_decide__the_latest_decision_counts(rows: list[tuple[str, str]], expected: str) -> None:
    decision = decide(
        correction(action, when, bib="101" if action == "assign" else "") for action, when in rows
    )
    assert (decision.rejected, bool(decision.assigned)) == (
        expected == "rejected",
        expected == "assigned",
    )


def test_decide__orders_by_instant_when_officials_write_different_offsets() -> None:
    # 10:30+02:00 is 08:30Z: the reject came first, the assign at 09:00Z is the latest word.
    decision = decide(
        [
            correction("reject", "2026-05-01T10:30:00+02:00"),
            correction("assign", "2026-05-01T09:00:00Z", bib="101"),
        ]
    )
    assert decision.assigned and not decision.rejected


def test_official_statuses__latest_athlete_decision_counts_and_reinstate_clears() -> None:
    rows = [
        Correction("", "dsq", bib="101", decided_at=at("2026-05-01T09:00:00Z")),
        Correction("", "dnf", bib="102", decided_at=at("2026-05-01T09:05:00Z")),
        Correction("", "reinstate", bib="102", decided_at=at("2026-05-01T09:10:00Z")),
        Correction("", "dnf", bib="101", decided_at=at("2026-05-01T09:02:00Z")),
    ]
    assert official_statuses(rows) == {"101": "dnf"}
    assert decisions_by_image(rows) == {}, "athlete decisions are about no image"


def test_decisions_by_image__one_decision_per_image() -> None:
    rows = [
        Correction("x", "reject", decided_at=at("2026-05-01T09:00:00Z")),
        Correction("y", "assign", bib="101", decided_at=at("2026-05-01T09:00:00Z")),
        Correction("y", "assign", bib="102", decided_at=at("2026-05-01T09:01:00Z")),
    ]
    decisions = decisions_by_image(rows)
    assert decisions == {"x": Decision(rejected=True), "y": Decision(assigned=tuple(rows[1:]))}


def test_parse_corrections__reads_the_dashboard_log() -> None:
    text = HEADER + (
        "abc,assign,101,cp1,2026-05-01T08:30:01.5Z,2026-05-01T09:00:00Z,kari\n"
        "def,reject,,,,2026-05-01T09:01:00Z,ola\n"
        "ghi,assign,102,,2026-05-01T10:30:00,2026-05-01T09:02:00Z,ola\n"
    )
    assert parse_corrections(text) == (
        Correction(
            "abc",
            "assign",
            "101",
            "cp1",
            datetime(2026, 5, 1, 8, 30, 1, 500_000, tzinfo=UTC),
            at("2026-05-01T09:00:00Z"),
            "kari",
        ),
        Correction("def", "reject", decided_at=at("2026-05-01T09:01:00Z"), by="ola"),
        Correction(
            "ghi",
            "assign",
            "102",
            passed_at=datetime(2026, 5, 1, 10, 30, tzinfo=UTC),  # no offset: UTC
            decided_at=at("2026-05-01T09:02:00Z"),
            by="ola",
        ),
    )


def test_parse_corrections__a_time_without_offset_is_the_races_local_time() -> None:
    """A timer typing 10:30:00 into the log means the race's clock, as a camera without an
    offset does (EXIF: the course's timezone): read as UTC it was two hours out in Oslo."""
    text = HEADER + "ghi,assign,102,finish,2026-05-01T10:30:00,2026-05-01T11:02:00,ola\n"

    (row,) = parse_corrections(text, timezone="Europe/Oslo")

    assert row.passed_at == datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    assert row.decided_at == datetime(2026, 5, 1, 9, 2, tzinfo=UTC)


def test_parse_corrections__a_time_of_day_alone_is_on_the_races_day() -> None:
    """A timer types 10:42:07 alone, as into the dashboard's time field: the race's day,
    local (its start's date in the course's timezone)."""
    text = HEADER + "ghi,assign,102,finish,10:42:07.5,,ola\njkl,assign,103,finish,10:43,,ola\n"
    start = datetime(2026, 5, 1, 8, tzinfo=UTC)

    rows = parse_corrections(text, timezone="Europe/Oslo", race_start=start)

    assert [r.passed_at for r in rows] == [
        datetime(2026, 5, 1, 8, 42, 7, 500_000, tzinfo=UTC),
        datetime(2026, 5, 1, 8, 43, tzinfo=UTC),
    ]
    with pytest.raises(ConfigError, match="line 2: passed_at '10:42:07.5' is a time of day"):
        parse_corrections(text, timezone="Europe/Oslo")  # no race day known: not guessed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,what\nabc,reject\n", "corrections.csv: line 1: expected header"),
        (
            HEADER + "abc,reject,,,,2026-05-01T09:00:00Z,x\nabc,delete,,,,2026-05-01T09:01:00Z,x\n",
            "corrections.csv: line 3: action",
        ),
        (
            HEADER + "abc,assign,,,,2026-05-01T09:00:00Z,x\n",
            "corrections.csv: line 2: assign needs a bib",
        ),
        (
            HEADER + "abc,assign,101,,half past ten,2026-05-01T09:00:00Z,x\n",
            "corrections.csv: line 2: passed_at",
        ),
        (
            HEADER + ",approve,,,,2026-05-01T09:00:00Z,x\n",
            "corrections.csv: line 2: approve needs an image_id",
        ),
        (HEADER + ",dsq,,,,2026-05-01T09:00:00Z,x\n", "corrections.csv: line 2: dsq needs a bib"),
        (
            HEADER + ",seen,,,,2026-05-01T09:00:00Z,x\n",
            "corrections.csv: line 2: seen needs an image_id or a station_id",
        ),
        (HEADER + "abc,reject,,,,yesterday,x\n", "corrections.csv: line 2: decided_at"),
    ],
    ids=[
        "header",
        "unknown_action",
        "assign_without_bib",
        "bad_passed_at",
        "approve_without_image",
        "dsq_without_bib",
        "seen_of_nothing",
        "bad_decided_at",
    ],
)
def test_parse_corrections__error_names_the_file_and_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_corrections(text, "corrections.csv")


def test_load_corrections__missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="corrections.csv: cannot read"):
        load_corrections(str(tmp_path / "corrections.csv"))


# --- IdentifyAthletes -------------------------------------------------------------------------


def test_identify_athletes__photos_sightings_and_review_are_tagged_outputs() -> None:
    confident = photo("confident", seconds=1, bibs=(read("101", 0.9),))
    weak = photo("weak", seconds=2, bibs=(read("102", 0.4),))
    unknown = photo("unknown", seconds=3, bibs=(read("999", 0.9),))
    covered = photo("covered", seconds=4, quality=COVERED)
    empty = photo("empty", seconds=5)
    near = photo("near", seconds=8, bibs=(read("1033", 0.9),))
    duplicate = photo("dup", seconds=1.3, bibs=(read("101"),), status=DUPLICATE)
    revived = photo("revived", seconds=6, bibs=(read("101"),), status=DUPLICATE)
    rejected = photo("rejected", seconds=7, bibs=(read("101"),))
    decisions = {
        revived.image_id: Decision(assigned=(Correction(revived.image_id, "assign", bib="103"),)),
        rejected.image_id: Decision(rejected=True),
    }
    photos = [confident, weak, unknown, covered, empty, near, duplicate, revived, rejected]
    with TestPipeline() as p:
        out = p | beam.Create(photos) | IdentifyAthletes(LISTED, THRESHOLD, decisions)
        assert_that(
            out.photos,
            equal_to(
                [
                    replace(confident, status=PASSAGE),
                    replace(weak, status=REVIEW, reason="low_confidence"),
                    replace(unknown, status=REVIEW, reason="unknown_bib"),
                    replace(covered, status=REVIEW, reason="camera_covered"),
                    replace(empty, status=NO_ATHLETE),
                    replace(near, status=REVIEW, reason="low_confidence"),
                    duplicate,
                    replace(revived, status=PASSAGE, reason="assigned_by_official"),
                    replace(rejected, status=REJECTED, reason="rejected_by_official"),
                ]
            ),
            label="Photos",
        )
        assert_that(
            out.sightings,
            equal_to(
                [
                    seen(confident, "101", 0.9, True),
                    seen(weak, "102", 0.4, False),
                    seen(unknown, "999", 0.9, False),
                    seen(near, "103", 0.9 * SNAP_FACTOR, False),
                    seen(revived, "103", 1.0, True, method="manual", official=True),
                ]
            ),
            label="Sightings",
        )
        assert_that(
            out.review,
            equal_to(
                [
                    item(weak, "low_confidence", "102"),
                    item(unknown, "unknown_bib", "999"),
                    item(covered, "camera_covered"),
                    item(near, "low_confidence", "103"),
                ]
            ),
            label="Review",
        )


# --- a photo cut short on upload --------------------------------------------------------------


def cut_short(ph: Photo) -> Photo:
    return replace(ph, facts=replace(ph.facts, truncated=True))


def test_identify_photo__a_photo_cut_short_counts_its_reads_as_weak_and_is_one_item() -> None:
    # Its bibs were read on what arrived: one at the cut may have lost digits.
    ph = cut_short(photo("a", bibs=(read("101", 0.99), read("58", 0.4))))
    assert identify_photo(ph, LISTED, THRESHOLD, {}) == Identified(
        replace(ph, status=REVIEW, reason="truncated_image"),
        (seen(ph, "101", 0.99, False),),
        (item(ph, "truncated_image", "101", "58"),),
    )


def test_identify_photo__a_photo_cut_short_with_nothing_read_is_still_queued() -> None:
    ph = cut_short(photo("a"))
    assert identify_photo(ph, LISTED, THRESHOLD, {}) == Identified(
        replace(ph, status=REVIEW, reason="truncated_image"), (), (item(ph, "truncated_image"),)
    )


def test_identify_photo__an_approved_photo_cut_short_times_its_reads() -> None:
    ph = cut_short(photo("a", bibs=(read("101", 0.99),)))
    decided = {ph.image_id: decide([correction("approve", "2026-05-01T09:00:00Z")])}
    identified = identify_photo(ph, LISTED, THRESHOLD, decided)
    assert (identified.photo.status, identified.sightings) == (
        PASSAGE,
        (seen(ph, "101", 0.99, True, official=True),),
    )
