"""Reliability on the real control plane: the operator SIGKILLed at random moments of scale-ups and
scale-downs converges after restart with no duplicate and no orphan; injected 409s and 5xx at the
client seam are retried with backoff and the loop still converges."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.replicas import reconcile
from ember.kube.client import KubeAPI, api_client
from ember.telemetry.metrics import Metrics
from ember_cluster import LocalCluster
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import (
    Operator,
    isvc_manifest,
    patch_spec,
    replica_pods,
    wait_converged,
)

ROOT = Path(__file__).resolve().parents[3]
KILLS_PER_DIRECTION = 20


@pytest.fixture(scope="module")
def setup_crds(cluster: LocalCluster) -> None:
    install_crds(cluster)


@pytest.fixture
def operator(cluster: LocalCluster, setup_crds: None, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path / "operator.log").start()
    op.wait_healthy()
    yield op
    op.stop()


def assert_no_duplicates_or_orphans(kube: Kube, name: str, want: int) -> None:
    pods = replica_pods(kube, name, include_terminating=True)
    uid = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, name)["metadata"]["uid"]
    assert len(pods) == want, [p.metadata.name for p in pods]
    assert len({p.metadata.name for p in pods}) == want
    for p in pods:
        refs = p.metadata.owner_references or []
        assert [(r.uid, r.controller) for r in refs] == [(uid, True)], (
            f"orphan or foreign pod {p.metadata.name}"
        )


def test_operator_killed_at_random_points_of_scaling_converges_without_duplicates_or_orphans(
    kube: Kube, operator: Operator
) -> None:
    rng = random.Random(20261124)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc_manifest("chaos", replicas=0)))
    wait_converged(kube, "chaos", 0)
    targets = [6, 1] * KILLS_PER_DIRECTION  # 20 scale-ups and 20 scale-downs
    for i, want in enumerate(targets):
        patch_spec(kube, "chaos", {"replicas": want})
        time.sleep(rng.uniform(0.0, 1.2))  # somewhere in the middle of creating / draining
        operator.kill()
        operator.start()
        operator.wait_healthy()
        try:
            wait_converged(kube, "chaos", want, timeout_s=45)
        except AssertionError:
            raise AssertionError(f"kill #{i + 1} (target {want}):\n{operator.log_tail()}") from None
        assert_no_duplicates_or_orphans(kube, "chaos", want)
    assert operator.starts == 2 * KILLS_PER_DIRECTION + 1


class FaultyApiClient(client.ApiClient):  # type: ignore[misc]
    """The client seam: a real ApiClient that fails a seeded share of calls with 409 or 5xx first."""

    def __init__(self, inner: client.ApiClient, rate: float, seed: int) -> None:
        super().__init__(inner.configuration)
        self.rng, self.rate, self.injected = random.Random(seed), rate, 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if self.rng.random() < self.rate:
            self.injected += 1
            status = self.rng.choice([409, 500, 503, 504])
            raise ApiException(status=status, reason="Injected")
        return super().call_api(*args, **kwargs)


def test_injected_conflicts_and_server_errors_are_retried_and_the_loop_converges(
    cluster: LocalCluster, setup_crds: None, kube: Kube
) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc_manifest("flaky", replicas=4)))
    faulty = FaultyApiClient(api_client(cluster.kubeconfig), rate=0.35, seed=7)
    ctx = OperatorContext(settings=Settings(), api=KubeAPI(faulty), metrics=Metrics.create())
    events: list[tuple[str, str, str]] = []

    async def one_pass() -> None:
        body = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "flaky")
        pods = [
            kube.core.api_client.sanitize_for_serialization(p)
            for p in replica_pods(kube, "flaky", include_terminating=True)
        ]
        await reconcile(ctx, body, pods, emit=lambda _b, t, r, m: events.append((t, r, m)))

    import asyncio

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        asyncio.run(one_pass())
        st = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "flaky").get(
            "status", {}
        )
        if st.get("readyReplicas") == 4 and len(replica_pods(kube, "flaky")) == 4:
            break
        time.sleep(0.3)
    assert faulty.injected >= 3, "the test must actually inject faults"
    eventually(lambda: len(replica_pods(kube, "flaky")) == 4, 5)
    assert_no_duplicates_or_orphans(kube, "flaky", 4)
    st = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "flaky")["status"]
    assert st["readyReplicas"] == 4 and st["desiredReplicas"] == 4
    assert sum(r == "ReplicaCreated" for _, r, _ in events) == 4, events
