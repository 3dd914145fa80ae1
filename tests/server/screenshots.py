"""Take the Workbench screenshots of docs/workbench.md (docs/images/workbench-*.png).

Run by hand after changing the Workbench, then commit the images::

    .venv/bin/python tests/server/screenshots.py

It starts a real ``wayang server --project`` (a copy of examples/steps-basic) on a temporary
store, registers a few examples, starts runs (one finishes, one fails, two wait for people),
emits an order, and photographs each page in Debian's Chromium (``/usr/bin/chromium``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "support")]

from playwright.sync_api import sync_playwright  # noqa: E402
from test_workbench import EXAMPLES, WorkbenchServer, launch  # noqa: E402

IMAGES = HERE.parents[1] / "docs" / "images"
SIZE = {"width": 1360, "height": 900}
FINISHED = ("succeeded", "failed", "cancelled")


def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def prepare(server: WorkbenchServer) -> dict[str, str]:
    """Workflows, runs and an order to show; the ids of the runs worth a picture."""
    for name in ("pipeline", "order-approval", "expense-approval", "price-negotiation"):
        source = (EXAMPLES / name / "workflow.toml").read_text()
        server.register(source, f"examples/{name}/workflow.toml")
    for name in ("review-loop", "order-saga"):
        source = (EXAMPLES / name / "workflow.toml").read_text()
        server.register(source, f"examples/{name}/workflow.toml")
    runs = {
        "pipeline": server.start("pipeline"),
        "review": server.start("review-loop"),
        "saga": server.start("order-saga"),
        "expense": server.start("expense-approval", {"amount": 4200, "purpose": "a conference"}),
        "haggle": server.start("price-negotiation", {"budget": 90}),
    }
    until(lambda: len(server.http.get("/approvals").json()) == 2, "the two waits to start")
    answer = server.http.post(
        f"/runs/{runs['haggle']}/steps/haggle/offer",
        json={"terms": {"price": 80, "quantity": 12}, "comment": "first offer"},
        headers={"X-Wayang-User": "bo"},
    )
    answer.raise_for_status()
    order = {"id": "ORD-1001", "item": "gadget", "quantity": 4, "customer": "ann"}
    server.http.post(
        "/topics/emit", json={"topic": "order.created", "data": order}
    ).raise_for_status()
    for key in ("pipeline", "review", "saga"):
        until(lambda key=key: server.status(runs[key]) in FINISHED, f"run {key} to finish")
    return runs


def shoot(
    page: Any, route: str, name: str, ready: str, *, full: bool = False, click: str = ""
) -> None:
    page.goto(f"/#{route}")
    page.locator("main > section[data-ready=true]").wait_for()
    page.locator(ready).first.wait_for()
    if click:
        page.locator(click).first.click()
    page.wait_for_timeout(600)  # the graph's layout and fit
    path = IMAGES / f"workbench-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(HERE.parents[1])}")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wayang-shots-") as tmp:
        project = Path(tmp) / "steps-basic"
        ignore = shutil.ignore_patterns(".wayang", "reports")
        shutil.copytree(EXAMPLES / "steps-basic", project, ignore=ignore)
        server = WorkbenchServer(Path(tmp) / "server", project=project).wait_until_ready()
        try:
            runs = prepare(server)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                context = browser.new_context(base_url=server.url, viewport=SIZE)
                context.add_init_script("localStorage.setItem('wayang.user', 'mia')")
                page = context.new_page()
                shoot(
                    page,
                    "/workflows/order-approval",
                    "workflow",
                    "[data-testid=graph] canvas",
                    full=True,
                )
                shoot(page, "/runs", "runs", "[data-testid=run-row]")
                shoot(page, f"/runs/{runs['pipeline']}", "run", "[data-testid=span]", full=True)
                shoot(page, "/approvals", "approvals", "[data-testid=approval]", full=True)
                flow = "[data-testid=flow-graph] canvas"
                group = "[data-testid=state-groups] button"
                shoot(page, "/steps", "steps", flow, full=True, click=group)
                shoot(page, "/trigger", "trigger", "[data-testid=emit-form]")
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
