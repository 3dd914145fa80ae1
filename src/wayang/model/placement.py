"""Where a task may run: what it needs of a worker, and what a worker offers.

Both sides are sets of plain tokens, so the store can match them without knowing what they mean:
``cap:<name>`` for a capability (``cap:shell``, ``cap:gpu``) and ``label:<key>=<value>`` for a
label. A task runs on a worker (or engine) that offers every token the task needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wayang.model.spec import RunsOn

# What every engine and, by default, every worker can run: the local executors.
LOCAL_CAPABILITIES = ("shell", "python")


def placement_tokens(runs_on: RunsOn | None) -> tuple[str, ...]:
    """The tokens a step's ``runs_on`` asks for, sorted (stable across plans)."""
    if runs_on is None:
        return ()
    return tuple(sorted(offer_tokens(runs_on.capabilities, runs_on.labels)))


def offer_tokens(capabilities: Iterable[str], labels: Mapping[str, str]) -> frozenset[str]:
    """The tokens of a worker with these capabilities and labels."""
    caps = {f"cap:{name}" for name in capabilities}
    return frozenset(caps | {f"label:{key}={value}" for key, value in labels.items()})


def task_needs(placement: Iterable[str], command: str | None, uses: str | None) -> list[str]:
    """What one task needs: the step's placement plus the executor that runs it.

    A ``python:`` function needs ``python``; a command and a ``just:`` recipe (run by ``just``
    through the shell executor) need ``shell``.
    """
    executor = "cap:python" if uses and uses.startswith("python:") else "cap:shell"
    return sorted({executor, *placement})


def describe_needs(needs: Iterable[str]) -> str:
    """``capabilities gpu, shell; labels region=eu`` — for messages about a waiting task."""
    caps = [token[4:] for token in needs if token.startswith("cap:")]
    labels = [token[6:] for token in needs if token.startswith("label:")]
    parts = [f"capabilities {', '.join(caps)}"] if caps else []
    parts += [f"labels {', '.join(labels)}"] if labels else []
    return "; ".join(parts) or "nothing in particular"
