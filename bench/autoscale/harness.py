"""Replay requests through the simulated fleet under one autoscaling policy, in virtual time.

The loop ticks every second: arrivals up to the tick are submitted, the fleet advances, drained
replicas that finished their streams are removed (or are removed anyway after the drain timeout), and
every policy whose decision is due sees the fleet and returns a desired count, which the actuator
applies the same way for every policy:

- up: new replicas are created now (their GPU time starts now) and take traffic after the
  time-to-ready (the same for every policy);
- down: replicas still starting are cancelled first, then the ready ones with the fewest outstanding
  requests are drained (out of the router, streams finish), as Ember's operator does.

With sleeping replicas (``RunConfig.sleep.max_sleeping > 0``, ``ember_sim.sleep``): a replica whose
drain is over is parked instead of removed while the number asleep is under the bound; one asleep
for ``delete_after_s`` is removed; a scale-up wakes a sleeping replica (ready after the measured wake
time) before it creates one. Which replica is parked or woken is the ``SleepPlanner``'s choice.

Measures per run: per-minute windows (TTFT/ITL p95, failures, arrivals), GPU-hours (replica existence,
starting, draining and asleep included; the asleep part also on its own), busy fraction, scale events,
starts by path (wake, restore, cold) and the replica timeline.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ember_sim.fleet import Fleet
from ember_sim.params import ReplicaParams
from ember_sim.records import Request
from ember_sim.sleep import SimSleepPlanner, SleepConfig, SleepPlanner
from ember_sim.stats import WindowStats

WINDOW_S = 60.0


@dataclass(frozen=True)
class RunConfig:
    time_to_ready_s: float = 60.0
    ttft_target_s: float = 0.5
    itl_target_s: float = 0.05
    drain_timeout_s: float = 90.0
    queue_timeout_s: float = 60.0
    initial_replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 40
    params: ReplicaParams = field(default_factory=ReplicaParams)
    sleep: SleepConfig = field(default_factory=SleepConfig)  # max_sleeping 0: off

    @property
    def start_path(self) -> str:
        """The path a created replica takes: restore below 30 s to ready, else cold (as the runner)."""
        return "restore" if self.time_to_ready_s < 30 else "cold"


class FleetView:
    """What a policy may look at: the fleet's metrics as Prometheus would report them at `now`."""

    def __init__(self, fleet: Fleet, now: float, draining: set[str]) -> None:
        self.fleet, self.now, self.draining = fleet, now, draining

    def arrivals(self, window_s: float) -> int:
        a = self.fleet.arrivals_s
        return bisect.bisect_right(a, self.now) - bisect.bisect_right(a, self.now - window_s)

    def qps(self, window_s: float) -> float:
        # like PromQL rate() over a series younger than the window: divide by the time covered
        return self.arrivals(window_s) / max(1.0, min(window_s, self.now))

    def current(self) -> int:
        """Replicas that exist, are awake and not draining (starting ones included)."""
        return sum(1 for rid in self.fleet.awake() if rid not in self.draining)

    def asleep(self) -> int:
        return len(self.fleet.asleep())

    def ready(self) -> int:
        return sum(1 for rid in self.fleet.routable() if rid not in self.draining)

    def running_waiting(self) -> tuple[int, int]:
        g = self.fleet.gauges()
        return sum(x.running for x in g.values()), sum(x.waiting for x in g.values()) + len(self.fleet.queue)

    def in_flight(self) -> int:
        r, w = self.running_waiting()
        return r + w

    def kv_cache(self) -> float | None:
        g = [v for k, v in self.fleet.gauges().items() if k in self.fleet.routable()]
        return sum(x.kv_usage for x in g) / len(g) if g else None

    def latency(self, window_s: float) -> WindowStats:
        return self.fleet.window_stats(max(0.0, self.now - window_s), self.now).aggregate


class Policy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def interval_s(self) -> float:
        """Seconds between decisions."""
        ...

    def step(self, view: FleetView) -> int:
        """The desired replica count at view.now."""
        ...


@dataclass
class Window:
    t0: float
    arrivals: int
    ttft_p95_s: float | None
    itl_p95_s: float | None
    failed: int
    busy_s: float
    gpu_s: float

    def ok(self, cfg: RunConfig) -> bool:
        return (
            self.failed == 0
            and (self.ttft_p95_s is None or self.ttft_p95_s <= cfg.ttft_target_s + 1e-9)
            and (self.itl_p95_s is None or self.itl_p95_s <= cfg.itl_target_s + 1e-9)
        )


