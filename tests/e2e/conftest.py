"""kind e2e tier: tests against the one-node kind cluster `ember-e2e` built with no registry.

Create it with `make e2e-cluster` (tests/e2e/cluster.sh up), delete it with `make e2e-cluster-down`.
These tests are marked `e2e` and are deselected unless asked for (`pytest -m e2e tests/e2e`, or
EMBER_E2E=1), so a plain `pytest tests` never touches Docker or kind. They refuse to run against any
kube context other than kind-ember-e2e.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent.parent
CLUSTER = "ember-e2e"
CONTEXT = f"kind-{CLUSTER}"
NODE = f"{CLUSTER}-control-plane"


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "tests/cluster/versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if E2E_DIR in Path(str(i.path)).parents]
    for item in mine:
        item.add_marker(pytest.mark.e2e)
    asked = "e2e" in (config.getoption("markexpr") or "") or os.environ.get("EMBER_E2E") == "1"
    if mine and not asked:
        config.hook.pytest_deselected(items=mine)
        items[:] = [i for i in items if i not in mine]


class Kind:
    """kubectl, kind and docker, bound to the ember-e2e cluster and nothing else."""

    def __init__(self) -> None:
        v = versions()
        cache = Path(os.environ.get("EMBER_CACHE", Path.home() / ".cache/ember"))
        self.kubectl = str(cache / "k8s" / v["K8S_VERSION"] / "kubectl")
        self.kind = str(cache / "kind" / v["KIND_VERSION"] / "kind")
        self.kubeconfig = os.environ.get("EMBER_E2E_KUBECONFIG", str(ROOT / ".ember/e2e/kubeconfig"))

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180) -> str:
        p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout

    def k(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180) -> str:
        """kubectl with the e2e kubeconfig and, always, the e2e context."""
        cmd = (self.kubectl, "--kubeconfig", self.kubeconfig, "--context", CONTEXT, *args)
        return self.run(*cmd, input=input, check=check, timeout=timeout)

    def node_exec(self, *args: str, check: bool = True, timeout: float = 180) -> str:
        """A command on the kind node (its network namespace holds kube-proxy's rules)."""
        return self.run("docker", "exec", NODE, *args, check=check, timeout=timeout)

    def load_image(self, tag: str) -> None:
        self.run(self.kind, "load", "docker-image", tag, "--name", CLUSTER, timeout=600)

    def guard(self) -> None:
        if not Path(self.kubeconfig).exists():
            pytest.exit(f"no kubeconfig at {self.kubeconfig}: run `make e2e-cluster` first", returncode=2)
        cur = self.run(
            self.kubectl, "--kubeconfig", self.kubeconfig, "config", "current-context", check=False
        ).strip()
        if cur != CONTEXT:
            pytest.exit(
                f"refusing to run e2e tests: current context is {cur!r}, not {CONTEXT!r}", returncode=2
            )


@pytest.fixture(scope="session")
def kind_cluster() -> Kind:
    kind = Kind()
    kind.guard()
    kind.k("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
    return kind


@pytest.fixture
def namespace(kind_cluster: Kind) -> Iterator[str]:
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    kind_cluster.k("create", "namespace", ns)
    yield ns
    kind_cluster.k("delete", "namespace", ns, "--wait=false", check=False)
