"""Checkpoint hook: when `spec.checkpoint.enabled` and no verified checkpoint is recorded, ask the
supervisor of a Ready replica to checkpoint its warmed-up engine (dump, canary verify, publish), and
record the result in `status.checkpoint` with the condition CheckpointReady. New replicas then start
on the restore path (the supervisor restores from the mounted checkpoint storage, or falls back to a
cold start by itself). A failure is a condition and a Warning Event, retried with exponential backoff;
it never holds up serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ember.api.v1alpha1 import InferenceServiceStatus
from ember.handlers.context import OperatorContext
from ember.handlers.objects import parse
from ember.handlers.replicas import Emit, kopf_emit, supervisor_token
from ember.handlers.status_writer import CHECKPOINT, apply_owned
from ember.kube.views import pod_view
from ember.observe.supervisor import checkpoint_status
from ember.policy.status import set_condition
from ember.policy.tenancy import CheckpointRefusal, checkpoint_grant
from ember.replica.client import SupervisorError, request_checkpoint

BACKOFF_S = (30.0, 60.0, 120.0, 300.0, 600.0)


def _candidate(pods: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(pod name, pod IP) of the oldest Ready, serving replica: the most warmed-up engine."""
    best: tuple[float, str, str] | None = None
    for p in pods:
        v = pod_view(p)
        ip = (p.get("status") or {}).get("podIP")
        if v is None or not v.ready or v.draining or v.sleeping or v.terminating or not ip:
            continue
        if best is None or v.created < best[0]:
            best = (v.created, v.name, ip)
    return None if best is None else (best[1], best[2])


async def checkpoint_step(
    ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], emit: Emit = kopf_emit
) -> None:
    obj = parse(body)
    if obj is None:
        return
    ns, name, gen, key, spec, prev = obj.ns, obj.name, obj.generation, obj.key, obj.spec, obj.status
    grant = checkpoint_grant(ctx.settings.checkpoint_access(), ns, name, spec)
    if isinstance(grant, CheckpointRefusal):
        await _refuse(ctx, body, prev, grant, gen, emit)
        return
    if grant is None or spec.checkpoint.restore_policy == "Never":
        return
    if prev.checkpoint is not None and prev.checkpoint.verified:
        return
    last, failures = ctx.checkpoint_attempts.get(key, (0.0, 0))
    if failures and time.time() - last < BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]:
        return
    target = _candidate(pods)
    if target is None:
        return  # no warm replica yet
    pod, ip = target
    ctx.checkpoint_attempts[key] = (time.time(), failures)
    url = f"http://{ip}:{ctx.settings.supervisor_port}"
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        token = await supervisor_token(ctx, ns, name)
        manifest = await request_checkpoint(url, token, ctx.settings.checkpoint_timeout_seconds)
        cp = checkpoint_status(manifest, grant.location)
    except SupervisorError as e:
        ctx.checkpoint_attempts[key] = (time.time(), failures + 1)
        conds = set_condition(
            prev.conditions, "CheckpointReady", False, "CheckpointFailed", f"{pod}: {e}"[:1000], now, gen
        )
        await apply_owned(ctx, ns, name, CHECKPOINT, prev, prev.model_copy(update={"conditions": conds}))
        emit(body, "Warning", "CheckpointFailed", f"{pod}: {e}"[:1000])
        return
    ctx.checkpoint_attempts.pop(key, None)
    ok = cp.verified
    conds = set_condition(
        prev.conditions,
        "CheckpointReady",
        ok,
        "Verified" if ok else "NotVerified",
        f"{cp.id} from {pod}: {cp.size_bytes} bytes ({cp.gpu_bytes} of GPU state)",
        now,
        gen,
    )
    await apply_owned(
        ctx, ns, name, CHECKPOINT, prev, prev.model_copy(update={"checkpoint": cp, "conditions": conds})
    )
    emit(
        body,
        "Normal" if ok else "Warning",
        "CheckpointTaken" if ok else "CheckpointNotVerified",
        f"{cp.id} from {pod} ({cp.size_bytes} bytes, verified={ok})",
    )


async def _refuse(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    prev: InferenceServiceStatus,
    refusal: CheckpointRefusal,
    gen: int | None,
    emit: Emit,
) -> None:
    """CheckpointReady=False with the refusal's reason; the Event only when the condition changes."""
    old = next((c for c in prev.conditions if c.type == "CheckpointReady"), None)
    if (
        old is not None
        and old.status == "False"
        and old.reason == refusal.reason
        and old.message == refusal.message
    ):
        return
    meta = body["metadata"]
    now = datetime.now(UTC).replace(microsecond=0)
    conds = set_condition(
        prev.conditions, "CheckpointReady", False, refusal.reason, refusal.message, now, gen
    )
    await apply_owned(
        ctx, meta["namespace"], meta["name"], CHECKPOINT, prev, prev.model_copy(update={"conditions": conds})
    )
    emit(body, "Warning", refusal.reason, refusal.message)


def start_checkpoint(
    ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> None:
    """Run `checkpoint_step` in the background (a dump and a verify take seconds to minutes; the
    object's reconcile loop must not wait for them), at most one at a time per object."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    running = ctx.checkpoint_tasks.get(key)
    if running is not None and not running.done():
        return
    ctx.checkpoint_tasks[key] = asyncio.create_task(checkpoint_step(ctx, body, list(pods)))
