"""THE routing contract, written once (pure builders; handlers/routing.py applies them).

**A replica pod receives traffic iff it is Ready, carries `serving.ember.dev/serving=true` and is
not terminating** (`receives_traffic`). Every router honours exactly that: the Service below, the
activator (which forwards only to the endpoints listed here), the simulator, an InferencePool later.

How (Knative's proxy mode, through an Ember-owned EndpointSlice):

- The Service `<name>` has **no selector**, so Kubernetes' EndpointSlice controller leaves it alone;
  its only EndpointSlice is `<name>-ember`, written by the operator (field manager `ember-routing`,
  labels `kubernetes.io/service-name=<name>`, `endpointslice.kubernetes.io/managed-by=
  operator.serving.ember.dev`, `serving.ember.dev/route`). kube-proxy, a mesh or a gateway route
  through it as through any EndpointSlice.
- While at least one replica receives traffic, the slice lists exactly those replicas (pod IP,
  engine port, targetRef) and is labelled `route=replicas`: the activator is out of the data path
  and adds nothing to steady-state latency.
- While none does (scaled to zero, every replica still starting, or all draining), the slice lists
  the activator's ready endpoints (read from the activator's own Service, `EMBER_ACTIVATOR_SERVICE`)
  and is labelled `route=activator`; the activator holds the requests, pushes demand to the operator
  (api/demand.py) and forwards them once the slice says `route=replicas` again.
- Without an activator installed, the slice is empty then (`route=none`): requests are refused by
  the network, as with a selector that matches nothing.

Why an EndpointSlice and not a selector swap: a Service selects pods in its own namespace only,
and the activator runs in the operator's; the slice can list any address. Why the operator writes
it, not the activator: one writer, the one that already knows which replicas are in service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ember.api import labels as L
from ember.api.v1alpha1 import API_VERSION, KIND

SERVICE_PORT = 80


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    pod: str
    namespace: str


def slice_name(name: str) -> str:
    return f"{name}-ember"


def receives_traffic(pod: Mapping[str, Any]) -> bool:
    """The contract's predicate, over a raw (or kopf-compacted) pod."""
    meta, st = pod.get("metadata") or {}, pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    labels = meta.get("labels") or {}
    return (
        ready
        and labels.get(L.SERVING) == "true"
        and not meta.get("deletionTimestamp")
        and bool(st.get("podIP"))
    )


def replica_endpoints(pods: Iterable[Mapping[str, Any]], port: int) -> list[Endpoint]:
    out = [
        Endpoint(p["status"]["podIP"], port, p["metadata"]["name"], p["metadata"]["namespace"])
        for p in pods
        if receives_traffic(p)
    ]
    return sorted(out, key=lambda e: e.pod)


def activator_endpoints(slices: Iterable[Mapping[str, Any]]) -> list[Endpoint]:
    """The ready endpoints of the activator's Service (its EndpointSlices), on its `http` port."""
    out: list[Endpoint] = []
    for s in slices:
        port = next((p.get("port") for p in s.get("ports") or [] if p.get("name") == "http"), None)
        for ep in s.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            if port and ep.get("addresses") and (ep.get("conditions") or {}).get("ready", True):
                out.append(
                    Endpoint(ep["addresses"][0], int(port), ref.get("name", ""), ref.get("namespace", ""))
                )
    return sorted(out, key=lambda e: (e.pod, e.ip))


def owner(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}  # fmt: skip


def service(name: str, namespace: str, uid: str) -> dict[str, Any]:
    """The Service clients call: selector-less, its endpoints are the slice below."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {L.ISVC: name, L.MANAGED_BY: L.MANAGED_BY_VALUE},
            "ownerReferences": [owner(name, uid)],
        },
        "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]},
    }


def endpoint_slice(
    name: str, namespace: str, uid: str, replicas: list[Endpoint], activator: list[Endpoint] | None
) -> dict[str, Any]:
    """Replicas if any receive traffic, else the activator (if installed), else nothing."""
    route, eps = (
        ("replicas", replicas) if replicas else ("activator", activator) if activator else ("none", [])
    )
    port = eps[0].port if eps else None
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(name),
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": L.ENDPOINTSLICE_MANAGER,
                L.ROUTE: route,
                L.ISVC: name,
                L.MANAGED_BY: L.MANAGED_BY_VALUE,
            },
            "ownerReferences": [owner(name, uid)],
        },
        "addressType": "IPv6" if eps and all(":" in e.ip for e in eps) else "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}] if port else [],
        "endpoints": [
            {
                "addresses": [e.ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": e.pod, "namespace": e.namespace},
            }
            for e in eps
        ],
    }


def route_of(manifest: Mapping[str, Any]) -> str:
    return str(manifest["metadata"]["labels"][L.ROUTE])
