"""Safe with tenants, for real: a ServiceAccount with only the built-in `edit` ClusterRole in its
namespace (which the chart's aggregated role extends to InferenceServices) tries to get more from the
operator than it could get from a pod of its own, and each attempt fails with a clear refusal or
condition. The operator runs with the chart's ServiceAccount and the chart's default tenancy values:
no namespace opted in to checkpoints, PromQL overrides not allowed."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember.policy.tenancy import CheckpointGrant
from ember_cluster import LocalCluster

from tests.integration.chart.conftest import CHART, Helm, token_kubeconfig
from tests.integration.chart.test_rbac import chart_operator
from tests.integration.conftest import Kube, eventually
from tests.integration.operator.harness import Operator, condition, isvc_manifest, replica_pods

pytestmark = pytest.mark.integration


class Tenant:
    """kubectl as the tenant's ServiceAccount (namespace `edit` only)."""

    def __init__(self, kube: Kube, kubeconfig: Path) -> None:
        self.kube, self.kubeconfig = kube, kubeconfig

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.kube.cluster.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", "-n", self.kube.ns]
        return subprocess.run(
            [*cmd, *args], input=input, text=True, capture_output=True, check=check, timeout=60
        )

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=check)


@pytest.fixture
def installed(kube: Kube, helm: Helm) -> Iterator[str]:
    """The chart with its default tenancy values, namespaced to the test namespace."""
    kube.kubectl("apply", "-f", str(CHART / "crds"))
    kube.ensure_priority_class("ember-serving", 1000)
    kube.ensure_priority_class("ember-warm-buffer", -10)
    kube.ensure_priority_class("ember-control", 100000)
    sets = ("priorityClasses.create=false", "operator.namespaces={" + kube.ns + "}")
    helm(
        "install", kube.ns, str(CHART), "-n", kube.ns, "--skip-crds", *[a for s in sets for a in ("--set", s)]
    )
    yield f"{kube.ns}-ember"
    helm("uninstall", kube.ns, "-n", kube.ns, "--ignore-not-found", check=False)


@pytest.fixture
def tenant(kube: Kube, installed: str, tmp_path: Path) -> Tenant:
    kube.kubectl("create", "serviceaccount", "tenant")
    kube.kubectl(
        "create", "rolebinding", "tenant-edit", "--clusterrole=edit", f"--serviceaccount={kube.ns}:tenant"
    )
    t = Tenant(kube, token_kubeconfig(kube, "tenant", tmp_path / "tenant.kubeconfig"))
    # the aggregated role reaches `edit` through the controller-manager's aggregation controller
    eventually(
        lambda: (
            t.kubectl("auth", "can-i", "create", "inferenceservices", check=False).stdout.strip() == "yes"
        ),
        30,
        what="edit aggregates InferenceServices",
    )
    assert (
        t.kubectl(
            "auth", "can-i", "patch", "inferenceservices", "--subresource=status", check=False
        ).stdout.strip()
        == "no"
    )
    return t


@pytest.fixture
def operator(cluster: LocalCluster, kube: Kube, installed: str, tmp_path: Path) -> Iterator[Operator]:
    # the chart's defaults for the tenancy settings, as its Deployment sets them
    op = chart_operator(
        cluster,
        kube,
        installed,
        tmp_path,
        EMBER_CHECKPOINT_NAMESPACES="[]",
        EMBER_CHECKPOINT_ALL_NAMESPACES="false",
        EMBER_ALLOW_QUERY_OVERRIDES="false",
    )
    yield op
    op.stop()
    print("---- operator log (tail)\n" + op.log_tail(60))


@pytest.mark.parametrize(
    ("storage", "field"),
    [
        ({"path": "/"}, 'unknown field "spec.checkpoint.storage.path"'),
        ({"hostPath": "/var/lib/kubelet"}, 'unknown field "spec.checkpoint.storage.hostPath"'),
        ({"type": "pvc", "claimName": "theirs"}, 'unknown field "spec.checkpoint.storage.type"'),
        ({"subPath": "../../other-team/llm"}, "spec.checkpoint.storage.subPath"),
        ({"subPath": "/etc"}, "spec.checkpoint.storage.subPath"),
    ],
    ids=["node-root", "invented-hostpath", "own-volume", "subpath-climbs-out", "subpath-absolute"],
)
def test_a_tenant_cannot_choose_where_checkpoints_are_stored(
    tenant: Tenant, storage: dict[str, Any], field: str
) -> None:
    spec = {"checkpoint": {"enabled": True, "storage": storage}}
    r = tenant.apply(isvc_manifest("greedy", **spec), check=False)
    assert r.returncode != 0 and field in r.stderr, r.stderr
    assert "forbidden" not in r.stderr.lower()  # refused for the spec, not for the tenant's rights
    # the same tenant may store in the root the admin declared, below its own directory
    ok = tenant.apply(isvc_manifest("greedy", checkpoint={"enabled": True, "storage": {"subPath": "v2"}}))
    assert ok.returncode == 0, ok.stderr


