"""The placeholder plan and the placeholder pod: tables for the cases met, Hypothesis for convergence."""

from __future__ import annotations

import pytest
from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember.kube.placeholders import placeholder_pod, placeholder_view, spec_hash
from ember.policy.buffer import BufferPlan, CreatePlaceholder, DeletePlaceholder, PlaceholderView, plan
from hypothesis import given, settings
from hypothesis import strategies as st


def ph(
    i: int, h: str = "h", scheduled: bool = True, created: float | None = None, terminating: bool = False
) -> PlaceholderView:
    return PlaceholderView(
        name=f"s-buffer-{i}",
        index=i,
        uid=f"u{i}",
        spec_hash=h,
        created=float(100 + i if created is None else created),
        scheduled=scheduled,
        terminating=terminating,
    )


def kinds(p: BufferPlan) -> list[tuple[str, object]]:
    return [(type(a).__name__, getattr(a, "index", getattr(a, "name", None))) for a in p.actions]


@pytest.mark.parametrize(
    ("desired", "pods", "expect"),
    [
        pytest.param(2, [], [("CreatePlaceholder", 0), ("CreatePlaceholder", 1)], id="from-nothing"),
        pytest.param(3, [ph(0), ph(2)], [("CreatePlaceholder", 1)], id="smallest-free-index"),
        pytest.param(2, [ph(0), ph(1)], [], id="converged"),
        pytest.param(
            1,
            [ph(0), ph(1), ph(2)],
            [("DeletePlaceholder", "s-buffer-2"), ("DeletePlaceholder", "s-buffer-1")],
            id="surplus-newest-first",
        ),
        pytest.param(
            1,
            [ph(0, created=500), ph(1, scheduled=False, created=50)],
            [("DeletePlaceholder", "s-buffer-1")],
            id="pending-surplus-before-held",
        ),
        pytest.param(
            1,
            [ph(0, h="old")],
            [("DeletePlaceholder", "s-buffer-0"), ("CreatePlaceholder", 1)],
            id="outdated-shape-replaced",
        ),
        pytest.param(1, [ph(0, terminating=True)], [("CreatePlaceholder", 1)], id="preempted-one-recreated"),
        pytest.param(
            0,
            [ph(0), ph(1, scheduled=False)],
            [("DeletePlaceholder", "s-buffer-1"), ("DeletePlaceholder", "s-buffer-0")],
            id="disabled",
        ),
    ],
)
def test_plan(desired: int, pods: list[PlaceholderView], expect: list[tuple[str, object]]) -> None:
    assert kinds(plan(desired, "h", pods)) == expect


def test_held_and_pending_counts() -> None:
    p = plan(3, "h", [ph(0), ph(1, scheduled=False), ph(2, terminating=True)])
    assert (p.held, p.pending) == (1, 1)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 12),
    st.lists(
        st.tuples(st.integers(0, 20), st.booleans(), st.booleans(), st.booleans()),
        max_size=15,
        unique_by=lambda x: x[0],
    ),
)
def test_applying_the_plan_converges_in_one_step(
    desired: int, raw: list[tuple[int, bool, bool, bool]]
) -> None:
    pods = [ph(i, h="h" if same else "old", scheduled=s, terminating=term) for i, s, term, same in raw]
    p = plan(desired, "h", pods)
    deleted = {a.name for a in p.actions if isinstance(a, DeletePlaceholder)}
    created = [a.index for a in p.actions if isinstance(a, CreatePlaceholder)]
    assert len(set(created)) == len(created)
    assert not set(created) & {x.index for x in pods}  # never a name that still exists
    after = [x for x in pods if x.name not in deleted and not x.terminating] + [
        ph(i, scheduled=False) for i in created
    ]
    assert sum(x.spec_hash == "h" for x in after) == desired == len(after)
    assert plan(desired, "h", after).actions == []


SPEC = InferenceServiceSpec.model_validate(
    {
        "model": {"uri": "hf://org/model", "revision": "abc"},
        "resources": {"gpu": 2, "gpuType": "H100-80GB", "cpu": "8", "memory": "64Gi"},
        "warmBuffer": {"enabled": True, "idleGPUs": 2},
        "checkpoint": {"enabled": True},
    }
)


