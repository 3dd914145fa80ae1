"""Run workflow text on a real engine over a real SQLite file, for the runtime tests."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from wayang.app import App, Settings
from wayang.engine.state import RunState
from wayang.ids import new_run_id
from wayang.runtime.engine import Engine, EngineSettings
from wayang.runtime.operations import prepare_run

FAST = EngineSettings(lease_s=5.0, renew_every_s=0.5, poll_every_s=0.05)


def make_app(tmp_path: Path, settings: EngineSettings = FAST) -> App:
    return App(Settings(store=str(tmp_path / "wayang.db"), engine=settings))


def write_workflow(tmp_path: Path, text: str, name: str = "workflow.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


async def start(
    engine: Engine, path: Path, params: dict[str, str] | None = None, parallel: int = 0
) -> tuple[str, asyncio.Future[RunState]]:
    request = prepare_run(path, params or {}, {}, parallel=parallel, timeout_s=None)
    run_id = new_run_id()
    return run_id, engine.start(request.plan, request.started, run_id, reuse=request.reuse)


def run_text(tmp_path: Path, text: str, **params: str) -> RunState:
    """Run ``text`` to its end on a fresh engine; the final (durable) state."""
    path = write_workflow(tmp_path, text)
    app = make_app(tmp_path)

    async def go() -> RunState:
        async with app.engine() as engine:
            _, done = await start(engine, path, params)
            return await asyncio.wait_for(done, 30)

    try:
        return asyncio.run(go())
    finally:
        app.close()


def in_engine(
    app: App, body: Callable[[Engine], Coroutine[Any, Any, Any]], **observers: Any
) -> Any:
    async def go() -> Any:
        async with app.engine(**observers) as engine:
            return await body(engine)

    return asyncio.run(go())
