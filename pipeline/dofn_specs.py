"""Beam looks for the state and timer specs of a DoFn (`userstate.get_dofn_specs`: the
signature of every method of the DoFn, ~30 of them) each time it asks whether the DoFn is
stateful: when the graph is built, when it is translated, in each check of the runner and
in each stage a worker sets up, ~950 times in a race's timing run for ~200 DoFns. A DoFn's
methods do not change once it is made, so the answer is kept per DoFn object: the timing
half on the demo race's 205 photos, in one process, 4.8 -> 3.4 CPU s (README, Performance).

Applied when this module is imported (by pipeline/graph.py): the launcher imports it
before it forks its zygote (pipeline/workers.py), so the workers forked from it have it.
"""

from __future__ import annotations

import weakref

from apache_beam.transforms import core, userstate

Specs = tuple[set[userstate.StateSpec], set[userstate.TimerSpec]]


def cache_dofn_specs() -> None:
    """Has `userstate.get_dofn_specs` look at each DoFn object once (idempotent). A DoFn
    that cannot be weakly referenced or hashed is looked at each time, as before."""
    find = userstate.get_dofn_specs
    if getattr(find, "cached", False):
        return
    found: weakref.WeakKeyDictionary[core.DoFn, Specs] = weakref.WeakKeyDictionary()

    def get_dofn_specs(dofn: core.DoFn) -> Specs:
        try:
            return found[dofn]
        except KeyError:
            specs = found[dofn] = find(dofn)
            return specs
        except TypeError:  # unhashable, or no weak reference to it
            return find(dofn)

    get_dofn_specs.cached = True
    userstate.get_dofn_specs = get_dofn_specs


cache_dofn_specs()
