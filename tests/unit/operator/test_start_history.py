"""Measured start times end to end at our own seams: the supervisors' per-pod series (a fake
Prometheus answering the operator's queries) -> observe/starts.py -> the autoscaler's pass, which
folds them into status.startHistory and plans with their median (status.lastDecision, which the
activator's Retry-After and activation ETA read). Before this every ETA was a default."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus
from ember.config import Settings
from ember.handlers.autoscale import autoscale_step
from ember.handlers.context import OperatorContext
from ember.handlers.replicas import start_choice
from ember.observe.bulk import BulkQueries, bulk_start_queries
from ember.observe.prometheus import MetricsError
from ember.observe.starts import measure, measurements
from ember.policy.startpath import Measured
from ember.telemetry.metrics import Metrics

Sample = tuple[dict[str, str], float]
CREATED = "2026-12-03T10:00:00Z"
CREATED_S = datetime(2026, 12, 3, 10, tzinfo=UTC).timestamp()
NO_PODS: dict[str, float] = {}


def pod(name: str, created: str = CREATED) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created}, "status": {}}


class FakeProm:
    """Answers the start queries (queries.STARTS, bulk or per service) from per-service series:
    {(ns, svc): {pod: {"path": "cold", "total": 42.0, "wake": 0.4, "wake_at": 1e9}}}."""

    def __init__(self, series: dict[tuple[str, str], dict[str, dict[str, Any]]]) -> None:
        self.series, self.calls, self.down = series, [], False  # type: ignore[var-annotated]

    async def query(self, promql: str) -> list[Sample]:
        self.calls.append(promql)
        await asyncio.sleep(0)
        if self.down:
            raise MetricsError("prometheus unreachable: ConnectError", "PrometheusUnreachable")
        out: list[Sample] = []
        for (ns, svc), pods in self.series.items():
            if (
                'inferenceservice!=""' not in promql
                and f'namespace="{ns}",inferenceservice="{svc}"' not in promql
            ):
                continue
            g = {"namespace": ns, "inferenceservice": svc}
            for p, m in pods.items():
                if "ember_supervisor_start_path_total" in promql and "path" in m:
                    out.append(({**g, "pod": p, "path": m["path"]}, 1.0))
                elif "ember_supervisor_start_phase_seconds" in promql and "total" in m:
                    out.append(({**g, "pod": p}, m["total"]))
                elif "ember_supervisor_last_wake_seconds" in promql and "wake" in m:
                    out.append(({**g, "pod": p}, m["wake"]))
                elif "ember_supervisor_last_wake_timestamp_seconds" in promql and "wake_at" in m:
                    out.append(({**g, "pod": p}, m["wake_at"]))
        return out


# ------------------------------------------------------------------ pairing the series by pod


def test_a_pods_path_and_total_make_one_start_at_its_creation_and_half_pairs_wait() -> None:
    got = {
        "start_path": [({"pod": "a", "path": "cold"}, 1.0), ({"pod": "b", "path": "restore"}, 1.0),
                       ({"pod": "c", "path": "cold"}, 1.0),  # no total yet: the scrape fell between
                       ({"pod": "d", "path": "cold"}, 1.0), ({"pod": "d", "path": "restore"}, 1.0),
                       ({"pod": "e", "path": "cold"}, 1.0)],
        "start_seconds": [({"pod": "a"}, 80.0), ({"pod": "b"}, 9.0), ({"pod": "d"}, 5.0),
                          ({"pod": "e"}, 7.0), ({"pod": "f"}, 3.0)],  # f: no path yet
        "wake_seconds": [({"pod": "a"}, 0.4), ({"pod": "b"}, 0.7)],
        "wake_at": [({"pod": "a"}, 1000.25)],  # b: its wake's end not scraped yet
    }  # fmt: skip
    created = {"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0, "f": 15.0}  # e: not listed (deleted)
    assert measurements(got, created) == [
        Measured("a", "cold", 80.0, 10.0),
        Measured("b", "restore", 9.0, 11.0),
        Measured("a", "wake", 0.4, 1000.25),
    ]


def test_bulk_start_measurements_are_one_fetch_for_every_service() -> None:
    prom = FakeProm({("ns1", "chat"): {"chat-0": {"path": "cold", "total": 50.0}},
                     ("ns2", "code"): {"code-0": {"path": "restore", "total": 6.0}}})  # fmt: skip
    bulk = BulkQueries(prom.query, namespaces=("ns1", "ns2"))

    async def both() -> list[list[Measured] | None]:
        return list(await asyncio.gather(
            measure(prom, "ns1", "chat", {"chat-0": 1.0}, bulk=bulk, max_age_s=5.0),
            measure(prom, "ns2", "code", {"code-0": 2.0}, bulk=bulk, max_age_s=5.0),
            measure(prom, "ns3", "none", NO_PODS, bulk=bulk, max_age_s=5.0),
        ))  # fmt: skip

    chat, code, none = asyncio.run(both())
    assert chat == [Measured("chat-0", "cold", 50.0, 1.0)] and code == [
        Measured("code-0", "restore", 6.0, 2.0)
    ]
    assert none == []
    assert bulk.start_fetches == 1 and len(prom.calls) == len(bulk_start_queries())
    assert all('namespace=~"ns1|ns2"' in q for q in prom.calls)
    # without bulk: the service's own queries, the same answer
    own = asyncio.run(measure(prom, "ns1", "chat", {"chat-0": 1.0}))
    assert own == chat


def test_prometheus_down_or_absent_is_no_measurement() -> None:
    prom = FakeProm({})
    prom.down = True
    assert asyncio.run(measure(prom, "ns", "llm", NO_PODS)) is None
    assert asyncio.run(measure(prom, "ns", "llm", NO_PODS, bulk=BulkQueries(prom.query), max_age_s=5)) is None
    assert asyncio.run(measure(None, "ns", "llm", NO_PODS)) is None


# ------------------------------------------------------------------ the autoscaler's pass


class FakeAPI:
    def __init__(self) -> None:
        self.applied: list[tuple[str, dict[str, Any]]] = []

    def apply_status(self, ns: str, name: str, owned: dict[str, Any], manager: str) -> None:
        self.applied.append((manager, owned))


def isvc(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "llm", "uid": "u-1", "generation": 1},
        "spec": {"model": {"uri": "hf://o/m"}, "scaling": {"minReplicas": 1}},
        "status": status,
    }


def step(ctx: OperatorContext, status: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """One autoscaler pass; returns the status as the API server then has it (the owned fields merged)."""
    ctx.last_decision.clear()
    api: FakeAPI = ctx.api  # type: ignore[assignment]
    api.applied.clear()
    asyncio.run(autoscale_step(ctx, isvc(status), pods, lambda *a: None))
    out = dict(status)
    for manager, owned in api.applied:
        assert manager == "ember-autoscaler"
        out.update(owned)
    return out


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "per-service"])
def test_after_a_replicas_start_the_status_carries_its_time_and_the_next_eta_is_it(bulk: bool) -> None:
    prom = FakeProm({("ns", "llm"): {"llm-0": {"path": "cold", "total": 42.0}}})
    ctx = OperatorContext(Settings(), FakeAPI(), Metrics.create())  # type: ignore[arg-type]
    ctx.prometheus = prom  # type: ignore[assignment]
    ctx.bulk = BulkQueries(prom.query) if bulk else None
    st = step(ctx, {}, [pod("llm-0")])

    assert st["startHistory"]["cold"] == [{"pod": "llm-0", "at": CREATED_S, "seconds": 42.0}]
    # the decision of this very pass planned with it: what the activator reads for Retry-After
    assert st["lastDecision"]["startPath"] == "cold"
    assert st["lastDecision"]["inputs"]["timeToReadySeconds"] == 42.0
    status = InferenceServiceStatus.model_validate(st)
    spec = InferenceServiceSpec.model_validate(isvc(st)["spec"])
    choice = start_choice(ctx, "ns", "llm", spec, status)
    assert (choice.path, choice.expected_s) == ("cold", 42.0) and "median of 1 measured" in choice.reason

    # the next pass reads the same gauges again: counted once
    st2 = step(ctx, st, [pod("llm-0")])
    assert st2["startHistory"]["cold"] == st["startHistory"]["cold"]

    # a second replica's start (88 s) and a wake of the first; then Prometheus goes away
    prom.series[("ns", "llm")]["llm-1"] = {"path": "cold", "total": 88.0}
    prom.series[("ns", "llm")]["llm-0"].update(wake=0.3, wake_at=CREATED_S + 600.5)
    if ctx.bulk is not None:
        ctx.bulk = BulkQueries(prom.query)  # a fresh answer (the cache is per decision interval)
    st3 = step(ctx, st2, [pod("llm-0"), pod("llm-1", "2026-12-03T10:05:00Z")])
    assert [s["seconds"] for s in st3["startHistory"]["cold"]] == [42.0, 88.0]
    assert st3["startHistory"]["wake"] == [{"pod": "llm-0", "at": CREATED_S + 600.5, "seconds": 0.3}]
    assert st3["lastDecision"]["inputs"]["timeToReadySeconds"] == 65.0  # the median of 42 and 88

    prom.down = True
    if ctx.bulk is not None:
        ctx.bulk = BulkQueries(prom.query)
    st4 = step(ctx, st3, [pod("llm-0"), pod("llm-1", "2026-12-03T10:05:00Z")])  # the pass goes on
    assert st4["startHistory"] == st3["startHistory"]  # nothing lost, nothing added
    assert st4["lastDecision"]["inputs"]["timeToReadySeconds"] == 65.0  # still the measured time
    assert any(c["type"] == "MetricsAvailable" and c["status"] == "False" for c in st4["conditions"])


def test_a_restarted_operator_plans_with_the_history_in_the_status() -> None:
    prom = FakeProm({})
    prom.down = True  # and Prometheus is down too
    ctx = OperatorContext(Settings(), FakeAPI(), Metrics.create())  # type: ignore[arg-type]
    ctx.prometheus = prom  # type: ignore[assignment]
    hist = {
        "cold": [{"pod": "llm-0", "at": 1.0, "seconds": 30.0}, {"pod": "llm-1", "at": 2.0, "seconds": 34.0}]
    }
    st = step(ctx, {"startHistory": hist}, [])
    assert st["lastDecision"]["inputs"]["timeToReadySeconds"] == 32.0