@dataclass
class RunResult:
    policy: str
    windows: list[Window]
    gpu_seconds: float
    busy_seconds: float
    events: list[tuple[float, int, int]]  # (time, from, to)
    timeline: list[tuple[float, int, int]]  # (time, live replicas incl. draining, ready)
    decisions: list[tuple[float, int, int]]  # (time, current, desired) for every decision
    completed: int
    failed: int
    starts: dict[str, int] = field(default_factory=dict)  # path -> replica starts during the run
    gpu_seconds_asleep: float = 0.0  # part of gpu_seconds: replicas asleep, GPU held
    asleep: list[int] = field(default_factory=list)  # replicas asleep at each timeline tick

    def counted(self) -> list[Window]:
        """Windows that carry traffic (an idle minute has nothing to attain)."""
        return [w for w in self.windows if w.arrivals > 0 or w.failed > 0]

    def attainment(self, cfg: RunConfig) -> float:
        ws = self.counted()
        return sum(w.ok(cfg) for w in ws) / len(ws) if ws else 1.0

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.gpu_seconds if self.gpu_seconds else 0.0

    def reversals(self, within_s: float) -> int:
        """Scale events whose direction reverses the previous event's within `within_s` seconds."""
        n = 0
        for (t0, a0, b0), (t1, a1, b1) in zip(self.events, self.events[1:], strict=False):
            if (b0 - a0) * (b1 - a1) < 0 and t1 - t0 < within_s:
                n += 1
        return n

    def first_scale_up_after(self, t: float) -> float | None:
        """Seconds from `t` to the first decision asking for more replicas than exist."""
        for td, cur, want in self.decisions:
            if td >= t and want > cur:
                return td - t
        return None


class Actuator:
    def __init__(self, fleet: Fleet, cfg: RunConfig, planner: SleepPlanner | None = None) -> None:
        self.fleet, self.cfg = fleet, cfg
        self.planner = planner or SimSleepPlanner(cfg.sleep)
        self.draining: dict[str, float] = {}
        self.seq = 0

    def apply(self, now: float, desired: int) -> None:
        active = [rid for rid in self.fleet.awake() if rid not in self.draining]
        if desired > len(active):
            for _ in range(desired - len(active)):
                sleeper = self.planner.wake(self.fleet.sleepers())
                if sleeper is not None:  # wake before restore or cold
                    self.fleet.wake(sleeper)
                    continue
                ready = now + self.cfg.time_to_ready_s
                self.fleet.add_replica(f"r{self.seq:05d}", ready_at_s=ready, path=self.cfg.start_path)
                self.seq += 1
        elif desired < len(active):
            slots = self.fleet.slots
            # starting replicas first (latest first), then the fewest outstanding requests
            order = sorted(active, key=lambda r: (slots[r].routable(now), slots[r].replica.outstanding, r))
            for rid in order[: len(active) - desired]:
                self.fleet.drain(rid)
                self.draining[rid] = now

    def reap(self, now: float) -> None:
        for rid, since in list(self.draining.items()):
            if self.fleet.slots[rid].replica.outstanding == 0 or now - since >= self.cfg.drain_timeout_s:
                if self.planner.park(len(self.fleet.asleep())):
                    self.fleet.park(rid)
                else:
                    self.fleet.remove(rid)
                del self.draining[rid]
        for rid in self.planner.expired(self.fleet.sleepers(), now):
            self.fleet.remove(rid)


def run(policy: Policy, reqs: Sequence[Request], cfg: RunConfig, end_s: float | None = None) -> RunResult:
    """Replay `reqs` (sorted by arrival) under `policy`; see the module docstring."""
    fleet = Fleet(cfg.params, queue_timeout_s=cfg.queue_timeout_s)
    act = Actuator(fleet, cfg)
    for _ in range(cfg.initial_replicas):
        fleet.add_replica(f"r{act.seq:05d}", ready_at_s=0.0)
        act.seq += 1
    last = reqs[-1].arrival_s if reqs else 0.0
    end = end_s if end_s is not None else math.ceil((last + WINDOW_S) / WINDOW_S) * WINDOW_S
    events: list[tuple[float, int, int]] = []
    timeline: list[tuple[float, int, int]] = []
    decisions: list[tuple[float, int, int]] = []
    asleep: list[int] = []
    i, next_decision = 0, 0.0
    for tick in range(1, int(end) + 1):
        now = float(tick)
        while i < len(reqs) and reqs[i].arrival_s < now:
            fleet.submit(reqs[i])
            i += 1
        fleet.advance(now)
        act.reap(now)
        if now + 1e-9 >= next_decision:
            view = FleetView(fleet, now, set(act.draining))
            cur = view.current()
            want = max(cfg.min_replicas, min(cfg.max_replicas, policy.step(view)))
            decisions.append((now, cur, want))
            if want != cur:
                events.append((now, cur, want))
                act.apply(now, want)
            next_decision = now + policy.interval_s
        timeline.append((now, len(fleet.awake()), len(fleet.routable())))
        asleep.append(len(fleet.asleep()))
    windows = [_window(fleet, m * WINDOW_S) for m in range(int(end // WINDOW_S))]
    tot = fleet.totals()
    return RunResult(
        policy.name, windows, fleet.gpu_seconds(0.0, end), sum(w.busy_s for w in windows),
        events, timeline, decisions, tot.completed, tot.failed_total,
        dict(fleet.starts), fleet.gpu_seconds_asleep(0.0, end), asleep,
    )  # fmt: skip


def _window(fleet: Fleet, t0: float) -> Window:
    a = fleet.window_stats(t0, t0 + WINDOW_S).aggregate
    return Window(t0, a.arrivals, a.ttft_p95_s, a.itl_p95_s, a.failed, a.busy_seconds, a.gpu_seconds)
