"""The Workbench in a real browser: Debian's Chromium driven by Playwright against a real
``wayang server`` child process on a temporary store.

No browser is downloaded: the tests use ``/usr/bin/chromium`` and are skipped without it, except
under ``CI=true``, where a missing browser is a failure (the CI image must have it).

Each test opens the page it checks in a fresh browser context (so ``localStorage``, which holds
the "you are" name and the API token, starts empty) and registers workflows of its own through
the HTTP API, so the tests share one server without depending on each other.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_runs import child_env, wait_for

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START_TIMEOUT_S = 20.0
UI_TIMEOUT_MS = 15_000

FANOUT = """
id = "wb-fanout"
name = "Fan out and in"
description = "Four steps: one, two at once, one."

[parameters.who]
type = "string"
required = true

[parameters.times]
type = "integer"
default = 1

[steps.first]
run = "echo hello ${{ params.who }}"

[steps.left]
needs = ["first"]
run = "sleep 0.2; echo left"

[steps.right]
needs = ["first"]
run = "sleep 0.3; echo right"

[steps.last]
needs = ["left", "right"]
run = "echo done ${{ params.times }}"
"""

SIGN_OFF = """
id = "wb-sign-off"
name = "Sign-off"

[steps.prepare]
run = "echo prepared"

[steps.sign]
kind = "approval"
needs = ["prepare"]
assignees = ["alice"]
prompt = "Ship the release?"

[steps.ship]
needs = ["sign"]
run = "echo shipped"
"""

API_STEPS = {
    "greet.step.py": """
config = {
    "type": "api",
    "name": "Greet",
    "method": "POST",
    "path": "/greet/:name",
    "bodySchema": {
        "type": "object",
        "properties": {"mood": {"type": "string"}},
        "required": ["mood"],
    },
    "emits": [],
}


async def handler(req, ctx):
    greeting = {"greeting": f"hello {req.pathParams['name']}", "mood": req.body["mood"]}
    return {"status": 201, "body": {**greeting, "query": req.queryParams}}
""",
    "ping.step.py": """
config = {"type": "api", "name": "Ping", "method": "GET", "path": "/ping", "emits": []}


async def handler(req, ctx):
    return {"status": 200, "body": {"pong": True, "body": req.rawBody}}
""",
    "retired.step.py": """
config = {"type": "api", "name": "Retired", "method": "GET", "path": "/retired", "emits": []}


async def handler(req, ctx):
    return {"status": 200, "body": {}}
""",
    "listen.step.py": """
config = {"type": "event", "name": "Listen", "subscribes": ["greeted"], "emits": []}


async def handler(input, ctx):
    pass
""",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkbenchServer:
    """One ``wayang server`` child process on a temporary store, with an httpx client."""

    def __init__(self, root: Path, *, project: Path | None = None, token: str = "") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err_path = root / "server.err"
        argv = ["server", "--port", str(self.port)]
        argv += ["--project", str(project)] if project else []
        env = child_env(root / "wayang.db")
        env.pop("WAYANG_API_TOKEN", None)
        if token:
            env["WAYANG_API_TOKEN"] = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with (root / "server.out").open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wayang.cli.main", *argv],
                stdout=out,
                stderr=err,
                env=env,
                cwd=root,
            )
        self.http = httpx.Client(base_url=f"{self.url}/api/v1", timeout=10.0, headers=headers)

    def wait_until_ready(self) -> WorkbenchServer:
        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"wayang server exited {self.process.returncode}: {self.err()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, START_TIMEOUT_S, "wayang server to be ready")
        return self

    def err(self) -> str:
        return self.err_path.read_text()

    def register(self, source: str, filename: str = "workflow.toml") -> dict[str, Any]:
        answer = self.http.post("/workflows", json={"source": source, "filename": filename})
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json())

    def start(self, workflow: str, params: dict[str, Any] | None = None) -> str:
        answer = self.http.post("/runs", json={"workflow": workflow, "params": params or {}})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def status(self, run_id: str) -> str:
        return str(self.http.get(f"/runs/{run_id}").json()["status"])

    def stop(self) -> None:
        """SIGTERM, then expect a clean exit 0 (killed if it does not stop in 15 s)."""
        self.http.close()
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"wayang server did not stop on SIGTERM: {self.err()}")
        assert code == 0, f"wayang server exited {code} on SIGTERM: {self.err()}"


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{CHROMIUM} is missing: the Workbench tests need Debian's Chromium; "
            "run `apt-get install chromium chromium-driver`"
        )
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium_or_skip()
    with sync_api.sync_playwright() as playwright:
        found = launch(playwright)
        yield found
        found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkbenchServer]:
    started = WorkbenchServer(tmp_path_factory.mktemp("workbench"))
    try:
        yield started.wait_until_ready()
    finally:
        started.stop()


class Page:
    """A fresh browser context's page on a server, failing the test on uncaught JS errors."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 900}
        )
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, route: str) -> Any:
        """Go to ``/#route`` and wait until the page has rendered."""
        self.page.goto(f"/#{route}")
        self.page.locator("main > section[data-ready=true]").wait_for()
        return self.page

    def by(self, testid: str) -> Any:
        return self.page.get_by_test_id(testid)

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"uncaught errors in the page: {self.errors}"


