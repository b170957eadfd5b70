"""The chart's generated files, and the facts the chart restates from the code, cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ember import chartgen
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.config import Settings
from ember.telemetry.metrics import Metrics
from ember_supervisor.metrics import SupervisorMetrics

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "ember"
# Settings that make no sense in a pod the chart runs: in-cluster credentials replace a kubeconfig,
# and leader election (a Lease) replaces kopf peering, which would need kopf's own CRDs.
NOT_IN_CHART = {"kubeconfig", "peering"}


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


def test_dashboard_and_alerts_name_only_metrics_that_exist() -> None:
    known = {m.name for m in Metrics.create().registry.collect()}
    known |= {m.name for m in SupervisorMetrics().registry.collect()}
    text = (CHART / "dashboards" / "ember.json").read_text()
    text += (CHART / "templates" / "prometheusrule.yaml").read_text()
    used = set(re.findall(r"\b(ember_[a-z_]+?)(?:_bucket|_total|_count|_sum)?\b", text))
    assert used and used <= known, used - known


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
