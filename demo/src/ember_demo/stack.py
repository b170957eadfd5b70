"""Brings up and tears down everything the demo runs: control plane, CRDs, chart, Prometheus, the
operator (out of cluster, with the chart's RBAC), the replica simulator. Each part fails fast with the
log to read; `close()` stops whatever was started, in reverse order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from ember_cluster import ComponentFailed, GPUNodePool, LocalCluster, Prometheus
from ember_cluster.procs import free_port

from ember_demo.fromzero import AGENT, activator_objects, agent_manifest

ROOT = Path(__file__).resolve().parents[3]
NAME, NAMESPACE = "chat", "demo"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def service_manifest(ready_after_s: float) -> dict[str, Any]:
    return {
        "apiVersion": "serving.ember.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": "llama-3.1-8b"},
            "resources": {"gpu": 1, "gpuType": "H100-80GB"},
            "slo": {"archetype": "interactive", "ttftP95Ms": 500, "itlP95Ms": 50},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 8,
                "decisionIntervalSeconds": 2,
                "stableWindowSeconds": 20,
                "panicWindowSeconds": 4,
                "scaleDownDelaySeconds": 15,
                "maxScaleDownStep": 2,
                "drainTimeoutSeconds": 10,
            },
            "warmBuffer": {"enabled": True, "idleGPUs": 2, "maxIdleGPUs": 4},
            # kwok stands in for the kubelet: a new replica turns Ready this long after it starts
            "podMetadata": {"annotations": {"sim.ember.dev/ready-after": f"{ready_after_s:g}s"}},
        },
    }


@dataclass
class Stack:
    workdir: Path
    prometheus_port: int = 9090
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster: LocalCluster | None = None
    prometheus: Prometheus | None = None

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        assert self.cluster is not None
        r = subprocess.run(
            [str(self.cluster.binaries.kubectl), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            input=input,
            text=True,
            capture_output=True,
            timeout=120,
        )
        if r.returncode:
            raise ComponentFailed(f"kubectl {' '.join(args[:2])}", self.log("demo"), r.stderr.strip())
        return r.stdout

    def _wait_established(self, crd: str, timeout_s: float) -> None:
        """`kubectl wait --for=condition=established`, retried: on a CRD the API server has not yet
        given any status, kubectl wait fails at once (".status.conditions accessor error: <nil>")
        instead of waiting, which ended the demo on a fresh cluster now and then."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.kubectl("wait", "--for=condition=established", "--timeout=10s", crd)
                return
            except ComponentFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def helm(self, *args: str) -> str:
        assert self.cluster is not None
        r = subprocess.run(
            [str(self.cluster.binaries.helm), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            text=True,
            capture_output=True,
            timeout=180,
        )
        if r.returncode:
            raise ComponentFailed("helm", self.log("demo"), r.stderr.strip())
        return r.stdout

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            argv,
            stdout=self.log(name).open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    # ------------------------------------------------------------------------------------------ up
    def up(self, ready_after_s: float, say: Any) -> None:
        if not port_free(self.prometheus_port):
            raise ComponentFailed(
                "prometheus",
                self.log("demo"),
                f"port {self.prometheus_port} is taken (use --prometheus-port)",
            )
        # every run starts from an empty cluster and an empty Prometheus: the last run's etcd held its
        # namespace and Helm release (a second `make demo` failed on "namespaces demo already exists")
        # and its TSDB would mix the last run's series into this one's decisions
        for state in ("cluster", "prometheus"):
            shutil.rmtree(self.workdir / state, ignore_errors=True)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        say("control plane: kube-apiserver, etcd, scheduler, controller-manager, kwok (4 nodes x 8 H100)")
        self.cluster = LocalCluster(self.workdir / "cluster", pools=(GPUNodePool(),), pod_ready_delay_ms=1000)
        self.cluster.start()
        say(
            "kubectl apply -f crds/ ; helm install ember charts/ember (operator runs here, in the foreground)"
        )
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        self._wait_established("crd/inferenceservices.serving.ember.dev", 60)
        self.kubectl("create", "namespace", NAMESPACE)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(activator_objects(NAMESPACE)))
        self.helm(
            "install",
            "ember",
            str(ROOT / "charts" / "ember"),
            "-n",
            "ember-system",
            "--create-namespace",
            "--skip-crds",
            "--set",
            "replicaCount=0",
            "--wait=false",
        )
        token = self.kubectl("create", "token", "ember", "-n", "ember-system", "--duration=24h").strip()
        kubeconfig = self._token_kubeconfig(token)
        say(f"prometheus on http://127.0.0.1:{self.prometheus_port}")
        self.sd = self.workdir / "targets.json"
        self.sd.write_text("[]")
        self.agent_sd = self.workdir / "agent-targets.json"
        self.agent_sd.write_text("[]")
        self.prometheus = Prometheus(
            self.workdir / "prometheus",
            file_sd={"vllm": [self.sd, self.agent_sd]},
            scrape_interval_s=1.0,
            port=self.prometheus_port,
        ).start()
        say("operator (with the chart's ServiceAccount token) and the InferenceService 'chat'")
        health = free_port()
        op = self.spawn(
            "operator",
            [sys.executable, "-m", "ember.main"],
            env={
                "EMBER_KUBECONFIG": str(kubeconfig),
                "EMBER_PROMETHEUS_URL": self.prometheus.url,
                "EMBER_METRICS_PORT": "0",
                "EMBER_HEALTH_PORT": str(health),
                "EMBER_RESYNC_INTERVAL_SECONDS": "2",
                "EMBER_COLD_START_SECONDS": str(ready_after_s + 2),
                "EMBER_METRICS_LAG_SECONDS": "2",
                "EMBER_ACTIVATOR_SERVICE": f"{NAMESPACE}/ember-activator",
                "PYTHONUNBUFFERED": "1",
            },
        )
        self._wait(
            op, "operator", lambda: httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=1).is_success
        )
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(service_manifest(ready_after_s)))
        say(f"the activator, and the InferenceService '{AGENT}' (minReplicas 0: at zero until scene 2)")
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(agent_manifest(NAMESPACE, ready_after_s)))
        self._start_agent_replicas()
        self._start_activator()

    # ------------------------------------------------------------------------- scene 2: from zero
    namespace = NAMESPACE

    def _start_agent_replicas(self) -> None:
        """The agent's simulated replicas answer vLLM's OpenAI API over HTTP; no traffic of their own."""
        assert self.cluster is not None
        self.spawn("simulator-agent", [
            sys.executable, "-m", "ember_sim.cli", "live", "--synthetic", "1:0", "--serve-http",
            "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", NAMESPACE, "--name", AGENT,
            "--targets-file", str(self.agent_sd), "--status-file", str(self.workdir / "agent-status.json"),
        ])  # fmt: skip

    def _start_activator(self) -> None:
        assert self.cluster is not None
        port, metrics = free_port(), free_port()
        self.activator_url = f"http://127.0.0.1:{port}"
        self.activator_metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        self.activator_log = self.log("activator")
        a = self.spawn("activator", [sys.executable, "-m", "ember_activator.main"], env={
            "EMBER_ACTIVATOR_KUBECONFIG": str(self.cluster.kubeconfig),
            "EMBER_ACTIVATOR_NAMESPACES": json.dumps([NAMESPACE]),
            "EMBER_ACTIVATOR_IDENTITY": "activator-demo",
            "EMBER_ACTIVATOR_PORT": str(port),
            "EMBER_ACTIVATOR_METRICS_PORT": str(metrics),
            "EMBER_ACTIVATOR_HOLD_TIMEOUT_SECONDS": "90",
            # kwok pods have no network: pod -> 127.0.0.1:port from the simulator's targets file
            "EMBER_ACTIVATOR_ADDRESS_MAP_FILE": str(self.agent_sd),
            "EMBER_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        self._wait(
            a, "activator", lambda: httpx.get(f"http://127.0.0.1:{metrics}/readyz", timeout=1).is_success
        )

    def isvc(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "eis", name, "-n", NAMESPACE, "-o", "json")))

    def route(self, name: str) -> str:
        """Where the service's traffic goes: the route label of the EndpointSlice Ember owns."""
        try:
            out = self.kubectl("get", "endpointslice", f"{name}-ember", "-n", NAMESPACE, "-o", "json")
        except ComponentFailed:
            return ""
        return str(json.loads(out)["metadata"].get("labels", {}).get("serving.ember.dev/route", ""))

    def replica_pods(self, name: str) -> list[str]:
        out = self.kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            f"serving.ember.dev/inferenceservice={name},serving.ember.dev/component=replica",
            "-o",
            "name",
        )
        return out.split()

    def start_traffic(
        self,
        trace: Path,
        speed: float,
        rate_scale: float,
        offset_s: float,
        duration_s: float,
        max_sleeping: int = 0,
        sleep_delete_after_s: float = 1800.0,
    ) -> None:
        assert self.cluster is not None
        self.sim_status = self.workdir / "sim-status.json"
        self.spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "ember_sim.cli",
                "live",
                "--trace",
                str(trace),
                "--speed",
                str(speed),
                "--rate-scale",
                str(rate_scale),
                "--offset-s",
                str(offset_s),
                "--duration-s",
                str(duration_s),
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--namespace",
                NAMESPACE,
                "--name",
                NAME,
                "--targets-file",
                str(self.sd),
                "--status-file",
                str(self.sim_status),
                "--max-sleeping",
                str(max_sleeping),
                "--sleep-delete-after-s",
                str(sleep_delete_after_s),
            ],
        )

    def _token_kubeconfig(self, token: str) -> Path:
        assert self.cluster is not None
        cfg = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cfg["users"] = [{"name": "ember", "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = "ember"
        path = self.workdir / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def _wait(self, proc: subprocess.Popen[bytes], name: str, check: Any, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ComponentFailed(name, self.log(name), f"exited with {proc.returncode}")
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise ComponentFailed(name, self.log(name), f"not ready after {timeout_s:.0f}s")

    # ---------------------------------------------------------------------------------------- down
    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(p.pid, signal.SIGKILL)
        self.procs.clear()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.cluster is not None:
            self.cluster.stop()
