"""The routing contract's pure builders (kube/routing.py)."""

from __future__ import annotations

from typing import Any

from ember.kube import builders, routing
from ember.kube.routing import Endpoint


def pod(
    name: str, ready: bool = True, serving: str = "true", ip: str | None = "10.244.0.5", gone: bool = False
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {"serving.ember.dev/serving": serving},
                     "deletionTimestamp": "2026-12-01T00:00:00Z" if gone else None},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def test_a_pod_receives_traffic_iff_ready_serving_and_not_terminating() -> None:
    assert routing.receives_traffic(pod("a"))
    assert not routing.receives_traffic(pod("a", ready=False))
    assert not routing.receives_traffic(pod("a", serving="false"))  # draining
    assert not routing.receives_traffic(pod("a", gone=True))
    assert not routing.receives_traffic(pod("a", ip=None))


def test_the_slice_lists_serving_replicas_when_any_else_the_activator_else_nothing() -> None:
    act = [Endpoint("10.0.9.1", 8080, "ember-activator-x", "ember-system")]
    pods = [pod("chat-1", ip="10.244.0.7"), pod("chat-0"), pod("chat-2", serving="false")]
    s = routing.endpoint_slice("chat", "ns", "u", routing.replica_endpoints(pods, 8000), act)
    assert routing.route_of(s) == "replicas"
    assert [e["targetRef"]["name"] for e in s["endpoints"]] == ["chat-0", "chat-1"]
    assert s["ports"] == [{"name": "http", "port": 8000, "protocol": "TCP"}]
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "chat"
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "operator.serving.ember.dev"
    s = routing.endpoint_slice(
        "chat", "ns", "u", routing.replica_endpoints([pod("chat-0", ready=False)], 8000), act
    )
    assert routing.route_of(s) == "activator" and s["endpoints"][0]["addresses"] == ["10.0.9.1"]
    assert s["ports"][0]["port"] == 8080
    s = routing.endpoint_slice("chat", "ns", "u", [], None)
    assert routing.route_of(s) == "none" and s["endpoints"] == [] and s["ports"] == []


def test_activator_endpoints_are_its_ready_ones_on_the_http_port() -> None:
    slices = [{"ports": [{"name": "http", "port": 8080}], "endpoints": [
        {"addresses": ["10.0.9.1"], "conditions": {"ready": True}, "targetRef": {"name": "a", "namespace": "s"}},
        {"addresses": ["10.0.9.2"], "conditions": {"ready": False}, "targetRef": {"name": "b", "namespace": "s"}},
    ]}]  # fmt: skip
    assert routing.activator_endpoints(slices) == [Endpoint("10.0.9.1", 8080, "a", "s")]


def test_the_service_has_no_selector() -> None:
    from ember.api.v1alpha1 import InferenceServiceSpec, ModelSource

    svc = builders.service("chat", "ns", "u", InferenceServiceSpec(model=ModelSource(uri="hf://o/m")))
    assert "selector" not in svc["spec"] and svc["spec"]["ports"][0]["port"] == 80


class SliceAPI:
    """The slice in the cluster, as a fresh process finds it (None: there is none yet)."""

    def __init__(self, route: str | None) -> None:
        self.slices = [] if route is None else [routing.endpoint_slice("chat", "ns", "u", [], None)]
        for s in self.slices:
            s["metadata"]["labels"]["serving.ember.dev/route"] = route
        self.applied = 0

    def list_endpoint_slices(self, ns: str, selector: str) -> list[dict[str, Any]]:
        assert selector == "kubernetes.io/service-name=chat"
        return self.slices

    def apply_endpoint_slice(self, manifest: dict[str, Any], manager: str) -> None:
        self.applied += 1
        self.slices = [manifest]


def routing_events(api: SliceAPI, ctx: Any = None) -> tuple[Any, list[str]]:
    import asyncio

    from ember.config import Settings
    from ember.handlers.context import OperatorContext
    from ember.handlers.routing import route
    from ember.telemetry.metrics import Metrics

    ctx = ctx or OperatorContext(Settings(), api, Metrics.create())  # type: ignore[arg-type]
    body = {
        "metadata": {"namespace": "ns", "name": "chat", "uid": "u"},
        "spec": {"model": {"uri": "hf://o/m"}},
    }
    events: list[str] = []
    asyncio.run(route(ctx, body, [pod("chat-0")], lambda _b, _t, r, m: events.append(f"{r}: {m}")))
    return ctx, events


def test_a_fresh_process_announces_a_route_change_not_the_route_it_finds() -> None:
    """After a restart or a takeover of the Lease the slice is applied again (the process has no
    memory of it), but the Routing Event is only for a change: the previous leader announced the
    route it finds (tests/integration/operator/test_failover.py)."""
    api = SliceAPI("replicas")
    ctx, events = routing_events(api)
    assert api.applied == 1 and events == []
    api.slices[0]["metadata"]["labels"]["serving.ember.dev/route"] = "none"
    ctx.routes.clear()  # a fresh process again, the slice routing elsewhere
    assert routing_events(api, ctx)[1] == ["Routing: Service chat routes to replicas (1 endpoints)"]
    assert routing_events(SliceAPI(None))[1] == ["Routing: Service chat routes to replicas (1 endpoints)"]
