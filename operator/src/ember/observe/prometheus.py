"""Prometheus HTTP API client (httpx, async, with timeouts) and the pure parsing of its answers.

A failed request, a non-success answer or NaN is reported as *unknown* (None), never as zero: the
policy holds on unknowns instead of scaling down. An observation says why it is not usable
(`Observation.unavailable`): Prometheus not configured, unreachable, answering with an error, or
answering with no series for this service (`NoData`: the scrape does not reach its replicas, or there
are none), or with only some of the series the policy needs (`PartialData`, e.g. the first scrapes
after a start, before a rate has two samples).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import httpx

from ember.api.v1alpha1 import InferenceServiceSpec
from ember.observe.bulk import BulkQueries
from ember.observe.queries import PANIC_KEY, render
from ember.policy.observation import Observation

Sample = tuple[dict[str, str], float]
REQUIRED = ("qps", "running", "waiting")  # without these the policy holds (policy/autoscale.py, rule 1)
OVERRIDES_NOT_ALLOWED = (
    "spec.scaling.queries is set, but PromQL overrides are not allowed on this cluster "
    "(chart value autoscaling.allowQueryOverrides): remove them to use the default queries"
)


class MetricsError(RuntimeError):
    def __init__(self, message: str, reason: str = "PrometheusError") -> None:
        super().__init__(message)
        self.reason = reason  # PrometheusUnreachable | PrometheusError


def parse_vector(answer: Mapping[str, Any]) -> list[Sample]:
    """An instant-query answer -> [(labels, value)], NaN and Inf dropped."""
    if answer.get("status") != "success":
        raise MetricsError(f"prometheus: {answer.get('errorType', '')} {answer.get('error', answer)}")
    data = answer.get("data", {})
    if data.get("resultType") == "scalar":
        v = float(data["result"][1])
        return [({}, v)] if math.isfinite(v) else []
    out = []
    for r in data.get("result", []):
        v = float(r["value"][1])
        if math.isfinite(v):
            out.append((dict(r.get("metric", {})), v))
    return out


def scalar(samples: list[Sample]) -> float | None:
    return sum(v for _, v in samples) if samples else None


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s)

    async def query(self, promql: str) -> list[Sample]:
        try:
            r = await self.client.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as e:
            raise MetricsError(
                f"prometheus unreachable: {type(e).__name__}: {e}", "PrometheusUnreachable"
            ) from e
        if r.status_code >= 500:
            raise MetricsError(f"prometheus answered {r.status_code}")
        return parse_vector(r.json())

    async def aclose(self) -> None:
        await self.client.aclose()


async def observe(
    prom: Prometheus | None,
    spec: InferenceServiceSpec,
    namespace: str,
    name: str,
    *,
    now: float,
    current: int,
    ready: int,
    time_to_ready_s: float,
    start_path: str,
    allow_overrides: bool = False,
    bulk: BulkQueries | None = None,
    max_age_s: float = 0.0,
) -> Observation:
    """`allow_overrides`: the admin's EMBER_ALLOW_QUERY_OVERRIDES. Without it a spec carrying PromQL
    overrides is not observed at all (an override could select any namespace's series and read them
    back through status.observed): unknown metrics, which hold, and a condition that says why.

    `bulk`: the shared bulk fetch (observe/bulk.py); the service reads its slice of an answer at most
    `max_age_s` old, and runs only its overridden queries itself. None: every query per service."""
    base: dict[str, Any] = {
        "now": now,
        "current_replicas": current,
        "ready_replicas": ready,
        "time_to_ready_s": time_to_ready_s,
        "start_path": start_path,
    }
    if not allow_overrides and spec.scaling.queries.model_dump(exclude_none=True):
        return Observation(
            **base,
            metrics_ok=False,
            missing=(OVERRIDES_NOT_ALLOWED,),
            unavailable="QueryOverridesNotAllowed",
        )
    if prom is None:
        return Observation(
            **base,
            metrics_ok=False,
            missing=("prometheus-not-configured",),
            unavailable="PrometheusNotConfigured",
        )
    qs = render(
        namespace,
        name,
        spec.scaling.queries,
        spec.scaling.stable_window_seconds,
        spec.scaling.panic_window_seconds,
    )
    own = {**qs.queries, PANIC_KEY: qs.panic_qps}
    if bulk is not None:  # only the keys a (permitted) override changes are queried for this service
        given = spec.scaling.queries.model_dump(exclude_none=True)
        own = {k: q for k, q in own.items() if ("qps" if k == PANIC_KEY else k) in given}
    try:
        answers = await asyncio.gather(*(prom.query(q) for q in own.values()))
        got = dict(zip(own, answers, strict=True))
        if bulk is not None:
            windows = (spec.scaling.stable_window_seconds, spec.scaling.panic_window_seconds)
            shared = await bulk.service(namespace, name, *windows, max_age_s=max_age_s)
            got = {**shared, **got}
    except MetricsError as e:
        return Observation(**base, metrics_ok=False, missing=(str(e)[:200],), unavailable=e.reason)
    missing = tuple(k for k in ("qps", "ttft_p95", "itl_p95", "running", "waiting") if not got[k])
    absent = [k for k in REQUIRED if not got[k]]
    per_pod: dict[str, float] = {}
    for key in ("running", "waiting"):
        for labels, v in got[key]:
            if "pod" in labels:
                per_pod[labels["pod"]] = per_pod.get(labels["pod"], 0.0) + v
    kv = [v for _, v in got["kv_cache"]]
    return Observation(
        **base,
        qps=scalar(got["qps"]),
        qps_panic=scalar(got["qps_panic"]),
        ttft_p95_s=scalar(got["ttft_p95"]),
        itl_p95_s=scalar(got["itl_p95"]),
        running=scalar(got["running"]),
        waiting=scalar(got["waiting"]),
        kv_cache=sum(kv) / len(kv) if kv else None,
        in_flight_by_pod=per_pod,
        # TTFT/ITL may be absent (no request finished a first token in the window): still usable, no
        # SLO signal then. Without QPS, running or waiting the policy holds: not available.
        metrics_ok=not absent,
        missing=missing,
        unavailable="" if not absent else ("NoData" if len(absent) == len(REQUIRED) else "PartialData"),
    )
