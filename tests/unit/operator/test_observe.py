"""Parsing Prometheus answers: unknown is never zero."""

from __future__ import annotations

import pytest
from ember.api.v1alpha1 import MetricQueries
from ember.observe.prometheus import MetricsError, parse_vector, scalar
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
