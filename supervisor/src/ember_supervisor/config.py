"""Supervisor settings, read once at start from a JSON file (EMBER_SUPERVISOR_CONFIG or --config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ember_checkpoint.manifest import Canary
from ember_checkpoint.weights import WORKER_EXTENSION
from pydantic import BaseModel, Field


class SupervisorConfig(BaseModel):
    engine_argv: list[str] = Field(min_length=1, description="the engine's command line (cold start)")
    engine_port: int = Field(description="port the engine serves on; a restored engine keeps the dumped one")
    health_path: str = "/health"
    identity: dict[str, object] = Field(
        description="manifest.Identity fields except criu_version, cuda_driver_version, gpu_model (detected)"
    )
    checkpoint_dir: Path | None = Field(
        default=None, description="checkpoint storage (PVC mount); None: never"
    )
    state_dir: Path = Field(description="survives container restarts (emptyDir): failure file, engine log")
    listen_port: int = Field(default=8081, description="the supervisor's own HTTP port")
    cold_timeout_s: float = Field(default=900.0, description="cold start to healthy; vLLM on CPU took ~45 s")
    restore_timeout_s: float = Field(default=120.0, description="restore to healthy; a CPU restore took ~2 s")
    require_verified: bool = Field(default=True, description="restore only checkpoints a canary proved good")
    canary: Canary | None = Field(default=None, description="recorded at each checkpoint; needed to verify")
    verify_after_checkpoint: bool = True
    checkpoint_sleep_level: Literal["auto", "awake", 1, 2] = Field(
        default="auto",
        description="how POST /checkpoint dumps the engine: asleep at vLLM sleep level 2 (no weights and no "
        "KV cache in the image: 4.7 GB against 31 GB awake for an 8B model; a restore re-reads the weights), "
        "level 1 (weights in the image's host memory), or awake; auto is 2 where the engine runs with "
        "--enable-sleep-mode and the CUDA driver is found, else awake",
    )
    checkpoint_unready_s: float = Field(
        default=0.0,
        ge=0,
        description="before a dump, /healthz answers 503 for this long while the engine still serves, so the "
        "kubelet's readiness probe takes the pod out of the Service first (the operator sets its probe's "
        "period x failure threshold + 1 s)",
    )
    keep_verified: int = Field(default=2, ge=0, description="gc keeps this many verified per identity")
    quiesce_metrics: list[str] = Field(
        default=["vllm:num_requests_running", "vllm:num_requests_waiting"],
        description="engine gauges that must all read 0 before a dump (absent metrics count as 0)",
    )
    quiesce_timeout_s: float = 60.0
    engine_pid_floor: int | None = Field(
        default=10000,
        ge=2,
        description="as PID 1 (a container), start the engine's pids here so a new container can restore "
        "them (procs.raise_next_pid); None: never",
    )
    criu_network_lock: Literal["auto", "iptables", "nftables", "skip"] = Field(
        default="auto",
        description="CRIU --network-lock: auto picks iptables, else nftables, else skip (criu.choose_network_lock)",
    )
    # sleeping replicas (sleep_routes): POST /sleep and POST /wake
    sleep_tier: Literal["auto", "sleep", "suspend", "freeze"] = Field(
        default="auto",
        description="tier of a POST /sleep that names none: auto is `sleep` (vLLM sleep mode, the engine "
        "needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1) where the CUDA driver is found, else `freeze`",
    )
    freeze_method: Literal["auto", "cgroup", "signal"] = Field(
        default="auto", description="how the freeze tier stops the engine's tree (freeze.choose)"
    )
    sleep_timeout_s: float = Field(
        default=120.0, description="engine asleep after; a first level-1 sleep took ~10 s"
    )
    wake_timeout_s: float = Field(
        default=60.0, description="wake to healthy; a failed or timed-out wake reports its reason"
    )
    wake_canary: bool = Field(
        default=False,
        description="run the canary before each sleep and after each wake, and fail the wake on a different answer",
    )

    weight_loader: Literal["vllm", "ember"] = Field(
        default="ember",
        description="who re-reads the weights after a level-2 restore: ember (the parallel pinned loader, "
        "ember_checkpoint.weights; a vLLM engine is started with its worker extension) falling back to "
        "vLLM's reload_weights on any error, or vllm alone",
    )

    @property
    def cold_argv(self) -> list[str]:
        """engine_argv, plus Ember's vLLM worker extension when weight_loader is ember and the engine
        is vLLM's OpenAI server (Ember's entry point or vLLM's) that names no extension of its own."""
        argv = list(self.engine_argv)
        is_vllm = any(
            a in ("ember_checkpoint.vllm_entry", "vllm.entrypoints.openai.api_server") for a in argv
        )
        if (
            self.weight_loader == "ember"
            and is_vllm
            and not any(a.startswith("--worker-extension-cls") for a in argv)
        ):
            argv += ["--worker-extension-cls", WORKER_EXTENSION]
        return argv

    def dump_sleep_level(self, gpu_found: bool) -> int | None:
        """The vLLM sleep level POST /checkpoint puts the engine in before the dump; None: awake."""
        if self.checkpoint_sleep_level == "awake":
            return None
        if self.checkpoint_sleep_level == "auto":
            return 2 if gpu_found and "--enable-sleep-mode" in self.engine_argv else None
        return self.checkpoint_sleep_level

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    @classmethod
    def load(cls, path: Path) -> SupervisorConfig:
        return cls.model_validate_json(path.read_text())
