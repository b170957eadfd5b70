"""The routing step of a pass: write the Service's EndpointSlice by the contract in kube/routing.py.

Applied when what it should list changes, and again every `REAPPLY_S` (a slice deleted or edited
by hand heals). The activator's endpoints are read at most once a second for all objects. A failure
is a Warning Event and a log line; the next pass tries again, and the rest of the pass goes on.
The `Routing` Event says a change of route: a process that has not applied the slice yet (a restart,
a standby that took over the Lease) compares with the route the slice in the cluster has, so it does
not announce again what the previous process decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ember.api import labels as L
from ember.handlers.context import OperatorContext
from ember.handlers.objects import parse
from ember.handlers.replicas import Emit, kopf_emit
from ember.kube import routing

log = logging.getLogger("ember.routing")
MANAGER = "ember-routing"
REAPPLY_S = 60.0
ACTIVATOR_CACHE_S = 1.0


async def activator_endpoints(ctx: OperatorContext) -> list[routing.Endpoint] | None:
    if not ctx.settings.activator_service:
        return None
    now = time.monotonic()
    if ctx.activator_cache is not None and now - ctx.activator_cache[0] < ACTIVATOR_CACHE_S:
        return ctx.activator_cache[1]
    ns, name = ctx.settings.activator_service.split("/", 1)
    try:
        slices = await asyncio.to_thread(
            ctx.api.list_endpoint_slices, ns, f"kubernetes.io/service-name={name}"
        )
    except Exception as e:
        log.warning(
            "activator endpoints unreadable",
            extra={"service": ctx.settings.activator_service, "error": str(e)[:300]},
        )
        return ctx.activator_cache[1] if ctx.activator_cache else []
    eps = routing.activator_endpoints(slices)
    ctx.activator_cache = (now, eps)
    return eps


async def live_route(ctx: OperatorContext, ns: str, name: str) -> str | None:
    """The route label of the service's slice in the cluster; None when there is none or it cannot be
    read (the Event then goes out, as for a new route)."""
    try:
        slices = await asyncio.to_thread(
            ctx.api.list_endpoint_slices, ns, f"kubernetes.io/service-name={name}"
        )
    except Exception as e:
        log.warning("slice unreadable", extra={"object": f"{ns}/{name}", "error": str(e)[:300]})
        return None
    mine = [s for s in slices if s["metadata"]["name"] == routing.slice_name(name)]
    return (mine[0]["metadata"].get("labels") or {}).get(L.ROUTE) if mine else None


async def route(
    ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], emit: Emit = kopf_emit
) -> None:
    obj = parse(body)
    if obj is None:
        return
    uid = body["metadata"]["uid"]
    replicas = routing.replica_endpoints(pods, obj.spec.engine.port)
    activator = [] if replicas else await activator_endpoints(ctx)
    want = routing.endpoint_slice(obj.name, obj.ns, uid, replicas, activator)
    prev = ctx.routes.get(obj.key)
    if prev is not None and prev[0] == want and time.monotonic() - prev[1] < REAPPLY_S:
        return
    was = routing.route_of(prev[0]) if prev is not None else await live_route(ctx, obj.ns, obj.name)
    try:
        await asyncio.to_thread(ctx.api.apply_endpoint_slice, want, MANAGER)
    except Exception as e:
        log.warning("routing failed", extra={"object": f"{obj.ns}/{obj.name}", "error": str(e)[:300]})
        emit(
            body, "Warning", "RoutingFailed", f"EndpointSlice {routing.slice_name(obj.name)}: {str(e)[:500]}"
        )
        return
    ctx.routes[obj.key] = (want, time.monotonic())
    new = routing.route_of(want)
    if was != new:
        n = len(want["endpoints"])
        log.info("route", extra={"object": f"{obj.ns}/{obj.name}", "route": new, "endpoints": n})
        emit(body, "Normal", "Routing", f"Service {obj.name} routes to {new} ({n} endpoints)")
