"""The pydantic models mirror the CRD: same defaults, same refusals, every property described."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api import crdgen
from ember.api.v1alpha1 import InferenceServiceSpec
from pydantic import ValidationError

from tests.invalid_specs import BASE, CASES, merge

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("patch", "expect"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_models_refuse_every_spec_the_api_server_refuses(
    patch: dict[str, Any], expect: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError):
        InferenceServiceSpec.model_validate(merge(BASE, patch))


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_is_a_valid_spec(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    InferenceServiceSpec.model_validate(doc["spec"])


def test_generated_crds_match_the_checked_in_files() -> None:
    """Golden test: crds/ is exactly what the generator makes from the models now."""
    for name, text in crdgen.render().items():
        assert (ROOT / "crds" / name).read_text() == text, f"crds/{name} drifted: run `make generate`"


def _walk(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for k, sub in schema.get("properties", {}).items():
        missing += _walk(sub, f"{path}.{k}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict) and "properties" in schema[key]:
            missing += _walk(schema[key], f"{path}.{key}")
    return missing


def test_every_schema_property_has_a_description() -> None:
    crd = crdgen.inference_service_crd()
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [p for p in _walk(root, "") if p not in (".metadata",)]
    assert not missing, f"properties without a description: {missing}"


def test_crd_defaults_equal_pydantic_defaults_for_every_block() -> None:
    crd = crdgen.inference_service_crd()
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    defaults = InferenceServiceSpec.model_validate(BASE).to_k8s()
    for block in ("engine", "resources", "slo", "scaling", "warmBuffer", "checkpoint", "podMetadata"):
        assert props[block]["default"] == defaults[block], block


def _rules(schema: Any) -> list[dict[str, str]]:
    if isinstance(schema, dict):
        own = list(schema.get("x-kubernetes-validations", []))
        return own + [r for v in schema.values() for r in _rules(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _rules(v)]
    return []


def test_cel_rules_carry_a_field_path_and_message() -> None:
    rules = _rules(crdgen.inference_service_crd())
    assert len(rules) >= 7
    cross_field = [
        r for r in rules if not r["rule"].startswith("self >= ")
    ]  # field-level bounds name themselves
    assert all(r.get("fieldPath", "").startswith(".") and r.get("message") for r in cross_field), rules


def test_no_validation_list_has_duplicate_rules() -> None:
    """Server-side apply (which helm 4 uses for crds/) refuses duplicate list-map keys."""

    def lists(schema: Any) -> list[list[dict[str, str]]]:
        if isinstance(schema, dict):
            own = [schema["x-kubernetes-validations"]] if "x-kubernetes-validations" in schema else []
            return own + [x for v in schema.values() for x in lists(v)]
        if isinstance(schema, list):
            return [x for v in schema for x in lists(v)]
        return []

    for rules in lists(crdgen.inference_service_crd()):
        keys = [r["rule"] for r in rules]
        assert len(keys) == len(set(keys)), keys
