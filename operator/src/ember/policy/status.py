"""Status and conditions, computed purely from the plan and the pods.

Conditions follow Kubernetes conventions: `lastTransitionTime` changes only when `status` flips;
reason is CamelCase; Ready, Progressing and Degraded are always present once reconciled.
"""

from __future__ import annotations

from datetime import datetime

from ember.api.v1alpha1 import Condition
from ember.policy.rollout import Plan, PodView


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; the transition time moves only on a status flip."""
    s = "Unknown" if status is None else ("True" if status else "False")
    out, found = [], False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        moved = c.status != s
        out.append(
            Condition(
                type=type_,
                status=s,
                reason=reason,
                message=message,
                last_transition_time=now
                if moved or c.last_transition_time is None
                else c.last_transition_time,
                observed_generation=generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=s,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return out


def replica_conditions(
    conditions: list[Condition],
    desired: int,
    pods: list[PodView],
    p: Plan,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    ready = p.ready
    if desired == 0:
        ok, reason = p.current == 0, "ScaledToZero"
        msg = "no replicas wanted"
    else:
        ok = ready >= desired
        reason = "ReplicasReady" if ok else "ReplicasNotReady"
        msg = f"{ready}/{desired} replicas ready"
    conds = set_condition(conditions, "Ready", ok, reason, msg, now, generation)

    if p.actions or p.rolling or ready < min(desired, p.current):
        creates = sum(1 for a in p.actions if type(a).__name__ == "Create")
        removes = len(p.actions) - creates
        why = (
            "RollingOut"
            if p.rolling
            else ("ScalingUp" if creates else ("ScalingDown" if removes else "Starting"))
        )
        conds = set_condition(
            conds, "Progressing", True, why, f"{creates} to create, {removes} to remove", now, generation
        )
    else:
        conds = set_condition(
            conds, "Progressing", False, "Converged", f"{p.current} replicas", now, generation
        )

    stuck = [x for x in pods if x.unschedulable and not x.terminating]
    if stuck:
        conds = set_condition(
            conds,
            "Degraded",
            True,
            "Unschedulable",
            f"{len(stuck)} replica(s) cannot be scheduled: {stuck[0].unschedulable}",
            now,
            generation,
        )
    else:
        conds = set_condition(conds, "Degraded", False, "AsExpected", "", now, generation)
    return conds
