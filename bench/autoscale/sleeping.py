"""`python -m bench.autoscale.sleeping`: the autoscale benchmark with sleeping replicas enabled vs not.

Same trace, same simulated replicas, same start time, same SLO; each policy runs twice (``ember-plan-cold`` is Ember's policy told the created replicas'
start time even while a replica sleeps, against ``ember``, which plans with the wake time then), with
``maxSleeping`` 0 (every scale-down deletes, as today) and N (a drained replica sleeps on its GPU
while fewer than N are asleep, is deleted after ``deleteAfterSeconds``, and a scale-up wakes one in
the H200's measured 0.408 s before it restores or cold-starts). Reports per run: SLO windows met,
GPU-hours (asleep included: a sleeping replica holds its GPU) and the asleep part, starts by path,
failed requests. Writes `<tag>.results.{md,json}` under --out and, with --json, one entry per
scenario and policy into docs/benchmarks.json (ratios within this one run).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ember.api.v1alpha1 import SLO
from ember.policy.slo import targets
from ember_sim.families import member
from ember_sim.records import Request
from ember_sim.sleep import SleepConfig, SleepTimes
from ember_sim.trace import load_trace

from bench.autoscale.harness import WINDOW_S, RunConfig, run
from bench.autoscale.loadtest import edge
from bench.autoscale.policies import EmberPolicy
from bench.autoscale.runner import DEFAULT_TRACE, policies

COLUMNS = [
    ("policy", "policy"),
    ("max_sleeping", "maxSleeping"),
    ("slo_windows", "SLO windows"),
    ("attainment_pct", "attainment %"),
    ("gpu_hours", "GPU-h (held)"),
    ("gpu_hours_asleep", "of which asleep"),
    ("starts", "starts by path"),
    ("scale_events", "scale events"),
    ("failed_requests", "failed req."),
    ("peak_awake", "peak awake"),
]


def rows_for(
    reqs: Sequence[Request], cfg: RunConfig, names: Sequence[str], max_sleeping: int
) -> list[dict[str, object]]:
    end = math.ceil(((reqs[-1].arrival_s if reqs else 0.0) + WINDOW_S) / WINDOW_S) * WINDOW_S
    lt = edge(reqs, cfg)
    out: list[dict[str, object]] = []
    for n in (0, max_sleeping):
        c = replace(cfg, sleep=replace(cfg.sleep, max_sleeping=n))
        pols = [p for p, _ in policies(c, lt)]
        ember = next(p for p in pols if isinstance(p, EmberPolicy))
        pols.append(EmberPolicy(ember.spec, ember.time_to_ready_s, ember.start_path, name="ember-plan-cold",
                                plan_with_wake=False))  # fmt: skip
        for pol in pols:
            name = pol.name  # type: ignore[attr-defined]
            if name not in names:
                continue
            t = time.perf_counter()
            res = run(pol, reqs, c, end)  # type: ignore[arg-type]
            counted = res.counted()
            out.append({
                "policy": name, "max_sleeping": n,
                "slo_windows": f"{sum(w.ok(c) for w in counted)}/{len(counted)}",
                "met": sum(w.ok(c) for w in counted), "counted": len(counted),
                "attainment_pct": round(100 * res.attainment(c), 1),
                "gpu_hours": round(res.gpu_hours, 3),
                "gpu_hours_asleep": round(res.gpu_seconds_asleep / 3600, 3),
                "starts": dict(sorted(res.starts.items())),
                "scale_events": len(res.events), "failed_requests": res.failed,
                "peak_awake": max(x[1] for x in res.timeline), "wall_s": round(time.perf_counter() - t, 1),
            })  # fmt: skip
            print(f"{name} maxSleeping={n}: {out[-1]}", flush=True)
    return out


def _fmt(v: object) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {n}" for k, n in v.items()) or "-"
    return str(v)


def markdown(title: str, rows: list[dict[str, object]], command: str) -> str:
    out = [f"Command: `{command}`", "", f"**{title}**", ""]
    out.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    out += ["| " + " | ".join(_fmt(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(out) + "\n"


def record(doc: dict[str, object], scenario: str, rows: list[dict[str, object]], command: str) -> None:
    """One entry per policy: GPU-h with sleeping / without, and the SLO windows gained (same run)."""
    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, shared (simulation)"
    date = datetime.now(UTC).date().isoformat()
    page = "docs/benchmarks-autoscale.md#sleeping-replicas-on-vs-off"
    for name in sorted({str(r["policy"]) for r in rows}):
        off, on = (
            next(r for r in rows if r["policy"] == name and (r["max_sleeping"] == 0) == z)
            for z in (True, False)
        )
        ratio = round(float(on["gpu_hours"]) / float(off["gpu_hours"]), 3)  # type: ignore[arg-type]
        gained = int(on["met"]) - int(off["met"])  # type: ignore[call-overload]
        tail = {"n": 1, "date": date, "machine": machine, "command": command, "page": page}
        doc[f"autoscale_sleep.{scenario}.{name}.gpu_hours_on_over_off"] = {
            "what": f"{scenario}, {name}: GPU-h (asleep counted as held) with maxSleeping "
                    f"{on['max_sleeping']} over maxSleeping 0, same run: {off['gpu_hours']} -> "
                    f"{on['gpu_hours']} ({on['gpu_hours_asleep']} asleep)",
            "value": ratio, "unit": "ratio", **tail, "min": ratio, "max": ratio,
        }  # fmt: skip
        doc[f"autoscale_sleep.{scenario}.{name}.slo_windows_gained"] = {
            "what": f"{scenario}, {name}: SLO windows met with sleeping minus without, same run: "
                    f"{off['slo_windows']} -> {on['slo_windows']}; starts {off['starts']} -> {on['starts']}",
            "value": gained, "unit": "windows", **tail, "min": gained, "max": gained,
        }  # fmt: skip


def write_json(path: Path, scenario: str, rows: list[dict[str, object]], command: str) -> None:
    with path.open("a+") as f:  # scenarios may run side by side: read-modify-write under a lock
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        doc = json.loads(text) if text.strip() else {}
        record(doc, scenario, rows, command)
        f.seek(0)
        f.truncate()
        f.write(json.dumps(dict(sorted(doc.items())), indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.autoscale.sleeping", description=__doc__)
    p.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    p.add_argument("--family", default=None, help="a generated trace family instead of --trace")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--rate-scale", type=float, default=4.0)
    p.add_argument("--duration", type=float, default=None, help="seconds of the trace (family: default 1800)")
    p.add_argument("--time-to-ready", type=float, default=60.0, help="start time of a created replica, s")
    p.add_argument("--max-sleeping", type=int, default=4)
    p.add_argument("--delete-after", type=float, default=1800.0, help="deleteAfterSeconds")
    p.add_argument("--policies", nargs="+", default=["ember", "ember-plan-cold", "hpa+keda"])
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--tag", default="benchmarks-autoscale-sleep", help="file name stem under --out")
    p.add_argument("--json", type=Path, default=None, help="benchmarks.json to add the entries to")
    p.add_argument(
        "--record",
        type=Path,
        nargs="+",
        default=None,
        help="only add the entries of these results files (written by earlier runs) to --json",
    )
    a = p.parse_args(argv)
    if a.record:
        for f in a.record:
            r = json.loads(f.read_text())
            write_json(a.json or Path("docs/benchmarks.json"), r["scenario"], r["rows"], r["command"])
        return 0
    if a.family:
        reqs = member(a.family, a.seed, a.duration or 1800.0)
        scenario, label = f"{a.family}-s{a.seed}", f"{a.family} seed {a.seed} (generated)"
    else:
        reqs = load_trace(a.trace, duration_s=a.duration, rate_scale=a.rate_scale)
        scenario, label = f"{a.trace.stem}-x{a.rate_scale:g}", f"{a.trace.name} x{a.rate_scale:g} rate"
    slo = targets(SLO(archetype="interactive"))
    cfg = RunConfig(time_to_ready_s=a.time_to_ready, ttft_target_s=slo.ttft_p95_s, itl_target_s=slo.itl_p95_s,
                    sleep=SleepConfig(max_sleeping=0, delete_after_s=a.delete_after))  # fmt: skip
    started = time.perf_counter()
    rows = rows_for(reqs, cfg, a.policies, a.max_sleeping)
    w = SleepTimes().wake_to_first_token_s
    title = (f"{label}, {len(reqs)} requests, {cfg.start_path} start {a.time_to_ready:g} s, wake {w:g} s, "
             f"deleteAfterSeconds {a.delete_after:g}, SLO TTFT p95 {slo.ttft_p95_s * 1000:.0f} ms / "
             f"ITL p95 {slo.itl_p95_s * 1000:.0f} ms ({time.perf_counter() - started:.0f} s wall)")  # fmt: skip
    command = "python -m bench.autoscale.sleeping " + " ".join(argv if argv is not None else sys.argv[1:])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.tag}.results.md").write_text(markdown(title, rows, command))
    res = {"title": title, "scenario": scenario, "command": command, "rows": rows}
    (a.out / f"{a.tag}.results.json").write_text(json.dumps(res, indent=1))
    print(markdown(title, rows, command))
    if a.json is not None:
        write_json(a.json, scenario, rows, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
