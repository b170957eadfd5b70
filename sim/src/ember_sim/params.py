"""Parameters of one simulated vLLM replica, with defaults for an 8B bf16 model on one H100 SXM.

The defaults are derived, not measured; each field says how. Units are in the names. The
derivations assume Llama-3.1-8B-Instruct (8.03e9 parameters, 32 layers, 8 KV heads of dimension
128) served by vLLM v1 in bf16 on one H100 SXM 80 GB (989 TFLOP/s dense bf16, 3.35 TB/s HBM3).
Override any of them from a YAML file with :func:`load_params`.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class ReplicaParams(BaseModel):
    """Cost and capacity model of one engine (see ``ember_sim.model`` for how each is used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(
        default="meta-llama/Llama-3.1-8B-Instruct",
        description="Served model name, exported as the `model_name` label.",
    )
    prefill_tokens_per_s: float = Field(
        default=15_000.0,
        gt=0,
        description=(
            "Prompt tokens processed per second of prefill compute. 2 x 8.03e9 FLOP per token at "
            "~25% of 989 TFLOP/s (attention, sampling and scheduling overheads included) ~ 15k/s."
        ),
    )
    decode_step_base_s: float = Field(
        default=0.008,
        gt=0,
        description=(
            "Fixed time of one engine step: reading 16.1 GB of weights at 3.35 TB/s is 4.8 ms, "
            "plus ~3 ms of framework overhead; vLLM reports 7-9 ms ITL for an 8B model at batch 1."
        ),
    )
    decode_step_per_seq_s: float = Field(
        default=0.00015,
        ge=0,
        description=(
            "Extra step time per sequence in the batch: its KV read (~1.2k tokens x 128 KiB = "
            "150 MB, 0.045 ms) plus sampling and bookkeeping; gives ~46 ms steps at 256 sequences."
        ),
    )
    max_num_seqs: int = Field(
        default=256,
        ge=1,
        description="Most sequences in the running batch (vLLM's `--max-num-seqs`, default 256).",
    )
    max_num_batched_tokens: int = Field(
        default=8192,
        ge=1,
        description=(
            "Token budget of one step (decode tokens first, the rest to chunked prefill); vLLM v1's "
            "default for the OpenAI server on large-memory GPUs."
        ),
    )
    kv_cache_tokens: int = Field(
        default=400_000,
        ge=1,
        description=(
            "KV cache capacity in tokens: 0.9 x 80 GiB - 16.1 GB weights - ~4 GB activations and "
            "CUDA graphs ~ 57 GB, at 2 x 32 x 8 x 128 x 2 B = 128 KiB per token ~ 435k; rounded down."
        ),
    )
    block_size_tokens: int = Field(
        default=16, ge=1, description="KV cache block size (vLLM's `--block-size`, default 16)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ReplicaParams:
        if self.kv_cache_tokens < self.block_size_tokens:
            raise ValueError("kv_cache_tokens must hold at least one block")
        # as vLLM requires: a full batch of decode tokens must fit one step's budget
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        return self

    @property
    def kv_blocks(self) -> int:
        """Whole blocks in the cache: floor(kv_cache_tokens / block_size_tokens)."""
        return self.kv_cache_tokens // self.block_size_tokens

    def blocks_for(self, tokens: int) -> int:
        """Blocks a sequence of `tokens` occupies: ceil(tokens / block_size_tokens)."""
        return math.ceil(tokens / self.block_size_tokens)

    def decode_step_s(self, batch: int) -> float:
        """Duration of a step with `batch` decoding sequences and no prefill: base + per_seq x batch."""
        return self.decode_step_base_s + self.decode_step_per_seq_s * batch

    def step_s(self, decoding: int, prefill_tokens: int) -> float:
        """Duration of a mixed step: decode_step_s(decoding) + prefill_tokens / prefill_tokens_per_s."""
        return self.decode_step_s(decoding) + prefill_tokens / self.prefill_tokens_per_s


def load_params(path: Path | None) -> ReplicaParams:
    """Read parameters from a YAML mapping (missing keys keep their defaults); None gives the defaults."""
    if path is None:
        return ReplicaParams()
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameter names to values")
    return ReplicaParams.model_validate(data)
