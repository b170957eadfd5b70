"""`ember-sim`: replay a trace against simulated vLLM replicas, live (with /metrics) or in pure simulation.

ember-sim live --trace T.csv --speed 10 --replicas 2 --targets-file sd.json --status-file st.json
ember-sim live --trace T.csv --kubeconfig kc --namespace ns --name chat --targets-file sd.json
ember-sim simulate --trace T.csv --replicas 10 --speed 10      # prints per-window stats as JSON
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, Membership, StaticMembership
from ember_sim.params import load_params
from ember_sim.records import Request
from ember_sim.sleep import SimSleepPlanner, SleepConfig
from ember_sim.trace import load_trace, piecewise


def _load_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--trace", type=Path, help="CSV with TIMESTAMP,ContextTokens,GeneratedTokens")
    src.add_argument("--synthetic", help="segments 'duration_s:rate_per_s,...', e.g. '60:2,60:10'")
    p.add_argument("--speed", type=float, default=1.0, help="time compression of the trace (10: 10x faster)")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply the request rate (same timeline)")
    p.add_argument("--offset-s", type=float, default=0.0, help="start of the trace slice (original seconds)")
    p.add_argument("--duration-s", type=float, default=None, help="length of the slice (original seconds)")
    p.add_argument("--prompt-tokens", type=int, default=512, help="synthetic requests' prompt length")
    p.add_argument("--output-tokens", type=int, default=128, help="synthetic requests' output length")
    p.add_argument("--params", type=Path, default=None, help="YAML of ReplicaParams overrides")
    p.add_argument("--queue-timeout-s", type=float, default=60.0, help="wait for a ready replica, then fail")


def requests_from(args: argparse.Namespace) -> list[Request]:
    if args.trace is not None:
        return load_trace(args.trace, offset_s=args.offset_s, duration_s=args.duration_s,
                          rate_scale=args.rate_scale, time_scale=args.speed)  # fmt: skip
    segs = [(float(d), float(r)) for d, r in (s.split(":") for s in args.synthetic.split(","))]
    segs = [(d / args.speed, r * args.speed * args.rate_scale) for d, r in segs]
    return piecewise(segs, prompt_tokens=args.prompt_tokens, output_tokens=args.output_tokens)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ember-sim", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {version('ember-sim')}")
    sub = top.add_subparsers(dest="command", required=True)
    live = sub.add_parser("live", help="replay in real time, serving vLLM /metrics per replica")
    _load_args(live)
    mode = live.add_mutually_exclusive_group(required=True)
    mode.add_argument("--replicas", type=int, help="static mode: N always-ready replicas, no Kubernetes")
    mode.add_argument("--kubeconfig", type=Path, help="cluster mode: one replica per Ready pod")
    live.add_argument("--namespace", default="default", help="cluster mode: the pods' namespace")
    live.add_argument("--name", default="sim", help="the InferenceService (pod label selector, target label)")
    live.add_argument("--targets-file", type=Path, help="Prometheus file_sd JSON to write")
    live.add_argument("--status-file", type=Path, help="status JSON to write (request totals)")
    live.add_argument("--until-s", type=float, default=None, help="stop after this many seconds")
    live.add_argument("--exit-when-done", action="store_true", help="stop once the trace is served")
    live.add_argument("--max-sleeping", type=int, default=0,
                      help="cluster mode: park a deleted pod's replica (asleep, GPU held) while fewer "
                           "than this sleep; 0: off (spec.scaling.sleep.maxSleeping)")  # fmt: skip
    live.add_argument("--sleep-delete-after-s", type=float, default=1800.0,
                      help="remove a replica asleep this long (spec.scaling.sleep.deleteAfterSeconds)")  # fmt: skip
    live.add_argument("--serve-http", action="store_true",
                      help="replicas also answer vLLM's OpenAI API on their port (ember_sim.openai)")  # fmt: skip
    sim = sub.add_parser("simulate", help="pure simulation in virtual time; prints per-window stats")
    _load_args(sim)
    sim.add_argument("--replicas", type=int, required=True, help="N always-ready replicas")
    sim.add_argument("--window-s", type=float, default=60.0, help="stats window (default: %(default)s)")
    return top


def run_live(args: argparse.Namespace) -> int:
    fleet = Fleet(load_params(args.params), queue_timeout_s=args.queue_timeout_s)
    membership: Membership
    watcher = None
    if args.kubeconfig is not None:
        from ember_sim.kube import KubePodWatcher  # only cluster mode needs the Kubernetes client

        watcher = KubePodWatcher(args.kubeconfig, args.namespace, args.name).start()
        watcher.synced.wait(30)
        membership = watcher
    else:
        membership = StaticMembership.of(args.replicas)
    planner = SimSleepPlanner(SleepConfig(args.max_sleeping, args.sleep_delete_after_s))
    runner = LiveRunner(fleet, requests_from(args), membership, args.name, args.namespace,
                        args.targets_file, args.status_file, serve_http=args.serve_http,
                        sleep=planner)  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runner.start().run(stop, until_s=args.until_s, exit_when_done=args.exit_when_done)
    finally:
        runner.close()
        if watcher is not None:
            watcher.stop()
    print(json.dumps({k: v for k, v in runner.status().items() if k != "replicas"}))
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    reqs = requests_from(args)
    fleet = Fleet(load_params(args.params), queue_timeout_s=args.queue_timeout_s)
    for i in range(args.replicas):
        fleet.add_replica(f"sim-{i}", ready_at_s=0.0)
    started = time.perf_counter()
    windows: list[dict[str, Any]] = []
    edge = args.window_s
    for req in reqs:
        while req.arrival_s >= edge:
            windows.append(_window(fleet, edge - args.window_s, edge))
            edge += args.window_s
        fleet.submit(req)
    end = (reqs[-1].arrival_s if reqs else 0.0) + args.window_s
    while edge - args.window_s < end:  # the last window covers the tail of the load
        windows.append(_window(fleet, edge - args.window_s, edge))
        edge += args.window_s
    tot = fleet.totals()
    out = {
        "requests": len(reqs),
        "completed": tot.completed,
        "failed": tot.failed_total,
        "gpu_seconds": fleet.gpu_seconds(),
        "wall_s": time.perf_counter() - started,
        "windows": windows,
    }
    print(json.dumps(out, indent=1))
    return 0


def _window(fleet: Fleet, t0: float, t1: float) -> dict[str, Any]:
    fleet.advance(t1)
    a = fleet.window_stats(t0, t1).aggregate
    return {"t0_s": t0, "qps": round(a.qps, 3), "ttft_p95_s": a.ttft_p95_s, "itl_p95_s": a.itl_p95_s,
            "running": a.running, "waiting": a.waiting, "busy": round(a.busy_fraction, 3)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_live(args) if args.command == "live" else run_simulate(args)


if __name__ == "__main__":
    sys.exit(main())