def test_a_placeholder_asks_for_exactly_one_replica_on_the_same_gpu_type() -> None:
    pod = placeholder_pod("llm", "ns", "uid-1", SPEC, 3)
    replica = builders.replica_pod("llm", "ns", "uid-1", SPEC, 0)
    hold = pod["spec"]["containers"][0]
    assert pod["metadata"]["name"] == "llm-buffer-3"
    assert hold["resources"] == replica["spec"]["containers"][0]["resources"]
    gpu = {
        "key": L.GPU_PRODUCT,
        "operator": "In",
        "values": ["H100-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"],
    }
    required = {"nodeSelectorTerms": [{"matchExpressions": [gpu]}]}
    assert (
        pod["spec"]["affinity"]
        == replica["spec"]["affinity"]
        == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )
    assert pod["spec"]["tolerations"] == replica["spec"]["tolerations"]
    assert pod["spec"]["priorityClassName"] == "ember-warm-buffer" != replica["spec"]["priorityClassName"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 1  # graceful: see placeholders.py
    assert pod["metadata"]["ownerReferences"] == [builders.owner_reference("llm", "uid-1")]
    labels = pod["metadata"]["labels"]
    assert (
        labels[L.COMPONENT] == L.PLACEHOLDER and labels[L.ISVC] == "llm" and labels[L.MANAGED_BY] == "ember"
    )
    assert L.SERVING not in labels  # never selected by the Service


def test_prestage_runs_the_replica_image_into_the_node_cache() -> None:
    granted = placeholder_pod("llm", "ns", "u", SPEC, 0, checkpoint_dir="/r/ns/llm", prestage_allowed=True)
    init = granted["spec"]["initContainers"][0]
    assert init["image"] == SPEC.engine.image and init["command"] == ["ember-supervisor"]
    assert init["args"][:5] == ["prestage", "--model", "hf://org/model", "--revision", "abc"]
    assert init["args"][-2:] == ["--checkpoints", "/r/ns/llm"]  # the service's own directory, read-only
    assert {"name": "checkpoints", "mountPath": "/r/ns/llm", "readOnly": True} in init["volumeMounts"]
    # without the admin's checkpoint grant (policy/tenancy.py) no checkpoint directory is mounted
    no_checkpoints = placeholder_pod("llm", "ns", "u", SPEC, 0, prestage_allowed=True)
    assert "--checkpoints" not in no_checkpoints["spec"]["initContainers"][0]["args"]
    assert L.GPU_RESOURCE not in init["resources"]["requests"]
    off = SPEC.model_copy(update={"warm_buffer": SPEC.warm_buffer.model_copy(update={"prestage": False})})
    assert "initContainers" not in placeholder_pod("llm", "ns", "u", off, 0, prestage_allowed=True)["spec"]


def test_outside_the_admins_grant_a_placeholder_runs_no_tenant_image_and_mounts_no_node_path() -> None:
    pod = placeholder_pod("llm", "ns", "u", SPEC, 0)["spec"]  # prestage asked for, namespace not opted in
    assert "initContainers" not in pod and "volumes" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec_hash(SPEC) != spec_hash(SPEC, prestage_allowed=True)  # a grant replaces the placeholders


def test_a_shape_change_changes_the_hash_but_replica_count_does_not() -> None:
    bigger = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"gpu": 4})})
    assert spec_hash(bigger) != spec_hash(SPEC)
    assert spec_hash(SPEC.model_copy(update={"replicas": 5})) == spec_hash(SPEC)


def test_view_reads_scheduling_and_scheduler_preemption() -> None:
    raw = {
        "metadata": {
            "name": "llm-buffer-2",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"serving.ember.dev/buffer-hash": "x"},
        },
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"},
            ]
        },
    }
    v = placeholder_view("llm", raw)
    assert v is not None and (v.index, v.scheduled, v.preempted, v.spec_hash) == (2, True, True, "x")
    assert v.uid == "llm-buffer-2@2026-01-01T00:00:00Z"
    assert placeholder_view("ll", raw) is None  # another service's prefix
    assert placeholder_view("llm", {"metadata": {"name": "llm-buffer-x"}}) is None
