"""The typed client against a real ``wayang server``: every call, and the errors as
:class:`ApiError` with the problem document's type, detail and field errors."""

from __future__ import annotations

import asyncio
import gc
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_runs import ServerProcess, finish, free_port, start, waiting

from wayang import wire
from wayang.client import ApiError, Client, ServerUnavailableError
from wayang.server.daemon import socket_path

HELLO = """
    id = "hello"
    version = "1.0.0"
    [parameters.who]
    type = "string"
    default = "world"
    [steps.greet]
    run = "echo hello ${{ params.who }}"
    [steps.shout]
    needs = ["greet"]
    run = "echo HELLO"
"""

SLOW = """
    id = "slow"
    [steps.nap]
    run = "sleep 30"
"""

FLAKY = """
    id = "flaky"
    [steps.ok]
    run = "echo ok"
    [steps.boom]
    needs = ["ok"]
    run = "test -f flag || exit 3"
"""

REVIEW = """
    id = "review"
    [steps.review]
    kind = "approval"
    assignees = ["alice", "bob"]
    quorum = 1
"""

DEAL = """
    id = "deal"
    [steps.haggle]
    kind = "negotiation"
    parties = ["buyer", "seller"]
    terms.price = { type = "number", min = 10, max = 100 }
"""

TICKET = """
    id = "ticket"
    [steps.ticket]
    kind = "noop"
    external = true
"""

BROKEN = 'id = "broken"\n[steps.a]\nrun = 3\n'


# ------------------------------------------------------------------------------ system, workflows


def test_health_over_tcp_and_over_the_socket(client: Client, server: ServerProcess) -> None:
    assert client.health().status == "ok"
    with Client(socket=socket_path(str(server.db))) as local:
        health = local.health()
    assert health.store == str(server.db)
    assert local.where.startswith("the Unix socket ")


def test_workflows_are_registered_listed_and_read(client: Client) -> None:
    source = textwrap.dedent(HELLO)
    detail = client.register_workflow(source, "hello.toml")
    assert (detail.id, detail.latest, detail.steps) == ("hello", "1.0.0", ["greet", "shout"])
    assert detail.parameters["who"].default == "world"
    assert client.register_workflow(source, "hello.toml").versions == 1  # the same text: a no-op
    assert "hello" in [w.id for w in client.workflows()]
    assert client.workflow("hello", "1.0.0").source == source
    with pytest.raises(ApiError) as missing:
        client.workflow("hello", "9.9.9")
    assert (missing.value.status, missing.value.kind) == (404, "workflow-not-found")
    assert missing.value.exit_code == 2


def test_an_invalid_workflow_is_a_problem_with_its_diagnostics(client: Client) -> None:
    report = client.validate(BROKEN, "broken.toml")
    assert not report.valid
    assert report.diagnostics[0].line == 3
    assert client.validate(textwrap.dedent(HELLO)).workflow_id == "hello"
    with pytest.raises(ApiError) as refused:
        client.register_workflow(BROKEN, "broken.toml")
    problem = refused.value
    assert (problem.status, problem.kind, problem.title) == (
        422,
        "invalid-workflow",
        "Invalid workflow",
    )
    assert problem.type == "https://wayang.dev/problems/invalid-workflow"
    assert str(problem) == problem.detail
    assert problem.detail.startswith("broken.toml:3:")
    assert problem.errors[0].field.startswith("broken.toml:3:")
    assert problem.diagnostics[0].file == "broken.toml"
    assert problem.diagnostics[0].line == 3


def test_a_request_that_does_not_fit_is_a_422_naming_the_field(client: Client) -> None:
    with pytest.raises(ApiError) as refused:
        client.runs(limit=5000)
    assert refused.value.status == 422
    assert refused.value.kind == "invalid-request"
    assert [e.field for e in refused.value.errors] == ["query.limit"]
    assert "query.limit" in str(refused.value)
    with pytest.raises(ApiError) as bad_status:
        client.runs(status="sleeping")
    assert bad_status.value.errors[0].field == "query.status"
    with pytest.raises(ApiError) as local:  # checked here first, in the server's words
        client.emit("no spaces allowed", {})
    assert (local.value.status, local.value.errors[0].field) == (422, "topic")


