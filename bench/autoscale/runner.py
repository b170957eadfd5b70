"""`python -m bench.autoscale`: Ember's policy against HPA+KEDA, Knative KPA and the oracle, in one run.

Pure simulation (no cluster): the trace is replayed through `ember_sim.Fleet` in virtual time, once
per policy, with the same replicas, start time and SLO. Prints a table (rich), writes a markdown
table and a PNG plot. See docs/benchmarks-autoscale.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ember.api.v1alpha1 import SLO, InferenceServiceSpec, ModelSource, Scaling
from ember.policy.slo import targets
from ember_sim.families import member
from ember_sim.records import Request
from ember_sim.trace import load_trace, piecewise

from bench.autoscale.harness import WINDOW_S, RunConfig, RunResult, run
from bench.autoscale.loadtest import Edge, edge
from bench.autoscale.oracle import attainable, oracle
from bench.autoscale.policies import EmberPolicy, HpaKeda, Kpa

_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRACE = (
    next(
        (p for p in (_ROOT / "shared", _ROOT.parent / "shared") if (p / "traces").is_dir()),
        _ROOT.parent / "shared",
    )
    / "traces"
    / "azure-llm-2023-conv.csv"
)
# Every policy's per-replica target comes from the harness's load test of the same simulated replica
# with the replayed trace's token mix (bench/autoscale/loadtest.py), never a constant: the mean
# in-flight requests at the SLO's edge K. KPA: container-concurrency-target K (x its default
# target-utilization 0.7); HPA+KEDA on running+waiting: AverageValue 0.7 K (the same headroom); on
# waiting: AverageValue = the mean waiting at the edge (at least 0.1); Ember: targetInFlightPerReplica
# K (x targetUtilization 0.7).
UTILIZATION = 0.7
FLAP_WINDOW_S = 120.0  # a reversal inside this window counts as flapping (Ember's scale-down delay)


@dataclass
class Row:
    name: str
    result: RunResult
    attainment: float
    step_to_up_s: float | None
    interval_s: float
    attainable: list[bool] | None = None


def ember_spec(max_replicas: int, min_replicas: int, in_flight: int = 8) -> InferenceServiceSpec:
    return InferenceServiceSpec(
        model=ModelSource(uri="hf://meta-llama/Llama-3.1-8B-Instruct"),
        slo=SLO(archetype="interactive", target_utilization=UTILIZATION),
        scaling=Scaling(
            min_replicas=min_replicas, max_replicas=max_replicas,
            target_in_flight_per_replica=in_flight,
        ),
    )  # fmt: skip


def policies(cfg: RunConfig, lt: Edge) -> list[tuple[object, float]]:
    k = max(1.0, lt.in_flight)
    spec = ember_spec(cfg.max_replicas, cfg.min_replicas, max(1, round(k)))
    path = "restore" if cfg.time_to_ready_s < 30 else "cold"
    ember = EmberPolicy(spec, cfg.time_to_ready_s, start_path=path)
    lo, hi = cfg.min_replicas, cfg.max_replicas
    hpa = HpaKeda(k * UTILIZATION, lo, hi)
    cached = HpaKeda(k * UTILIZATION, lo, hi, poll_s=30.0, name="hpa+keda-cached")
    waiting = HpaKeda(max(0.1, lt.waiting), lo, hi, metric_name="waiting", name="hpa+keda-waiting")
    kpa = Kpa(k, UTILIZATION, lo, hi)
    delay = float(spec.scaling.scale_down_delay_seconds)
    kpa_d = Kpa(k, UTILIZATION, lo, hi, scale_down_delay_s=delay, name="knative-kpa-delay")
    return [(ember, ember.interval_s), (hpa, hpa.interval_s), (cached, cached.interval_s),
            (waiting, waiting.interval_s), (kpa, kpa.tick_s), (kpa_d, kpa_d.tick_s)]  # fmt: skip


STEP_AT_S = 600.0  # ten minutes at the low rate first, so every policy has settled


def step_scenario(low: float, high: float, at_s: float = STEP_AT_S, length_s: float = 900.0) -> list[Request]:
    """A load step with the trace's mean request shape (1155 prompt, 211 output tokens), Poisson arrivals."""
    segs = [(at_s, low), (length_s - at_s, high)]
    return piecewise(segs, prompt_tokens=1155, output_tokens=211, poisson=True, seed=7)


def run_all(reqs: Sequence[Request], cfg: RunConfig, step: tuple[float, float] | None) -> list[Row]:
    end = math.ceil(((reqs[-1].arrival_s if reqs else 0.0) + WINDOW_S) / WINDOW_S) * WINDOW_S
    t = time.perf_counter()
    lt = edge(reqs, cfg)
    print(f"load test: {time.perf_counter() - t:.1f} s, edge {lt}", flush=True)
    t = time.perf_counter()
    orc, plan = oracle(reqs, cfg, end)
    att = attainable(reqs, cfg, plan, orc)
    print(f"oracle: {time.perf_counter() - t:.1f} s (search + verify)", flush=True)
    cfg = RunConfig(**{**cfg.__dict__, "initial_replicas": plan[0]})
    rows = [Row("oracle", orc, orc.attainment(cfg), None, 1.0, att)]
    for pol, interval in policies(cfg, lt):
        t = time.perf_counter()
        res = run(pol, reqs, cfg, end)  # type: ignore[arg-type]
        up = None
        if step is not None:
            scfg = RunConfig(**{**cfg.__dict__, "initial_replicas": max(1, math.ceil(step[0] / 3.0))})
            fresh = next(p for p, _ in policies(cfg, lt) if p.name == pol.name)  # type: ignore[attr-defined]
            up = run(fresh, step_scenario(*step), scfg).first_scale_up_after(STEP_AT_S)  # type: ignore[arg-type]
        rows.append(Row(res.policy, res, res.attainment(cfg), up, interval, att))
        print(f"{res.policy}: {time.perf_counter() - t:.1f} s", flush=True)
    return rows


