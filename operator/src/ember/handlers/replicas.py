"""One reconcile pass of an InferenceService: observe pods -> plan -> execute -> status + Events."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus
from ember.handlers.context import OperatorContext
from ember.handlers.status_writer import REPLICAS, apply_owned
from ember.kube import builders, executor, shaping
from ember.kube.views import pod_view
from ember.policy import rollout
from ember.policy.desired import desired_replicas, restore_available
from ember.policy.status import replica_conditions, set_condition
from ember.policy.tenancy import CheckpointGrant, checkpoint_grant

log = logging.getLogger("ember.reconcile")


def _parse_status(raw: Mapping[str, Any]) -> InferenceServiceStatus:
    try:
        return InferenceServiceStatus.model_validate(raw)
    except ValidationError:
        log.warning("unreadable status, starting from an empty one")
        return InferenceServiceStatus()


def in_flight(ctx: OperatorContext, ns: str, name: str, pod: Mapping[str, Any]) -> float | None:
    """The pod's running + waiting requests from the latest observation, or None (unknown). For a
    draining pod only an observation made `metrics_lag_seconds` after the drain began counts: an
    older one predates the pod's removal from the Service."""
    obs = ctx.observations.get((ns, name))
    if obs is None:  # a failed source leaves in_flight_by_pod empty: unknown, never zero
        return None
    meta = pod.get("metadata", {})
    started = (meta.get("annotations") or {}).get(L.DRAIN_STARTED)
    if started and obs.now < datetime.fromisoformat(started).timestamp() + ctx.settings.metrics_lag_seconds:
        return None
    return obs.in_flight_by_pod.get(meta.get("name", ""))


async def _missing_reference(
    ctx: OperatorContext, ns: str, spec: InferenceServiceSpec, admin: shaping.AdminShaping
) -> shaping.Missing | None:
    """The first Secret/ConfigMap (key) the replicas need that does not exist; None when all do or
    when they cannot be read now (the pod then reports it itself)."""
    refs = shaping.references(spec, admin)
    if not refs:
        return None
    try:
        return await asyncio.to_thread(
            shaping.missing, refs, lambda kind, name: ctx.api.data_keys(kind, ns, name)
        )
    except Exception as e:  # e.g. RBAC without get on configmaps: do not block creates on it
        log.warning("references not checked", extra={"error": executor.error_text(e)})
        return None


Emit = Callable[[Mapping[str, Any], str, str, str], None]  # (body, type, reason, message)


def kopf_emit(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message)  # type: ignore[arg-type]


async def reconcile(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    emit: Emit = kopf_emit,
    fresh: InferenceServiceStatus | None = None,
) -> None:
    """`fresh`: the status the autoscaler just wrote in this pass (the body may not show it yet)."""
    meta = body["metadata"]
    ns, name, uid, gen = meta["namespace"], meta["name"], meta["uid"], meta.get("generation")
    now = datetime.now(UTC).replace(microsecond=0)
    prev = fresh if fresh is not None else _parse_status(body.get("status") or {})
    try:
        spec = InferenceServiceSpec.model_validate(body.get("spec") or {})
    except ValidationError as e:
        # The API server enforces the same rules; this is only reachable with a CRD older than the operator.
        msg = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())[:1000]
        conds = set_condition(prev.conditions, "Degraded", True, "InvalidSpec", msg, now, gen)
        await apply_owned(ctx, ns, name, REPLICAS, prev, prev.model_copy(update={"conditions": conds}))
        emit(body, "Warning", "InvalidSpec", msg)
        return

    desired, source = desired_replicas(spec, prev)
    grant = checkpoint_grant(ctx.settings.checkpoint_access(), ns, name, spec)
    granted = grant if isinstance(grant, CheckpointGrant) else None  # a refusal: handlers/checkpoint.py
    admin = ctx.shaping()
    views = [v for p in pods if (v := pod_view(p, in_flight(ctx, ns, name, p))) is not None]
    plan = rollout.plan(
        rollout.Desired(
            desired, builders.template_hash(spec, granted, admin), float(spec.scaling.drain_timeout_seconds)
        ),
        views,
        time.time(),
    )
    missing = await _missing_reference(ctx, ns, spec, admin) if plan.of(rollout.Create) else None
    if missing is not None:  # a pod would wait in CreateContainerConfigError: create none, say why
        plan = dataclasses.replace(
            plan, actions=tuple(a for a in plan.actions if not isinstance(a, rollout.Create))
        )
    target = executor.Target(
        name,
        ns,
        uid,
        spec,
        "restore" if granted is not None and restore_available(spec, prev) else "cold",
        ctx.settings.supervisor_port,
        granted,
        admin,
    )
    outcomes: list[executor.Outcome] = []
    if (ns, name) not in ctx.services_ok:
        ensured = await asyncio.to_thread(executor.ensure_service, ctx.api, target)
        if not any(o.failed for o in ensured):
            ctx.services_ok.add((ns, name))
        outcomes += ensured
    if plan.actions:
        outcomes += await asyncio.to_thread(executor.execute, ctx.api, target, plan)

    conds = replica_conditions(prev.conditions, desired, views, plan, now, gen)
    failed = [o for o in outcomes if o.failed]
    undone = {o.action for o in failed if o.action is not None}
    if failed:
        conds = set_condition(conds, "Degraded", True, failed[0].reason, failed[0].message[:1000], now, gen)
    elif missing is not None:
        was = next((c for c in prev.conditions if c.type == "Degraded"), None)
        if was is None or was.status != "True" or was.message != missing.message:
            emit(body, "Warning", missing.reason, missing.message)  # once, not on every pass
        conds = set_condition(conds, "Degraded", True, missing.reason, missing.message, now, gen)
        if was is not None and was.status == "True" and was.last_transition_time is not None:
            since = was.last_transition_time  # still degraded: the transition time stays
            conds = [
                c.model_copy(update={"last_transition_time": since}) if c.type == "Degraded" else c
                for c in conds
            ]
    after = prev.model_copy(
        update={
            "observed_generation": gen,
            # what exists: a create the API server refused is not a replica (this feeds /scale)
            "replicas": rollout.replicas_after(views, [a for a in plan.actions if a not in undone]),
            "ready_replicas": plan.ready,
            "desired_replicas": desired,
            "selector": builders.selector_string(name),
            "endpoint": builders.endpoint(name, ns),
            "conditions": conds,
        }
    )
    await apply_owned(ctx, ns, name, REPLICAS, prev, after)
    for o in outcomes:
        emit(body, o.type, o.reason, o.message)
        ctx.metrics.actions.labels(o.reason, "failed" if o.failed else "ok").inc()
    ctx.metrics.replicas_desired.labels(ns, name).set(desired)
    ctx.metrics.replicas_ready.labels(ns, name).set(plan.ready)
    if plan.actions:
        log.info(
            "reconciled",
            extra={
                "object": f"{ns}/{name}",
                "desired": desired,
                "source": source,
                "actions": [repr(a) for a in plan.actions],
                "ready": plan.ready,
            },
        )
