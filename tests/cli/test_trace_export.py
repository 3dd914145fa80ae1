"""``wayang trace RUN``: a run's timeline as JSON or OTLP/JSON, printed, written or sent.

Real runs on a real SQLite store, a real collector (``http.server`` on a free port) and a real
``wayang server`` whose live spans (OTLP/protobuf) the exported ones must merge with.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from server_runs import free_port, running_server

from cli_runs import Wayang, wait_for
from wayang import wire
from wayang.observe.otlp_json import spans_of, trace_document
from wayang.observe.trace_ids import (
    attempt_span_id_of,
    root_span_id_of,
    trace_id_of,
    wait_span_id_of,
)

FLAKY = """
    id = "flaky"
    version = "1.0.0"
    [steps.prepare]
    run = "echo preparing"
    [steps.check]
    needs = ["prepare"]
    run = "echo checking; exit 3"
    retry = { attempts = 2, delay = "10ms", backoff = "fixed", jitter = false }
"""

STEADY = """
    id = "steady"
    version = "1.0.0"
    [steps.greet]
    run = "echo hello"
    [steps.shout]
    needs = ["greet"]
    run = "echo HELLO"
"""

WITH_TIMER = """
    id = "timed"
    version = "1.0.0"
    [steps.prepare]
    run = "echo preparing"
    [steps.check]
    needs = ["prepare"]
    run = "exit 3"
    retry = { attempts = 2, delay = "10ms", backoff = "fixed", jitter = false }
    [steps.later]
    kind = "timer"
    for = "30s"
"""

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{8}")
UNKNOWN = "20990101-000000-deadbeef"


def start(wayang: Wayang, tmp_path: Path, name: str, text: str, *argv: str) -> str:
    """Run ``text`` (as ``tmp_path/name/workflow.toml``) to its end; the run id."""
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "workflow.toml"
    path.write_text(textwrap.dedent(text), "utf-8")
    result = wayang(*argv, "run", str(path))
    found = RUN_ID.search(result.out + result.err)
    assert found is not None, result
    return found.group(0)


def attribute_map(span: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON span's attributes as plain values."""
    found: dict[str, Any] = {}
    for item in span["attributes"]:
        [(kind, value)] = item["value"].items()
        found[item["key"]] = int(value) if kind == "intValue" else value
    return found


