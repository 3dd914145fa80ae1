"""Runs whose append conflicted: taken up again if they are still this engine's, else let go.

An append conflicts when a run's history moved on without this engine's copy of it:

* a commit failed in doubt (the connection was lost while it was committing) but went in, and
  its retry conflicts with itself: the run is still this engine's;
* another engine took the run over (this engine's lease lapsed, in an outage or a long pause).

Either way the engine drops its copy (stops its tasks, timers and pending appends) and asks the
store for the run's lease. If it gets it (still its own, or lapsed and taken by nobody) it reloads
the history and drives the run on, as an adoption would: whoever waits for the run sees only a
pause. Otherwise the run is another engine's now, and its waiters get a
:class:`~wayang.runtime.names.RunLostError`. A run the engine gives up while it may still hold
its lease has the lease released, so that renewing its other leases never keeps that run from
whoever adopts it next.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from wayang.engine.state import fold
from wayang.runtime.names import RunLostError
from wayang.runtime.outage import Outage
from wayang.runtime.records import read_events
from wayang.store.port import StoreUnavailableError

if TYPE_CHECKING:
    from wayang.runtime.engine import Engine, _LiveRun

log = logging.getLogger("wayang.engine")


class LostRuns:
    """Takes up again, or lets go of, the runs the engine lost; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._taking: set[asyncio.Task[None]] = set()
        self._to_release: set[str] = set()

    def lost(self, live: _LiveRun, why: str) -> None:
        """``live``'s append conflicted (``why``): drop it, then see whose the run is."""
        self.engine._drop(live, None)
        task = asyncio.get_running_loop().create_task(self._take_up(live, why))
        self._taking.add(task)
        task.add_done_callback(self._taking.discard)

    def let_go(self, run_id: str) -> None:
        """Release ``run_id``'s lease at the next round (the engine could not drive it)."""
        self._to_release.add(run_id)

    async def release(self) -> None:
        """Release the leases of runs given up (raises if the store is away: called again)."""
        engine = self.engine
        for run_id in sorted(self._to_release):
            if run_id not in engine._runs:
                call = engine._require_committer().call
                await call(engine.store.release_run, run_id, engine.owner)
            self._to_release.discard(run_id)

    async def close(self) -> None:
        """Stop taking runs up (the engine stops); their leases are released if the store
        answers."""
        for task in list(self._taking):
            task.cancel()
        await asyncio.gather(*self._taking, return_exceptions=True)
        try:
            await self.release()
        except Exception as exc:  # their leases lapse instead: nobody renews them
            log.warning("could not release the leases of runs given up: %s", exc)

    async def _take_up(self, live: _LiveRun, why: str) -> None:
        error = RunLostError(f"run {live.run_id} was taken over by another engine: {why}")
        try:
            if await self._take_again_until_answered(live):
                return
        except asyncio.CancelledError:
            self._give_up(live, RunLostError(f"the engine stopped before run {live.run_id} ended"))
            raise
        except Exception as exc:  # the run goes to whoever adopts it next
            log.warning("could not take up run %s again: %s", live.run_id, exc)
            error = RunLostError(f"run {live.run_id} could not be taken up again: {exc}")
        self._give_up(live, error)

    def _give_up(self, live: _LiveRun, error: RunLostError) -> None:
        """Tell ``live``'s waiters, and release its lease (it may still be this engine's)."""
        self._to_release.add(live.run_id)
        if not live.done.done():
            live.done.set_exception(error)
            live.done.exception()  # nobody awaiting the future is no bug

    async def _take_again_until_answered(self, live: _LiveRun) -> bool:
        outage = Outage(log, f"taking up run {live.run_id} again")
        while True:
            try:
                taken = await self._take_again(live)
            except StoreUnavailableError as exc:
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.recovered()
            return taken

    async def _take_again(self, live: _LiveRun) -> bool:
        """Drive ``live``'s run again from its history if its lease can be had; whether it
        could. A failure half-way drops the new copy again."""
        engine = self.engine
        call = engine._require_committer().call
        store, run_id, lease_s = engine.store, live.run_id, engine.settings.lease_s
        if not await call(store.lease_run, run_id, engine.owner, engine._clock(), lease_s):
            return False
        state = fold(run_id, read_events(await call(store.load_history, run_id)))
        if state.finished:  # the append that went in finished it
            if not live.done.done():
                live.done.set_result(state)
            return True
        again = engine._track(live.plan, state, live.tenant, live.cwd, done=live.done)
        try:
            await engine._resume(again, None)
        except BaseException:
            engine._drop(again, None)
            raise
        log.info("took up run %s again from its history (version %d)", run_id, state.version)
        return True
