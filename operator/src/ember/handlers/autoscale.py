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
from ember.api.v1alpha1 import Decision, InferenceServiceStatus, Observed
from ember.handlers.context import OperatorContext
from ember.handlers.objects import parse
from ember.handlers.replicas import Emit, kopf_emit, start_choice
from ember.handlers.status_writer import AUTOSCALER, apply_owned
from ember.kube.views import pod_view
from ember.observe.prometheus import observe
from ember.observe.starts import measure
from ember.policy import startpath
from ember.policy.autoscale import decide
from ember.policy.desired import desired_replicas
from ember.policy.status import METRICS_REASONS, metrics_condition, set_condition

log = logging.getLogger("ember.autoscaler")


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000.0, 1)


def _export_metrics_available(ctx: OperatorContext, ns: str, name: str, ok: bool, reason: str) -> None:
    """One series per object, labelled with the condition's reason (alerts can exclude ScaledToZero)."""
    for other in METRICS_REASONS:
        if other != reason:
            try:
                ctx.metrics.metrics_available.remove(ns, name, other)
            except KeyError:
                pass  # no such series
    ctx.metrics.metrics_available.labels(ns, name, reason).set(1.0 if ok else 0.0)


def _floor_message(d: Decision) -> str:
    if d.slo_attainable or d.latency_floor_ratio is None:
        return ""
    ttft, target = d.inputs.get("ttftP95Ms"), d.inputs.get("ttftTargetMs")
    return (f"p95 latency stays {d.latency_floor_ratio:.2f}x the target with added capacity (TTFT p95 "
            f"{ttft} ms, target {target} ms): scaling by demand only")  # fmt: skip


async def autoscale_step(
    ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], emit: Emit = kopf_emit
) -> InferenceServiceStatus | None:
    """Returns the status it wrote (None when no decision was due), for the rest of the pass."""
    obj = parse(body)
    if obj is None:
        return None
    ns, name, gen, key, spec, prev = obj.ns, obj.name, obj.generation, obj.key, obj.spec, obj.status
    now = time.time()
    every = [v for p in pods if (v := pod_view(p)) is not None]
    views = [v for v in every if not v.terminating]
    current = [v for v in views if not v.draining and not v.sleeping]  # sleepers are no replicas
    # requests an activator holds (api/demand.py): while nothing is ready they are decided on at once
    held = demand.held(body["metadata"].get("annotations"), now, ctx.settings.demand_ttl_seconds)
    urgent = held > 0 and not any(v.ready for v in current)
    if now - ctx.last_decision.get(key, 0.0) < spec.scaling.decision_interval_seconds and not urgent:
        return None
    ctx.last_decision[key] = now
    # the supervisors' measured starts, folded into status.startHistory (policy/startpath.py); with
    # Prometheus unavailable nothing is measured and the history stays
    measured = await measure(ctx.prometheus, ns, name, {v.name: v.created for v in every},
                             bulk=ctx.bulk, max_age_s=spec.scaling.decision_interval_seconds)  # fmt: skip
    history = prev.start_history if measured is None else startpath.fold(prev.start_history, measured)
    # with a sleeper the next replica is a wake: the policy plans with the wake time
    choice = start_choice(ctx, ns, name, spec, prev.model_copy(update={"start_history": history}),
                          tuple(v.name for v in views if v.sleeping))  # fmt: skip
    path, ttr = choice.path, choice.expected_s
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
        allow_overrides=ctx.settings.allow_query_overrides,
        bulk=ctx.bulk,
        # held requests at zero: fresh numbers; otherwise an answer up to one interval old is shared
        max_age_s=0.0 if urgent else spec.scaling.decision_interval_seconds,
    )
    obs = dataclasses.replace(obs, held=held)
    ctx.observations[key] = obs
    decision, state = decide(spec, obs, prev.autoscaler)
    mode = "manual" if spec.replicas is not None else spec.scaling.mode
    decision = decision.model_copy(update={"mode": mode, "start_path": decision.start_path or path})

    stamp = datetime.now(UTC).replace(microsecond=0)
    wanted, _ = desired_replicas(spec, prev.model_copy(update={"last_decision": decision}))
    ok, reason, message = metrics_condition(obs, wanted)
    conds = set_condition(prev.conditions, "MetricsAvailable", ok, reason, message, stamp, gen)
    _export_metrics_available(ctx, ns, name, ok, reason)
    if decision.slo_attainable is not None:  # the latency floor the policy measured (issue 19)
        conds = set_condition(conds, "SLOAttainable", decision.slo_attainable,
                              "Attainable" if decision.slo_attainable else "LatencyFloor",
                              _floor_message(decision), stamp, gen)  # fmt: skip
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
            # always carries its time, so a blind observation writes the values as absent (unknown)
            # rather than an empty object, which server-side apply stores as null
            "observed": Observed(
                time=stamp,
                qps=obs.qps,
                ttft_p95_ms=_ms(obs.ttft_p95_s),
                itl_p95_ms=_ms(obs.itl_p95_s),
                queue=obs.waiting,
            ),
            "conditions": conds,
            "start_history": history,
        }
    )
    await apply_owned(ctx, ns, name, AUTOSCALER, prev, after)
    ctx.metrics.decisions.labels(ns, name, decision.reason, mode).inc()
    was = next((c.status for c in prev.conditions if c.type == "SLOAttainable"), None)
    if decision.slo_attainable is False and was != "False":
        emit(body, "Warning", "SLOUnattainable", _floor_message(decision)[:1000])
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