def summary(rows: list[Row], cfg: RunConfig) -> list[dict[str, object]]:
    base = rows[0].result.gpu_hours
    out: list[dict[str, object]] = []
    for r in rows:
        res = r.result
        att = r.attainable or [True] * len(res.windows)
        counted = [(w, a) for w, a in zip(res.windows, att, strict=False) if w.arrivals > 0 or w.failed > 0]
        can = [w for w, a in counted if a]
        out.append({
            "attainable_windows": f"{sum(w.ok(cfg) for w in can)}/{len(can)}",
            "attainable_pct": round(100 * sum(w.ok(cfg) for w in can) / len(can), 1) if can else None,
            "policy": r.name,
            "slo_windows": f"{sum(w.ok(cfg) for w in res.counted())}/{len(res.counted())}",
            "attainment_pct": round(100 * r.attainment, 1),
            "gpu_hours": round(res.gpu_hours, 2),
            "vs_oracle": round(res.gpu_hours / base, 3) if base else None,
            "utilisation_pct": round(100 * res.utilisation, 1),
            "scale_events": len(res.events),
            "flaps": res.reversals(FLAP_WINDOW_S),
            "step_to_up_s": None if r.step_to_up_s is None else round(r.step_to_up_s, 1),
            "step_to_up_intervals": None if r.step_to_up_s is None else round(r.step_to_up_s / r.interval_s, 2),
            "failed_requests": res.failed,
            "peak_replicas": max(n for _, n, _ in res.timeline),
        })  # fmt: skip
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__)
    p.add_argument(
        "--trace", type=Path, default=DEFAULT_TRACE, help="TIMESTAMP,ContextTokens,GeneratedTokens CSV"
    )
    p.add_argument(
        "--family", default=None, help="a generated trace family (ember_sim.families) instead of --trace"
    )
    p.add_argument("--seed", type=int, default=1, help="which member of --family")
    p.add_argument("--speed", type=float, default=1.0, help="time compression of the trace")
    p.add_argument("--rate-scale", type=float, default=4.0, help="multiply the request rate (same timeline)")
    p.add_argument("--offset", type=float, default=0.0, help="start of the slice, original seconds")
    p.add_argument("--duration", type=float, default=None, help="length of the slice, original seconds")
    p.add_argument(
        "--time-to-ready", type=float, nargs="+", default=[60.0, 8.0], help="start times to run, s"
    )
    p.add_argument("--max-replicas", type=int, default=40)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--no-step", action="store_true", help="skip the synthetic load-step scenario")
    p.add_argument("--step", type=float, nargs=2, default=[8.0, 24.0], help="step scenario rates, req/s")
    p.add_argument("--out", type=Path, default=Path("docs"), help="where the markdown and PNG go")
    p.add_argument("--tag", default="benchmarks-autoscale", help="file name stem under --out")
    p.add_argument("--no-plot", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from bench.autoscale.report import markdown, plot, print_table

    args = parser().parse_args(argv)
    if args.family:
        reqs = member(args.family, args.seed, args.duration or 3600.0)
        label = f"{args.family} seed {args.seed} (generated)"
    else:
        reqs = load_trace(args.trace, offset_s=args.offset, duration_s=args.duration,
                          rate_scale=args.rate_scale, time_scale=args.speed)  # fmt: skip
        label = f"{args.trace.name} x{args.rate_scale:g} rate, speed {args.speed:g}"
    slo = targets(SLO(archetype="interactive"))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for ttr in args.time_to_ready:
        cfg = RunConfig(time_to_ready_s=ttr, ttft_target_s=slo.ttft_p95_s, itl_target_s=slo.itl_p95_s,
                        min_replicas=args.min_replicas, max_replicas=args.max_replicas)  # fmt: skip
        started = time.perf_counter()
        rows = run_all(reqs, cfg, None if args.no_step else tuple(args.step))
        table = summary(rows, cfg)
        title = (f"{label}, time-to-ready {ttr:g} s, SLO TTFT p95 {slo.ttft_p95_s * 1000:.0f} ms / "
                 f"ITL p95 {slo.itl_p95_s * 1000:.0f} ms ({len(reqs)} requests, "
                 f"{time.perf_counter() - started:.0f} s wall)")  # fmt: skip
        print_table(title, table)
        stem = f"{args.tag}-ttr{ttr:g}"
        if not args.no_plot:
            plot(rows, cfg, args.out / f"{stem}.png", title)
        results.append({"title": title, "time_to_ready_s": ttr, "rows": table, "png": f"{stem}.png"})
    (args.out / f"{args.tag}.results.md").write_text(markdown(results, argv_line(argv)))
    (args.out / f"{args.tag}.results.json").write_text(json.dumps(results, indent=1))
    return 0


def argv_line(argv: Sequence[str] | None) -> str:
    import sys

    return "python -m bench.autoscale " + " ".join(sys.argv[1:] if argv is None else argv)
