"""`make bench-activator`: the activator's cost in the data path, and the first request from zero.

Part 1, data path (no cluster): the activator's proxy (the same Proxy, Hold and Catalog the
`ember-activator` process runs; only its two watches are replaced by a static route) in its own
process, in front of a minimal aiohttp server in another process answering a fixed vLLM-shaped
completion (the replica stand-in must cost ~nothing, or its noise hides the proxy's). One load
generator (aiohttp, this process) measures, in the same run, direct vs through the activator:
latency at concurrency 1 (p50/p99), and requests/s at concurrency 32 (closed loop). Memory: the
activator's RSS before and after 1,000 requests are held (no replica), per 1,000.

Part 2, from zero (local control plane, real operator, real Prometheus, ember-sim replica serving
HTTP, two real activator processes; the integration test's stack): one request at zero; the time to
its answer against the replica's own time to ready (pod created -> Ready, polled every 20 ms).
Overhead = answer time - that TTR: demand push, decision, pod creation, routing, release, forward.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import record, summary

ROOT = Path(__file__).resolve().parents[2]
HOST = "chat.bench.svc.cluster.local"
BODY = {"model": "chat", "prompt": "hello", "max_tokens": 8}
ANSWER = json.dumps({"id": "cmpl-x", "object": "text_completion", "model": "chat",
                     "choices": [{"index": 0, "text": " tok" * 8, "finish_reason": "length"}]}).encode()  # fmt: skip


# ---- child processes -------------------------------------------------------------------------------


def run_upstream(port: int) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_proxy(port: int, upstream: str | None, max_held: int) -> None:
    from ember_activator.catalog import Catalog, ServiceInfo
    from ember_activator.config import Settings
    from ember_activator.hold import Hold
    from ember_activator.metrics import Metrics
    from ember_activator.proxy import Proxy

    key = ("bench", "chat")
    s = Settings(max_held_per_service=max_held, hold_timeout_seconds=600)
    cat = Catalog(services={key: ServiceInfo("restore", 10.0)})
    hold = Hold(s.max_held_per_service, s.herd_limit)
    if upstream:
        cat.routes[key] = ("replicas", {"chat-0": upstream})
        hold.set_replicas(key, cat.replicas(key))
    proxy = Proxy(s, cat, hold, Metrics.create())
    web.run_app(
        proxy.app(), host="127.0.0.1", port=port, print=None, access_log=None, handler_cancellation=True
    )


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.activator", *args], cwd=ROOT)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- load ---------------------------------------------------------------------------------------------


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            try:
                async with s.post(url + "/v1/completions", json=BODY, headers={"Host": HOST}) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


async def closed_loop(
    url: str, concurrency: int, seconds: float | None, count: int | None
) -> tuple[list[float], int]:
    lat: list[float] = []
    failed = 0
    stop = time.monotonic() + (seconds or 1e9)
    left = [count or 10**12]
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal failed
            while time.monotonic() < stop and left[0] > 0:
                left[0] -= 1
                t0 = time.perf_counter()
                async with s.post(url + "/v1/completions", json=BODY, headers={"Host": HOST}) as r:
                    await r.read()
                    if r.status != 200:
                        failed += 1
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, failed


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def data_path(rounds: int) -> dict[str, Any]:
    up_port, px_port = free_port(), free_port()
    procs = [
        spawn("upstream", "--port", str(up_port)),
        spawn("proxy", "--port", str(px_port), "--upstream", f"127.0.0.1:{up_port}"),
    ]
    try:
        direct, via = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{px_port}"
        await wait_up(direct)
        await wait_up(via)
        res: dict[str, list[float]] = {
            k: [] for k in ("p50_direct", "p50_via", "p99_direct", "p99_via", "rps_direct", "rps_via")
        }
        fails = 0
        for _ in range(rounds):
            for name, url in (("direct", direct), ("via", via)):
                lat, f = await closed_loop(url, 1, None, 2000)
                res[f"p50_{name}"].append(pct(lat, 0.5))
                res[f"p99_{name}"].append(pct(lat, 0.99))
                t0 = time.monotonic()
                lat, f2 = await closed_loop(url, 32, 5.0, None)
                res[f"rps_{name}"].append(len(lat) / (time.monotonic() - t0))
                fails += f + f2
        return {**res, "failed": fails}
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


async def memory_held(n: int) -> dict[str, Any]:
    port = free_port()
    p = spawn("proxy", "--port", str(port), "--max-held", str(n + 10))
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(url + "/v1/models", headers={"Host": "nope.example.com"}) as r:
                        if r.status == 404:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        before = rss_kib(p.pid)
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=600)) as s:
            tasks = [
                asyncio.create_task(s.post(url + "/v1/completions", json=BODY, headers={"Host": HOST}))
                for _ in range(n)
            ]
            await asyncio.sleep(3.0)
            after = rss_kib(p.pid)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"rss_before_kib": before, "rss_held_kib": after, "per_1000_kib": (after - before) * 1000 / n}
    finally:
        p.terminate()
        p.wait(10)


def _poll(kube: Any, seen: dict[str, float], done: threading.Event) -> None:
    """When the first replica pod appears and when it turns Ready (monotonic), every 20 ms."""
    from tests.integration.operator.harness import replica_pods

    while not done.is_set():
        for p in replica_pods(kube, "chat"):
            seen.setdefault("created", time.monotonic())
            if kube.pod_ready(p):
                seen.setdefault("ready", time.monotonic())
        time.sleep(0.02)


# ---- from zero ------------------------------------------------------------------------------------------


def from_zero(runs: int) -> list[dict[str, float]]:
    from ember_cluster import GPUNodePool, LocalCluster

    sys.path.insert(0, str(ROOT))
    from tests.integration.activator.test_activator import Stack, ask, at_zero
    from tests.integration.conftest import Kube

    out = []
    with tempfile.TemporaryDirectory() as wd:
        pools = (GPUNodePool(count=1, gpus_per_node=8, product="H100-80GB", prefix="gpu-h100"),)
        with LocalCluster(Path(wd) / "cluster", pools=pools, pod_ready_delay_ms=500) as c:
            crd = Kube(c, "default")
            crd.kubectl("apply", "-f", str(ROOT / "crds"))
            crd.kubectl(
                "wait",
                "--for=condition=established",
                "--timeout=30s",
                "crd/inferenceservices.serving.ember.dev",
            )
            crd.ensure_priority_class("ember-serving", 1000)
            for i in range(runs):
                ns = f"bench-{i}-{os.getpid()}"
                kube = Kube(c, ns)
                kube.core.create_namespace({"metadata": {"name": ns}})
                time.sleep(2)  # the default ServiceAccount
                run_dir = Path(wd) / f"run{i}"
                run_dir.mkdir()
                s = Stack(c, kube, run_dir)
                try:
                    at_zero(s)
                    seen: dict[str, float] = {}
                    done = threading.Event()

                    threading.Thread(target=_poll, args=(kube, seen, done), daemon=True).start()
                    t0 = time.monotonic()
                    code, _, _, took = ask(s.a.url, f"chat.{ns}.svc.cluster.local")
                    done.set()
                    ttr = seen["ready"] - seen["created"]
                    out.append({"code": code, "answer_s": took, "ttr_s": ttr, "overhead_s": took - ttr,
                                "demand_to_pod_s": seen["created"] - t0, "ready_to_answer_s": t0 + took - seen["ready"]})  # fmt: skip
                    print(json.dumps(out[-1]), flush=True)
                finally:
                    s.close()
                    kube.core.delete_namespace(ns)
    return out


# ---- main -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.activator")
    sub = p.add_subparsers(dest="cmd")
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    x = sub.add_parser("proxy")
    x.add_argument("--port", type=int, required=True)
    x.add_argument("--upstream")
    x.add_argument("--max-held", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--from-zero-runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.json")
    a = p.parse_args(argv)
    if a.cmd == "upstream":
        run_upstream(a.port)
        return 0
    if a.cmd == "proxy":
        run_proxy(a.port, a.upstream, a.max_held)
        return 0
    cmd = "make bench-activator"
    dp = asyncio.run(data_path(a.rounds))
    print(json.dumps(dp), flush=True)
    mem = asyncio.run(memory_held(1000))
    print(json.dumps(mem), flush=True)
    added50 = [v - d for v, d in zip(dp["p50_via"], dp["p50_direct"], strict=True)]
    added99 = [v - d for v, d in zip(dp["p99_via"], dp["p99_direct"], strict=True)]
    rows = [
        summary("latency p50, direct to the replica stand-in", dp["p50_direct"], "ms", cmd, 1000),
        summary("latency p50, through the activator", dp["p50_via"], "ms", cmd, 1000),
        summary("added latency p50 (through - direct, per round)", added50, "ms", cmd, 1000),
        summary("added latency p99 (through - direct, per round)", added99, "ms", cmd, 1000),
        summary("max requests/s, direct (concurrency 32)", dp["rps_direct"], "req/s", cmd),
        summary("max requests/s, through the activator (concurrency 32)", dp["rps_via"], "req/s", cmd),
        summary("activator memory per 1,000 held requests", [mem["per_1000_kib"] / 1024], "MiB", cmd),
        {"name": "failed requests in the data-path runs", "value": dp["failed"], "unit": "requests"},
    ]
    if a.from_zero_runs:
        fz = from_zero(a.from_zero_runs)
        rows += [
            summary("first request from zero: time to answer", [r["answer_s"] for r in fz], "s", cmd),
            summary(
                "first request from zero: the replica's time to ready (created -> Ready)",
                [r["ttr_s"] for r in fz],
                "s",
                cmd,
            ),
            summary(
                "first request from zero: overhead over the time to ready (target <= 0.5 s)",
                [r["overhead_s"] for r in fz],
                "s",
                cmd,
            ),
            summary(
                "first request from zero: held request to replica pod created",
                [r["demand_to_pod_s"] for r in fz],
                "s",
                cmd,
            ),
            summary(
                "first request from zero: replica Ready to answer",
                [r["ready_to_answer_s"] for r in fz],
                "s",
                cmd,
            ),
            {
                "name": "first request from zero: failed",
                "value": sum(r["code"] != 200 for r in fz),
                "unit": "requests",
                "n": len(fz),
            },
        ]
    record("activator", rows, a.out)
    for r in rows:
        print(
            f"{r['name']}: {r['value']} {r['unit']}"
            + (f" [{r['min']}-{r['max']}], n={r['n']}" if "min" in r else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
