"""One warm-buffer pass of an InferenceService: size -> plan -> execute -> status, conditions, Events.

Per InferenceService (`spec.warmBuffer`), not per GPU pool: a placeholder must have the exact shape of
one replica (GPU count, type, CPU, memory) to be preemptible by it, and the adaptive size comes from
that service's traffic; a pool-level buffer would have to pick one shape for services of different
sizes. Services of one shape on one pool each keep their own placeholders; the cost cap
(maxIdleGPUs) is per service.

Runs after the replica reconcile in the per-object loop (handlers/registry.py), from the placeholder
pods in kopf's index (no API reads). Bookkeeping that needs no persistence lives in memory (which
placeholders were alive last pass, which ones the operator deleted itself): a placeholder that
disappears, or is marked DisruptionTarget/PreemptionByScheduler, without the operator deleting it was
preempted; it is counted, announced with an Event and recreated (Pending until a node is added).
After a restart the first pass only re-learns what is alive, so a preemption during the outage is
not counted (the placeholder is still recreated).

Status: server-side apply of only the fields this writer owns (`status_writer.WARM_BUFFER`:
`warmBuffer` and the WarmBufferReady / WarmBufferMisconfigured conditions), so it never rewrites the
replica reconcile's or the autoscaler's. The preemption count and the sample history are carried in
memory between passes as well, because kopf's body can lag behind this writer's own last apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus, WarmBufferStatus
from ember.handlers.context import Key, OperatorContext
from ember.handlers.replicas import Emit, kopf_emit
from ember.handlers.status_writer import WARM_BUFFER, apply_owned
from ember.kube import placeholders as P
from ember.policy import buffer as B
from ember.policy.status import set_condition
from ember.policy.tenancy import CheckpointGrant, checkpoint_grant

log = logging.getLogger("ember.buffer")
PC_TTL_OK_S = 300.0  # a PriorityClass that exists rarely goes away; a failed create re-checks at once
PC_TTL_MISSING_S = 15.0  # a missing one is re-checked soon, so a fix is noticed within seconds
CONDITIONS = ("WarmBufferReady", "WarmBufferMisconfigured")


@dataclass
class _Memory:
    known: dict[str, str] = field(default_factory=dict)  # identity -> name of live placeholders last pass
    deleted: set[str] = field(default_factory=set)  # identities the operator deleted itself
    counted: set[str] = field(default_factory=set)  # identities already counted as preempted
    status: WarmBufferStatus | None = None  # last written (the body can lag behind our own write)


@dataclass
class _Store:
    objects: dict[Key, _Memory] = field(default_factory=dict)
    priority_classes: dict[str, tuple[bool | None, float]] = field(default_factory=dict)


def _store(ctx: OperatorContext) -> _Store:
    # Kept on the context (one per operator process; tests build their own) rather than in a global.
    if not isinstance(ctx.buffer_store, _Store):
        ctx.buffer_store = _Store()
    return ctx.buffer_store


def _ident(v: B.PlaceholderView) -> str:
    return v.uid


async def _pc_exists(ctx: OperatorContext, name: str, now: float) -> bool | None:
    """Cached PriorityClass check; None when the API could not tell (then creates go ahead)."""
    cache = _store(ctx).priority_classes
    hit = cache.get(name)
    if hit is not None and now - hit[1] < (PC_TTL_OK_S if hit[0] is not False else PC_TTL_MISSING_S):
        return hit[0]
    try:
        found: bool | None = await asyncio.to_thread(ctx.api.priority_class_exists, name)
    except Exception as e:  # RBAC or API trouble: unknown, re-checked soon
        log.warning("PriorityClass check failed", extra={"priorityClass": name, "error": str(e)})
        found = None
    cache[name] = (found, now if found is not None else now - PC_TTL_OK_S + PC_TTL_MISSING_S)
    return found


@dataclass(frozen=True)
class _Problem:
    reason: str = ""  # "" when the buffer is configured correctly
    message: str = ""
    blocks_creates: bool = False  # the API server would refuse every placeholder


async def _misconfiguration(
    ctx: OperatorContext, spec: InferenceServiceSpec, now: float, ns: str = "", prestage: bool = False
) -> _Problem:
    """What is wrong with the PriorityClasses (checked through a cache), or with the model cache's
    claim that pre-staging placeholders mount (`prestage`: they do), if anything."""
    buf, serving = spec.warm_buffer.priority_class_name, spec.resources.priority_class_name
    if buf == serving:
        return _Problem(
            "SamePriorityClass",
            f"placeholders and replicas both use PriorityClass {buf}: a replica "
            "cannot preempt a placeholder of equal priority",
        )
    missing = [n for n in (buf, serving) if await _pc_exists(ctx, n, now) is False]
    if missing:
        return _Problem(
            "PriorityClassMissing",
            f"PriorityClass {', '.join(missing)} not found (the chart creates both)",
            buf in missing,
        )
    claim = ctx.shaping().model_cache_claim
    if prestage and claim and await _claim_missing(ctx, ns, claim):
        # a placeholder naming a missing claim stays Pending and holds nothing: create none, say why
        return _Problem(
            "PersistentVolumeClaimNotFound",
            f"PersistentVolumeClaim {claim} (the chart's modelCache.persistentVolumeClaim) not found in "
            f"namespace {ns}: pre-staging placeholders mount it; none is created until it exists",
            True,
        )
    return _Problem()


async def _claim_missing(ctx: OperatorContext, ns: str, claim: str) -> bool:
    """True only when the claim is known not to exist (a read that fails blocks nothing)."""
    try:
        return await asyncio.to_thread(ctx.api.data_keys, "PersistentVolumeClaim", ns, claim) is None
    except Exception as e:
        log.warning("model cache claim not checked", extra={"error": str(e)[:300]})
        return False


def _capacity(spec: InferenceServiceSpec, status: InferenceServiceStatus) -> float | None:
    inputs = status.last_decision.inputs if status.last_decision else {}
    cap = inputs.get("capacityPerReplica")
    return cap if cap else spec.scaling.target_qps_per_replica


def _qps(status: InferenceServiceStatus) -> float | None:
    return status.last_decision.inputs.get("qps") if status.last_decision else None


def _preempted(mem: _Memory, views: list[B.PlaceholderView]) -> list[B.PlaceholderView | str]:
    """Placeholders taken away by someone else since the last pass (views, or identities when gone)."""
    by_id = {_ident(v): v for v in views}
    live = {i for i, v in by_id.items() if not v.terminating}
    out: list[B.PlaceholderView | str] = []
    lost = set(mem.known) - live - mem.deleted - mem.counted
    for i in sorted(lost):
        out.append(by_id.get(i, mem.known[i]))
    for v in views:
        i = _ident(v)
        if v.preempted and i not in mem.counted and i not in mem.deleted and i not in lost:
            out.append(v)
    return out


def _remember(
    mem: _Memory, views: list[B.PlaceholderView], plan: B.BufferPlan, preempted: list[B.PlaceholderView | str]
) -> None:
    """Bookkeeping for the next pass: what is alive, what we deleted, what was counted already."""
    deleted = {a.name for a in plan.actions if isinstance(a, B.DeletePlaceholder)}
    ids = {_ident(v) for v in views}
    new_ids = {_ident(v) if isinstance(v, B.PlaceholderView) else v for v in preempted}
    mem.deleted = (mem.deleted & ids) | {_ident(v) for v in views if v.name in deleted}
    mem.counted = (mem.counted | new_ids) & ids
    mem.known = {_ident(v): v.name for v in views if not v.terminating and v.name not in deleted}


def _node_access(
    ctx: OperatorContext, ns: str, name: str, spec: InferenceServiceSpec
) -> tuple[str | None, bool]:
    """(the service's checkpoint directory on the node, whether placeholders may pre-stage): both the
    admin's grant for the namespace (policy/tenancy.py; kube/placeholders.py on pre-staging)."""
    access = ctx.settings.checkpoint_access()
    grant = checkpoint_grant(access, ns, name, spec)
    return (grant.host_dir if isinstance(grant, CheckpointGrant) else None), access.allows(ns)


def _execute(
    ctx: OperatorContext, meta: Mapping[str, Any], spec: InferenceServiceSpec, plan: B.BufferPlan, image: str
) -> list[tuple[str, str, str]]:
    """Apply the plan (deletes first); (type, reason, message) per thing that happened."""
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    out: list[tuple[str, str, str]] = []
    for a in sorted(plan.actions, key=lambda a: isinstance(a, B.CreatePlaceholder)):
        try:
            if isinstance(a, B.DeletePlaceholder):
                if ctx.api.delete_pod(ns, a.name):
                    out.append(("Normal", "PlaceholderDeleted", f"deleted {a.name} ({a.reason})"))
            else:
                pod = P.placeholder_pod(
                    name, ns, uid, spec, a.index, image, *_node_access(ctx, ns, name, spec), ctx.shaping()
                )
                if ctx.api.create_pod(pod):
                    out.append(("Normal", "PlaceholderCreated", f"created {pod['metadata']['name']}"))
        except Exception as e:  # an Event and the condition; the next pass re-plans
            log.warning("placeholder action failed", extra={"action": repr(a), "error": str(e)[:300]})
            out.append(("Warning", "PlaceholderFailed", f"{a!r}: {str(e)[:300]}"))
    return out


async def reconcile_buffer(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any]],
    emit: Emit = kopf_emit,
    now: float | None = None,
) -> None:
    meta = body["metadata"]
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    try:
        spec = InferenceServiceSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return  # the replica reconcile reports an invalid spec
    try:
        prev = InferenceServiceStatus.model_validate(body.get("status") or {})
    except ValidationError:
        prev = InferenceServiceStatus()
    t = time.time() if now is None else now
    mem = _store(ctx).objects.setdefault((ns, name), _Memory())
    views = [v for p in pods if (v := P.placeholder_view(name, p)) is not None]
    wb_prev = mem.status or prev.warm_buffer
    had_conditions = any(c.type in CONDITIONS for c in prev.conditions)
    if not spec.warm_buffer.enabled and not views and not had_conditions and wb_prev.desired == 0:
        _store(ctx).objects.pop((ns, name), None)
        return  # no buffer, never had one: nothing to write

    wb = spec.warm_buffer
    checkpoint_dir, prestage_allowed = _node_access(ctx, ns, name, spec)
    prestage = wb.prestage and prestage_allowed
    problem = await _misconfiguration(ctx, spec, t, ns, prestage) if wb.enabled else _Problem()
    samples = (
        B.record_sample(wb_prev.samples, t, _qps(prev)) if wb.enabled and wb.policy == "adaptive" else []
    )
    sizing = B.size(wb, spec.resources.gpu, samples, _capacity(spec, prev))
    image = ctx.settings.placeholder_image
    plan = B.plan(
        sizing.placeholders,
        P.spec_hash(spec, image, checkpoint_dir, prestage_allowed, ctx.shaping()),
        views,
    )
    if problem.blocks_creates:  # the API server would refuse every create: delete only
        plan = B.BufferPlan(
            [a for a in plan.actions if isinstance(a, B.DeletePlaceholder)], plan.held, plan.pending
        )

    preempted = _preempted(mem, views)
    results = await asyncio.to_thread(_execute, ctx, meta, spec, plan, image) if plan.actions else []
    _remember(mem, views, plan, preempted)
    if any(r[1] == "PlaceholderFailed" for r in results):
        _store(ctx).priority_classes.pop(wb.priority_class_name, None)

    creates = sum(isinstance(a, B.CreatePlaceholder) for a in plan.actions)
    wb_now = WarmBufferStatus(
        desired=sizing.placeholders,
        ready=plan.held,
        pending=plan.pending + creates,
        preemptions=wb_prev.preemptions + len(preempted),
        idle_gpus=plan.held * spec.resources.gpu,
        reason=sizing.reason,
        message=sizing.message[:1000],
        samples=samples,
    )
    conds = _conditions(prev, spec, sizing, wb_now, problem, gen)
    for state, n in (("desired", wb_now.desired), ("held", wb_now.ready), ("pending", wb_now.pending)):
        ctx.metrics.buffer_placeholders.labels(ns, name, state).set(n)
    await _write(ctx, ns, name, prev, wb_now, conds)
    mem.status = wb_now
    _announce(ctx, body, emit, ns, name, preempted, results, prev, problem)


