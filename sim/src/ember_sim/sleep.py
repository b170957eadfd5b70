"""Sleeping replicas in the simulator: the measured times, the bound, and the park/wake choice (pure).

A replica that a scale-down would delete is *parked* instead (its engine sleeps on its GPU) while
fewer than ``max_sleeping`` replicas are asleep; one asleep longer than ``delete_after_s`` is deleted.
A scale-up wakes a sleeping replica before it restores or cold-starts one. A sleeping replica holds
its GPU: the fleet counts its GPU-seconds as held (``Fleet.gpu_seconds`` runs from creation to
removal, asleep or not; ``Fleet.gpu_seconds_asleep`` is the asleep share).

The fields mirror the InferenceService API that the operator's Park/Wake planner reads
(``spec.scaling.sleep.maxSleeping``, default 0 = off; ``deleteAfterSeconds``, default 1800;
``tier: level1`` on GPU). :class:`SleepPlanner` is the seam: the simulator's own rule lives here,
used by the benchmark's actuator (``bench/autoscale/harness.py``) and by the cluster-mode membership
(``ember_sim.membership``); it can later be replaced by a call to the operator's planner without
touching the fleet, which only carries out ``park`` / ``wake`` / ``remove``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class SleepTimes(BaseModel):
    """How long sleeping and waking take on the GPU (vLLM sleep level 1 through Ember's supervisor)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wake_to_first_token_s: float = Field(
        default=0.408,
        gt=0,
        description=(
            "Sleep L1 -> `POST /wake` -> first token, one H200, 8B bf16, through Ember's supervisor: "
            "median 0.408 s [0.394-0.429], n=5, 2026-12-01 (docs/benchmarks-gpu.md, "
            "docs/bench-data/gpu-2026-12-01-sleep/supervisor_sleep.json)."
        ),
    )
    first_sleep_s: float = Field(
        default=9.16,
        ge=0,
        description=(
            "An engine's first `POST /sleep {level: 1}`: 9.16 s (n=1, same run; it pins 16 GB of "
            "host memory for the weights' copy)."
        ),
    )
    sleep_s: float = Field(
        default=0.452,
        ge=0,
        description="Later sleeps of the same engine: median 0.452 s [0.440-0.463], n=4, same run.",
    )


@dataclass(frozen=True)
class SleepConfig:
    """``spec.scaling.sleep`` as the simulator models it (tier level1 only: the one measured; its
    times are the fleet's ``SleepTimes``)."""

    max_sleeping: int = 0  # 0: off, every scale-down deletes
    delete_after_s: float = 1800.0
    tier: Literal["level1"] = "level1"

    def __post_init__(self) -> None:
        if self.max_sleeping < 0:
            raise ValueError("max_sleeping must be >= 0")
        if self.delete_after_s <= 0:
            raise ValueError("delete_after_s must be > 0")

    @property
    def enabled(self) -> bool:
        return self.max_sleeping > 0


@dataclass(frozen=True)
class Sleeper:
    """One sleeping replica: when it was parked, and when its engine is fully asleep (wakeable)."""

    replica: str
    since_s: float
    asleep_at_s: float


class SleepPlanner(Protocol):
    """The park/wake decisions; the fleet and the membership layers only carry them out."""

    def park(self, asleep: int) -> bool:
        """A replica leaves (drain done): park it (True) or delete it (False)?"""
        ...

    def wake(self, sleepers: Mapping[str, Sleeper]) -> str | None:
        """A replica is wanted: which sleeping one to wake, or None (then restore or cold start)."""
        ...

    def expired(self, sleepers: Mapping[str, Sleeper], now_s: float) -> list[str]:
        """Sleeping replicas to delete now."""
        ...


@dataclass(frozen=True)
class SimSleepPlanner:
    """The simulator's rule: park while under the bound; wake the most recently parked; delete the
    ones asleep longer than ``delete_after_s``.

    Waking the newest leaves the oldest asleep, which reach ``delete_after_s`` first, so held GPU
    time ends sooner than waking the oldest would.
    """

    config: SleepConfig

    def park(self, asleep: int) -> bool:
        return asleep < self.config.max_sleeping

    def wake(self, sleepers: Mapping[str, Sleeper]) -> str | None:
        if not sleepers:
            return None
        return max(sleepers.values(), key=lambda s: (s.since_s, s.replica)).replica

    def expired(self, sleepers: Mapping[str, Sleeper], now_s: float) -> list[str]:
        limit = self.config.delete_after_s
        return sorted(r for r, s in sleepers.items() if now_s - s.since_s >= limit - 1e-9)
