"""The demo's second scene: scale from zero through the activator (issue 18).

A second InferenceService, `agent`, runs with `minReplicas: 0` from the start, so it sits at zero the
whole time the trace plays (its Service routes to the activator, `ScaledToZero`). When the trace is
over, a handful of requests arrive at once: the activator holds them, pushes the demand to the
operator (no Prometheus scrape in between), the operator scales 0 -> N with the start path it chose,
and the held requests are answered once a replica serves. The live view shows the held count, the
activation's start path and ETA (the activator's own log line) and each answer as it comes.

kwok pods have no network, so, as in the integration test, the activator runs here and reaches the
simulated replica through the simulator's targets file; the routing switch (the EndpointSlice the
operator owns), the demand push and the scale-up are what runs in a cluster.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

AGENT = "agent"


def agent_manifest(namespace: str, ready_after_s: float) -> dict[str, Any]:
    return {
        "apiVersion": "serving.ember.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": AGENT, "namespace": namespace},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen2.5-7B-Instruct", "servedName": AGENT},
            "resources": {"gpu": 1, "gpuType": "H100-80GB"},
            "slo": {"archetype": "background"},
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 4,
                "decisionIntervalSeconds": 1,
                "scaleToZeroAfterSeconds": 60,
                "targetInFlightPerReplica": 4,
                "drainTimeoutSeconds": 2,
            },
            "podMetadata": {"annotations": {"sim.ember.dev/ready-after": f"{ready_after_s:g}s"}},
        },
    }


def activator_objects(namespace: str) -> list[dict[str, Any]]:
    """What the chart makes for the activator: its Service, here with an EndpointSlice of one
    address (the activator runs outside the fake cluster, see the module's docstring)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ember-activator", "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "ember-activator-demo",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "ember-activator"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["10.245.0.1"],
                    "conditions": {"ready": True},
                    "targetRef": {"kind": "Pod", "name": "ember-activator-0", "namespace": namespace},
                }
            ],
        },
    ]


@dataclass
class Answer:
    sent_s: float
    code: int
    took_s: float
    error: str = ""


@dataclass
class Scene:
    """What the scene saw, for the summary and demo.json."""

    requests: int
    answers: list[Answer] = field(default_factory=list)
    max_held: int = 0
    route_before: str = ""
    start_path: str = ""
    eta_s: float | None = None
    decision: str = ""
    ready_after_s: float = 0.0

    def summary(self) -> dict[str, object]:
        ok = [a for a in self.answers if a.code == 200]
        took = sorted(a.took_s for a in ok)
        return {
            "from_zero_requests": self.requests,
            "from_zero_answered": len(ok),
            "from_zero_failed": self.requests - len(ok),
            "from_zero_max_held": self.max_held,
            "from_zero_route_before": self.route_before,
            "from_zero_start_path": self.start_path or "-",
            "from_zero_eta_s": self.eta_s,
            "from_zero_first_answer_s": round(took[0], 3) if took else None,
            "from_zero_last_answer_s": round(took[-1], 3) if took else None,
            "from_zero_simulated_start_s": self.ready_after_s,
            "from_zero_decision": self.decision,
        }


def _ask(url: str, host: str, t0: float) -> Answer:
    sent = time.monotonic()
    body = {"model": AGENT, "prompt": "summarise the overnight tickets", "max_tokens": 16}
    try:
        r = httpx.post(url + "/v1/completions", json=body, headers={"Host": host}, timeout=90)
        return Answer(sent - t0, r.status_code, time.monotonic() - sent, "" if r.is_success else r.text[:120])
    except httpx.HTTPError as e:
        return Answer(sent - t0, 0, time.monotonic() - sent, repr(e)[:120])


def _held(metrics_url: str, namespace: str) -> int:
    try:
        text = httpx.get(metrics_url, timeout=2).text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        mine = f'name="{AGENT}"' in line and f'namespace="{namespace}"' in line
        if line.startswith("ember_activator_held_requests{") and mine:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _activation(log: Path) -> tuple[str, float | None]:
    """The activator's log line for the activation: the start path the operator chose and its ETA."""
    if not log.exists():
        return "", None
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message") == "activation" and str(rec.get("object", "")).endswith(f"/{AGENT}"):
            eta = rec.get("eta_s")
            return str(rec.get("start_path", "")), None if eta is None else round(float(eta), 2)
    return "", None


def run_scene(
    stack: Any, console: Console, requests: int = 6, timeout_s: float = 90, ready_after_s: float = 5
) -> Scene:
    """Wait until `agent` is at zero behind the activator, send `requests` at once, show them held,
    activated and answered."""
    scene = Scene(requests=requests, ready_after_s=ready_after_s)
    ns = stack.namespace
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        scene.route_before = stack.route(AGENT)
        if scene.route_before == "activator" and not stack.replica_pods(AGENT):
            break
        time.sleep(1)
    console.print(
        f"[bold]ember demo[/]: scene 2, scale from zero: '{AGENT}' has no replica and its Service "
        f"routes to the [bold]{scene.route_before or '?'}[/]; {requests} requests arrive at once"
    )
    host = f"{AGENT}.{ns}.svc.cluster.local"
    t0 = time.monotonic()
    with ThreadPoolExecutor(requests) as pool:
        futs: list[Future[Answer]] = [
            pool.submit(_ask, stack.activator_url, host, t0) for _ in range(requests)
        ]
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                now = time.monotonic() - t0
                held = _held(stack.activator_metrics_url, ns)
                scene.max_held = max(scene.max_held, held)
                if not scene.start_path:
                    scene.start_path, scene.eta_s = _activation(stack.activator_log)
                st = stack.isvc(AGENT).get("status", {})
                d = st.get("lastDecision") or {}
                if d.get("reason") == "ScaleFromZero":
                    scene.decision = str(d.get("message", ""))
                done = [f.result() for f in futs if f.done()]
                t = Table(title=f"InferenceService {ns}/{AGENT} (minReplicas 0), through the activator")
                for c in ("t", "held", "desired", "ready", "activation", "answered", "last decision"):
                    t.add_column(c)
                act = f"{scene.start_path}, ETA {scene.eta_s} s" if scene.start_path else "-"
                t.add_row(
                    f"{now:.1f} s",
                    str(held),
                    str(st.get("desiredReplicas", "-")),
                    str(st.get("readyReplicas", 0)),
                    act,
                    f"{sum(a.code == 200 for a in done)}/{requests}",
                    f"{d.get('reason', '-')}: {d.get('message', '')}"[:70],
                )
                live.update(Group(t))
                if len(done) == requests or now > timeout_s:
                    break
                time.sleep(0.25)
        scene.answers = [f.result() for f in futs]
    return scene
