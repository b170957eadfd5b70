"""What the chart renders for monitoring and `helm test`, read from real `helm template` output (no
cluster needed): labels the scrapes keep, no duplicate keys, the test pod outside the Service."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from ember_cluster.paths import Binaries

from tests.integration.chart.conftest import CHART

ALL_ON = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.podMonitor.enabled=true",
    "prometheusRule.enabled=true",
)


class StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; the API server's decoder is strict."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {dup}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def render(*sets: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(Binaries.locate().helm), "template", "r", str(CHART), "-n", "ops",
         "--api-versions", "monitoring.coreos.com/v1", *[a for s in sets for a in ("--set", s)]],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [d for d in yaml.load_all(out, Loader=StrictLoader) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def test_operator_scrape_keeps_the_inference_services_namespace() -> None:
    docs = render(*ALL_ON)
    sm = one(docs, "ServiceMonitor")
    # honorLabels: the operator's `namespace`/`name` labels (the InferenceService's) win over the
    # target's namespace (the operator's), so the dashboard's namespace filter and the alerts'
    # `by (namespace, name)` name the service, not where the operator runs.
    assert [e.get("honorLabels") for e in sm["spec"]["endpoints"]] == [True]
    # The replicas run the tenants' images: their scrape keeps Prometheus' own namespace and pod.
    pm = one(docs, "PodMonitor")
    assert all(not e.get("honorLabels") for e in pm["spec"]["podMetricsEndpoints"])


def test_helm_test_pod_has_each_label_once_and_is_not_behind_the_metrics_service() -> None:
    docs = render(*ALL_ON)  # StrictLoader: a duplicate key anywhere fails here
    pod = one(docs, "Pod", "r-ember-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "test"
    selector = one(docs, "Service", "r-ember-metrics")["spec"]["selector"]
    assert not all(labels.get(k) == v for k, v in selector.items()), (selector, labels)
    dep = one(docs, "Deployment", "r-ember")  # the operator (the activator is a second Deployment)
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
