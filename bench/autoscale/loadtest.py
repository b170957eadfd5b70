"""The load test a user runs before configuring an autoscaler, on the same simulated replica.

One replica, Poisson arrivals at a fixed rate, request shapes drawn (seeded) from the trace being
replayed, 6 minutes of which the first is warm-up. The *edge* is the highest rate (bisection, 10 steps
over [0.05, 40] req/s) at which the p95 TTFT and ITL over the measured 5 minutes stay within target and
nothing fails. Where no rate meets the target (a mix whose long prompts are over the TTFT target on an
idle replica), the edge is where p95 is still within 25% of its value at 0.5 req/s (150 requests,
enough for a p95): what a user reads off the knee of the latency curve. At the edge it reports the mean in-flight requests (running +
waiting, vLLM's `num_requests_running + num_requests_waiting`) and the mean waiting per replica, which
become every baseline's target (and Ember's `targetInFlightPerReplica`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ember_sim.records import Request

from bench.autoscale.harness import FleetView, RunConfig, run

WARMUP_S, MEASURE_S, LO, HI, STEPS = 60.0, 300.0, 0.05, 40.0, 10
KNEE_BASE, KNEE = 0.5, 1.25  # the latency curve's low end (150 requests measured) and the knee over it


@dataclass(frozen=True)
class Edge:
    rate_qps: float
    in_flight: float  # mean running + waiting at the edge
    waiting: float  # mean waiting at the edge
    ttft_p95_s: float
    attainable: bool  # False: no rate met the target; the edge is the knee


@dataclass
class _One:
    name: str = "loadtest"
    interval_s: float = 1.0
    samples: list[tuple[int, int]] = field(default_factory=list)
    last: FleetView | None = None

    def step(self, v: FleetView) -> int:
        if v.now > WARMUP_S:
            self.samples.append(v.running_waiting())
        self.last = v
        return 1


def _at(rate: float, shapes: Sequence[tuple[int, int]], cfg: RunConfig, seed: int) -> tuple[Edge, bool]:
    rng = random.Random(seed)
    reqs: list[Request] = []
    t = rng.expovariate(rate)
    while t < WARMUP_S + MEASURE_S:
        p, g = shapes[rng.randrange(len(shapes))]
        reqs.append(Request(f"lt{len(reqs)}", t, p, g))
        t += rng.expovariate(rate)
    pol = _One()
    one = RunConfig(**{**cfg.__dict__, "initial_replicas": 1, "min_replicas": 1, "max_replicas": 1})
    res = run(pol, reqs, one, WARMUP_S + MEASURE_S)
    assert pol.last is not None
    lat = pol.last.latency(MEASURE_S)
    ttft, itl = lat.ttft_p95_s or 0.0, lat.itl_p95_s or 0.0
    ok = res.failed == 0 and ttft <= cfg.ttft_target_s and itl <= cfg.itl_target_s
    n = max(1, len(pol.samples))
    k = sum(r + w for r, w in pol.samples) / n
    return Edge(rate, k, sum(w for _, w in pol.samples) / n, ttft, True), ok


def edge(reqs: Sequence[Request], cfg: RunConfig, seed: int = 5) -> Edge:
    shapes = [(r.prompt_tokens, r.output_tokens) for r in reqs] or [(1155, 211)]
    base, base_ok = _at(KNEE_BASE, shapes, cfg, seed)
    knee = None if base_ok else base.ttft_p95_s * KNEE

    def good(rate: float) -> tuple[Edge, bool]:
        e, ok = _at(rate, shapes, cfg, seed)
        if knee is not None:
            ok = e.ttft_p95_s <= knee and (e.waiting < 1.0 or ok)
        return e, ok

    lo, hi, best = LO, HI, base if not base_ok else _at(LO, shapes, cfg, seed)[0]
    for _ in range(STEPS):
        mid = (lo * hi) ** 0.5  # bisect on a log scale: the edge can be anywhere from 0.1 to 20 req/s
        e, ok = good(mid)
        if ok:
            lo, best = mid, e
        else:
            hi = mid
    return Edge(best.rate_qps, best.in_flight, best.waiting, best.ttft_p95_s, base_ok)
