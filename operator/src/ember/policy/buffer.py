"""Warm-buffer sizing and the placeholder plan. Pure: data in, data out, time as an input.

What the buffer is
------------------
Placeholder pods, one per idle *replica slot*: each asks for exactly one replica's GPUs, CPU and memory
on the service's GPU type, at a PriorityClass below the serving replicas'. A new replica that finds no
free GPU preempts a placeholder (the real kube-scheduler does it) and starts on an already-provisioned
node at once; the operator recreates the placeholder, which stays Pending until the cluster autoscaler
(or Karpenter) adds a node. That Pending pod is the autoscaler's scale-up signal.

Sizing (`size`)
---------------
Let g = GPUs per replica, F = idleGPUs (static floor), M = maxIdleGPUs (cost cap).

* floor  = ceil(F / g) placeholders; cap = floor(M / g) placeholders (the cap wins over the floor:
  it is the cost limit, "never hold more idle GPUs than this").
* static: size = min(floor, cap).
* adaptive: enough idle replicas to absorb the demand growth expected while a new node is provisioned,
  at confidence p. This is the *safety stock* of inventory theory, where the buffer must cover demand
  variability over the replenishment lead time L:

      SS = z_p * sigma_d * sqrt(L)

  (Silver, Pyke & Thomas, "Inventory and Production Management in Supply Chains", 4th ed., ch. 6;
  the same z * sigma * sqrt(lead time) rule is what the cluster-autoscaler overprovisioning guides
  approximate with a fixed pause-pod count). Here the stock is replica capacity, the lead time is
  L = nodeProvisionSeconds, and demand is the arrival rate lambda(t) (qps). Modelling lambda as a
  random walk, its change over L has standard deviation sigma * sqrt(L), where sigma^2 is the
  variance of the rate change per second, estimated from recent samples (t_i, q_i) as

      sigma^2 = mean_i( (q_i - q_{i-1})^2 / (t_i - t_{i-1}) )

  (the second moment about zero, not the variance about the mean: a steady ramp is demand growth the
  buffer must absorb too, and scaling every deviation by k scales sigma by exactly k, so more
  variability never gives a smaller buffer). With c = qps one replica serves (capacityPerReplica from
  the autoscaler's decision inputs, else spec.scaling.targetQPSPerReplica):

      adaptive = ceil( z_p * sigma * sqrt(L) / c )        z_p = Phi^-1(p), p = confidence
      size     = min(cap, max(floor, adaptive))

  Without a capacity or with fewer than MIN_INCREMENTS rate changes the policy falls back to static and
  says so (reason AdaptiveFallback). Samples older than WINDOW_S, or beyond MAX_SAMPLES, are forgotten,
  so a burst stops inflating the buffer once it ages out and steady traffic shrinks it back.

The placeholder plan (`plan`)
-----------------------------
Names are `<service>-buffer-<i>` with the smallest free index (as the replica planner: a second create
of the same name gets 409, so a stale cache or a restart never duplicates). Placeholders of another
shape (spec hash) are deleted and replaced. Surplus is deleted Pending-first (a Pending placeholder
holds nothing), then newest first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from ember.api.v1alpha1 import WarmBuffer

WINDOW_S = 900.0  # 15 min of rate history: several node-provisioning times, short enough to forget a burst
MAX_SAMPLES = 120  # bounds status size (one [t, qps] pair each)
MIN_SAMPLE_INTERVAL_S = 5.0  # the autoscaler's default decision interval: one sample per decision
MIN_INCREMENTS = 3  # fewer rate changes than this say nothing about variability


@dataclass(frozen=True)
class Sizing:
    """How many placeholders to hold, and why (for status, the condition and the log line)."""

    placeholders: int
    reason: str  # Static | Adaptive | AdaptiveFallback | Capped | Disabled
    message: str
    floor: int = 0
    cap: int = 0
    adaptive: int | None = None  # the adaptive estimate before floor and cap, when computed
    sigma_qps: float | None = None  # estimated sigma of the qps change over nodeProvisionSeconds


def record_sample(
    samples: Sequence[Sequence[float]],
    now: float,
    qps: float | None,
    *,
    min_interval_s: float = MIN_SAMPLE_INTERVAL_S,
    window_s: float = WINDOW_S,
    max_samples: int = MAX_SAMPLES,
) -> list[list[float]]:
    """The bounded [t, qps] history with `qps` observed at `now` added (at most one per interval)."""
    out = [[float(t), float(q)] for t, q in samples if now - window_s <= t <= now]
    if (
        qps is not None
        and math.isfinite(qps)
        and qps >= 0
        and (not out or now - out[-1][0] >= min_interval_s)
    ):
        out.append([float(now), float(qps)])
    return out[-max_samples:]


def rate_sigma(samples: Sequence[Sequence[float]]) -> tuple[float, int]:
    """(sigma of the qps change per sqrt(second), number of increments used). See the module docstring."""
    acc, n = 0.0, 0
    for (t0, q0), (t1, q1) in itertools.pairwise(samples):
        dt = t1 - t0
        if dt <= 0:
            continue
        acc += (q1 - q0) ** 2 / dt
        n += 1
    return (math.sqrt(acc / n) if n else 0.0), n


def bounds(wb: WarmBuffer, gpus_per_replica: int) -> tuple[int, int]:
    """(floor, cap) in placeholders."""
    g = max(1, gpus_per_replica)
    cap = wb.max_idle_gpus // g
    return min(math.ceil(wb.idle_gpus / g), cap), cap


def size(
    wb: WarmBuffer,
    gpus_per_replica: int,
    samples: Sequence[Sequence[float]],
    capacity_per_replica: float | None,
) -> Sizing:
    """Placeholders to hold for one InferenceService (module docstring: the formula and its source)."""
    if not wb.enabled:
        return Sizing(0, "Disabled", "warmBuffer.enabled is false")
    floor, cap = bounds(wb, gpus_per_replica)
    g = max(1, gpus_per_replica)
    static_msg = f"static floor {wb.idle_gpus} idle GPUs = {floor} placeholder(s) of {g} GPU(s)"
    if wb.policy == "static":
        return Sizing(floor, "Static", static_msg, floor, cap)
    if capacity_per_replica is None or not capacity_per_replica > 0:
        why = "no capacityPerReplica in status.lastDecision.inputs and no scaling.targetQPSPerReplica"
        return Sizing(floor, "AdaptiveFallback", f"{why}: {static_msg}", floor, cap)
    sigma, n = rate_sigma(samples)
    if n < MIN_INCREMENTS:
        why = f"{n} qps change(s) observed, need {MIN_INCREMENTS}"
        return Sizing(floor, "AdaptiveFallback", f"{why}: {static_msg}", floor, cap)
    z = NormalDist().inv_cdf(wb.confidence)
    sigma_l = sigma * math.sqrt(wb.node_provision_seconds)
    adaptive = max(0, math.ceil(z * sigma_l / capacity_per_replica - 1e-9))
    want = max(floor, adaptive)
    n_out = min(cap, want)
    msg = (
        f"z({wb.confidence:g})={z:.2f} x sigma {sigma_l:.2f} qps over {wb.node_provision_seconds}s"
        f" / {capacity_per_replica:g} qps per replica = {adaptive}; floor {floor}, cap {cap}"
    )
    return Sizing(n_out, "Capped" if want > cap else "Adaptive", msg, floor, cap, adaptive, sigma_l)


# ------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class PlaceholderView:
    """What the planner needs to know of one placeholder pod."""

    name: str
    index: int
    uid: str
    spec_hash: str
    created: float  # unix seconds
    scheduled: bool = False  # bound to a node: it holds its GPUs
    ready: bool = False
    terminating: bool = False
    preempted: bool = False  # DisruptionTarget condition with reason PreemptionByScheduler


@dataclass(frozen=True)
class CreatePlaceholder:
    index: int


@dataclass(frozen=True)
class DeletePlaceholder:
    name: str
    reason: str


@dataclass(frozen=True)
class BufferPlan:
    actions: list[CreatePlaceholder | DeletePlaceholder] = field(default_factory=list)
    held: int = 0  # placeholders (kept) that hold a GPU now
    pending: int = 0  # placeholders (kept) waiting for capacity


def plan(desired: int, spec_hash: str, pods: Sequence[PlaceholderView]) -> BufferPlan:
    """Converge to `desired` placeholders of shape `spec_hash` (module docstring: the algorithm)."""
    live = [p for p in pods if not p.terminating]
    stale = [p for p in live if p.spec_hash != spec_hash]
    keep = [p for p in live if p.spec_hash == spec_hash]
    actions: list[CreatePlaceholder | DeletePlaceholder] = [
        DeletePlaceholder(p.name, "outdated") for p in stale
    ]
    if len(keep) > desired:
        # Pending ones first (they hold nothing), then the newest: the oldest have pre-staged the most.
        order = sorted(keep, key=lambda p: (p.scheduled, -p.created, -p.index))
        surplus = order[: len(keep) - desired]
        actions += [DeletePlaceholder(p.name, "surplus") for p in surplus]
        gone = {p.name for p in surplus}
        keep = [p for p in keep if p.name not in gone]
    taken = {p.index for p in pods}
    free = (i for i in range(len(pods) + desired + 1) if i not in taken)
    actions += [CreatePlaceholder(next(free)) for _ in range(desired - len(keep))]
    held = sum(p.scheduled for p in keep)
    return BufferPlan(actions, held, len(keep) - held)
