"""The gateway's admission to Triton: bounded calls in flight, first come first served, a limit that shrinks
when Triton answers slowly and grows back when it answers fast."""

from __future__ import annotations

import asyncio

import pytest

from lineqa.serving.admission import InferenceSlots, default_concurrency


def test_calls_beyond_the_limit_wait_their_turn_in_order() -> None:
    async def scenario() -> tuple[int, list[int], list[float]]:
        slots = InferenceSlots(2, deadline_s=10)
        busy, most, order, waits = 0, 0, [], []

        async def call(index: int) -> None:
            nonlocal busy, most
            async with slots.slot() as waited:
                busy += 1
                most = max(most, busy)
                order.append(index)
                waits.append(waited)
                await asyncio.sleep(0.05)
                busy -= 1

        tasks = []
        for index in range(6):
            tasks.append(asyncio.create_task(call(index)))
            await asyncio.sleep(0)  # they arrive in this order
        await asyncio.gather(*tasks)
        return most, order, waits

    most, order, waits = asyncio.run(scenario())
    assert most == 2
    assert order == list(range(6))
    assert waits[0] < 0.01 and waits[-1] >= 0.09  # the last two waited for two rounds of calls


@pytest.mark.parametrize(
    ("durations", "limits"),
    [
        ([0.6], [2]),  # more than half the deadline: halved
        ([0.6, 0.6, 0.6], [2, 1, 1]),  # never below one
        ([0.6, 0.1, 0.1], [2, 2, 3]),  # as many fast calls as the limit: one more
        ([0.1] * 6, [4] * 6),  # never above the ceiling
        ([0.6, 0.3, 0.1, 0.1], [2, 2, 2, 3]),  # a middling call resets the run of fast ones
    ],
)
def test_the_limit_follows_how_fast_triton_answers(durations: list[float], limits: list[int]) -> None:
    slots = InferenceSlots(4, deadline_s=1.0)
    seen = []
    for took in durations:
        slots._adapt(took)
        seen.append(slots.limit)
    assert seen == limits


def test_a_timed_out_call_frees_its_slot_and_lowers_the_limit() -> None:
    async def scenario() -> tuple[int, int]:
        slots = InferenceSlots(4, deadline_s=0.1)
        with pytest.raises(TimeoutError):
            async with slots.slot():
                await asyncio.wait_for(asyncio.sleep(1), 0.08)
        return slots.in_use, slots.limit

    assert asyncio.run(scenario()) == (0, 2)


def test_default_concurrency() -> None:
    assert default_concurrency(2) == 4  # CPU: two frames per instance
    assert default_concurrency(1, 16) == 32  # GPU: two batches per instance
    with pytest.raises(ValueError):
        InferenceSlots(0, 1.0)


def test_a_caller_that_gives_up_waiting_leaves_no_slot_taken() -> None:
    async def scenario() -> tuple[int, int, bool]:
        slots = InferenceSlots(1, deadline_s=10)
        release = asyncio.Event()

        async def holder() -> None:
            async with slots.slot():
                await release.wait()

        async def waiter() -> None:
            async with slots.slot():
                pass

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)
        gave_up = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert slots.waiting == 1
        gave_up.cancel()
        await asyncio.sleep(0)
        release.set()
        await held
        later = asyncio.create_task(waiter())
        await asyncio.wait_for(later, 1)  # the slot was not lost to the cancelled caller
        return slots.in_use, slots.waiting, gave_up.cancelled()

    assert asyncio.run(scenario()) == (0, 0, True)
