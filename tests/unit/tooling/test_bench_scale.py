"""bench/scale's own arithmetic: what it counts as converged, how it reads counters and /proc."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from bench.common import PodWatch, cpu_s, pct, record, rss_mib  # noqa: E402
from bench.scale.__main__ import FLOWS, flow_manifests, not_converged, parse_counters, rates  # noqa: E402


def isvc(name: str, want: int, **status: Any) -> dict[str, Any]:
    st = {"observedGeneration": 2, "replicas": want, "readyReplicas": want, "desiredReplicas": want,
          "conditions": [{"type": "Synced", "status": "True"}], **status}  # fmt: skip
    return {
        "metadata": {"name": name, "generation": 2},
        "spec": {"scaling": {"minReplicas": want}},
        "status": st,
    }


def watch_with(pods: dict[str, bool]) -> PodWatch:
    pw = PodWatch(core=None, ns="bench")
    pw.live.update(pods)
    return pw


def test_converged_needs_current_status_and_every_wanted_pod_ready() -> None:
    pw = watch_with({"s1-0": True, "s1-1": True, "s10-0": True, "s10-1": True})
    assert not_converged([isvc("s1", 2), isvc("s10", 2)], pw) == []
    assert not_converged([isvc("s1", 2, observedGeneration=1)], pw) == ["s1"]  # the spec change unseen
    assert not_converged([isvc("s1", 2, conditions=[{"type": "Synced", "status": "False"}])], pw) == ["s1"]
    assert not_converged([isvc("s1", 3)], pw) == ["s1"]  # a pod short
    pw.live["s1-1"] = False
    assert not_converged([isvc("s1", 2)], pw) == ["s1"]  # one not Ready


def test_pod_watch_tracks_deletion_and_readiness() -> None:
    pw = PodWatch(core=None, ns="bench")
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    pw._observe("ADDED", {"metadata": {"name": "s1-0"}}, 1.0)
    pw._observe("MODIFIED", {"metadata": {"name": "s1-0"}, **ready}, 2.0)
    assert pw.seen == {"s1-0": 1.0} and pw.ready == {"s1-0": 2.0} and pw.live == {"s1-0": True}
    pw._observe("MODIFIED", {"metadata": {"name": "s1-0", "deletionTimestamp": "x"}, **ready}, 3.0)
    assert pw.live == {} and pw.last_change == 3.0
    pw._observe("DELETED", {"metadata": {"name": "s1-0"}}, 4.0)
    assert pw.deleted == {"s1-0": 4.0}


def test_flow_schemas_match_only_the_operator_and_in_order() -> None:
    fs = [m for m in flow_manifests() if m["kind"] == "FlowSchema"]
    assert [m["metadata"]["name"] for m in fs] == [f"ember-bench-{n}" for n, _, _ in FLOWS]
    precedences = [m["spec"]["matchingPrecedence"] for m in fs]
    assert precedences == sorted(precedences)
    for m in fs:
        assert [s["user"]["name"] for r in m["spec"]["rules"] for s in r["subjects"]] == ["ember-operator"]


def test_counters_and_rates() -> None:
    text = (
        "# TYPE apiserver_flowcontrol_dispatched_requests_total counter\n"
        'apiserver_flowcontrol_dispatched_requests_total{flow_schema="ember-bench-reads",priority_level="workload-low"} 10\n'
        'apiserver_flowcontrol_dispatched_requests_total{flow_schema="exempt",priority_level="exempt"} 99\n'
    )
    assert parse_counters(text, "apiserver_flowcontrol_dispatched_requests_total", "flow_schema") == {
        "ember-bench-reads": 10.0,
        "exempt": 99.0,
    }
    a = {n: 0.0 for n, _, _ in FLOWS} | {"prometheus_queries": 0.0, "t": 0.0}
    b = {n: 10.0 for n, _, _ in FLOWS} | {"prometheus_queries": 7.0, "t": 5.0}
    r = rates(a, b)
    assert r["api_total"] == 2.0 * len(FLOWS) and r["prometheus_queries"] == 1.4 and r["seconds"] == 5.0


def test_proc_readers_and_percentile(tmp_path: Path) -> None:
    assert rss_mib(os.getpid()) > 1
    c0 = cpu_s(os.getpid())
    t = time.process_time()
    while time.process_time() - t < 0.05:
        pass
    assert cpu_s(os.getpid()) >= c0
    assert pct([3.0, 1.0, 2.0], 0.5) == 2.0 and pct([1.0, 2.0], 0.99) == 2.0
    out = tmp_path / "b.json"
    out.write_text('{"other": 1}')
    record("scale", [{"name": "x"}], out)
    assert '"other": 1' in out.read_text() and '"scale"' in out.read_text()
