"""Simulated replicas scraped by a REAL Prometheus through file_sd, queried over its HTTP API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ember_cluster.prometheus import Prometheus
from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, StaticMembership
from ember_sim.membership import PodView
from ember_sim.params import ReplicaParams
from ember_sim.records import Request
from ember_sim.trace import piecewise

pytestmark = pytest.mark.integration

# 1000-token prompts at 10k tokens/s: an unqueued TTFT is 0.1085 s and a collision with one other
# prefill adds at most 0.1 s, so at this light load every TTFT lies in vLLM's (0.1, 0.25] bucket
PARAMS = ReplicaParams(prefill_tokens_per_s=10_000.0)
TTFT_BUCKET = (0.1, 0.25)
LONG = 6  # requests that decode for minutes: `running` is at least this many all along
STREAM_RATE = 2.0


def load() -> list[Request]:
    long = [Request(f"long{i}", 0.2, 100, 50_000) for i in range(LONG)]
    stream = piecewise([(120.0, STREAM_RATE)], prompt_tokens=1000, output_tokens=20, start_s=0.5)
    return sorted(long + stream, key=lambda r: r.arrival_s)


def query(prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])


def eventually(fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        out = fn()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[LiveRunner, Prometheus]]:
    targets = tmp_path / "targets.json"
    runner = LiveRunner(
        Fleet(PARAMS), load(), StaticMembership.of(2), inferenceservice="chat", namespace="ns1",
        targets_path=targets, status_path=tmp_path / "status.json",
    )  # fmt: skip
    runner.start()  # writes the targets file before Prometheus first reads it
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    prom = Prometheus(tmp_path / "prom", file_sd={"vllm": [targets]}).start()
    try:
        yield runner, prom
    finally:
        prom.stop()
        stop.set()
        thread.join(5)
        runner.close()


def test_prometheus_reads_the_simulated_vllm_metrics_consistent_with_the_load(
    running: tuple[LiveRunner, Prometheus],
) -> None:
    runner, prom = running
    up = eventually(lambda: len(query(prom, 'up{job="vllm"} == 1')) == 2)
    assert up, "Prometheus did not discover both replicas from the file_sd targets"
    series = query(prom, "vllm:num_requests_running")
    assert {s["metric"]["pod"] for s in series} == {"sim-0", "sim-1"}
    assert all(
        s["metric"]["namespace"] == "ns1" and s["metric"]["inferenceservice"] == "chat" for s in series
    )
    assert all(
        s["metric"]["engine"] == "0" and s["metric"]["model_name"] == PARAMS.model_name for s in series
    )

    time.sleep(12.0)  # let ~25 stream requests through and several scrapes land
    p95_expr = "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[30s])))"
    prom_p95 = float(query(prom, p95_expr)[0]["value"][1])
    running_by_pod = {
        s["metric"]["pod"]: float(s["value"][1]) for s in query(prom, "vllm:num_requests_running")
    }
    prom_ttft_count = float(query(prom, "sum(vllm:time_to_first_token_seconds_count)")[0]["value"][1])
    with runner.lock:
        sim = runner.fleet.window_stats(max(0.0, runner.fleet.now_s - 30.0), runner.fleet.now_s).aggregate
        sim_ttft_count = sum(len(s.replica.ttft_s) for s in runner.fleet.slots.values())

    # the exact p95 and Prometheus's interpolated one fall in the same vLLM bucket
    assert sim.ttft_p95_s is not None and TTFT_BUCKET[0] < sim.ttft_p95_s <= TTFT_BUCKET[1]
    assert TTFT_BUCKET[0] < prom_p95 <= TTFT_BUCKET[1]
    # every TTFT the model produced is counted, give or take the requests since the last scrape
    assert sim_ttft_count - 3 * STREAM_RATE <= prom_ttft_count <= sim_ttft_count
    assert prom_ttft_count >= LONG + 15
    # the long requests split 3/3 by least-outstanding routing and decode throughout
    assert all(LONG // 2 <= v <= LONG // 2 + 3 for v in running_by_pod.values()), running_by_pod


def test_a_replica_added_later_is_discovered_and_scraped(running: tuple[LiveRunner, Prometheus]) -> None:
    runner, prom = running
    assert eventually(lambda: len(query(prom, 'up{job="vllm"} == 1')) == 2)
    assert isinstance(runner.membership, StaticMembership)
    with runner.lock:
        runner.membership.pods["sim-2"] = PodView("sim-2", ready=True, serving=True)
    found = eventually(lambda: query(prom, 'vllm:num_requests_running{pod="sim-2"}'), timeout_s=20)
    assert found, "the third replica never appeared in Prometheus"
    status = runner.status()
    assert status["submitted"] == status["completed"] + status["failed_total"] + status["in_flight"]
    assert status["failed_total"] == 0
