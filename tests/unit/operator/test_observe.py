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


class RecordingPrometheus:
    """Our own seam: records what would be sent to Prometheus, answers an empty vector."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        self.sent.append(promql)
        return []


def observe_with(overrides: dict[str, str], allow: bool) -> tuple[object, list[str]]:
    spec = InferenceServiceSpec.model_validate(
        {"model": {"uri": "hf://o/m"}, "scaling": {"queries": overrides}}
    )
    prom = RecordingPrometheus()
    obs = asyncio.run(
        observe(
            prom,  # type: ignore[arg-type]
            spec,
            "team-a",
            "llm",
            now=0.0,
            current=1,
            ready=1,
            time_to_ready_s=1.0,
            start_path="cold",
            allow_overrides=allow,
        )
    )
    return obs, prom.sent


def test_a_promql_override_reading_another_namespace_is_not_run_unless_the_admin_allows_overrides() -> None:
    steal = {"qps": 'sum(rate(vllm:time_to_first_token_seconds_count{namespace="team-b"}[1m]))'}
    obs, sent = observe_with(steal, allow=False)
    assert sent == [] and obs.metrics_ok is False  # type: ignore[attr-defined]
    assert "not allowed" in obs.missing[0]  # type: ignore[attr-defined]
    _, sent = observe_with(steal, allow=True)
    assert steal["qps"] in sent  # the admin opted in: overrides are theirs to write
    obs, sent = observe_with({}, allow=False)  # no override: the default, scoped queries run
    assert sent and all('namespace="team-a",inferenceservice="llm"' in q for q in sent)
