"""The injected pods on the real API server (issue 17): the replica pod of every example, built with
the admin's supervisorImage (with and without the checkpoint grant), and a pre-staging placeholder,
pass a server-side dry-run create; without the grant, in a namespace that enforces the restricted
Pod Security Standard (the init container must keep to it too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders, placeholders, shaping
from ember.policy.tenancy import CheckpointGrant

from tests.integration.conftest import Kube

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
ADMIN = shaping.AdminShaping(supervisor_image="ghcr.io/ember-dev/ember-operator:0.1.0")
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _spec(path: Path) -> tuple[str, InferenceServiceSpec]:
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "InferenceService")
    return doc["metadata"]["name"], InferenceServiceSpec.model_validate(doc["spec"])


def _create(kube: Kube, pod: dict[str, object]) -> None:
    kube.core.create_namespaced_pod(kube.ns, pod, dry_run="All")


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_injected_replica_pods_of_every_example_pass_a_dry_run_create(kube: Kube, example: Path) -> None:
    kube.ensure_priority_class("ember-serving", 1000)
    kube.ensure_priority_class("ember-warm-buffer", -10)
    name, spec = _spec(example)
    kube.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce=restricted")
    restricted = builders.replica_pod(name, kube.ns, "uid-1", spec, 0, admin=ADMIN)
    assert restricted["spec"]["initContainers"][0]["name"] == "ember-inject"
    _create(kube, restricted)
    kube.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce-")
    grant = CheckpointGrant(
        {"hostPath": {"path": f"/var/lib/ember/checkpoints/{kube.ns}/{name}", "type": "DirectoryOrCreate"}},
        None,
        f"/var/lib/ember/checkpoints/{kube.ns}/{name}",
        "node",
    )
    _create(
        kube, builders.replica_pod(name, kube.ns, "uid-1", spec, 1, "restore", checkpoint=grant, admin=ADMIN)
    )
    if spec.warm_buffer.enabled:
        spec = spec.model_copy(update={"warm_buffer": spec.warm_buffer.model_copy(update={"prestage": True})})
        pod = placeholders.placeholder_pod(
            name, kube.ns, "uid-1", spec, 0, prestage_allowed=True, admin=ADMIN
        )
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["ember-inject", "prestage"]
        _create(kube, pod)


@pytest.mark.parametrize(
    "model",
    [
        {"uri": "s3://models/llama-3-8b", "credentialsSecret": {"name": "s3"}},
        {"uri": "gs://bucket/llama", "credentialsSecret": {"name": "gcs"}},
        {"uri": "oci://ghcr.io/acme/llama-3-8b:v1"},
    ],
    ids=["s3", "gs", "oci-image-volume"],
)
def test_object_store_and_image_models_pass_a_dry_run_create(kube: Kube, model: dict[str, object]) -> None:
    kube.ensure_priority_class("ember-serving", 1000)
    spec = InferenceServiceSpec.model_validate({"model": model})
    _create(kube, builders.replica_pod("m", kube.ns, "uid-1", spec, 0, admin=ADMIN))
