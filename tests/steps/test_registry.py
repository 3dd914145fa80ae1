"""The registry indexes steps by topic, route and flow, and checks them as a whole."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from wayang.errors import Diagnostic, Severity, UsageError
from wayang.steps.discovery import discover_steps
from wayang.steps.model import Emit, StepDef, Where
from wayang.steps.registry import FlowEdge, StepRegistry, route_pattern

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def shop(shop_root: Path) -> StepRegistry:
    return StepRegistry.build(*discover_steps(shop_root))


def make(name: str, line: int = 1, **fields: Any) -> StepDef:
    fields.setdefault("type", "event")
    return StepDef(name=name, where=Where(Path(f"steps/{name.lower()}.step.py"), line), **fields)


def messages(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.format() for d in diagnostics]


# --- the fixture project -----------------------------------------------------------------------


def test_a_consistent_project_has_no_findings(shop: StepRegistry) -> None:
    assert shop.diagnostics == []
    assert shop.errors == [] and shop.warnings == []
    assert len(shop.steps) == 9


def test_subscribers_of_a_topic(shop: StepRegistry) -> None:
    assert [s.name for s in shop.subscribers("order.created")] == ["ProcessOrder"]
    assert [s.name for s in shop.subscribers("order.flagged")] == []  # virtual only
    assert shop.subscribers("nobody") == []


def test_routes_match_with_path_parameters(shop: StepRegistry) -> None:
    matched = shop.match("post", "/orders/42")
    assert matched is not None
    step, params = matched
    assert (step.name, params) == ("CreateOrder", {"id": "42"})
    assert shop.match("GET", "/orders/42") is None
    assert shop.match("POST", "/orders/42/items") is None
    assert shop.match("POST", "/orders/") is None
    hello = shop.match("POST", "/hello/")
    assert hello is not None and hello[0].name == "Hello" and hello[1] == {}
    assert sorted(shop.api_routes) == [("POST", "/hello"), ("POST", "/orders/:id")]


def test_crons(shop: StepRegistry) -> None:
    assert [s.name for s in shop.crons] == ["Cleanup"]


def test_flows_have_nodes_and_edges(shop: StepRegistry) -> None:
    flows = shop.flows()
    assert list(flows) == ["hello", "housekeeping", "orders"]
    orders = flows["orders"]
    assert {node.name: node.type for node in orders.nodes} == {
        "CreateOrder": "api",
        "ManualReview": "noop",
        "Notify": "event",
        "ProcessOrder": "event",
    }
    assert set(orders.edges) == {
        FlowEdge("CreateOrder", "ProcessOrder", "order.created"),
        FlowEdge("ProcessOrder", "Notify", "order.processed"),
        FlowEdge("ProcessOrder", "ManualReview", "order.flagged", "suspicious", True, True),
        FlowEdge("ManualReview", "Notify", "order.processed", "approved", False, True),
    }


def test_flow_json_and_text(shop: StepRegistry) -> None:
    hello = shop.flows()["hello"]
    data = hello.to_dict()
    assert data["name"] == "hello"
    assert data["nodes"][0] == {
        "id": "Hello",
        "name": "Hello",
        "type": "api",
        "file": "src/greetings_step.py",
        "line": 10,
        "active": True,
        "description": "",
        "trigger": "POST /hello",
    }
    assert data["edges"][1] == {
        "source": "Greet",
        "target": "Log",
        "topic": "greeted",
        "label": "done",
        "conditional": False,
        "virtual": False,
    }
    shop.deactivate("Log")
    assert shop.flows()["hello"].to_text() == (
        "flow hello (3 steps)\n"
        "  Hello [api POST /hello]\n"
        "  Greet [event greet]\n"
        "  Log [event greeted]  (inactive)\n"
        "  Hello --> Greet  via greet\n"
        "  Greet --> Log  via greeted (done)"
    )
    orders = shop.flows()["orders"].to_text()
    assert "ProcessOrder -.-> ManualReview  via order.flagged (suspicious, conditional)" in orders


# --- activation --------------------------------------------------------------------------------


def test_deactivated_steps_receive_nothing(shop: StepRegistry) -> None:
    shop.deactivate("ProcessOrder")
    shop.deactivate("Cleanup")
    assert not shop.is_active("ProcessOrder")
    assert shop.subscribers("order.created") == []
    assert shop.crons == []
    assert shop.inactive == {"ProcessOrder", "Cleanup"}
    shop.activate("ProcessOrder")
    assert [s.name for s in shop.subscribers("order.created")] == ["ProcessOrder"]


def test_inactive_names_are_given_at_build_time() -> None:
    registry = StepRegistry.build(
        [make("A", subscribes=("t",), emits=(Emit("t"),))], inactive=["A", "Gone"]
    )
    assert registry.inactive == {"A"}
    assert not registry.is_active("A") and not registry.is_active("Gone")


def test_an_unknown_step_name_is_a_usage_error_with_a_suggestion(shop: StepRegistry) -> None:
    hint = re.escape("no step is named 'Cleanp'; did you mean 'Cleanup'?")
    with pytest.raises(UsageError, match=hint):
        shop.deactivate("Cleanp")
    with pytest.raises(UsageError, match="'wayang steps list' shows them all"):
        shop.activate("Zzz")


# --- checks ------------------------------------------------------------------------------------


def test_duplicate_names_are_an_error_naming_both_places() -> None:
    first = make("A", 3, subscribes=("t",), emits=(Emit("t"),))
    second = StepDef(name="A", type="event", where=Where(Path("src/other_step.py"), 7))
    registry = StepRegistry.build([first, second])
    assert registry.steps["A"] is first
    assert messages(registry.errors) == [
        "src/other_step.py:7:1: error: step name 'A' is already used by the step at "
        "steps/a.step.py:3; step names must be unique — rename one of them"
    ]


def test_equivalent_api_paths_clash() -> None:
    one = make("One", 2, type="api", method="GET", path="/orders/:id")
    two = make("Two", 4, type="api", method="GET", path="/orders/:key/")
    other_method = make("Three", type="api", method="DELETE", path="/orders/:id")
    registry = StepRegistry.build([one, two, other_method])
    assert messages(registry.errors) == [
        "steps/two.step.py:4:1: error: API route GET /orders/:key/ of step 'Two' clashes with "
        "GET /orders/:id of step 'One' at steps/one.step.py:2; change one path or method"
    ]
    matched = registry.match("GET", "/orders/7")
    assert matched is not None and matched[0] is one


def test_a_static_route_wins_over_a_placeholder() -> None:
    by_id = make("ById", type="api", method="GET", path="/orders/:id")
    new = make("New", type="api", method="GET", path="/orders/new")
    registry = StepRegistry.build([by_id, new])
    assert registry.errors == []
    assert registry.match("GET", "/orders/new") == (new, {})
    assert registry.match("GET", "/orders/5") == (by_id, {"id": "5"})
    assert route_pattern("/a/:x/b/") == ("a", ":", "b")


def test_topics_without_the_other_end_are_warnings() -> None:
    sender = make("Sender", 2, emits=(Emit("order.shipped"), Emit("order.shipped")))
    receiver = make("Receiver", 5, subscribes=("order.shiped",))
    registry = StepRegistry.build([sender, receiver])
    assert registry.errors == []
    assert messages(registry.warnings) == [
        "steps/sender.step.py:2:1: warning: step 'Sender' emits 'order.shipped' but no step "
        "subscribes to it; add a subscriber, or fix the topic name; did you mean 'order.shiped'?",
        "steps/receiver.step.py:5:1: warning: step 'Receiver' subscribes to 'order.shiped' but no "
        "step emits it; it only runs for 'wayang emit' or external emits; did you mean "
        "'order.shipped'?",
    ]
    assert [d.code for d in registry.warnings] == ["topic-unsubscribed", "topic-unemitted"]


def test_virtual_and_known_topics_count() -> None:
    steps = [
        make("A", emits=(Emit("a"),), subscribes=("from.workflow",)),
        make("B", type="noop", virtual_subscribes=("a",), virtual_emits=(Emit("b"),)),
        make("C", subscribes=("b",), emits=(Emit("to.workflow"),)),
    ]
    registry = StepRegistry.build(steps, known_topics=["from.workflow", "to.workflow"])
    assert registry.diagnostics == []
    assert len(StepRegistry.build(steps).warnings) == 2


def test_load_diagnostics_are_kept() -> None:
    loaded = Diagnostic("steps/x.step.py", 4, 1, "bad", Severity.ERROR, "step-cron")
    registry = StepRegistry.build([], [loaded])
    assert registry.errors == [loaded] and registry.warnings == []


def test_get_gives_a_step(shop: StepRegistry) -> None:
    assert shop.get("Audit").name == "Audit"
