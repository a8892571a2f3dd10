"""Beam's SDK worker times the steps of each bundle with a thread of its own that samples
the current step, sleeping from 2 ms up to 200 ms between samples; the bundle's end stops
that thread and waits for it to wake. So each bundle ended up to 0.2 s late: a worker of a
205-photo race sat idle 45-190 ms after each of its ~8 bundles of the analysis (0.7 s a
worker), and the launcher waited after each of its ~25 stages, beside starting a thread
for each. Nothing in racelens reads those timings (Beam's per-step msecs counters, its log
of a step running for minutes), so no thread samples them: the bundle still tracks which
step runs (its counters and log records name it), and ends when its work does.

Applied when this module is imported (by pipeline/graph.py): the launcher imports it
before it forks its zygote (pipeline/workers.py), so the workers forked from it have it.
"""

from __future__ import annotations

import threading

from apache_beam.runners.worker import statesampler


class UnsampledStateSampler(statesampler.StateSampler):
    """Beam's StateSampler, tracking the current step without a sampling thread."""

    def start(self) -> None:
        self.tracked_thread = threading.current_thread()
        statesampler.set_current_tracker(self)
        self.started = True

    def stop(self) -> None:
        statesampler.set_current_tracker(None)
        self.finished = True


def unsampled_bundles() -> None:
    """Has Beam's bundle processors, made from now on, use UnsampledStateSampler
    (idempotent)."""
    statesampler.StateSampler = UnsampledStateSampler


unsampled_bundles()
