"""Beam's DoFn state and timer specs, looked at once per DoFn class (or object)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from pipeline.dofn_specs import cache_dofn_specs
from transforms.passages import _MarkTooLate


class _Count(beam.DoFn):
    """(key, value) -> (key, how many values of the key so far), from user state."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", VarIntCoder())

    def process(
        self, element: tuple[str, int], seen: object = beam.DoFn.StateParam(SEEN)
    ) -> Iterator[tuple[str, int]]:
        count = (seen.read() or 0) + 1
        seen.write(count)
        yield element[0], count


def test_cache_dofn_specs__gives_a_dofn_its_specs_once_found() -> None:
    cache_dofn_specs()
    cache_dofn_specs()  # idempotent
    stateful, plain = _MarkTooLate(3.0, 60.0), beam.Map(len).fn
    first = userstate.get_dofn_specs(stateful)
    assert first == ({_MarkTooLate.WATERMARK}, set())
    assert userstate.get_dofn_specs(stateful) is first  # kept, not looked for again
    assert userstate.get_dofn_specs(plain) == (set(), set())
    assert not userstate.is_stateful_dofn(plain)


def test_cache_dofn_specs__stateful_dofns_still_run_with_their_state() -> None:
    cache_dofn_specs()
    with TestPipeline() as p:
        counted = (
            p
            | beam.Create([("a", 1), ("b", 2), ("a", 3)])
            | beam.ParDo(_Count())
            | beam.combiners.Top.PerKey(1)
        )
        assert_that(counted, equal_to([("a", [2]), ("b", [1])]))


def test_cache_dofn_specs__kept_per_class_unless_the_dofn_holds_a_method_of_its_own() -> None:
    cache_dofn_specs()
    first, second = _MarkTooLate(3.0, 60.0), _MarkTooLate(5.0, 60.0)
    assert userstate.get_dofn_specs(second) is userstate.get_dofn_specs(first)
    # FlatMap's DoFn holds what it is given as its process method: here a stateful one.
    holding = beam.FlatMap(_Count().process).fn
    assert userstate.get_dofn_specs(holding) == ({_Count.SEEN}, set())
    assert userstate.get_dofn_specs(beam.FlatMap(len).fn) == (set(), set())
