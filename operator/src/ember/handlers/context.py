"""Per-process operator context: the API client, settings, metrics, and per-object wake-ups and locks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ember.config import Settings
from ember.kube.client import KubeAPI
from ember.kube.shaping import AdminShaping
from ember.observe.bulk import BulkQueries
from ember.observe.prometheus import Prometheus
from ember.policy.observation import Observation
from ember.telemetry.metrics import Metrics

Key = tuple[str, str]  # (namespace, name)


@dataclass
class OperatorContext:
    settings: Settings
    api: KubeAPI
    metrics: Metrics
    _wake: dict[Key, asyncio.Event] = field(default_factory=dict)
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    services_ok: set[Key] = field(default_factory=set)  # Services known to exist (cleared on delete)
    prometheus: Prometheus | None = None
    bulk: BulkQueries | None = None  # the shared per-interval metrics fetch (observe/bulk.py)
    last_decision: dict[Key, float] = field(default_factory=dict)  # monotonic-ish unix time of last decide
    observations: dict[Key, Observation] = field(default_factory=dict)  # latest, for drains
    checkpoint_attempts: dict[Key, tuple[float, int]] = field(default_factory=dict)  # (last try, failures)
    checkpoint_tasks: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    failing_steps: dict[Key, frozenset[str]] = field(default_factory=dict)  # as last written (Synced)
    buffer_store: Any = None  # the warm-buffer loop's per-object memory (handlers/buffer.py)
    routes: dict[Key, tuple[dict[str, Any], float]] = field(default_factory=dict)  # slice applied, when
    activator_cache: tuple[float, list[Any]] | None = None  # (read at, activator endpoints)
    identity: str = ""  # this process (kube/leader.py's Lease holder name): every Event's reportingInstance

    def shaping(self) -> AdminShaping:
        """The admin's pod shaping (chart values replicaDefaults, gpuTypeLabel, supervisorImage)."""
        return AdminShaping(
            self.settings.replica_defaults,
            self.settings.gpu_type_label,
            self.settings.supervisor_image,
            self.settings.model_cache_host_path,
            self.settings.model_cache_persistent_volume_claim,
        )

    def wake_event(self, key: Key) -> asyncio.Event:
        return self._wake.setdefault(key, asyncio.Event())

    def wake(self, key: Key) -> None:
        """Ask the object's loop to reconcile now (a pod or the object itself changed)."""
        self.wake_event(key).set()

    def lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def forget(self, key: Key) -> None:
        self._wake.pop(key, None)
        self._locks.pop(key, None)
        self.services_ok.discard(key)
        self.last_decision.pop(key, None)
        self.observations.pop(key, None)
        self.checkpoint_attempts.pop(key, None)
        self.failing_steps.pop(key, None)
        self.routes.pop(key, None)
        task = self.checkpoint_tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if self.buffer_store is not None:
            self.buffer_store.objects.pop(key, None)
