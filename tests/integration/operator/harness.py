"""Runs the real operator (`python -m ember.main`) as a separate process, killable at any moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember_cluster import LocalCluster
from ember_cluster.procs import free_port

from tests.integration.conftest import Kube, eventually


class Operator:
    def __init__(self, cluster: LocalCluster, log: Path, kubeconfig: Path | None = None, **env: str) -> None:
        self.cluster, self.log, self.kubeconfig = cluster, log, kubeconfig or cluster.kubeconfig
        self.env, self.proc, self.starts = env, None, 0
        self.health_port = free_port()

    def start(self) -> Operator:
        env = {
            **os.environ,
            "EMBER_KUBECONFIG": str(self.kubeconfig),
            "EMBER_METRICS_PORT": "0",
            "EMBER_HEALTH_PORT": str(self.health_port),
            "EMBER_RESYNC_INTERVAL_SECONDS": "1",
            "EMBER_LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ember.main"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        fh.close()
        self.starts += 1
        return self

    def wait_healthy(self, timeout_s: float = 60) -> None:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        eventually(
            lambda: httpx.get(url, timeout=1).status_code == 200,
            timeout_s,
            what=f"operator healthy ({self.log})",
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies or the OOM killer strikes."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def isvc_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"uri": "hf://org/model"},
        "resources": {"gpu": 1, "cpu": "1", "memory": "1Gi"},
        "scaling": {"minReplicas": 0, "maxReplicas": 8, "drainTimeoutSeconds": 1},
        "podMetadata": {"annotations": {"sim.ember.dev/ready-after": "300ms"}},
    }
    base.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": base,
    }


def get_isvc(kube: Kube, name: str) -> dict[str, Any]:
    return kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, name)  # type: ignore[no-any-return]


def patch_spec(kube: Kube, name: str, spec: dict[str, Any]) -> None:
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, name, {"spec": spec})


def replica_pods(kube: Kube, name: str, include_terminating: bool = False) -> list[Any]:
    pods = kube.pods(f"serving.ember.dev/inferenceservice={name},serving.ember.dev/component=replica")
    return [p for p in pods if include_terminating or not p.metadata.deletion_timestamp]


def converged(kube: Kube, name: str, n: int) -> bool:
    """Exactly n replica pods, all Ready, all serving, nothing terminating, and status says so."""
    pods = replica_pods(kube, name, include_terminating=True)
    if len(pods) != n or not all(kube.pod_ready(p) for p in pods):
        return False
    if any(p.metadata.labels.get("serving.ember.dev/serving") != "true" for p in pods):
        return False
    st = get_isvc(kube, name).get("status", {})
    return bool(st.get("desiredReplicas") == n and st.get("readyReplicas") == n and st.get("replicas") == n)


def wait_converged(kube: Kube, name: str, n: int, timeout_s: float = 60) -> None:
    eventually(lambda: converged(kube, name, n), timeout_s, what=f"{name} converged to {n}")


def condition(kube: Kube, name: str, type_: str) -> dict[str, Any] | None:
    for c in get_isvc(kube, name).get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return None


def wait_for(t: float) -> None:
    time.sleep(t)
