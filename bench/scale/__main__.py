"""`make bench-scale`: one operator process against many InferenceServices (issue 21 item 2).

The local control plane (real kube-apiserver, etcd, scheduler, controller-manager; kwok runs the fake
GPU nodes and their pods) with N InferenceServices of R replicas each (kwok pods: they expose no
metrics) in one namespace, the real operator as a subprocess with its own identity (user
`ember-operator`, bound to cluster-admin), and a real Prometheus it queries (no series in it: every
answer is empty, so the autoscaler holds and minReplicas sets the count). Measured:

- operator RSS (peak of /proc/<pid>/status VmRSS, sampled every second) and CPU (/proc/<pid>/stat
  utime + stime, in cores) per phase: creating everything, steady state, scale events, restart;
- API requests per second from the operator: the API server's own API Priority and Fairness counter
  (apiserver_flowcontrol_dispatched_requests_total), split by FlowSchemas that match only the user
  `ember-operator` (status writes, Events, pod writes, reads and watches, other writes; the level is
  workload-low, what a ServiceAccount gets by default). The API server has no per-client request
  counter otherwise;
- Prometheus queries per decision interval: Prometheus's own prometheus_http_requests_total for
  /api/v1/query (nobody else queries it);
- decision latency: spec.scaling.minReplicas raised by one on a sample of services (paced) ->
  the new replica pod's ADDED event in this process's watch, p50/p99;
- restart to converged: SIGKILL; meanwhile every service's spec changes (maxReplicas, a new
  generation) and one replica pod of some services is deleted; a new operator process; the time
  until every service has status.observedGeneration = generation, Synced True, replicas = ready =
  wanted, every wanted pod exists and is Ready (and then, for a quiet period, nothing changes).

    python -m bench.scale --services 500 --replicas 4 --nodes 300
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import ROOT, PodWatch, ProcSampler, pct, prepare, record, summary

NS = "bench"
USER = "ember-operator"
# FlowSchemas for the operator's user only, most specific first (lower precedence is matched first);
# all at workload-low, the level the default `service-accounts` FlowSchema gives a ServiceAccount
FLOWS: tuple[tuple[str, list[dict[str, Any]], list[dict[str, Any]]], ...] = (
    ("status-writes", [{"verbs": ["patch", "update"], "apiGroups": ["serving.ember.dev"],
                        "resources": ["inferenceservices/status"], "namespaces": ["*"]}], []),
    ("events", [{"verbs": ["create", "patch", "update"], "apiGroups": ["", "events.k8s.io"],
                 "resources": ["events"], "namespaces": ["*"]}], []),
    ("pod-writes", [{"verbs": ["create", "delete", "patch", "update"], "apiGroups": [""],
                     "resources": ["pods"], "namespaces": ["*"]}], []),
    ("reads", [{"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"],
                "clusterScope": True, "namespaces": ["*"]}], [{"verbs": ["get"], "nonResourceURLs": ["*"]}]),
    ("other-writes", [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True,
                       "namespaces": ["*"]}], [{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
)  # fmt: skip


def flow_manifests() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "ember-bench-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}
    ]  # fmt: skip
    for i, (name, resource_rules, non_resource_rules) in enumerate(FLOWS):
        out.append(
            {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": f"ember-bench-{name}"},
                "spec": {
                    "matchingPrecedence": 200 + 10 * i,
                    "priorityLevelConfiguration": {"name": "workload-low"},
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [
                        {
                            "subjects": [{"kind": "User", "user": {"name": USER}}],
                            "resourceRules": resource_rules,
                            **({"nonResourceRules": non_resource_rules} if non_resource_rules else {}),
                        }
                    ],
                },
            }
        )
    return out


def parse_counters(text: str, name: str, label: str) -> dict[str, float]:
    """Sum of a Prometheus-text counter's samples by one label's value."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                k = s.labels.get(label, "")
                out[k] = out.get(k, 0.0) + s.value
    return out


