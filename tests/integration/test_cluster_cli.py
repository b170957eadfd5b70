"""`ember-cluster status`, run for real against the session's control plane and against nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ember_cluster import LocalCluster

BIN = Path(sys.executable).parent / "ember-cluster"


def status(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "--workdir", str(workdir), "status"], capture_output=True, text=True, timeout=60
    )


def test_status_of_a_running_cluster(cluster: LocalCluster) -> None:
    r = status(cluster.workdir)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        assert any(line.split()[:1] == [name] and "running" in line for line in r.stdout.splitlines()), (
            r.stdout
        )
    nodes = sum(p.count for p in cluster.pools)
    gpus = sum(p.count * p.gpus_per_node for p in cluster.pools)
    assert f"nodes: {nodes} of {nodes} Ready, {gpus} GPUs allocatable" in r.stdout, r.stdout
    assert f"kube-apiserver {cluster.server}: ok" in r.stdout, r.stdout


def test_status_without_a_cluster(tmp_path: Path) -> None:
    r = status(tmp_path)
    assert r.returncode == 1 and "not running" in r.stdout, r.stdout + r.stderr


def test_status_of_a_cluster_that_died(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = {"pids": [dead.pid], "names": ["etcd"], "server": "https://127.0.0.1:1", "kubeconfig": "k"}
    (tmp_path / "state.json").write_text(json.dumps(state))
    r = status(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "NOT RUNNING" in r.stdout and "not answering" in r.stdout, r.stdout
