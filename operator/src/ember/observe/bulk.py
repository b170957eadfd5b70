"""Metrics in bulk: one set of PromQL queries per decision interval for every service, sliced per service.

Without this each InferenceService runs its own 7 queries every decision interval, so 500 services at
5 s are 700 queries per second against the user's Prometheus. Here the same 7 queries run once, grouped
by the `namespace` and `inferenceservice` labels the chart's PodMonitor attaches, and each service
reads its slice: Prometheus load depends on the number of distinct (stable, panic) window pairs in the
specs (usually one), not on the number of services.

A fetch is shared: callers that arrive while one is in flight await it, and an answer (or an error) is
reused until it is older than the caller's `max_age_s` (its decision interval). The answers equal the
per-service queries' answers (tests/integration/autoscale/test_bulk_metrics.py checks that against a
real Prometheus): the per-service queries aggregate over the service's selector, the bulk queries add
`namespace, inferenceservice` to the same aggregation. A spec with PromQL overrides (when the admin
allows them) runs its overridden keys itself (observe/prometheus.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ember.observe.queries import BULK, PANIC_KEY, STARTS, start_queries

Sample = tuple[dict[str, str], float]
Key = tuple[str, str]  # (namespace, inferenceservice)
Slices = dict[Key, dict[str, list[Sample]]]  # per service: query name -> its samples, group labels gone
GROUP = ("namespace", "inferenceservice")


def _bulk_selector(namespaces: Sequence[str]) -> str:
    sel = 'inferenceservice!=""'
    if namespaces:
        # namespace names are DNS labels ([a-z0-9-]): nothing in them is special in a RE2 regex
        sel += ',namespace=~"' + "|".join(namespaces) + '"'
    return sel


def bulk_queries(stable_s: int, panic_s: int, namespaces: Sequence[str] = ()) -> dict[str, str]:
    """The bulk PromQL, by the same names as the per-service queries (queries.DEFAULTS + qps_panic).
    `namespaces`: the operator's watched namespaces (empty: all), so it never reads other series."""
    sel = _bulk_selector(namespaces)
    out = {k: q.replace("$selector", sel).replace("$window", f"{stable_s}s") for k, q in BULK.items()}
    out[PANIC_KEY] = BULK["qps"].replace("$selector", sel).replace("$window", f"{panic_s}s")
    return out


def bulk_start_queries(namespaces: Sequence[str] = ()) -> dict[str, str]:
    """The supervisors' start measurements of every service (queries.STARTS; observe/starts.py)."""
    return start_queries(_bulk_selector(namespaces))


def slice_answers(answers: Mapping[str, list[Sample]]) -> Slices:
    """Index bulk answers by service; each sample loses the group labels (what stays, e.g. `pod`, is
    what the per-service query would have returned)."""
    out: Slices = {}
    for name, samples in answers.items():
        for labels, v in samples:
            key = (labels.get("namespace", ""), labels.get("inferenceservice", ""))
            rest = {k: val for k, val in labels.items() if k not in GROUP}
            out.setdefault(key, {n: [] for n in answers})[name].append((rest, v))
    return out


@dataclass
class _Entry:
    at: float
    task: asyncio.Task[Slices]


@dataclass
class BulkQueries:
    """The shared, interval-cached bulk fetch. `query` is the Prometheus client's query (our seam)."""

    query: Callable[[str], Awaitable[list[Sample]]]
    namespaces: Sequence[str] = ()
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[int, int], _Entry] = field(default_factory=dict)
    fetches: int = 0  # bulk fetches made (each is len(bulk_queries(...)) queries), for tests and metrics
    _starts: _Entry | None = None
    start_fetches: int = 0  # bulk fetches of the start measurements (len(STARTS) queries each)

    async def service(
        self, namespace: str, name: str, stable_s: int, panic_s: int, max_age_s: float
    ) -> dict[str, list[Sample]]:
        """This service's samples for every query name (empty lists: no series). Raises the fetch's
        MetricsError, cached like an answer so an outage is not hammered by every service."""
        slices = await self._get((stable_s, panic_s), max_age_s)
        return slices.get((namespace, name)) or {n: [] for n in bulk_queries(stable_s, panic_s)}

    async def _get(self, windows: tuple[int, int], max_age_s: float) -> Slices:
        now = self.clock()
        entry = self._entries.get(windows)
        if entry is None or now - entry.at >= max_age_s:
            entry = _Entry(now, asyncio.ensure_future(self._fetch(windows)))
            self._entries[windows] = entry
        return await asyncio.shield(entry.task)

    async def _fetch(self, windows: tuple[int, int]) -> Slices:
        self.fetches += 1
        queries = bulk_queries(*windows, namespaces=self.namespaces)
        answers = await asyncio.gather(*(self.query(q) for q in queries.values()))
        return slice_answers(dict(zip(queries, answers, strict=True)))

    async def starts(self, namespace: str, name: str, max_age_s: float) -> dict[str, list[Sample]]:
        """This service's start measurements (queries.STARTS; empty lists: no series), shared and
        cached like `service` (an error too)."""
        now = self.clock()
        entry = self._starts
        if entry is None or now - entry.at >= max_age_s:
            entry = self._starts = _Entry(now, asyncio.ensure_future(self._fetch_starts()))
        slices = await asyncio.shield(entry.task)
        return slices.get((namespace, name)) or {n: [] for n in STARTS}

    async def _fetch_starts(self) -> Slices:
        self.start_fetches += 1
        queries = bulk_start_queries(self.namespaces)
        answers = await asyncio.gather(*(self.query(q) for q in queries.values()))
        return slice_answers(dict(zip(queries, answers, strict=True)))
