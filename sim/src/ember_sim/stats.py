"""Window statistics over a fleet's append-only records, per replica and in aggregate.

Definitions, for a window [t0, t1):

- ``qps``: requests that arrived (aggregate) or were routed to the replica, divided by t1 - t0.
- ``completed`` / ``failed``: requests that finished, by outcome, inside the window.
- TTFT percentiles: over the requests whose first token came inside the window (as a Prometheus
  histogram observes it), nearest-rank: the smallest value v with weight(x <= v) >= q * total.
- ITL percentiles: over every inter-token gap whose later token came inside the window; a
  ``StepSpan`` of k steps of length d with n decoding sequences contributes the steps that end in the
  window, each with weight n and value d. This is vLLM's ``inter_token_latency_seconds``.
- ``running``, ``waiting``, ``kv_usage``: gauges from the latest sample at or before t1 (each
  ``Fleet.advance`` records one), or the live state when t1 is the fleet's current time.
- ``gpu_seconds``: replica existence overlapping the window; ``busy_seconds``: engine steps
  overlapping it. ``busy_fraction = busy / gpu`` is the utilisation the benchmark reports.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ember_sim.model import EPS_S, Gauges, Replica
from ember_sim.records import RequestRecord, StepSpan

if TYPE_CHECKING:
    from ember_sim.fleet import Fleet, ReplicaSlot


@dataclass(frozen=True)
class WindowStats:
    t0_s: float
    t1_s: float
    arrivals: int
    completed: int
    failed: int
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    itl_p50_s: float | None
    itl_p95_s: float | None
    running: int
    waiting: int
    kv_used_blocks: int
    kv_blocks: int
    gpu_seconds: float
    busy_seconds: float

    @property
    def qps(self) -> float:
        return self.arrivals / (self.t1_s - self.t0_s)

    @property
    def kv_usage(self) -> float:
        return self.kv_used_blocks / self.kv_blocks if self.kv_blocks else 0.0

    @property
    def busy_fraction(self) -> float:
        return self.busy_seconds / self.gpu_seconds if self.gpu_seconds > 0 else 0.0


@dataclass(frozen=True)
class FleetWindow:
    aggregate: WindowStats
    replicas: dict[str, WindowStats]
    fleet_queue: int
    ready_replicas: int
    live_replicas: int


def weighted_quantile(pairs: Iterable[tuple[float, float]], q: float) -> float | None:
    """Nearest-rank quantile of (value, weight) pairs: min v with sum(w | x <= v) >= q * sum(w)."""
    items = sorted(p for p in pairs if p[1] > 0)
    total = sum(w for _, w in items)
    if total <= 0:
        return None
    acc = 0.0
    for v, w in items:
        acc += w
        if acc >= q * total - 1e-12:
            return v
    return items[-1][0]


def count_in(times: Sequence[float], t0: float, t1: float) -> int:
    """How many of the sorted `times` lie in [t0, t1)."""
    return bisect.bisect_left(times, t1) - bisect.bisect_left(times, t0)


def records_in(
    recs: Sequence[RequestRecord], ends: Sequence[float], t0: float, t1: float
) -> list[RequestRecord]:
    return list(recs[bisect.bisect_left(ends, t0) : bisect.bisect_left(ends, t1)])


def span_itl(span: StepSpan, t0: float, t1: float) -> tuple[float, float]:
    """(gap length, weight) of the span's steps ending in [t0, t1): step i ends at start + i d, i = 1..k."""
    d = span.step_s
    first = max(1, math.ceil((t0 - span.start_s) / d - EPS_S))
    last = min(span.steps, math.ceil((t1 - span.start_s) / d - EPS_S) - 1)
    return d, max(0, last - first + 1) * span.decoding


def spans_in(spans: Sequence[StepSpan], t0: float, t1: float) -> list[StepSpan]:
    """Spans overlapping [t0, t1): spans are in time order and do not overlap."""
    lo, hi = 0, len(spans)
    while lo < hi:  # first span ending after t0
        mid = (lo + hi) // 2
        if spans[mid].end_s <= t0:
            lo = mid + 1
        else:
            hi = mid
    out = []
    for sp in spans[lo:]:
        if sp.start_s >= t1:
            break
        out.append(sp)
    return out


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _gauges_at(fleet: Fleet, rid: str, t1: float) -> Gauges | None:
    slot = fleet.slots[rid]
    if abs(t1 - fleet.now_s) <= EPS_S:
        return slot.replica.gauges(fleet.now_s) if slot.removed_s is None else None
    i = bisect.bisect_right([s.t_s for s in fleet.samples], t1 + EPS_S) - 1
    return fleet.samples[i].gauges.get(rid) if i >= 0 else None