def _conditions(
    prev: InferenceServiceStatus,
    spec: InferenceServiceSpec,
    sizing: B.Sizing,
    wb: WarmBufferStatus,
    problem: _Problem,
    gen: int | None,
) -> list[Any]:
    stamp = datetime.now(UTC).replace(microsecond=0)
    conds = prev.conditions
    if not spec.warm_buffer.enabled:
        conds = set_condition(
            conds, "WarmBufferReady", False, "Disabled", "warmBuffer.enabled is false", stamp, gen
        )
        return set_condition(conds, "WarmBufferMisconfigured", False, "Disabled", "", stamp, gen)
    conds = set_condition(
        conds,
        "WarmBufferMisconfigured",
        bool(problem.reason),
        problem.reason or "AsExpected",
        problem.message,
        stamp,
        gen,
    )
    if problem.reason:
        ok, reason, msg = False, problem.reason, problem.message
    elif wb.ready >= wb.desired:
        ok, reason = True, ("BufferHeld" if wb.desired else "NothingToHold")
        msg = f"{wb.desired} placeholder(s) hold {wb.desired * spec.resources.gpu} GPU(s) ({sizing.reason})"
    else:
        ok, reason = False, "PlaceholdersPending"
        msg = f"{wb.ready}/{wb.desired} placeholder(s) hold a GPU; the rest wait for a node ({sizing.reason})"
    if not problem.reason and sizing.reason == "AdaptiveFallback":
        msg += f"; adaptive sizing fell back to the static floor: {sizing.message}"
    return set_condition(conds, "WarmBufferReady", ok, reason, msg, stamp, gen)