def test_a_run_asks_for_at_least_one_step_at_once(server: ServerProcess) -> None:
    body = {"source": textwrap.dedent(HELLO), "parallel": 0}
    refused = httpx.post(f"{server.url}/api/v1/runs", json=body, timeout=30)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["body.parallel"]


# ------------------------------------------------------------------------------ runs


def test_a_run_is_started_streamed_and_read(client: Client, tmp_path: Path) -> None:
    run_id = start(client, HELLO, tmp_path, params={"who": "ann"})
    items = list(client.stream(run_id))
    names = [name for name, _ in items]
    assert names[-1] == "end" and items[-1][1] == {"run_id": run_id}
    events = [data["type"] for name, data in items if name == "run-event"]
    assert events[0] == "RunStarted" and events[-1] == "RunSucceeded"
    lines = [data["line"] for name, data in items if name == "log"]
    assert "hello ann" in lines

    detail = client.run(run_id)
    assert (detail.status, detail.order, detail.params) == (
        "succeeded",
        ["greet", "shout"],
        {"who": "ann"},
    )
    assert detail.started_by == "tester"
    assert detail.steps["greet"].outputs == {}
    page = client.events(run_id, after=0, limit=2)
    assert [e.seq for e in page.items] == [1, 2] and page.next == "2"
    started = page.items[0].data
    assert "source" not in started and started["params"] == {"who": "ann"}
    assert client.events(run_id, after=2).items[0].seq == 3
    assert [line.line for line in client.logs(run_id, step="greet").items] == ["hello ann"]
    trace = client.trace(run_id)
    assert {span.step for span in trace.spans} == {"greet", "shout"}
    assert run_id in [r.run_id for r in client.runs(status="succeeded", workflow="hello").items]


def test_streams_resume_from_their_cursors_and_run_in_asyncio(
    client: Client, tmp_path: Path
) -> None:
    run_id = start(client, HELLO, tmp_path)
    finish(client, run_id)
    later = [d["seq"] for name, d in client.stream(run_id, after=2) if name == "run-event"]
    assert later[0] == 3

    first_line = client.logs(run_id).items[0].seq or 0  # log cursors count across runs

    async def collect() -> list[str]:
        return [name async for name, _ in client.astream(run_id, logs_after=first_line)]

    names = asyncio.run(collect())
    assert names.count("log") == 1 and names[-1] == "end"


def test_runs_are_paged_with_a_cursor(client: Client, tmp_path: Path) -> None:
    for _ in range(3):
        finish(client, start(client, HELLO, tmp_path))
    first = client.runs(workflow="hello", limit=2)
    assert len(first.items) == 2 and first.next is not None
    second = client.runs(workflow="hello", limit=2, cursor=first.next)
    assert not {r.run_id for r in first.items} & {r.run_id for r in second.items}
    with pytest.raises(ApiError) as bad:
        client.runs(cursor="nonsense")
    assert (bad.value.status, bad.value.kind) == (400, "bad-request")


def test_a_registered_workflow_runs_by_id_and_bad_parameters_are_refused(
    client: Client,
) -> None:
    client.register_workflow(textwrap.dedent(HELLO), "hello.toml")
    accepted = client.start_run(wire.StartRun(workflow="hello", params={"who": "bo"}))
    assert accepted.status in ("running", "queued")
    assert finish(client, accepted.run_id).params == {"who": "bo"}
    with pytest.raises(ApiError) as refused:
        client.start_run(wire.StartRun(workflow="hello", params={"nobody": 1}))
    assert (refused.value.status, refused.value.kind) == (422, "invalid-parameters")
    assert refused.value.diagnostics
    with pytest.raises(ApiError) as neither:
        client.start_run(wire.StartRun())
    assert (neither.value.status, neither.value.exit_code) == (400, 2)


