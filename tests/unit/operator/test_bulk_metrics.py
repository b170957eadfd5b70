"""Metrics in bulk (observe/bulk.py): one set of queries per interval for every service, each service's
slice equal to what its own queries return, errors shared, overrides still per service."""

from __future__ import annotations

import asyncio
import dataclasses

from ember.api.v1alpha1 import InferenceServiceSpec
from ember.observe.bulk import BulkQueries, bulk_queries, slice_answers
from ember.observe.prometheus import MetricsError, observe
from ember.policy.observation import Observation

Sample = tuple[dict[str, str], float]
METRIC = {  # metric name in the query -> the query name and its value for (service, pod)
    "vllm:time_to_first_token_seconds_count": "qps",
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache",
}
# a small "Prometheus": per (namespace, service) the series of each pod
SERIES = {
    ("ns1", "chat"): {"chat-0": 1.0, "chat-1": 3.0},
    ("ns2", "code"): {"code-0": 5.0},
}


class Grouping:
    """Our seam: answers the per-service and the bulk forms of the queries from SERIES, counting calls."""

    def __init__(self, error: MetricsError | None = None) -> None:
        self.calls: list[str] = []
        self.error = error

    async def query(self, promql: str) -> list[Sample]:
        self.calls.append(promql)
        await asyncio.sleep(0)  # let concurrent callers interleave
        if self.error is not None:
            raise self.error
        bulk = 'inferenceservice!=""' in promql
        metric = next((m for m in METRIC if m in promql), None)
        if metric is None:
            return []
        out: list[Sample] = []
        for (ns, svc), pods in SERIES.items():
            if not bulk and f'namespace="{ns}",inferenceservice="{svc}"' not in promql:
                continue
            group = {"namespace": ns, "inferenceservice": svc} if bulk else {}
            if "by (pod)" in promql or "inferenceservice, pod)" in promql:
                out += [({**group, "pod": p}, v) for p, v in pods.items()]
            else:
                out.append((group, sum(pods.values())))
        return out


def spec(**scaling: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}, "scaling": scaling})


def observed(prom: Grouping, ns: str, name: str, bulk: BulkQueries | None, s: InferenceServiceSpec | None = None,
             allow: bool = False) -> Observation:  # fmt: skip
    return asyncio.run(
        observe(
            prom,  # type: ignore[arg-type]
            s or spec(),
            ns,
            name,
            now=0.0,
            current=2,
            ready=2,
            time_to_ready_s=1.0,
            start_path="cold",
            allow_overrides=allow,
            bulk=bulk,
            max_age_s=5.0,
        )
    )


def test_each_services_slice_equals_its_own_queries() -> None:
    prom = Grouping()
    bulk = BulkQueries(prom.query, clock=lambda: 100.0)
    for ns, name in SERIES:
        alone = observed(Grouping(), ns, name, None)
        shared = observed(prom, ns, name, bulk)
        assert shared == alone
        assert shared.in_flight_by_pod == {p: 2 * v for p, v in SERIES[(ns, name)].items()}
    assert bulk.fetches == 1 and len(prom.calls) == len(bulk_queries(60, 6))


def test_queries_per_interval_do_not_grow_with_the_number_of_services() -> None:
    prom = Grouping()
    t = [0.0]
    bulk = BulkQueries(prom.query, clock=lambda: t[0])

    async def interval(n: int) -> None:
        await asyncio.gather(*(bulk.service("ns1", f"svc{i}", 60, 6, max_age_s=5.0) for i in range(n)))

    asyncio.run(interval(500))  # 500 concurrent callers share one fetch in flight
    assert len(prom.calls) == 7
    t[0] = 4.9
    asyncio.run(interval(500))
    assert len(prom.calls) == 7  # still within the interval
    t[0] = 5.0
    asyncio.run(interval(500))
    assert len(prom.calls) == 14  # one more set for the next interval


def test_a_service_without_series_reads_empty_not_another_services_numbers() -> None:
    got = observed(Grouping(), "ns1", "absent", BulkQueries(Grouping().query))
    assert got.metrics_ok is False and got.unavailable == "NoData" and got.qps is None


def test_an_outage_is_one_failed_fetch_shared_by_every_service() -> None:
    prom = Grouping(error=MetricsError("prometheus unreachable: ConnectError", "PrometheusUnreachable"))
    bulk = BulkQueries(prom.query, clock=lambda: 0.0)
    for ns, name in SERIES:
        got = observed(prom, ns, name, bulk)
        assert got.metrics_ok is False and got.unavailable == "PrometheusUnreachable"
    assert len(prom.calls) == 7


def test_a_permitted_override_is_queried_for_its_service_the_rest_comes_from_the_bulk_answer() -> None:
    prom = Grouping()
    bulk = BulkQueries(prom.query, clock=lambda: 0.0)
    s = spec(queries={"running": 'sum by (pod) (vllm:num_requests_running{$selector,engine="0"})'})
    got = observed(prom, "ns1", "chat", bulk, s, allow=True)
    own = [q for q in prom.calls if 'inferenceservice="chat"' in q]
    assert len(own) == 1 and 'engine="0"' in own[0]
    assert got.qps == 4.0 and got.running == 4.0 and got.metrics_ok


def test_the_bulk_selector_is_limited_to_the_watched_namespaces() -> None:
    qs = bulk_queries(60, 6, namespaces=["team-a", "b"])
    assert all('namespace=~"team-a|b"' in q for q in qs.values())
    assert all('inferenceservice!=""' in q and "by (namespace, inferenceservice" in q for q in qs.values())
    assert qs["qps_panic"].endswith("[6s]))") and qs["qps"].endswith("[60s]))")


def test_slices_lose_only_the_group_labels() -> None:
    got = slice_answers({"running": [({"namespace": "a", "inferenceservice": "x", "pod": "x-0"}, 2.0)],
                         "qps": [({"namespace": "a", "inferenceservice": "x"}, 1.0)]})  # fmt: skip
    assert got == {("a", "x"): {"running": [({"pod": "x-0"}, 2.0)], "qps": [({}, 1.0)]}}
    assert dataclasses.is_dataclass(BulkQueries)
