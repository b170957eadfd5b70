"""The local control plane is real: validation, scheduling of GPU pods, readiness delays, preemption
and garbage collection all come from the real kube-apiserver, scheduler, controller-manager and kwok."""

from __future__ import annotations

import time

import pytest
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import Kube, eventually


def gpu_pod(
    name: str,
    gpus: int,
    *,
    priority: str | None = None,
    product: str | None = None,
    ready_after: str | None = None,
    owner: dict[str, str] | None = None,
) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if ready_after:
        meta["annotations"] = {"sim.ember.dev/ready-after": ready_after}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", **owner}]
    spec: dict[str, object] = {
        "containers": [
            {
                "name": "c",
                "image": "registry.invalid/none",
                "resources": {
                    "requests": {"nvidia.com/gpu": str(gpus)},
                    "limits": {"nvidia.com/gpu": str(gpus)},
                },
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if priority:
        spec["priorityClassName"] = priority
    if product:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def test_api_server_rejects_an_invalid_object_naming_the_field(kube: Kube) -> None:
    bad = gpu_pod("Not_A_Valid_Name", 1)
    with pytest.raises(ApiException) as e:
        kube.core.create_namespaced_pod(kube.ns, bad)
    assert e.value.status == 422
    assert "metadata.name" in e.value.body


def test_gpu_pod_is_scheduled_on_a_fake_gpu_node_and_ready_after_the_stage_delay(kube: Kube) -> None:
    t0 = time.monotonic()
    kube.core.create_namespaced_pod(kube.ns, gpu_pod("whole-node", 8, product="H100-80GB", ready_after="2s"))
    running = eventually(
        lambda: (p := kube.core.read_namespaced_pod("whole-node", kube.ns)).status.phase == "Running" and p,
        20,
        what="pod Running",
    )
    assert running.spec.node_name.startswith("gpu-h100-")
    assert not kube.pod_ready(running), "Ready must wait for the Stage delay"
    eventually(lambda: kube.pod_ready(kube.core.read_namespaced_pod("whole-node", kube.ns)), 20, what="Ready")
    assert time.monotonic() - t0 >= 2.0


def test_pod_asking_for_more_gpus_than_any_node_has_stays_pending_unschedulable(kube: Kube) -> None:
    kube.core.create_namespaced_pod(kube.ns, gpu_pod("too-big", 9))

    def unschedulable() -> str | None:
        p = kube.core.read_namespaced_pod("too-big", kube.ns)
        c = next((c for c in p.status.conditions or [] if c.type == "PodScheduled"), None)
        return c.message if c is not None and c.reason == "Unschedulable" else None

    msg = eventually(unschedulable, 20, what="Unschedulable condition")
    assert "nvidia.com/gpu" in msg


def test_higher_priority_pod_preempts_a_lower_priority_one_when_gpus_are_full(kube: Kube) -> None:
    kube.ensure_priority_class("t-low", -10)
    kube.ensure_priority_class("t-high", 1000)
    # The single A100 node: fill it with one low-priority 8-GPU pod.
    kube.core.create_namespaced_pod(kube.ns, gpu_pod("low", 8, priority="t-low", product="A100-80GB"))
    eventually(lambda: kube.core.read_namespaced_pod("low", kube.ns).spec.node_name, 20, what="low bound")
    kube.core.create_namespaced_pod(kube.ns, gpu_pod("high", 8, priority="t-high", product="A100-80GB"))

    def preempted() -> bool:
        names = {p.metadata.name for p in kube.pods() if not p.metadata.deletion_timestamp}
        return "low" not in names

    eventually(preempted, 30, what="low-priority pod preempted")
    eventually(
        lambda: kube.core.read_namespaced_pod("high", kube.ns).spec.node_name == "gpu-a100-0",
        30,
        what="high bound to the A100 node",
    )


def test_deleting_an_owner_garbage_collects_its_dependents(kube: Kube) -> None:
    cm = kube.core.create_namespaced_config_map(kube.ns, {"metadata": {"name": "owner"}})
    owner = {"name": "owner", "uid": cm.metadata.uid}
    for i in range(2):
        kube.core.create_namespaced_pod(kube.ns, gpu_pod(f"dep-{i}", 1, owner=owner))
    assert len(kube.pods()) == 2
    kube.core.delete_namespaced_config_map("owner", kube.ns)
    eventually(lambda: not kube.pods(), 30, what="dependents garbage-collected")
