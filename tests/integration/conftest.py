"""Integration tier: a real control plane for the whole session (ember_cluster.LocalCluster).

Every test gets its own namespace. On failure, forensics (events, pods, operator and component log
tails) are printed into the report by `forensics`.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ember_cluster import GPUNodePool, LocalCluster
from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]


def install_crds(cluster: LocalCluster) -> Kube:
    """Ember's CRDs applied and established, and the serving PriorityClass replicas ask for: what every
    test that runs the operator needs first (idempotent: the cluster is shared by the session). The
    wait allows 90 s."""
    from ember.api.v1alpha1 import GROUP, PLURAL

    k = Kube(cluster, "default")
    k.kubectl("apply", "-f", str(ROOT / "crds"))
    # retried: on a CRD without any status yet kubectl wait fails at once (".status.conditions
    # accessor error: <nil>") instead of waiting
    deadline = time.monotonic() + 90
    while True:
        r = k.kubectl(
            "wait", "--for=condition=established", "--timeout=10s", f"crd/{PLURAL}.{GROUP}", check=False
        )
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, f"CRD not established after 90 s: {r.stderr}"
        time.sleep(0.5)
    k.ensure_priority_class("ember-serving", 1000)
    return k


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    wd = tmp_path_factory.mktemp("cluster")
    pools = (
        GPUNodePool(count=4, gpus_per_node=8, product="H100-80GB", prefix="gpu-h100"),
        GPUNodePool(count=1, gpus_per_node=8, product="A100-80GB", prefix="gpu-a100"),
    )
    with LocalCluster(wd, pools=pools, pod_ready_delay_ms=500) as c:
        yield c


class Kube:
    """Small helpers over the official client, bound to one test namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster, self.ns = cluster, namespace
        self.core = cluster.api(client.CoreV1Api)
        self.custom = cluster.api(client.CustomObjectsApi)
        self.sched = cluster.api(client.SchedulingV1Api)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(self.cluster.binaries.kubectl),
            f"--kubeconfig={self.cluster.kubeconfig}",
            "-n",
            self.ns,
            *args,
        ]
        return subprocess.run(cmd, input=input, text=True, capture_output=True, check=check, timeout=60)

    def pods(self, selector: str = "") -> list[Any]:
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def pod_ready(self, pod: Any) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))

    def ensure_priority_class(self, name: str, value: int, never: bool = False) -> None:
        """Create the PriorityClass unless it exists; `never`: preemptionPolicy Never (warm buffer)."""
        body: dict[str, Any] = {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
        }
        if never:
            body["preemptionPolicy"] = "Never"
        try:
            self.sched.create_priority_class(body)
        except ApiException as e:
            if e.status != 409:
                raise


def eventually(
    check: Callable[[], Any], timeout_s: float = 30.0, every_s: float = 0.2, what: str = ""
) -> Any:
    """Poll until `check()` returns a truthy value; fail with the last value or error otherwise."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(every_s)
    raise AssertionError(f"not true after {timeout_s}s: {what or check} (last: {last!r})")


@pytest.fixture
def kube(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[Kube]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k = Kube(cluster, ns)
    k.core.create_namespace({"metadata": {"name": ns}})
    # the service-account controller must make `default` before pods can be admitted
    eventually(lambda: k.core.read_namespaced_service_account("default", ns), 30, what="default SA")
    yield k
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n==== forensics:", ns)
        print(k.kubectl("get", "all,events", "-o", "wide", check=False).stdout[-6000:])
        for log in sorted((cluster.workdir / "logs").glob("*.log")):
            print(f"---- {log.name} (tail)")
            print("\n".join(log.read_text(errors="replace").splitlines()[-8:]))
    k.core.delete_namespace(ns)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