def test_an_unknown_run_is_a_404(client: Client) -> None:
    for call in (client.run, client.events, client.logs, client.trace, client.resume):
        with pytest.raises(ApiError) as missing:
            call("20990101-000000-deadbeef")
        assert (missing.value.status, missing.value.kind) == (404, "run-not-found")
        assert "20990101-000000-deadbeef" in str(missing.value)
    with pytest.raises(ApiError):
        list(client.stream("20990101-000000-deadbeef"))


def test_cancel_resume_and_retry(client: Client, tmp_path: Path) -> None:
    run_id = start(client, SLOW, tmp_path)
    waiting_for_start(client, run_id)
    cancelled = client.cancel(run_id, "enough")
    assert cancelled.status == "cancelled"
    assert client.run(run_id).reason == "enough"
    assert client.resume(run_id).status == "cancelled"  # an ended run is only reported

    failed = finish(client, start(client, FLAKY, tmp_path))
    assert failed.status == "failed"
    (tmp_path / "flag").touch()
    again = client.retry(failed.run_id)
    detail = finish(client, again.run_id)
    assert (detail.status, detail.retry_of) == ("succeeded", failed.run_id)
    with pytest.raises(ApiError) as bad_step:
        client.retry(failed.run_id, from_step="nope")
    assert bad_step.value.exit_code == 2 and "nope" in str(bad_step.value)


