"""Parsing Prometheus answers: unknown is never zero."""

from __future__ import annotations

import asyncio

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec, MetricQueries
from ember.observe.prometheus import MetricsError, observe, parse_vector, scalar
from ember.observe.queries import render


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
