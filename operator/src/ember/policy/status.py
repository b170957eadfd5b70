"""Status and conditions, computed purely from the plan and the pods.

Conditions follow Kubernetes conventions: `lastTransitionTime` changes only when `status` flips;
reason is CamelCase; Ready, Progressing and Degraded are always present once reconciled.
"""

from __future__ import annotations

from datetime import datetime

from ember.api.v1alpha1 import Condition
from ember.policy.observation import Observation
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
    failing = [x for x in pods if x.failing and not x.ready and not x.terminating]
    if failing and not stuck:  # e.g. an image without vLLM: the supervisor's one line, not a silent loop
        conds = set_condition(
            conds,
            "Degraded",
            True,
            "ReplicaFailing",
            f"{len(failing)} replica(s) failing; {failing[0].name}: {failing[0].failing}",
            now,
            generation,
        )
    elif stuck:
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


METRICS_REASONS = (
    "MetricsFresh",
    "PrometheusNotConfigured",
    "QueryOverridesNotAllowed",
    "PrometheusUnreachable",
    "PrometheusError",
    "NoData",
    "PartialData",
    "NoReadyReplicas",
    "ScaledToZero",
    "MetricsUnavailable",
)


def metrics_condition(obs: Observation, desired: int) -> tuple[bool, str, str]:
    """MetricsAvailable as (status, reason, message). Prometheus answering with no series for this
    service is not "available". With no replica wanted and none there, no data is what is expected:
    reason `ScaledToZero`, and with replicas that are all still starting, `NoReadyReplicas`, so an
    alert on the condition can tell those from a scrape that does not reach running replicas
    (`NoData`) or a Prometheus that is down (`PrometheusUnreachable`, `PrometheusError`)."""
    if obs.metrics_ok:
        return True, "MetricsFresh", ""
    reason = obs.unavailable or "MetricsUnavailable"
    if reason == "NoData" and obs.current_replicas == 0 and desired == 0:
        return False, "ScaledToZero", "no replicas wanted or running: nothing to measure"
    if reason in ("NoData", "PartialData") and obs.ready_replicas == 0:
        return (
            False,
            "NoReadyReplicas",
            f"{obs.current_replicas} replica(s), none Ready yet: nothing to measure",
        )
    detail = "; ".join(obs.missing)
    if reason == "NoData":
        detail = (
            f"Prometheus answered with no series for this service's {obs.ready_replicas} Ready replica(s) "
            f"(missing: {detail}); check that the scrape reaches them with the labels namespace and "
            "inferenceservice"
        )
    return False, reason, detail[:1000]
