"""`make demo`: Ember on a local control plane under a replayed slice of a production trace.

    python -m ember_demo [--speed 10] [--duration-s 1200] [--rate-scale 0.2] [--trace CSV]

Brings up the control plane with fake H100 nodes, applies the CRDs, installs the chart, starts
Prometheus, the operator, the activator and the replica simulator, creates the InferenceServices `chat`
and `agent` (minReplicas 0), replays the trace at `chat` (time-compressed by --speed and thinned by
--rate-scale, so ~10 req/s reach the replicas), shows a live view, waits for the scale-down after the
traffic; then scene 2 sends a few requests at once to `agent`, still at zero, through the activator
(held, activation and its ETA, answered: ember_demo.fromzero), prints a summary and writes a PNG plot.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ember_cluster import ComponentFailed
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ember_demo.fromzero import run_scene
from ember_demo.report import Record, Sample, Window, plot, prometheus_window
from ember_demo.stack import NAME, NAMESPACE, ROOT, Stack

console = Console()


def args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="ember-demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {version('ember-demo')}")
    ap.add_argument(
        "--trace",
        type=Path,
        default=ROOT.parent / "shared" / "traces" / "azure-llm-2023-conv.csv",
        help="request trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)",
    )
    ap.add_argument("--offset-s", type=float, default=600, help="start of the slice, trace seconds")
    ap.add_argument("--duration-s", type=float, default=1200, help="length of the slice, trace seconds")
    ap.add_argument("--speed", type=float, default=10, help="time compression (10: 10x faster)")
    ap.add_argument("--rate-scale", type=float, default=0.2, help="keep this share of the requests")
    ap.add_argument("--ready-after-s", type=float, default=5, help="simulated replica start time")
    ap.add_argument(
        "--max-sleeping",
        type=int,
        default=2,
        help="simulated replicas that sleep instead of being deleted (0: off); they wake in the H200's 0.408 s",
    )
    ap.add_argument("--cooldown-s", type=float, default=90, help="max wait for the scale-down afterwards")
    ap.add_argument(
        "--from-zero-requests",
        type=int,
        default=6,
        help="scene 2: requests sent at once to the service at zero, through the activator (0: skip)",
    )
    ap.add_argument("--prometheus-port", type=int, default=9090, help="port of the demo's Prometheus")
    ap.add_argument("--workdir", type=Path, default=Path(".ember/demo"), help="state, logs and the plot")
    return ap.parse_args()


def isvc(stack: Stack) -> dict[str, Any]:
    out = stack.kubectl("get", "eis", NAME, "-n", NAMESPACE, "-o", "json")
    return json.loads(out)


def fmt(v: float | None, target: float | None = None, unit: str = "") -> str:
    if v is None:
        return "-"
    s = f"{v:.0f}{unit}" if v >= 10 else f"{v:.2f}{unit}"
    if target is not None:
        color = "green" if v <= target else "red"
        return f"[{color}]{s}[/] / {target:.0f}{unit}"
    return s


def view(obj: dict[str, Any], sim: dict[str, Any], progress: Progress) -> Group:
    st = obj.get("status", {})
    d = st.get("lastDecision") or {}
    o = st.get("observed") or {}
    wb = st.get("warmBuffer") or {}
    t = Table(title="InferenceService demo/chat (interactive SLO)", expand=True)
    states = sim.get("states") or {}
    for c in (
        "desired",
        "serving",
        "sleeping",
        "starting",
        "buffer",
        "QPS",
        "TTFT p95",
        "ITL p95",
        "last decision",
    ):
        t.add_column(c)
    t.add_row(
        str(st.get("desiredReplicas", "-")),
        str(states.get("serving", "-")),
        str(states.get("sleeping", "-")),
        str(states.get("starting", "-")),
        f"{wb.get('ready', 0)}/{wb.get('desired', 0)}",
        fmt(o.get("qps")),
        fmt(o.get("ttftP95Ms"), 500, " ms"),
        fmt(o.get("itlP95Ms"), 50, " ms"),
        f"{d.get('reason', '-')}: {d.get('message', '')}"[:90],
    )
    starts = ", ".join(f"{k} {v}" for k, v in sorted((sim.get("starts") or {}).items())) or "none yet"
    done = (
        f"requests: {sim.get('completed', 0)} completed, {sim.get('failed_total', 0)} failed, "
        f"{sim.get('in_flight', 0)} in flight; starts: {starts}"
    )
    return Group(progress, t, done)


def run(a: argparse.Namespace) -> int:
    stack = Stack(a.workdir.resolve(), prometheus_port=a.prometheus_port)
    rec = Record(ttft_target_ms=500, itl_target_ms=50)
    wall = a.duration_s / a.speed
    try:
        stack.up(a.ready_after_s, lambda m: console.print(f"[bold]ember demo[/]: {m}"))
        console.print(
            f"[bold]ember demo[/]: replaying {a.trace.name} [{a.offset_s:g}s, +{a.duration_s:g}s] "
            f"at {a.speed:g}x, {a.rate_scale:g} of the requests ({wall:.0f} s), then cool-down"
        )
        # deleteAfterSeconds (default 1800) compressed like the trace
        stack.start_traffic(
            a.trace, a.speed, a.rate_scale, a.offset_s, a.duration_s, a.max_sleeping, 1800 / a.speed
        )
        progress = Progress(
            TextColumn("trace"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn()
        )
        task = progress.add_task("replay", total=wall)
        t0, last_window, sim = time.monotonic(), 0.0, {}
        selector = f'namespace="{NAMESPACE}",inferenceservice="{NAME}"'
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                now = time.monotonic() - t0
                obj = isvc(stack)
                if stack.sim_status.exists():
                    sim = json.loads(stack.sim_status.read_text() or "{}")
                st = obj.get("status", {})
                d, o = st.get("lastDecision") or {}, st.get("observed") or {}
                states = sim.get("states") or {}
                rec.samples.append(
                    Sample(
                        now,
                        st.get("desiredReplicas", 0),
                        st.get("readyReplicas", 0),
                        (st.get("warmBuffer") or {}).get("ready", 0),
                        o.get("qps"),
                        o.get("ttftP95Ms"),
                        o.get("itlP95Ms"),
                        d.get("reason", ""),
                        states.get("serving", 0),
                        states.get("sleeping", 0),
                        states.get("starting", 0),
                    )
                )
                if now - last_window >= 10:
                    last_window = now
                    rec.windows.append(Window(now, *prometheus_window(stack.prometheus.url, selector)))  # type: ignore[union-attr]
                progress.update(task, completed=min(now, wall))
                live.update(view(obj, sim, progress))
                traffic_over = now >= wall + 5
                min_replicas = obj["spec"]["scaling"]["minReplicas"]
                if traffic_over and (st.get("desiredReplicas") == min_replicas or now >= wall + a.cooldown_s):
                    break
                time.sleep(1)
        summary = rec.summary(
            sim.get("gpu_seconds", 0.0),
            sim.get("completed", 0),
            sim.get("failed_total", 0),
            sim.get("gpu_seconds_asleep", 0.0),
            sim.get("starts"),
        )
        if a.from_zero_requests:
            scene = run_scene(stack, console, a.from_zero_requests, ready_after_s=a.ready_after_s)
            summary.update(scene.summary())
        png = a.workdir.resolve() / "demo.png"
        plot(rec, png, f"Ember demo: {a.trace.name} x{a.speed:g}, interactive SLO")
        rec.save(a.workdir.resolve() / "demo.json", summary)
        t = Table(title="Summary")
        t.add_column("measure")
        t.add_column("value")
        for k, v in summary.items():
            t.add_row(k.replace("_", " "), str(v))
        console.print(t)
        console.print(
            f"plot: {png}\nrecord: {a.workdir.resolve() / 'demo.json'}\nlogs: {stack.workdir / 'logs'}"
        )
        return 0
    except ComponentFailed as e:
        console.print(f"[red]ember demo: {e}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("ember demo: interrupted, stopping everything")
        return 130
    finally:
        stack.close()


def main() -> None:
    raise SystemExit(run(args()))


if __name__ == "__main__":
    main()