def as_protobuf(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """The OTLP/JSON document read as the protobuf OTLP defines (every field name checked).
    OTLP/JSON spells ids in hex where the protobuf JSON mapping wants base64."""
    converted = copy.deepcopy(document)
    for span in spans_of(converted):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return json_format.ParseDict(converted, ExportTraceServiceRequest())


# ------------------------------------------------------------------------------ a collector


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes


@dataclass
class Collector:
    """An OTLP/HTTP collector stand-in: keeps what is POSTed, answers ``status``."""

    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"{}"

    def json_documents(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests if r.content_type == "application/json"]

    def protobuf_spans(self) -> list[ProtoSpan]:
        spans: list[ProtoSpan] = []
        for received in self.requests:
            if received.content_type != "application/x-protobuf":
                continue
            request = ExportTraceServiceRequest.FromString(received.body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    spans.extend(scope.spans)
        return spans


@pytest.fixture
def collector() -> Iterator[Collector]:
    kept = Collector(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            kind = self.headers.get("Content-Type", "")
            kept.requests.append(Received(self.path, kind, body))
            self.send_response(kept.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(kept.answer)))
            self.end_headers()
            self.wfile.write(kept.answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kept.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kept
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------ json


def test_json_is_the_timeline_of_the_run(wayang: Wayang, tmp_path: Path) -> None:
    run_id = start(wayang, tmp_path, "flaky", FLAKY)
    result = wayang("trace", run_id)
    assert result.code == 0, result
    assert result.err == ""
    data = result.json()
    assert set(data) == {"run_id", "workflow_id", "status", "start", "end", "spans"}
    assert (data["run_id"], data["workflow_id"], data["status"]) == (run_id, "flaky", "failed")
    rows = [(s["step"], s["attempt"], s["status"], s["kind"]) for s in data["spans"]]
    assert rows == [
        ("prepare", 1, "succeeded", "attempt"),
        ("check", 1, "failed", "attempt"),
        ("check", 2, "failed", "attempt"),
    ]
    for span in data["spans"]:
        assert data["start"] <= span["start"] <= span["end"] <= data["end"]
    assert wire.RunTrace.model_validate(data).model_dump(mode="json") == data
    assert result.out == json.dumps(data, indent=2) + "\n"  # pretty printed
    assert wayang("trace", run_id, "--format", "json").out == result.out


# ------------------------------------------------------------------------------ otlp


def test_otlp_has_the_ids_names_and_statuses_of_live_tracing(
    wayang: Wayang, tmp_path: Path
) -> None:
    run_id = start(wayang, tmp_path, "flaky", FLAKY)
    timeline = wayang("trace", run_id).json()
    result = wayang("trace", run_id, "--format", "otlp")
    assert result.code == 0, result
    document = result.json()

    [resource] = document["resourceSpans"]
    assert resource["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "wayang"}}
    ]
    [scope] = resource["scopeSpans"]
    assert scope["scope"] == {"name": "wayang"}
    run, *steps = scope["spans"]
    trace_hex = f"{trace_id_of(run_id):032x}"
    root_hex = f"{root_span_id_of(run_id):016x}"
    assert {span["traceId"] for span in scope["spans"]} == {trace_hex}
    assert re.fullmatch(r"[0-9a-f]{32}", trace_hex)

    assert run["spanId"] == root_hex and "parentSpanId" not in run
    assert run["name"] == "run flaky" and run["kind"] == 1
    assert run["startTimeUnixNano"] == str(int(timeline["start"] * 1_000_000_000))
    assert run["endTimeUnixNano"] == str(int(timeline["end"] * 1_000_000_000))
    assert attribute_map(run) == {
        "wayang.run_id": run_id,
        "wayang.workflow_id": "flaky",
        "wayang.status": "failed",
    }
    assert run["status"] == {"code": 2, "message": "a step failed (check)"}

    assert len(steps) == len(timeline["spans"]) == 3  # a span per step attempt
    for span, bar in zip(steps, timeline["spans"], strict=True):
        assert span["spanId"] == f"{attempt_span_id_of(run_id, bar['step'], bar['attempt']):016x}"
        assert span["parentSpanId"] == root_hex
        assert span["name"] == f"step {bar['step']}"
        assert span["startTimeUnixNano"] == str(int(bar["start"] * 1_000_000_000))
        assert span["endTimeUnixNano"] == str(int(bar["end"] * 1_000_000_000))
        assert attribute_map(span) == {
            "wayang.run_id": run_id,
            "wayang.step_id": bar["step"],
            "wayang.attempt": bar["attempt"],
            "wayang.status": bar["status"],
            "wayang.kind": "attempt",
        }
    prepare, first, second = steps
    assert prepare["status"] == {"code": 1}
    assert first["status"] == {"code": 2, "message": "attempt 1 of step check failed"}
    assert second["status"] == {"code": 2, "message": "attempt 2 of step check failed"}
    assert first["spanId"] != second["spanId"]
    assert {"key": "wayang.attempt", "value": {"intValue": "2"}} in second["attributes"]

    # What an OTLP/HTTP receiver parses: every field is one ExportTraceServiceRequest has.
    parsed = as_protobuf(document)
    proto_spans = parsed.resource_spans[0].scope_spans[0].spans
    assert [s.span_id.hex() for s in proto_spans] == [s["spanId"] for s in scope["spans"]]
    assert {s.trace_id.hex() for s in proto_spans} == {trace_hex}
    assert proto_spans[0].kind == ProtoSpan.SpanKind.SPAN_KIND_INTERNAL
    assert proto_spans[3].status.code == 2  # STATUS_CODE_ERROR
    assert proto_spans[1].end_time_unix_nano == int(prepare["endTimeUnixNano"])


def test_open_spans_end_at_now_and_waits_take_their_own_ids() -> None:
    running = wire.RunTrace(
        run_id="r1",
        workflow_id="wf",
        status="running",
        start=100.0,
        end=None,
        spans=[
            wire.SpanView(step="gate", attempt=1, status="succeeded", start=100.0, end=100.5,
                          kind="wait"),
            wire.SpanView(step="build", attempt=1, status="running", start=101.0, end=None),
            wire.SpanView(step="review", attempt=0, status="waiting", start=100.5, end=None,
                          kind="wait"),
        ],
    )  # fmt: skip
    run, gate, build, review = spans_of(trace_document(running, now=110.0))
    for span in (run, build, review):
        assert span["endTimeUnixNano"] == "110000000000"
        assert attribute_map(span)["wayang.open"] is True
        assert span["status"] == {"code": 0}
    assert "wayang.open" not in attribute_map(gate)
    # A settled wait is the step span live tracing makes at its end (named by its attempt)...
    assert gate["spanId"] == f"{attempt_span_id_of('r1', 'gate', 1):016x}"
    assert gate["status"] == {"code": 1}
    assert build["spanId"] == f"{attempt_span_id_of('r1', 'build', 1):016x}"
    # ...one still open has none yet: an id of its own, never an attempt's.
    assert review["spanId"] == f"{wait_span_id_of('r1', 'review', 0):016x}"
    assert wait_span_id_of("r1", "review", 0) != attempt_span_id_of("r1", "review", 0)
    assert attribute_map(review)["wayang.kind"] == "wait"

    ended = running.model_copy(update={"status": "cancelled", "end": 105.0})
    run, _, build, _ = spans_of(trace_document(ended, now=999.0))
    assert build["endTimeUnixNano"] == run["endTimeUnixNano"] == "105000000000"
    assert "wayang.open" not in attribute_map(run) and attribute_map(build)["wayang.open"]

    queued = wire.RunTrace(
        run_id="r2", workflow_id="wf", status="queued", start=None, end=None, spans=[]
    )
    [alone] = spans_of(trace_document(queued, now=50.0))
    assert alone["startTimeUnixNano"] == alone["endTimeUnixNano"] == "50000000000"
    assert as_protobuf(trace_document(running, now=110.0)).resource_spans


# ------------------------------------------------------------------------------ --output


def test_output_writes_the_file_whole(wayang: Wayang, tmp_path: Path) -> None:
    run_id = start(wayang, tmp_path, "steady", STEADY)
    printed = wayang("trace", run_id, "--format", "otlp").out
    target = tmp_path / "out" / "trace.json"
    target.parent.mkdir()
    target.write_text("old")
    result = wayang("trace", run_id, "--format", "otlp", "--output", str(target))
    assert result.code == 0, result
    assert result.out == ""
    assert result.err.strip() == f"wrote the otlp trace of run {run_id} to {target}"
    assert target.read_text() == printed
    assert [p.name for p in target.parent.iterdir()] == ["trace.json"]  # no temp file left

    assert wayang("trace", run_id, "-o", str(target)).code == 0
    assert json.loads(target.read_text())["run_id"] == run_id

    missing = wayang("trace", run_id, "-o", str(tmp_path / "nowhere" / "t.json"))
    assert missing.code == 2
    assert "folder" in missing.err and "nowhere" in missing.err and "does not exist" in missing.err
    assert not (tmp_path / "nowhere").exists()


# ------------------------------------------------------------------------------ --endpoint


def test_endpoint_posts_the_otlp_json_to_the_collector(
    wayang: Wayang, tmp_path: Path, collector: Collector
) -> None:
    run_id = start(wayang, tmp_path, "flaky", FLAKY)
    printed = wayang("trace", run_id, "--format", "otlp").json()

    sent = wayang("trace", run_id, "--format", "otlp", "--endpoint", collector.url)
    assert sent.code == 0, sent
    assert sent.out == f"sent 4 spans of run {run_id} to {collector.url}/v1/traces\n"
    [received] = collector.requests
    assert (received.path, received.content_type) == ("/v1/traces", "application/json")
    assert json.loads(received.body) == printed

    custom = f"{collector.url}/otlp/v1/traces"
    again = wayang("trace", run_id, "--format", "otlp", "--endpoint", custom, "-o",
                   str(tmp_path / "t.json"))  # fmt: skip
    assert again.code == 0, again
    assert collector.requests[-1].path == "/otlp/v1/traces"  # a path is used as given
    assert json.loads((tmp_path / "t.json").read_text()) == printed


def test_a_collector_that_refuses_is_a_clear_error(
    wayang: Wayang, tmp_path: Path, collector: Collector
) -> None:
    run_id = start(wayang, tmp_path, "steady", STEADY)
    collector.status, collector.answer = 500, b"exporter overloaded"
    refused = wayang("trace", run_id, "--format", "otlp", "--endpoint", collector.url)
    assert refused.code == 1
    assert refused.out == ""
    assert refused.err.splitlines() == [
        f"error: the collector at {collector.url}/v1/traces refused the trace: "
        "HTTP 500 Internal Server Error: exporter overloaded"
    ]

    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = wayang("trace", run_id, "--format", "otlp", "--endpoint", nobody)
    assert unreachable.code == 1
    assert f"could not send the trace to {nobody}/v1/traces" in unreachable.err
    assert len(unreachable.err.splitlines()) == 1


def test_bad_arguments_and_unknown_runs_are_refused(
    wayang: Wayang, tmp_path: Path, collector: Collector
) -> None:
    run_id = start(wayang, tmp_path, "steady", STEADY)
    mixed = wayang("trace", run_id, "--endpoint", collector.url)
    assert mixed.code == 2
    assert "--format otlp" in mixed.err
    bad_url = wayang("trace", run_id, "--format", "otlp", "--endpoint", "localhost:4318")
    assert bad_url.code == 2 and "not an http(s) URL" in bad_url.err
    assert not collector.requests

    unknown = wayang("trace", UNKNOWN)
    assert unknown.code == 2
    assert unknown.err == f"error: no run {UNKNOWN!r} in this store; 'wayang runs' lists runs\n"
    assert wayang("status", UNKNOWN).err == unknown.err  # the error 'status' gives
    assert wayang("trace", UNKNOWN, "--format", "otlp").err == unknown.err
    assert wayang("trace").code == 2  # RUN is required


# ------------------------------------------------------------------------------ through a server


@pytest.mark.timeout(120)
def test_through_a_server_the_same_and_merged_with_live_spans(
    db: Path, tmp_path: Path, wayang: Wayang, collector: Collector
) -> None:
    live = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with running_server(db, tmp_path, env=live) as server:
        run_id = start(wayang, tmp_path, "timed", WITH_TIMER)  # found by the store's socket
        served = wayang("trace", run_id)
        local = wayang("--no-server", "trace", run_id)
        assert served.code == local.code == 0, (served, local)
        assert served.out == local.out
        named = wayang("--server", server.url, "trace", run_id)  # over TCP, by its URL
        assert (named.code, named.out) == (0, local.out)
        api = httpx.get(f"{server.url}/api/v1/runs/{run_id}/trace", timeout=10).json()
        assert served.json() == api  # exactly what the API gives

        served_otlp = wayang("trace", run_id, "--format", "otlp")
        local_otlp = wayang("--no-server", "trace", run_id, "--format", "otlp")
        assert served_otlp.out == local_otlp.out
        sent = wayang("trace", run_id, "--format", "otlp", "--endpoint", collector.url)
        assert sent.code == 0 and sent.out.startswith("sent "), sent
        assert collector.json_documents() == [served_otlp.json()]

        unknown = (wayang("trace", UNKNOWN), wayang("--no-server", "trace", UNKNOWN))
        assert [(r.code, r.out, r.err) for r in unknown] == [(2, "", unknown[1].err)] * 2

        trace_bytes = trace_id_of(run_id).to_bytes(16)

        def live_spans() -> list[ProtoSpan]:
            spans = [s for s in collector.protobuf_spans() if s.trace_id == trace_bytes]
            return spans if any(s.name == "run timed" for s in spans) else []

        wait_for(live_spans, 20, "the server's live spans of the run")

    exported = {span["spanId"]: span for span in spans_of(served_otlp.json())}
    ours = [s for s in live_spans() if s.name.startswith(("run ", "step "))]
    names = sorted(s.name for s in ours)
    assert names == ["run timed", "step check", "step check", "step later", "step prepare"]
    for span in ours:  # every live span of the run and its steps, merged by id
        twin = exported[span.span_id.hex()]
        assert twin["name"] == span.name
        assert twin.get("parentSpanId", "") == span.parent_span_id.hex()
        assert int(twin["startTimeUnixNano"]) == span.start_time_unix_nano
        assert int(twin["endTimeUnixNano"]) == span.end_time_unix_nano
        mine = attribute_map(twin)
        for item in span.attributes:
            if item.key in mine:
                value = item.value
                kept = value.int_value if value.HasField("int_value") else value.string_value
                assert mine[item.key] == kept, item.key
    assert len(exported) == len(ours)  # a wait's start and end make one span, not two
    later = exported[f"{attempt_span_id_of(run_id, 'later', 1):016x}"]
    assert attribute_map(later)["wayang.kind"] == "wait"
    assert attribute_map(later)["wayang.status"] == "cancelled"


def test_help_names_the_formats_and_the_endpoint(wayang: Wayang) -> None:
    result = wayang("trace", "--help")
    assert result.code == 0
    for text in ("--format [json|otlp]", "--output FILE", "--endpoint URL", "/v1/traces"):
        assert text in result.out
