"""The chart's generated files, and the facts the chart restates from the code, cannot drift."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from ember import chartgen
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.config import Settings
from ember.telemetry.metrics import Metrics
from ember_sim.exporter import ReplicaCollector
from ember_sim.model import Replica
from ember_sim.params import ReplicaParams
from ember_supervisor.metrics import SupervisorMetrics

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "ember"
# Settings that make no sense in a pod the chart runs: in-cluster credentials replace a kubeconfig,
# and leader election (a Lease) replaces kopf peering, which would need kopf's own CRDs.
NOT_IN_CHART = {"kubeconfig", "peering"}
TTFT_BUCKET = "vllm:time_to_first_token_seconds_bucket"


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    rc = chartgen.main(["--check", str(CHART)])
    assert rc == 0, "run `make generate`:\n" + capsys.readouterr().out[-3000:]


def test_chart_crds_are_the_repositorys_crds() -> None:
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_text() == path.read_text()


@pytest.mark.parametrize("field", sorted(set(Settings.model_fields) - NOT_IN_CHART))
def test_every_operator_setting_is_set_by_the_deployment(field: str) -> None:
    assert f"name: EMBER_{field.upper()}\n" in (CHART / "templates" / "deployment.yaml").read_text()


def test_priority_class_names_are_the_crd_defaults() -> None:
    values = chartgen.yaml.safe_load((CHART / "values.yaml").read_text())
    spec = InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}, "resources": {"gpu": 1}})
    assert values["priorityClasses"]["serving"]["name"] == spec.resources.priority_class_name
    assert values["priorityClasses"]["warmBuffer"]["name"] == spec.warm_buffer.priority_class_name


# The series the dashboard and the alerts may name that no Ember code exports, in one place: the
# simulated replica's vLLM families stand for vLLM's (its exporter copies vLLM v1's names);
# NVIDIA's DCGM exporter (the GPU operator runs it) for the GPU panels; `up`, which Prometheus writes
# for every target it scrapes (the GPU panels join through the replicas' `up`).
DCGM = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP"}
PROMETHEUS = {"up"}
SUFFIXES = re.compile(r"(_bucket|_total|_count|_sum)$")


def known_metrics() -> set[str]:
    replica = ReplicaCollector(Replica(id="r0", params=ReplicaParams()), threading.Lock(), lambda: 0.0)
    registries = [Metrics.create().registry, SupervisorMetrics().registry]
    names = {m.name for r in registries for m in r.collect()} | {m.name for m in replica.collect()}
    return names | DCGM | PROMETHEUS


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left of it without its strings, range
    durations, label matchers, label lists (`by (..)`, `on (..)`, ...), functions and operators."""
    e = re.sub(r'"[^"]*"', '""', expr)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set(re.findall(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", e))
    return {SUFFIXES.sub("", n) for n in names - {"and", "or", "unless", "bool", "offset", "group_left"}}


def dashboard_exprs() -> list[str]:
    board = json.loads((CHART / "dashboards" / "ember.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.*), \w+\)", var["query"])
            assert m, var["query"]
            exprs.append(m.group(1))
    return exprs


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'sum by (le, pod) (rate(vllm:ttft_bucket{ns=~"$ns"}[$__rate_interval])) / on (pod) group_left (a) '
        'label_replace(up, "pod", "$1", "exported_pod", "(.+)") * group by (x) (a_total offset 5m)'
    ) == {"vllm:ttft", "up", "a"}


def test_dashboard_and_alerts_name_only_metrics_that_exist() -> None:
    known = known_metrics()
    text = (CHART / "dashboards" / "ember.json").read_text()
    text += (CHART / "templates" / "prometheusrule.yaml").read_text()
    used = set(re.findall(r"\b(ember_[a-z_]+?)(?:_bucket|_total|_count|_sum)?\b", text))
    assert used and used <= known, used - known
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert used <= known, used - known
    assert {"vllm:prefix_cache_hits", "vllm:prompt_tokens", "ember_supervisor_start_phase_seconds"} <= used
    assert used >= DCGM


def panels_by_row() -> dict[str, dict[str, dict[str, Any]]]:
    board = json.loads((CHART / "dashboards" / "ember.json").read_text())
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for p in board["panels"]:
        if p["type"] == "row":
            current = rows.setdefault(p["title"], {})
        else:
            current[p["title"]] = p
    return rows


def test_dashboard_shows_serving_per_service_and_per_replica_and_the_gpus() -> None:
    rows = panels_by_row()
    service, replica = rows["Serving by InferenceService (vLLM)"], rows["Serving per replica (vLLM)"]
    gpus = rows["GPUs per replica (NVIDIA DCGM exporter)"]
    metrics = {
        "TTFT p50 / p99": {TTFT_BUCKET},
        "Inter-token latency p50 / p99": {"vllm:inter_token_latency_seconds_bucket"},
        "Requests finished per second": {"vllm:request_success_total"},
        "Tokens per second: prefill (prompt) and decode (generation)": {
            "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
        },
        "Prefix-cache hit rate (tokens)": {"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"},
    }  # fmt: skip
    for title, names in metrics.items():
        for panel, by in ((service[title], "inferenceservice"), (replica[f"{title}, per replica"], "pod")):
            exprs = " ".join(t["expr"] for t in panel["targets"])
            assert all(n in exprs for n in names), (panel["title"], exprs)
            assert by in exprs and "$isvc" in exprs and "$ns" in exprs, exprs
    quantiles = [t["expr"].split(",")[0] for t in service["TTFT p50 / p99"]["targets"]]
    assert quantiles == ["histogram_quantile(0.5", "histogram_quantile(0.99"]
    phases = replica["Start time by phase, per replica (last start)"]["targets"][0]
    assert "by (namespace, pod, phase)" in phases["expr"] and "{{pod}}" in phases["legendFormat"]
    for title, name in {
        "GPU utilisation": "DCGM_FI_DEV_GPU_UTIL", "GPU memory used": "DCGM_FI_DEV_FB_USED",
        "GPU power": "DCGM_FI_DEV_POWER_USAGE", "GPU temperature": "DCGM_FI_DEV_GPU_TEMP",
    }.items():  # fmt: skip
        expr = gpus[title]["targets"][0]["expr"]
        assert name in expr and '"exported_pod"' in expr and "on (namespace, pod)" in expr, expr
    # the panels that were there before stay
    assert {"Replicas: desired vs ready", "Start paths (cold vs restore)"} <= set(rows["Operator and starts"])


def schema_of(values_yaml: str) -> dict[str, Any]:
    return chartgen.values_schema(values_yaml)


def test_schema_types_come_from_defaults_and_annotations() -> None:
    s = schema_of(
        '# -- how many\n# @schema {"minimum": 0}\nreplicas: 1\n'
        'a:\n  # -- a URL or nothing\n  # @schema {"type": ["string", "null"]}\n  url: null\n'
    )
    assert s["additionalProperties"] is False
    assert s["properties"]["replicas"] == {
        "type": "integer",
        "minimum": 0,
        "description": "how many",
        "default": 1,
    }
    a = s["properties"]["a"]
    assert a["additionalProperties"] is False
    assert a["properties"]["url"]["type"] == ["string", "null"]


def test_multi_line_descriptions_are_joined() -> None:
    s = schema_of("# -- first line\n# second line\nx: true\n")
    assert s["properties"]["x"]["description"] == "first line second line"


def test_free_form_objects_are_not_described_further() -> None:
    s = schema_of('# -- anything\n# @schema {"additionalProperties": true}\nres:\n  limits:\n    cpu: 1\n')
    assert "properties" not in s["properties"]["res"]


@pytest.mark.parametrize(
    ("values_yaml", "error"),
    [
        ("x: 1\n", "x: undocumented value"),
        ("# -- doc\nx: null\n", "x: default None needs an @schema type"),
        ("# -- doc\n# @schema {nope}\nx: 1\n", "values.yaml:2: bad @schema JSON"),
    ],
    ids=["undocumented", "null-without-type", "bad-annotation"],
)
def test_generator_refuses(values_yaml: str, error: str) -> None:
    with pytest.raises(chartgen.ChartGenError, match=re.escape(error)):
        schema_of(values_yaml)


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "ember"
    chart.mkdir()
    for name in ("values.yaml", "README.md"):
        (chart / name).write_text((CHART / name).read_text())
    assert chartgen.main(["--out", str(chart)]) == 0
    assert chartgen.main(["--check", str(chart)]) == 0
    (chart / "values.yaml").write_text(
        (chart / "values.yaml").read_text().replace("replicaCount: 1", "replicaCount: 2")
    )
    assert chartgen.main(["--check", str(chart)]) == 1
    assert "values.schema.json" in capsys.readouterr().out
