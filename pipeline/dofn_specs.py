"""Beam looks for the state and timer specs of a DoFn (`userstate.get_dofn_specs`: the
signature of every method of the DoFn, ~30 of them) each time it asks whether the DoFn is
stateful: when the graph is built, when it is translated, in each check of the runner and
in each stage a worker sets up, ~950 times in a race's timing run for ~200 DoFns. A DoFn's
methods do not change once it is made, and are its class's (bar a bound method of another
object set on it, as `beam.Map(obj.method)` does), so the answer is kept per DoFn class,
or per DoFn object where it holds such a method: each stage a worker sets up unpickles its
DoFns afresh, ~95 objects of ~40 classes in the timing half.

Applied when this module is imported (by pipeline/graph.py): the launcher imports it
before it forks its zygote (pipeline/workers.py), so the workers forked from it have it.
"""

from __future__ import annotations

import types
import weakref

from apache_beam.transforms import core, userstate

Specs = tuple[set[userstate.StateSpec], set[userstate.TimerSpec]]


def cache_dofn_specs() -> None:
    """Has `userstate.get_dofn_specs` look at each DoFn class once, or each DoFn object
    that holds methods of its own (idempotent). A DoFn that cannot be weakly referenced or
    hashed is looked at each time, as before."""
    find = userstate.get_dofn_specs
    if getattr(find, "cached", False):
        return
    found: weakref.WeakKeyDictionary[object, Specs] = weakref.WeakKeyDictionary()

    def get_dofn_specs(dofn: core.DoFn) -> Specs:
        key = specs_key(dofn)
        try:
            return found[key]
        except KeyError:
            specs = found[key] = find(dofn)
            return specs
        except TypeError:  # unhashable, or no weak reference to it
            return find(dofn)

    get_dofn_specs.cached = True
    userstate.get_dofn_specs = get_dofn_specs


def specs_key(dofn: core.DoFn) -> object:
    """What `dofn`'s specs depend on: its class, unless it holds a bound method of its own
    (whose defaults may name other specs) or finds its attributes its own way."""
    own = vars(dofn).values() if hasattr(dofn, "__dict__") else ()
    if hasattr(type(dofn), "__getattr__") or any(isinstance(v, types.MethodType) for v in own):
        return dofn
    return type(dofn)


cache_dofn_specs()
