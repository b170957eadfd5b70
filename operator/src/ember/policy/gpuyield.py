"""Which sleeping replicas give their GPU to a serving replica that waits for one. Pure.

A sleeping replica holds its GPU; a serving replica of any service that the scheduler cannot place
for lack of GPUs (`Unschedulable`, "Insufficient nvidia.com/gpu") must not wait behind it. The
choice is made once for the whole operator, from every pod it watches, so that each waiting pod
costs one sleeper, not one per service and pass:

- a waiting pod is *served* while the sleeper that yielded to it still exists (it is terminating)
  and for `settle_s` after it is gone (the scheduler retries a pod once a pod it waited on is
  deleted; its backoff is 1-10 s by default). The yield is written on the waiting pod itself (its
  annotations: time and sleeper), so an operator restart resumes from the pods and does not yield
  twice;
- the unserved waiting pods, oldest first, are paired with the sleepers, longest asleep first; each
  sleeper of a pair is deleted by its own service's pass (the pairing is the same in every pass
  that sees the same pods, so two services never pick two sleepers for one waiting pod).

Not modelled: whether the sleeper's node suits the waiting pod (node selectors, GPU type). A sleeper
on the wrong node is yielded in vain; the waiting pod is unserved again after `settle_s` and takes
the next one (the same per waiting pod and settle window, never a burst).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SETTLE_S = 30.0


@dataclass(frozen=True)
class Waiting:
    """A serving replica pod the scheduler could not place for lack of GPUs."""

    namespace: str
    name: str
    created: float
    yielded_at: float | None = None  # when a sleeper was last deleted for it
    yielded_by: str | None = None  # that sleeper, "namespace/name"


@dataclass(frozen=True)
class Sleeper:
    namespace: str
    name: str
    service: str
    sleep_started: float | None = None


def served(w: Waiting, present: frozenset[str], now: float, settle_s: float = SETTLE_S) -> bool:
    if w.yielded_at is None:
        return False
    return (w.yielded_by is not None and w.yielded_by in present) or now - w.yielded_at < settle_s


def choose(
    waiting: Iterable[Waiting],
    sleepers: Iterable[Sleeper],
    present: frozenset[str],
    now: float,
    settle_s: float = SETTLE_S,
) -> dict[Sleeper, Waiting]:
    """sleeper -> the waiting pod it yields to. `present`: "namespace/name" of every pod that exists
    (terminating ones included); `sleepers`: the sleeping pods not yet terminating."""
    need = sorted(
        (w for w in waiting if not served(w, present, now, settle_s)),
        key=lambda w: (w.created, w.namespace, w.name),
    )
    order = sorted(sleepers, key=lambda s: (s.sleep_started or 0.0, s.namespace, s.name))
    return dict(zip(order, need, strict=False))
