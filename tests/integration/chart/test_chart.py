"""The chart with real helm on the real control plane: lint, server-side dry-run of what it renders,
install / upgrade / uninstall (CRDs and users' objects survive), and values the schema refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from ember.api.v1alpha1 import GROUP, PLURAL

from tests.integration.chart.conftest import CHART, Helm, docs, find
from tests.integration.conftest import Kube, eventually
from tests.integration.operator.harness import isvc_manifest

CRD = f"{PLURAL}.{GROUP}"
# Stand-ins for prometheus-operator's CRDs, so that the server can dry-run ServiceMonitor and
# PrometheusRule (it validates only what a CRD declares; the real ones are much larger).
MONITORING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    for plural, kind in (
        ("servicemonitors", "ServiceMonitor"),
        ("podmonitors", "PodMonitor"),
        ("prometheusrules", "PrometheusRule"),
    )
]


@pytest.fixture
def release(kube: Kube, helm: Helm) -> Iterator[str]:
    """A release named after the test namespace, so cluster-scoped names never collide; always removed."""
    yield kube.ns
    helm("uninstall", kube.ns, "-n", kube.ns, "--ignore-not-found", check=False)


def test_helm_lint_strict_passes(helm: Helm) -> None:
    r = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in r.stdout


@pytest.mark.parametrize(
    "sets",
    [
        (),
        (
            "replicaCount=2",
            "operator.namespaces={NS}",
            "operator.prometheusUrl=http://prom:9090",
            "metrics.serviceMonitor.enabled=true",
            "metrics.podMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "operator.logFormat=text",
            "priorityClasses.create=false",
            "grafana.dashboard.enabled=false",
            "image.digest=sha256:" + "a" * 64,
        ),
    ],
    ids=["defaults", "namespaced-ha-monitoring"],
)
def test_rendered_manifests_pass_server_side_dry_run(kube: Kube, helm: Helm, sets: tuple[str, ...]) -> None:
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(MONITORING_CRDS))
    kube.kubectl(
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )
    sets = tuple(s.replace("{NS}", "{" + kube.ns + "}") for s in sets)
    # --skip-tests: the test pod names a ServiceAccount that a dry run does not create (install does).
    out = helm(
        "template",
        kube.ns,
        str(CHART),
        "-n",
        kube.ns,
        "--include-crds",
        "--skip-tests",
        "--api-versions",
        "monitoring.coreos.com/v1",
        *[a for s in sets for a in ("--set", s)],
    ).stdout
    r = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=out, check=False)
    assert r.returncode == 0, r.stderr
    kinds = {d["kind"] for d in docs(out)}
    if sets:
        assert {"Role", "RoleBinding", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
        pm = find(out, "PodMonitor")
        assert pm["spec"]["namespaceSelector"] == {"matchNames": [kube.ns]}
        assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} == {"http", "supervisor"}
        assert "PriorityClass" not in kinds
    else:
        assert {"ClusterRole", "ClusterRoleBinding", "PriorityClass", "ConfigMap"} <= kinds
        assert not {"Role", "ServiceMonitor", "PodMonitor", "PrometheusRule"} & kinds


def test_deployment_is_hardened_and_leader_election_follows_replicas(kube: Kube, helm: Helm) -> None:
    one = find(helm.template("r", kube.ns), "Deployment", "r-ember")
    pod = one["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-healthz"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["EMBER_LEADER_ELECTION"] == "false" and one["spec"]["strategy"]["type"] == "Recreate"
    two = helm.template("r", kube.ns, "replicaCount=2")
    env2 = {
        e["name"]: e.get("value")
        for e in find(two, "Deployment", "r-ember")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env2["EMBER_LEADER_ELECTION"] == "true"
    assert find(two, "Role", "r-ember-leader-election")["rules"][1]["resourceNames"] == ["ember-operator"]
    r = helm(
        "template",
        "r",
        str(CHART),
        "--set",
        "replicaCount=2",
        "--set",
        "operator.leaderElection.enabled=false",
        check=False,
    )
    assert r.returncode != 0 and "two replicas without a Lease would both act" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "replicaCount=-1"), "at '/replicaCount': minimum: got -1, want 0"),
        (("--set", "replicaCont=2"), "additional properties 'replicaCont' not allowed"),
        (
            ("--set", "operator.leaderElection.leaseDurationSeconds=1"),
            "leaseDurationSeconds': minimum: got 1, want 3",
        ),
        (("--set", "operator.logFormat=xml"), "/operator/logFormat': value must be one of 'json', 'text'"),
        (("--set-string", "replicaCount=two"), "/replicaCount': got string, want integer"),
        (("--set", "operator.prometheusUrl=prom:9090"), "/operator/prometheusUrl'"),
        (
            ("--set", "modelCache.hostPath=/var/lib/models", "--set", "modelCache.persistentVolumeClaim=hf"),
            "at '/modelCache': 'not' failed",
        ),
        (("--set", "modelCache.persistentVolumeClaim=HF_cache"), "/modelCache/persistentVolumeClaim'"),
    ],
    ids=[
        "negative-replicas",
        "unknown-key",
        "lease-too-short",
        "bad-enum",
        "wrong-type",
        "url-without-scheme",
        "two-model-caches",
        "claim-not-a-name",
    ],
)
def test_bad_values_are_refused_by_the_schema_naming_the_key(
    helm: Helm, args: tuple[str, ...], message: str
) -> None:
    r = helm("template", "r", str(CHART), *args, check=False)
    assert r.returncode != 0
    assert "values don't meet the specifications of the schema" in r.stderr, r.stderr
    assert message in r.stderr, r.stderr


def test_chart_crds_pass_server_side_apply(kube: Kube) -> None:
    r = kube.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(CHART / "crds"), check=False)
    assert r.returncode == 0, r.stderr


def test_install_upgrade_uninstall_keeps_crds_and_inference_services(
    kube: Kube, helm: Helm, release: str
) -> None:
    # The GitOps path (README, CRDs): CRDs by kubectl, the chart with --skip-crds.
    kube.kubectl("apply", "-f", str(CHART / "crds"))
    pcs = (
        f"priorityClasses.serving.name={release}-serving",
        f"priorityClasses.warmBuffer.name={release}-warm",
        f"priorityClasses.control.name={release}-control",
    )
    helm(
        "install", release, str(CHART), "-n", kube.ns, "--skip-crds", *[a for s in pcs for a in ("--set", s)]
    )
    fullname = f"{release}-ember"
    kube.kubectl("wait", "--for=condition=established", "--timeout=30s", f"crd/{CRD}")
    dep = kube.kubectl("get", "deploy", fullname, "-o", "yaml").stdout
    assert "EMBER_LOG_FORMAT" in dep and "value: json" in dep
    assert kube.sched.read_priority_class(f"{release}-warm").preemption_policy == "Never"
    assert kube.kubectl("get", "clusterrole", fullname, check=False).returncode == 0
    assert kube.kubectl("get", "role", f"{fullname}-leader-election", check=False).returncode != 0

    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc_manifest("keep", replicas=0)))

    helm.upgrade(
        release, kube.ns, "replicaCount=2", "operator.logFormat=text", "operator.resyncIntervalSeconds=2"
    )
    d = kube.kubectl("get", "deploy", fullname, "-o", "json").stdout
    spec = yaml.safe_load(d)["spec"]
    env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert env["EMBER_LOG_FORMAT"] == "text" and env["EMBER_RESYNC_INTERVAL_SECONDS"] == "2"
    assert env["EMBER_LEADER_ELECTION"] == "true"
    assert kube.kubectl("get", "role", f"{fullname}-leader-election").returncode == 0
    assert "REVISION: 2" in helm("status", release, "-n", kube.ns).stdout

    helm("uninstall", release, "-n", kube.ns)
    eventually(
        lambda: kube.kubectl("get", "deploy", fullname, check=False).returncode != 0,
        30,
        what="deployment gone",
    )
    assert kube.kubectl("get", "clusterrole", fullname, check=False).returncode != 0
    assert kube.kubectl("get", "priorityclass", f"{release}-serving", check=False).returncode != 0
    # What users own survives: the CRD (crds/ is never deleted by helm) and their InferenceService.
    assert kube.kubectl("get", "crd", CRD).returncode == 0
    assert kube.kubectl("get", "eis", "keep", "-o", "name").stdout.strip() == f"inferenceservice.{GROUP}/keep"


def test_activator_is_rendered_with_two_replicas_a_pdb_and_least_privilege(kube: Kube, helm: Helm) -> None:
    out = helm.template("r", kube.ns)
    dep = find(out, "Deployment", "r-ember-activator")
    assert dep["spec"]["replicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["ember-activator"] and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert find(out, "PodDisruptionBudget", "r-ember-activator")["spec"]["minAvailable"] == 1
    rules = find(out, "ClusterRole", "r-ember-activator")["rules"]
    assert {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in rules} == {
        ("serving.ember.dev", "inferenceservices", ("get", "list", "watch", "patch")),
        ("discovery.k8s.io", "endpointslices", ("list", "watch")),
        ("", "services", ("list", "watch")),
    }
    env = {
        e["name"]: e.get("value")
        for e in find(out, "Deployment", "r-ember")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["EMBER_ACTIVATOR_SERVICE"] == f"{kube.ns}/r-ember-activator"
    off = helm.template("r", kube.ns, "activator.enabled=false")
    assert "r-ember-activator" not in off


def test_own_replicas_never_preempt_the_operator_or_the_activator(kube: Kube, helm: Helm) -> None:
    """Found on kind (2026-12-03): a scale-up's replica pod (ember-serving, 1000) preempted the operator
    and an activator (no priority, 0) on a full node, and the service was left with no controller. The
    control pods run at a class above every class the chart gives replicas; an admin's own name wins."""
    out = helm.template("r", kube.ns)
    classes = {d["metadata"]["name"]: d["value"] for d in docs(out) if d["kind"] == "PriorityClass"}
    for name in ("r-ember", "r-ember-activator"):
        pc = find(out, "Deployment", name)["spec"]["template"]["spec"].get("priorityClassName")
        assert pc in classes, f"{name}: priorityClassName {pc!r} not one of the chart's {sorted(classes)}"
        assert classes[pc] > classes["ember-serving"] > classes["ember-warm-buffer"], (name, classes)
    own = helm.template("r", kube.ns, "priorityClassName=system-cluster-critical")
    for name in ("r-ember", "r-ember-activator"):
        spec = find(own, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["priorityClassName"] == "system-cluster-critical", name
    # a second installation (classes made by the first) still runs its control pods at that class
    second = helm.template("r", kube.ns, "priorityClasses.create=false")
    assert not [d for d in docs(second) if d["kind"] == "PriorityClass"]
    assert (
        find(second, "Deployment", "r-ember")["spec"]["template"]["spec"]["priorityClassName"]
        == "ember-control"
    )
