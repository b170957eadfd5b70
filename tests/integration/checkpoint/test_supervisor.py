"""The supervisor as a real process, with the counter server as its engine and real CRIU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember_checkpoint.criu import Criu
from ember_checkpoint.manifest import Canary
from ember_checkpoint.testing import counter_server_argv, free_port, get, port_is_free
from ember_supervisor.config import SupervisorConfig
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration
TOKEN = "integration-token"  # what the operator puts in the pod from the service's Secret
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Sup:
    def __init__(self, cfg: SupervisorConfig, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        path = tmp / f"supervisor-{os.urandom(3).hex()}.json"
        path.write_text(cfg.model_dump_json())
        self.log = path.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ember_supervisor.main", "--config", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "EMBER_SUPERVISOR_TOKEN": TOKEN, **(env or {})},
            )
        self.url = f"http://127.0.0.1:{cfg.listen_port}"
        self.startup = self._wait_started()

    def _wait_started(self) -> dict[str, object]:
        for _ in range(400):
            try:
                s = httpx.get(self.url + "/startup", timeout=2.0).json()
                if s["path"] != "pending":
                    return dict(s)
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise TimeoutError(self.log.read_text())

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def cfg(tmp_path: Path, criu: Criu) -> SupervisorConfig:
    port = free_port()
    return SupervisorConfig(
        engine_argv=counter_server_argv(port),
        engine_port=port,
        identity={
            "model_digest": "sha256:m",
            "engine_version": "counter 1",
            "dtype": "float32",
            "max_model_len": 128,
        },
        checkpoint_dir=tmp_path / "ckpt",
        state_dir=tmp_path / "state",
        listen_port=free_port(),
        canary=Canary(path="/state"),
    )


@pytest.fixture
def sups() -> Iterator[list[Sup]]:
    started: list[Sup] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.stop()


def why_not_restored(startup: dict[str, object]) -> str:
    """The fallback's reason and the end of CRIU's log, where the cause is."""
    return f"{startup.get('path')}: {startup.get('fallback_reason')}: {str(startup.get('fallback_detail'))[-1500:]}"


def checkpointed_at_3(cfg: SupervisorConfig, tmp: Path, sups: list[Sup]) -> dict[str, object]:
    first = Sup(cfg, tmp)
    sups.append(first)
    assert first.startup["path"] == "cold" and first.startup["why"] == "no usable checkpoint"
    for _ in range(3):
        get(cfg.engine_port, "/inc")
    # only the operator may act: without its token, or with another, nothing is dumped
    assert httpx.post(first.url + "/checkpoint", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer someone-elses"}
    assert httpx.post(first.url + "/checkpoint", headers=wrong, timeout=10).status_code == 401
    assert first.metric("ember_supervisor_checkpoints_total", result="failed") == 0
    r = httpx.post(first.url + "/checkpoint", headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert manifest["verification"]["verified"], manifest
    assert get(cfg.engine_port, "/inc") == "4"  # it kept serving
    assert first.metric("ember_supervisor_checkpoints_total", result="verified") == 1
    assert first.stop() == 0
    assert port_is_free(cfg.engine_port)
    return dict(manifest)


def test_a_new_supervisor_restores_the_verified_checkpoint_with_its_state(
    cfg: SupervisorConfig, tmp_path: Path, sups: list[Sup]
) -> None:
    manifest = checkpointed_at_3(cfg, tmp_path, sups)
    second = Sup(cfg, tmp_path)
    sups.append(second)
    assert (
        second.startup["path"] == "restore" and second.startup["checkpoint_id"] == manifest["checkpoint_id"]
    ), why_not_restored(second.startup)
    assert get(cfg.engine_port, "/state") == "3"
    assert httpx.get(second.url + "/healthz").status_code == 200
    assert second.metric("ember_supervisor_start_path_total", path="restore") == 1
    phases = second.startup["phases_s"]
    assert isinstance(phases, dict) and phases["restore_criu_restore"] > 0
    assert second.metric("ember_supervisor_start_phase_seconds", phase="restore_criu_restore") > 0
    print(f"\nsupervisor restore phases: {phases}")


def _corrupt(cfg: SupervisorConfig) -> None:
    assert cfg.checkpoint_dir is not None
    pages = max(cfg.checkpoint_dir.glob("*/images/pages-*.img"), key=lambda p: p.stat().st_size)
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "breakage,reason",
    [("corrupt", "checksum_mismatch"), ("identity", "identity_mismatch"), ("no-criu", "criu_missing")],
    ids=["corrupted-image", "wrong-identity", "criu-missing"],
)
def test_a_failed_restore_falls_back_to_cold_once_and_says_why(
    cfg: SupervisorConfig, tmp_path: Path, sups: list[Sup], breakage: str, reason: str
) -> None:
    checkpointed_at_3(cfg, tmp_path, sups)
    env = {}
    if breakage == "corrupt":
        _corrupt(cfg)
    elif breakage == "identity":
        cfg = cfg.model_copy(update={"identity": {**cfg.identity, "max_model_len": 4096}})
    else:
        env = {"EMBER_CRIU": str(tmp_path / "no-criu-here")}

    second = Sup(cfg, tmp_path, env)
    sups.append(second)

    assert second.startup["path"] == "cold" and second.startup["fallback_reason"] == reason
    assert get(cfg.engine_port, "/state") == "0"  # a fresh cold engine
    assert second.metric("ember_supervisor_restore_failures_total", reason=reason) == 1
    failure = json.loads((cfg.state_dir / "restore-failure.json").read_text())
    assert failure["last"]["reason"] == reason
    assert '"restore_failed_falling_back_to_cold"' in second.log.read_text()
    assert second.stop() == 0

    # A container restart in the same pod does not try the same checkpoint again: no loop.
    third = Sup(cfg, tmp_path, env)
    sups.append(third)
    assert third.startup["path"] == "cold" and third.startup["fallback_reason"] is None
    assert third.metric("ember_supervisor_restore_failures_total", reason=reason) == 0


# ------------------------------------------------ the dump of an engine with sleep mode (issue 20)


def asleep_cfg(cfg: SupervisorConfig) -> SupervisorConfig:
    """The counter engine with vLLM's sleep-mode routes, dumped asleep at level 2 (what `auto` picks for
    a vLLM with --enable-sleep-mode on a GPU), out of the Service for 1 s first; the canary is a
    completion, which a woken engine answers wrongly until its weights are reloaded."""
    return cfg.model_copy(
        update={
            "engine_argv": [*cfg.engine_argv, "--sleep-mode"],
            "checkpoint_sleep_level": 2,
            "checkpoint_unready_s": 1.0,
            "canary": Canary(method="POST", path="/v1/completions", body="{}", json_field="choices.0.text"),
        }
    )


def completion(port: int) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={}, timeout=5.0)


def test_an_engine_with_sleep_mode_is_dumped_asleep_out_of_the_service_then_woken_and_restored_elsewhere(
    cfg: SupervisorConfig, tmp_path: Path, sups: list[Sup]
) -> None:
    cfg = asleep_cfg(cfg)
    first = Sup(cfg, tmp_path)
    sups.append(first)
    for _ in range(3):
        get(cfg.engine_port, "/inc")
    seen: list[tuple[int, str, int]] = []  # (healthz code, state, completion code) while the dump runs
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            h = httpx.get(first.url + "/healthz", timeout=5.0)
            seen.append((h.status_code, h.json()["state"], completion(cfg.engine_port).status_code))
            time.sleep(0.05)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    r = httpx.post(first.url + "/checkpoint", headers=AUTH, timeout=120)
    done.set()
    w.join()
    assert r.status_code == 200, r.text
    manifest = r.json()
    assert manifest["engine_sleep_level"] == 2 and manifest["verification"]["verified"], manifest
    assert [s["path"] for s in manifest["after_restore"]] == ["/wake_up", "/collective_rpc"]
    # out of the Service (/healthz 503, state checkpointing) while the engine still served, before it slept
    assert (503, "checkpointing", 200) in seen, seen
    assert all(code == 503 for code, state, _ in seen if state == "checkpointing"), seen
    # the original was put to sleep once, woken once, its weights reloaded once, and serves as before
    assert json.loads(get(cfg.engine_port, "/calls")) == {"sleep": 1, "wake_up": 1, "reload": 1, "rpc": 2}
    assert completion(cfg.engine_port).json()["choices"][0]["text"] == "count is 3"
    h = httpx.get(first.url + "/healthz", timeout=5.0)
    assert h.status_code == 200 and h.json()["state"] == "serving"
    assert first.stop() == 0
    # a new pod restores the asleep image and wakes it, with the reload, before it serves
    second = Sup(cfg, tmp_path)
    sups.append(second)
    assert second.startup["path"] == "restore", why_not_restored(second.startup)
    assert completion(cfg.engine_port).json()["choices"][0]["text"] == "count is 3"
    assert httpx.get(second.url + "/healthz").status_code == 200


def test_a_dump_that_fails_after_the_sleep_wakes_the_engine_and_it_serves_again(
    cfg: SupervisorConfig, tmp_path: Path, sups: list[Sup], criu: Criu
) -> None:
    # the fault: CRIU's dump fails (its other commands work), after the engine was put to sleep
    wrapper = tmp_path / "criu-dump-fails"
    wrapper.write_text(
        f'#!/bin/sh\n[ "$1" = dump ] && {{ echo "injected dump failure" >&2; exit 1; }}\nexec {" ".join(criu.argv)} "$@"\n'
    )
    wrapper.chmod(0o755)
    cfg = asleep_cfg(cfg).model_copy(update={"checkpoint_unready_s": 0.0})
    first = Sup(cfg, tmp_path, env={"EMBER_CRIU": str(wrapper)})
    sups.append(first)
    get(cfg.engine_port, "/inc")
    r = httpx.post(first.url + "/checkpoint", headers=AUTH, timeout=120)
    assert r.status_code == 500 and "criu dump failed" in r.text, r.text
    assert json.loads(get(cfg.engine_port, "/calls")) == {"sleep": 1, "wake_up": 1, "reload": 1, "rpc": 2}
    assert completion(cfg.engine_port).json()["choices"][0]["text"] == "count is 1"
    h = httpx.get(first.url + "/healthz", timeout=5.0)
    assert h.status_code == 200 and h.json()["state"] == "serving", h.text
    assert first.metric("ember_supervisor_checkpoints_total", result="failed") == 1
