"""vLLM-compatible Prometheus exposition for one simulated replica.

Each replica gets its own ``CollectorRegistry`` and its own HTTP server on 127.0.0.1, like a real
pod's ``/metrics``. Names, label names (``model_name``, ``engine="0"``) and histogram buckets are
vLLM v1's (``vllm/v1/metrics/loggers.py``, ``PrometheusStatLogger``), so the operator's queries and
recording rules run unchanged against the simulator. ``vllm:time_per_output_token_seconds`` is
emitted with the same per-token observations as ``vllm:inter_token_latency_seconds``, as vLLM
0.10/0.11 did while the old name was deprecated, so queries written for either name work. The
simulated replica caches no prefixes: ``vllm:prefix_cache_queries_total`` counts its prefilled tokens
and ``vllm:prefix_cache_hits_total`` stays 0 (a hit rate of 0).

The collector is a view: at scrape time it folds the replica's new append-only outputs (TTFT
observations, step spans, finished records) into cumulative histograms, under the lock the
simulation loop holds while it mutates the fleet. A span of k steps with n sequences adds k x n
ITL observations of the step length at once, which a ``prometheus_client.Histogram`` cannot do.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ember_sim.model import Replica
from ember_sim.records import Outcome

TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                 20.0, 40.0, 80.0)  # fmt: skip
REQUEST_LATENCY_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                             60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort")
LABELS = ("model_name", "engine")


@dataclass
class CumulativeHistogram:
    """Bucket counts (le upper bounds, +Inf last), sum and count, with weighted observations."""

    bounds: Sequence[float]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, weight: float = 1.0) -> None:
        # le semantics: a value equal to a bound belongs to that bound's bucket
        self.counts[bisect.bisect_left(self.bounds, value)] += weight
        self.total += value * weight

    def family(self, name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=list(LABELS))
        acc, buckets = 0.0, []
        for le, c in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            acc += c
            buckets.append((le, acc))
        fam.add_metric(labels, buckets, self.total)
        return fam


@dataclass
class _Cursor:
    ttft: int = 0
    spans: int = 0
    records: int = 0


class ReplicaCollector(Collector):
    """Renders one replica's state as vLLM's metric families."""

    def __init__(self, replica: Replica, lock: threading.Lock, now: Callable[[], float]) -> None:
        self.replica, self.lock, self.now = replica, lock, now
        self.labels = [replica.params.model_name, "0"]
        self.cursor = _Cursor()
        self.ttft = CumulativeHistogram(TTFT_BUCKETS_S)
        self.itl = CumulativeHistogram(ITL_BUCKETS_S)
        self.tpot = CumulativeHistogram(ITL_BUCKETS_S)
        self.e2e = CumulativeHistogram(REQUEST_LATENCY_BUCKETS_S)
        self.queue = CumulativeHistogram(REQUEST_LATENCY_BUCKETS_S)
        self.success = dict.fromkeys(FINISH_REASONS, 0)

    def _fold(self) -> None:
        rep, cur = self.replica, self.cursor
        for v in rep.ttft_s[cur.ttft :]:
            self.ttft.observe(v)
        cur.ttft = len(rep.ttft_s)
        for sp in rep.spans[cur.spans :]:
            if sp.decoding:
                self.itl.observe(sp.step_s, sp.steps * sp.decoding)
        cur.spans = len(rep.spans)
        for rec in rep.records[cur.records :]:
            if rec.outcome is Outcome.COMPLETED:  # a lost replica reports nothing for its lost requests
                self.success["stop"] += 1
                self.e2e.observe(rec.e2e_s)
                if rec.admitted_s is not None:
                    self.queue.observe(rec.admitted_s - rec.request.arrival_s)
                if rec.mean_itl_s is not None:
                    self.tpot.observe(rec.mean_itl_s)
        cur.records = len(rep.records)

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            self._fold()
            g = self.replica.gauges(max(self.now(), self.replica.now_s))
            prompt, generation = self.replica.prompt_tokens_total, self.replica.generation_tokens_total
            yield from self._families(g.running, g.waiting, g.kv_usage, prompt, generation)

    def _families(self, running: int, waiting: int, kv: float, prompt: int, gen: int) -> Iterator[Metric]:
        lab = self.labels
        yield _gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", lab, running
        )
        yield _gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", lab, waiting)
        yield _gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", lab, kv)
        yield _counter("vllm:prompt_tokens", "Number of prefill tokens processed.", lab, prompt)
        yield _counter("vllm:generation_tokens", "Number of generation tokens processed.", lab, gen)
        yield _counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", lab, 0)
        # the simulated replica has no prefix cache: every prefilled token was looked up and missed
        yield _counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            lab,
            prompt,
        )
        yield _counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", lab, 0
        )
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*LABELS, "finished_reason"],
        )
        for reason, n in self.success.items():
            success.add_metric([*lab, reason], n)
        yield success
        yield self.ttft.family(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", lab
        )
        yield self.itl.family(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lab
        )
        yield self.itl.family(
            "vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", lab
        )
        yield self.tpot.family(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            lab,
        )
        yield self.e2e.family(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", lab
        )
        yield self.queue.family(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", lab
        )


def _gauge(name: str, doc: str, labels: list[str], value: float) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=list(LABELS))
    fam.add_metric(labels, value)
    return fam


def _counter(name: str, doc: str, labels: list[str], value: float) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=list(LABELS))
    fam.add_metric(labels, value)
    return fam


class _MetricsHandler(BaseHTTPRequestHandler):
    registry: CollectorRegistry  # set on the per-exporter subclass
    front: Any = None  # ember_sim.openai.OpenAIFront when the replica serves the OpenAI API

    def do_POST(self) -> None:
        if self.front is None:
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.front.handle(self, self.path.split("?")[0], body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if self.front is not None and path not in ("/metrics", "/"):
            self.front.handle(self, path, None)
            return
        if path not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the runner's own output


class ReplicaExporter:
    """One replica's registry and `/metrics` server on 127.0.0.1 (port 0 picks a free one).

    It always answers in the Prometheus text format 0.0.4, whatever the scraper's Accept header:
    prometheus_client 0.26's OpenMetrics encoder rewrites the ``:`` of sample names to ``_``
    (``vllm_num_requests_running`` under a ``# TYPE vllm:num_requests_running`` line), which would
    hide every ``vllm:`` series from a Prometheus that negotiates OpenMetrics, as 2.x does by default.
    """

    def __init__(
        self,
        replica: Replica,
        lock: threading.Lock,
        now: Callable[[], float],
        port: int = 0,
        front: Any = None,
    ) -> None:
        self.front = front
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ReplicaCollector(replica, lock, now)
        self.registry.register(self.collector)
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> ReplicaExporter:
        handler = type("Handler", (_MetricsHandler,), {"registry": self.registry, "front": self.front})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_port)
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"metrics-{self.port}", daemon=True
        ).start()  # a short poll interval: stop() waits up to one interval
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
