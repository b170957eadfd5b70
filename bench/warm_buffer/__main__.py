"""python -m bench.warm_buffer: scale-decision-to-Ready, with and without the warm buffer.

Each run, on its own kwok GPU product and namespace:

1. one node of `--gpus-per-node` GPUs, filled by that many 1-GPU replicas of an InferenceService;
   with the buffer, `--scale-by` more GPUs of placeholders, which go Pending until the provisioner
   adds a node for them (setup, not timed: in production the buffer was built long before);
2. t0: patch spec.replicas up by `--scale-by` (the scale decision);
3. measured: t0 until every new replica is bound to a node, and until every replica is Ready; with the
   buffer also until the placeholders hold GPUs again (on a newly provisioned node) and how many
   placeholders the operator counted as preempted. Provisioned nodes have exactly `--scale-by` GPUs, so
   the only spare capacity is the buffer's.

Node provisioning is the provisioner's `--provision-s` delay after pods go Pending (a cloud GPU node
takes minutes; the default 6 s is a 60 s provisioning time scaled down 10x for the run). A replica's
own start (kwok: Running -> Ready) is `--ready-after` in both modes, so the difference is the node.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from ember.api.v1alpha1 import GROUP, PLURAL
from ember_cluster import GPUNodePool, LocalCluster
from ember_cluster.nodes import add_node
from ember_cluster.provisioner import Provisioner

from tests.integration.conftest import Kube, eventually
from tests.integration.operator.harness import Operator, isvc_manifest, patch_spec, replica_pods

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.1


def held(k: Kube, name: str, n: int) -> bool:
    ps = [
        p
        for p in k.pods(f"serving.ember.dev/component=placeholder,serving.ember.dev/inferenceservice={name}")
        if not p.metadata.deletion_timestamp
    ]
    return len(ps) == n and all(p.spec.node_name for p in ps)


def run_once(c: LocalCluster, buffer: bool, a: argparse.Namespace) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    k = Kube(c, f"bench-{tag}")
    k.core.create_namespace({"metadata": {"name": k.ns}})
    eventually(lambda: k.core.read_namespaced_service_account("default", k.ns), 30, what="default SA")
    product, base = f"BENCH-{tag}", f"bench-{tag}-0"
    add_node(k.core, base, product, a.gpus_per_node)
    n0 = a.gpus_per_node
    m = isvc_manifest("llm", replicas=n0)
    m["spec"]["resources"] = {"gpu": 1, "gpuType": product, "cpu": "1", "memory": "1Gi"}
    m["spec"]["podMetadata"] = {"annotations": {"sim.ember.dev/ready-after": a.ready_after}}
    m["spec"]["scaling"]["maxReplicas"] = n0 + a.scale_by
    if buffer:
        m["spec"]["warmBuffer"] = {
            "enabled": True,
            "idleGPUs": a.scale_by,
            "maxIdleGPUs": a.scale_by,
            "prestage": False,
        }
    # provisioned nodes are exactly as big as the scale-up (and the buffer): no spare GPUs besides it
    prov = Provisioner(
        k.core, product, gpus_per_node=a.scale_by, delay_s=a.provision_s, prefix=f"bench-{tag}-prov"
    ).start()
    try:
        k.kubectl("apply", "-f", "-", input=yaml.safe_dump(m))
        eventually(
            lambda: sum(k.pod_ready(p) for p in replica_pods(k, "llm")) == n0, 60, what="initial replicas"
        )
        if buffer:
            eventually(lambda: held(k, "llm", a.scale_by), a.provision_s + 60, what="buffer held")
        time.sleep(1.0)  # let the operator settle
        t0 = time.monotonic()
        patch_spec(k, "llm", {"replicas": n0 + a.scale_by})
        created = bound = ready = None
        while ready is None and time.monotonic() - t0 < a.provision_s + a.timeout_s:
            pods = replica_pods(k, "llm")
            if created is None and len(pods) == n0 + a.scale_by:
                created = time.monotonic() - t0
            if bound is None and len(pods) == n0 + a.scale_by and all(p.spec.node_name for p in pods):
                bound = time.monotonic() - t0
            if len(pods) == n0 + a.scale_by and all(k.pod_ready(p) for p in pods):
                ready = time.monotonic() - t0
            time.sleep(POLL_S)
        out = {
            key: round(v if v is not None else float("nan"), 2)
            for key, v in (("created_s", created), ("bound_s", bound), ("ready_s", ready))
        }
        if buffer:
            eventually(lambda: held(k, "llm", a.scale_by), a.provision_s + 60, what="buffer rebuilt")
            out["buffer_rebuilt_s"] = round(time.monotonic() - t0, 2)
            st = k.custom.get_namespaced_custom_object(GROUP, "v1alpha1", k.ns, PLURAL, "llm")["status"]
            out["preemptions"] = float(st["warmBuffer"]["preemptions"])
        return out
    finally:
        # pods first, nodes after: a pod bound to a deleted node waits ~40 s for the pod GC, and a
        # half-deleted node confuses the next run's scheduling
        prov.stop(delete_nodes=False)
        k.core.delete_namespace(k.ns)
        eventually(lambda: not k.pods(), 60, what="benchmark pods gone")
        for node in [base, *(n for n, _ in prov.added)]:
            k.core.delete_node(node)


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.warm_buffer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=3, help="runs per mode (the median is reported)")
    p.add_argument("--provision-s", type=float, default=6.0, help="simulated node provisioning time, s")
    p.add_argument("--ready-after", default="1s", help="replica start time on its node (kwok, Go duration)")
    p.add_argument("--scale-by", type=int, default=2, help="replicas added by the scale decision")
    p.add_argument("--gpus-per-node", type=int, default=4)
    p.add_argument("--timeout-s", type=float, default=60.0, help="give up on a run after provisioning + this")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as wd:
        pools = (GPUNodePool(count=1, gpus_per_node=1, product="BENCH-UNUSED", prefix="bench-unused"),)
        with LocalCluster(Path(wd), pools=pools, pod_ready_delay_ms=500) as c:
            k = Kube(c, "default")
            k.kubectl("apply", "-f", str(ROOT / "crds"))
            k.kubectl("wait", "--for=condition=established", "--timeout=30s", f"crd/{PLURAL}.{GROUP}")
            k.ensure_priority_class("ember-serving", 1000)
            k.ensure_priority_class("ember-warm-buffer", -10, never=True)
            op = Operator(c, Path(wd) / "operator.log").start()
            op.wait_healthy()
            try:
                res: dict[str, list[dict[str, float]]] = {"without_buffer": [], "with_buffer": []}
                for i in range(a.runs):
                    for mode in res:
                        r = run_once(c, mode == "with_buffer", a)
                        res[mode].append(r)
                        print(f"run {i + 1}/{a.runs} {mode}: {r}", flush=True)
            finally:
                op.stop()
    report = {
        "params": {k: str(v) for k, v in vars(a).items()},
        "runs": res,
        "median": {m: summarize(r) for m, r in res.items()},
    }
    print(json.dumps(report["median"], indent=2))
    if a.out:
        a.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
