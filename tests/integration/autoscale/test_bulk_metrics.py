"""Metrics in bulk against a REAL Prometheus: two services (two namespaces) of simulated vLLM replicas
are scraped; at one evaluation instant, each service's slice of the bulk answer (7 queries for both)
equals the Observation its own 7 queries give (14 for both)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.observe.bulk import BulkQueries
from ember.observe.prometheus import observe, parse_vector
from ember_cluster.prometheus import Prometheus
from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, StaticMembership
from ember_sim.params import ReplicaParams
from ember_sim.records import Request
from ember_sim.trace import piecewise

from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

SERVICES = (("ns1", "chat", 2, 3.0), ("ns2", "code", 1, 1.0))  # namespace, name, replicas, req/s


def load(rate: float) -> list[Request]:
    long = [Request(f"long{i}", 0.2, 100, 50_000) for i in range(3)]  # keep `running` non-zero
    return sorted(long + piecewise([(300.0, rate)], prompt_tokens=500, output_tokens=20, start_s=0.5),
                  key=lambda r: r.arrival_s)  # fmt: skip


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    stop = threading.Event()
    runners, threads, files = [], [], []
    for ns, name, n, rate in SERVICES:
        targets = tmp_path / f"{name}.json"
        runner = LiveRunner(Fleet(ReplicaParams()), load(rate), StaticMembership.of(n), inferenceservice=name,
                            namespace=ns, targets_path=targets, status_path=tmp_path / f"{name}-status.json")  # fmt: skip
        runner.start()
        t = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        t.start()
        runners.append(runner)
        threads.append(t)
        files.append(targets)
    prom = Prometheus(tmp_path / "prom", file_sd={"vllm": files}).start()
    try:
        yield prom
    finally:
        prom.stop()
        stop.set()
        for t in threads:
            t.join(5)
        for r in runners:
            r.close()


class AtInstant:
    """The real Prometheus's HTTP API, every query evaluated at one instant `at` (so the two ways of
    asking see the same data), counting the queries."""

    def __init__(self, url: str, at: float) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=5)
        self.at, self.calls = at, 0

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        self.calls += 1
        r = await self.client.get("/api/v1/query", params={"query": promql, "time": f"{self.at:.3f}"})
        return parse_vector(r.json())


def test_each_services_slice_of_the_bulk_answer_equals_its_own_queries(prometheus: Prometheus) -> None:
    def scraped() -> bool:
        r = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": 'up{job="vllm"} == 1'}).json()
        return len(r["data"]["result"]) == 3

    assert eventually(scraped, 30), "Prometheus did not discover the three simulated replicas"
    time.sleep(15)  # several scrapes: rates and histogram quantiles have data
    spec = InferenceServiceSpec.model_validate(
        {"model": {"uri": "hf://o/m"}, "scaling": {"stableWindowSeconds": 10, "panicWindowSeconds": 6}}
    )
    at = time.time() - 1.0

    async def both() -> tuple[list[object], list[object], int, int]:
        own, shared = AtInstant(prometheus.url, at), AtInstant(prometheus.url, at)
        bulk = BulkQueries(shared.query)
        kw = {"now": 0.0, "current": 1, "ready": 1, "time_to_ready_s": 1.0, "start_path": "cold"}
        alone = [await observe(own, spec, ns, name, **kw) for ns, name, *_ in SERVICES]  # type: ignore[arg-type]
        sliced = [await observe(shared, spec, ns, name, bulk=bulk, max_age_s=60, **kw)  # type: ignore[arg-type]
                  for ns, name, *_ in SERVICES]  # fmt: skip
        return alone, sliced, own.calls, shared.calls

    alone, sliced, own_calls, shared_calls = asyncio.run(both())
    for (ns, name, n, _), a, s in zip(SERVICES, alone, sliced, strict=True):
        assert a.metrics_ok and a.qps and a.qps > 0, (ns, name, a)  # type: ignore[attr-defined]
        assert len(a.in_flight_by_pod) == n  # type: ignore[attr-defined]
        assert s == a, f"{ns}/{name}: bulk slice {s} != own queries {a}"
    assert alone[0].qps > alone[1].qps  # type: ignore[attr-defined]  # the slices are not swapped
    assert own_calls == 14 and shared_calls == 7
