"""Reconcile latency at scale: N InferenceServices on the local control plane, real operator process.

Measures, for each object, the time from the API call that creates it (or patches its replicas) to
the moment its new replica pod appears in a watch stream opened by this process (the API server's
own creation event), plus the time until every replica is Ready. Prints medians, p95 and max.

    python -m bench.reconcile --objects 100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from ember_cluster import GPUNodePool, LocalCluster
from rich.console import Console
from rich.table import Table

from bench.common import PodWatch, pct, prepare
from tests.integration.conftest import eventually
from tests.integration.operator.harness import Operator, isvc_manifest


def run(n: int, workdir: Path) -> dict[str, list[float]]:
    gpus_needed = 2 * n
    pool = GPUNodePool(count=max(1, (gpus_needed + 7) // 8), gpus_per_node=8)
    with LocalCluster(workdir / "cluster", pools=(pool,), pod_ready_delay_ms=200) as c:
        k = prepare(c, "bench")
        op = Operator(c, workdir / "operator.log", EMBER_RESYNC_INTERVAL_SECONDS="5").start()
        op.wait_healthy()
        pw = PodWatch(k.core, "bench").start()
        time.sleep(1)
        created: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(n):
            m = isvc_manifest(f"s{i}", replicas=1)
            created[f"s{i}-0"] = time.monotonic()
            k.custom.create_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL, m)
        eventually(lambda: len([x for x in created if x in pw.ready]) == n, 300, 0.5, "all Ready")
        all_ready_create = time.monotonic() - t0
        patched: dict[str, float] = {}
        t1 = time.monotonic()
        for i in range(n):
            patched[f"s{i}-1"] = time.monotonic()
            k.custom.patch_namespaced_custom_object(
                GROUP, VERSION, "bench", PLURAL, f"s{i}", {"spec": {"replicas": 2}}
            )
        eventually(lambda: len([x for x in patched if x in pw.ready]) == n, 300, 0.5, "all scaled")
        all_ready_scale = time.monotonic() - t1
        pw.stop.set()
        op.stop()
        return {
            "create -> pod created (s)": [pw.seen[p] - t for p, t in created.items()],
            "scale 1->2 -> pod created (s)": [pw.seen[p] - t for p, t in patched.items()],
            "all Ready after creates (s)": [all_ready_create],
            "all Ready after scale-up (s)": [all_ready_scale],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        res = run(args.objects, Path(d))
    t = Table(title=f"Reconcile latency, {args.objects} InferenceServices (local control plane, kwok)")
    for col in ("measure", "median", "p95", "max"):
        t.add_column(col)
    for k, xs in res.items():
        t.add_row(k, f"{statistics.median(xs):.3f}", f"{pct(xs, 0.95):.3f}", f"{max(xs):.3f}")
    Console().print(t)
    print(
        yaml.safe_dump(
            {
                k: {
                    "median": round(statistics.median(v), 3),
                    "p95": round(pct(v, 0.95), 3),
                    "max": round(max(v), 3),
                }
                for k, v in res.items()
            }
        )
    )


if __name__ == "__main__":
    main()
