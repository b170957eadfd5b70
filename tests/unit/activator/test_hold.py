"""The hold queue and herd guard (ember_activator.hold), on asyncio alone."""

from __future__ import annotations

import asyncio

import pytest
from ember_activator.hold import Hold, HoldTimeout, QueueFull

K = ("ns", "chat")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_request_with_a_free_replica_is_not_held() -> None:
    async def go() -> None:
        h = Hold(max_held=2, herd_limit=2)
        h.set_replicas(K, {"chat-0": "10.0.0.1:8000"})
        r = await h.acquire(K, 1)
        assert r.pod == "chat-0" and r.in_flight == 1 and h.held(K) == 0

    run(go())


def test_held_requests_are_released_in_order_when_a_replica_serves() -> None:
    async def go() -> None:
        changes: list[int] = []
        h = Hold(max_held=10, herd_limit=10, on_change=lambda k, n: changes.append(n))
        tasks = [asyncio.create_task(h.acquire(K, 5)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert h.held(K) == 3 and changes == [1, 2, 3]
        h.set_replicas(K, {"chat-0": "a:1"})
        got = await asyncio.gather(*tasks)
        assert [r.pod for r in got] == ["chat-0"] * 3 and h.held(K) == 0 and changes[-1] == 0

    run(go())


def test_herd_guard_lets_n_through_to_a_fresh_replica_until_it_answers() -> None:
    async def go() -> None:
        h = Hold(max_held=100, herd_limit=2)
        tasks = [asyncio.create_task(h.acquire(K, 5)) for _ in range(6)]
        await asyncio.sleep(0.01)
        h.set_replicas(K, {"chat-0": "a:1"})
        await asyncio.sleep(0.01)
        done = [t for t in tasks if t.done()]
        assert len(done) == 2 and h.held(K) == 4, "a fresh replica gets herd_limit requests, no more"
        rep = done[0].result()
        h.release(K, rep, answered=False)  # a failure proves nothing: one more may go
        await asyncio.sleep(0.01)
        assert sum(t.done() for t in tasks) == 3
        h.release(K, rep, answered=True)  # the first answer proves it: the rest go
        await asyncio.sleep(0.01)
        assert all(t.done() for t in tasks) and h.held(K) == 0

    run(go())


def test_queue_bound_refuses_the_next_request() -> None:
    async def go() -> None:
        h = Hold(max_held=2, herd_limit=1)
        tasks = [asyncio.create_task(h.acquire(K, 5)) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await h.acquire(K, 5)
        for t in tasks:
            t.cancel()

    run(go())


def test_hold_timeout() -> None:
    async def go() -> None:
        h = Hold(max_held=2, herd_limit=1)
        with pytest.raises(HoldTimeout):
            await h.acquire(K, 0.05)
        assert h.held(K) == 0

    run(go())


def test_a_cancelled_waiter_frees_its_slot_at_once() -> None:
    async def go() -> None:
        h = Hold(max_held=1, herd_limit=1)
        t = asyncio.create_task(h.acquire(K, 5))
        await asyncio.sleep(0.01)
        assert h.held(K) == 1
        t.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert h.held(K) == 0
        t2 = asyncio.create_task(h.acquire(K, 5))  # the slot is free again
        await asyncio.sleep(0.01)
        assert h.held(K) == 1
        h.set_replicas(K, {"chat-0": "a:1"})
        assert (await t2).in_flight == 1

    run(go())


def test_a_replica_given_to_a_waiter_that_left_in_the_same_instant_is_handed_back() -> None:
    async def go() -> None:
        h = Hold(max_held=5, herd_limit=1)
        t = asyncio.create_task(h.acquire(K, 5))
        await asyncio.sleep(0.01)
        h.set_replicas(K, {"chat-0": "a:1"})  # resolves the waiter...
        t.cancel()  # ...and the client leaves before it runs
        with pytest.raises(asyncio.CancelledError):
            await t
        assert h.replicas(K)[0].in_flight == 0

    run(go())


def test_least_in_flight_among_proven_replicas_and_known_replicas_keep_their_state() -> None:
    async def go() -> None:
        h = Hold(max_held=5, herd_limit=1)
        h.set_replicas(K, {"chat-0": "a:1", "chat-1": "b:1"})
        a = await h.acquire(K, 1)
        h.release(K, a, answered=True)
        b = await h.acquire(K, 1)
        assert b.pod == "chat-0"  # fewest in flight, ties by name
        c = await h.acquire(K, 1)
        assert c.pod == "chat-1"
        h.set_replicas(K, {"chat-0": "a:1"})
        assert h.replicas(K)[0].proven and h.replicas(K)[0].in_flight == 1

    run(go())