class Counters:
    """The API server's per-FlowSchema dispatch counts and Prometheus's query count, read together."""

    def __init__(self, cluster: Any, prom_url: str) -> None:
        pki = cluster.workdir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.api = httpx.Client(base_url=cluster.server, verify=ctx, timeout=30)
        self.prom_url = prom_url

    def read(self) -> dict[str, float]:
        t = time.monotonic()
        fs = parse_counters(
            self.api.get("/metrics").text, "apiserver_flowcontrol_dispatched_requests_total", "flow_schema"
        )
        out = {name: fs.get(f"ember-bench-{name}", 0.0) for name, _, _ in FLOWS}
        prom = parse_counters(
            httpx.get(f"{self.prom_url}/metrics", timeout=10).text,
            "prometheus_http_requests_total",
            "handler",
        )
        out["prometheus_queries"] = prom.get("/api/v1/query", 0.0) + prom.get("/api/v1/query_range", 0.0)
        out["t"] = t
        return out


def rates(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    dt = b["t"] - a["t"]
    out = {k: round((b[k] - a[k]) / dt, 2) for k in a if k != "t"}
    out["api_total"] = round(sum(out[n] for n, _, _ in FLOWS), 2)
    out["seconds"] = round(dt, 1)
    return out


def isvc_manifest(name: str, replicas: int) -> dict[str, Any]:
    from tests.integration.operator.harness import isvc_manifest as base

    return base(
        name,
        scaling={"minReplicas": replicas, "maxReplicas": 8, "drainTimeoutSeconds": 1},
        podMetadata={"annotations": {"sim.ember.dev/ready-after": "300ms"}},
    )


def list_isvcs(kube: Any) -> list[dict[str, Any]]:
    from ember.api.v1alpha1 import GROUP, PLURAL, VERSION

    resp = kube.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, _preload_content=False)
    return list(json.loads(resp.data)["items"])


def not_converged(items: list[dict[str, Any]], pw: PodWatch) -> list[str]:
    """Services not yet converged: status current and counts right, and their pods there and Ready."""
    bad = []
    by_service: dict[str, list[bool]] = {}
    for name, ready in list(pw.live.items()):
        by_service.setdefault(name.rsplit("-", 1)[0], []).append(ready)
    for o in items:
        name, st = o["metadata"]["name"], o.get("status") or {}
        want = o["spec"]["scaling"]["minReplicas"]
        synced = any(c["type"] == "Synced" and c["status"] == "True" for c in st.get("conditions") or [])
        pods = by_service.get(name, [])
        if not (
            st.get("observedGeneration") == o["metadata"]["generation"]
            and synced
            and st.get("replicas") == st.get("readyReplicas") == st.get("desiredReplicas") == want
            and len(pods) == want
            and all(pods)
        ):
            bad.append(name)
    return bad


