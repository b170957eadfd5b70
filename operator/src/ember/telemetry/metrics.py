"""Every metric the operator exposes, in one place. Base units, `_total` on counters, `ember_` prefix.

Metrics live in a registry passed in (tests use their own), never in the global default at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry
    reconciles: Counter
    reconcile_seconds: Histogram
    step_failures: Counter
    actions: Counter
    replicas_desired: Gauge
    replicas_ready: Gauge
    decisions: Counter
    metrics_available: Gauge
    buffer_placeholders: Gauge
    buffer_preemptions: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            reconciles=Counter("ember_reconciles_total", "Reconcile passes", ["result"], registry=r),
            reconcile_seconds=Histogram(
                "ember_reconcile_duration_seconds",
                "Time of one reconcile pass",
                registry=r,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            step_failures=Counter(
                "ember_reconcile_step_failures_total",
                "Steps of a reconcile pass (autoscale, replicas, buffer, checkpoint) that raised",
                ["step"],
                registry=r,
            ),
            actions=Counter(
                "ember_replica_actions_total", "Replica actions applied", ["action", "result"], registry=r
            ),
            replicas_desired=Gauge(
                "ember_replicas_desired", "Desired replicas", ["namespace", "name"], registry=r
            ),
            replicas_ready=Gauge("ember_replicas_ready", "Ready replicas", ["namespace", "name"], registry=r),
            decisions=Counter(
                "ember_scaling_decisions_total",
                "Autoscaler decisions by reason",
                ["namespace", "name", "reason", "mode"],
                registry=r,
            ),
            metrics_available=Gauge(
                "ember_metrics_available",
                "1 when the autoscaler has the metrics it needs, else 0; reason as in the MetricsAvailable "
                "condition (ScaledToZero and NoReadyReplicas: nothing to measure, not a fault)",
                ["namespace", "name", "reason"],
                registry=r,
            ),
            buffer_placeholders=Gauge(
                "ember_warm_buffer_placeholders",
                "Warm-buffer placeholders by state (desired, held, pending)",
                ["namespace", "name", "state"],
                registry=r,
            ),
            buffer_preemptions=Counter(
                "ember_warm_buffer_preemptions_total",
                "Placeholders taken over by serving replicas",
                ["namespace", "name"],
                registry=r,
            ),
        )
