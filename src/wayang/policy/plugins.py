"""External policy engines, found through the ``wayang.policy_engines`` entry point group.

A package registers ``name = "package.module:factory"`` in that group; ``engine = "name"`` in a
project's policy file then hands every decision to ``factory(policy)``, which gets the merged
:class:`~wayang.model.spec.Policy` and returns an object with a ``check(request) -> Verdict``
method (a :class:`~wayang.engine.gate.PolicyGate`). It must be deterministic, as every gate.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import cast

from wayang.engine.gate import PolicyGate
from wayang.errors import UsageError
from wayang.model.keys import did_you_mean
from wayang.model.spec import Policy

ENTRY_POINT_GROUP = "wayang.policy_engines"


def engine_names() -> list[str]:
    """The names of the installed policy engines, sorted."""
    return sorted({entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})


def load_engine(name: str, policy: Policy) -> PolicyGate:
    """The gate the engine ``name`` builds for ``policy``; ``UsageError`` if there is no such
    engine or it fails to load or to build a gate."""
    found = [entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == name]
    if not found:
        raise UsageError(_unknown(name))
    entry = found[0]
    what = f"policy engine '{name}' ({entry.value})"
    factory = _load(entry, what)
    if not callable(factory):
        raise UsageError(f"{what} is not callable; it must be a function taking the policy")
    try:
        gate = factory(policy)
    except Exception as exc:
        raise UsageError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(gate, "check", None)):
        raise UsageError(
            f"{what} returned {type(gate).__name__}, which has no check(request) method"
        )
    return cast(PolicyGate, gate)


def _load(entry: EntryPoint, what: str) -> object:
    try:
        return entry.load()
    except Exception as exc:
        raise UsageError(f"{what} could not be loaded: {type(exc).__name__}: {exc}") from exc


def _unknown(name: str) -> str:
    names = engine_names()
    if not names:
        return (
            f"unknown policy engine '{name}': no policy engine is installed (entry point group "
            f"'{ENTRY_POINT_GROUP}'); install the package that provides it or remove 'engine'"
        )
    return (
        f"unknown policy engine '{name}'{did_you_mean(name, names)}; installed engines: "
        + ", ".join(names)
    )


__all__ = ["ENTRY_POINT_GROUP", "engine_names", "load_engine"]
