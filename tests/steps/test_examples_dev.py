"""The event-step examples, run for real: ``wayang dev`` as a child process, called over HTTP.

Each test copies its example to a temporary folder (so ``.wayang/state`` and report files stay out
of the repository), starts ``wayang dev --project COPY --port FREE`` on a temporary store, calls
it with httpx, polls until the outcome shows (state files, the store's deliveries, the HTTP API),
then stops the server with SIGTERM or SIGINT and checks it exited 0 without a traceback.

The cron example's schedule fires once a minute, too slow to wait for here: its dev test checks
that the schedule is registered and drives the same topic through its API step, and
``test_cron_schedule_fires_and_writes_a_report`` runs the real :class:`CronScheduler` over the
example's cron step in this process with a clock that runs 120 times faster.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_runs import child_env, wait_for
from wayang.cli.main import main
from wayang.cli.steps import DEV_SERVERS
from wayang.steps.project import load_project
from wayang.steps.runtime import RuntimeSettings
from wayang.steps.schedule import CRON_FIRES, CronScheduler
from wayang.steps.service import StepsProject, StepsServer
from wayang.store.port import Delivery
from wayang.store.sqlite import SQLiteStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_example(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".wayang", "reports"))
    return target


class DevServer:
    """One ``wayang dev`` child process on a project and a store, with an httpx client."""

    def __init__(self, project: Path, db: Path, logs: Path, *, reload: bool = False) -> None:
        self.project, self.db = project, db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path, self.err_path = logs / "dev.out", logs / "dev.err"
        argv = ["dev", "--project", str(project), "--port", str(self.port)]
        argv += [] if reload else ["--no-reload"]
        env = child_env(db)
        if reload:  # the step files' bytecode is cached on disk, as on a developer's machine
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wayang.cli.main", *argv],
                stdout=out,
                stderr=err,
                env=env,
                cwd=project,
            )
        self.http = httpx.Client(base_url=self.url, timeout=5.0)

    def wait_until_serving(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"wayang dev exited {self.process.returncode}: {self.err()}")
            try:
                self.http.get("/__wayang_test_ping")
            except httpx.TransportError:
                return False
            return True

        wait_for(answers, START_TIMEOUT_S, "wayang dev to answer")

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig``; the exit status (the process is killed if it does not stop in 10 s)."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"wayang dev did not stop on {sig.name}: {self.err()}")

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def assert_stopped_cleanly(self, sig: signal.Signals) -> None:
        code = self.stop(sig)
        err = self.err()
        assert code == 0, f"exit {code} on {sig.name}: {err}"
        assert "Traceback" not in err, err
        with closing(SQLiteStore(self.db)) as store:
            assert store.kv_get(DEV_SERVERS, "dev") is None  # shut down, not killed


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "wayang.db"


@pytest.fixture
def dev(db: Path, tmp_path: Path) -> Iterator[Any]:
    """``dev(project, reload=False)`` starts a server and waits until it answers; every server
    started is stopped after the test, whatever happened."""
    servers: list[DevServer] = []

    def start(project: Path, *, reload: bool = False) -> DevServer:
        server = DevServer(project, db, tmp_path, reload=reload)
        servers.append(server)
        server.wait_until_serving()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


def deliveries(db: Path, trace_id: str) -> list[Delivery]:
    with closing(SQLiteStore(db)) as store:
        return store.list_deliveries(trace_id=trace_id)


def settled(db: Path, trace_id: str, last_step: str) -> list[Delivery] | None:
    """The trace's deliveries once ``last_step`` got one and none is pending or running."""
    found = deliveries(db, trace_id)
    done = any(d.step == last_step and d.status == "succeeded" for d in found)
    busy = any(d.status in ("pending", "running") for d in found)
    return found if done and not busy else None


def state_values(project: Path, group: str) -> dict[str, Any]:
    """The values of state group ``group`` as the file adapter keeps them."""
    for path in (project / ".wayang" / "state").glob("*.json"):
        data = json.loads(path.read_text())
        if data["group"] == group:
            return dict(data["values"])
    return {}


# ------------------------------------------------------------------------------ steps-basic


