"""`ember-cluster up|down|status`: the Makefile's cluster-up / cluster-down."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ember-cluster", description=__doc__)
    ap.add_argument("--workdir", default=str(default_workdir()))
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start the local control plane with fake GPU nodes")
    u.add_argument("--nodes", type=int, default=4)
    u.add_argument("--gpus", type=int, default=8)
    u.add_argument("--product", default="H100-80GB")
    u.add_argument("--ready-delay-ms", type=int, default=1000)
    u.set_defaults(fn=up)
    d = sub.add_parser("down", help="stop it")
    d.set_defaults(fn=down)
    args = ap.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
