"""Parsing Prometheus answers: unknown is never zero; MetricsAvailable says why data is missing."""

from __future__ import annotations

import asyncio

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec, MetricQueries
from ember.observe.prometheus import MetricsError, observe, parse_vector, scalar
from ember.observe.queries import render
from ember.policy.observation import Observation
from ember.policy.status import metrics_condition


def vec(*values: tuple[dict[str, str], str]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [0, v]} for m, v in values]},
    }


def test_empty_result_is_unknown_not_zero() -> None:
    assert scalar(parse_vector(vec())) is None


def test_nan_from_histogram_quantile_without_traffic_is_dropped() -> None:
    assert parse_vector(vec(({}, "NaN"))) == []


def test_per_pod_values_keep_their_labels() -> None:
    got = parse_vector(vec(({"pod": "a"}, "2"), ({"pod": "b"}, "3.5")))
    assert got == [({"pod": "a"}, 2.0), ({"pod": "b"}, 3.5)]
    assert scalar(got) == 5.5


def test_error_answer_raises() -> None:
    with pytest.raises(MetricsError, match="bad_data"):
        parse_vector({"status": "error", "errorType": "bad_data", "error": "parse error"})


def test_queries_substitute_selector_and_windows_and_honour_overrides() -> None:
    qs = render("ns", "chat", MetricQueries(qps="sum(rate(my_requests_total{$selector}[$window]))"), 60, 6)
    assert qs.queries["qps"] == 'sum(rate(my_requests_total{namespace="ns",inferenceservice="chat"}[60s]))'
    assert qs.panic_qps.endswith("[6s]))")
    assert 'inferenceservice="chat"' in qs.queries["ttft_p95"] and "[60s]" in qs.queries["ttft_p95"]


class FakeProm:
    """Our seam: answers each query with the series named in `has` (by query prefix), or fails."""

    def __init__(self, has: tuple[str, ...] = (), error: MetricsError | None = None) -> None:
        self.has, self.error = has, error

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        if self.error is not None:
            raise self.error
        metric = {
            "vllm:time_to_first_token_seconds_count": "qps",
            "vllm:num_requests_running": "running",
            "vllm:num_requests_waiting": "waiting",
        }
        return [({"pod": "llm-0"}, 1.0) for m, k in metric.items() if m in promql and k in self.has]


def observed(prom: FakeProm, current: int = 2, ready: int = 2) -> Observation:
    spec = InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}})
    return asyncio.run(
        observe(
            prom,  # type: ignore[arg-type]
            spec,
            "ns",
            "llm",
            now=0.0,
            current=current,
            ready=ready,
            time_to_ready_s=1.0,
            start_path="cold",
        )
    )


@pytest.mark.parametrize(
    ("prom", "current", "ready", "desired", "expect"),
    [
        pytest.param(FakeProm(("qps", "running", "waiting")), 2, 2, 2, (True, "MetricsFresh"), id="fresh"),
        pytest.param(
            FakeProm(error=MetricsError("refused", "PrometheusUnreachable")),
            2,
            2,
            2,
            (False, "PrometheusUnreachable"),
            id="prometheus-down",
        ),
        pytest.param(FakeProm(error=MetricsError("503")), 2, 2, 2, (False, "PrometheusError"), id="error"),
        pytest.param(FakeProm(), 2, 2, 2, (False, "NoData"), id="answered-with-nothing-for-this-service"),
        pytest.param(FakeProm(("running", "waiting")), 2, 2, 2, (False, "PartialData"), id="no-rate-yet"),
        pytest.param(FakeProm(), 0, 0, 0, (False, "ScaledToZero"), id="zero-on-purpose-is-not-broken"),
        pytest.param(FakeProm(), 0, 0, 2, (False, "NoReadyReplicas"), id="zero-but-wanted"),
        pytest.param(FakeProm(), 2, 0, 2, (False, "NoReadyReplicas"), id="all-starting"),
    ],
)
def test_metrics_available_says_why_not(
    prom: FakeProm, current: int, ready: int, desired: int, expect: tuple[bool, str]
) -> None:
    obs = observed(prom, current, ready)
    ok, reason, message = metrics_condition(obs, desired)
    assert (ok, reason) == expect
    assert obs.metrics_ok is ok, "the condition and the policy agree on what is usable"
    if reason == "NoData":
        assert "inferenceservice" in message and "qps" in message
