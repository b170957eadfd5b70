"""One service's measured starts from its supervisors' metrics -> `policy/startpath.Measured`, which
the autoscaler folds into `status.startHistory` (policy/startpath.fold).

The queries are `queries.STARTS` (in bulk when `bulk_metrics` is on: observe/bulk.py), instant values
by pod, paired here:
- a start: the path taken (the series of `ember_supervisor_start_path_total{path}` with a value; the
  supervisor counts the path that happened, after any fallback) and its seconds
  (`ember_supervisor_start_phase_seconds{phase="total"}`), at the pod's creation time as the API
  server has it (`created`; a pod the operator does not list, e.g. already deleted, is skipped);
- a wake: `ember_supervisor_last_wake_seconds` at `ember_supervisor_last_wake_timestamp_seconds`
  (the supervisor writes the seconds first, so a scrape between its two writes shows the previous
  wake's time, already counted, never this wake's time with the previous seconds).
A pod with half a pair (a scrape between the supervisor's writes, or a start still running) is read
again on a later pass. A Prometheus failure is no measurement (None): the history stays as it is and
the pass goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from ember.observe.bulk import BulkQueries, Sample
from ember.observe.prometheus import MetricsError
from ember.observe.queries import service_selector, start_queries
from ember.policy.startpath import Measured, Path

START_PATHS: tuple[Path, ...] = ("restore", "cold")  # what a supervisor's start counter can say


class _Query(Protocol):
    async def query(self, promql: str) -> list[Sample]: ...


def _by_pod(samples: list[Sample]) -> dict[str, float]:
    return {labels["pod"]: v for labels, v in samples if labels.get("pod")}


def measurements(got: Mapping[str, list[Sample]], created: Mapping[str, float]) -> list[Measured]:
    """Pair the answers of `queries.STARTS` by pod. `created`: pod name -> creation (unix seconds)."""
    paths: dict[str, set[str]] = {}
    for labels, v in got.get("start_path", []):
        if labels.get("pod") and labels.get("path") in START_PATHS and v > 0:
            paths.setdefault(labels["pod"], set()).add(labels["path"])
    out: list[Measured] = []
    for pod, seconds in sorted(_by_pod(got.get("start_seconds", [])).items()):
        taken = paths.get(pod, set())
        if len(taken) == 1 and pod in created:  # two paths: two processes' series, which start is unknown
            path = next(p for p in START_PATHS if p in taken)
            out.append(Measured(pod, path, seconds, round(created[pod], 3)))
    wake_at = _by_pod(got.get("wake_at", []))
    for pod, seconds in sorted(_by_pod(got.get("wake_seconds", [])).items()):
        if pod in wake_at and wake_at[pod] > 0:
            out.append(Measured(pod, "wake", seconds, round(wake_at[pod], 3)))
    return out


async def measure(
    prom: _Query | None,
    namespace: str,
    name: str,
    created: Mapping[str, float],
    *,
    bulk: BulkQueries | None = None,
    max_age_s: float = 0.0,
) -> list[Measured] | None:
    """This service's measured starts, or None when Prometheus is not configured or failed."""
    if prom is None:
        return None
    try:
        if bulk is not None:
            got = await bulk.starts(namespace, name, max_age_s)
        else:
            qs = start_queries(service_selector(namespace, name))
            answers = await asyncio.gather(*(prom.query(q) for q in qs.values()))
            got = dict(zip(qs, answers, strict=True))
    except MetricsError:
        return None
    return measurements(got, created)