@pytest.mark.timeout(60)
def test_basic_api_to_event_to_event_with_state(dev: Any, db: Path, tmp_path: Path) -> None:
    project = copy_example("steps-basic", tmp_path)
    server = dev(project)
    assert "4 steps (2 api, 2 event) in 1 flow" in server.out()

    bad = server.http.post("/orders", json={"item": "widget", "quantity": 0, "customer": "ann"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "quantity"

    created = server.http.post("/orders", json={"item": "widget", "quantity": 3, "customer": "ann"})
    assert created.status_code == 201, created.text
    order_id, trace_id = created.json()["id"], created.json()["traceId"]
    assert created.headers["x-trace-id"] == trace_id

    def confirmed() -> Any:
        answer = server.http.get(f"/orders/{order_id}")
        return answer.json() if answer.status_code == 200 and "confirmed" in answer.text else None

    order = wait_for(confirmed, 10, "the order to be confirmed")
    assert order == {
        "id": order_id,
        "item": "widget",
        "quantity": 3,
        "customer": "ann",
        "total": 7.5,
        "status": "confirmed",
    }
    assert state_values(project, "orders") == {order_id: order}  # FileState in .wayang/state/
    assert server.http.get("/orders/nope").status_code == 404

    found = wait_for(lambda: settled(db, trace_id, "ConfirmOrder"), 10, "the trace to settle")
    assert [(d.step, d.topic, d.status) for d in found] == [
        ("StoreOrder", "order.created", "succeeded"),
        ("ConfirmOrder", "order.validated", "succeeded"),
    ]
    with closing(SQLiteStore(db)) as store:
        lines = [line.line for line in store.read_logs(trace_id)]
    assert f"order {order_id} confirmed: 3 x widget for ann, total 7.5" in lines

    server.assert_stopped_cleanly(signal.SIGTERM)
    out = server.out()
    assert f"{trace_id[-8:]} StoreOrder <- order.created [ok]" in out
    assert f"{trace_id[-8:]} ConfirmOrder <- order.validated [ok]" in out


def test_a_workflow_emits_to_event_steps_and_waits_for_their_answer(
    dev: Any, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_example("steps-basic", tmp_path)
    dev(project)
    workflow = str(project / "restock.toml")
    code = main(["--store", str(db), "run", workflow, "-p", "item=gadget", "-p", "quantity=4"])
    out = capsys.readouterr().out
    assert code == 0, out
    with closing(SQLiteStore(db)) as store:
        [run] = store.list_runs()
        order_id = f"restock-{run.run_id}"
        assert state_values(project, "orders")[order_id]["total"] == 48.0
        found = settled(db, run.run_id, "ConfirmOrder")
        assert found and [(d.step, d.status) for d in found] == [
            ("StoreOrder", "succeeded"),
            ("ConfirmOrder", "succeeded"),
        ]
        [first, _] = store.trace_messages(run.run_id)
        assert (first.topic, first.key, first.source) == (
            "order.created",
            order_id,
            f"run:{run.run_id}/place",
        )
        assert first.data == {
            "id": order_id,
            "item": "gadget",
            "quantity": 4,
            "customer": "restock",
        }

    assert main(["--store", str(db), "logs", "--trace", run.run_id]) == 0
    tree = capsys.readouterr().out
    assert f"run:{run.run_id}/place -> order.created #1" in tree
    assert "ConfirmOrder [succeeded, 1 attempt]" in tree
    assert main(["--store", str(db), "logs", run.run_id]) == 0
    assert f"place event | published on 'order.created' (key {order_id})" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_dev_reloads_a_changed_step_file(dev: Any, tmp_path: Path) -> None:
    project = copy_example("steps-basic", tmp_path)
    server = dev(project, reload=True)
    assert server.http.get("/orders/x1").json() == {"error": "no order x1"}
    step_file = project / "steps" / "get_order.step.py"
    text = step_file.read_text()
    assert '"error": f"no order ' in text

    def edit_until_served(new_text: str, error: str, mtime_ns: int | None = None) -> None:
        next_write = 0.0

        def served() -> bool:
            nonlocal next_write
            # Written again every 3 s: the watcher may not have been watching the first time.
            if time.monotonic() > next_write:
                step_file.write_text(new_text)
                if mtime_ns is not None:
                    os.utime(step_file, ns=(mtime_ns, mtime_ns))
                next_write = time.monotonic() + 3
            return bool(server.http.get("/orders/x1").json() == {"error": error})

        wait_for(served, 15, f"the handler answering {error!r}")

    edited = text.replace('"error": f"no order ', '"error": f"unknown order ')
    edit_until_served(edited, "unknown order x1")
    # An edit that keeps the size, within the same second as the last: the bytecode cached for
    # the last version must not be taken for this one.
    same_size = edited.replace("unknown order", "UNKNOWN order")
    edit_until_served(same_size, "UNKNOWN order x1", step_file.stat().st_mtime_ns)
    server.assert_stopped_cleanly(signal.SIGINT)
    assert "reloaded get_order.step.py: 4 steps" in server.out()


@pytest.mark.timeout(60)
def test_deactivating_steps_under_dev(
    dev: Any, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``wayang steps deactivate`` from another process takes effect in a running dev server."""
    project = copy_example("steps-basic", tmp_path)
    server = dev(project)

    def steps_command(verb: str, name: str) -> None:
        assert main(["--store", str(db), "steps", verb, name, "--project", str(project)]) == 0
        capsys.readouterr()

    steps_command("deactivate", "GetOrder")
    steps_command("deactivate", "StoreOrder")
    off = wait_for(
        lambda: (answer := server.http.get("/orders/x")).status_code == 503 and answer,
        10,
        "GetOrder to be off",
    )
    assert off.json()["type"].endswith("/step-inactive")
    held = server.http.post("/orders", json={"item": "widget", "quantity": 1, "customer": "cy"})
    assert held.status_code == 201  # CreateOrder is still on; nothing is delivered to StoreOrder
    held_trace = held.json()["traceId"]

    steps_command("activate", "GetOrder")
    steps_command("activate", "StoreOrder")
    wait_for(lambda: server.http.get("/orders/x").status_code == 404, 10, "GetOrder to be on")
    again = server.http.post("/orders", json={"item": "widget", "quantity": 1, "customer": "di"})
    trace_id = again.json()["traceId"]
    wait_for(lambda: settled(db, trace_id, "ConfirmOrder"), 10, "the order after activation")
    assert deliveries(db, held_trace) == []  # published while StoreOrder was off: never delivered
    assert server.http.get(f"/orders/{held.json()['id']}").status_code == 404
    server.assert_stopped_cleanly(signal.SIGTERM)


@pytest.mark.timeout(60)
def test_a_broken_step_file_is_reported_and_the_rest_still_serves(dev: Any, tmp_path: Path) -> None:
    project = copy_example("steps-basic", tmp_path)
    (project / "steps" / "broken_step.py").write_text(
        'config = {"type": "event", "name": "Broken", "subscribes": ["order.created"]}\n'
        "\n"
        "raise RuntimeError('half-written step')\n"
    )
    server = dev(project)
    answer = server.http.post("/orders", json={"item": "gadget", "quantity": 1, "customer": "bo"})
    assert answer.status_code == 201
    server.assert_stopped_cleanly(signal.SIGTERM)
    err = server.err()
    assert "steps/broken_step.py:3:1: error: cannot import this step file: RuntimeError" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ steps-cron


@pytest.mark.timeout(60)
def test_cron_example_schedules_and_writes_reports(dev: Any, db: Path, tmp_path: Path) -> None:
    project = copy_example("steps-cron", tmp_path)
    server = dev(project)
    assert "4 steps (2 api, 1 cron, 1 event) in 1 flow" in server.out()
    assert server.http.get("/reports/latest").status_code == 404

    asked = server.http.post("/reports")
    assert asked.status_code == 202
    trace_id = asked.json()["traceId"]

    def written() -> Any:
        answer = server.http.get("/reports/latest")
        report = answer.json() if answer.status_code == 200 else None
        return report if report and report["traceId"] == trace_id else None

    report = wait_for(written, 10, "the report")
    assert report["requestedBy"] == "api"
    assert report["number"] == 1
    on_disk = json.loads((project / "reports" / f"{trace_id}.json").read_text())
    assert on_disk == report
    server.assert_stopped_cleanly(signal.SIGINT)


@pytest.mark.timeout(60)
def test_cron_schedule_fires_and_writes_a_report(db: Path, tmp_path: Path) -> None:
    """The example's cron step, on the real scheduler, with a clock 120 times faster."""
    project = copy_example("steps-cron", tmp_path)
    start = time.time()

    def fast_clock() -> float:
        return start + (time.time() - start) * 120

    async def go(steps: StepsProject) -> list[Any]:
        registry = steps.load()
        assert [s.name for s in registry.crons] == ["ScheduleReport"]
        assert registry.steps["ScheduleReport"].cron == "* * * * *"
        settings = RuntimeSettings(poll_every_s=0.02, renew_every_s=0.2, lease_s=2.0)
        async with StepsServer(steps, owner="test-cron", settings=settings) as server:
            crons = lambda: registry.crons  # noqa: E731
            cron = CronScheduler(server.runtime, steps.store, crons, env="dev", clock=fast_clock)
            task = asyncio.create_task(cron.run())
            try:
                for _ in range(500):
                    report = await server.runtime.state.get("reports", "latest")
                    if report is not None:
                        return [report, steps.store.kv_get(CRON_FIRES, "dev/ScheduleReport")]
                    await asyncio.sleep(0.02)
                pytest.fail("the cron step did not fire within 10 s")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    with closing(SQLiteStore(db)) as store:
        steps = StepsProject(load_project(project), store)
        try:
            report, fired_at = asyncio.run(go(steps))
        finally:
            steps.close()
        assert report["requestedBy"] == "cron"
        assert fired_at % 60 == 0  # a whole minute: what '* * * * *' names
        messages = store.trace_messages(report["traceId"])
    assert [(m.topic, m.source) for m in messages] == [("report.due", "cron:ScheduleReport")]
    assert (project / "reports" / f"{report['traceId']}.json").is_file()


# ------------------------------------------------------------------------------ steps-fanout


def completions(db: Path, trace_id: str) -> list[Any]:
    with closing(SQLiteStore(db)) as store:
        return [m for m in store.trace_messages(trace_id) if m.topic == "signup.completed"]


def check_fanout_trace(db: Path, trace_id: str) -> None:
    found = wait_for(lambda: settled(db, trace_id, "AnnounceSignup"), 10, "the signup to finish")
    by_step: dict[str, list[str]] = {}
    for delivery in found:
        by_step.setdefault(delivery.step, []).append(delivery.status)
    assert by_step == {
        "SendWelcome": ["succeeded"],
        "CreateAccount": ["succeeded"],
        "ScoreLead": ["succeeded"],
        "CompleteSignup": ["succeeded"] * 3,
        "AnnounceSignup": ["succeeded"],
    }
    (completed,) = completions(db, trace_id)  # the join emitted exactly once
    assert set(completed.data) == {"welcome", "account", "lead"}


@pytest.mark.timeout(60)
def test_fanout_joins_through_state_once_per_signup(dev: Any, db: Path, tmp_path: Path) -> None:
    project = copy_example("steps-fanout", tmp_path)
    server = dev(project)

    bad = server.http.post("/signups", json={"email": "not-an-email", "name": "Ann"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "email"

    def sign_up(number: int) -> str:
        body = {"email": f"user{number}@example.com", "name": f"User {number}", "company": "Acme"}
        answer = server.http.post("/signups", json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["traceId"])

    with ThreadPoolExecutor(5) as pool:
        traces = list(pool.map(sign_up, range(5)))
    for trace_id in traces:
        check_fanout_trace(db, trace_id)
        values = state_values(project, trace_id)
        assert set(values) == {"welcome", "account", "lead", "completed"}
        assert values["lead"] == {"score": 80}
    server.assert_stopped_cleanly(signal.SIGTERM)
    assert server.out().count("AnnounceSignup <- signup.completed [ok]") == 5


@pytest.mark.timeout(60)
def test_fanout_by_wayang_emit_in_process(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No dev server: ``wayang emit`` publishes and runs every delivery it causes itself."""
    project = copy_example("steps-fanout", tmp_path)
    data = json.dumps({"email": "bo@example.com", "name": "Bo"})
    argv = ["--store", str(db), "emit", "signup.created", "--data", data, "--project", str(project)]
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    trace_id = json.loads(out)["trace_id"]
    check_fanout_trace(db, trace_id)
    assert state_values(project, trace_id)["lead"] == {"score": 20}


# ------------------------------------------------------------------------------ the template


@pytest.mark.timeout(60)
def test_the_steps_template_runs_under_dev(
    dev: Any, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "hello"
    assert main(["--store", str(db), "init", "--template", "steps", str(project)]) == 0
    capsys.readouterr()
    server = dev(project)
    assert server.http.post("/hello", json={}).status_code == 400
    answer = server.http.post("/hello", json={"name": "Ann"})
    assert answer.status_code == 202
    trace_id = answer.json()["traceId"]
    values = wait_for(lambda: state_values(project, trace_id), 10, "the greeting")
    assert values == {"greeting": "Hello, Ann!"}
    server.assert_stopped_cleanly(signal.SIGTERM)
    assert "Greet info | Hello, Ann!" in server.out()


def test_examples_do_not_leave_state_in_the_repository() -> None:
    for name in ("steps-basic", "steps-cron", "steps-fanout"):
        assert (EXAMPLES / name / "README.md").is_file()
        assert ".wayang/" in (EXAMPLES / name / ".gitignore").read_text()
