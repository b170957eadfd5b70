"""The chart's Grafana dashboard against a REAL Prometheus: every expression, with Grafana's variables
substituted, is accepted by /api/v1/query (bad PromQL is a 400); the serving panels return the
simulated replicas' series (ember-sim, scraped through file_sd with the PodMonitor's `namespace`,
`pod` and `inferenceservice`); the start-phase panel the supervisor's own metrics; the GPU panels
join a DCGM exporter's series to the replicas' pods whether Prometheus honoured the exporter's
`pod`/`namespace` or moved them to `exported_pod`/`exported_namespace`.

Needs no cluster: Prometheus from ~/.cache/ember (`make cluster-binaries`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from ember_cluster.procs import free_port
from ember_cluster.prometheus import Prometheus
from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, StaticMembership
from ember_sim.params import ReplicaParams
from ember_sim.trace import piecewise
from ember_supervisor.metrics import SupervisorMetrics
from prometheus_client import start_http_server

from tests.integration.chart.conftest import CHART

pytestmark = pytest.mark.integration

NS, ISVC = "ns1", "chat"
# What Grafana puts in place of each variable: "All" of $ns and $isvc (their allValue), and a
# rate interval of four scrapes at least
VARIABLES = {"ns": ".*", "isvc": ".+", "__rate_interval": "15s", "__interval": "5s", "__range": "1m"}
PHASES = {"image_pull": 12.5, "restore": 3.25}

# A DCGM exporter under Kubernetes names the pod each GPU is given to as `pod`/`namespace`
# (`container` too); a GPU no pod holds has them empty. One scrape keeps them (honor_labels: true),
# the other has its own target labels win, so Prometheus moves the exporter's to `exported_*`.
GPU = 'gpu="{gpu}", UUID="GPU-{gpu}{node}", device="nvidia{gpu}", Hostname="{node}", modelName="NVIDIA H100 80GB HBM3"'
DCGM = {  # path -> (GPU, pod's namespace, pod, utilisation %)
    "/honoured": [("0", NS, "sim-0", 87.0), ("1", "other", "train-0", 99.0), ("2", "", "", 0.0)],
    "/exported": [("0", NS, "sim-1", 42.0), ("1", "", "", 0.0)],
}
EXPORTER_TARGET_LABELS = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x7k2p"}


def dcgm_text(path: str) -> str:
    node = "node-a" if path == "/honoured" else "node-b"
    out = []
    for metric, scale in (
        ("DCGM_FI_DEV_GPU_UTIL", 1.0),
        ("DCGM_FI_DEV_FB_USED", 800.0),
        ("DCGM_FI_DEV_POWER_USAGE", 7.0),
        ("DCGM_FI_DEV_GPU_TEMP", 0.5),
    ):
        out.append(f"# TYPE {metric} gauge")
        for gpu, ns, pod, util in DCGM[path]:
            labels = GPU.format(gpu=gpu, node=node) + f', container="{"engine" if pod else ""}"'
            labels += f', namespace="{ns}", pod="{pod}"'
            out.append(f"{metric}{{{labels}}} {util * scale}")
    return "\n".join(out) + "\n"


class _DCGMHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path not in DCGM:
            self.send_error(404)
            return
        body = dcgm_text(self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def substitute(expr: str) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)
    left = set(re.findall(r"\$\{?([a-zA-Z_]\w*)", out))
    assert not left, f"variables without a substitute: {left} in {expr}"
    return out


def panels() -> dict[str, dict[str, Any]]:
    """title -> panel, every row's (titles are unique across the dashboard)."""
    board = json.loads((CHART / "dashboards" / "ember.json").read_text())
    found = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["title"] for p in found}) == len(found)
    return {p["title"]: p for p in found}


def query(prom: Prometheus, expr: str) -> httpx.Response:
    return httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=10)


