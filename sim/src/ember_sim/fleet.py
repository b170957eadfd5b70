"""A fleet of simulated replicas behind a router, in virtual time: the engine the benchmark drives.

Routing: each request goes to the replica with the fewest outstanding requests (waiting + running)
among those that are *routable* (ready: ``ready_at_s <= t``; in service: not draining; not removed),
ties broken by replica id so runs are deterministic. When no replica is routable the request waits
in a fleet-level queue (the "first request after scale to zero waits instead of failing" behaviour)
and is dispatched, in arrival order, as soon as one becomes routable; after ``queue_timeout_s`` it
fails with ``Outcome.QUEUE_TIMEOUT``. Its TTFT still counts from its original arrival.

Lifecycle: ``add_replica`` starts the GPU-seconds meter (a replica costs from creation to removal,
ready or not); ``drain`` stops routing to it while its accepted requests finish; ``remove`` loses
its queued and running requests, each recorded as failed (``Outcome.REPLICA_REMOVED``).
Sleeping (``ember_sim.sleep``): ``park`` puts a replica to sleep instead of removing it (out of the
router, its GPU still held and counted; anything it still had fails as on removal); ``wake`` brings
it back, routable after the rest of its sleep transition plus the measured wake time, optionally
under a new id (the pod it now stands for). Which replica to park or wake is not decided here: the
callers ask a ``SleepPlanner``. ``starts`` counts replica starts by path (wake, restore, cold).

Accounting invariant, checked by the tests: ``submitted == completed + failed + in_flight``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ember_sim.model import EPS_S, Gauges, Replica
from ember_sim.params import ReplicaParams
from ember_sim.records import Outcome, Request, RequestRecord
from ember_sim.sleep import Sleeper, SleepTimes
from ember_sim.stats import FleetWindow, fleet_window


@dataclass
class ReplicaSlot:
    """A replica and its lifecycle in the fleet."""

    replica: Replica
    created_s: float
    ready_s: float
    serving: bool = True
    removed_s: float | None = None
    asleep_since_s: float | None = None  # parked: sleeping on its GPU since then
    asleep_at_s: float = 0.0  # when its engine is fully asleep (a wake starts no earlier)
    sleeps: int = 0
    sleep_spans: list[tuple[float, float | None]] = field(default_factory=list)

    @property
    def asleep(self) -> bool:
        return self.asleep_since_s is not None

    def routable(self, t: float) -> bool:
        return self.removed_s is None and self.serving and self.ready_s <= t + EPS_S


@dataclass(frozen=True)
class Sample:
    """Gauges of every live replica at one `Fleet.advance` call (stands in for a Prometheus scrape)."""

    t_s: float
    gauges: dict[str, Gauges]
    fleet_queue: int


@dataclass(frozen=True)
class Totals:
    submitted: int
    completed: int
    failed: dict[Outcome, int]
    in_flight: int
    fleet_queue: int

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


@dataclass
class Fleet:
    params: ReplicaParams = field(default_factory=ReplicaParams)
    queue_timeout_s: float = 60.0
    now_s: float = 0.0
    slots: dict[str, ReplicaSlot] = field(default_factory=dict)
    queue: deque[Request] = field(default_factory=deque)
    arrivals_s: list[float] = field(default_factory=list)
    # requests that never reached a replica (fleet-queue timeouts), in time order
    records: list[RequestRecord] = field(default_factory=list)
    record_end_s: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    sleep_times: SleepTimes = field(default_factory=SleepTimes)
    starts: dict[str, int] = field(default_factory=dict)  # path -> replica starts (wake, restore, cold)

    # ---- lifecycle ----------------------------------------------------------------------------

    def add_replica(
        self,
        replica_id: str,
        ready_at_s: float,
        params: ReplicaParams | None = None,
        path: str | None = None,
    ) -> None:
        """Create a replica now (its GPU time starts now); it takes traffic from `ready_at_s`.

        `path` (restore, cold) is counted in `starts`; None (the replicas a run begins with) is not."""
        if replica_id in self.slots and self.slots[replica_id].removed_s is None:
            raise ValueError(f"replica {replica_id} already exists")
        ready = max(ready_at_s, self.now_s)
        rep = Replica(replica_id, params or self.params, now_s=ready)
        self.slots[replica_id] = ReplicaSlot(rep, created_s=self.now_s, ready_s=ready)
        if path is not None:
            self.starts[path] = self.starts.get(path, 0) + 1
        self._dispatch()

    def park(self, replica_id: str) -> list[RequestRecord]:
        """Put a replica to sleep now: out of the router, its GPU held. Anything it still had fails
        (as on removal; callers park after the drain). The first sleep of an engine takes
        `first_sleep_s`, later ones `sleep_s`."""
        slot = self._live(replica_id)
        if slot.asleep:
            raise ValueError(f"replica {replica_id} is already asleep")
        slot.replica.advance(self.now_s, partial=True)
        lost = slot.replica.fail_all(self.now_s)
        t = self.sleep_times
        slot.serving = False
        slot.asleep_since_s = self.now_s
        slot.asleep_at_s = self.now_s + (t.first_sleep_s if slot.sleeps == 0 else t.sleep_s)
        slot.sleeps += 1
        slot.sleep_spans.append((self.now_s, None))
        return lost

    def wake(self, replica_id: str, as_id: str | None = None) -> float:
        """Wake a sleeping replica now (under `as_id` if given); returns when it takes traffic: once
        its sleep transition is over, plus `wake_to_first_token_s`."""
        slot = self._live(replica_id)
        if not slot.asleep:
            raise ValueError(f"replica {replica_id} is not asleep")
        self._end_sleep(slot)
        slot.ready_s = max(self.now_s, slot.asleep_at_s) + self.sleep_times.wake_to_first_token_s
        slot.serving = True
        self.starts["wake"] = self.starts.get("wake", 0) + 1
        if as_id is not None and as_id != replica_id:
            if as_id in self.slots and self.slots[as_id].removed_s is None:
                raise ValueError(f"replica {as_id} already exists")
            del self.slots[replica_id]
            slot.replica.id = as_id
            self.slots[as_id] = slot
        return slot.ready_s

    def set_serving(self, replica_id: str, serving: bool) -> None:
        """Put a replica in or out of service (out: no new requests; its own queue still drains)."""
        self._live(replica_id).serving = serving
        self._dispatch()

    def drain(self, replica_id: str) -> None:
        self.set_serving(replica_id, False)

    def remove(self, replica_id: str) -> list[RequestRecord]:
        """Delete a replica now; its queued and running requests fail. Returns their records."""
        slot = self._live(replica_id)
        slot.replica.advance(self.now_s, partial=True)
        if slot.asleep:
            self._end_sleep(slot)
        slot.removed_s = self.now_s
        return slot.replica.fail_all(self.now_s)

    # ---- traffic and time ---------------------------------------------------------------------

    def submit(self, req: Request) -> str | None:
        """Route a request arriving now or later; returns the replica id, or None if it was queued."""
        if req.arrival_s < self.now_s - EPS_S:
            raise ValueError(f"{req.id} arrives at {req.arrival_s}, before fleet time {self.now_s}")
        self._advance(req.arrival_s, partial=False)
        self.arrivals_s.append(req.arrival_s)
        if self.queue:  # keep arrival order behind requests already waiting for a replica
            self.queue.append(req)
            return None
        return self._route(req, req.arrival_s)

    def submit_to(self, replica_id: str, req: Request) -> None:
        """A request the caller routed itself (over HTTP, ember_sim.openai) to one live replica."""
        self._advance(max(req.arrival_s, self.now_s), partial=False)
        self.arrivals_s.append(req.arrival_s)
        self._live(replica_id).replica.submit(req, max(req.arrival_s, self.now_s))

    def advance(self, t_s: float, sample: bool = True) -> None:
        """Move every replica to `t_s`, committing partial decode runs; record a gauge sample if asked."""
        self._advance(t_s, partial=True)
        if sample:
            self.samples.append(Sample(t_s, self.gauges(), len(self.queue)))

    # ---- observations -------------------------------------------------------------------------

    def live(self) -> list[str]:
        return sorted(rid for rid, s in self.slots.items() if s.removed_s is None)

    def asleep(self) -> list[str]:
        return sorted(rid for rid, s in self.slots.items() if s.removed_s is None and s.asleep)

    def awake(self) -> list[str]:
        """Live replicas that are not asleep (starting, serving or draining)."""
        return sorted(rid for rid, s in self.slots.items() if s.removed_s is None and not s.asleep)

    def sleepers(self) -> dict[str, Sleeper]:
        out: dict[str, Sleeper] = {}
        for rid in self.asleep():
            s = self.slots[rid]
            assert s.asleep_since_s is not None
            out[rid] = Sleeper(rid, s.asleep_since_s, s.asleep_at_s)
        return out

    def routable(self) -> list[str]:
        return sorted(rid for rid, s in self.slots.items() if s.routable(self.now_s))

    def gauges(self) -> dict[str, Gauges]:
        return {rid: self.slots[rid].replica.gauges(self.now_s) for rid in self.live()}

    def all_records(self) -> list[RequestRecord]:
        recs = list(self.records)
        for s in self.slots.values():
            recs.extend(s.replica.records)
        return recs

    def totals(self) -> Totals:
        failed: dict[Outcome, int] = {}
        completed = 0
        for rec in self.all_records():
            if rec.ok:
                completed += 1
            else:
                failed[rec.outcome] = failed.get(rec.outcome, 0) + 1
        in_flight = len(self.queue) + sum(self.slots[r].replica.outstanding for r in self.live())
        return Totals(len(self.arrivals_s), completed, failed, in_flight, len(self.queue))

    def gpu_seconds(self, t0_s: float = 0.0, t1_s: float | None = None) -> float:
        """Replica-seconds of existence (creation to removal) overlapping [t0_s, t1_s]."""
        t1 = self.now_s if t1_s is None else t1_s
        total = 0.0
        for s in self.slots.values():
            end = self.now_s if s.removed_s is None else s.removed_s
            total += max(0.0, min(end, t1) - max(s.created_s, t0_s))
        return total

    def gpu_seconds_asleep(self, t0_s: float = 0.0, t1_s: float | None = None) -> float:
        """The part of `gpu_seconds` spent asleep (held, serving nothing), overlapping [t0_s, t1_s]."""
        t1 = self.now_s if t1_s is None else t1_s
        total = 0.0
        for s in self.slots.values():
            for a, b in s.sleep_spans:
                end = self.now_s if b is None else b
                total += max(0.0, min(end, t1) - max(a, t0_s))
        return total

    def window_stats(self, t0_s: float, t1_s: float) -> FleetWindow:
        """QPS, TTFT/ITL p50/p95, gauges, counts and GPU time over [t0_s, t1_s); see `ember_sim.stats`."""
        if t1_s > self.now_s + EPS_S:
            raise ValueError(f"window ends at {t1_s}, after fleet time {self.now_s}: advance first")
        for rid in self.live():
            self.slots[rid].replica.advance(self.now_s, partial=True)
        return fleet_window(self, t0_s, t1_s)

    # ---- internals ----------------------------------------------------------------------------

    def _live(self, replica_id: str) -> ReplicaSlot:
        slot = self.slots.get(replica_id)
        if slot is None or slot.removed_s is not None:
            raise KeyError(f"no live replica {replica_id}")
        return slot

    def _end_sleep(self, slot: ReplicaSlot) -> None:
        a, _ = slot.sleep_spans[-1]
        slot.sleep_spans[-1] = (a, self.now_s)
        slot.asleep_since_s = None

    def _advance(self, t_s: float, partial: bool) -> None:
        """Advance through fleet events (a replica becoming ready, a queue timeout) in time order."""
        if t_s < self.now_s - EPS_S:
            raise ValueError(f"cannot go back from {self.now_s} to {t_s}")
        while (e := self._next_event()) <= t_s:
            for rid in self.live():
                self.slots[rid].replica.advance(e)
            self.now_s = max(self.now_s, e)
            self._dispatch()
            self._expire()
        for rid in self.live():
            self.slots[rid].replica.advance(t_s, partial)
        self.now_s = max(self.now_s, t_s)

    def _next_event(self) -> float:
        nxt = math.inf
        if self.queue:
            nxt = self.queue[0].arrival_s + self.queue_timeout_s
            for s in self.slots.values():
                if s.removed_s is None and s.serving and s.ready_s > self.now_s + EPS_S:
                    nxt = min(nxt, s.ready_s)
        return nxt

    def _route(self, req: Request, at_s: float) -> str | None:
        ready = [s for s in self.slots.values() if s.routable(at_s)]
        if not ready:
            self.queue.append(req)
            return None
        best = min(ready, key=lambda s: (s.replica.outstanding, s.replica.id))
        best.replica.submit(req, at_s)
        return best.replica.id

    def _dispatch(self) -> None:
        while self.queue and any(s.routable(self.now_s) for s in self.slots.values()):
            self._route(self.queue.popleft(), self.now_s)

    def _expire(self) -> None:
        while self.queue and self.queue[0].arrival_s + self.queue_timeout_s <= self.now_s + EPS_S:
            req = self.queue.popleft()
            end = req.arrival_s + self.queue_timeout_s
            self.records.append(RequestRecord(req, None, Outcome.QUEUE_TIMEOUT, finished_s=end))
            self.record_end_s.append(end)
