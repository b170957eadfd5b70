"""One autoscaler step: observe (Prometheus) -> decide (pure policy) -> record (status, Event, metric,
log line). In `active` mode the recorded decision is what the replica reconcile converges to
(policy/desired.py); in `advisory` mode, or while `spec.replicas` pins the count, it is only recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ember.api import demand
from ember.api.v1alpha1 import Decision, InferenceServiceSpec, InferenceServiceStatus, Observed
from ember.handlers.context import OperatorContext
from ember.handlers.objects import parse
from ember.handlers.replicas import Emit, kopf_emit
from ember.handlers.status_writer import AUTOSCALER, apply_owned
from ember.kube.views import pod_view
from ember.observe.prometheus import observe
from ember.policy.autoscale import decide
from ember.policy.desired import restore_available
from ember.policy.status import set_condition

log = logging.getLogger("ember.autoscaler")


def start_path(
    spec: InferenceServiceSpec, status: InferenceServiceStatus, ctx: OperatorContext
) -> tuple[str, float]:
    """The fastest start path available now, and how long it is expected to take."""
    if restore_available(spec, status):
        return "restore", ctx.settings.restore_seconds
    return "cold", ctx.settings.cold_start_seconds


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 1)


async def autoscale_step(
    ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], emit: Emit = kopf_emit
) -> InferenceServiceStatus | None:
    """Returns the status it wrote (None when no decision was due), for the rest of the pass."""
    obj = parse(body)
    if obj is None:
        return None
    ns, name, gen, key, spec, prev = obj.ns, obj.name, obj.generation, obj.key, obj.spec, obj.status
    now = time.time()
    views = [v for p in pods if (v := pod_view(p)) is not None and not v.terminating]
    current = [v for v in views if not v.draining]
    # requests an activator holds (api/demand.py): while nothing is ready they are decided on at once
    held = demand.held(body["metadata"].get("annotations"), now, ctx.settings.demand_ttl_seconds)
    urgent = held > 0 and not any(v.ready for v in current)
    if now - ctx.last_decision.get(key, 0.0) < spec.scaling.decision_interval_seconds and not urgent:
        return None
    ctx.last_decision[key] = now
    path, ttr = start_path(spec, prev, ctx)
    obs = await observe(
        ctx.prometheus,
        spec,
        ns,
        name,
        now=now,
        current=len(current),
        ready=sum(v.ready for v in current),
        time_to_ready_s=ttr,
        start_path=path,
    )
    obs = dataclasses.replace(obs, held=held)
    ctx.observations[key] = obs
    decision, state = decide(spec, obs, prev.autoscaler)
    mode = "manual" if spec.replicas is not None else spec.scaling.mode
    decision = decision.model_copy(update={"mode": mode, "start_path": decision.start_path or path})

    stamp = datetime.now(UTC).replace(microsecond=0)
    conds = set_condition(
        prev.conditions,
        "MetricsAvailable",
        obs.metrics_ok,
        "MetricsFresh" if obs.metrics_ok else "MetricsUnavailable",
        "" if obs.metrics_ok else "; ".join(obs.missing)[:500],
        stamp,
        gen,
    )
    changed = prev.last_decision is None or (
        prev.last_decision.desired_replicas,
        prev.last_decision.reason,
        prev.last_decision.mode,
    ) != (decision.desired_replicas, decision.reason, mode)
    after = prev.model_copy(
        update={
            "last_decision": decision
            if changed or prev.last_decision is None
            else prev.last_decision.model_copy(update={"inputs": decision.inputs}),
            "autoscaler": state,
            "observed": Observed(
                qps=obs.qps, ttft_p95_ms=_ms(obs.ttft_p95_s), itl_p95_ms=_ms(obs.itl_p95_s), queue=obs.waiting
            ),
            "conditions": conds,
        }
    )
    await apply_owned(ctx, ns, name, AUTOSCALER, prev, after)
    ctx.metrics.decisions.labels(ns, name, decision.reason, mode).inc()
    if changed:
        record: Decision = decision
        log.info("decision " + json.dumps({"object": f"{ns}/{name}", **record.to_k8s()}, default=str))
        emit(
            body,
            "Normal",
            "ScalingDecision",
            f"{record.current_replicas} -> {record.desired_replicas} ({record.reason}, {mode}): {record.message}"[
                :1000
            ],
        )
    return after
