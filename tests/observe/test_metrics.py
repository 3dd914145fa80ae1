"""Metrics: real engine events in, the Prometheus exposition text parsed back out."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from support.engine_sim import Sim
from wayang.engine import events as ev
from wayang.engine.messages import Signal
from wayang.observe import Metrics
from wayang.observe.metrics import step_kinds

SHIP = """
id = "ship"
[steps.build]
run = "echo build"
retry = { attempts = 2 }
[steps.review]
kind = "approval"
needs = ["build"]
assignees = ["alice"]
[steps.deploy]
needs = ["review"]
run = "echo deploy"
"""


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``, read from the rendered text."""
    body, _ = metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


class Feed:
    """Hands the events a simulated run has recorded since the last call to ``metrics``."""

    def __init__(self, sim: Sim, metrics: Metrics, run_id: str = "r1") -> None:
        self.sim, self.metrics, self.run_id, self.seen = sim, metrics, run_id, 0

    def __call__(self) -> None:
        self.metrics.on_events(self.run_id, self.sim.history[self.seen :])
        self.seen = len(self.sim.history)


def test_a_run_counts_its_start_retry_wait_failure_and_dead_letter() -> None:
    metrics = Metrics()
    sim = Sim.begin(SHIP)
    feed = Feed(sim, metrics)
    feed()
    assert value(metrics, "wayang_runs_started_total", workflow="ship") == 1
    sim.finish("build", "failed")
    sim.fire_timers()
    sim.finish("build")
    feed()
    assert value(metrics, "wayang_step_retries_total", workflow="ship") == 1
    assert value(metrics, "wayang_active_approvals") == 1
    duration = "wayang_step_duration_seconds_count"
    assert value(metrics, duration, workflow="ship", step_kind="task", status="failed") == 1
    assert value(metrics, duration, workflow="ship", step_kind="task", status="succeeded") == 1

    sim.send(Signal(1, "review", "approve", "alice", (), {}))
    feed()
    assert value(metrics, "wayang_active_approvals") == 0
    assert value(metrics, duration, workflow="ship", step_kind="approval", status="succeeded")
    sim.finish("deploy", "failed")
    feed()
    assert sim.state.status == "failed"
    assert value(metrics, "wayang_dead_letters_total", kind="step") == 1
    assert value(metrics, "wayang_runs_finished_total", workflow="ship", status="failed") == 1
    assert value(metrics, "wayang_runs_finished_total", workflow="ship", status="succeeded") is None


def test_step_durations_land_in_the_histogram() -> None:
    metrics = Metrics()
    metrics.on_events("r9", [_started(), ev.StepSucceeded("build", 1, {}, 1.5, 2.0)])
    labels = {"workflow": "ship", "step_kind": "task", "status": "succeeded"}
    assert value(metrics, "wayang_step_duration_seconds_sum", **labels) == 1.5
    assert value(metrics, "wayang_step_duration_seconds_bucket", le="1.0", **labels) == 0
    assert value(metrics, "wayang_step_duration_seconds_bucket", le="2.5", **labels) == 1


def test_a_run_never_seen_starting_counts_as_unknown_and_the_gauge_stays_at_zero() -> None:
    metrics = Metrics()
    metrics.on_events(
        "adopted",
        [
            ev.ApprovalGranted("review", ["alice"], "quorum", 1.0),  # began before we saw it
            ev.StepRetrying("build", 2, 1.0, 2.0, 1.0),
            ev.RunSucceeded(3.0),
        ],
    )
    assert value(metrics, "wayang_active_approvals") == 0
    assert value(metrics, "wayang_step_retries_total", workflow="unknown") == 1
    assert value(metrics, "wayang_runs_finished_total", workflow="unknown", status="succeeded")


def test_a_cancelled_run_takes_its_open_waits_off_the_gauge() -> None:
    metrics = Metrics()
    metrics.on_events(
        "r2",
        [
            _started(),
            ev.ApprovalRequested("review", ["alice"], 1, "", [], None, 1.0),
            ev.NegotiationStarted("price", ["a", "b"], {}, 3, "", None, 1.0),
            ev.CompletionRequested("manual", None, 1.0),
            ev.ApprovalRequested("review", ["alice"], 1, "", [], None, 1.0),  # counted once
        ],
    )
    assert value(metrics, "wayang_active_approvals") == 3
    metrics.on_events("r2", [ev.StepCompleted("manual", 1, "bob", {}, 2.0)])
    assert value(metrics, "wayang_active_approvals") == 2
    metrics.on_events("r2", [ev.RunCancelled("stop", 3.0)])
    assert value(metrics, "wayang_active_approvals") == 0
    assert value(metrics, "wayang_runs_finished_total", workflow="ship", status="cancelled") == 1


def test_past_max_runs_the_oldest_run_is_forgotten() -> None:
    metrics = Metrics(max_runs=2)
    for run_id in ("a", "b", "c"):
        metrics.on_events(run_id, [_started()])
    metrics.on_events("a", [ev.RunSucceeded(1.0)])
    metrics.on_events("c", [ev.RunSucceeded(1.0)])
    assert value(metrics, "wayang_runs_finished_total", workflow="unknown", status="succeeded")
    assert value(metrics, "wayang_runs_finished_total", workflow="ship", status="succeeded") == 1


def test_what_the_server_reports() -> None:
    metrics = Metrics()
    metrics.set_queue("deliveries", 7, 12.5)
    metrics.lease_expired()
    metrics.lease_expired()
    metrics.delivery_finished("notify", "succeeded", 0.02)
    metrics.delivery_finished("notify", "dead", 0.3)
    metrics.http_request("POST", "/runs", 201, 0.004)
    assert value(metrics, "wayang_queue_depth", queue="deliveries") == 7
    assert value(metrics, "wayang_queue_oldest_age_seconds", queue="deliveries") == 12.5
    assert value(metrics, "wayang_lease_expiries_total") == 2
    assert value(metrics, "wayang_delivery_latency_seconds_count", step="notify", status="dead")
    assert value(metrics, "wayang_dead_letters_total", kind="delivery") == 1
    assert value(metrics, "wayang_http_requests_total", method="POST", route="/runs", status="201")
    count = "wayang_http_request_duration_seconds_count"
    assert value(metrics, count, method="POST", route="/runs") == 1
    _, content_type = metrics.render()
    assert content_type.startswith("text/plain")


def test_each_instance_has_its_own_registry_and_the_default_one_is_untouched() -> None:
    first, second = Metrics(), Metrics()
    first.lease_expired()
    assert value(first, "wayang_lease_expiries_total") == 1
    assert value(second, "wayang_lease_expiries_total") == 0
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("wayang_")]


def test_step_kinds_come_from_the_definition_and_a_bad_one_gives_none() -> None:
    assert step_kinds(SHIP) == {"build": "task", "review": "approval", "deploy": "task"}
    assert step_kinds("not = [toml") == {}
    assert step_kinds('steps = "odd"') == {}


def _started() -> ev.RunStarted:
    return ev.RunStarted("ship", "1.0.0", SHIP, "w.toml", {}, {}, {}, 0.0)