def test_checkpoints_in_a_namespace_the_admin_did_not_opt_in_give_a_condition_and_a_restricted_pod(
    kube: Kube, tenant: Tenant, operator: Operator
) -> None:
    kube.kubectl("label", "namespace", kube.ns, "pod-security.kubernetes.io/enforce=restricted")
    # the label is enforced by the real PodSecurity admission: a pod with the checkpoint grant is refused
    spec = InferenceServiceSpec.model_validate(isvc_manifest("x")["spec"])
    grant = CheckpointGrant({"hostPath": {"path": "/var/lib/ember/checkpoints/x"}}, None, None, "")
    granted = builders.replica_pod(
        "probe", kube.ns, "00000000-0000-0000-0000-000000000000", spec, 0, checkpoint=grant
    )
    granted["metadata"].pop("ownerReferences")
    r = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(granted), check=False)
    assert r.returncode != 0 and "violates PodSecurity" in r.stderr and "hostPath" in r.stderr, r.stderr

    operator.wait_healthy()
    tenant.apply(isvc_manifest("cp", replicas=1, checkpoint={"enabled": True}))

    def refused() -> dict[str, Any] | None:
        c = condition(kube, "cp", "CheckpointReady")
        return c if c and c["status"] == "False" else None

    c = eventually(refused, 60, what="CheckpointReady=False")
    assert c["reason"] == "CheckpointsNotAllowed" and f"namespace {kube.ns}" in c["message"], c

    # kopf posts Events in the background, after the condition can already be read
    def refusal_event() -> bool:
        events = kube.core.list_namespaced_event(kube.ns, field_selector="type=Warning").items
        return any(e.reason == "CheckpointsNotAllowed" for e in events)

    eventually(refusal_event, 30, what="a CheckpointsNotAllowed Event")
    # the replica exists: admitted by the restricted profile, with no capability and no node path
    pods = eventually(lambda: replica_pods(kube, "cp"), 60, what="a replica pod admitted")
    pod = kube.core.read_namespaced_pod(pods[0].metadata.name, kube.ns).to_dict()
    c0 = pod["spec"]["containers"][0]
    assert c0["security_context"]["capabilities"] == {"add": None, "drop": ["ALL"]}
    assert pod["spec"]["security_context"]["run_as_non_root"] is True
    assert not any(v.get("host_path") for v in pod["spec"]["volumes"])
    # the supervisor's token Secret exists, owned by the InferenceService; the token is nowhere else
    secret = kube.core.read_namespaced_secret("cp-supervisor-token", kube.ns)
    assert secret.metadata.owner_references[0].kind == "InferenceService"
    token = base64.b64decode(secret.data["token"]).decode()
    assert len(token) >= 32
    env = {e["name"]: e for e in c0["env"]}
    assert env[builders.TOKEN_ENV]["value_from"]["secret_key_ref"]["name"] == "cp-supervisor-token"
    everywhere = json.dumps(pod, default=str) + kube.kubectl("get", "eis,events", "-o", "yaml").stdout
    assert token not in everywhere and token not in operator.log.read_text(errors="replace")


def test_a_promql_override_reading_another_namespace_is_refused_by_condition(
    kube: Kube, tenant: Tenant, operator: Operator
) -> None:
    operator.wait_healthy()
    steal = 'sum(rate(vllm:time_to_first_token_seconds_count{namespace="kube-system"}[1m]))'
    tenant.apply(isvc_manifest("peek", replicas=1, scaling={"maxReplicas": 2, "queries": {"qps": steal}}))

    def unavailable() -> dict[str, Any] | None:
        c = condition(kube, "peek", "MetricsAvailable")
        return c if c and c["status"] == "False" else None

    c = eventually(unavailable, 60, what="MetricsAvailable=False")
    assert c["reason"] == "QueryOverridesNotAllowed" and "spec.scaling.queries" in c["message"], c
    status = tenant.kubectl("get", "inferenceservice", "peek", "-o", "json").stdout
    assert "qps" not in json.loads(status)["status"].get("observed", {})  # nothing was read back
