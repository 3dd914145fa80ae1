"""External policy engines behind the wayang.policy_engines entry point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from wayang.engine.gate import PolicyRequest, Verdict
from wayang.errors import UsageError
from wayang.model.spec import Policy
from wayang.policy import ENTRY_POINT_GROUP, load_engine, plugins

POLICY = Policy.model_validate({"roles": {"admins": ["ann"]}, "engine": "fake"})


def install(monkeypatch: pytest.MonkeyPatch, **engines: str) -> None:
    """Pretend these engines (name = "module:attribute") are installed."""
    found = [
        EntryPoint(
            name=name, value=f"tests.policy.fake_engine:{attribute}", group=ENTRY_POINT_GROUP
        )
        for name, attribute in engines.items()
    ]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [entry for entry in found if entry.group == group]

    monkeypatch.setattr(plugins, "entry_points", entry_points)


def test_an_installed_engine_builds_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="make")
    gate = load_engine("fake", POLICY)
    assert gate.check(PolicyRequest("start", actor="ann")) == Verdict(True, "fake", "an admin")
    assert not gate.check(PolicyRequest("start", actor="bob")).allowed


def test_an_unknown_engine_lists_the_installed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="make", opa="make")
    with pytest.raises(UsageError) as caught:
        load_engine("opq", POLICY)
    assert str(caught.value) == (
        "unknown policy engine 'opq'; did you mean 'opa'?; installed engines: fake, opa"
    )


def test_an_unknown_engine_when_none_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    with pytest.raises(UsageError, match="no policy engine is installed") as caught:
        load_engine("opa", POLICY)
    assert ENTRY_POINT_GROUP in str(caught.value)


def test_a_failing_factory_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="broken")
    with pytest.raises(UsageError) as caught:
        load_engine("fake", POLICY)
    assert str(caught.value) == (
        "policy engine 'fake' (tests.policy.fake_engine:broken) failed: "
        "RuntimeError: the engine's server is down"
    )


def test_a_plugin_that_cannot_be_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="missing_attribute")
    with pytest.raises(UsageError, match=r"policy engine 'fake' .* could not be loaded"):
        load_engine("fake", POLICY)


def test_a_gate_without_check_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="no_check")
    with pytest.raises(UsageError, match=r"returned object, which has no check\(request\) method"):
        load_engine("fake", POLICY)


def test_a_factory_that_is_not_callable(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, fake="NOT_CALLABLE")
    with pytest.raises(UsageError, match="is not callable"):
        load_engine("fake", POLICY)
