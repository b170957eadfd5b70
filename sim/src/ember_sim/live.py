"""The real-time runner: replays requests against the fleet on the wall clock and serves its metrics.

Virtual time here *is* wall time since ``start()`` (seconds), so latencies exported to Prometheus
agree with Prometheus's own clock; a trace is sped up by compressing its arrivals beforehand
(``trace.load_trace(time_scale=...)``), never by running the model faster than real time.

Each tick (every ``tick_s``): submit the requests due by now, advance the fleet to now, make the
replicas match the membership source (static, or the pods Kubernetes reports, see
``ember_sim.membership``), start or stop one ``/metrics`` server per replica, and write

- a Prometheus ``file_sd`` targets file: one entry per live replica,
  ``{"targets": ["127.0.0.1:<port>"], "labels": {"namespace", "pod", "inferenceservice"}}``;
- a status file (JSON) with request totals, so tests can assert that nothing was lost, and the
  replicas by state: serving, sleeping, starting (pods not yet mirrored, and woken replicas still
  inside their wake time).

A sleeping replica (parked by the ``SleepPlanner``, see ``ember_sim.membership``) has no
``/metrics`` server and no target: it serves nothing, but its GPU time is counted.

Both are written atomically (write, then rename) so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ember_sim.exporter import ReplicaExporter
from ember_sim.fleet import Fleet
from ember_sim.membership import Action, PodView, plan_membership
from ember_sim.openai import OpenAIFront
from ember_sim.records import Request
from ember_sim.sleep import SimSleepPlanner, SleepConfig, SleepPlanner


class Membership(Protocol):
    def snapshot(self) -> dict[str, PodView]: ...


@dataclass
class StaticMembership:
    """A fixed set of always-ready replicas (``--replicas N``); `pods` may be edited by tests."""

    pods: dict[str, PodView] = field(default_factory=dict)

    @classmethod
    def of(cls, n: int, prefix: str = "sim-") -> StaticMembership:
        return cls({f"{prefix}{i}": PodView(f"{prefix}{i}", True, True) for i in range(n)})

    def snapshot(self) -> dict[str, PodView]:
        return dict(self.pods)


def write_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


@dataclass
class LiveRunner:
    fleet: Fleet
    requests: Sequence[Request]
    membership: Membership
    inferenceservice: str = "sim"
    namespace: str = "default"
    targets_path: Path | None = None
    status_path: Path | None = None
    tick_s: float = 0.05
    clock: Callable[[], float] = time.monotonic
    lock: threading.Lock = field(default_factory=threading.Lock)
    exporters: dict[str, ReplicaExporter] = field(default_factory=dict)
    _next: int = 0
    _t0: float | None = None
    _written_targets: list[dict[str, Any]] | None = None
    serve_http: bool = False  # replicas also answer vLLM's OpenAI API (ember_sim.openai)
    served_names: tuple[str, ...] = ()
    sleep: SleepPlanner = field(default_factory=lambda: SimSleepPlanner(SleepConfig()))  # off
    woken: set[str] = field(default_factory=set)  # replicas standing for a pod through a wake
    _pods: dict[str, PodView] = field(default_factory=dict)

    def start(self) -> LiveRunner:
        self._t0 = self.clock()
        self.tick()
        return self

    def now(self) -> float:
        assert self._t0 is not None, "start() first"
        return self.clock() - self._t0

    @property
    def trace_done(self) -> bool:
        return self._next >= len(self.requests)

    def tick(self) -> None:
        with self.lock:
            t = max(self.now(), self.fleet.now_s)
            while self._next < len(self.requests) and self.requests[self._next].arrival_s <= t:
                self.fleet.submit(self.requests[self._next])
                self._next += 1
            self.fleet.advance(t, sample=False)
            self._pods = self.membership.snapshot()
            self.woken &= set(self._pods)
            plan = plan_membership(
                self._serving(), self._pods, self.fleet.sleepers(), self.sleep, self.woken, self.fleet.now_s
            )
            self._apply(plan)
            targets, status = self._targets(), self.status()
        if self.targets_path is not None and targets != self._written_targets:
            write_atomic(self.targets_path, targets)
            self._written_targets = targets
        if self.status_path is not None:
            write_atomic(self.status_path, status)

    def run(self, stop: threading.Event, until_s: float | None = None, exit_when_done: bool = False) -> None:
        """Tick until `stop` is set, `until_s` passes, or (`exit_when_done`) the trace is served."""
        while not stop.is_set():
            self.tick()
            if until_s is not None and self.now() >= until_s:
                return
            if exit_when_done and self.trace_done and self.fleet.totals().in_flight == 0:
                return
            stop.wait(self.tick_s)

    def close(self) -> None:
        for exp in self.exporters.values():
            exp.stop()
        self.exporters.clear()

    def status(self) -> dict[str, Any]:
        """Totals (invariant: submitted = completed + failed_total + in_flight) and per-replica gauges."""
        tot = self.fleet.totals()
        replicas = {}
        now = self.fleet.now_s
        awake = self.fleet.awake()
        unmirrored = [p for n, p in self._pods.items() if n not in awake]
        waking = [r for r in awake if self.fleet.slots[r].ready_s > now]
        states = {
            "serving": len(self.fleet.routable()),
            "sleeping": len(self.fleet.asleep()),
            "starting": sum(not p.terminating for p in unmirrored) + len(waking),
        }
        for rid in awake:
            slot = self.fleet.slots[rid]
            g = slot.replica.gauges(self.fleet.now_s)
            replicas[rid] = {
                "port": self.exporters[rid].port if rid in self.exporters else None,
                "serving": slot.serving,
                "running": g.running,
                "waiting": g.waiting,
                "kv_usage": g.kv_usage,
                "completed": sum(r.ok for r in slot.replica.records),
            }
        return {
            "time_s": self.fleet.now_s,
            "trace_requests": len(self.requests),
            "trace_done": self.trace_done,
            "submitted": tot.submitted,
            "completed": tot.completed,
            "failed": {k.value: v for k, v in tot.failed.items()},
            "failed_total": tot.failed_total,
            "in_flight": tot.in_flight,
            "fleet_queue": tot.fleet_queue,
            "gpu_seconds": self.fleet.gpu_seconds(),
            "gpu_seconds_asleep": self.fleet.gpu_seconds_asleep(),
            "starts": dict(self.fleet.starts),
            "states": states,
            "replicas": replicas,
        }

    # ---- internals ----------------------------------------------------------------------------

    def _serving(self) -> dict[str, bool]:
        return {rid: self.fleet.slots[rid].serving for rid in self.fleet.awake()}

    def _apply(self, actions: list[Action]) -> None:
        for act in actions:
            if act.kind == "add":
                self.fleet.add_replica(act.replica, ready_at_s=self.fleet.now_s)
                if not act.serving:
                    self.fleet.set_serving(act.replica, False)
                self._export(act.replica)
            elif act.kind == "wake":
                assert act.as_pod is not None
                self.fleet.wake(act.replica, as_id=act.as_pod)
                if not act.serving:
                    self.fleet.set_serving(act.as_pod, False)
                self.woken.add(act.as_pod)
                self._export(act.as_pod)
            elif act.kind == "serving":
                self.fleet.set_serving(act.replica, act.serving)
            else:
                if act.kind == "park":
                    self.fleet.park(act.replica)
                else:
                    self.fleet.remove(act.replica)
                self.woken.discard(act.replica)
                exp = self.exporters.pop(act.replica, None)
                if exp is not None:
                    # stopping joins the server thread; a scrape in flight waits on self.lock
                    threading.Thread(target=exp.stop, daemon=True).start()

    def _export(self, rid: str) -> None:
        rep = self.fleet.slots[rid].replica
        front = (
            OpenAIFront(self.fleet, rid, self.lock, self.now, self.served_names or (self.inferenceservice,))
            if self.serve_http
            else None
        )
        self.exporters[rid] = ReplicaExporter(rep, self.lock, lambda: self.fleet.now_s, front=front).start()

    def _targets(self) -> list[dict[str, Any]]:
        return [
            {
                "targets": [f"127.0.0.1:{self.exporters[rid].port}"],
                "labels": {
                    "namespace": self.namespace,
                    "pod": rid,
                    "inferenceservice": self.inferenceservice,
                },
            }
            for rid in sorted(self.exporters)
        ]
