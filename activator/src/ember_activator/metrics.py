"""Every metric the activator exposes, per service. Base units, `_total` on counters."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SVC = ["namespace", "name"]


@dataclass
class Metrics:
    registry: CollectorRegistry
    held: Gauge
    hold_seconds: Histogram
    refused: Counter
    forwarded: Counter
    activations: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            held=Gauge(
                "ember_activator_held_requests", "Requests held, waiting for a replica", SVC, registry=r
            ),
            hold_seconds=Histogram(
                "ember_activator_hold_seconds",
                "Time a request was held before it was forwarded or refused",
                SVC,
                registry=r,
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
            ),
            refused=Counter(
                "ember_activator_refused_total",
                "Requests the activator answered itself, by status code and reason",
                [*SVC, "code", "reason"],
                registry=r,
            ),
            forwarded=Counter(
                "ember_activator_forwarded_total",
                "Requests forwarded to a replica, by the replica's status code",
                [*SVC, "code"],
                registry=r,
            ),
            activations=Counter(
                "ember_activator_activations_total",
                "Times a service at zero got its first held request (demand pushed)",
                SVC,
                registry=r,
            ),
        )
