"""`make demo` in its short mode: it must scale up under the replayed trace, back down after it, lose no
request, bring the service at zero back through the activator with every held request answered, and
write its plot and record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ember_cluster.procs import free_port

ROOT = Path(__file__).resolve().parents[3]


def run_demo(wd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ember_demo",
            "--duration-s",
            "450",
            "--speed",
            "10",
            "--cooldown-s",
            "75",
            "--workdir",
            str(wd),
            "--prometheus-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )


def test_demo_short_mode_scales_up_and_back_down_writes_the_plot_and_runs_again(tmp_path: Path) -> None:
    wd = tmp_path / "demo"
    r = run_demo(wd)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((wd / "demo.json").read_text())["summary"]
    assert summary["max_desired"] >= 2, summary
    assert summary["final_desired"] == 1, summary
    assert summary["requests_completed"] > 200 and summary["requests_failed"] == 0, summary
    # scene 2: at zero behind the activator, the burst held, the demand pushed, every request answered
    assert summary["from_zero_route_before"] == "activator", summary
    assert summary["from_zero_answered"] == summary["from_zero_requests"] == 6, summary
    assert summary["from_zero_max_held"] >= 1 and summary["from_zero_start_path"] != "-", summary
    assert (wd / "demo.png").stat().st_size > 10_000
    assert "Summary" in r.stdout and str(wd / "demo.png") in r.stdout.replace("\n", "")
    # `make demo` again in the same place: the second run failed at once on the first's cluster state
    # ("namespaces demo already exists") before each run started from an empty cluster
    again = run_demo(wd)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = json.loads((wd / "demo.json").read_text())["summary"]
    assert second["requests_failed"] == 0 and second["from_zero_failed"] == 0, second
