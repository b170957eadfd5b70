"""The hold queue and the herd guard, per service (asyncio only; no HTTP, no Kubernetes here).

A request asks `Hold.acquire(key)` for a replica. It gets one at once when the service has a
replica that may take it and nobody is waiting ahead of it; otherwise it waits, first come first
served, in a queue bounded by `max_held` (past the bound: `QueueFull`), until a replica may take it
or `timeout_s` passes (`HoldTimeout`). A cancelled waiter (the client went away) leaves the queue at
once and frees its slot.

Herd guard: a replica the activator has not yet seen answer is *fresh*; a fresh replica gets at
most `herd_limit` requests in flight. The first response it sends (`release(..., answered=True)`)
proves it, and from then on it takes any number, least in flight first. So a burst held at zero
reaches a replica that has just turned Ready a few at a time, not all at once.

`on_change(key, held)` is called whenever a service's held count changes (metrics, the demand push).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Key = tuple[str, str]  # (namespace, InferenceService name)


class QueueFull(Exception):
    pass


class HoldTimeout(Exception):
    pass


@dataclass
class Replica:
    pod: str
    address: str  # host:port
    proven: bool = False
    in_flight: int = 0


@dataclass
class _Waiter:
    fut: asyncio.Future[Replica]
    since: float


@dataclass
class _Service:
    replicas: dict[str, Replica] = field(default_factory=dict)
    waiters: deque[_Waiter] = field(default_factory=deque)


class Hold:
    def __init__(
        self,
        max_held: int,
        herd_limit: int,
        on_change: Callable[[Key, int], None] = lambda k, n: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_held, self.herd_limit, self.on_change, self.clock = max_held, herd_limit, on_change, clock
        self._svc: dict[Key, _Service] = {}

    # ---- replicas -----------------------------------------------------------------------------

    def set_replicas(self, key: Key, addresses: Mapping[str, str]) -> None:
        """The replicas that receive traffic now (pod -> host:port); known ones keep their state."""
        svc = self._svc.setdefault(key, _Service())
        old = svc.replicas
        svc.replicas = {
            pod: old[pod] if pod in old and old[pod].address == addr else Replica(pod, addr)
            for pod, addr in addresses.items()
        }
        self._dispatch(key)

    def replicas(self, key: Key) -> list[Replica]:
        svc = self._svc.get(key)
        return list(svc.replicas.values()) if svc else []

    def held(self, key: Key) -> int:
        svc = self._svc.get(key)
        return len(svc.waiters) if svc else 0

    def oldest_wait_s(self, key: Key) -> float:
        svc = self._svc.get(key)
        return self.clock() - svc.waiters[0].since if svc and svc.waiters else 0.0

    # ---- requests -----------------------------------------------------------------------------

    async def acquire(self, key: Key, timeout_s: float) -> Replica:
        svc = self._svc.setdefault(key, _Service())
        if not svc.waiters and (r := self._pick(svc)) is not None:
            r.in_flight += 1
            return r
        if len(svc.waiters) >= self.max_held:
            raise QueueFull
        w = _Waiter(asyncio.get_running_loop().create_future(), self.clock())
        svc.waiters.append(w)
        self.on_change(key, len(svc.waiters))
        got = False
        try:
            async with asyncio.timeout(timeout_s):
                r = await w.fut
            got = True
            return r
        except TimeoutError:
            raise HoldTimeout from None
        finally:
            if w in svc.waiters:
                svc.waiters.remove(w)
                self.on_change(key, len(svc.waiters))
            if not w.fut.done():
                w.fut.cancel()
            elif not got and not w.fut.cancelled():
                # given a replica in the same instant the client left or the time ran out: hand it back
                self.release(key, w.fut.result(), answered=False)

    def release(self, key: Key, replica: Replica, answered: bool) -> None:
        """A forwarded request is done; `answered`: the replica sent a response (it is proven)."""
        replica.in_flight = max(0, replica.in_flight - 1)
        if answered:
            replica.proven = True
        self._dispatch(key)

    def drop(self, key: Key, replica: Replica) -> None:
        """The replica could not be reached: take it out until the routing says it is back."""
        svc = self._svc.get(key)
        if svc is not None and svc.replicas.get(replica.pod) is replica:
            del svc.replicas[replica.pod]

    # ---- internals ----------------------------------------------------------------------------

    def _pick(self, svc: _Service) -> Replica | None:
        ok = [r for r in svc.replicas.values() if r.proven or r.in_flight < self.herd_limit]
        return min(ok, key=lambda r: (r.in_flight, r.pod)) if ok else None

    def _dispatch(self, key: Key) -> None:
        svc = self._svc.get(key)
        if svc is None:
            return
        before = len(svc.waiters)
        while svc.waiters and (r := self._pick(svc)) is not None:
            w = svc.waiters.popleft()
            if w.fut.done():  # cancelled meanwhile
                continue
            r.in_flight += 1
            w.fut.set_result(r)
        if len(svc.waiters) != before:
            self.on_change(key, len(svc.waiters))
