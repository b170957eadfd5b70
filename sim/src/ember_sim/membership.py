"""Which simulated replicas should exist, from the pods Kubernetes reports (pure; no API calls here).

Conventions the simulator relies on (the operator's contract):

- pods of one InferenceService carry ``serving.ember.dev/inferenceservice=<name>`` and
  ``serving.ember.dev/component=replica``;
- a pod gets a simulated replica once its ``Ready`` condition is ``True`` (kwok Stage delays stand
  in for cold-start or restore times) and keeps it until the pod is deleted;
- it takes new requests only while Ready, not terminating, and labelled
  ``serving.ember.dev/serving=true``; the operator sets ``false`` to drain it (in-flight requests
  finish); a pod that loses readiness or starts terminating also stops taking new requests, as it
  would leave the Service's endpoints;
- a deleted pod's replica is removed and its queued and running requests count as failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

LABEL_ISVC = "serving.ember.dev/inferenceservice"
LABEL_COMPONENT = "serving.ember.dev/component"
LABEL_SERVING = "serving.ember.dev/serving"


def label_selector(inferenceservice: str) -> str:
    return f"{LABEL_ISVC}={inferenceservice},{LABEL_COMPONENT}=replica"


@dataclass(frozen=True)
class PodView:
    """What the simulator needs to know about one pod."""

    name: str
    ready: bool
    serving: bool
    terminating: bool = False

    @property
    def routable(self) -> bool:
        return self.ready and self.serving and not self.terminating


@dataclass(frozen=True)
class Action:
    kind: Literal["add", "serving", "remove"]
    replica: str
    serving: bool = False


def pod_view(pod: Any) -> PodView:
    """A PodView from a kubernetes-client V1Pod (attribute access, as the watch stream returns)."""
    meta, status = pod.metadata, pod.status
    conditions = (status.conditions if status is not None else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    labels = meta.labels or {}
    return PodView(
        name=meta.name,
        ready=ready,
        serving=labels.get(LABEL_SERVING) == "true",
        terminating=meta.deletion_timestamp is not None,
    )


def plan_membership(current: Mapping[str, bool], pods: Mapping[str, PodView]) -> list[Action]:
    """Actions that make the fleet (replica id -> in service) match the pods; sorted for determinism."""
    actions: list[Action] = []
    for name in sorted(pods):
        pod = pods[name]
        if name not in current:
            if pod.ready and not pod.terminating:
                actions.append(Action("add", name, pod.routable))
        elif current[name] != pod.routable:
            actions.append(Action("serving", name, pod.routable))
    actions.extend(Action("remove", rid) for rid in sorted(current) if rid not in pods)
    return actions
