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
from ember.api.v1alpha1 import Condition, InferenceServiceSpec, InferenceServiceStatus
from ember.handlers.context import OperatorContext
from ember.handlers.status_writer import REPLICAS, WAKE, apply_owned
from ember.kube import builders, executor, shaping
from ember.kube.views import pod_view
from ember.policy import rollout, startpath
from ember.policy.desired import desired_replicas
from ember.policy.status import replica_conditions, set_condition
from ember.policy.tenancy import CheckpointGrant, checkpoint_grant
from ember.replica.client import Replicas, SupervisorError, supervisor_url

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
    """The first Secret/ConfigMap (key) or cache claim the replicas need that does not exist; None when all do or
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


def start_choice(
    ctx: OperatorContext,
    ns: str,
    name: str,
    spec: InferenceServiceSpec,
    status: InferenceServiceStatus,
    sleeping: tuple[str, ...] = (),
) -> startpath.StartChoice:
    """The start path of this service's next replica (policy/startpath.py), with the admin's grant,
    the measured start times in `status.startHistory` and the operator's default times for a path
    not measured yet; every start decision in the operator is this one."""
    granted = isinstance(checkpoint_grant(ctx.settings.checkpoint_access(), ns, name, spec), CheckpointGrant)
    s = ctx.settings
    defaults = startpath.Defaults(
        wake_s=s.wake_seconds, restore_s=s.restore_seconds, cold_s=s.cold_start_seconds
    )
    return startpath.choose(spec, status, granted=granted, sleeping=sleeping,
                            history=startpath.history_of(status), defaults=defaults)  # fmt: skip


async def supervisor_token(ctx: OperatorContext, ns: str, name: str) -> str:
    """The service's supervisor token from the Secret the operator created (executor.ensure_service), for
    every call to the supervisor's POST routes (replica.client.auth_headers)."""
    secret = builders.token_secret_name(name)
    try:
        token = await asyncio.to_thread(ctx.api.read_secret_key, ns, secret, builders.TOKEN_KEY)
    except Exception as e:  # e.g. 403: reported like any failed attempt, with backoff
        raise SupervisorError(f"cannot read Secret {secret}: {type(e).__name__}: {str(e)[:200]}") from e
    if token is None:
        raise SupervisorError(f"Secret {secret} with the supervisor token is missing")
    return token


async def _replicas_client(
    ctx: OperatorContext, ns: str, name: str, pods: Iterable[Mapping[str, Any]], plan: rollout.Plan
) -> Replicas | None:
    """The supervisor client the executor needs for this plan's Park and Wake actions; None when there
    are none, or when the token cannot be read (those actions then fall back: the pod is deleted)."""
    if not (plan.of(rollout.Park) or plan.of(rollout.Wake)):
        return None
    try:
        token = await supervisor_token(ctx, ns, name)
    except SupervisorError as e:
        log.warning("no supervisor token", extra={"object": f"{ns}/{name}", "error": str(e)})
        return None
    port = ctx.settings.supervisor_port
    urls = {
        p["metadata"]["name"]: supervisor_url(ip, port)
        for p in pods
        if (ip := (p.get("status") or {}).get("podIP"))
    }
    return Replicas(urls, token, sleep_timeout_s=ctx.settings.sleep_timeout_seconds,
                    wake_timeout_s=ctx.settings.wake_timeout_seconds)  # fmt: skip


def wake_fallback(
    prev: list[Condition], outcomes: list[executor.Outcome], now: datetime, gen: int | None
) -> list[Condition] | None:
    """The WakeFallback condition after this pass's outcomes, or None when none concerns it. Set from
    a one-off outcome, so it is written by its own field manager (WAKE) only when a wake happened: a
    later pass, whatever its view of the status, never drops it. True (reason: the supervisor's) from
    a failed wake until the next successful one, which sets it False."""
    failed = [o for o in outcomes if o.reason == "WakeFailed"]
    woken = [o for o in outcomes if o.reason == "Woken"]
    if failed:
        return set_condition(prev, "WakeFallback", True, "WakeFailed", failed[-1].message[:1000], now, gen)
    if woken:
        return set_condition(prev, "WakeFallback", False, "Woken", woken[-1].message[:1000], now, gen)
    return None


def lifecycle_counts(views: list[rollout.PodView], plan: rollout.Plan) -> dict[str, int]:
    """Replicas by lifecycle state before this pass's actions (status; printer columns)."""
    live = [v for v in views if not v.terminating]
    return {
        "serving_replicas": sum(v.ready and not v.draining and not v.sleeping for v in live),
        "sleeping_replicas": sum(v.sleeping for v in live),
        "starting_replicas": sum(not v.ready and not v.draining and not v.sleeping for v in live),
        "draining_replicas": sum(v.draining for v in live),
    }


Emit = Callable[[Mapping[str, Any], str, str, str], None]  # (body, type, reason, message)


def kopf_emit(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message)  # type: ignore[arg-type]


async def reconcile(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    emit: Emit = kopf_emit,
    fresh: InferenceServiceStatus | None = None,
    gpu_wanted: bool = False,
    gpu_yields: tuple[tuple[str, str, str], ...] = (),
) -> None:
    """`fresh`: the status the autoscaler just wrote in this pass (the body may not show it yet).
    `gpu_wanted`: a serving replica somewhere waits for GPUs (no drained pod is parked);
    `gpu_yields`: (sleeper, waiting namespace, waiting pod): the sleepers of this service that give
    their GPU to a waiting pod (policy/gpuyield.py, chosen for all services at once)."""
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
    sl = spec.scaling.sleep
    plan = rollout.plan(
        rollout.Desired(
            desired,
            builders.template_hash(spec, granted, admin),
            float(spec.scaling.drain_timeout_seconds),
            max_sleeping=sl.max_sleeping,
            delete_after_s=None if sl.delete_after_seconds is None else float(sl.delete_after_seconds),
            yield_gpu=gpu_wanted,
            yields=gpu_yields,
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
        # creates come after every sleeper is woken (the planner's order): their path is the next one
        start_choice(ctx, ns, name, spec, prev).path,
        ctx.settings.supervisor_port,
        granted,
        admin,
        await _replicas_client(ctx, ns, name, pods, plan),
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
            **lifecycle_counts(views, plan),
            "desired_replicas": desired,
            "selector": builders.selector_string(name),
            "endpoint": builders.endpoint(name, ns),
            "conditions": conds,
        }
    )
    await apply_owned(ctx, ns, name, REPLICAS, prev, after)
    if (wf := wake_fallback(after.conditions, outcomes, now, gen)) is not None:
        await apply_owned(
            ctx, ns, name, WAKE, InferenceServiceStatus(), after.model_copy(update={"conditions": wf})
        )
    for o in outcomes:
        emit(body, o.type, o.reason, o.message)
        ctx.metrics.actions.labels(
            o.reason, "failed" if o.failed else "fallback" if o.fallback else "ok"
        ).inc()
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
