"""Pod shaping on the real control plane: examples/gpu-pinned.yaml lands on a kwok node labelled as
NVIDIA's GPU feature discovery labels it, once its HF token Secret exists (until then: Degraded with
SecretNotFound and an Event, no pod); a template's toleration, nodeSelector, volumes and service
account reach the pod, which schedules on a tainted node; the admin's replicaDefaults apply under it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import GROUP, PLURAL
from ember_cluster import LocalCluster
from ember_cluster.nodes import node_manifest

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import Operator, condition, isvc_manifest, replica_pods

ROOT = Path(__file__).resolve().parents[3]
GFD_NODE = "gfd-h100-0"
TAINTED_NODE = "gfd-tainted-0"
DEFAULTS = {
    "metadata": {"labels": {"cost-center": "admin"}},
    "spec": {"nodeSelector": {"ember-test/pool": "shaping"}},
}


def _node(name: str, taint: bool) -> dict[str, Any]:
    n = node_manifest(name, "NVIDIA-H100-80GB-HBM3", 8)  # what GFD writes on an H100 SXM node
    n["metadata"]["labels"]["ember-test/pool"] = "shaping"
    n["metadata"]["labels"]["nvidia.com/gpu.count"] = "8"
    if taint:
        n["metadata"]["labels"]["dedicated"] = "inference"
        n["spec"] = {"taints": [{"key": "dedicated", "value": "inference", "effect": "NoSchedule"}]}
    return n


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    k = install_crds(cluster)
    k.ensure_priority_class("ember-warm-buffer", -10)
    for name, taint in ((GFD_NODE, False), (TAINTED_NODE, True)):
        k.core.create_node(_node(name, taint))
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(cluster, log, EMBER_REPLICA_DEFAULTS=json.dumps(DEFAULTS)).start()
    op.wait_healthy()
    yield op
    op.stop()
    for name in (GFD_NODE, TAINTED_NODE):
        k.core.delete_node(name)


def _reasons(kube: Kube, name: str) -> list[str]:
    evs = kube.core.list_namespaced_event(kube.ns, field_selector=f"involvedObject.name={name}").items
    return [e.reason for e in evs]


def test_gpu_pinned_example_waits_for_its_secret_then_lands_on_the_gfd_labelled_node(
    kube: Kube, operator: Operator
) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "gpu-pinned.yaml").read_text())
    doc["spec"]["resources"].update(cpu="1", memory="1Gi")  # the kwok node's share; placement unchanged
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

    def degraded() -> dict[str, Any] | None:
        c = condition(kube, "pinned", "Degraded")
        return c if c and c["status"] == "True" else None

    c = eventually(degraded, 30, what="Degraded=True for the missing Secret")
    assert c["reason"] == "SecretNotFound", c
    assert "'hf-token'" in c["message"] and "spec.engine.hfTokenSecret" in c["message"]
    eventually(lambda: "SecretNotFound" in _reasons(kube, "pinned"), 15, what="a SecretNotFound Event")
    assert replica_pods(kube, "pinned") == []
    assert operator.proc is not None and operator.proc.poll() is None

    # a Secret without the key: the condition says which key
    kube.core.create_namespaced_secret(
        kube.ns, {"metadata": {"name": "hf-token"}, "stringData": {"wrong": "hf_x"}}
    )
    eventually(lambda: (condition(kube, "pinned", "Degraded") or {}).get("reason") == "SecretKeyNotFound", 30)
    kube.core.replace_namespaced_secret(
        "hf-token", kube.ns, {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_secret_value"}}
    )

    def scheduled() -> Any:
        pods = replica_pods(kube, "pinned")
        return pods[0] if pods and pods[0].spec.node_name else None

    pod = eventually(scheduled, 60, what="the replica scheduled")
    assert pod.spec.node_name == GFD_NODE  # the only node with GFD's value (the others say H100-80GB)
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "hf-token"
    assert env["HF_TOKEN"].value is None
    assert pod.metadata.labels["cost-center"] == "admin"  # the admin's replicaDefaults
    eventually(lambda: (condition(kube, "pinned", "Degraded") or {}).get("status") == "False", 30)
    # the value never reaches status or Events
    body = json.dumps(kube.custom.get_namespaced_custom_object(GROUP, "v1alpha1", kube.ns, PLURAL, "pinned"))
    events = kube.core.list_namespaced_event(kube.ns).items
    assert "hf_secret_value" not in body and all("hf_secret_value" not in (e.message or "") for e in events)


def test_template_toleration_and_node_selector_land_the_replica_on_a_tainted_node(
    kube: Kube, operator: Operator
) -> None:
    kube.core.create_namespaced_service_account(kube.ns, {"metadata": {"name": "engine"}})
    kube.core.create_namespaced_config_map(kube.ns, {"metadata": {"name": "engine-conf"}, "data": {"a": "1"}})
    m = isvc_manifest(
        "tol",
        replicas=1,
        resources={"gpu": 1, "gpuType": "H100", "cpu": "1", "memory": "1Gi"},
        engine={"envFrom": [{"configMapRef": {"name": "engine-conf"}, "prefix": "CONF_"}]},
        template={
            "metadata": {"labels": {"team": "ml"}},
            "spec": {
                "tolerations": [{"key": "dedicated", "value": "inference", "effect": "NoSchedule"}],
                "nodeSelector": {"dedicated": "inference"},
                "serviceAccountName": "engine",
                "volumes": [{"name": "conf", "configMap": {"name": "engine-conf"}}],
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/engine", "readOnly": True}],
            },
        },
    )
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(m))

    def scheduled() -> Any:
        pods = replica_pods(kube, "tol")
        return pods[0] if pods and pods[0].spec.node_name else None

    pod = eventually(scheduled, 60, what="the replica scheduled on the tainted node")
    assert pod.spec.node_name == TAINTED_NODE
    assert pod.spec.service_account_name == "engine"
    assert pod.spec.node_selector == {"ember-test/pool": "shaping", "dedicated": "inference"}
    assert pod.metadata.labels["team"] == "ml" and pod.metadata.labels["cost-center"] == "admin"
    engine = pod.spec.containers[0]
    assert engine.env_from[0].config_map_ref.name == "engine-conf" and engine.env_from[0].prefix == "CONF_"
    assert any(v.mount_path == "/etc/engine" and v.name == "conf" for v in engine.volume_mounts)
    # a server-side dry run of the same pod passes the API server's own Pod validation
    dry = kube.core.api_client.sanitize_for_serialization(pod)
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        dry["metadata"].pop(k, None)
    dry["metadata"]["name"] = "tol-dry-run"
    dry.pop("status", None)
    dry["spec"].pop("nodeName", None)
    kube.core.create_namespaced_pod(kube.ns, dry, dry_run="All")
