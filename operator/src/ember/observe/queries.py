"""PromQL for one InferenceService over its replicas' vLLM metrics (pure string building).

Series are selected by the labels `namespace` and `inferenceservice` (the chart's PodMonitor and the
simulator's file_sd targets attach them; see docs). `$selector` and `$window` in the defaults and in
`spec.scaling.queries` overrides are substituted here.

Arrival rate is the rate of first tokens (`vllm:time_to_first_token_seconds_count`): it counts
requests as the engine admits them, closer to arrivals than completions; a backlog shows up in
`vllm:num_requests_waiting`, which the policy reads separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.api.v1alpha1 import MetricQueries

DEFAULTS = {
    "qps": "sum(rate(vllm:time_to_first_token_seconds_count{$selector}[$window]))",
    "ttft_p95": "histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{$selector}[$window])))",
    "itl_p95": "histogram_quantile(0.95, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{$selector}[$window])))",
    "running": "sum by (pod) (vllm:num_requests_running{$selector})",
    "waiting": "sum by (pod) (vllm:num_requests_waiting{$selector})",
    "kv_cache": "avg by (pod) (vllm:kv_cache_usage_perc{$selector})",
}
PER_POD = ("running", "waiting", "kv_cache")
PANIC_KEY = "qps_panic"  # the qps query over the panic window
# the same aggregations for every service at once (observe/bulk.py): grouped by the service's labels too
BULK = {
    "qps": "sum by (namespace, inferenceservice) (rate(vllm:time_to_first_token_seconds_count{$selector}[$window]))",
    "ttft_p95": "histogram_quantile(0.95, sum by (namespace, inferenceservice, le) (rate(vllm:time_to_first_token_seconds_bucket{$selector}[$window])))",
    "itl_p95": "histogram_quantile(0.95, sum by (namespace, inferenceservice, le) (rate(vllm:inter_token_latency_seconds_bucket{$selector}[$window])))",
    "running": "sum by (namespace, inferenceservice, pod) (vllm:num_requests_running{$selector})",
    "waiting": "sum by (namespace, inferenceservice, pod) (vllm:num_requests_waiting{$selector})",
    "kv_cache": "avg by (namespace, inferenceservice, pod) (vllm:kv_cache_usage_perc{$selector})",
}

# the supervisors' start measurements (observe/starts.py, policy/startpath.fold), per pod, from instant
# values only: the path counter's current value (a counter that first appears at 1 is invisible to
# increase()) and gauges. Grouped like BULK; a service's own form has its own selector.
STARTS = {
    "start_path": "max by (namespace, inferenceservice, pod, path) (ember_supervisor_start_path_total{$selector}) > 0",
    "start_seconds": 'max by (namespace, inferenceservice, pod) (ember_supervisor_start_phase_seconds{$selector,phase="total"})',
    "wake_seconds": "max by (namespace, inferenceservice, pod) (ember_supervisor_last_wake_seconds{$selector})",
    "wake_at": "max by (namespace, inferenceservice, pod) (ember_supervisor_last_wake_timestamp_seconds{$selector})",
}


def service_selector(namespace: str, name: str) -> str:
    return f'namespace="{namespace}",inferenceservice="{name}"'


def start_queries(selector: str) -> dict[str, str]:
    """STARTS for `selector` (a service's own, or the bulk one of observe/bulk.py)."""
    return {k: q.replace("$selector", selector) for k, q in STARTS.items()}


@dataclass(frozen=True)
class QuerySet:
    queries: dict[str, str]  # name -> PromQL, ready to run
    panic_qps: str


def render(namespace: str, name: str, overrides: MetricQueries, stable_s: int, panic_s: int) -> QuerySet:
    selector = service_selector(namespace, name)
    given = overrides.model_dump()
    out = {}
    for key, default in DEFAULTS.items():
        q = given.get(key) or default
        out[key] = q.replace("$selector", selector).replace("$window", f"{stable_s}s")
    qps = (
        (given.get("qps") or DEFAULTS["qps"]).replace("$selector", selector).replace("$window", f"{panic_s}s")
    )
    return QuerySet(out, qps)
