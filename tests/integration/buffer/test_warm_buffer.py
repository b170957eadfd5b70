"""The warm buffer on the real control plane: the real kube-scheduler preempts placeholders for
replicas, the operator recreates them Pending (the cluster autoscaler's signal), GPU types never mix,
and deleting the InferenceService garbage-collects its placeholders.

Every test runs on kwok nodes of its own GPU product (`<name>-<uuid>`), so filling every GPU never
competes with the session's shared H100/A100 nodes or other tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember_cluster import LocalCluster
from ember_cluster.nodes import add_node
from ember_cluster.provisioner import Provisioner
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import Operator, get_isvc, isvc_manifest, patch_spec, replica_pods

ROOT = Path(__file__).resolve().parents[3]
PLACEHOLDERS = "serving.ember.dev/component=placeholder"


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    k = install_crds(cluster)
    k.ensure_priority_class("ember-warm-buffer", -10, never=True)
    # pre-staging is the admin's grant (kube/placeholders.py): this cluster's admin allows it everywhere
    op = Operator(
        cluster, tmp_path_factory.mktemp("operator") / "operator.log", EMBER_CHECKPOINT_ALL_NAMESPACES="true"
    ).start()
    op.wait_healthy()
    yield op
    op.stop()


class Pool:
    """kwok GPU nodes of a product no other test uses; deleted afterwards."""

    def __init__(self, kube: Kube, name: str, nodes: int, gpus: int) -> None:
        tag = uuid.uuid4().hex[:6]
        self.kube, self.product, self.names = (
            kube,
            f"{name}-{tag}",
            [f"{name.lower()}-{tag}-{i}" for i in range(nodes)],
        )
        for n in self.names:
            add_node(kube.core, n, self.product, gpus)
        eventually(lambda: all(self._ready(n) for n in self.names), 30, what=f"{self.product} nodes Ready")

    def _ready(self, name: str) -> bool:
        conds = self.kube.core.read_node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conds)

    def delete(self) -> None:
        for n in self.names:
            try:
                self.kube.core.delete_node(n)
            except ApiException:
                pass


@pytest.fixture
def pools(kube: Kube) -> Iterator[list[Pool]]:
    made: list[Pool] = []
    yield made
    # pods first, nodes after: a pod bound to a deleted node lingers until the pod GC (~40 s)
    kube.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL)
    kube.core.delete_collection_namespaced_pod(kube.ns, grace_period_seconds=0)
    eventually(lambda: not kube.pods(), 30, what="test pods gone before their nodes")
    for p in made:
        p.delete()


def apply(kube: Kube, manifest: dict[str, Any]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def buffered(name: str, product: str, gpu: int, replicas: int, **wb: Any) -> dict[str, Any]:
    m = isvc_manifest(name, replicas=replicas)
    m["spec"]["resources"] = {"gpu": gpu, "gpuType": product, "cpu": "1", "memory": "1Gi"}
    m["spec"]["warmBuffer"] = {"enabled": True, "prestage": True, **wb}
    return m


def placeholders(kube: Kube, name: str) -> list[Any]:
    pods = kube.pods(f"{PLACEHOLDERS},serving.ember.dev/inferenceservice={name}")
    return [p for p in pods if not p.metadata.deletion_timestamp]


def warm(kube: Kube, name: str) -> dict[str, Any]:
    return get_isvc(kube, name).get("status", {}).get("warmBuffer", {})


def condition(kube: Kube, name: str, type_: str) -> dict[str, Any]:
    conds = get_isvc(kube, name).get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == type_), {})


def events(kube: Kube, name: str) -> list[str]:
    evs = kube.core.list_namespaced_event(kube.ns, field_selector=f"involvedObject.name={name}").items
    return [e.reason for e in evs]


def held(kube: Kube, name: str, n: int) -> bool:
    ps = placeholders(kube, name)
    return len(ps) == n and all(p.spec.node_name for p in ps)


def test_replicas_preempt_placeholders_at_once_and_the_buffer_is_rebuilt_pending(
    kube: Kube, operator: Operator, pools: list[Pool]
) -> None:
    pools.append(pool := Pool(kube, "L40S-TEST", nodes=2, gpus=4))
    # 1 replica + 3 placeholders of 2 GPUs fill both nodes
    apply(kube, buffered("llm", pool.product, gpu=2, replicas=1, idleGPUs=6, maxIdleGPUs=6))
    eventually(lambda: held(kube, "llm", 3), 40, what="3 placeholders hold the rest of the GPUs")
    eventually(
        lambda: [kube.pod_ready(p) for p in replica_pods(kube, "llm")] == [True], 30, what="replica Ready"
    )
    eventually(
        lambda: (
            warm(kube, "llm").get("ready") == 3
            and condition(kube, "llm", "WarmBufferReady").get("status") == "True"
        ),
        20,
        what="status: buffer held",
    )
    placeholder_pod = placeholders(kube, "llm")[0]
    assert placeholder_pod.spec.priority == -10 and placeholder_pod.spec.termination_grace_period_seconds == 1
    assert placeholder_pod.spec.init_containers[0].command == ["ember-supervisor"]

    t0 = time.monotonic()
    patch_spec(kube, "llm", {"replicas": 3})
    eventually(
        lambda: len([p for p in replica_pods(kube, "llm") if p.spec.node_name]) == 3,
        15,
        every_s=0.05,
        what="both new replicas bound by preempting placeholders",
    )
    bound_s = time.monotonic() - t0
    eventually(lambda: all(kube.pod_ready(p) for p in replica_pods(kube, "llm")), 15, what="replicas Ready")
    assert bound_s < 5.0, f"replicas took {bound_s:.1f}s to bind"

    # the preempted placeholders come back, and wait: no GPU is free and they preempt nothing
    def rebuilt() -> bool:
        ps = placeholders(kube, "llm")
        return len(ps) == 3 and sum(not p.spec.node_name for p in ps) == 2

    eventually(rebuilt, 20, what="2 placeholders recreated and Pending")
    eventually(
        lambda: warm(kube, "llm").get("preemptions") == 2 and warm(kube, "llm").get("pending") == 2,
        20,
        what="status counts 2 preemptions, 2 pending",
    )
    assert condition(kube, "llm", "WarmBufferReady")["reason"] == "PlaceholdersPending"
    eventually(lambda: events(kube, "llm").count("PlaceholderPreempted") >= 1, 10, what="preemption Event")
    uids = {p.metadata.uid for p in replica_pods(kube, "llm")}
    time.sleep(2)  # a placeholder must never take a replica's GPUs, not even a moment later
    assert {p.metadata.uid for p in replica_pods(kube, "llm", include_terminating=True)} == uids
    assert all(kube.pod_ready(p) for p in replica_pods(kube, "llm"))

    # the Pending placeholders are the autoscaler's signal: a new node arrives and they take it
    prov = Provisioner(kube.core, pool.product, gpus_per_node=4, delay_s=1.0, prefix=f"{pool.names[0]}-prov")
    try:
        prov.start()
        eventually(lambda: held(kube, "llm", 3), 30, what="placeholders scheduled on the provisioned node")
        eventually(
            lambda: condition(kube, "llm", "WarmBufferReady").get("status") == "True",
            20,
            what="buffer held again",
        )
    finally:
        prov.stop(delete_nodes=False)
        pool.names += [n for n, _ in prov.added]  # deleted after the pods on them


def test_gpu_types_never_mix_and_deleting_the_service_removes_its_placeholders(
    kube: Kube, operator: Operator, pools: list[Pool]
) -> None:
    pools.append(a100 := Pool(kube, "A100-TEST", nodes=1, gpus=2))
    pools.append(h100 := Pool(kube, "H100-TEST", nodes=1, gpus=2))
    apply(kube, buffered("a", a100.product, gpu=2, replicas=0, idleGPUs=2, maxIdleGPUs=2))
    apply(kube, buffered("h", h100.product, gpu=2, replicas=1, prestage=False))
    eventually(lambda: held(kube, "a", 1), 30, what="A100 placeholder holds the A100 node")
    eventually(
        lambda: len([p for p in replica_pods(kube, "h") if p.spec.node_name]) == 1, 30, what="h-0 bound"
    )
    a_uid = placeholders(kube, "a")[0].metadata.uid

    patch_spec(kube, "h", {"replicas": 2})  # no H100 GPU is free; an A100 one is held by a placeholder
    eventually(
        lambda: any(
            c.reason == "Unschedulable" for p in replica_pods(kube, "h") for c in (p.status.conditions or [])
        ),
        20,
        what="h-1 Unschedulable",
    )
    time.sleep(2)
    ps = placeholders(kube, "a")
    assert [p.metadata.uid for p in ps] == [a_uid] and ps[0].spec.node_name == a100.names[0]
    assert not any(c.type == "DisruptionTarget" for c in ps[0].status.conditions or [])

    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "a")
    eventually(
        lambda: not kube.pods(f"{PLACEHOLDERS},serving.ember.dev/inferenceservice=a"),
        30,
        what="placeholders garbage-collected with their InferenceService",
    )
    # the A100 GPUs are free now, and still no H100 replica goes there
    assert all(p.spec.node_name != a100.names[0] for p in replica_pods(kube, "h"))


def test_a_missing_priority_class_is_reported_and_disabling_removes_the_buffer(
    kube: Kube, operator: Operator, pools: list[Pool]
) -> None:
    pools.append(pool := Pool(kube, "T4-TEST", nodes=1, gpus=4))
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    apply(kube, buffered("m", pool.product, gpu=1, replicas=0, idleGPUs=2, priorityClassName=missing))
    eventually(
        lambda: condition(kube, "m", "WarmBufferMisconfigured").get("reason") == "PriorityClassMissing",
        20,
        what="WarmBufferMisconfigured",
    )
    assert not placeholders(kube, "m")
    eventually(lambda: "WarmBufferMisconfigured" in events(kube, "m"), 10, what="Warning Event")

    patch_spec(kube, "m", {"warmBuffer": {"priorityClassName": "ember-warm-buffer"}})
    eventually(lambda: held(kube, "m", 2), 30, what="placeholders once the PriorityClass is right")
    # the status write ends the pass that created them; the pods can turn Running before it lands
    eventually(
        lambda: condition(kube, "m", "WarmBufferMisconfigured")["status"] == "False",
        10,
        what="WarmBufferMisconfigured=False",
    )

    patch_spec(kube, "m", {"warmBuffer": {"enabled": False}})
    eventually(
        lambda: not kube.pods(f"{PLACEHOLDERS},serving.ember.dev/inferenceservice=m"),
        20,
        what="placeholders deleted when the buffer is disabled",
    )
    eventually(
        lambda: condition(kube, "m", "WarmBufferReady").get("reason") == "Disabled", 10, what="Disabled"
    )
