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

Sleeping replicas (``ember_sim.sleep``; the operator does not park pods yet, so the simulator models
it on the pods' own lifecycle, behind a ``SleepPlanner``): when a pod is deleted, its replica is
parked instead (its engine sleeps on its GPU, which stays counted as held) while the planner allows;
when a new pod appears and a replica is asleep, that replica is woken to stand for the new pod and
takes its traffic after the measured wake time, Ready or not (kwok's Ready delay stands in for a
restore or a cold start, which a wake does not pay); a replica asleep longer than
``deleteAfterSeconds`` is removed. Once the operator parks and wakes pods itself, this planner is
the seam to replace with the operator's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Literal

from ember_sim.sleep import Sleeper, SleepPlanner

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
    kind: Literal["add", "serving", "remove", "park", "wake"]
    replica: str
    serving: bool = False
    as_pod: str | None = None  # wake: the new pod the woken replica stands for


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


def plan_membership(
    current: Mapping[str, bool],
    pods: Mapping[str, PodView],
    asleep: Mapping[str, Sleeper] | None = None,
    planner: SleepPlanner | None = None,
    woken: Set[str] = frozenset(),
    now_s: float = 0.0,
) -> list[Action]:
    """Actions that make the fleet (awake replica id -> in service) match the pods; deterministic.

    Without a planner (or with sleeping off) a deleted pod's replica is removed. `woken`: replicas
    that stand for pods through a wake, so in service while labelled serving, Ready or not."""
    sleepers = dict(asleep or {})
    actions: list[Action] = []
    for rid in planner.expired(sleepers, now_s) if planner is not None else []:
        actions.append(Action("remove", rid))
        del sleepers[rid]
    for name in sorted(pods):
        pod = pods[name]
        if name not in current:
            if pod.terminating:
                continue
            # a pod that reuses a sleeper's name (the operator takes the smallest free index) wakes it
            sleeper = name if name in sleepers else planner.wake(sleepers) if planner is not None else None
            if sleeper is not None:
                actions.append(Action("wake", sleeper, pod.serving, as_pod=name))
                del sleepers[sleeper]
            elif pod.ready:
                actions.append(Action("add", name, pod.routable))
            continue
        routable = pod.serving and not pod.terminating if name in woken else pod.routable
        if current[name] != routable:
            actions.append(Action("serving", name, routable))
    n_asleep = len(sleepers)
    for rid in sorted(current):
        if rid in pods:
            continue
        if planner is not None and planner.park(n_asleep):
            actions.append(Action("park", rid))
            n_asleep += 1
        else:
            actions.append(Action("remove", rid))
    return actions
