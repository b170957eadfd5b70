"""Plain data the simulator consumes and produces: requests in, per-request records and step spans out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Request:
    """One inference request: when it arrives (virtual seconds) and its token counts."""

    id: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise ValueError(f"request {self.id}: prompt and output need at least one token")


class Outcome(StrEnum):
    COMPLETED = "completed"
    # lost with its replica (`Fleet.remove`) while queued or running
    REPLICA_REMOVED = "replica_removed"
    # waited in the fleet queue (no ready replica) longer than the timeout
    QUEUE_TIMEOUT = "queue_timeout"
    # could never fit the KV cache of one replica; vLLM rejects these too
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request; times are virtual seconds, None where the phase never came."""

    request: Request
    replica: str | None
    outcome: Outcome
    finished_s: float
    admitted_s: float | None = None
    first_token_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: first_token_s - arrival_s (queueing included)."""
        if self.first_token_s is None:
            return None
        return self.first_token_s - self.request.arrival_s

    @property
    def e2e_s(self) -> float:
        return self.finished_s - self.request.arrival_s

    @property
    def mean_itl_s(self) -> float | None:
        """Mean ITL of a completed request: (finished - first token) / (output_tokens - 1)."""
        if not self.ok or self.first_token_s is None or self.request.output_tokens < 2:
            return None
        return (self.finished_s - self.first_token_s) / (self.request.output_tokens - 1)


@dataclass(frozen=True)
class StepSpan:
    """`steps` back-to-back engine steps of equal length in [start_s, end_s].

    In every step each of the `decoding` sequences emits one token, so the span holds
    steps x decoding inter-token gaps of (end_s - start_s) / steps seconds each. `prefill_tokens`
    and `first_tokens` are only non-zero for single mixed steps.
    """

    start_s: float
    end_s: float
    steps: int
    decoding: int
    prefill_tokens: int = 0
    first_tokens: int = 0

    @property
    def step_s(self) -> float:
        return (self.end_s - self.start_s) / self.steps

    @property
    def generated_tokens(self) -> int:
        return self.steps * self.decoding + self.first_tokens
