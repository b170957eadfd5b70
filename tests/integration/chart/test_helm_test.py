"""`helm test` for real on the real control plane.

The local cluster's nodes are kwok nodes: kwok moves pods through their phases but runs no
container. So this test is the kubelet for the one pod `helm test` creates: when the real scheduler
has bound it and kwok has marked it started, the test runs that pod's container command (`python -c`
with the chart's script, its env) on this host, with what a kubelet gives a pod: a token bound to
the pod for its ServiceAccount (TokenRequest) and the cluster CA at the paths the in-cluster loader
reads, KUBERNETES_SERVICE_HOST/PORT, and the cluster DNS name of the operator's Service resolved to
a real operator's /healthz. The container's real exit code becomes the pod's terminal phase, which
is what `helm test` waits for. What is not real here: the container image (this venv's Python and
libraries stand in for the operator image's) and the pod's securityContext (not enforced on a host).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ember_cluster.procs import free_port

from tests.integration.chart.conftest import Helm
from tests.integration.conftest import Kube, eventually
from tests.integration.operator.harness import Operator

SITECUSTOMIZE = """
# The kubelet's service-account mount, for the in-cluster loader (its paths are module constants).
import os
import kubernetes.config.incluster_config as ic
ic.SERVICE_TOKEN_FILENAME = os.environ["EMBER_TEST_TOKEN_FILE"]
ic.SERVICE_CERT_FILENAME = os.environ["EMBER_TEST_CA_FILE"]
"""


class HostKubelet:
    """Runs the container of one pod on this host and reports its exit as the pod's phase."""

    def __init__(self, kube: Kube, work: Path, dns: dict[str, str]) -> None:
        self.kube, self.work, self.dns = kube, work, dns
        self.exit_code: int | None = None
        self.output = ""

    def run(self, pod_name: str) -> None:
        pod = eventually(lambda: self._started(pod_name), 120, what=f"pod {pod_name} started by kwok")
        c = pod.spec.containers[0]
        token = self.work / "token"
        token.write_text(
            self.kube.kubectl(
                "create", "token", pod.spec.service_account_name,
                "--bound-object-kind=Pod", f"--bound-object-name={pod_name}", "--duration=10m",
            ).stdout.strip()
        )  # fmt: skip
        (self.work / "site").mkdir(exist_ok=True)
        (self.work / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {e.name: self._resolve(e.value or "") for e in c.env or []}
        server = self.kube.cluster.server.removeprefix("https://")
        env |= {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(self.work / "site"),
            "KUBERNETES_SERVICE_HOST": server.rsplit(":", 1)[0],
            "KUBERNETES_SERVICE_PORT": server.rsplit(":", 1)[1],
            "EMBER_TEST_TOKEN_FILE": str(token),
            "EMBER_TEST_CA_FILE": str(self.kube.cluster.workdir / "pki" / "ca.crt"),
        }
        assert c.command[0] == "python", c.command
        r = subprocess.run(
            [sys.executable, *c.command[1:], *c.args], env=env, capture_output=True, text=True, timeout=60
        )
        self.exit_code, self.output = r.returncode, r.stdout + r.stderr
        self._finish(pod, c.name, r.returncode)

    def _started(self, name: str) -> Any:
        pod = self.kube.core.read_namespaced_pod(name, self.kube.ns)
        return pod if pod.spec.node_name and self.kube.pod_ready(pod) else None

    def _resolve(self, value: str) -> str:
        for name, addr in self.dns.items():
            value = value.replace(name, addr)
        return value

    def _finish(self, pod: Any, container: str, code: int) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": now}
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": container, "image": pod.spec.containers[0].image, "ready": False,
                    "restartCount": 0, "started": False, "imageID": "", "state": {"terminated": state},
                }
            ],
        }  # fmt: skip
        self.kube.core.patch_namespaced_pod_status(pod.metadata.name, self.kube.ns, {"status": status})


@pytest.fixture
def release(kube: Kube, helm: Helm) -> Iterator[str]:
    yield kube.ns
    helm("uninstall", kube.ns, "-n", kube.ns, "--ignore-not-found", check=False)


@pytest.fixture
def operator(kube: Kube, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(kube.cluster, tmp_path / "operator.log", EMBER_NAMESPACES=f'["{kube.ns}"]')
    yield op
    op.stop()


def helm_test(helm: Helm, release: str, kubelet: HostKubelet) -> subprocess.CompletedProcess[str]:
    runner = threading.Thread(target=kubelet.run, args=(f"{release}-ember-test",), daemon=True)
    runner.start()
    r = helm("test", release, "-n", release, "--timeout", "3m", check=False)
    runner.join(10)
    return r


def install(kube: Kube, helm: Helm, release: str) -> str:
    pcs = (
        f"priorityClasses.serving.name={release}-serving",
        f"priorityClasses.warmBuffer.name={release}-warm",
        f"priorityClasses.control.name={release}-control",
    )
    helm.install(release, kube.ns, *pcs)
    return f"{release}-ember-metrics.{kube.ns}.svc:8081"


def test_helm_test_passes_against_a_live_operator_and_cleans_up(
    kube: Kube, helm: Helm, release: str, operator: Operator, tmp_path: Path
) -> None:
    service = install(kube, helm, release)
    operator.start().wait_healthy()
    kubelet = HostKubelet(kube, tmp_path, {service: f"127.0.0.1:{operator.health_port}"})
    r = helm_test(helm, release, kubelet)
    assert kubelet.exit_code == 0, kubelet.output
    assert "CRD established: True" in kubelet.output and "operator /healthz: 200" in kubelet.output
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"TEST SUITE:     {release}-ember-test" in r.stdout and "Succeeded" in r.stdout, r.stdout
    # hook-delete-policy hook-succeeded: the test's pod, ServiceAccount and RBAC are gone
    name = f"{release}-ember-test"
    eventually(
        lambda: all(
            kube.kubectl("get", kind, name, check=False).returncode != 0
            for kind in ("pod", "serviceaccount", "clusterrole", "clusterrolebinding")
        ),
        30,
        what="helm test objects deleted",
    )


def test_helm_test_fails_when_the_operator_does_not_answer(
    kube: Kube, helm: Helm, release: str, tmp_path: Path
) -> None:
    service = install(kube, helm, release)
    kubelet = HostKubelet(kube, tmp_path, {service: f"127.0.0.1:{free_port()}"})  # nothing listens
    r = helm_test(helm, release, kubelet)
    assert kubelet.exit_code not in (0, None), kubelet.output
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "fail" in out.lower() and "timed out" not in out, out
    pod = kube.core.read_namespaced_pod(f"{release}-ember-test", kube.ns)  # kept on failure
    assert pod.status.phase == "Failed"
