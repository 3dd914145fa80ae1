"""Slots: a worker's --slots shared by the tasks it claims and its driver's steps."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from wayang.runtime.slots import Slots
from wayang.runtime.spill import StepSpilled


def test_claimed_tasks_and_driven_steps_share_the_slots() -> None:
    claimed = 1
    slots = Slots(3)
    slots.claimed = lambda: claimed

    async def scenario() -> None:
        await slots.hold()
        assert slots.free() == 1
        await slots.hold()
        assert slots.free() == 0
        slots.release()
        assert slots.free() == 1

    asyncio.run(scenario())


def test_a_step_waits_for_a_slot_and_gets_it_before_claims_are_told() -> None:
    claimed = 1
    slots = Slots(1)
    slots.claimed = lambda: claimed
    told: list[int] = []
    slots.on_freed(lambda: told.append(slots.free()))

    async def scenario() -> None:
        nonlocal claimed
        waiting = asyncio.create_task(slots.hold())
        await asyncio.sleep(0)
        assert not waiting.done()  # the worker's task holds the only slot
        claimed = 0  # its task ended
        slots.wake()
        await waiting
        assert slots.driven == 1
        assert told == [0]  # the step took the slot: nothing left for a claim

    asyncio.run(scenario())


def test_waiting_steps_get_slots_in_the_order_they_asked() -> None:
    slots = Slots(1)
    order: list[str] = []

    async def step(name: str) -> None:
        await slots.hold()
        order.append(name)
        await asyncio.sleep(0.01)
        slots.release()

    async def scenario() -> None:
        await asyncio.gather(*(step(name) for name in "abcd"))

    asyncio.run(scenario())
    assert order == list("abcd")
    assert slots.driven == 0


def test_a_step_cancelled_while_waiting_takes_no_slot() -> None:
    slots = Slots(1)

    async def scenario() -> None:
        await slots.hold()
        waiting = asyncio.create_task(slots.hold())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        slots.release()
        assert slots.driven == 0 and slots.free() == 1

    asyncio.run(scenario())


def test_a_step_handed_a_slot_as_it_is_cancelled_passes_it_on() -> None:
    slots = Slots(1)

    async def scenario() -> None:
        await slots.hold()
        first = asyncio.create_task(slots.hold())
        second = asyncio.create_task(slots.hold())
        await asyncio.sleep(0)
        slots.release()  # hands the slot to ``first`` ...
        first.cancel()  # ... which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await first
        await second  # the slot went on to the next step
        assert slots.driven == 1

    asyncio.run(scenario())


def test_steps_waiting_are_counted_until_they_get_a_slot() -> None:
    slots = Slots(1)

    async def scenario() -> None:
        await slots.hold()
        waiting = asyncio.create_task(slots.hold())
        await asyncio.sleep(0)
        assert slots.waiting == 1  # a worker's batch leaves the slot it frees to this step
        slots.release()
        await waiting
        assert slots.waiting == 0

    asyncio.run(scenario())


def test_waits_taken_out_get_no_slot_until_put_back_in_order() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        await slots.hold("first")

        async def step(name: str) -> None:
            try:
                await slots.hold(name)
            except StepSpilled:
                order.append(f"{name} spilled")
                return
            order.append(name)
            slots.release()

        jobs = [asyncio.create_task(step(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        taken = slots.take_last(2)
        assert [w.step for w in taken] == ["b", "c"] and slots.waiting == 1
        slots.release()  # the slot goes to "a", not to the two taken out
        await asyncio.sleep(0)
        taken[0].future.set_exception(StepSpilled())
        slots.put_back(taken)  # "b" ended its wait: only "c" goes back
        await asyncio.gather(*jobs)
        assert slots.driven == 0 and slots.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["a", "b spilled", "c"]


def test_a_wait_cancelled_while_taken_out_is_not_put_back() -> None:
    async def scenario() -> tuple[int, int]:
        slots = Slots(1)
        await slots.hold()
        job = asyncio.create_task(slots.hold("late"))
        await asyncio.sleep(0)
        taken = slots.take_last(1)
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        slots.put_back(taken)
        return slots.waiting, slots.driven

    assert asyncio.run(scenario()) == (0, 1)
