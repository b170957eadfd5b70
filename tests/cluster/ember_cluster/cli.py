"""`ember-cluster up|down|status`: the Makefile's cluster-up / cluster-down, and what is running."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from ember_cluster.cluster import ComponentFailed, GPUNodePool, LocalCluster


def default_workdir() -> Path:
    return Path(os.environ.get("EMBER_CLUSTER_DIR", ".ember/cluster")).resolve()


def up(args: argparse.Namespace) -> int:
    wd = Path(args.workdir)
    if (wd / "state.json").exists():
        print(f"ember-cluster: already up (state in {wd}); `make cluster-down` first", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    c = LocalCluster(
        wd,
        pools=(GPUNodePool(count=args.nodes, gpus_per_node=args.gpus, product=args.product),),
        pod_ready_delay_ms=args.ready_delay_ms,
    )
    try:
        c.start()
    except ComponentFailed as e:
        print(f"ember-cluster: {e}", file=sys.stderr)
        return 1
    # Leave the processes running for later commands: forget them in this process only.
    c.procs.clear()
    print(f"ember-cluster: up in {time.monotonic() - t0:.1f}s; export KUBECONFIG={c.kubeconfig}")
    subprocess.run(
        [
            str(c.binaries.kubectl),
            f"--kubeconfig={c.kubeconfig}",
            "get",
            "nodes",
            "-L",
            "nvidia.com/gpu.product",
            "-o",
            "wide",
        ],
        check=False,
    )
    return 0


def down(args: argparse.Namespace) -> int:
    stopped = LocalCluster.stop_from_state(Path(args.workdir))
    print("ember-cluster: stopped" if stopped else "ember-cluster: nothing running")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _api(wd: Path, server: str, path: str) -> Any:
    """GET from the API server as the admin (the client certificate `up` issued)."""
    pki = wd / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    r = httpx.get(f"{server}{path}", verify=ctx, timeout=5)
    r.raise_for_status()
    return r.json() if path.startswith("/api") else r.text


def status(args: argparse.Namespace) -> int:
    """0 when every component runs and the API server is ready; 1 otherwise, saying what is wrong."""
    wd = Path(args.workdir)
    state_file = wd / "state.json"
    if not state_file.exists():
        print(f"ember-cluster: not running (no state in {wd}); `make cluster-up` starts it")
        return 1
    state = json.loads(state_file.read_text())
    pids = [int(p) for p in state["pids"]]
    names = state.get("names") or [f"pid {p}" for p in pids]
    ok = True
    for name, pid in zip(names, pids, strict=True):
        alive = _alive(pid)
        ok &= alive
        print(f"  {name:<24} pid {pid:<8} {'running' if alive else 'NOT RUNNING'}")
    try:
        ready = _api(wd, state["server"], "/readyz").strip()
        nodes = _api(wd, state["server"], "/api/v1/nodes")["items"]
    except (httpx.HTTPError, OSError) as e:
        print(f"  kube-apiserver {state['server']}: not answering ({e})")
        return 1
    ready_nodes = [
        n
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    gpus = sum(int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", 0)) for n in ready_nodes)
    print(f"  kube-apiserver {state['server']}: {ready}")
    print(f"  nodes: {len(ready_nodes)} of {len(nodes)} Ready, {gpus} GPUs allocatable")
    print(f"  export KUBECONFIG={state['kubeconfig']}")
    return 0 if ok and ready == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ember-cluster", description=__doc__)
    ap.add_argument("--version", action="version", version=f"%(prog)s {version('ember-cluster')}")
    ap.add_argument(
        "--workdir",
        default=str(default_workdir()),
        help="state, certificates and logs (default: $EMBER_CLUSTER_DIR or .ember/cluster)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start the local control plane with fake GPU nodes")
    u.add_argument("--nodes", type=int, default=4, help="fake GPU nodes (default: %(default)s)")
    u.add_argument("--gpus", type=int, default=8, help="GPUs per node (default: %(default)s)")
    u.add_argument("--product", default="H100-80GB", help="nvidia.com/gpu.product (default: %(default)s)")
    u.add_argument(
        "--ready-delay-ms",
        type=int,
        default=1000,
        help="a pod's time from Running to Ready on a fake node (default: %(default)s)",
    )
    u.set_defaults(fn=up)
    d = sub.add_parser("down", help="stop it")
    d.set_defaults(fn=down)
    s = sub.add_parser("status", help="which components run, API server readiness, Ready nodes")
    s.set_defaults(fn=status)
    args = ap.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