def waiting_for_start(client: Client, run_id: str) -> None:
    deadline = time.monotonic() + 10
    while client.run(run_id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


# ------------------------------------------------------------------------------ people


def test_approvals_are_listed_and_voted_on(client: Client, tmp_path: Path) -> None:
    run_id = start(client, REVIEW, tmp_path)
    waiting(client, run_id, "review")
    pending = [p for p in client.approvals() if p.run_id == run_id]
    assert [(p.step_id, p.kind, p.assignees) for p in pending] == [
        ("review", "approval", ["alice", "bob"])
    ]
    assert run_id in [p.run_id for p in client.acting_as("alice").approvals(mine=True)]
    assert run_id not in [p.run_id for p in client.acting_as("zed").approvals(mine=True)]
    with pytest.raises(ApiError) as refused:
        client.acting_as("zed").approve(run_id, "review")
    assert (refused.value.status, refused.value.kind) == (409, "signal-refused")
    answer = client.acting_as("alice").approve(run_id, "review", comment="fine")
    assert answer.status == "accepted"
    assert finish(client, run_id).status == "succeeded"

    rejected = start(client, REVIEW, tmp_path)
    waiting(client, rejected, "review")
    assert client.acting_as("bob").reject(rejected, "review", "no").status == "accepted"
    assert finish(client, rejected).status == "failed"


def test_a_negotiation_offers_and_accepts(client: Client, tmp_path: Path) -> None:
    run_id = start(client, DEAL, tmp_path)
    waiting(client, run_id, "haggle")
    buyer, seller = client.acting_as("buyer"), client.acting_as("seller")
    assert buyer.offer(run_id, "haggle", {"price": 20}, "first").status == "accepted"
    assert seller.accept(run_id, "haggle").status == "accepted"
    detail = finish(client, run_id)
    assert detail.steps["haggle"].outputs["price"] == 20

    declined = start(client, DEAL, tmp_path)
    waiting(client, declined, "haggle")
    assert buyer.decline(declined, "haggle", "too dear").status == "accepted"
    assert finish(client, declined).status == "failed"


def test_an_external_step_is_completed(client: Client, tmp_path: Path) -> None:
    run_id = start(client, TICKET, tmp_path)
    waiting(client, run_id, "ticket")
    answer = client.complete(run_id, "ticket", {"ticket": "T-1"})
    assert answer.status == "accepted"
    assert finish(client, run_id).steps["ticket"].outputs == {"ticket": "T-1"}


# ------------------------------------------------------------------------------ steps, letters


def test_events_and_the_steps_of_the_project(client: Client) -> None:
    emitted = client.emit("order.created", {"id": "x1", "item": "pen", "quantity": 1}, key="x1")
    assert emitted.topic == "order.created" and emitted.seq > 0 and emitted.trace_id
    listing = client.steps()
    assert "CreateOrder" in [s.name for s in listing.steps]
    assert listing.diagnostics == []
    assert client.deactivate("CreateOrder").active is False
    assert client.activate("CreateOrder").active is True
    [orders] = client.flows()
    assert orders.name == "orders"
    created = next(n for n in orders.nodes if n.name == "CreateOrder")
    assert (created.type, created.trigger, created.file) == (
        "api",
        "POST /orders",
        "steps/create_order.step.py",
    )
    assert {e.topic for e in orders.edges} >= {"order.created"}
    with pytest.raises(ApiError) as missing:
        client.activate("Nope")
    assert missing.value.exit_code == 2


def test_dead_letters_are_listed_and_replayed(client: Client, tmp_path: Path) -> None:
    failed = finish(client, start(client, FLAKY, tmp_path))
    letters = [d for d in client.dead_letters(limit=1000) if d.run_id == failed.run_id]
    assert [(d.kind, d.step) for d in letters] == [("step", "boom")]
    (tmp_path / "flag").touch()
    replayed = client.replay(letters[0].id)
    assert replayed.run_id is not None
    assert finish(client, replayed.run_id).status == "succeeded"
    with pytest.raises(ApiError) as twice:
        client.replay(letters[0].id)
    assert twice.value.exit_code == 2


# ------------------------------------------------------------------------------ errors


def test_no_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as nobody, pytest.raises(ServerUnavailableError) as gone:
        nobody.health()
    assert url in str(gone.value) and "wayang server" in str(gone.value)


# httpcore leaks the socket of a Unix-socket connection that fails (a ResourceWarning when it is
# collected; the CLI probes a socket itself before it connects): collected here, ignored.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_server_on_the_socket_is_a_clear_error() -> None:
    assert "/nonexistent/wayang.sock" in _unanswered(Path("/nonexistent/wayang.sock"))
    gc.collect()


def _unanswered(path: Path) -> str:
    with Client(socket=path) as nobody:
        try:
            nobody.workflows()
        except ServerUnavailableError as exc:
            return str(exc)
    pytest.fail("a socket nobody listens on answered")


def test_answers_that_are_not_problem_documents() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(502, text="bad gateway")
        body: dict[str, Any] = {"type": "x/internal", "title": "t", "status": 500, "detail": "d"}
        return httpx.Response(500, json=body)

    with Client("http://proxy", transport=httpx.MockTransport(answer)) as proxied:
        with pytest.raises(ApiError) as gateway:
            proxied.health()
        assert (gateway.value.status, gateway.value.exit_code) == (502, 1)
        assert "bad gateway" in str(gateway.value)
        with pytest.raises(ApiError) as internal:
            proxied.workflows()
        assert (internal.value.kind, internal.value.exit_code, str(internal.value)) == (
            "internal",
            1,
            "d",
        )


def test_a_client_needs_one_place_to_go() -> None:
    with pytest.raises(Exception, match="one of them"):
        Client()


def test_server_sent_events_are_parsed_line_by_line() -> None:
    body = (
        ": connected\n\n"
        'id: e1\nevent: run-event\ndata: {"seq": 1,\ndata:  "type": "RunStarted"}\n\n'
        "event: nothing\n\n"
        ": keep-alive\n\n"
        'data: {"plain": true}\n\n'
        'event: end\ndata: {"run_id": "r"}\n\n'
    )

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["after"] == "4"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    with Client("http://x", transport=httpx.MockTransport(answer)) as streaming:
        assert list(streaming.stream("r", after=4)) == [
            ("run-event", {"seq": 1, "type": "RunStarted"}),
            ("message", {"plain": True}),
            ("end", {"run_id": "r"}),
        ]
