"""Sleeping replicas through the real API server and kwok: the replica step (handlers/replicas.py,
run in-process) wakes a sleeping pod it knows only from its labels (as after an operator restart);
the wake fails, so the pod is deleted and replaced once, with the WakeFallback condition and one
WakeFailed Event; a later pass starting from a status that predates the condition (a stale body)
writes the replacement and must not drop the condition (the bug a previous attempt had).

The supervisor is a real HTTP server answering as ember_supervisor/sleep_routes.py documents (our own
seam): kwok's pod IPs route nowhere, so the pods' podIP is read as 127.0.0.1 here."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api import labels as L
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.replicas import reconcile
from ember.kube.client import KubeAPI, api_client
from ember.telemetry.metrics import Metrics
from ember_cluster import LocalCluster

from tests.integration.conftest import Kube, eventually, install_crds

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: LocalCluster) -> Iterator[None]:
    install_crds(cluster)
    yield


class Supervisor:
    def __init__(self, wake: tuple[int, dict[str, Any]]) -> None:
        self.wake, self.calls = wake, []  # type: ignore[var-annotated]
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.calls.append(self.path)
                code, body = outer.wake if self.path == "/wake" else (200, {"state": "asleep"})
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _body(kube: Kube, name: str) -> dict[str, Any]:
    return dict(kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, name))


def _pods(kube: Kube, ctx: OperatorContext) -> list[dict[str, Any]]:
    out = []
    for p in kube.pods(f"{L.ISVC}=llm"):
        d = ctx.api.core.api_client.sanitize_for_serialization(p)
        d.setdefault("status", {})["podIP"] = "127.0.0.1"  # kwok's addresses route nowhere
        out.append(d)
    return out


def _cond(body: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_a_wake_that_fails_is_replaced_once_with_the_reason(kube: Kube, cluster: LocalCluster) -> None:
    sup = Supervisor(
        (503, {"error": "the engine did not answer in 30 s", "reason": "timeout", "state": "failed"})
    )
    spec = {"model": {"uri": "hf://org/model"}, "replicas": 2, "resources": {"gpu": 0},
            "scaling": {"maxReplicas": 3, "sleep": {"maxSleeping": 1}}}  # fmt: skip
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": {"name": "llm"}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump({**manifest, "spec": spec}))
    ctx = OperatorContext(
        settings=Settings(supervisor_port=sup.port, wake_timeout_seconds=5),
        api=KubeAPI(api_client(cluster.kubeconfig)),
        metrics=Metrics.create(),
    )
    events: list[tuple[str, str, str]] = []

    def emit(body: Any, type_: str, reason: str, message: str) -> None:
        events.append((type_, reason, message))

    async def passes() -> None:
        # pass 1: Service, token Secret and two pods; then llm-1 is made a sleeper, by its labels only
        await reconcile(ctx, _body(kube, "llm"), [], emit)
        eventually(lambda: len(kube.pods(f"{L.ISVC}=llm")) == 2, 30, what=f"two replica pods ({events})")
        kube.core.patch_namespaced_pod("llm-1", kube.ns, {"metadata": {
            "labels": {L.STATE: L.SLEEPING, L.SERVING: "false"},
            "annotations": {L.SLEEP_STARTED: "2026-12-03T00:00:00+00:00"}}})  # fmt: skip
        eventually(lambda: _pods(kube, ctx)[1]["metadata"]["labels"].get(L.STATE) == L.SLEEPING, 10)
        stale = _body(kube, "llm")  # the status as it was before the wake: no WakeFallback
        # pass 2: llm-1 is woken (desired 2, one serving): the wake fails -> deleted, condition, Event
        await reconcile(ctx, stale, _pods(kube, ctx), emit)
        assert sup.calls == ["/wake"]
        eventually(lambda: _cond(_body(kube, "llm"), "WakeFallback"), 10, what="WakeFallback written")
        eventually(lambda: all(p.metadata.name != "llm-1" or p.metadata.deletion_timestamp
                               for p in kube.pods(f"{L.ISVC}=llm")), 10)  # fmt: skip
        eventually(lambda: "llm-1" not in [p.metadata.name for p in kube.pods(f"{L.ISVC}=llm")], 60,
                   what="llm-1 gone")  # fmt: skip
        # pass 3, from the STALE body (before the condition): the replacement is created (cold) and
        # the replica writer writes its fields; passes 4-5 from fresh bodies change nothing more
        await reconcile(ctx, stale, _pods(kube, ctx), emit)
        for _ in range(2):
            await reconcile(ctx, _body(kube, "llm"), _pods(kube, ctx), emit)

    asyncio.run(passes())
    pods = kube.pods(f"{L.ISVC}=llm")
    assert sorted(p.metadata.name for p in pods) == ["llm-0", "llm-1"]
    new = next(p for p in pods if p.metadata.name == "llm-1")
    assert L.STATE not in (new.metadata.labels or {})  # the replacement is a new pod, not a sleeper
    assert new.metadata.annotations[L.START_PATH] == "cold"
    assert sup.calls == ["/wake"]  # once: never a retry loop
    assert [e[1] for e in events].count("WakeFailed") == 1
    assert "timeout" in next(e[2] for e in events if e[1] == "WakeFailed")
    body = _body(kube, "llm")
    c = _cond(body, "WakeFallback")
    assert (
        c is not None and c["status"] == "True" and c["reason"] == "WakeFailed" and "timeout" in c["message"]
    )
    st = body["status"]
    assert (st["replicas"], st["sleepingReplicas"]) == (2, 0)
    m = ctx.metrics.registry.get_sample_value(
        "ember_replica_actions_total", {"action": "WakeFailed", "result": "fallback"}
    )
    assert m == 1.0
