"""Every alert and recording rule of the chart, rendered by real helm, tested by Prometheus' own
`promtool test rules` on synthetic series: each fires (or records) when it should and is silent when
it should be. Needs no cluster: helm and promtool from ~/.cache/ember (`make cluster-binaries`).

The series look like what Prometheus stores after scraping through the chart's monitors: the
operator's through the ServiceMonitor (honorLabels: `namespace` is the InferenceService's), the
replicas' through the PodMonitor (`namespace` and `pod` of the replica pod).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember_cluster.paths import Binaries

from tests.integration.chart.conftest import CHART

RELEASE, NS = "r", "ops"  # the operator runs in `ops`; the InferenceServices in team-a
JOB = f"{RELEASE}-ember-metrics"  # prometheus-operator's job label: the Service's name
OP = f'job="{JOB}", instance="10.244.0.5:8080", pod="r-ember-5d9c", service="{JOB}", endpoint="http-metrics"'
REPLICA = 'job="ops/r-ember-replicas", namespace="team-a", inferenceservice="llm", container="engine"'


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def ratio(record: str, value: float, at: str = "70m") -> dict[str, Any]:
    """The recorded ratio at `at`, to 4 decimals (the division is not exact in floating point)."""
    return {
        "expr": f"round({record}, 0.0001)",
        "eval_time": at,
        "exp_samples": [{"labels": '{namespace="team-a", model_name="llama"}', "value": value}],
    }


def alert(name: str, at: str, *fired: dict[str, str]) -> dict[str, Any]:
    return {"alertname": name, "eval_time": at, "exp_alerts": [{"exp_labels": lb} for lb in fired]}


# name -> (input series, alert checks, expression checks); each a scenario of its own.
# The burn rate: objective 0.99 leaves a budget of 1%; 14.4x that is 14.4% of requests slower than
# the 2.5 s target. 20% slow is a breach; 10% is within it.
TTFT = "vllm:time_to_first_token_seconds"
SLOW = "namespace: team-a, model_name: llama"
SCENARIOS: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]], list[dict[str, Any]]]] = {
    "ttft-breach": (
        [
            series(f"{TTFT}_bucket", f'{REPLICA}, pod="llm-0", model_name="llama", le="2.5"', "0+80x90"),
            series(f"{TTFT}_count", f'{REPLICA}, pod="llm-0", model_name="llama"', "0+100x90"),
        ],
        [
            alert("EmberTTFTSLOBurn", "70m", {"namespace": "team-a", "model_name": "llama", "severity": "critical"}),
        ],
        [ratio("ember:ttft_slow_ratio:rate5m", 0.2), ratio("ember:ttft_slow_ratio:rate1h", 0.2)],
    ),
    "ttft-within-budget": (
        [
            series(f"{TTFT}_bucket", f'{REPLICA}, pod="llm-0", model_name="llama", le="2.5"', "0+90x90"),
            series(f"{TTFT}_count", f'{REPLICA}, pod="llm-0", model_name="llama"', "0+100x90"),
        ],
        [alert("EmberTTFTSLOBurn", "70m")],
        [
            ratio("ember:ttft_slow_ratio:rate1h", 0.1),
            {"expr": "ember:ttft_slow_ratio:rate5m > 0.144", "eval_time": "70m", "exp_samples": []},
        ],
    ),
    # a 10 min spike after a healthy hour: the 5 min window breaches, the 1 h one does not
    "ttft-short-spike": (
        [
            series(f"{TTFT}_bucket", f'{REPLICA}, pod="llm-0", model_name="llama", le="2.5"', "0+99x60 5940+50x10"),
            series(f"{TTFT}_count", f'{REPLICA}, pod="llm-0", model_name="llama"', "0+100x70"),
        ],
        [alert("EmberTTFTSLOBurn", "70m")],
        [ratio("ember:ttft_slow_ratio:rate5m", 0.5), ratio("ember:ttft_slow_ratio:rate1h", 0.1)],
    ),
    # a replica restores once, at start: its failure counter appears at 1 and stays there
    "restore-failed-in-a-new-pod": (
        [
            series(
                "ember_supervisor_restore_failures_total",
                f'{REPLICA}, pod="llm-3", reason="CriuRestoreFailed"',
                "_x10 1x40",
            )
        ],
        [
            alert("EmberRestoreFailures", "9m"),
            alert(
                "EmberRestoreFailures",
                "12m",
                {"namespace": "team-a", "reason": "CriuRestoreFailed", "severity": "warning"},
            ),
            alert("EmberRestoreFailures", "40m"),  # 30 min on, that pod's failure is old news
        ],
        [],
    ),
    "restore-failures-rising": (
        [
            series(
                "ember_supervisor_restore_failures_total",
                f'{REPLICA}, pod="llm-1", reason="IdentityMismatch"',
                "1x20 2x20",
            )
        ],
        [
            alert("EmberRestoreFailures", "19m"),
            alert(
                "EmberRestoreFailures",
                "25m",
                {"namespace": "team-a", "reason": "IdentityMismatch", "severity": "warning"},
            ),
        ],
        [],
    ),
    # a decision every 10 s, all MetricsUnavailable: one service with 2 desired replicas, one that is
    # scaled to zero on purpose (no replica, so no replica metrics: nothing to page about)
    "metrics-unavailable": (
        [
            series("ember_scaling_decisions_total", f'{OP}, namespace="team-a", name="llm", reason="MetricsUnavailable", mode="active"', "0+6x40"),
            series("ember_replicas_desired", f'{OP}, namespace="team-a", name="llm"', "2x40"),
            series("ember_scaling_decisions_total", f'{OP}, namespace="team-a", name="idle", reason="MetricsUnavailable", mode="active"', "0+6x40"),
            series("ember_replicas_desired", f'{OP}, namespace="team-a", name="idle"', "0x40"),
            series("ember_scaling_decisions_total", f'{OP}, namespace="team-a", name="fine", reason="DemandStable", mode="active"', "0+6x40"),
            series("ember_replicas_desired", f'{OP}, namespace="team-a", name="fine"', "3x40"),
        ],
        [
            alert("EmberMetricsUnavailable", "8m"),  # not yet for 10 min
            alert("EmberMetricsUnavailable", "25m", {"namespace": "team-a", "name": "llm", "severity": "warning"}),
        ],
        [],
    ),
    "operator-down": (
        [series("up", f'{OP}, namespace="{NS}"', "1x10 0x20")],
        [
            alert("EmberOperatorDown", "12m"),
            alert("EmberOperatorDown", "20m", {"namespace": NS, "severity": "critical"}),
        ],
        [],
    ),
    "operator-never-scraped": (
        [series("up", f'job="other", instance="x:1", namespace="{NS}"', "1x20")],
        [alert("EmberOperatorDown", "10m", {"namespace": NS, "severity": "critical"})],
        [],
    ),
    "operator-up": (
        [series("up", f'{OP}, namespace="{NS}"', "1x30")],
        [alert("EmberOperatorDown", "20m")],
        [],
    ),
    "reconcile-errors": (
        [
            series("ember_reconciles_total", f'{OP}, namespace="{NS}", result="error"', "0+1x40"),
            series("ember_reconciles_total", f'{OP}, namespace="{NS}", result="ok"', "0+12x40"),
        ],
        [alert("EmberReconcileErrors", "10m"), alert("EmberReconcileErrors", "30m", {"severity": "warning"})],
        [],
    ),
    "reconciles-ok": (
        [
            series("ember_reconciles_total", f'{OP}, namespace="{NS}", result="error"', "3x40"),
            series("ember_reconciles_total", f'{OP}, namespace="{NS}", result="ok"', "0+12x40"),
        ],
        [alert("EmberReconcileErrors", "30m")],
        [],
    ),
    # llm: 1 of 3 ready for 30 min; burst: short of one replica for 5 min while it starts
    "replicas-below-desired": (
        [
            series("ember_replicas_desired", f'{OP}, namespace="team-a", name="llm"', "3x40"),
            series("ember_replicas_ready", f'{OP}, namespace="team-a", name="llm"', "1x40"),
            series("ember_replicas_desired", f'{OP}, namespace="team-a", name="burst"', "2x10 3x30"),
            series("ember_replicas_ready", f'{OP}, namespace="team-a", name="burst"', "2x15 3x25"),
        ],
        [
            alert("EmberReplicasBelowDesired", "10m"),
            alert("EmberReplicasBelowDesired", "30m", {"namespace": "team-a", "name": "llm", "severity": "warning"}),
        ],
        [],
    ),
}  # fmt: skip


def render_rules(tmp: Path, *sets: str) -> tuple[Path, list[dict[str, Any]]]:
    """The chart's PrometheusRule as helm renders it (with `--set-json` of `sets`), as a rule file."""
    out = subprocess.run(
        [
            str(Binaries.locate().helm), "template", RELEASE, str(CHART), "-n", NS,
            "--api-versions", "monitoring.coreos.com/v1", "--set", "prometheusRule.enabled=true",
            "--show-only", "templates/prometheusrule.yaml", *[a for s in sets for a in ("--set-json", s)],
        ],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    groups = yaml.safe_load(out)["spec"]["groups"]
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path, [r for g in groups for r in g["rules"]]


def expand(annotations: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations as Prometheus expands them (they use only `{{ $labels.x }}`)."""
    return {
        k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), v)
        for k, v in annotations.items()
    }


def promtool_tests(rules: Path, by_name: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tests = []
    for name, (inputs, alerts, exprs) in SCENARIOS.items():
        for a in alerts:
            for e in a["exp_alerts"]:
                e["exp_annotations"] = expand(by_name[a["alertname"]].get("annotations", {}), e["exp_labels"])
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": alerts,
                "promql_expr_test": exprs,
            }
        )
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Binaries.locate().promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    path, rules = render_rules(tmp_path)
    return path, {r.get("alert") or r["record"]: r for r in rules}


def test_rules_pass_promtool_check(rendered: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    r = promtool("check", "rules", str(rendered[0]))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_rule_fires_and_stays_silent_as_it_should(
    tmp_path: Path, rendered: tuple[Path, dict[str, dict[str, Any]]]
) -> None:
    path, by_name = rendered
    fired, silent, recorded = set(), set(), set()
    for _, alerts, exprs in SCENARIOS.values():
        for a in alerts:
            (fired if a["exp_alerts"] else silent).add(a["alertname"])
        recorded |= {re.sub(r"^round\((.*), [0-9.]+\)$", r"\1", e["expr"]) for e in exprs if e["exp_samples"]}
    alerts = {n for n, r in by_name.items() if "alert" in r}
    records = set(by_name) - alerts
    # every alert has a scenario where it fires and one where it must not; every record a value
    assert alerts == fired == silent, (alerts, fired, silent)
    assert records <= recorded, records - recorded
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(promtool_tests(path, by_name), sort_keys=False))
    r = promtool("test", "rules", str(tests))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "SUCCESS" in r.stdout


def test_burn_rate_threshold_is_14_4_times_the_budget(tmp_path: Path) -> None:
    """The budget is 1 - objective as a float (Helm's integer `sub` made it 1: `> (14.4 * 1)`)."""
    for objective, pct in (("0.99", "14.4"), ("0.999", "1.44"), ("0.95", "72")):
        _, rules = render_rules(tmp_path, f"prometheusRule.sloBurn.objective={objective}")
        burn = next(r for r in rules if r.get("alert") == "EmberTTFTSLOBurn")
        assert f"> (14.4 * (1 - {objective}))" in burn["expr"], burn["expr"]
        assert f"More than {pct}% of requests" in burn["annotations"]["description"]
