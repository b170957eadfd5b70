"""Real helm against the real control plane, with its own helm home (no user state is touched)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember_cluster import LocalCluster

from tests.integration.conftest import Kube

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "ember"


class Helm:
    def __init__(self, cluster: LocalCluster, home: Path) -> None:
        self.bin, self.cluster = str(cluster.binaries.helm), cluster
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([self.bin, *args], env=self.env, text=True, capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout[-2000:]}"
            )
        return r

    def template(self, release: str, namespace: str, *sets: str) -> str:
        return self(
            "template", release, str(CHART), "-n", namespace, *[a for s in sets for a in ("--set", s)]
        ).stdout

    def install(self, release: str, namespace: str, *sets: str) -> None:
        self("install", release, str(CHART), "-n", namespace, *[a for s in sets for a in ("--set", s)])

    def upgrade(self, release: str, namespace: str, *sets: str) -> None:
        self(
            "upgrade",
            release,
            str(CHART),
            "-n",
            namespace,
            "--reuse-values",
            *[a for s in sets for a in ("--set", s)],
        )


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(cluster, tmp_path_factory.mktemp("helm-home"))


def docs(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


def find(manifest: str, kind: str, name: str | None = None) -> dict[str, Any]:
    for d in docs(manifest):
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise AssertionError(f"no {kind} {name or ''} in the manifest")


def token_kubeconfig(kube: Kube, service_account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token, as a pod gets)."""
    token = kube.kubectl("create", "token", service_account, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(kube.cluster.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": service_account, "user": {"token": token}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": "c", "user": service_account, "namespace": kube.ns}}
                ],
                "current-context": "c",
            }
        )
    )
    path.chmod(0o600)
    return path
