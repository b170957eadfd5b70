"""Pod shaping (kube/shaping.py): the merge rules as table tests, env from Secrets, gpuType matching,
placeholders placed like replicas, and missing references found by name."""

from __future__ import annotations

from typing import Any

import pytest
from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec, PodTemplate
from ember.kube import builders, placeholders, shaping
from ember.kube.shaping import AdminShaping, Ref

from tests.invalid_specs import BASE, merge


def spec(**patch: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(merge({**BASE, "resources": {"gpu": 1}}, patch))


def admin(template: dict[str, Any], label: str = L.GPU_PRODUCT) -> AdminShaping:
    return AdminShaping(PodTemplate.model_validate(template), label)


def pod(s: InferenceServiceSpec, a: AdminShaping = shaping.DEFAULT_ADMIN) -> dict[str, Any]:
    return builders.replica_pod("llm", "ns", "uid", s, 0, admin=a)


def engine(p: dict[str, Any]) -> dict[str, Any]:
    return p["spec"]["containers"][0]  # type: ignore[no-any-return]


GPU_TOL = {"key": L.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
DEDICATED = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
SPOT = {"key": "spot", "operator": "Exists"}


@pytest.mark.parametrize(
    ("defaults", "own", "field", "expect"),
    [
        # tolerations: added after Ember's GPU toleration, duplicates once
        ({}, {"tolerations": [DEDICATED]}, "tolerations", [GPU_TOL, DEDICATED]),
        (
            {"tolerations": [SPOT]},
            {"tolerations": [DEDICATED, SPOT]},
            "tolerations",
            [GPU_TOL, SPOT, DEDICATED],
        ),
        # maps merge key by key, the service winning
        (
            {"nodeSelector": {"pool": "a", "zone": "x"}},
            {"nodeSelector": {"pool": "b"}},
            "nodeSelector",
            {"pool": "b", "zone": "x"},
        ),
        # single values: the service's, else the admin's
        ({"serviceAccountName": "admin-sa"}, {}, "serviceAccountName", "admin-sa"),
        ({"serviceAccountName": "admin-sa"}, {"serviceAccountName": "mine"}, "serviceAccountName", "mine"),
        ({"runtimeClassName": "nvidia"}, {}, "runtimeClassName", "nvidia"),
        # named lists merge by name
        (
            {"imagePullSecrets": [{"name": "a"}]},
            {"imagePullSecrets": [{"name": "b"}, {"name": "a"}]},
            "imagePullSecrets",
            [{"name": "b"}, {"name": "a"}],
        ),
        # scheduling policies: whole, from the last layer that sets them
        (
            {
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
                ]
            },
            {
                "topologySpreadConstraints": [
                    {"maxSkew": 2, "topologyKey": "host", "whenUnsatisfiable": "ScheduleAnyway"}
                ]
            },
            "topologySpreadConstraints",
            [
                {
                    "maxSkew": 2,
                    "topologyKey": "host",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "matchLabelKeys": [],
                }
            ],
        ),
    ],
)
def test_merge_rules(defaults: dict[str, Any], own: dict[str, Any], field: str, expect: Any) -> None:
    p = pod(spec(template={"spec": own}), admin({"spec": defaults}))
    assert p["spec"][field] == expect


def test_labels_and_annotations_layer_under_embers_own() -> None:
    a = admin({"metadata": {"labels": {"team": "admin", "cost": "1"}, "annotations": {"x": "admin"}}})
    s = spec(
        podMetadata={"labels": {"team": "pm"}},
        template={"metadata": {"labels": {"team": "tpl"}, "annotations": {"x": "tpl"}}},
    )
    p = pod(s, a)
    labels = p["metadata"]["labels"]
    assert labels["team"] == "tpl" and labels["cost"] == "1"
    assert labels[L.ISVC] == "llm" and labels[L.SERVING] == "true"
    assert p["metadata"]["annotations"]["x"] == "tpl" and L.START_PATH in p["metadata"]["annotations"]


def test_volumes_and_mounts_are_added_after_embers_and_replace_the_admins_by_name() -> None:
    a = admin(
        {
            "spec": {
                "volumes": [{"name": "conf", "emptyDir": {}}],
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/x"}],
            }
        }
    )
    s = spec(
        template={
            "spec": {
                "volumes": [{"name": "conf", "configMap": {"name": "mine"}}],
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/x", "readOnly": True}],
            }
        }
    )
    p = pod(s, a)
    names = [v["name"] for v in p["spec"]["volumes"]]
    assert names[-1] == "conf" and names.count("conf") == 1 and "state" in names
    assert p["spec"]["volumes"][-1]["configMap"]["name"] == "mine"
    assert engine(p)["volumeMounts"][-1] == {"name": "conf", "mountPath": "/etc/x", "readOnly": True}


def test_an_admin_default_colliding_with_embers_volume_is_a_shaping_error() -> None:
    # the admin's defaults pass the same models; a collision the models cannot see (Ember's mounts
    # depend on the spec) is refused when the pod is built, and becomes a condition
    a = AdminShaping(
        PodTemplate.model_construct(
            spec=PodTemplate().spec.model_copy(
                update={
                    "volumes": [
                        PodTemplate.model_validate({"spec": {"volumes": [{"name": "x", "emptyDir": {}}]}})
                        .spec.volumes[0]
                        .model_copy(update={"name": "state"})
                    ]
                }
            )
        )
    )
    with pytest.raises(shaping.ShapingError, match="volume name 'state'"):
        pod(spec(), a)


def test_gpu_type_short_name_matches_what_gfd_writes_anded_into_every_term() -> None:
    s = spec(
        resources={"gpu": 1, "gpuType": "H100-80GB"},
        template={
            "spec": {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                            ]
                        }
                    }
                }
            }
        },
    )
    terms = pod(s)["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    gpu = {
        "key": L.GPU_PRODUCT,
        "operator": "In",
        "values": ["H100-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
    }
    assert [t["matchExpressions"][-1] for t in terms] == [gpu, gpu]
    assert [t["matchExpressions"][0]["values"] for t in terms] == [["a"], ["b"]]


@pytest.mark.parametrize(
    ("gpu_type", "products"),
    [
        ("H200", ["H200", "NVIDIA-H200", "NVIDIA-H200-NVL"]),
        ("A100-80GB", ["A100-80GB", "NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-SXM4-80GB"]),
        ("T4", ["T4", "Tesla-T4"]),
        ("NVIDIA-H100-80GB-HBM3", ["NVIDIA-H100-80GB-HBM3"]),  # a GFD value, as written
    ],
)
def test_gpu_products(gpu_type: str, products: list[str]) -> None:
    assert shaping.gpu_products(gpu_type) == products


def test_the_gpu_label_key_is_the_admins() -> None:
    p = pod(spec(resources={"gpu": 1, "gpuType": "L4"}), admin({}, label="cloud.google.com/gke-accelerator"))
    (term,) = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": "cloud.google.com/gke-accelerator", "operator": "In", "values": ["L4", "NVIDIA-L4"]}
    ]


