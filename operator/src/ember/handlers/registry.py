"""kopf wiring, kept thin: events wake a per-object loop; the loop runs the steps of a pass, each on
its own (handlers/steps.py).

Why a daemon per InferenceService rather than on.create/on.update handlers: the work is level-based
(converge pods to a count that also changes with pod readiness, drains and the autoscaler), so one
loop per object that wakes on any relevant event, and at least every resync interval, is simpler and
cannot miss an edge. kopf's index keeps every Ember pod in memory, so a pass costs no API reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from ember.api import labels as L
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember.handlers.context import OperatorContext
from ember.handlers.steps import run_pass
from ember.kube import views
from ember.kube.client import credentials
from ember.policy import gpuyield

log = logging.getLogger("ember.handlers")
MANAGED = {L.MANAGED_BY: L.MANAGED_BY_VALUE}
_POD_KEEP = ("name", "namespace", "uid", "labels", "annotations", "creationTimestamp", "deletionTimestamp")


def gpu_yields(
    key: tuple[str, str], pods: Iterable[Mapping[str, Any]], now: float
) -> tuple[bool, tuple[tuple[str, str, str], ...], set[tuple[str, str]]]:
    """From every replica pod of every service: (some serving replica waits for GPUs, this service's
    sleepers that yield to one as (sleeper, waiting namespace, waiting pod), the other services whose
    sleepers yield: their loops are woken, so the yield happens within this decision interval)."""
    waiting, sleepers, present = views.gpu_yield_inputs(pods)
    choice = gpuyield.choose(waiting, sleepers, present, now)
    mine = tuple(
        sorted((s.name, w.namespace, w.name) for s, w in choice.items() if (s.namespace, s.service) == key)
    )
    return bool(waiting), mine, {(s.namespace, s.service) for s in choice} - {key}


def _compact(body: Any) -> dict[str, Any]:
    """The parts of a pod the planner reads; the index holds these, not whole pods."""
    meta = body.get("metadata", {})
    st = body.get("status") or {}
    return {
        "metadata": {k: (dict(meta[k]) if isinstance(meta.get(k), dict) else meta.get(k)) for k in _POD_KEEP},
        "status": {
            "conditions": [dict(c) for c in st.get("conditions") or []],
            "phase": st.get("phase"),
            "podIP": st.get("podIP"),
            **views.container_statuses(st),  # why a container fails (Degraded: ReplicaFailing)
        },
    }


def register(reg: kopf.OperatorRegistry, ctx: OperatorContext) -> None:
    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.networking.request_timeout = ctx.settings.api_timeout_seconds * 6
        settings.watching.server_timeout = 300
        settings.posting.level = logging.INFO
        # which process decided: with leader election, the Lease holder's identity (kopf's default
        # is the same "dev" for every replica, so an Event could not be told from another's)
        if ctx.identity:
            settings.posting.reporting_instance = ctx.identity

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has none of kopf's default login handlers: the kubeconfig from Settings,
        # else in-cluster credentials through the official client.
        if ctx.settings.kubeconfig:
            return kopf.ConnectionInfo(**credentials(ctx.settings.kubeconfig))
        return kopf.login_via_client(**kwargs)

    # The event and index handlers are coroutines: kopf runs a plain function in its own executor
    # (min(32, cores + 4) threads: 6 on 2 cores), one thread hop per watch event of every pod and
    # every InferenceService. At 500 services (bench/scale) that queue fell minutes behind the watch
    # (a spec change reached its loop 146 s later). As coroutines they run in the loop, in order,
    # and ctx.wake sets its asyncio.Event from the loop's own thread.
    @kopf.index("pods", labels=MANAGED, registry=reg, id="ember_pods")
    async def ember_pods(
        namespace: str, labels: dict[str, str], body: Any, **_: Any
    ) -> dict[Any, Any] | None:
        owner = labels.get(L.ISVC)
        if owner and labels.get(L.COMPONENT) == L.REPLICA:
            return {(namespace, owner): _compact(body)}
        return None

    @kopf.index("pods", labels=MANAGED, registry=reg, id="ember_placeholders")
    async def ember_placeholders(
        namespace: str, labels: dict[str, str], body: Any, **_: Any
    ) -> dict[Any, Any] | None:
        owner = labels.get(L.ISVC)
        if owner and labels.get(L.COMPONENT) == L.PLACEHOLDER:
            return {(namespace, owner): _compact(body)}
        return None

    @kopf.on.event("pods", labels=MANAGED, registry=reg)
    async def pod_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
        if owner := labels.get(L.ISVC):
            ctx.wake((namespace, owner))

    @kopf.on.event("services", labels=MANAGED, registry=reg)
    async def service_event(type: str, namespace: str, labels: dict[str, str], **_: Any) -> None:
        if type == "DELETED" and (owner := labels.get(L.ISVC)):
            ctx.services_ok.discard((namespace, owner))
            ctx.wake((namespace, owner))

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)
    async def isvc_event(namespace: str, name: str, **_: Any) -> None:
        ctx.wake((namespace, name))

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=reg, cancellation_timeout=1.0, cancellation_backoff=0.5)
    async def replica_loop(
        stopped: kopf.DaemonStopped,
        body: kopf.Body,
        namespace: str,
        name: str,
        ember_pods: kopf.Index,
        ember_placeholders: kopf.Index,
        **_: Any,
    ) -> None:
        key = (namespace, name)
        wake = ctx.wake_event(key)
        try:
            while not stopped:
                wake.clear()
                with ctx.metrics.reconcile_seconds.time():
                    try:
                        wanted, yields, others = gpu_yields(
                            key, [p for k in list(ember_pods) for p in ember_pods.get(k, [])], time.time()
                        )
                        for other in others:
                            ctx.wake(other)
                        async with ctx.lock(key):
                            # each step on its own: one that raises is reported, the others still run
                            failed = await run_pass(
                                ctx,
                                body,
                                list(ember_pods.get(key, [])),
                                list(ember_placeholders.get(key, [])),
                                gpu_wanted=wanted,
                                gpu_yields=yields,
                            )
                        ctx.metrics.reconciles.labels("error" if failed else "ok").inc()
                    except Exception:
                        # Never a crash loop: log, count, and try again on the next wake-up.
                        ctx.metrics.reconciles.labels("error").inc()
                        log.exception("reconcile failed", extra={"object": f"{namespace}/{name}"})
                try:
                    await asyncio.wait_for(wake.wait(), timeout=ctx.settings.resync_interval_seconds)
                except TimeoutError:
                    pass
        finally:
            ctx.forget(key)
