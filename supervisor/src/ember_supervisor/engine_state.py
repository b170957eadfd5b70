"""The engine's state as the supervisor sees it, and the moves allowed between states.

    starting ──▶ serving ──▶ sleeping ──▶ asleep ──▶ waking ──▶ serving
        │           ▲           │                      │
        ▼           └───────────┘ (sleep failed,       ▼
      failed ◀──────────────────   engine still fine)  failed (wake failed: reason kept)

`failed` is also entered from any state when the engine process exits while the supervisor stays up
(asleep or waking: the operator asks, reads the reason and replaces the replica; see `main`).
A move that is not in `ALLOWED` raises `WrongState`, which the HTTP routes answer with 409, so two
concurrent calls (a sleep during a wake, a second sleep) never both act on the engine.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


class State(enum.StrEnum):
    STARTING = "starting"
    SERVING = "serving"
    SLEEPING = "sleeping"
    ASLEEP = "asleep"
    WAKING = "waking"
    CHECKPOINTING = "checkpointing"  # a live dump runs: out of the Service (/healthz 503), then serving again
    FAILED = "failed"


ALLOWED: dict[State, set[State]] = {
    State.STARTING: {State.SERVING, State.FAILED},
    State.SERVING: {State.SLEEPING, State.CHECKPOINTING, State.FAILED},
    State.SLEEPING: {State.ASLEEP, State.SERVING, State.FAILED},
    State.ASLEEP: {State.WAKING, State.FAILED},
    State.WAKING: {State.SERVING, State.FAILED},
    State.CHECKPOINTING: {State.SERVING, State.FAILED},
    State.FAILED: set(),
}


class WrongState(RuntimeError):
    def __init__(self, state: State, wanted: State) -> None:
        super().__init__(f"the engine is {state.value}: cannot go to {wanted.value}")
        self.state = state


@dataclass
class EngineState:
    """Thread-safe holder of the current state; `on_change(old, new)` runs under the lock (metrics)."""

    on_change: Callable[[State | None, State], None] = lambda old, new: None
    state: State = State.STARTING
    tier: str | None = None  # how the engine sleeps now (sleep, suspend, freeze), None when awake
    failure: dict[str, str] | None = None  # {"reason", "detail", "during"} of the move into `failed`
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.on_change(None, self.state)

    def move(self, new: State, *, expect: State | None = None) -> State:
        """Go to `new` (only from `expect` when given); returns the state left."""
        with self._lock:
            old = self.state
            if (expect is not None and old != expect) or new not in ALLOWED[old]:
                raise WrongState(old, new)
            self.state = new
            if new == State.SERVING:
                self.tier = None
            self.on_change(old, new)
            return old

    def fail(self, reason: str, detail: str) -> None:
        """Enter `failed` from wherever the engine is (no-op when already failed: the first reason stays)."""
        with self._lock:
            if self.state == State.FAILED:
                return
            old, self.state = self.state, State.FAILED
            self.failure = {"reason": reason, "detail": detail[:2000], "during": old.value}
            self.on_change(old, State.FAILED)

    def as_dict(self) -> dict[str, object]:
        with self._lock:
            return {"state": self.state.value, "tier": self.tier, "failure": self.failure}
