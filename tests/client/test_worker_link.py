"""How a worker's HTTP link meets failures (a mock transport stands in for the server): what may
pass raises for the worker to retry, with a claim repeated under one request id; a refusal that
will not pass stops the worker, and from then on results are dropped without a request."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from wayang.client import ApiError, Client, HttpWorkerLink, ServerUnavailableError
from wayang.store.port import ClaimRequest, FencedResult, LogLine, WorkerBeat

OFFERS = frozenset({"cap:shell"})


def problem(status: int, kind: str) -> httpx.Response:
    body = {"type": f"https://wayang.dev/problems/{kind}", "title": kind, "status": status,
            "detail": f"{kind} happened"}  # fmt: skip
    return httpx.Response(status, json=body)


class Server:
    """Answers each request with the next of ``answers``; keeps what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.path, json.loads(request.content or b"{}")))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def link_to(server: Server) -> tuple[HttpWorkerLink, list[ApiError]]:
    client = Client("http://wayang.test", transport=httpx.MockTransport(server), timeout=5)
    heard: list[ApiError] = []
    return HttpWorkerLink(client, on_refused=heard.append), heard


def test_a_claim_that_may_pass_is_repeated_with_the_same_request_id_then_raised() -> None:
    server = Server(problem(503, "server-stopping"), httpx.ConnectError("refused"),
                    problem(503, "server-stopping"))  # fmt: skip
    link, heard = link_to(server)
    with pytest.raises(ApiError) as raised:
        link.claim("w1", time.time(), 15.0, 2, "gpu", offers=OFFERS)
    assert raised.value.status == 503
    ids = {body["request_id"] for _, body in server.sent}
    assert len(server.sent) == 3 and len(ids) == 1 and ids != {""}
    assert server.sent[0][1]["queue"] == "gpu" and server.sent[0][1]["offers"] == ["cap:shell"]
    assert (link.refused, heard) == (None, [])


def test_no_answer_is_said_as_the_server_not_answering() -> None:
    link, _ = link_to(Server(httpx.ConnectError("[Errno 111] Connection refused")))
    with pytest.raises(ServerUnavailableError) as raised:
        link.heartbeat_worker(WorkerBeat("w1", "running", 0, 0, 0), time.time(), 15.0)
    assert str(raised.value) == (
        "the Wayang server at http://wayang.test did not answer ([Errno 111] Connection refused)"
    )
    assert link.refused is None


def test_a_refusal_for_good_stops_the_worker_and_drops_its_results() -> None:
    server = Server(problem(401, "unauthorized"))
    link, heard = link_to(server)
    with pytest.raises(ApiError):
        link.heartbeat_worker(WorkerBeat("w1", "running", 1, 0, 0), time.time(), 15.0)
    assert [exc.status for exc in heard] == [401] and link.refused is heard[0]
    assert link.complete("t/1", 1, {"status": "succeeded"}, time.time()) is False
    link.append_logs([LogLine("r", "s", 1, "stdout", "x", time.time())])
    with pytest.raises(ApiError):
        link.claim("w1", time.time(), 15.0, offers=OFFERS)
    assert len(server.sent) == 1 and len(heard) == 1  # nothing more was sent


def test_a_result_the_server_cannot_take_is_dropped_and_the_worker_goes_on() -> None:
    server = Server(problem(422, "invalid-request"), httpx.Response(200, json={"held": ["t/2"]}))
    link, heard = link_to(server)
    assert link.complete("t/1", 1, {"status": "succeeded"}, time.time()) is False
    assert link.heartbeat_worker(WorkerBeat("w1", "running", 1, 0, 0), time.time(), 5) == ["t/2"]
    assert (link.refused, heard) == (None, [])


def test_a_batch_of_results_goes_with_its_output_in_one_request_then_the_claim() -> None:
    claimed = {
        "task_id": "t/3", "run_id": "r", "step_id": "c", "attempt": 1, "idempotency_key": "k",
        "payload": {}, "fencing_token": 1, "lease_expires_at": "2026-11-21T00:00:00+00:00",
        "tenant": "default",
    }  # fmt: skip
    answers = [{"task_id": "t/1", "counted": True}, {"task_id": "t/2", "counted": False}]
    server = Server(
        problem(503, "server-stopping"),  # lost: repeated under the same request id
        httpx.Response(200, json={"completed": answers}),
        httpx.Response(200, json={"tasks": [claimed]}),
    )
    link, _ = link_to(server)
    results = [
        FencedResult("t/1", 1, {"status": "succeeded"}),
        FencedResult("t/2", 4, {"status": "failed", "error": "boom"}),
    ]
    lines = [LogLine("r", "a", 1, "stdout", "hello", time.time())]
    ask = ClaimRequest("w1", 15.0, limit=2, queue="gpu", offers=OFFERS)
    reported = link.complete_many(results, time.time(), lines, then_claim=ask)
    assert reported.counted == [True, False]
    assert [(t.task_id, t.owner, t.fencing_token) for t in reported.claimed] == [("t/3", "w1", 1)]
    paths = [path for path, _ in server.sent]
    assert paths == ["/api/v1/tasks/complete-batch"] * 2 + ["/api/v1/tasks/claim"]
    first, again = server.sent[0][1], server.sent[1][1]
    assert first == again and first["request_id"]
    assert [(r["task_id"], r["fencing_token"]) for r in first["results"]] == [
        ("t/1", 1),
        ("t/2", 4),
    ]
    assert [line["line"] for line in first["output"]] == ["hello"]
    assert (server.sent[2][1]["queue"], server.sent[2][1]["limit"]) == ("gpu", 2)


def test_a_batch_the_server_cannot_take_is_dropped_and_counts_nothing() -> None:
    server = Server(problem(422, "invalid-request"))
    link, heard = link_to(server)
    results = [FencedResult("t/1", 1, {"status": "succeeded"})]
    assert link.complete_many(results, time.time()).counted == [False]
    assert (link.refused, heard) == (None, [])
