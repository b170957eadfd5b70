"""Every supervisor metric, in one place, on a registry of its own (tests make their own)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds; vLLM's level-1 wake is ~0.4 s on an H100, a driver resume ~2 s, a first level-1 sleep ~10 s
SLEEP_WAKE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class SupervisorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.start_path = Counter(
            "ember_supervisor_start_path",
            "Engine starts by the path taken (cold, restore)",
            ["path"],
            registry=r,
        )
        self.phase_seconds = Gauge(
            "ember_supervisor_start_phase_seconds",
            "Seconds spent in each phase of the last start",
            ["phase"],
            registry=r,
        )
        self.restore_failures = Counter(
            "ember_supervisor_restore_failures",
            "Restores that failed and fell back to cold, by reason",
            ["reason"],
            registry=r,
        )
        self.checkpoints = Counter(
            "ember_supervisor_checkpoints",
            "Checkpoints taken, by result (verified, unverified, failed)",
            ["result"],
            registry=r,
        )
        self.checkpoint_seconds = Gauge(
            "ember_supervisor_checkpoint_duration_seconds",
            "Seconds the last POST /checkpoint took",
            registry=r,
        )
        # sleeping replicas (sleep_routes): the operator plans with the wake time from these
        self.engine_state = Gauge(
            "ember_supervisor_engine_state",
            "1 for the engine's current state (starting, serving, sleeping, asleep, waking, failed), else 0",
            ["state"],
            registry=r,
        )
        self.sleep_seconds = Histogram(
            "ember_supervisor_sleep_duration_seconds",
            "POST /sleep: seconds from the call to the engine asleep, by tier",
            ["tier"],
            buckets=SLEEP_WAKE_BUCKETS,
            registry=r,
        )
        self.wake_seconds = Histogram(
            "ember_supervisor_wake_duration_seconds",
            "POST /wake: seconds from the call to the engine answering its health path, by tier",
            ["tier"],
            buckets=SLEEP_WAKE_BUCKETS,
            registry=r,
        )
        # the last successful wake, for the operator's measured wake time (status.startHistory): a
        # gauge per wake, named by its end, where the histogram per pod gives only a mean over wakes
        self.last_wake_seconds = Gauge(
            "ember_supervisor_last_wake_seconds",
            "POST /wake: seconds the last successful wake took",
            registry=r,
        )
        self.last_wake_timestamp = Gauge(
            "ember_supervisor_last_wake_timestamp_seconds",
            "POST /wake: unix time the last successful wake ended",
            registry=r,
        )
        self.sleep_failures = Counter(
            "ember_supervisor_sleep_failures",
            "Sleeps that failed (the engine kept serving, or failed), by reason",
            ["reason"],
            registry=r,
        )
        self.wake_failures = Counter(
            "ember_supervisor_wake_failures",
            "Wakes that failed or timed out, by reason",
            ["reason"],
            registry=r,
        )
