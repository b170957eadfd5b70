"""Every supervisor metric, in one place, on a registry of its own (tests make their own)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


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
