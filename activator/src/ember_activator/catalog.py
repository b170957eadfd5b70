"""What the activator knows about InferenceServices and their routing (pure; fed by kube.py).

- Which service a request is for: the `X-Ember-Service: <namespace>/<name>` header if present,
  else the Host header, which the client's DNS name of the Service fills in:
  `<name>.<namespace>[.svc[.<cluster domain>]]`; a bare `<name>` (a client in the same namespace)
  resolves when exactly one known InferenceService has that name; the Service's cluster IP (what a
  client that uses `$<NAME>_SERVICE_HOST`, or an address it looked up once, sends as the Host)
  resolves through the Services Ember created (`service_addresses`, watched by kube.py).
- The expected time to ready of the start path the operator chose (status.lastDecision): the
  Retry-After of a 429 and the ETA of an activation.
- Where replicas that receive traffic are: the endpoints of the Ember-owned EndpointSlice
  (operator/src/ember/kube/routing.py states the contract) when it routes to replicas.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ember.api import labels as L

Key = tuple[str, str]
SERVICE_HEADER = "X-Ember-Service"


@dataclass(frozen=True)
class ServiceInfo:
    start_path: str | None = None
    time_to_ready_s: float | None = None
    keepalive: bool = False  # annotation serving.ember.dev/hold-keepalive: "true"


def service_info(obj: Mapping[str, Any]) -> ServiceInfo:
    st = obj.get("status") or {}
    dec = st.get("lastDecision") or {}
    ttr = (dec.get("inputs") or {}).get("timeToReadySeconds")
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return ServiceInfo(
        start_path=dec.get("startPath"),
        time_to_ready_s=float(ttr) if isinstance(ttr, int | float) else None,
        keepalive=ann.get(L.HOLD_KEEPALIVE) == "true",
    )


def slice_route(obj: Mapping[str, Any]) -> tuple[Key, str, dict[str, str]] | None:
    """(service key, route, pod -> host:port of ready endpoints) of an Ember-owned EndpointSlice."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    route, svc = labels.get(L.ROUTE), labels.get("kubernetes.io/service-name")
    if not route or not svc:
        return None
    port = next((p.get("port") for p in obj.get("ports") or [] if p.get("name") == "http"), None)
    out: dict[str, str] = {}
    for ep in obj.get("endpoints") or []:
        ref = ep.get("targetRef") or {}
        ready = (ep.get("conditions") or {}).get("ready", True)
        if ref.get("kind") == "Pod" and ready and ep.get("addresses") and port:
            out[ref["name"]] = f"{ep['addresses'][0]}:{port}"
    return (meta.get("namespace", ""), svc), route, out


def service_addresses(obj: Mapping[str, Any]) -> tuple[Key, list[str]] | None:
    """(service key, cluster IPs) of a Service the operator made for an InferenceService (labels
    inferenceservice and managed-by=ember); None for any other Service. Headless ("None") has none."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = labels.get(L.ISVC)
    if not name or labels.get(L.MANAGED_BY) != L.MANAGED_BY_VALUE:
        return None
    spec = obj.get("spec") or {}
    ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    return (meta.get("namespace", ""), name), [ip for ip in ips if ip and ip != "None"]


def hostname(host: str) -> str:
    """The Host header without its port: `name.ns:8000` -> `name.ns`, `[fd00::1]:80` -> `fd00::1`."""
    h = host.strip()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h[1:]
    if h.count(":") == 1:  # more than one colon: a bare IPv6 address, no port
        h = h.rsplit(":", 1)[0]
    return h.lower().rstrip(".")


def _is_ip(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return False
    return True


def address_map(text: str) -> dict[Key, str]:
    """A Prometheus file_sd JSON (ember-sim's targets file) as (namespace, pod) -> host:port."""
    out: dict[Key, str] = {}
    try:
        entries = json.loads(text)
    except ValueError:
        return out
    for e in entries if isinstance(entries, list) else []:
        lab, targets = e.get("labels") or {}, e.get("targets") or []
        if targets and lab.get("pod"):
            out[(lab.get("namespace", ""), lab["pod"])] = targets[0]
    return out


@dataclass
class Catalog:
    services: dict[Key, ServiceInfo] = field(default_factory=dict)
    routes: dict[Key, tuple[str, dict[str, str]]] = field(default_factory=dict)
    overrides: dict[Key, str] = field(default_factory=dict)
    overrides_only: bool = False  # an address map is configured: a pod not in it is not reachable yet
    addresses: dict[str, Key] = field(default_factory=dict)  # cluster IP -> service (service_addresses)

    def resolve(self, host: str | None, header: str | None) -> Key | None:
        if header:
            ns, _, name = header.strip().partition("/")
            return (ns, name) if ns and name else None
        if not host:
            return None
        h = hostname(host)
        if _is_ip(h):
            return self.addresses.get(str(ipaddress.ip_address(h)))
        parts = h.split(".")
        if len(parts) == 1:
            found = [k for k in self.services if k[1] == parts[0]]
            return found[0] if len(found) == 1 else None
        if len(parts) == 2 or parts[2] == "svc":
            return (parts[1], parts[0])
        return None

    def set_addresses(self, services: Sequence[Mapping[str, Any]]) -> None:
        """All cluster IPs from a fresh list of Ember's Services."""
        self.addresses = {}
        for o in services:
            self.add_service(o)

    def add_service(self, obj: Mapping[str, Any]) -> None:
        got = service_addresses(obj)
        if got is None:
            return
        key, ips = got
        self.addresses = {ip: k for ip, k in self.addresses.items() if k != key}  # an IP may change
        for ip in ips:
            self.addresses[str(ipaddress.ip_address(ip))] = key

    def remove_service(self, obj: Mapping[str, Any]) -> None:
        got = service_addresses(obj)
        if got is not None:
            self.addresses = {ip: k for ip, k in self.addresses.items() if k != got[0]}

    def replicas(self, key: Key) -> dict[str, str]:
        """pod -> host:port of the replicas that receive traffic; {} while the route is the activator."""
        route, eps = self.routes.get(key, ("", {}))
        if route != "replicas":
            return {}
        ns = key[0]
        if self.overrides_only:
            return {pod: self.overrides[(ns, pod)] for pod in eps if (ns, pod) in self.overrides}
        return {pod: self.overrides.get((ns, pod), addr) for pod, addr in eps.items()}