def replica_window(
    fleet: Fleet, rid: str, t0: float, t1: float
) -> tuple[WindowStats, list[tuple[float, float]], list[tuple[float, float]]]:
    """Stats of one replica; also returns its raw TTFT and ITL (value, weight) pairs for the aggregate."""
    slot: ReplicaSlot = fleet.slots[rid]
    rep: Replica = slot.replica
    recs = records_in(rep.records, rep.record_end_s, t0, t1)
    i0, i1 = bisect.bisect_left(rep.ttft_at_s, t0), bisect.bisect_left(rep.ttft_at_s, t1)
    ttft = [(v, 1.0) for v in rep.ttft_s[i0:i1]]
    spans = spans_in(rep.spans, t0, t1)
    itl = [span_itl(sp, t0, t1) for sp in spans if sp.decoding]
    g = _gauges_at(fleet, rid, t1) or Gauges(0, 0, 0, 0)
    end = fleet.now_s if slot.removed_s is None else slot.removed_s
    stats = WindowStats(
        t0,
        t1,
        count_in(rep.routed_at_s, t0, t1),
        completed=sum(r.ok for r in recs),
        failed=sum(not r.ok for r in recs),
        ttft_p50_s=weighted_quantile(ttft, 0.5),
        ttft_p95_s=weighted_quantile(ttft, 0.95),
        itl_p50_s=weighted_quantile(itl, 0.5),
        itl_p95_s=weighted_quantile(itl, 0.95),
        running=g.running,
        waiting=g.waiting,
        kv_used_blocks=g.kv_used_blocks,
        kv_blocks=g.kv_blocks,
        gpu_seconds=_overlap(slot.created_s, end, t0, t1),
        busy_seconds=sum(_overlap(sp.start_s, sp.end_s, t0, t1) for sp in spans),
    )
    return stats, ttft, itl


def fleet_window(fleet: Fleet, t0: float, t1: float) -> FleetWindow:
    """Per-replica stats for every replica alive during the window, and their aggregate."""
    if t1 <= t0:
        raise ValueError("empty window")
    per: dict[str, WindowStats] = {}
    ttft: list[tuple[float, float]] = []
    itl: list[tuple[float, float]] = []
    for rid, slot in sorted(fleet.slots.items()):
        end = fleet.now_s if slot.removed_s is None else slot.removed_s
        if slot.created_s >= t1 or end < t0:
            continue
        per[rid], t, i = replica_window(fleet, rid, t0, t1)
        ttft += t
        itl += i
    lost = records_in(fleet.records, fleet.record_end_s, t0, t1)
    queue = _queue_at(fleet, t1)
    vals = per.values()
    agg = WindowStats(
        t0,
        t1,
        count_in(fleet.arrivals_s, t0, t1),
        completed=sum(s.completed for s in vals),
        failed=sum(s.failed for s in vals) + len(lost),
        ttft_p50_s=weighted_quantile(ttft, 0.5),
        ttft_p95_s=weighted_quantile(ttft, 0.95),
        itl_p50_s=weighted_quantile(itl, 0.5),
        itl_p95_s=weighted_quantile(itl, 0.95),
        running=sum(s.running for s in vals),
        waiting=sum(s.waiting for s in vals) + queue,
        kv_used_blocks=sum(s.kv_used_blocks for s in vals),
        kv_blocks=sum(s.kv_blocks for s in vals),
        gpu_seconds=sum(s.gpu_seconds for s in vals),
        busy_seconds=sum(s.busy_seconds for s in vals),
    )
    ready = sum(1 for s in fleet.slots.values() if s.removed_s is None and s.routable(t1))
    live = sum(
        1 for s in fleet.slots.values() if s.created_s <= t1 and (s.removed_s is None or s.removed_s > t1)
    )
    return FleetWindow(agg, per, queue, ready, live)


def _queue_at(fleet: Fleet, t1: float) -> int:
    if abs(t1 - fleet.now_s) <= EPS_S:
        return len(fleet.queue)
    i = bisect.bisect_right([s.t_s for s in fleet.samples], t1 + EPS_S) - 1
    return fleet.samples[i].fleet_queue if i >= 0 else 0
