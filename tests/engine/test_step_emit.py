"""A workflow step's ``emit``: messages published with the step's success, decided by the core."""

from __future__ import annotations

from support.engine_sim import Sim
from wayang.engine import events as ev
from wayang.engine.messages import PublishMessage
from wayang.engine.replay import replay

SHIP = """
id = "ship"
[parameters.order]
type = "string"
[steps.pack]
run = "echo pack"
[steps.ship]
needs = ["pack"]
run = "echo ship"
[[steps.ship.emit]]
topic = "order.shipped"
data = { order = "${{ params.order }}", carrier = "${{ outputs.carrier }}", boxes = "${{ steps.pack.outputs.boxes }}", note = "by ${{ outputs.carrier }}" }
key = "${{ params.order }}"
[[steps.ship.emit]]
topic = "order.heavy"
when = "steps.pack.outputs.boxes > 2"
data = "${{ outputs }}"
"""


def test_a_succeeded_step_publishes_its_messages_with_the_success() -> None:
    sim = Sim.begin(SHIP, {"order": "A1"})
    sim.finish("pack", boxes=1)
    decision = sim.finish("ship", carrier="dhl")
    published = [c for c in decision.commands if isinstance(c, PublishMessage)]
    assert published == [
        PublishMessage(
            "ship",
            "order.shipped",
            {"order": "A1", "carrier": "dhl", "boxes": 1, "note": "by dhl"},
            "A1",
        )
    ]
    types = [e.TYPE for e in decision.events]
    assert types.index("StepSucceeded") < types.index("MessagePublished")
    [note] = [e for e in decision.events if isinstance(e, ev.MessagePublished)]
    assert (note.step_id, note.topic, note.key) == ("ship", "order.shipped", "A1")
    assert sim.state.status == "succeeded"
    report = replay("r1", sim.history)
    assert report.divergence is None, report.divergence


def test_when_picks_which_messages_go() -> None:
    sim = Sim.begin(SHIP, {"order": "A1"})
    sim.finish("pack", boxes=3)
    decision = sim.finish("ship", carrier="ups")
    topics = [c.topic for c in decision.commands if isinstance(c, PublishMessage)]
    assert topics == ["order.shipped", "order.heavy"]
    heavy = next(c for c in decision.commands if isinstance(c, PublishMessage) and c.key == "")
    assert heavy.data == {"carrier": "ups"}


def test_a_message_that_cannot_be_built_fails_the_step_and_publishes_nothing() -> None:
    sim = Sim.begin(SHIP, {"order": "A1"})
    sim.finish("pack", boxes="many")  # the second emit's 'when' compares it with a number
    decision = sim.finish("ship", carrier="dhl")
    assert not [c for c in decision.commands if isinstance(c, PublishMessage)]
    assert sim.statuses()["ship"] == "failed" and sim.state.status == "failed"
    error = sim.state.steps["ship"].error or ""
    assert error.startswith("emit[1] (topic 'order.heavy'): cannot compare string with integer")


def test_steps_that_finish_without_a_worker_publish_too() -> None:
    sim = Sim.begin(
        'id = "n"\n[steps.mark]\nkind = "noop"\n'
        '[[steps.mark.emit]]\ntopic = "marked"\ndata = { run = "${{ run.id }}" }\n'
    )
    assert sim.state.status == "succeeded"
    assert [e.TYPE for e in sim.history if isinstance(e, ev.MessagePublished)] == [
        "MessagePublished"
    ]
