"""The operator core on the real control plane: replicas follow the spec and `kubectl scale`, drains
leave the Service first, a stuck pod is reported (not crashed on), deletion cleans up, rollouts keep
Ready replicas until their replacements are Ready."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ember_cluster import LocalCluster
from kubernetes import client

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import (
    Operator,
    condition,
    get_isvc,
    isvc_manifest,
    patch_spec,
    replica_pods,
    wait_converged,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    k = install_crds(cluster)
    k.ensure_priority_class("ember-warm-buffer", -10)
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log").start()
    op.wait_healthy()
    yield op
    op.stop()


def apply(kube: Kube, manifest: dict[str, object]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def events(kube: Kube, name: str) -> list[str]:
    evs = kube.core.list_namespaced_event(kube.ns, field_selector=f"involvedObject.name={name}").items
    return [e.reason for e in evs]


def test_scale_0_3_1_0_by_spec_and_by_kubectl_scale(kube: Kube, operator: Operator) -> None:
    apply(kube, isvc_manifest("llm", replicas=0))
    wait_converged(kube, "llm", 0)
    # routing contract (kube/routing.py): a selector-less Service, its EndpointSlice written by Ember
    assert kube.core.read_namespaced_service("llm", kube.ns).spec.selector is None
    disc = kube.cluster.api(client.DiscoveryV1Api)
    eventually(
        lambda: (
            disc.read_namespaced_endpoint_slice("llm-ember", kube.ns).metadata.labels[
                "serving.ember.dev/route"
            ]
            == "none"
        ),
        10,
    )

    patch_spec(kube, "llm", {"replicas": 3})
    wait_converged(kube, "llm", 3)
    eventually(
        lambda: len(disc.read_namespaced_endpoint_slice("llm-ember", kube.ns).endpoints or []) == 3, 10
    )
    assert sorted(p.metadata.name for p in replica_pods(kube, "llm")) == ["llm-0", "llm-1", "llm-2"]
    st = get_isvc(kube, "llm")["status"]
    assert st["endpoint"] == f"http://llm.{kube.ns}.svc.cluster.local/v1"
    assert condition(kube, "llm", "Ready")["status"] == "True"  # type: ignore[index]

    kube.kubectl("scale", "eis/llm", "--replicas=1")
    wait_converged(kube, "llm", 1)
    kube.kubectl("scale", "eis/llm", "--replicas=0")
    wait_converged(kube, "llm", 0)
    assert condition(kube, "llm", "Ready")["reason"] == "ScaledToZero"  # type: ignore[index]
    eventually(
        lambda: (
            {"ReplicaCreated", "ReplicaDraining", "ReplicaDeleted", "ServiceCreated"}
            <= set(events(kube, "llm"))
        ),
        10,
        what="events emitted",
    )


def test_scale_down_drains_the_victim_out_of_the_service_before_deleting_it(
    kube: Kube, operator: Operator
) -> None:
    m = isvc_manifest("d", replicas=2)
    m["spec"]["scaling"]["drainTimeoutSeconds"] = 4  # type: ignore[index]
    apply(kube, m)
    wait_converged(kube, "d", 2)
    patch_spec(kube, "d", {"replicas": 1})

    def draining() -> str | None:
        for p in replica_pods(kube, "d"):
            if p.metadata.labels.get("serving.ember.dev/serving") == "false":
                assert "serving.ember.dev/drain-started" in p.metadata.annotations
                return str(p.metadata.name)
        return None

    victim = eventually(draining, 10, what="a replica leaves the Service")
    assert victim == "d-1", "with no metrics, the newest replica goes first"
    # still there while draining (not deleted at once), gone after the drain timeout
    assert any(p.metadata.name == victim for p in replica_pods(kube, "d"))
    wait_converged(kube, "d", 1, timeout_s=20)
    assert [p.metadata.name for p in replica_pods(kube, "d")] == ["d-0"]


def test_pod_stuck_pending_sets_degraded_then_a_fixed_spec_recovers(kube: Kube, operator: Operator) -> None:
    apply(
        kube,
        isvc_manifest(
            "stuck", replicas=1, resources={"gpu": 1, "gpuType": "B200", "cpu": "1", "memory": "1Gi"}
        ),
    )

    def degraded() -> dict[str, str] | None:
        c = condition(kube, "stuck", "Degraded")
        return c if c and c["status"] == "True" else None

    c = eventually(degraded, 30, what="Degraded=True")
    assert c["reason"] == "Unschedulable" and "node" in c["message"]
    assert condition(kube, "stuck", "Ready")["status"] == "False"  # type: ignore[index]
    t0 = c["lastTransitionTime"]
    operator_alive = operator.proc is not None and operator.proc.poll() is None
    assert operator_alive, "a stuck pod must not crash the operator"

    patch_spec(kube, "stuck", {"resources": {"gpuType": "H100-80GB"}})
    wait_converged(kube, "stuck", 1, timeout_s=30)
    eventually(lambda: condition(kube, "stuck", "Degraded")["status"] == "False", 15)  # type: ignore[index]
    assert condition(kube, "stuck", "Degraded")["lastTransitionTime"] >= t0  # type: ignore[index]
    pod = replica_pods(kube, "stuck")[0]
    (term,) = (
        pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    )
    (req,) = term.match_expressions
    assert (req.key, req.operator) == ("nvidia.com/gpu.product", "In") and "H100-80GB" in req.values


def test_conditions_keep_their_transition_time_while_status_does_not_flip(
    kube: Kube, operator: Operator
) -> None:
    apply(kube, isvc_manifest("steady", replicas=1))
    wait_converged(kube, "steady", 1)
    t_ready = condition(kube, "steady", "Ready")["lastTransitionTime"]  # type: ignore[index]
    patch_spec(kube, "steady", {"podMetadata": {"labels": {"team": "a"}}})  # a rollout, Ready stays True
    eventually(
        lambda: (
            all(p.metadata.labels.get("team") == "a" for p in replica_pods(kube, "steady"))
            and len(replica_pods(kube, "steady")) == 1
        ),
        30,
    )
    wait_converged(kube, "steady", 1)
    assert condition(kube, "steady", "Ready")["lastTransitionTime"] == t_ready  # type: ignore[index]


def test_rollout_replaces_every_replica_and_keeps_ready_ones_until_replacements_are_ready(
    kube: Kube, operator: Operator
) -> None:
    apply(kube, isvc_manifest("roll", replicas=3))
    wait_converged(kube, "roll", 3)
    old = {p.metadata.labels["serving.ember.dev/template-hash"] for p in replica_pods(kube, "roll")}
    patch_spec(kube, "roll", {"engine": {"args": ["--enable-prefix-caching"]}})
    min_ready = 3

    def done() -> bool:
        nonlocal min_ready
        pods = replica_pods(kube, "roll", include_terminating=True)
        serving_ready = [
            p
            for p in pods
            if kube.pod_ready(p)
            and not p.metadata.deletion_timestamp
            and p.metadata.labels.get("serving.ember.dev/serving") == "true"
        ]
        min_ready = min(min_ready, len(serving_ready))
        hashes = {p.metadata.labels["serving.ember.dev/template-hash"] for p in pods}
        return len(pods) == 3 and not (hashes & old) and len(serving_ready) == 3

    eventually(done, 60, every_s=0.05, what="rollout complete")
    assert min_ready >= 2, f"serving Ready replicas dropped to {min_ready} during the rollout"
    env = {e.name: e.value for e in replica_pods(kube, "roll")[0].spec.containers[0].env}
    assert "--enable-prefix-caching" in json.loads(env["EMBER_SUPERVISOR_CONFIG_JSON"])["engine_argv"]


def test_deleting_the_inferenceservice_removes_everything_it_owns(kube: Kube, operator: Operator) -> None:
    apply(kube, isvc_manifest("gone", replicas=2))
    wait_converged(kube, "gone", 2)
    kube.kubectl("delete", "eis/gone", "--wait=true", "--timeout=30s")
    eventually(lambda: not replica_pods(kube, "gone", include_terminating=True), 30, what="pods collected")
    eventually(
        lambda: (
            not [s for s in kube.core.list_namespaced_service(kube.ns).items if s.metadata.name == "gone"]
        ),
        30,
        what="service collected",
    )