@pytest.fixture
def ui(browser: Any, server: WorkbenchServer) -> Iterator[Page]:
    page = Page(browser, server.url)
    yield page
    page.close()


# ------------------------------------------------------------------------------ tests


@pytest.mark.timeout(90)
def test_a_registered_workflow_draws_its_graph(ui: Page, server: WorkbenchServer) -> None:
    source = (EXAMPLES / "pipeline" / "workflow.toml").read_text()
    detail = server.register(source, "examples/pipeline/workflow.toml")
    page = ui.open("/workflows")
    page.locator("[data-testid=workflow-row][data-workflow=pipeline] a").click()
    expect(page.get_by_role("heading", name=detail["name"])).to_be_visible()
    page.wait_for_function("window.__wayang.cy && window.__wayang.cy.nodes().length > 0")

    counts = page.evaluate("[window.__wayang.cy.nodes().length, window.__wayang.cy.edges().length]")
    assert counts == [len(detail["graph"]["nodes"]), len(detail["graph"]["edges"])] == [5, 6]
    canvas = ui.by("graph").locator("canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box["width"] > 300 and box["height"] > 200
    # laid out by dagre: build comes before package from left to right
    xs = page.evaluate(
        "['build', 'package'].map(id => window.__wayang.cy.getElementById(id).position('x'))"
    )
    assert xs[0] < xs[1]
    expect(ui.by("param-name").locator("input")).to_have_value("wayang-demo")


@pytest.mark.timeout(90)
def test_a_run_started_from_the_form_completes_with_a_timeline(
    ui: Page, server: WorkbenchServer
) -> None:
    server.register(FANOUT, "wb-fanout.toml")
    page = ui.open("/workflows/wb-fanout")
    ui.by("param-who").locator("input").fill("ada")
    ui.by("param-times").locator("input").fill("3")
    ui.by("start").click()

    page.wait_for_url(re.compile(r"#/runs/[^/]+$"))
    run_id = page.url.rsplit("/", 1)[-1]
    expect(ui.by("run-status")).to_have_text("succeeded", timeout=30_000)
    bars = ui.by("timeline").locator("[data-testid=span]")
    expect(bars).to_have_count(4)
    assert sorted(bars.evaluate_all("els => els.map(e => e.dataset.step)")) == [
        "first",
        "last",
        "left",
        "right",
    ]
    assert set(bars.evaluate_all("els => els.map(e => e.dataset.status)")) == {"succeeded"}
    expect(ui.by("logs")).to_contain_text("hello ada")
    expect(ui.by("logs")).to_contain_text("done 3")
    statuses = page.evaluate("window.__wayang.cy.nodes().map(n => n.data('status'))")
    assert statuses == ["succeeded"] * 4
    run = server.http.get(f"/runs/{run_id}").json()
    assert run["params"] == {"who": "ada", "times": 3}


@pytest.mark.timeout(90)
def test_an_approval_granted_in_the_inbox_finishes_the_run(
    ui: Page, server: WorkbenchServer
) -> None:
    server.register(SIGN_OFF, "wb-sign-off.toml")
    run_id = server.start("wb-sign-off")
    page = ui.open("/approvals?mine=true")
    ui.by("user").fill("alice")
    ui.by("user").press("Enter")
    card = page.locator(f"[data-testid=approval][data-run='{run_id}']")
    expect(card).to_be_visible(timeout=20_000)
    expect(card.get_by_test_id("prompt")).to_have_text("Ship the release?")
    expect(card.get_by_test_id("assignees")).to_contain_text("alice")

    card.get_by_test_id("comment").fill("looks good")
    card.get_by_test_id("approve").click()
    expect(ui.by("notice")).to_contain_text("sign")
    expect(card).to_be_hidden()

    page.goto(f"/#/runs/{run_id}")
    expect(ui.by("run-status")).to_have_text("succeeded", timeout=30_000)
    events = server.http.get(f"/runs/{run_id}/events").json()["items"]
    granted = [e for e in events if e["data"].get("step_id") == "sign" and "actor" in e["data"]]
    assert granted and granted[-1]["data"]["actor"] == "alice"


@pytest.mark.timeout(90)
def test_the_runs_list_shows_new_runs_without_reloading(ui: Page, server: WorkbenchServer) -> None:
    server.register(FANOUT, "wb-fanout.toml")
    page = ui.open("/runs")
    expect(ui.by("live")).to_be_visible()
    page.evaluate("window.__sameDocument = true")

    run_id = server.start("wb-fanout", {"who": "list"})
    row = page.locator(f"[data-testid=run-row][data-run='{run_id}']")
    expect(row).to_be_visible()
    expect(row.get_by_test_id("run-status")).to_have_text("succeeded", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True


@pytest.mark.timeout(90)
def test_a_refused_request_shows_the_problem_detail(ui: Page, server: WorkbenchServer) -> None:
    server.register(FANOUT, "wb-fanout.toml")
    page = ui.open("/workflows/wb-fanout")
    expect(ui.by("banner")).to_be_hidden()
    ui.by("start").click()  # "who" is required and left empty

    expect(ui.by("banner")).to_be_visible()
    expect(ui.by("banner-title")).to_have_text("Invalid parameters")
    expect(ui.by("banner-detail")).to_contain_text("missing required parameter 'who'")
    assert page.url.endswith("#/workflows/wb-fanout")

    page.goto("/#/runs/no-such-run")
    expect(ui.by("banner-detail")).to_contain_text("no-such-run")
    expect(ui.by("page-runs")).to_contain_text("could not be shown")


@pytest.mark.timeout(90)
def test_the_steps_page_without_a_project_says_how_to_serve_one(ui: Page) -> None:
    ui.open("/steps")
    expect(ui.by("no-project")).to_contain_text("wayang server --project DIR")
    expect(ui.by("banner")).to_be_hidden()


@pytest.mark.timeout(90)
def test_a_server_with_a_token_asks_for_it_once(browser: Any, tmp_path: Path) -> None:
    guarded = WorkbenchServer(tmp_path / "guarded", token="s3cret").wait_until_ready()
    ui = Page(browser, guarded.url)
    try:
        guarded.register(SIGN_OFF, "wb-sign-off.toml")
        ui.page.goto("/#/workflows")
        dialog = ui.by("token-dialog")
        expect(dialog).to_be_visible()
        expect(ui.by("token-reason")).to_contain_text("needs the API token")
        ui.by("token-input").fill("s3cret")
        ui.by("token-save").click()
        expect(
            ui.page.locator("[data-testid=workflow-row][data-workflow=wb-sign-off]")
        ).to_be_visible()
        ui.page.reload()  # the token is kept
        expect(ui.page.locator("[data-testid=workflow-row]")).to_have_count(1)
        expect(dialog).to_be_hidden()
    finally:
        ui.close()
        guarded.stop()


@pytest.mark.timeout(90)
def test_the_run_page_cancels_and_retries(ui: Page, server: WorkbenchServer) -> None:
    server.register(SIGN_OFF, "wb-sign-off.toml")
    run_id = server.start("wb-sign-off")
    page = ui.open(f"/runs/{run_id}")
    sign = page.locator("[data-testid=step-row][data-step=sign]")
    expect(sign.get_by_test_id("step-status")).to_have_text("waiting")
    expect(ui.by("retry")).to_be_disabled()

    ui.by("cancel").click()
    expect(ui.by("run-status")).to_have_text("cancelled")
    expect(ui.by("cancel")).to_be_disabled()
    ui.by("retry").click()
    page.wait_for_url(re.compile(r"#/runs/(?!" + re.escape(run_id) + r")[^/]+$"))
    expect(ui.by("run-status")).to_have_text("running")
    expect(page.locator("[data-testid=step-row][data-step=sign]")).to_have_attribute(
        "data-status", "waiting"
    )
    expect(page.get_by_role("link", name=run_id)).to_be_visible()  # "retry of"


@pytest.mark.timeout(90)
def test_emitting_from_the_trigger_page_feeds_the_project_steps(
    browser: Any, tmp_path: Path
) -> None:
    project = tmp_path / "steps-basic"
    shutil.copytree(EXAMPLES / "steps-basic", project, ignore=shutil.ignore_patterns(".wayang"))
    served = WorkbenchServer(tmp_path / "served", project=project).wait_until_ready()
    ui = Page(browser, served.url)
    try:
        page = ui.open("/trigger")
        ui.by("topic").fill("order.created")
        ui.by("data").fill('{"id": "ORD-7", "item": "gadget",')
        expect(ui.by("json-check")).to_contain_text("not JSON")
        expect(ui.by("emit")).to_be_disabled()
        ui.by("data").fill('{"id": "ORD-7", "item": "gadget", "quantity": 2, "customer": "ann"}')
        expect(ui.by("json-check")).to_have_text("valid JSON")
        ui.by("emit").click()
        expect(ui.by("emitted")).to_contain_text("order.created")

        def confirmed() -> bool:
            values = served.http.get("/state/orders").json().get("values", [])
            return any(v.get("status") == "confirmed" for v in values)

        wait_for(confirmed, 20.0, "the order to be confirmed by the project's steps")
        page = ui.open("/steps")
        expect(page.locator("[data-testid=step-info]")).to_have_count(4)
        flow = ui.by("flow-graph").first
        expect(flow.locator("canvas").first).to_be_visible()
        assert page.evaluate("window.__wayang.cy.nodes().length") == 4
        assert page.evaluate("window.__wayang.cy.edges().length") >= 2
        page.get_by_role("button", name="orders").click()
        expect(ui.by("state-values")).to_contain_text('"status": "confirmed"')

        store = page.locator("[data-testid=step-info][data-step=StoreOrder]")
        store.get_by_test_id("deactivate").click()
        expect(store).to_have_attribute("data-active", "false")
        steps = {s["name"]: s for s in served.http.get("/steps").json()["steps"]}
        assert steps["StoreOrder"]["active"] is False
    finally:
        ui.close()
        served.stop()


@pytest.mark.timeout(90)
def test_the_trigger_page_without_a_project_offers_no_api_steps(ui: Page) -> None:
    ui.open("/trigger")
    expect(ui.by("emit-form")).to_be_visible()
    expect(ui.by("no-project")).to_contain_text("wayang server --project DIR")
    expect(ui.by("api-form")).to_have_count(0)
    expect(ui.by("banner")).to_be_hidden()


@pytest.mark.timeout(90)
def test_an_api_step_called_from_the_trigger_page_answers(browser: Any, tmp_path: Path) -> None:
    project = tmp_path / "api-project"
    (project / "steps").mkdir(parents=True)
    (project / "wayang.toml").write_text('[steps]\nfolders = ["steps"]\n')
    for name, source in API_STEPS.items():
        (project / "steps" / name).write_text(source)
    served = WorkbenchServer(tmp_path / "served", project=project).wait_until_ready()
    ui = Page(browser, served.url)
    calls: list[str] = []
    ui.page.on("request", lambda r: calls.append(r.url) if "/steps/greet" in r.url else None)
    try:
        served.http.post("/steps/Retired/deactivate").raise_for_status()
        page = ui.open("/trigger")
        choice = ui.by("api-step")
        # active API steps only, as method and path
        options = choice.locator("option").all_inner_texts()
        assert options == ["POST /greet/:name · Greet", "GET /ping · Ping"]

        choice.select_option("Greet")
        expect(ui.by("api-url")).to_have_text("fill in the path parameter :name")
        expect(ui.by("api-send")).to_be_disabled()
        ui.by("path-param-name").fill("ada")
        ui.by("api-query").fill("lang=en")
        ui.by("api-body").fill('{"mood": "sunny",')
        # the inline error names the problem (the browser's own words, after "not JSON:")
        expect(ui.by("api-json-check")).to_have_text(re.compile(r"^not JSON: \S.{10,}"))
        expect(ui.by("api-send")).to_be_disabled()
        ui.by("api-form").evaluate("form => form.requestSubmit()")  # sends nothing either
        expect(ui.by("api-response")).to_be_empty()

        ui.by("api-body").fill('{"mood": "sunny"}')
        expect(ui.by("api-json-check")).to_have_text("valid JSON")
        expect(ui.by("api-url")).to_have_text("POST /steps/greet/ada?lang=en")
        ui.by("api-send").click()
        expect(ui.by("api-status")).to_have_text("201 Created")
        body = ui.by("api-response-body")
        expect(body).to_contain_text('"greeting": "hello ada"')
        expect(body).to_contain_text('"mood": "sunny"')
        expect(body).to_contain_text('"lang": "en"')
        expect(ui.by("api-problem")).to_have_count(0)
        assert "null" not in ui.by("api-response").inner_text()
        assert calls == [f"{served.url}/steps/greet/ada?lang=en"]

        # the step's refusal, an RFC 9457 problem, is shown as one
        ui.by("api-body").fill('{"mood": 5}')
        ui.by("api-send").click()
        expect(ui.by("api-status")).to_have_text("400 Bad Request")
        expect(ui.by("api-problem-title")).to_have_text("Invalid request body")
        expect(ui.by("api-problem")).to_contain_text("mood")
        expect(ui.by("api-response-body")).to_contain_text('"status": 400')
        assert len(calls) == 2

        # a GET step takes no body: the editor is hidden and nothing is sent
        choice.select_option("Ping")
        expect(ui.by("api-body-part")).to_be_hidden()
        expect(ui.by("api-response")).to_be_empty()
        ui.by("api-send").click()
        expect(ui.by("api-status")).to_have_text("200 OK")
        expect(ui.by("api-response-body")).to_contain_text('"pong": true')
        expect(ui.by("api-response-body")).to_contain_text('"body": ""')
        expect(ui.by("banner")).to_be_hidden()
        assert page.url.endswith("#/trigger")
    finally:
        ui.close()
        served.stop()


@pytest.mark.timeout(90)
def test_the_run_page_shows_the_runs_workspace(browser: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["init", "-q"], ["config", "user.email", "t@x"], ["config", "user.name", "t"]):
        subprocess.run(["git", *argv], cwd=repo, check=True)
    source = 'id = "wb-ws"\n[steps.look]\nrun = "echo in=$WAYANG_WORKSPACE_ID"\n'
    (repo / "workflow.toml").write_text(source)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, check=True)
    server = WorkbenchServer(tmp_path / "server").wait_until_ready()
    ui = Page(browser, server.url)
    try:
        body = {"source": source, "filename": str(repo / "workflow.toml"), "cwd": str(repo)}
        answer = server.http.post("/runs", json={**body, "workspace_id": "wb-shown"})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        page = ui.open(f"/runs/{run_id}")
        expect(ui.by("run-status")).to_have_text("succeeded", timeout=30_000)
        shown = ui.by("run-workspace")
        expect(shown).to_contain_text("wb-shown")
        expect(shown).to_contain_text(f"wayang workspace shell {run_id}")
        assert (
            page.locator("[data-testid=run-workspace] code")
            .first.inner_text()
            .endswith("/wb-shown")
        )
    finally:
        ui.close()
        server.stop()