async def _write(
    ctx: OperatorContext,
    ns: str,
    name: str,
    prev: InferenceServiceStatus,
    wb: WarmBufferStatus,
    conds: list[Any],
) -> None:
    # server-side apply of the fields this loop owns (see status_writer): no clobbering of the
    # replica and autoscaler writers' conditions
    await apply_owned(
        ctx, ns, name, WARM_BUFFER, prev, prev.model_copy(update={"warm_buffer": wb, "conditions": conds})
    )


def _announce(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    emit: Emit,
    ns: str,
    name: str,
    preempted: list[B.PlaceholderView | str],
    results: list[tuple[str, str, str]],
    prev: InferenceServiceStatus,
    problem: _Problem,
) -> None:
    for v in preempted:
        pod = v.name if isinstance(v, B.PlaceholderView) else v
        how = (
            "the scheduler preempted it"
            if isinstance(v, B.PlaceholderView) and v.preempted
            else "it vanished"
        )
        emit(
            body,
            "Normal",
            "PlaceholderPreempted",
            f"{pod}: {how}; recreating it (Pending until a node is free)",
        )
        ctx.metrics.actions.labels("PlaceholderPreempted", "ok").inc()
        ctx.metrics.buffer_preemptions.labels(ns, name).inc()
    for type_, reason, message in results:
        emit(body, type_, reason, message)
        ctx.metrics.actions.labels(reason, "failed" if type_ == "Warning" else "ok").inc()
    was = next((c for c in prev.conditions if c.type == "WarmBufferMisconfigured"), None)
    if problem.reason and (was is None or was.status != "True"):
        emit(body, "Warning", "WarmBufferMisconfigured", problem.message)
    if preempted or results:
        log.info(
            "warm buffer reconciled",
            extra={"object": f"{ns}/{name}", "preempted": len(preempted), "actions": [r[2] for r in results]},
        )