def test_placeholders_get_the_placement_but_not_pod_affinity_or_volumes() -> None:
    s = spec(
        resources={"gpu": 2, "gpuType": "H100"},
        warmBuffer={"enabled": True},
        template={
            "spec": {
                "tolerations": [DEDICATED],
                "nodeSelector": {"pool": "gpu"},
                "runtimeClassName": "nvidia",
                "serviceAccountName": "engine",
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "kubernetes.io/hostname"}
                        ]
                    }
                },
                "volumes": [{"name": "v", "emptyDir": {}}],
            }
        },
    )
    ph = placeholders.placeholder_pod("llm", "ns", "uid", s, 0)
    rp = pod(s)
    for k in ("tolerations", "nodeSelector", "runtimeClassName"):
        assert ph["spec"][k] == rp["spec"][k], k
    assert ph["spec"]["affinity"] == {"nodeAffinity": rp["spec"]["affinity"]["nodeAffinity"]}
    assert "serviceAccountName" not in ph["spec"] and "volumes" not in ph["spec"]
    # and a change of placement replaces the placeholders
    other = spec(resources={"gpu": 2, "gpuType": "H100"}, warmBuffer={"enabled": True})
    assert placeholders.spec_hash(s) != placeholders.spec_hash(other)


def test_template_and_admin_defaults_roll_the_replicas() -> None:
    s = spec()
    base = builders.template_hash(s)
    assert builders.template_hash(spec(template={"spec": {"nodeSelector": {"a": "b"}}})) != base
    assert builders.template_hash(s, None, admin({"spec": {"runtimeClassName": "nvidia"}})) != base
    assert builders.template_hash(s, None, shaping.DEFAULT_ADMIN) == base


def test_env_from_secrets_the_hf_token_and_ember_variables_last() -> None:
    s = spec(
        engine={
            "env": [
                {"name": "PLAIN", "value": "1"},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
            "hfTokenSecret": {"name": "hf-token", "key": "token"},
        }
    )
    e = engine(pod(s))
    names = [v["name"] for v in e["env"]]
    assert names[:3] == ["PLAIN", "KEY", "HF_TOKEN"]
    assert e["env"][1] == {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    assert e["env"][2] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    assert e["envFrom"] == [{"prefix": "C_", "configMapRef": {"name": "c"}}]
    assert "EMBER_SUPERVISOR_CONFIG_JSON" in names  # env wins over envFrom in Kubernetes


def test_references_are_the_non_optional_secrets_and_config_maps_in_spec_order() -> None:
    s = spec(
        engine={
            "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": True}}},
            ],
            "envFrom": [{"secretRef": {"name": "all"}}],
            "hfTokenSecret": {"name": "hf", "key": "token"},
        },
        template={
            "spec": {
                "volumes": [
                    {"name": "v", "configMap": {"name": "conf", "items": [{"key": "a", "path": "a"}]}}
                ]
            }
        },
    )
    assert shaping.references(s) == [
        Ref("Secret", "s", "k", "spec.engine.env[0] (A)"),
        Ref("Secret", "all", None, "spec.engine.envFrom[0]"),
        Ref("Secret", "hf", "token", "spec.engine.hfTokenSecret"),
        Ref("ConfigMap", "conf", "a", "spec.template.spec.volumes[0] (v)"),
    ]


def test_missing_names_the_object_and_the_field_and_reads_each_object_once() -> None:
    calls: list[tuple[str, str]] = []
    objects = {("Secret", "hf"): {"other"}}

    def keys_of(kind: str, name: str) -> set[str] | None:
        calls.append((kind, name))
        return objects.get((kind, name))

    refs = [Ref("Secret", "hf", "other", "x"), Ref("Secret", "hf", "token", "spec.engine.hfTokenSecret")]
    m = shaping.missing(refs, keys_of)
    assert m is not None and m.reason == "SecretKeyNotFound"
    assert "'hf'" in m.message and "spec.engine.hfTokenSecret" in m.message and "'token'" in m.message
    assert calls == [("Secret", "hf")]
    m = shaping.missing([Ref("ConfigMap", "gone", None, "spec.engine.envFrom[0]")], keys_of)
    assert m is not None and m.reason == "ConfigMapNotFound"
    assert shaping.missing([Ref("Secret", "hf", "other", "x")], keys_of) is None
