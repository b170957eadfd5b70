"""The supervisor's engine state machine and the sleep/wake choices, at our own seams (no engine)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from ember_supervisor import sleep as sleep_mod
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.engine_state import EngineState, State, WrongState
from ember_supervisor.freeze import FreezeFailed, own_cgroup_dir
from ember_supervisor.metrics import SupervisorMetrics
from ember_supervisor.sleep import Refused, Sleeper, SleepRequest, StepFailed, WakeRequest
from pydantic import ValidationError


def test_the_lifecycle_moves_starting_serving_asleep_serving() -> None:
    seen: list[tuple[State | None, State]] = []
    st = EngineState(on_change=lambda a, b: seen.append((a, b)))
    for s in (State.SERVING, State.SLEEPING, State.ASLEEP, State.WAKING, State.SERVING):
        st.move(s)
    assert [b for _, b in seen] == [
        State.STARTING,
        State.SERVING,
        State.SLEEPING,
        State.ASLEEP,
        State.WAKING,
        State.SERVING,
    ]


@pytest.mark.parametrize(
    "path,bad",
    [
        ([], State.ASLEEP),  # starting -> asleep
        ([State.SERVING], State.WAKING),  # wake a serving engine
        ([State.SERVING, State.SLEEPING, State.ASLEEP], State.SLEEPING),  # sleep twice
        ([State.SERVING, State.SLEEPING, State.ASLEEP, State.WAKING], State.SLEEPING),  # sleep mid-wake
    ],
    ids=["asleep-before-serving", "wake-while-serving", "sleep-twice", "sleep-while-waking"],
)
def test_a_move_that_is_not_allowed_is_refused_and_changes_nothing(path: list[State], bad: State) -> None:
    st = EngineState()
    for s in path:
        st.move(s)
    before = st.state
    with pytest.raises(WrongState):
        st.move(bad)
    assert st.state == before


def test_failed_keeps_the_first_reason_and_where_it_happened() -> None:
    st = EngineState()
    st.move(State.SERVING)
    st.move(State.SLEEPING)
    st.move(State.ASLEEP)
    st.fail("engine_exited", "killed")
    st.fail("timeout", "later")
    assert st.as_dict()["failure"] == {"reason": "engine_exited", "detail": "killed", "during": "asleep"}
    with pytest.raises(WrongState):
        st.move(State.WAKING)


def test_concurrent_sleeps_only_one_wins() -> None:
    st = EngineState()
    st.move(State.SERVING)
    wins: list[bool] = []

    def go() -> None:
        try:
            st.move(State.SLEEPING, expect=State.SERVING)
            wins.append(True)
        except WrongState:
            wins.append(False)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


# ------------------------------------------------------------ requests


@pytest.mark.parametrize(
    "body,field",
    [({"tier": "freeze", "level": 1}, "level"), ({"tier": "suspend", "level": 2}, "level"), ({"x": 1}, "x")],
    ids=["level-with-freeze", "level-with-suspend", "unknown-field"],
)
def test_a_request_that_mixes_tiers_is_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        SleepRequest.model_validate(body)


def _cfg(tmp_path: Path, **kw: object) -> SupervisorConfig:
    return SupervisorConfig(
        engine_argv=["true"],
        engine_port=1,
        identity={},
        state_dir=tmp_path,
        **kw,  # type: ignore[arg-type]
    )


def _sleeper(tmp_path: Path, gpu: object | None = None, **kw: object) -> Sleeper:
    st = EngineState()
    st.move(State.SERVING)
    return Sleeper(
        _cfg(tmp_path, **kw),
        SupervisorMetrics(),
        st,
        lambda: 4242,
        lambda: None,
        threading.Lock(),
        gpu=lambda: gpu,  # type: ignore[arg-type,return-value]
    )


@pytest.mark.parametrize(
    "body,gpu,want",
    [
        ({}, None, ("freeze", None)),
        ({}, object(), ("sleep", 1)),
        ({"level": 2}, None, ("sleep", 2)),
        ({"tier": "suspend"}, object(), ("suspend", 1)),
        ({"tier": "freeze"}, object(), ("freeze", None)),
    ],
    ids=["auto-cpu", "auto-gpu", "level-2", "suspend-gpu", "freeze-on-gpu"],
)
def test_the_tier_follows_the_request_then_the_machine(
    tmp_path: Path, body: dict[str, object], gpu: object | None, want: tuple[str, int | None]
) -> None:
    assert _sleeper(tmp_path, gpu).resolve(SleepRequest.model_validate(body)) == want


def test_suspend_without_the_driver_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    s = _sleeper(tmp_path)
    with pytest.raises(Refused, match="suspend"):
        s.sleep(SleepRequest(tier="suspend"))
    assert s.state.state == State.SERVING


# ------------------------------------------------------------ sleep and wake with a fake freezer


class FakeFreezer:
    method = "fake"

    def __init__(self, fail_freeze: bool = False, thaw_hangs_s: float = 0.0) -> None:
        self.fail_freeze, self.thaw_hangs_s = fail_freeze, thaw_hangs_s
        self.calls: list[str] = []

    def freeze(self, root: int, timeout_s: float) -> list[int]:
        self.calls.append("freeze")
        if self.fail_freeze:
            raise FreezeFailed("not stopped")
        return [root]

    def thaw(self, root: int) -> None:
        self.calls.append("thaw")
        time.sleep(self.thaw_hangs_s)

    def is_frozen(self, pid: int) -> bool:
        return True


@pytest.fixture
def alive(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ended: list[str] = []
    monkeypatch.setattr(sleep_mod.procs, "running", lambda pid: True)
    monkeypatch.setattr(sleep_mod.procs, "terminate", lambda pid, grace_s=0: ended.append(str(pid)))
    monkeypatch.setattr(sleep_mod.engine_http, "wait_healthy", lambda *a, **k: 0.001)
    return ended


def test_a_failed_freeze_reports_its_reason_and_the_engine_keeps_serving(
    tmp_path: Path, alive: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _sleeper(tmp_path)
    s._freezer = FakeFreezer(fail_freeze=True)
    monkeypatch.setattr(s, "_healthy", lambda: True)
    with pytest.raises(StepFailed) as e:
        s.sleep(SleepRequest(tier="freeze"))
    assert e.value.reason == "freeze_failed" and s.state.state == State.SERVING
    assert s.metrics.sleep_failures.labels("freeze_failed")._value.get() == 1


def test_a_wake_that_hangs_times_out_with_a_reason_and_ends_the_engine(
    tmp_path: Path, alive: list[str]
) -> None:
    s = _sleeper(tmp_path, wake_timeout_s=0.3)
    fz = FakeFreezer(thaw_hangs_s=2.0)
    s._freezer = fz
    s.sleep(SleepRequest(tier="freeze"))
    assert s.state.state == State.ASLEEP and s.state.tier == "freeze"
    t0 = time.monotonic()
    with pytest.raises(StepFailed) as e:
        s.wake(WakeRequest())
    assert time.monotonic() - t0 < 1.5
    assert e.value.reason == "timeout" and s.state.state == State.FAILED
    assert s.state.failure is not None and s.state.failure["during"] == "waking"
    deadline = time.monotonic() + 5
    while not alive and time.monotonic() < deadline:  # ended in the background
        time.sleep(0.05)
    assert alive == ["4242"]
    assert s.metrics.wake_failures.labels("timeout")._value.get() == 1
    # a failed wake is no measured wake (the operator's start history reads the last successful one)
    assert s.metrics.last_wake_timestamp._value.get() == 0


def test_a_wake_thaws_then_answers_serving(tmp_path: Path, alive: list[str]) -> None:
    s = _sleeper(tmp_path)
    fz = FakeFreezer()
    s._freezer = fz
    s.sleep(SleepRequest())
    out = s.wake(WakeRequest())
    assert fz.calls == ["freeze", "thaw"] and out["state"] == "serving"
    assert s.state.state == State.SERVING and s.state.tier is None
    # the last wake's seconds and its end, for the operator's measured wake time (by pod)
    assert s.metrics.last_wake_seconds._value.get() == pytest.approx(float(out["wake_s"]))  # type: ignore[arg-type]
    assert abs(s.metrics.last_wake_timestamp._value.get() - time.time()) < 60
    with pytest.raises(WrongState):
        s.wake(WakeRequest())


def test_the_cgroup_of_this_process_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cgroup").write_text("4:memory:/x\n0::/kubepods/pod1/ctr\n")
    (tmp_path / "mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
    )
    assert own_cgroup_dir(tmp_path) == Path("/sys/fs/cgroup/kubepods/pod1/ctr")
    (tmp_path / "mountinfo").write_text("30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert own_cgroup_dir(tmp_path) is None


def test_a_checkpoint_goes_out_of_serving_and_back_and_nothing_sleeps_meanwhile() -> None:
    st = EngineState()
    st.move(State.SERVING)
    st.move(State.CHECKPOINTING, expect=State.SERVING)
    for bad in (State.SLEEPING, State.CHECKPOINTING, State.WAKING):
        with pytest.raises(WrongState):
            st.move(bad)
    st.move(State.SERVING)
    with pytest.raises(WrongState):  # only a serving engine is dumped
        EngineState().move(State.CHECKPOINTING, expect=State.SERVING)


@pytest.mark.parametrize(
    "setting,argv,gpu,level",
    [
        ("auto", ["vllm", "serve", "--enable-sleep-mode"], True, 2),
        ("auto", ["vllm", "serve", "--enable-sleep-mode"], False, None),  # no CUDA driver: no vLLM sleep
        ("auto", ["vllm", "serve"], True, None),  # sleep mode off: awake
        ("awake", ["vllm", "serve", "--enable-sleep-mode"], True, None),
        (1, ["vllm", "serve"], False, 1),  # an explicit level is obeyed
        (2, ["vllm", "serve"], True, 2),
    ],
)
def test_the_dump_sleep_level_follows_the_setting_the_engine_flags_and_the_gpu(
    tmp_path: Path, setting: object, argv: list[str], gpu: bool, level: int | None
) -> None:
    cfg = _cfg(tmp_path, checkpoint_sleep_level=setting).model_copy(update={"engine_argv": argv})
    assert cfg.dump_sleep_level(gpu) == level


def test_a_bad_dump_sleep_level_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="checkpoint_sleep_level"):
        _cfg(tmp_path, checkpoint_sleep_level=3)
