"""The model cache on a claim (chart modelCache.persistentVolumeClaim, issue 17 item 4) on the real
control plane: while the claim is missing from the service's namespace the InferenceService is
Degraded (PersistentVolumeClaimNotFound, naming the claim) with an Event and no replica pod; once
it exists the replica is created mounting it, and the pod the builder renders passes a server-side
dry-run create, also where the namespace enforces the restricted Pod Security Standard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION, InferenceServiceSpec
from ember.kube import builders, placeholders, shaping
from ember_cluster import LocalCluster

from tests.integration.conftest import Kube, eventually
from tests.integration.operator.harness import Operator, condition, isvc_manifest, replica_pods

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
CLAIM = "hf-cache"


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    k = Kube(cluster, "default")
    k.kubectl("apply", "-f", str(ROOT / "crds"))
    k.kubectl("wait", "--for=condition=established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")
    k.ensure_priority_class("ember-serving", 1000)
    k.ensure_priority_class("ember-warm-buffer", -10)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = Operator(cluster, log, EMBER_MODEL_CACHE_PERSISTENT_VOLUME_CLAIM=CLAIM).start()
    op.wait_healthy()
    yield op
    op.stop()


def _reasons(kube: Kube, name: str) -> list[str]:
    evs = kube.core.list_namespaced_event(kube.ns, field_selector=f"involvedObject.name={name}").items
    return [e.reason for e in evs]


def _claim() -> dict[str, Any]:
    return {
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def test_a_missing_cache_claim_is_named_then_its_replica_mounts_it(kube: Kube, operator: Operator) -> None:
    kube.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        kube.ns,
        PLURAL,
        isvc_manifest("cached", scaling={"minReplicas": 1, "maxReplicas": 2, "drainTimeoutSeconds": 1}),
    )

    def degraded() -> dict[str, Any] | None:
        c = condition(kube, "cached", "Degraded")
        return c if c and c["status"] == "True" else None

    c = eventually(degraded, 30, what="Degraded=True for the missing claim")
    assert c["reason"] == "PersistentVolumeClaimNotFound", c
    assert f"'{CLAIM}'" in c["message"] and "modelCache.persistentVolumeClaim" in c["message"], c
    eventually(lambda: "PersistentVolumeClaimNotFound" in _reasons(kube, "cached"), 15, what="the Event")
    assert replica_pods(kube, "cached") == [], "no pod Pending without explanation"

    kube.core.create_namespaced_persistent_volume_claim(kube.ns, _claim())
    pod = eventually(lambda: (replica_pods(kube, "cached") or [None])[0], 60, what="the replica")
    vols = {v.name: v for v in pod.spec.volumes}
    assert vols[builders.MODEL_CACHE_VOLUME].persistent_volume_claim.claim_name == CLAIM
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["HF_HUB_CACHE"] == f"{builders.MODEL_CACHE_MOUNT}/hf"
    eventually(
        lambda: (
            (condition(kube, "cached", "Degraded") or {}).get("reason") != "PersistentVolumeClaimNotFound"
        ),
        30,
        what="the condition cleared",
    )
    assert operator.proc is not None and operator.proc.poll() is None


def test_pods_with_the_cache_claim_pass_a_dry_run_create_also_under_restricted(kube: Kube) -> None:
    kube.ensure_priority_class("ember-serving", 1000)
    kube.ensure_priority_class("ember-warm-buffer", -10)
    kube.core.create_namespaced_persistent_volume_claim(kube.ns, _claim())
    admin = shaping.AdminShaping(
        supervisor_image="ghcr.io/ember-dev/ember-operator:0.1.0", model_cache_claim=CLAIM
    )
    spec = InferenceServiceSpec.model_validate(
        {"model": {"uri": "hf://org/m"}, "warmBuffer": {"enabled": True, "prestage": True}}
    )
    kube.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce=restricted")
    pod = builders.replica_pod("cached", kube.ns, "uid-1", spec, 0, admin=admin)
    assert any(v.get("persistentVolumeClaim") for v in pod["spec"]["volumes"])
    kube.core.create_namespaced_pod(kube.ns, pod, dry_run="All")
    kube.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce-")
    ph = placeholders.placeholder_pod("cached", kube.ns, "uid-1", spec, 0, prestage_allowed=True, admin=admin)
    assert {"name": "ember-cache", "persistentVolumeClaim": {"claimName": CLAIM}} in ph["spec"]["volumes"]
    kube.core.create_namespaced_pod(kube.ns, ph, dry_run="All")
