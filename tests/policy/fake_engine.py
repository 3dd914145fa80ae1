"""A tiny external policy engine for the plugin tests (loaded through an entry point)."""

from __future__ import annotations

from wayang.engine.gate import PolicyRequest, Verdict
from wayang.model.spec import Policy


class FakeGate:
    """Denies every request whose actor is not in the policy's ``admins`` role."""

    def __init__(self, policy: Policy) -> None:
        self.admins = frozenset(policy.roles.get("admins", []))

    def check(self, request: PolicyRequest) -> Verdict:
        if request.actor in self.admins:
            return Verdict(True, "fake", "an admin")
        return Verdict(False, "fake", f"{request.actor} is not an admin")


def make(policy: Policy) -> FakeGate:
    return FakeGate(policy)


def broken(policy: Policy) -> FakeGate:
    raise RuntimeError("the engine's server is down")


def no_check(policy: Policy) -> object:
    return object()


NOT_CALLABLE = 42