def result(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    resp = query(prom, expr)
    assert resp.status_code == 200, (expr, resp.text)
    return list(resp.json()["data"]["result"])


def eventually(prom: Prometheus, expr: str, timeout_s: float = 40.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        out = result(prom, expr)
        if out or time.monotonic() > deadline:
            return out
        time.sleep(1.0)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("dashboard")
    targets = tmp / "targets.json"
    load = piecewise([(600.0, 4.0)], prompt_tokens=800, output_tokens=30, start_s=0.2)
    runner = LiveRunner(
        Fleet(ReplicaParams()), load, StaticMembership.of(2), inferenceservice=ISVC, namespace=NS,
        targets_path=targets,
    )  # fmt: skip
    runner.start()  # writes the targets file before Prometheus first reads it
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    supervisor = SupervisorMetrics()  # sim-0's supervisor, as the PodMonitor's second endpoint sees it
    for phase, seconds in PHASES.items():
        supervisor.phase_seconds.labels(phase).set(seconds)
    sup_port, dcgm_port = free_port(), free_port()
    sup_server, _ = start_http_server(sup_port, addr="127.0.0.1", registry=supervisor.registry)
    dcgm = ThreadingHTTPServer(("127.0.0.1", dcgm_port), _DCGMHandler)
    threading.Thread(target=dcgm.serve_forever, daemon=True).start()
    replica_labels = {"namespace": NS, "pod": "sim-0", "inferenceservice": ISVC}
    scrape = [
        {"job_name": "supervisor", "static_configs": [{"targets": [f"127.0.0.1:{sup_port}"], "labels": replica_labels}]},
        *[
            {
                "job_name": f"dcgm{path.replace('/', '-')}",
                "metrics_path": path,
                "honor_labels": path == "/honoured",
                "static_configs": [{"targets": [f"127.0.0.1:{dcgm_port}"], "labels": EXPORTER_TARGET_LABELS}],
            }
            for path in DCGM
        ],
    ]  # fmt: skip
    p = Prometheus(tmp / "prom", file_sd={"vllm": [targets]}, scrape_configs=scrape).start()
    try:
        yield p
    finally:
        p.stop()
        dcgm.shutdown()
        sup_server.shutdown()
        stop.set()
        thread.join(5)
        runner.close()


def test_every_dashboard_expression_is_valid_promql(prom: Prometheus) -> None:
    exprs = [substitute(t["expr"]) for p in panels().values() for t in p["targets"]]
    assert len(exprs) > 20
    bad = {}
    for e in exprs:
        resp = query(prom, e)
        if resp.status_code != 200 or resp.json().get("status") != "success":
            bad[e] = resp.text
    assert not bad, bad
    # and the check does catch a bad one
    assert query(prom, substitute('sum by (pod (up{namespace=~"$ns"})')).status_code == 400


SERVING = (
    "TTFT p50 / p99",
    "Inter-token latency p50 / p99",
    "Requests finished per second",
    "Tokens per second: prefill (prompt) and decode (generation)",
    "Prefix-cache hit rate (tokens)",
)


def test_serving_panels_return_the_simulated_replicas_series(prom: Prometheus) -> None:
    by_title = panels()
    for title in SERVING:
        for t in by_title[title]["targets"]:
            series = eventually(prom, substitute(t["expr"]))
            assert [(s["metric"]["namespace"], s["metric"]["inferenceservice"]) for s in series] == [
                (NS, ISVC)
            ], (
                title,
                series,
            )
        for t in by_title[f"{title}, per replica"]["targets"]:
            series = eventually(prom, substitute(t["expr"]))
            # both replicas, each once (eventually: the second may be a scrape behind the first)
            deadline = time.monotonic() + 20
            while len(series) < 2 and time.monotonic() < deadline:
                time.sleep(1.0)
                series = result(prom, substitute(t["expr"]))
            assert sorted(s["metric"]["pod"] for s in series) == ["sim-0", "sim-1"], (title, series)
    tokens = by_title["Tokens per second: prefill (prompt) and decode (generation)"]["targets"]
    assert all(float(eventually(prom, substitute(t["expr"]))[0]["value"][1]) > 0 for t in tokens)
    hit_rate = by_title["Prefix-cache hit rate (tokens)"]["targets"][0]
    assert float(result(prom, substitute(hit_rate["expr"]))[0]["value"][1]) == 0.0  # the sim caches nothing


def test_start_phase_panel_shows_each_replicas_phases(prom: Prometheus) -> None:
    target = panels()["Start time by phase, per replica (last start)"]["targets"][0]
    series = eventually(prom, substitute(target["expr"]))
    got = {(s["metric"]["pod"], s["metric"]["phase"]): float(s["value"][1]) for s in series}
    assert got == {("sim-0", phase): seconds for phase, seconds in PHASES.items()}


@pytest.mark.parametrize(
    ("title", "scale"),
    [("GPU utilisation", 1.0), ("GPU memory used", 800.0), ("GPU power", 7.0), ("GPU temperature", 0.5)],
)
def test_gpu_panels_join_dcgm_to_the_replica_pods_under_either_label_spelling(
    prom: Prometheus, title: str, scale: float
) -> None:
    expr = substitute(panels()[title]["targets"][0]["expr"])
    deadline = time.monotonic() + 40
    while True:
        series = result(prom, expr)
        if len(series) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    got = {
        (s["metric"]["namespace"], s["metric"]["pod"], s["metric"]["inferenceservice"]): float(s["value"][1])
        for s in series
    }
    # sim-0's GPU was scraped with the exporter's labels honoured, sim-1's with them moved to
    # exported_*; train-0 is not an Ember replica and the idle GPUs belong to no pod: neither shows
    assert got == {(NS, "sim-0", ISVC): 87.0 * scale, (NS, "sim-1", ISVC): 42.0 * scale}, series
    assert len(series) == 2
