"""Tracing: spans of runs, step attempts, executors, requests and deliveries, kept in memory."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, StatusCode

from support.engine_sim import Sim
from wayang.engine import events as ev
from wayang.errors import UsageError
from wayang.executors import ShellExecutor, TaskSpec
from wayang.observe import Tracing, TracingExecutor

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")

SHIP = """
id = "ship"
[steps.build]
run = "echo build"
retry = { attempts = 2 }
[steps.deploy]
needs = ["build"]
run = "echo deploy"
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = Tracing.with_exporter(exporter)
    yield tracing
    tracing.shutdown()


def trace_of(run_id: str) -> int:
    """The derivation the spans must follow, written out again independently."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16])


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_a_run_is_one_trace_with_a_span_per_step_attempt(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    sim = Sim.begin(SHIP)
    sim.finish("build", "failed")
    sim.fire_timers()
    sim.finish("build")
    sim.finish("deploy")
    tracing.on_events("r1", sim.history)

    [run] = named(exporter, "run ship")
    first, second = sorted(
        named(exporter, "step build"), key=lambda s: s.attributes["wayang.attempt"]
    )
    [deploy] = named(exporter, "step deploy")
    assert {span.context.trace_id for span in exporter.get_finished_spans()} == {trace_of("r1")}
    assert run.parent is None
    for step in (first, second, deploy):
        assert step.parent is not None and step.parent.span_id == run.context.span_id
    assert run.attributes == {
        "wayang.run_id": "r1",
        "wayang.workflow_id": "ship",
        "wayang.status": "succeeded",
    }
    assert first.status.status_code is StatusCode.ERROR and first.status.description == "boom"
    assert first.attributes["wayang.status"] == "failed"
    assert second.status.status_code is StatusCode.UNSET
    assert second.attributes["wayang.step_id"] == "build"
    assert second.attributes["wayang.attempt"] == 2


def test_spans_take_their_times_from_the_events(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    tracing.on_events("r2", [_started(100.0), ev.StepStarted("build", 1, 101.0)])
    tracing.on_events("r2", [ev.StepSucceeded("build", 1, {}, 2.5, 103.5)])
    assert not named(exporter, "run ship")  # a run's span is written when the run ends
    tracing.on_events("r2", [ev.RunFailed("build failed", ["build"], 104.0)])

    [step] = named(exporter, "step build")
    [run] = named(exporter, "run ship")
    assert (step.start_time, step.end_time) == (101_000_000_000, 103_500_000_000)
    assert (run.start_time, run.end_time) == (100_000_000_000, 104_000_000_000)
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["wayang.status"] == "failed"


def test_an_adopted_run_still_joins_its_trace(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """This process never saw the run start (another one did, then died)."""
    tracing.on_events(
        "r3",
        [
            ev.StepFailed("build", 2, "exit 1", 1, 2.0, True, 50.0),
            ev.StepCancelled("lint", 1, 50.5),
            ev.RunCancelled("stopped", 51.0),
        ],
    )
    [run] = named(exporter, "run unknown")
    [build] = named(exporter, "step build")
    [lint] = named(exporter, "step lint")
    assert run.context.trace_id == build.context.trace_id == trace_of("r3")
    assert build.start_time == 48_000_000_000  # its end minus its duration
    assert build.attributes["wayang.exit_code"] == 1
    assert lint.attributes["wayang.status"] == "cancelled"
    assert run.attributes["wayang.status"] == "cancelled"


def test_traceparent_names_the_step_attempt_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    header = tracing.traceparent("r4", "build", 1)
    assert header is not None
    match = TRACEPARENT.match(header)
    assert match is not None
    tracing.on_events("r4", [_started(1.0), ev.StepStarted("build", 1, 2.0)])
    tracing.on_events("r4", [ev.StepSucceeded("build", 1, {}, 1.0, 3.0)])
    [step] = named(exporter, "step build")
    assert match.groups() == (f"{trace_of('r4'):032x}", f"{step.context.span_id:016x}")
    assert tracing.traceparent("r4", "build", 2) != header


def test_the_executor_span_wraps_a_real_shell_step(
    tracing: Tracing, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    executor = tracing.wrap(ShellExecutor())
    assert isinstance(executor, TracingExecutor)
    lines: list[tuple[str, str]] = []
    task = _task('echo "$TRACEPARENT"; exit 3', tmp_path)
    result = asyncio.run(executor.execute(task, lambda stream, line: lines.append((stream, line))))

    assert result.status == "failed" and result.exit_code == 3
    [(stream, header)] = lines
    match = TRACEPARENT.match(header)
    assert stream == "stdout" and match is not None
    [span] = named(exporter, "executor build")
    assert match.groups() == (f"{trace_of('r5'):032x}", f"{span.context.span_id:016x}")
    attempt = TRACEPARENT.match(tracing.traceparent("r5", "build", 2) or "")
    assert attempt is not None and span.parent is not None
    assert f"{span.parent.span_id:016x}" == attempt.group(2)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["wayang.exit_code"] == 3


def test_a_step_that_sets_traceparent_keeps_its_own(tracing: Tracing, tmp_path: Path) -> None:
    lines: list[str] = []
    task = _task('echo "$TRACEPARENT"', tmp_path, env={"TRACEPARENT": "mine"})
    asyncio.run(tracing.wrap(ShellExecutor()).execute(task, lambda _, line: lines.append(line)))
    assert lines == ["mine"]


def test_request_and_delivery_spans_join_the_trace_of_their_id(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    trace = "20261121-085414-a2ecb7ef"
    with (
        tracing.span("POST /orders", trace_id=trace, root=True, route="/orders") as request,
        tracing.span("validate") as inner,
    ):
        inner.set_attribute("ok", True)
    with tracing.delivery_span("notify", trace, delivery_id="dev/3/notify", attempt=2):
        pass
    [root] = named(exporter, "POST /orders")
    [validate] = named(exporter, "validate")
    [delivery] = named(exporter, "delivery notify")
    assert request is not INVALID_SPAN and root.parent is None
    assert root.context.trace_id == delivery.context.trace_id == trace_of(trace)
    assert validate.parent is not None and validate.parent.span_id == root.context.span_id
    assert delivery.parent is not None and delivery.parent.span_id == root.context.span_id
    assert delivery.attributes is not None and delivery.attributes["wayang.attempt"] == 2
    assert root.attributes == {"route": "/orders"}


def test_an_error_leaving_a_span_marks_it(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="bad"), tracing.span("GET /runs"):
        raise ValueError("bad")
    [span] = named(exporter, "GET /runs")
    assert span.status.status_code is StatusCode.ERROR


def test_off_costs_nothing_and_changes_nothing(tmp_path: Path) -> None:
    tracing = Tracing.off()
    shell = ShellExecutor()
    assert not tracing.enabled
    assert tracing.wrap(shell) is shell
    assert tracing.traceparent("r1", "build", 1) is None
    tracing.on_events("r1", [_started(1.0), ev.RunSucceeded(2.0)])
    with tracing.span("GET /runs", trace_id="r1") as span:
        assert span is INVALID_SPAN
    tracing.shutdown()


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_SERVICE_NAME": "shop"},
    ],
)
def test_from_environment_is_off_unless_asked(environ: dict[str, str]) -> None:
    assert not Tracing.from_environment(environ).enabled


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_SERVICE_NAME": "shop"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"},
    ],
)
def test_from_environment_is_on_when_asked(environ: dict[str, str]) -> None:
    tracing = Tracing.from_environment(environ)
    try:
        assert tracing.enabled
    finally:
        tracing.shutdown()


def test_an_exporter_wayang_lacks_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="zipkin"):
        Tracing.from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})


def _started(at: float) -> ev.RunStarted:
    return ev.RunStarted("ship", "1.0.0", SHIP, "w.toml", {}, {}, {}, at)


def _task(command: str, tmp_path: Path, env: dict[str, str] | None = None) -> TaskSpec:
    return TaskSpec(
        "r5", "build", 2, "r5/build", command, None, {}, env or {}, str(tmp_path), 10.0, "ship"
    )
