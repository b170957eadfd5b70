"""Pure translation of raw pod objects (dicts, as kopf delivers them) into the planner's PodView."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ember.api import labels as L
from ember.policy.rollout import PodView


def _ts(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def pod_view(pod: Mapping[str, Any], in_flight: float | None = None) -> PodView | None:
    meta = pod.get("metadata", {})
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    name = meta.get("name", "")
    suffix = name.rsplit("-", 1)[-1]
    if not suffix.isdigit():
        return None
    status = pod.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conds.get("Ready", {}).get("status") == "True"
    sched = conds.get("PodScheduled", {})
    unschedulable = (
        sched.get("message") or "Unschedulable"
        if sched.get("status") == "False" and sched.get("reason") == "Unschedulable"
        else None
    )
    return PodView(
        name=name,
        index=int(suffix),
        template_hash=labels.get(L.TEMPLATE_HASH, ""),
        created=_ts(meta.get("creationTimestamp")) or 0.0,
        ready=ready,
        serving=labels.get(L.SERVING, "true") == "true",
        terminating=bool(meta.get("deletionTimestamp")),
        drain_started=_ts(ann.get(L.DRAIN_STARTED)),
        in_flight=in_flight,
        unschedulable=unschedulable,
    )
