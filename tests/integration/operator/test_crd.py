"""The CRD on the real API server: invalid specs refused naming the field; samples accepted, defaulted
exactly as the models default them; printer columns; `kubectl scale` through the /scale subresource."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION, InferenceService, InferenceServiceSpec
from ember_cluster import LocalCluster

from tests.integration.conftest import Kube, eventually, install_crds
from tests.invalid_specs import ACCEPTED, ACCEPTED_NAMES, BASE, CASES, NAME_CASES, merge

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: LocalCluster) -> Iterator[None]:
    install_crds(cluster)
    yield


def isvc(name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(("patch", "expect"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_api_server_refuses_invalid_spec_naming_the_field(
    kube: Kube, patch: dict[str, Any], expect: tuple[str, ...]
) -> None:
    r = kube.kubectl("apply", "-f", "-", input=isvc("bad", merge(BASE, patch)), check=False)
    assert r.returncode != 0, f"accepted: {r.stdout}"
    for fragment in expect:
        assert fragment in r.stderr, r.stderr
    # nothing was stored
    assert "NotFound" in kube.kubectl("get", "eis", "bad", check=False).stderr


@pytest.mark.parametrize(
    ("name", "expect"), [(c[1], c[2]) for c in NAME_CASES], ids=[c[0] for c in NAME_CASES]
)
def test_api_server_refuses_a_name_ember_cannot_derive_pods_and_a_service_from(
    kube: Kube, name: str, expect: tuple[str, ...]
) -> None:
    r = kube.kubectl("apply", "-f", "-", input=isvc(name, BASE), check=False)
    assert r.returncode != 0, f"accepted: {r.stdout}"
    for fragment in expect:
        assert fragment in r.stderr, r.stderr
    assert kube.kubectl("get", "eis", "-o", "name").stdout.strip() == ""


@pytest.mark.parametrize("patch", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_api_server_accepts_valid_specs_as_the_models_read_them(kube: Kube, patch: dict[str, Any]) -> None:
    spec = merge(BASE, patch)
    # as JSON: in YAML an unquoted 129e6 is a number, which kubectl would send as 129000000
    kube.kubectl("apply", "-f", "-", input=json.dumps(yaml.safe_load(isvc("ok", spec))))
    stored = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "ok")
    assert InferenceServiceSpec.model_validate(stored["spec"]) == InferenceServiceSpec.model_validate(spec)


@pytest.mark.parametrize("name", [c[1] for c in ACCEPTED_NAMES], ids=[c[0] for c in ACCEPTED_NAMES])
def test_api_server_accepts_valid_names(kube: Kube, name: str) -> None:
    kube.kubectl("apply", "-f", "-", input=isvc(name, BASE))
    stored = kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, name)
    InferenceService.model_validate(stored)


def test_generated_name_is_checked_after_it_is_generated(kube: Kube) -> None:
    """generateName adds 5 characters before validation: 46 + 5 passes 50 only if CEL sees the result."""
    body = yaml.safe_load(isvc("x", BASE))
    body["metadata"] = {"generateName": "g" * 46}
    r = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert r.returncode != 0 and "at most 50 characters" in r.stderr, r.stdout + r.stderr
    body["metadata"] = {"generateName": "g" * 45}
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(body))


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_sample_is_accepted_and_read_back_with_the_models_defaults(kube: Kube, path: Path) -> None:
    kube.kubectl("apply", "-f", str(path))
    doc = yaml.safe_load(path.read_text())
    stored = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.ns, PLURAL, doc["metadata"]["name"]
    )
    assert stored["spec"] == InferenceServiceSpec.model_validate(doc["spec"]).to_k8s()


def test_printer_columns_show_model_ready_desired_lifecycle_and_decision(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(ROOT / "examples" / "minimal.yaml"))
    header = kube.kubectl("get", "eis").stdout.splitlines()[0].split()
    assert header == [
        "NAME",
        "MODEL",
        "READY",
        "DESIRED",
        "SERVING",
        "SLEEPING",
        "TTFT-P95-MS",
        "DECISION",
        "AGE",
    ]
    wide = kube.kubectl("get", "eis", "-o", "wide").stdout.splitlines()[0].split()
    assert {"MODE", "ENDPOINT", "STARTING"} <= set(wide)


def test_kubectl_scale_sets_spec_replicas_and_is_bounded_by_max(kube: Kube) -> None:
    kube.kubectl("apply", "-f", "-", input=isvc("s", {**BASE, "scaling": {"maxReplicas": 5}}))
    kube.kubectl("scale", "eis/s", "--replicas=3")
    eventually(
        lambda: (
            kube.custom.get_namespaced_custom_object(GROUP, VERSION, kube.ns, PLURAL, "s")["spec"].get(
                "replicas"
            )
            == 3
        ),
        10,
    )
    r = kube.kubectl("scale", "eis/s", "--replicas=6", check=False)
    assert r.returncode != 0 and "replicas must not exceed scaling.maxReplicas" in r.stderr
