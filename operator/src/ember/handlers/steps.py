"""The steps of one reconcile pass run independently: a step that raises is logged, counted
(`ember_reconcile_step_failures_total{step}`), reported in the `Synced` condition and a Warning Event,
and the other steps still run.

Why: the steps share nothing but the object. When one of them failed, the whole pass used to end
there: a status write the API server refused in the autoscale step (HTTP 422) kept the replica
reconcile from ever running, so a `kubectl scale` was ignored for as long as the fault lasted.

`Synced` (the name and meaning Crossplane uses: did the last pass do everything it should) is True
with reason `ReconcileSuccess`, or False with reason `<Step>Failed` for the first failing step and
every failing step in the message. It has its own field manager, so it is written even when the
failing step is a status write of another writer. It and the Events are written when the set of
failing steps changes, not on every pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from ember.api.v1alpha1 import InferenceServiceStatus
from ember.handlers.autoscale import autoscale_step
from ember.handlers.buffer import reconcile_buffer
from ember.handlers.checkpoint import start_checkpoint
from ember.handlers.context import OperatorContext
from ember.handlers.replicas import Emit, kopf_emit, reconcile
from ember.handlers.routing import route
from ember.handlers.status_writer import LOOP, apply_owned
from ember.kube.executor import error_text
from ember.policy.status import set_condition

log = logging.getLogger("ember.handlers")
T = TypeVar("T")
CONDITION = "Synced"
REASONS = {"autoscale": "AutoscaleFailed", "replicas": "ReplicasFailed", "buffer": "WarmBufferFailed"}
REASONS["checkpoint"] = "CheckpointFailed"
REASONS["routing"] = "RoutingFailed"


@dataclass
class Pass:
    """One pass over one object: runs its steps and remembers which failed."""

    ctx: OperatorContext
    body: Mapping[str, Any]
    emit: Emit = kopf_emit
    failures: dict[str, str] = field(default_factory=dict)  # step -> error, in order

    @property
    def key(self) -> tuple[str, str]:
        meta = self.body["metadata"]
        return (meta["namespace"], meta["name"])

    async def step(self, name: str, work: Awaitable[T]) -> T | None:
        """Await one step; on an exception, record it and return None."""
        try:
            return await work
        except Exception as e:
            self.failed(name, e)
            return None

    def sync_step(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:
            self.failed(name, e)

    def failed(self, name: str, e: BaseException) -> None:
        self.failures[name] = error_text(e)[:400]
        self.ctx.metrics.step_failures.labels(name).inc()
        log.error(
            "step failed",
            exc_info=e,
            extra={"object": "/".join(self.key), "step": name, "error": self.failures[name]},
        )

    def watch(self, name: str, task: asyncio.Task[None] | None) -> None:
        """For a step that runs in a task outliving the pass (the checkpoint): its failure is logged,
        counted and a Warning Event, when it happens (the pass has reported by then)."""
        if task is None:
            return

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and (e := t.exception()) is not None:
                self.failed(name, e)
                self.emit(self.body, "Warning", "StepFailed", f"{name} step failed: {self.failures[name]}")

        task.add_done_callback(done)

    async def report(self) -> None:
        """Write `Synced` and emit Events when the set of failing steps changed since the last write."""
        failing = frozenset(self.failures)
        last = self.ctx.failing_steps.get(self.key)
        if last == failing:
            return
        before = _status(self.body)
        now = datetime.now(UTC).replace(microsecond=0)
        gen = self.body["metadata"].get("generation")
        if failing:
            first = next(iter(self.failures))
            msg = "; ".join(f"{s}: {err}" for s, err in self.failures.items())[:1000]
            conds = set_condition(before.conditions, CONDITION, False, REASONS[first], msg, now, gen)
        else:
            conds = set_condition(before.conditions, CONDITION, True, "ReconcileSuccess", "", now, gen)
        await apply_owned(self.ctx, *self.key, LOOP, before, before.model_copy(update={"conditions": conds}))
        self.ctx.failing_steps[self.key] = failing
        for s in self.failures:
            if s not in (last or ()):
                self.emit(self.body, "Warning", "StepFailed", f"{s} step failed: {self.failures[s]}"[:1000])
        for s in sorted((last or frozenset()) - failing):
            self.emit(self.body, "Normal", "StepRecovered", f"{s} step succeeded again")


async def run_pass(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    replicas: list[Mapping[str, Any]],
    placeholders: list[Mapping[str, Any]],
    emit: Emit = kopf_emit,
    gpu_wanted: bool = False,
    gpu_yields: tuple[tuple[str, str, str], ...] = (),
) -> dict[str, str]:
    """autoscale -> replicas -> routing -> warm buffer -> checkpoint; returns the steps that failed.
    `gpu_wanted`: a serving replica of some service is Pending for lack of GPUs (no park);
    `gpu_yields`: this service's sleepers that give their GPU to one (handlers/registry.gpu_yields)."""
    p = Pass(ctx, body, emit)
    fresh = await p.step("autoscale", autoscale_step(ctx, body, replicas, emit))
    await p.step(
        "replicas",
        reconcile(ctx, body, replicas, emit, fresh=fresh, gpu_wanted=gpu_wanted, gpu_yields=gpu_yields),
    )
    await p.step("routing", route(ctx, body, replicas, emit))
    await p.step("buffer", reconcile_buffer(ctx, body, placeholders, emit))
    running = ctx.checkpoint_tasks.get(p.key)
    p.sync_step("checkpoint", lambda: start_checkpoint(ctx, body, replicas))
    if (task := ctx.checkpoint_tasks.get(p.key)) is not running:
        p.watch("checkpoint", task)
    await p.report()
    return p.failures


def _status(body: Mapping[str, Any]) -> InferenceServiceStatus:
    try:
        return InferenceServiceStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return InferenceServiceStatus()
