"""The policies compared: Ember's, and two baselines implemented from their documentation.

**HPA driven by KEDA** (Kubernetes HPA v2 docs, "Algorithm details" and "Configurable scaling
behavior"; KEDA docs, "Scaling Deployments", Prometheus scaler):
- the metric is what KServe and llm-d recommend for vLLM: `vllm:num_requests_running +
  vllm:num_requests_waiting` summed over pods (``metric="in_flight"``), or `vllm:num_requests_waiting`
  (``metric="waiting"``), served to the HPA as an external metric of type AverageValue with the
  per-replica target;
- KEDA's default (no `useCachedMetrics`) queries Prometheus at every HPA sync, so the HPA sees a
  fresh value every 15 s (``poll_s=0``); with `useCachedMetrics: true` it serves the value of the last
  `pollingInterval` = 30 s poll (``poll_s=30``, the "cached" variant);
- the HPA controller syncs every 15 s (`--horizontal-pod-autoscaler-sync-period`): ratio =
  metric / (target * current); inside the 10% tolerance it keeps the count, else
  desired = ceil(current * metric / (target * current)) = ceil(metric / target);
- default behaviour: scale-up has no stabilisation and may add max(100%, 4 pods) per 15 s;
  scale-down uses the max recommendation of the last 300 s (stabilizationWindowSeconds) and may
  remove 100% per 15 s.

**Knative KPA** (Knative docs "Configuring the autoscaler", "Configuring scale to zero", and the
KPA algorithm in `pkg/autoscaler/scaling/autoscaler.go`):
- concurrency (in-flight per pod, summed) sampled every second, averaged over the stable window
  (60 s) and the panic window (10% of it, 6 s); the autoscaler ticks every 2 s;
- target per pod = container-concurrency-target x target-utilization (0.7);
- desired stable / panic = ceil(avg / target), bounded by max-scale-up-rate 1000 x ready and
  max-scale-down-rate 2 (at most halving);
- panic starts when desired panic / ready >= panic threshold 200% and ends after a stable window
  without it; in panic the count never decreases;
- scale-down-delay 0 (default), or a delay: the count does not go below the max desired of the
  last `scale-down-delay` seconds (``scale_down_delay_s``); scale to zero after the stable window and the 30 s grace period
  (only if minReplicas is 0).

**Ember**: `ember.policy.autoscale.decide`, called every `decisionIntervalSeconds` with an
`Observation` built from the fleet as the operator builds it from Prometheus. While a replica is
asleep the next start is a wake, so the observation carries the measured wake time and start path
`wake` (issue 16: the autoscaler plans with the wake time when a sleeping replica exists);
``plan_with_wake=False`` keeps the created replicas' path and time instead (a variant the sleeping
benchmark compares).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ember.api.v1alpha1 import AutoscalerState, Decision, InferenceServiceSpec
from ember.policy.autoscale import decide
from ember.policy.observation import Observation

from bench.autoscale.harness import FleetView

LATENCY_WINDOW_S = 30.0  # the p95 the observation carries: histogram rate over the last 30 s


@dataclass
class EmberPolicy:
    spec: InferenceServiceSpec
    time_to_ready_s: float
    start_path: str = "cold"
    name: str = "ember"
    plan_with_wake: bool = True
    state: AutoscalerState = field(default_factory=AutoscalerState)
    log: list[Decision] = field(default_factory=list)

    @property
    def interval_s(self) -> float:
        return float(self.spec.scaling.decision_interval_seconds)

    def observe(self, v: FleetView) -> Observation:
        sc = self.spec.scaling
        lat = v.latency(LATENCY_WINDOW_S)
        running, waiting = v.running_waiting()
        ttr, path = self.time_to_ready_s, self.start_path
        if self.plan_with_wake and v.asleep():
            ttr, path = v.fleet.sleep_times.wake_to_first_token_s, "wake"
        return Observation(
            now=v.now, current_replicas=v.current(), ready_replicas=v.ready(),
            qps=v.qps(sc.stable_window_seconds), qps_panic=v.qps(sc.panic_window_seconds),
            ttft_p95_s=lat.ttft_p95_s, itl_p95_s=lat.itl_p95_s, running=running, waiting=waiting,
            kv_cache=v.kv_cache(), time_to_ready_s=ttr, start_path=path,
        )  # fmt: skip

    def step(self, v: FleetView) -> int:
        decision, self.state = decide(self.spec, self.observe(v), self.state)
        self.log.append(decision)
        return decision.desired_replicas


@dataclass
class HpaKeda:
    target_per_replica: float  # AverageValue target of the metric
    min_replicas: int = 1
    max_replicas: int = 40
    sync_s: float = 15.0
    poll_s: float = 0.0  # 0: a fresh value at every sync (KEDA's default); 30: useCachedMetrics
    metric_name: str = "in_flight"  # or "waiting"
    tolerance: float = 0.1
    down_window_s: float = 300.0
    name: str = "hpa+keda"
    metric: float | None = None
    polled_at: float = -math.inf
    recs: deque[tuple[float, int]] = field(default_factory=deque)

    @property
    def interval_s(self) -> float:
        return self.sync_s

    def step(self, v: FleetView) -> int:
        if v.now - self.polled_at >= self.poll_s - 1e-9:  # KEDA's poll refreshes the cached value
            running, waiting = v.running_waiting()
            value = running + waiting if self.metric_name == "in_flight" else waiting
            self.metric, self.polled_at = float(value), v.now
        cur = v.current()
        assert self.metric is not None
        if cur == 0:
            rec = 1 if self.metric > 0 else 0
        else:
            ratio = self.metric / (self.target_per_replica * cur)
            rec = (
                cur
                if abs(ratio - 1.0) <= self.tolerance
                else math.ceil(self.metric / self.target_per_replica)
            )
        rec = max(self.min_replicas, min(self.max_replicas, rec))
        self.recs.append((v.now, rec))
        while self.recs and self.recs[0][0] <= v.now - self.down_window_s:
            self.recs.popleft()
        # scale-down stabilisation: the highest recommendation of the window;
        # scale-up rate limit: max(100%, 4 pods) per period
        rec = min(cur, max(r for _, r in self.recs)) if rec < cur else min(rec, cur + max(cur, 4))
        return max(self.min_replicas, min(self.max_replicas, rec))


@dataclass
class Kpa:
    target_concurrency: float  # container-concurrency-target per pod
    target_utilization: float = 0.7
    min_replicas: int = 1
    max_replicas: int = 40
    stable_s: float = 60.0
    panic_s: float = 6.0
    panic_threshold: float = 2.0
    max_up_rate: float = 1000.0
    max_down_rate: float = 2.0
    grace_s: float = 30.0
    tick_s: float = 2.0
    scale_down_delay_s: float = 0.0
    name: str = "knative-kpa"
    desired: deque[tuple[float, int]] = field(default_factory=deque)
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    panic_since: float | None = None
    max_panic_pods: int = 0
    zero_since: float | None = None

    @property
    def interval_s(self) -> float:
        return 1.0  # concurrency is sampled every second; the decision itself runs every tick_s

    def step(self, v: FleetView) -> int:
        self.samples.append((v.now, float(v.in_flight())))
        while self.samples and self.samples[0][0] <= v.now - self.stable_s:
            self.samples.popleft()
        cur = v.current()
        if int(v.now) % int(self.tick_s):
            return cur
        target = self.target_concurrency * self.target_utilization
        stable = sum(c for _, c in self.samples) / len(self.samples)
        recent = [c for t, c in self.samples if t > v.now - self.panic_s]
        panic = sum(recent) / len(recent)
        ready = max(1, v.ready())
        lo, hi = math.floor(ready / self.max_down_rate), math.ceil(ready * self.max_up_rate)
        dspc = min(hi, max(lo, math.ceil(stable / target)))
        dppc = min(hi, max(lo, math.ceil(panic / target)))
        over = dppc / ready >= self.panic_threshold
        if over and self.panic_since is None:
            self.panic_since = v.now
        elif over:
            self.panic_since = v.now  # Knative keeps extending panic while over the threshold
        elif self.panic_since is not None and v.now - self.panic_since >= self.stable_s:
            self.panic_since, self.max_panic_pods = None, 0
        if self.panic_since is not None:
            want = max(dppc, self.max_panic_pods, cur)
            self.max_panic_pods = want
        else:
            want = dspc
        if want == 0 and cur > 0:  # scale to zero only after the grace period
            self.zero_since = self.zero_since if self.zero_since is not None else v.now
            if v.now - self.zero_since < self.grace_s:
                want = cur
        else:
            self.zero_since = None
        if self.scale_down_delay_s > 0:  # Knative's scale-down-delay: the max over the delay window
            self.desired.append((v.now, want))
            while self.desired and self.desired[0][0] <= v.now - self.scale_down_delay_s:
                self.desired.popleft()
            want = max(d for _, d in self.desired)
        return max(self.min_replicas, min(self.max_replicas, want))
