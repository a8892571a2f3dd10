"""Beam's SDK worker times the steps of each bundle with a thread of its own that samples
the current step, sleeping from 2 ms up to 200 ms between samples; the bundle's end stops
that thread and waits for it to wake. So each bundle ended up to 0.2 s late: a worker of a
205-photo race sat idle 45-190 ms after each of its ~8 bundles of the analysis (0.7 s a
worker), and the launcher ~5 ms after each of its ~25 stages. Nothing in racelens reads
those timings (Beam's per-step msecs counters), so the sampler wakes at least every
SAMPLING_PERIOD_MS: a bundle ends at most that much late, for ~100 wake-ups a second (a
few microseconds each) while a bundle runs.

Applied when this module is imported (by pipeline/graph.py): the launcher imports it
before it forks its zygote (pipeline/workers.py), so the workers forked from it have it.
"""

from __future__ import annotations

from apache_beam.runners.worker import statesampler

SAMPLING_PERIOD_MS = 10


class PromptStateSampler(statesampler.StateSampler):
    """Beam's StateSampler, sampling at least every SAMPLING_PERIOD_MS by default."""

    def __init__(self, prefix: str, counter_factory, sampling_period_ms: int = SAMPLING_PERIOD_MS):
        super().__init__(prefix, counter_factory, sampling_period_ms)


def prompt_bundle_ends() -> None:
    """Has Beam's bundle processors, made from now on, use PromptStateSampler (idempotent)."""
    statesampler.StateSampler = PromptStateSampler


prompt_bundle_ends()