def wait_converged(kube: Any, pw: PodWatch, timeout_s: float, what: str) -> float:
    """Poll (every second) until every service converged; returns the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    bad: list[str] = []
    while time.monotonic() < deadline:
        t = time.monotonic()
        bad = not_converged(list_isvcs(kube), pw)
        if not bad:
            return t
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
    raise AssertionError(f"{what}: {len(bad)} services not converged after {timeout_s} s, e.g. {bad[:5]}")


def run(a: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
    from ember_cluster import GPUNodePool, LocalCluster
    from ember_cluster.procs import free_port
    from ember_cluster.prometheus import Prometheus

    from tests.integration.operator.harness import Operator

    n, r = a.services, a.replicas
    res: dict[str, Any] = {"services": n, "replicas_per_service": r, "nodes": a.nodes,
                           "gpus_per_node": a.gpus_per_node, "phases": {}}  # fmt: skip
    say = lambda *m: print(f"[{time.strftime('%H:%M:%S')}]", *m, flush=True)  # noqa: E731
    t = time.monotonic()
    pool = GPUNodePool(count=a.nodes, gpus_per_node=a.gpus_per_node)
    with (
        LocalCluster(workdir / "cluster", pools=(pool,), pod_ready_delay_ms=200) as c,
        Prometheus(workdir / "prometheus") as prom,
    ):
        res["cluster_start_s"] = round(time.monotonic() - t, 1)
        say(f"cluster up with {a.nodes} nodes in {res['cluster_start_s']} s")
        k = prepare(c, NS)
        k.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(flow_manifests()))
        counters = Counters(c, prom.url)
        env = {
            "EMBER_NAMESPACES": json.dumps([NS]),
            "EMBER_PROMETHEUS_URL": prom.url,
            "EMBER_RESYNC_INTERVAL_SECONDS": "5",  # the default (the harness's is 1 s)
            "EMBER_METRICS_PORT": str(free_port()),
        }
        logs = workdir / "operator.log"
        op = Operator(c, logs, kubeconfig=c.operator_kubeconfig, **env).start()
        op.wait_healthy()
        assert op.proc is not None
        sampler = ProcSampler(op.proc.pid).start()
        pw = PodWatch(k.core, NS).start()
        time.sleep(2)

        def phase(name: str, t0: float, c0: dict[str, float], t1: float, **extra: Any) -> dict[str, Any]:
            c1 = counters.read()
            p = {**sampler.window(t0, t1), **rates(c0, c1), **extra}
            p["rss_peak_mib"] = round(p["rss_peak_mib"], 1)
            p["cpu_cores"] = round(p["cpu_cores"], 3)
            res["phases"][name] = p
            say(name, json.dumps(p))
            return c1

        # 1. create every service; the operator creates n * r pods
        c0, t0 = counters.read(), time.monotonic()
        for i in range(n):
            k.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, isvc_manifest(f"s{i}", r))
        say(f"{n} InferenceServices created in {time.monotonic() - t0:.1f} s")
        t1 = wait_converged(k, pw, a.timeout, "initial")
        res["create_to_converged_s"] = round(t1 - t0, 1)
        c0 = phase("create", t0, c0, time.monotonic(), converged_s=res["create_to_converged_s"])

        # 2. steady state: nothing changes
        t0 = time.monotonic()
        time.sleep(a.steady)
        c0 = phase("steady", t0, c0, time.monotonic())
        res["prometheus_queries_per_interval"] = round(res["phases"]["steady"]["prometheus_queries"] * 5, 1)

        # 3. scale events: minReplicas + 1 on a sample, paced
        sample = [f"s{i}" for i in range(0, n, max(1, n // a.sample))][: a.sample]
        patched: dict[str, float] = {}
        t0 = time.monotonic()
        for j, name in enumerate(sample):
            time.sleep(max(0.0, t0 + j / a.rate - time.monotonic()))
            patched[name] = time.monotonic()
            k.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, name, {"spec": {"scaling": {"minReplicas": r + 1}}}
            )

        def new_pod(name: str) -> float | None:
            ts = [s for p, s in list(pw.seen.items()) if p.rsplit("-", 1)[0] == name and s >= patched[name]]
            return min(ts) if ts else None

        deadline = time.monotonic() + a.timeout
        while any(new_pod(s) is None for s in sample) and time.monotonic() < deadline:
            time.sleep(0.5)
        lat = [p - patched[s] for s in sample if (p := new_pod(s)) is not None]
        res["decision_latency_s"] = lat
        res["decision_missing"] = len(sample) - len(lat)
        t1 = wait_converged(k, pw, a.timeout, "after scale-up")
        c0 = phase("scale", t0, c0, time.monotonic(), scale_events=len(sample), rate_per_s=a.rate)
        say(f"decision latency p50 {pct(lat, 0.5):.3f} s p99 {pct(lat, 0.99):.3f} s (n={len(lat)})")

        # 4. restart: SIGKILL, changes while it is down, a new process
        op.kill()
        killed = time.monotonic()
        for o in list_isvcs(k):
            k.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, o["metadata"]["name"], {"spec": {"scaling": {"maxReplicas": 9}}}
            )
        deleted = [f"s{i}-0" for i in range(0, n, max(1, n // a.delete))][: a.delete]
        for p in deleted:
            k.core.delete_namespaced_pod(p, NS)
        while any(p not in pw.deleted or pw.deleted[p] < killed for p in deleted):
            time.sleep(0.2)
        say(f"operator killed; {n} specs changed, {len(deleted)} pods deleted")
        c0, t0 = counters.read(), time.monotonic()
        op.start()
        sampler = ProcSampler(op.proc.pid).start()
        op.wait_healthy(120)
        healthy = time.monotonic() - t0
        t1 = wait_converged(k, pw, a.timeout, "after restart")
        res["restart_to_converged_s"] = round(t1 - t0, 1)
        res["restart_to_healthy_s"] = round(healthy, 1)
        quiet_from = time.monotonic()
        time.sleep(a.quiet)
        res["pod_changes_after_converged"] = int(pw.last_change > quiet_from)
        res["still_converged"] = not not_converged(list_isvcs(k), pw)
        phase("restart", t0, c0, time.monotonic(), converged_s=res["restart_to_converged_s"])
        res["operator_log_lines"] = sum(1 for _ in logs.open(errors="replace"))
        pw.stop.set()
        sampler.stop.set()
        op.stop()
    return res


def rows(res: dict[str, Any], cmd: str) -> list[dict[str, Any]]:
    size = f"{res['services']} InferenceServices x {res['replicas_per_service']} replicas on {res['nodes']} kwok nodes"
    ph = res["phases"]
    lat = res["decision_latency_s"]

    def one(name: str, v: float, unit: str) -> dict[str, Any]:
        return summary(f"{name} ({size})", [v], unit, cmd)

    out = [
        one("operator RSS, peak over the run (target <= 300 MB)",
            max(p["rss_peak_mib"] for p in ph.values()), "MiB"),
        one("operator CPU, steady state", ph["steady"]["cpu_cores"], "cores"),
        one("operator CPU, while creating everything", ph["create"]["cpu_cores"], "cores"),
        one("API requests/s from the operator, steady state", ph["steady"]["api_total"], "req/s"),
        one("status writes/s from the operator, steady state", ph["steady"]["status-writes"], "req/s"),
        one("API requests/s from the operator, while creating everything", ph["create"]["api_total"], "req/s"),
        one("API requests/s from the operator, restart to converged", ph["restart"]["api_total"], "req/s"),
        one("Prometheus queries per decision interval (5 s), steady state",
            res["prometheus_queries_per_interval"], "queries"),
        {**summary(f"decision latency p50: minReplicas +1 -> replica pod created ({size})", lat, "s", cmd),
         "value": round(pct(lat, 0.5), 3)},
        {**summary(f"decision latency p99 (target <= 2 s) ({size})", lat, "s", cmd),
         "value": round(pct(lat, 0.99), 3)},
        one("restart (SIGKILL, new process) to converged (target <= 30 s)", res["restart_to_converged_s"], "s"),
        one("create all to converged", res["create_to_converged_s"], "s"),
    ]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=500)
    p.add_argument("--replicas", type=int, default=4, help="minReplicas of each")
    p.add_argument("--nodes", type=int, default=300)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--sample", type=int, default=100, help="services scaled up by one (decision latency)")
    p.add_argument("--rate", type=float, default=10.0, help="scale events per second")
    p.add_argument("--delete", type=int, default=50, help="replica pods deleted while the operator is down")
    p.add_argument("--steady", type=float, default=60.0, help="seconds of steady state measured")
    p.add_argument("--quiet", type=float, default=15.0, help="seconds watched for changes after converged")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    p.add_argument("--results", type=Path, default=None, help="also write the raw results (JSON) here")
    p.add_argument("--no-record", action="store_true", help="do not update docs/benchmarks.json")
    a = p.parse_args(argv)
    a.sample, a.delete = min(a.sample, a.services), min(a.delete, a.services)
    need = a.services * a.replicas + a.sample
    if a.nodes * a.gpus_per_node < need:
        p.error(f"{a.nodes} nodes x {a.gpus_per_node} GPUs < {need} GPUs needed")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as d:
        try:
            res = run(a, Path(d))
        except BaseException:
            log = Path(d) / "operator.log"
            if log.exists():
                print(
                    "---- operator log (tail)\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                )
            raise
    cmd = f"make bench-scale  # python -m bench.scale --services {a.services} --replicas {a.replicas} --nodes {a.nodes}"
    out = rows(res, cmd)
    if a.results:
        a.results.write_text(json.dumps(res, indent=1) + "\n")
    if not a.no_record:
        # the issue's size under "scale", other sizes beside it
        default = (a.services, a.replicas) == (500, 4)
        record("scale" if default else f"scale_{a.services}x{a.replicas}", out, a.out)
    for row in out:
        print(
            f"{row['name']}: {row['value']} {row['unit']}"
            + (f" [{row['min']}-{row['max']}], n={row['n']}" if row["n"] > 1 else "")
        )
    print(json.dumps({k: v for k, v in res.items() if k != "decision_latency_s"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
