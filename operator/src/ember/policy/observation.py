"""What the autoscaler sees at one decision: the input of `ember.policy.autoscale.decide`.

Built by `ember.observe` from Prometheus (in the operator) or by the simulator (in benchmarks). A value
of None means *unknown* (missing, stale or partial data), never zero: the policy must hold, not scale
down, on unknowns.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Observation:
    now: float  # unix seconds (virtual in simulations)
    current_replicas: int  # replicas that exist and are not draining (starting ones included)
    ready_replicas: int  # of those, Ready and serving
    qps: float | None = None  # aggregate request arrival rate over the stable window
    qps_panic: float | None = None  # same over the panic window
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    running: float | None = None  # requests being decoded, total over replicas
    waiting: float | None = None  # requests queued in engines, total
    kv_cache: float | None = None  # mean KV-cache use fraction over ready replicas, 0..1
    in_flight_by_pod: dict[str, float] = field(default_factory=dict)
    metrics_ok: bool = True  # False when the metrics source failed, is stale or lacks data: hold
    # why not ok: PrometheusNotConfigured | PrometheusUnreachable | PrometheusError | NoData | PartialData
    unavailable: str = ""
    missing: tuple[str, ...] = ()  # names of inputs that were unavailable, for the decision record
    time_to_ready_s: float = 60.0  # expected start time of the fastest start path available now
    start_path: str = "cold"  # which path that is: restore | cold | cold+node
    held: int = 0  # requests activators hold for want of a serving replica (api/demand.py), pushed at once

    @property
    def in_flight(self) -> float | None:
        if self.running is None or self.waiting is None:
            return None
        return self.running + self.waiting
