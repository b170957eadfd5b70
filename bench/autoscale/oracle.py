"""The oracle: knows the future, so it gives the floor of GPU-hours that meets the SLO.

1. Search, minute by minute: for minute m, the fewest replicas n(m) (in [min, max]) with which the
   same simulator meets the SLO in that minute (TTFT and ITL p95 within target, no failure), the
   replicas ready from the minute's start and the previous 30 s of arrivals replayed as warm-up so the
   minute does not start empty. The search starts from n(m-1) and walks down while the SLO holds, or
   up until it holds.
2. Schedule: at time t the oracle wants max(n(minute(t)), n(minute(t + T))): a replica is created T
   (time-to-ready) before the minute that needs it, so it starts exactly like the other policies'
   replicas and pays for its start; it is drained when neither the current nor the coming minute
   needs it.
3. Verify: the schedule is replayed whole through the same harness; minutes that still miss (a
   boundary effect of step 1) get one more replica, with the minute before them, and the replay is
   repeated (at most 6 times); the table says how many windows the oracle still misses.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ember_sim.fleet import Fleet
from ember_sim.records import Request

from bench.autoscale.harness import WINDOW_S, FleetView, RunConfig, RunResult, run

WARMUP_S = 30.0
REPAIRS = 6


def minute_ok(reqs: Sequence[Request], starts: list[float], m: int, n: int, cfg: RunConfig) -> bool:
    t0 = m * WINDOW_S
    lo, hi = bisect.bisect_left(starts, t0 - WARMUP_S), bisect.bisect_left(starts, t0 + WINDOW_S)
    fleet = Fleet(cfg.params, queue_timeout_s=cfg.queue_timeout_s)
    for k in range(n):
        fleet.add_replica(f"o{k}", ready_at_s=0.0)
    for r in reqs[lo:hi]:
        fleet.submit(r)
    fleet.advance(t0 + WINDOW_S)
    a = fleet.window_stats(t0, t0 + WINDOW_S).aggregate
    return (
        a.failed == 0
        and (a.ttft_p95_s is None or a.ttft_p95_s <= cfg.ttft_target_s)
        and (a.itl_p95_s is None or a.itl_p95_s <= cfg.itl_target_s)
    )


def search(reqs: Sequence[Request], cfg: RunConfig, minutes: int) -> list[int]:
    starts = [r.arrival_s for r in reqs]
    lo_n = max(1, cfg.min_replicas)
    out: list[int] = []
    n = lo_n
    for m in range(minutes):
        if minute_ok(reqs, starts, m, n, cfg):
            while n > lo_n and minute_ok(reqs, starts, m, n - 1, cfg):
                n -= 1
        else:
            while n < cfg.max_replicas and not minute_ok(reqs, starts, m, n + 1, cfg):
                n += 1
            n = min(cfg.max_replicas, n + 1)
        out.append(n)
    return out


@dataclass
class OraclePolicy:
    per_minute: list[int]
    time_to_ready_s: float
    name: str = "oracle"
    interval_s: float = 1.0
    log: list[int] = field(default_factory=list)

    def need(self, t: float) -> int:
        m = min(len(self.per_minute) - 1, max(0, int(t // WINDOW_S)))
        return self.per_minute[m]

    def step(self, v: FleetView) -> int:
        # a replica created now is ready at now + T: it must exist T before the minute needing it
        return max(self.need(v.now), self.need(v.now + self.time_to_ready_s))


def oracle(reqs: Sequence[Request], cfg: RunConfig, end_s: float) -> tuple[RunResult, list[int]]:
    minutes = math.ceil(end_s / WINDOW_S)
    plan = search(reqs, cfg, minutes)
    result = run(OraclePolicy(plan, cfg.time_to_ready_s), reqs, _initial(cfg, plan), end_s)
    for _ in range(REPAIRS):
        bad = [int(w.t0 // WINDOW_S) for w in result.counted() if not w.ok(cfg)]
        if not bad:
            break
        for m in bad:  # the minute and the one before it (its drains and queue carry over)
            for k in {max(0, m - 1), m}:
                plan[k] = min(cfg.max_replicas, plan[k] + 1)
        result = run(OraclePolicy(plan, cfg.time_to_ready_s), reqs, _initial(cfg, plan), end_s)
    return result, plan


def _initial(cfg: RunConfig, plan: list[int]) -> RunConfig:
    first = max(plan[: 1 + int(cfg.time_to_ready_s // WINDOW_S)])
    return RunConfig(**{**cfg.__dict__, "initial_replicas": first})


def idle_ttft_s(prompt_tokens: int, cfg: RunConfig) -> float:
    """TTFT of a prompt alone on an idle replica: its chunked-prefill steps, nothing else in the batch."""
    p, left, t = cfg.params, prompt_tokens, 0.0
    while left > 0:
        chunk = min(left, p.max_num_batched_tokens)
        t, left = t + p.step_s(0, chunk), left - chunk
    return t


def attainable(reqs: Sequence[Request], cfg: RunConfig, plan: list[int], result: RunResult) -> list[bool]:
    """Per window: can the SLO be met at all? No when the p95 of its requests' idle TTFT (intrinsic
    latency, no queueing, no batch) is over the target, or when the oracle needed maxReplicas and the
    minute still misses at maxReplicas."""
    starts = [r.arrival_s for r in reqs]
    out = []
    for m, w in enumerate(result.windows):
        lo, hi = bisect.bisect_left(starts, w.t0), bisect.bisect_left(starts, w.t0 + WINDOW_S)
        idle = sorted(idle_ttft_s(r.prompt_tokens, cfg) for r in reqs[lo:hi])
        intrinsic = idle[min(len(idle) - 1, math.ceil(0.95 * len(idle)) - 1)] if idle else 0.0
        ok = intrinsic <= cfg.ttft_target_s
        if ok and m < len(plan) and plan[m] >= cfg.max_replicas:
            ok = minute_ok(reqs, starts, m, cfg.max_replicas, cfg)
        out.append(ok)
    return out
