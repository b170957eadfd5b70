"""The pydantic models mirror the CRD: same defaults, same refusals, every property described."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api import crdgen
from ember.api.v1alpha1 import MAX_NAME_LENGTH, InferenceService, InferenceServiceSpec
from ember.kube import builders, placeholders
from pydantic import ValidationError

from tests.invalid_specs import ACCEPTED, ACCEPTED_NAMES, BASE, CASES, NAME_CASES, merge

ROOT = Path(__file__).resolve().parents[3]


# what the API server's structural schema says in its own words (pydantic words these differently)
SCHEMA_WORDS = ("Required", "Too long", "Unsupported value", "integer", "integer,string")


def _fields(e: ValidationError) -> set[str]:
    """The fields the errors are about, as the API server names them (spec.engine.env[0].name); a
    model-level rule names its field in parentheses at the end of its message."""
    out = set()
    for err in e.errors():
        path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        out.add(path)
        named = re.search(r"\(([\w.]+)\)$", err["msg"])
        if named:
            out.add(f"{path}.{named.group(1)}")
    return out


@pytest.mark.parametrize(("patch", "expect"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_models_refuse_every_spec_the_api_server_refuses_at_the_same_field(
    patch: dict[str, Any], expect: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as e:
        InferenceServiceSpec.model_validate(merge(BASE, patch))
    field = re.search(r"spec\.[\w.\[\]]+", expect[0])
    assert field, expect
    # the API server writes a map's key in brackets (labels[team]), pydantic as a part of the path
    named = re.sub(r"\[([^\]0-9][^\]]*)\]", r".\1", field.group(0))
    assert named in _fields(e.value), e.value
    # the sentence the API server shows is the models' too (the schema's own words aside)
    for fragment in expect[1:]:
        if fragment not in SCHEMA_WORDS and "items" not in fragment:
            assert fragment in str(e.value), (fragment, str(e.value))


@pytest.mark.parametrize(
    ("name", "expect"), [(c[1], c[2]) for c in NAME_CASES], ids=[c[0] for c in NAME_CASES]
)
def test_models_refuse_every_name_the_api_server_refuses(name: str, expect: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as e:
        InferenceService.model_validate({"metadata": {"name": name}, "spec": BASE})
    for fragment in expect:
        assert fragment in str(e.value), (fragment, str(e.value))


@pytest.mark.parametrize("patch", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_models_accept_valid_specs(patch: dict[str, Any]) -> None:
    InferenceServiceSpec.model_validate(merge(BASE, patch))


@pytest.mark.parametrize("name", [c[1] for c in ACCEPTED_NAMES], ids=[c[0] for c in ACCEPTED_NAMES])
def test_models_accept_valid_names(name: str) -> None:
    InferenceService.model_validate({"metadata": {"name": name}, "spec": BASE})


def test_cpu_given_as_an_integer_reaches_the_pod_as_a_quantity() -> None:
    spec = InferenceServiceSpec.model_validate(merge(BASE, {"resources": {"cpu": 4}}))
    pod = builders.replica_pod("chat", "ns", "uid", spec, 0)
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "4"


def test_the_longest_name_gives_pod_names_that_fit_a_host_name() -> None:
    """MAX_NAME_LENGTH is derived from the names Ember gives pods: at the largest indices (10000
    replicas or placeholders, and as many again being replaced) each still fits 63 characters."""
    name = "a" * MAX_NAME_LENGTH
    spec = InferenceServiceSpec.model_validate(BASE)
    longest = [builders.replica_pod(name, "ns", "uid", spec, 99_999)["metadata"]["name"]]
    longest.append(placeholders.placeholder_name(name, 99_999))
    assert max(len(n) for n in longest) == 63


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


def test_cel_rules_carry_a_message_and_cross_field_rules_a_field_path() -> None:
    """A rule on a field's own schema is named by the API server with that field; a model's rule
    about its fields must say which one with fieldPath (the root's name rules say metadata.name)."""
    rules = _rules(crdgen.inference_service_crd())
    assert len(rules) >= 30
    assert all(r.get("message") for r in rules), rules
    for model in crdgen._models().values():
        for r in model.__cel__:
            assert r.field_path and r.field_path.startswith("."), r


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


def _unbounded(schema: dict[str, Any], path: str) -> list[str]:
    t, out = schema.get("type"), []
    if t == "string" and "maxLength" not in schema and "enum" not in schema:
        out.append(path)
    if schema.get("x-kubernetes-int-or-string") and "maxLength" not in schema:
        out.append(path)
    if t == "array" and "maxItems" not in schema:
        out.append(path)
    if isinstance(schema.get("additionalProperties"), dict) and "maxProperties" not in schema:
        out.append(path)
    for k, sub in schema.get("properties", {}).items():
        out += _unbounded(sub, f"{path}.{k}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out += _unbounded(schema[key], f"{path}[]")
    return out


def test_every_string_list_and_map_of_the_spec_is_bounded() -> None:
    """The API server refuses a CRD whose CEL rules could cost more than its budget on the largest
    object the schema allows; an unbounded string or list under a rule is what makes that happen."""
    crd = crdgen.inference_service_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert _unbounded(spec, "spec") == []


def test_the_docs_count_the_invalid_specs_there_are() -> None:
    n = len(CASES) + len(NAME_CASES)
    for doc in ("README.md", "ARCHITECTURE.md"):
        counts = re.findall(r"(\d+) (?:invalid|refused) specs", (ROOT / doc).read_text())
        assert counts and all(int(c) == n for c in counts), (doc, counts, n)
