"""The per-replica /metrics endpoint speaks vLLM's metric names, labels and buckets."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from ember_sim.exporter import ITL_BUCKETS_S, TTFT_BUCKETS_S, CumulativeHistogram, ReplicaExporter
from ember_sim.fleet import Fleet
from ember_sim.trace import piecewise
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def scraped() -> Iterator[tuple[Fleet, dict[str, dict[tuple[tuple[str, str], ...], float]]]]:
    fleet = Fleet()
    fleet.add_replica("a", 0.0)
    for r in piecewise([(20.0, 4.0)], prompt_tokens=800, output_tokens=60, poisson=True, seed=9):
        fleet.submit(r)
    fleet.advance(20.0)
    exp = ReplicaExporter(fleet.slots["a"].replica, threading.Lock(), lambda: fleet.now_s).start()
    try:
        # ask for OpenMetrics as Prometheus does: the answer must still keep the `vllm:` names
        headers = {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
        text = httpx.get(f"http://127.0.0.1:{exp.port}/metrics", headers=headers, timeout=5).text
    finally:
        exp.stop()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    yield fleet, samples


def one(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    (value,) = samples[name].values()
    return value


def test_every_vllm_series_the_operator_queries_is_exposed_with_vllm_labels(scraped: tuple) -> None:
    _, samples = scraped
    for name in (
        "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
        "vllm:time_per_output_token_seconds_bucket", "vllm:e2e_request_latency_seconds_count",
    ):  # fmt: skip
        assert name in samples, name
        for labels in samples[name]:
            assert (
                dict(labels)["engine"] == "0"
                and dict(labels)["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
            )
    reasons = {dict(k)["finished_reason"] for k in samples["vllm:request_success_total"]}
    assert reasons == {"stop", "length", "abort"}


def test_histograms_use_vllms_buckets(scraped: tuple) -> None:
    _, samples = scraped
    ttft_le = sorted(float(dict(k)["le"]) for k in samples["vllm:time_to_first_token_seconds_bucket"])
    itl_le = sorted(float(dict(k)["le"]) for k in samples["vllm:inter_token_latency_seconds_bucket"])
    assert ttft_le == [*TTFT_BUCKETS_S, float("inf")]
    assert itl_le == [*ITL_BUCKETS_S, float("inf")]
    assert len(TTFT_BUCKETS_S) == 22 and len(ITL_BUCKETS_S) == 19


def test_counters_and_histograms_agree_with_the_model(scraped: tuple) -> None:
    fleet, samples = scraped
    rep = fleet.slots["a"].replica
    done = [r for r in rep.records if r.ok]
    assert one(samples, "vllm:time_to_first_token_seconds_count") == len(rep.ttft_s)
    assert one(samples, "vllm:time_to_first_token_seconds_sum") == pytest.approx(sum(rep.ttft_s))
    assert one(samples, "vllm:generation_tokens_total") == rep.generation_tokens_total
    assert one(samples, "vllm:prompt_tokens_total") == rep.prompt_tokens_total
    # every token after a request's first is one inter-token gap
    assert one(samples, "vllm:inter_token_latency_seconds_count") == rep.generation_tokens_total - len(
        rep.ttft_s
    )
    stop = [
        v for k, v in samples["vllm:request_success_total"].items() if dict(k)["finished_reason"] == "stop"
    ]
    assert stop == [len(done)]
    g = rep.gauges(fleet.now_s)
    assert one(samples, "vllm:num_requests_running") == g.running
    assert one(samples, "vllm:kv_cache_usage_perc") == pytest.approx(g.kv_usage)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    h = CumulativeHistogram((0.1, 0.25))
    h.observe(0.1)
    h.observe(0.2, weight=3)
    h.observe(9.0)
    assert h.counts == [1, 3, 1]
    assert h.total == pytest.approx(0.1 + 0.6 + 9.0)
