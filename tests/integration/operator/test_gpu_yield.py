"""Sleeping replicas yield their GPU one per waiting pod, through the real API server and scheduler
(kwok GPU nodes): the single A100 node is filled by two sleeping replicas of two services; a replica
pod of a third service asks for the A100's GPUs and the real scheduler marks it Unschedulable
("Insufficient nvidia.com/gpu"). Every service's pass then plans from the same pods
(handlers/registry.gpu_yields): exactly one sleeper yields, through the one executor with the real
client (the waiting pod is marked, then the sleeper deleted), the scheduler binds the waiting pod to
the A100, and the passes after plan no second yield. Before this, each service with a sleeper
deleted one of its own on every pass while any pod waited: both sleepers would have gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.handlers.registry import gpu_yields
from ember.kube import executor
from ember.kube.client import KubeAPI, api_client
from ember.policy.rollout import Plan, Yield
from ember_cluster import LocalCluster

from tests.integration.conftest import Kube, eventually, install_crds

pytestmark = pytest.mark.integration
SPEC = InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}})


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: LocalCluster) -> Iterator[None]:
    install_crds(cluster)
    yield


def pod(name: str, svc: str, gpus: int, sleeping_since: str | None = None) -> dict[str, Any]:
    labels = {L.ISVC: svc, L.COMPONENT: L.REPLICA, L.MANAGED_BY: L.MANAGED_BY_VALUE}
    ann: dict[str, str] = {}
    if sleeping_since:
        labels |= {L.STATE: L.SLEEPING, L.SERVING: "false"}
        ann[L.SLEEP_STARTED] = sleeping_since
    res = {"nvidia.com/gpu": str(gpus)}
    return {
        "metadata": {"name": name, "labels": labels, "annotations": ann},
        "spec": {
            "containers": [{"name": "c", "image": "registry.invalid/none",
                            "resources": {"requests": res, "limits": res}}],
            "nodeSelector": {"nvidia.com/gpu.product": "A100-80GB"},
            "terminationGracePeriodSeconds": 0,
        },
    }  # fmt: skip


def test_one_waiting_replica_costs_one_sleeper_across_services(kube: Kube, cluster: LocalCluster) -> None:
    api = KubeAPI(api_client(cluster.kubeconfig))
    ns = kube.ns
    kube.core.create_namespaced_pod(ns, pod("llm-a-1", "llm-a", 4, "2026-12-04T10:00:00+00:00"))
    kube.core.create_namespaced_pod(ns, pod("llm-b-1", "llm-b", 4, "2026-12-04T11:00:00+00:00"))
    eventually(lambda: all(p.spec.node_name for p in kube.pods()), 30, what="both sleepers bound")
    kube.core.create_namespaced_pod(ns, pod("llm-c-0", "llm-c", 4))

    def raw() -> list[dict[str, Any]]:
        return [api.core.api_client.sanitize_for_serialization(p) for p in kube.pods()]

    keys = [(ns, "llm-a"), (ns, "llm-b"), (ns, "llm-c")]
    plans = eventually(
        lambda: (ps := {k: gpu_yields(k, raw(), 1e10)[1] for k in keys}) and any(ps.values()) and ps,
        30,
        what="the scheduler's Unschedulable condition, then a yield planned",
    )
    # one yield in all, the longest asleep, by its own service
    assert plans == {(ns, "llm-a"): (("llm-a-1", ns, "llm-c-0"),), (ns, "llm-b"): (), (ns, "llm-c"): ()}
    out = executor.execute(
        api, executor.Target("llm-a", ns, "uid", SPEC), Plan((Yield("llm-a-1", ns, "llm-c-0"),))
    )
    assert [o.reason for o in out] == ["YieldedGPU"]
    waiting = kube.core.read_namespaced_pod("llm-c-0", ns)
    assert waiting.metadata.annotations[L.GPU_YIELDED_BY] == f"{ns}/llm-a-1"
    # while the sleeper goes and the scheduler retries, no pass plans a second yield
    for _ in range(5):
        now_pods = raw()
        assert all(not gpu_yields(k, now_pods, time.time())[1] for k in keys)
    eventually(
        lambda: kube.core.read_namespaced_pod("llm-c-0", ns).spec.node_name == "gpu-a100-0",
        60,
        what="the waiting replica bound to the A100 the sleeper freed",
    )
    names = sorted(p.metadata.name for p in kube.pods() if not p.metadata.deletion_timestamp)
    assert names == ["llm-b-1", "llm-c-0"]  # the other service's sleeper is still there
    assert all(not gpu_yields(k, raw(), 1e10)[1] for k in keys)  # nothing waits: nothing to yield
