"""The engine rides out a store that goes away, and never keeps a run it no longer drives.

These tests put a real SQLite store behind a wrapper that fails the way a PostgreSQL outage does
(:class:`StoreUnavailableError`, in doubt or not) at chosen moments, so each path runs for sure;
tests/runtime/test_postgres_outage.py does the same with sessions of a real server ended at
random instants. Steps record their idempotency keys: effects must appear once each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from runtime_helpers import FAST, start, write_workflow
from wayang.engine import events as ev
from wayang.engine.state import RunState, RunStatus
from wayang.executors.local import LocalExecutor
from wayang.executors.python import PythonExecutor
from wayang.executors.shell import ShellExecutor
from wayang.runtime.engine import Engine
from wayang.runtime.names import RunLostError
from wayang.runtime.records import to_new_event
from wayang.store.port import Append, LogLine, StoreError, StoreUnavailableError
from wayang.store.sqlite import SQLiteStore


class FlakyStore:
    """A store that fails as a server going away would, where the test says.

    ``failing`` maps a commit's number to "before" (nothing written) or "after" (written, but
    the reply lost: in doubt); ``failing_calls`` how many calls of a method fail; ``broken``
    names methods that fail for good, with an error trying again cannot cure.
    """

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.commits = 0
        self.failing: dict[int, str] = {}
        self.failing_calls: dict[str, int] = {}
        self.broken: set[str] = set()
        self.lose_the_finish = False  # the commit finishing a run goes in, its reply is lost

    def _finishes(self, appends: Sequence[Append]) -> bool:
        return any(append.status == "succeeded" for append in appends)

    def commit(self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()) -> None:
        self.commits += 1
        how = self.failing.pop(self.commits, None)
        if how == "before":
            raise StoreUnavailableError("the server went away (before commit)")
        self.inner.commit(appends, now, logs)
        if self.lose_the_finish and self._finishes(appends):
            self.lose_the_finish = False
            how = "after"
        if how == "after":
            raise StoreUnavailableError("the server went away (at commit)", in_doubt=True)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if name not in self.failing_calls and name not in self.broken:
            return found

        def failing(*args: Any, **kwargs: Any) -> Any:
            if name in self.broken:
                raise StoreError(f"the store is corrupt ({name})")
            if self.failing_calls[name] > 0:
                self.failing_calls[name] -= 1
                raise StoreUnavailableError(f"the server went away ({name})")
            return found(*args, **kwargs)

        return failing


FLOW = """
id = "outage"
[steps.a]
run = 'echo "$WAYANG_IDEMPOTENCY_KEY" >> "{ledger}"'
[steps.b]
needs = ["a"]
run = 'sleep {pause}; echo "$WAYANG_IDEMPOTENCY_KEY" >> "{ledger}"'
[steps.c]
needs = ["b"]
run = 'echo "$WAYANG_IDEMPOTENCY_KEY" >> "{ledger}"'
"""


def drive(
    store: Any,
    tmp_path: Path,
    during: Callable[[Engine, str], Awaitable[None]] | None = None,
    pause: float = 0.3,
) -> RunState:
    """Run FLOW to its end (``pause``: how long step b takes); ``during`` runs once it started."""
    path = write_workflow(tmp_path, FLOW.format(ledger=tmp_path / "ledger", pause=pause))

    executor = LocalExecutor(ShellExecutor(grace_s=1.0), PythonExecutor())

    async def go() -> RunState:
        async with Engine(store, executor, settings=FAST) as engine:
            run_id, done = await start(engine, path)
            if during is not None:
                await during(engine, run_id)
            return await asyncio.wait_for(done, 30)

    try:
        return asyncio.run(go())
    finally:
        executor.close()


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyStore]:
    store = FlakyStore(SQLiteStore(tmp_path / "wayang.db"))
    yield store
    store.inner.close()


def effects(tmp_path: Path) -> list[str]:
    return (tmp_path / "ledger").read_text().split()


def test_commits_that_fail_are_kept_and_written_once_the_store_is_back(
    flaky: FlakyStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky.failing = {2: "before", 3: "before", 4: "before"}
    caplog.set_level(logging.WARNING, "wayang.engine")
    state = drive(flaky, tmp_path)
    assert state.status is RunStatus.SUCCEEDED
    assert effects(tmp_path) == [f"{state.run_id}/{step}" for step in "abc"]
    history = flaky.inner.load_history(state.run_id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    said = [r.getMessage() for r in caplog.records if r.name == "wayang.engine"]
    assert sum("committing failed" in line for line in said) == 1  # once per outage
    assert sum("committing: the store is back" in line for line in said) == 1


def test_a_commit_that_went_in_before_the_connection_was_lost_is_taken_up_again(
    flaky: FlakyStore, tmp_path: Path
) -> None:
    # The retry of commit 2 conflicts with commit 2 itself: the run is still this engine's,
    # so the engine reloads its history and drives it on; its waiter sees only a pause.
    flaky.failing = {2: "after"}
    state = drive(flaky, tmp_path)
    assert state.status is RunStatus.SUCCEEDED
    assert sorted(effects(tmp_path)) == sorted(f"{state.run_id}/{step}" for step in "abc")
    record = flaky.inner.get_run(state.run_id)
    assert record is not None and record.status == "succeeded"


def test_a_commit_in_doubt_that_finished_the_run_resolves_it(
    flaky: FlakyStore, tmp_path: Path
) -> None:
    flaky.lose_the_finish = True
    state = drive(flaky, tmp_path)
    assert state.status is RunStatus.SUCCEEDED
    assert not flaky.lose_the_finish
    assert sorted(effects(tmp_path)) == sorted(f"{state.run_id}/{step}" for step in "abc")


def test_lease_renewals_and_polls_that_fail_stop_no_loop(flaky: FlakyStore, tmp_path: Path) -> None:
    flaky.failing_calls = {"renew_leases": 3, "kv_scan": 5}
    state = drive(flaky, tmp_path, pause=2.5)  # a few renewals (every 0.5s) fail meanwhile
    assert state.status is RunStatus.SUCCEEDED
    assert flaky.failing_calls == {"renew_leases": 0, "kv_scan": 0}


def write_behind_the_engines_back(store: SQLiteStore, run_id: str, now: float) -> None:
    version = len(store.load_history(run_id))
    noted = to_new_event(ev.RunCancelRequested("written by someone else", now))
    store.commit([Append(run_id, version, [noted])], now)


def test_a_run_taken_over_by_another_engine_is_let_go(flaky: FlakyStore, tmp_path: Path) -> None:
    store = flaky.inner

    async def taken_over(engine: Engine, run_id: str) -> None:
        await asyncio.sleep(0.15)  # step b runs
        now = engine._clock()
        assert store.steal_run(run_id, "other-engine", engine.owner, now, 60.0)
        write_behind_the_engines_back(store, run_id, now)

    with pytest.raises(RunLostError, match="taken over by another engine"):
        drive(flaky, tmp_path, taken_over)
    [run] = store.list_runs()
    assert run.owner == "other-engine"


def test_a_lost_run_it_cannot_take_up_again_has_its_lease_released(
    flaky: FlakyStore, tmp_path: Path
) -> None:
    # Its lease is still the engine's, but its history cannot be read: the engine gives the
    # run up, and must not keep renewing its lease (nobody could adopt it then).
    store = flaky.inner

    async def conflicting_and_unreadable(engine: Engine, run_id: str) -> None:
        await asyncio.sleep(0.15)
        flaky.broken = {"load_history"}
        write_behind_the_engines_back(store, run_id, engine._clock())

    with pytest.raises(RunLostError, match="could not be taken up again"):
        drive(flaky, tmp_path, conflicting_and_unreadable)
    [run] = store.list_runs()
    assert run.owner is None  # whoever adopts it next may take it at once
