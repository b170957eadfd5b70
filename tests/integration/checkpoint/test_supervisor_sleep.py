"""Sleeping replicas through the real supervisor process, with the counter server as its engine (real
processes, real cgroup v2 freezer and signals; the real vLLM engine is in test_vllm_cpu_sleep.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ember_checkpoint.criu import process_tree
from ember_checkpoint.manifest import Canary
from ember_checkpoint.testing import counter_server_argv, free_port, get
from ember_supervisor import freeze
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.procs import running
from ember_supervisor.testing import SupervisorProcess, tree_cpu_seconds

pytestmark = pytest.mark.integration


def _cfg(tmp: Path, method: str) -> SupervisorConfig:
    port = free_port()
    return SupervisorConfig(
        engine_argv=counter_server_argv(port),
        engine_port=port,
        identity={"model_digest": "sha256:m", "engine_version": "counter 1"},
        checkpoint_dir=tmp / "ckpt",
        state_dir=tmp / "state",
        listen_port=free_port(),
        canary=Canary(path="/state"),
        freeze_method=method,  # type: ignore[arg-type]
        wake_canary=True,
        wake_timeout_s=10.0,
    )


@pytest.fixture
def sups() -> Iterator[list[SupervisorProcess]]:
    started: list[SupervisorProcess] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.stop()


def _methods() -> list[str]:
    return ["cgroup", "signal"] if freeze.cgroup_freezer(freeze.own_cgroup_dir()) else ["signal"]


@pytest.mark.parametrize("method", _methods())
def test_a_frozen_engine_uses_no_cpu_and_wakes_with_its_state(
    tmp_path: Path, sups: list[SupervisorProcess], method: str
) -> None:
    sup = SupervisorProcess(_cfg(tmp_path, method), tmp_path)
    sups.append(sup)
    port = sup.cfg.engine_port
    for _ in range(3):
        get(port, "/inc")

    r = sup.post("/sleep", {"tier": "freeze"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "asleep" and r.json()["freeze_method"] == method
    tree = process_tree(sup.engine_pid)
    if method == "signal":
        assert all(freeze.proc_state(p) == "T" for p in tree)
    else:
        cg = freeze.own_cgroup_dir() / freeze.CHILD  # type: ignore[operator]
        assert "frozen 1" in (cg / "cgroup.events").read_text()
        assert set(map(int, (cg / "cgroup.procs").read_text().split())) == tree
    cpu0 = tree_cpu_seconds(sup.engine_pid)
    with pytest.raises(httpx.TimeoutException):  # frozen: it does not answer at all
        httpx.get(f"http://127.0.0.1:{port}/state", timeout=1.0)
    assert tree_cpu_seconds(sup.engine_pid) - cpu0 == 0.0
    assert httpx.get(sup.url + "/healthz").status_code == 503
    assert httpx.get(sup.url + "/livez").status_code == 200
    assert sup.post("/sleep", {"tier": "freeze"}).status_code == 409  # already asleep
    assert sup.post("/checkpoint").status_code == 409  # a frozen engine is not dumped
    assert sup.metric("ember_supervisor_engine_state", state="asleep") == 1

    t0 = time.monotonic()
    r = sup.post("/wake")
    wake_s = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "serving" and "canary" in r.json()["phases_s"]
    assert get(port, "/state") == "3"  # the same process, its memory kept
    if method == "cgroup":  # back in the supervisor's own cgroup once thawed
        assert not (cg / "cgroup.procs").read_text().split()
    assert httpx.get(sup.url + "/healthz").status_code == 200
    assert sup.metric("ember_supervisor_wake_duration_seconds_count", tier="freeze") == 1
    assert sup.metric("ember_supervisor_sleep_duration_seconds_count", tier="freeze") == 1
    assert sup.metric("ember_supervisor_engine_state", state="serving") == 1
    print(f"\ncounter engine, {method} freezer: wake {wake_s:.3f} s")
    assert sup.stop() == 0
    assert not any(running(p) for p in tree)  # a zombie left for PID 1 is stopped


def test_a_wake_of_an_engine_killed_while_asleep_fails_and_says_why(
    tmp_path: Path, sups: list[SupervisorProcess]
) -> None:
    sup = SupervisorProcess(_cfg(tmp_path, "signal"), tmp_path)
    sups.append(sup)
    assert sup.post("/sleep", {"tier": "freeze"}).status_code == 200
    os.kill(sup.engine_pid, signal.SIGKILL)  # the fault, after real state exists

    r = sup.post("/wake")
    assert r.status_code == 503, r.text
    assert r.json()["reason"] == "engine_exited" and r.json()["state"] == "failed"
    assert sup.proc.poll() is None  # it stays up to say why
    state = sup.state()
    assert state["state"] == "failed" and state["failure"]["reason"] == "engine_exited"  # type: ignore[index]
    assert sup.metric("ember_supervisor_wake_failures_total", reason="engine_exited") == 1
    assert httpx.get(sup.url + "/livez").status_code == 503
    assert sup.post("/wake").status_code == 409  # no second try: the operator replaces the replica


def test_a_sleep_the_engine_cannot_do_leaves_it_serving(
    tmp_path: Path, sups: list[SupervisorProcess]
) -> None:
    # the counter server answers POST /sleep but has no /is_sleeping: vLLM sleep mode is not there
    sup = SupervisorProcess(_cfg(tmp_path, "signal"), tmp_path)
    sups.append(sup)
    r = sup.post("/sleep", {"level": 1})
    assert r.status_code == 500 and r.json()["reason"] == "engine_error", r.text
    assert r.json()["state"] == "serving"
    assert sup.state()["state"] == "serving"
    assert sup.metric("ember_supervisor_sleep_failures_total", reason="engine_error") == 1
    assert get(sup.cfg.engine_port, "/inc") == "1"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"tier": "freeze", "level": 1}, "level"),
        ({"tier": "hibernate"}, "tier"),
        ({"levl": 1}, "levl"),
        ({"tier": "suspend"}, "suspend"),  # no CUDA driver here
    ],
    ids=["level-with-freeze", "unknown-tier", "unknown-field", "suspend-without-gpu"],
)
def test_a_bad_sleep_request_is_refused_naming_the_field(
    tmp_path: Path, sups: list[SupervisorProcess], body: dict[str, object], field: str
) -> None:
    if not sups:
        sups.append(SupervisorProcess(_cfg(tmp_path, "signal"), tmp_path))
    r = sups[0].post("/sleep", body)
    assert r.status_code == 400 and field in r.json()["error"], r.text
    assert sups[0].state()["state"] == "serving"
