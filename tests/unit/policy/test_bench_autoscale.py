"""The benchmark harness runs end to end on a short slice (CI exercises it; the full run is `make bench-autoscale`)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.autoscale.runner import DEFAULT_TRACE, main


def test_the_benchmark_runs_on_a_two_minute_slice(tmp_path: Path) -> None:
    trace = DEFAULT_TRACE if DEFAULT_TRACE.exists() else None
    if trace is None:  # a tiny trace of the same three columns
        trace = tmp_path / "t.csv"
        rows = [f"{i * 0.25:.2f},{800 + i % 7 * 100},{150}" for i in range(480)]
        trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    rc = main(["--trace", str(trace), "--duration", "120", "--rate-scale", "2", "--time-to-ready", "8",
               "--step", "4", "8", "--out", str(tmp_path), "--tag", "smoke"])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "smoke.results.json").read_text())
    names = [r["policy"] for r in res[0]["rows"]]
    assert names == ["oracle", "ember", "hpa+keda", "hpa+keda-cached", "hpa+keda-waiting", "knative-kpa",
                     "knative-kpa-delay"]  # fmt: skip
    assert (tmp_path / "smoke-ttr8.png").stat().st_size > 1000
    assert "| policy |" in (tmp_path / "smoke.results.md").read_text()
