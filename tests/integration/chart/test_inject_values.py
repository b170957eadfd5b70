"""The chart's injection and model-cache values reach the operator (real `helm template`): the
supervisor image defaults to the operator's own image (issue 17), and can be set apart."""

from __future__ import annotations

from typing import Any

from tests.integration.chart.test_monitors import one, render


def _env(docs: list[dict[str, Any]]) -> dict[str, str]:
    dep = one(docs, "Deployment", "r-ember")
    return {e["name"]: e.get("value", "") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_supervisor_image_defaults_to_the_operator_image() -> None:
    docs = render("image.repository=registry.example/ember-operator", "image.tag=1.2.3")
    env = _env(docs)
    assert env["EMBER_SUPERVISOR_IMAGE"] == "registry.example/ember-operator:1.2.3"
    assert env["EMBER_MODEL_CACHE_HOST_PATH"] == ""
    assert env["EMBER_MODEL_CACHE_PERSISTENT_VOLUME_CLAIM"] == ""


def test_the_supervisor_image_and_the_model_cache_can_be_set() -> None:
    env = _env(
        render("operator.supervisorImage=registry.example/inject:9", "modelCache.hostPath=/var/lib/models")
    )
    assert env["EMBER_SUPERVISOR_IMAGE"] == "registry.example/inject:9"
    assert env["EMBER_MODEL_CACHE_HOST_PATH"] == "/var/lib/models"


def test_the_model_cache_claim_reaches_the_operator_which_may_read_claims_by_name_only() -> None:
    docs = render("modelCache.persistentVolumeClaim=hf-cache")
    env = _env(docs)
    assert env["EMBER_MODEL_CACHE_PERSISTENT_VOLUME_CLAIM"] == "hf-cache"
    assert env["EMBER_MODEL_CACHE_HOST_PATH"] == ""
    role = one(docs, "ClusterRole", "r-ember")
    verbs = [r["verbs"] for r in role["rules"] if "persistentvolumeclaims" in r["resources"]]
    assert verbs == [["get"]], "least privilege: get by name, no list/watch/write"
