"""Scale from zero through the REAL activator processes, on real parts: the real operator, the real
control plane (kwok GPU nodes whose pods turn Ready after the simulated start), a real Prometheus,
and simulated replicas that serve vLLM's OpenAI API over HTTP (ember-sim live --serve-http).

kwok pods have no network, so the activators reach the simulated replicas through the simulator's
targets file (EMBER_ACTIVATOR_ADDRESS_MAP_FILE: pod -> 127.0.0.1:port); everything else, the
EndpointSlice the operator writes, the demand annotation, the scale-up, is what runs in a cluster.
The activator's own Service has no pods here either: its EndpointSlice is written by the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ember_cluster import LocalCluster, Prometheus
from ember_cluster.procs import free_port

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import Operator, get_isvc, replica_pods

READY_AFTER_S = 3.0  # the simulated start (kwok turns the pod Ready this long after it runs)


class Activator:
    """`python -m ember_activator.main`, a separate process a test can SIGKILL."""

    def __init__(
        self, cluster: LocalCluster, ns: str, workdir: Path, name: str, address_map: Path, max_held: int
    ) -> None:
        self.name, self.port, self.metrics_port = name, free_port(), free_port()
        self.log = workdir / f"activator-{name}.log"
        env = {
            **os.environ,
            "EMBER_ACTIVATOR_KUBECONFIG": str(cluster.kubeconfig),
            "EMBER_ACTIVATOR_NAMESPACES": json.dumps([ns]),
            "EMBER_ACTIVATOR_IDENTITY": f"activator-{name}",
            "EMBER_ACTIVATOR_PORT": str(self.port),
            "EMBER_ACTIVATOR_METRICS_PORT": str(self.metrics_port),
            "EMBER_ACTIVATOR_MAX_HELD_PER_SERVICE": str(max_held),
            "EMBER_ACTIVATOR_HOLD_TIMEOUT_SECONDS": "60",
            "EMBER_ACTIVATOR_ADDRESS_MAP_FILE": str(address_map),
            "EMBER_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "ember_activator.main"], stdout=fh,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        eventually(lambda: httpx.get(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1).status_code == 200,
                   30, what=f"activator {name} ready ({self.log})")  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, metric: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        for line in text.splitlines():
            if line.startswith(f"{metric}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def isvc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.ember.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "hf://org/model"},
            "resources": {"gpu": 1, "cpu": "1", "memory": "1Gi"},
            "scaling": {
                "minReplicas": 0, "maxReplicas": 4, "decisionIntervalSeconds": 1, "stableWindowSeconds": 12,
                "panicWindowSeconds": 4, "scaleDownDelaySeconds": 30, "scaleToZeroAfterSeconds": 30,
                "targetInFlightPerReplica": 2, "drainTimeoutSeconds": 2,
            },
            "podMetadata": {"annotations": {"sim.ember.dev/ready-after": f"{READY_AFTER_S:g}s"}},
        },
    }  # fmt: skip


class Stack:
    def __init__(self, cluster: LocalCluster, kube: Kube, wd: Path, max_held: int = 8) -> None:
        self.kube, self.name = kube, "chat"
        self.sd, self.status = wd / "targets.json", wd / "sim-status.json"
        self.sd.write_text("[]")
        self.activator_service(kube)
        self.prom = Prometheus(wd / "prom", file_sd={"vllm": [self.sd]}, scrape_interval_s=1.0).start()
        self.op = Operator(cluster, wd / "operator.log", EMBER_PROMETHEUS_URL=self.prom.url,
                           EMBER_COLD_START_SECONDS=f"{READY_AFTER_S:g}",
                           EMBER_ACTIVATOR_SERVICE=f"{kube.ns}/ember-activator").start()  # fmt: skip
        self.op.wait_healthy()
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "ember_sim.cli", "live", "--synthetic", "1:0", "--serve-http",
             "--kubeconfig", str(cluster.kubeconfig), "--namespace", kube.ns, "--name", self.name,
             "--targets-file", str(self.sd), "--status-file", str(self.status)],
            stdout=(wd / "sim.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc(self.name)))
        self.a = Activator(cluster, kube.ns, wd, "a", self.sd, max_held)
        self.b = Activator(cluster, kube.ns, wd, "b", self.sd, max_held)
        self.wd = wd

    @staticmethod
    def activator_service(kube: Kube) -> None:
        """What the chart makes: the activator's Service, here with the EndpointSlice of two pods."""
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ember-activator"},
             "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "ember-activator-x", "labels": {"kubernetes.io/service-name": "ember-activator"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                            "targetRef": {"kind": "Pod", "name": f"ember-activator-{i}", "namespace": kube.ns}}
                           for i, ip in enumerate(("10.245.0.1", "10.245.0.2"))]},
        ]))  # fmt: skip

    def route(self) -> tuple[str, list[str]]:
        s = self.kube.cluster.api(
            __import__("kubernetes").client.DiscoveryV1Api
        ).read_namespaced_endpoint_slice(f"{self.name}-ember", self.kube.ns)
        return s.metadata.labels["serving.ember.dev/route"], [e.addresses[0] for e in s.endpoints or []]

    def sim_status(self) -> dict[str, Any]:
        return json.loads(self.status.read_text()) if self.status.exists() else {}

    def close(self) -> None:
        for a in (self.a, self.b):
            a.stop()
        self.sim.terminate()
        self.sim.wait(10)
        self.op.stop()
        self.prom.stop()
        for f in ("operator.log", "activator-a.log", "activator-b.log", "sim.log"):
            p = self.wd / f
            if p.exists():
                print(f"---- {f} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]))


@pytest.fixture
def crds(cluster: LocalCluster) -> None:
    install_crds(cluster)


@pytest.fixture
def stack(cluster: LocalCluster, kube: Kube, crds: None, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(cluster, kube, tmp_path)
    yield s
    s.close()


def ask(
    url: str, host: str, stream: bool = False, timeout_s: float = 60
) -> tuple[int, dict[str, str], str, float]:
    t0 = time.monotonic()
    body = {"model": "chat", "prompt": "hello", "max_tokens": 8, "stream": stream}
    r = httpx.post(url + "/v1/completions", json=body, headers={"Host": host}, timeout=timeout_s)
    return r.status_code, dict(r.headers), r.text, time.monotonic() - t0


def at_zero(s: Stack) -> None:
    eventually(
        lambda: s.route() == ("activator", ["10.245.0.1", "10.245.0.2"]), 30, what="routed to the activator"
    )
    assert not replica_pods(s.kube, s.name)
    dec = get_isvc(s.kube, s.name)["status"]["lastDecision"]
    assert dec["reason"] == "ScaledToZero", dec  # at zero on purpose: not MetricsUnavailable


def test_scale_from_zero_holds_the_first_requests_and_answers_them_after_the_simulated_start(
    stack: Stack,
) -> None:
    at_zero(stack)
    host = f"chat.{stack.kube.ns}.svc.cluster.local"
    # a client that calls the Service by its cluster IP ($CHAT_SERVICE_HOST) is held the same way
    cluster_ip = stack.kube.core.read_namespaced_service("chat", stack.kube.ns).spec.cluster_ip
    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(ask, stack.a.url, host, i % 2 == 1) for i in range(4)]
        futs.append(pool.submit(ask, stack.b.url, f"{cluster_ip}:80"))
        eventually(lambda: stack.a.metric("ember_activator_held_requests", namespace=stack.kube.ns, name="chat") == 4,
                   5, 0.05, what="4 held on a")  # fmt: skip
        ann = get_isvc(stack.kube, "chat")["metadata"]["annotations"]
        assert json.loads(ann["demand.serving.ember.dev/activator-a"])["held"] >= 1, ann
        answers = [f.result() for f in futs]
    assert [a[0] for a in answers] == [200] * 5, answers
    slowest = max(a[3] for a in answers)
    assert READY_AFTER_S <= slowest <= READY_AFTER_S + 10, slowest
    streamed = [a[2] for a in answers if "data:" in a[2]]
    assert len(streamed) == 2 and all(t.rstrip().endswith("data: [DONE]") for t in streamed)
    dec = get_isvc(stack.kube, "chat")["status"]["lastDecision"]
    reasons = {
        e.message
        for e in stack.kube.core.list_namespaced_event(stack.kube.ns).items
        if e.reason == "ScalingDecision"
    }
    assert any("ScaleFromZero" in m and "held by the activator" in m for m in reasons), reasons
    assert stack.route()[0] == "replicas", "once a replica serves, the Service routes to it directly"
    assert stack.a.metric("ember_activator_held_requests", namespace=stack.kube.ns, name="chat") == 0
    assert stack.a.metric("ember_activator_activations_total", namespace=stack.kube.ns, name="chat") == 1
    assert stack.sim_status()["failed_total"] == 0 and dec["desiredReplicas"] >= 1


def test_a_burst_beyond_the_bound_gets_429_with_retry_after_and_none_is_lost(stack: Stack) -> None:
    at_zero(stack)
    host = f"chat.{stack.kube.ns}.svc.cluster.local"
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: ask(stack.a.url, host), range(20)))
    codes = sorted(a[0] for a in answers)
    assert codes == [200] * 8 + [429] * 12, codes
    for code, headers, _, _ in answers:
        if code == 429:
            assert (
                headers["x-ember-reason"] == "QueueFull"
                and 1 <= int(headers["retry-after"]) <= READY_AFTER_S + 1
            )
    # 8 held against 2 in flight per replica at 70%: more than one replica from zero, at once
    assert get_isvc(stack.kube, "chat")["status"]["desiredReplicas"] >= 2
    assert stack.sim_status()["completed"] >= 8 and stack.sim_status()["failed_total"] == 0


def test_an_activator_killed_mid_hold_loses_only_what_it_held_and_the_other_keeps_serving(
    stack: Stack,
) -> None:
    at_zero(stack)
    host = f"chat.{stack.kube.ns}.svc.cluster.local"
    with ThreadPoolExecutor(8) as pool:
        on_a: list[Future[Any]] = [pool.submit(ask, stack.a.url, host) for _ in range(3)]
        on_b = [pool.submit(ask, stack.b.url, host) for _ in range(2)]
        eventually(lambda: stack.a.metric("ember_activator_held_requests", namespace=stack.kube.ns, name="chat") == 3,
                   5, 0.05, what="3 held on a")  # fmt: skip
        t_kill = time.monotonic()
        stack.a.kill()
        for f in on_a:
            with pytest.raises(httpx.TransportError):  # a reset, not a hang
                f.result(timeout=5)
        assert time.monotonic() - t_kill < 5
        assert [f.result()[0] for f in on_b] == [200, 200]
    assert ask(stack.b.url, host)[0] == 200, "the second activator keeps serving"
