"""Status is shared by several writers; each applies (server-side) only the fields it owns."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ember.api.v1alpha1 import InferenceServiceStatus
from ember.handlers.context import OperatorContext

_ALIAS = {name: f.alias or name for name, f in InferenceServiceStatus.model_fields.items()}


@dataclass(frozen=True)
class Owner:
    manager: str  # server-side apply field manager
    fields: tuple[str, ...]  # status fields (python names)
    conditions: tuple[str, ...]  # condition types

    def owned(self, status: InferenceServiceStatus) -> dict[str, Any]:
        d = status.to_k8s()
        out = {_ALIAS[f]: d[_ALIAS[f]] for f in self.fields if _ALIAS[f] in d}
        conds = [c for c in d.get("conditions", []) if c["type"] in self.conditions]
        if conds:
            out["conditions"] = conds
        return out


REPLICAS = Owner(
    "ember-replicas",
    (
        "observed_generation",
        "replicas",
        "ready_replicas",
        "desired_replicas",
        "selector",
        "endpoint",
        "serving_replicas",
        "sleeping_replicas",
        "starting_replicas",
        "draining_replicas",
    ),
    ("Ready", "Progressing", "Degraded"),
)
AUTOSCALER = Owner(
    "ember-autoscaler",
    ("last_decision", "autoscaler", "observed", "start_history"),
    ("MetricsAvailable", "SLOAttainable"),
)
CHECKPOINT = Owner("ember-checkpoint", ("checkpoint",), ("CheckpointReady",))
# WakeFallback is set from a one-off outcome (a wake that failed, one that succeeded): its own manager
# writes it only then, so the replica writer's later passes, whatever status they start from, never
# own it and never drop it (handlers/replicas.wake_fallback)
WAKE = Owner("ember-wake", (), ("WakeFallback",))
LOOP = Owner("ember-loop", (), ("Synced",))  # handlers/steps.py: did every step of the last pass run
WARM_BUFFER = Owner("ember-warm-buffer", ("warm_buffer",), ("WarmBufferReady", "WarmBufferMisconfigured"))


async def apply_owned(
    ctx: OperatorContext,
    ns: str,
    name: str,
    owner: Owner,
    before: InferenceServiceStatus,
    after: InferenceServiceStatus,
) -> None:
    new = owner.owned(after)
    if new != owner.owned(before):
        await asyncio.to_thread(ctx.api.apply_status, ns, name, new, owner.manager)
