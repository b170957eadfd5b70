"""How a new or returning replica starts, and how long that is expected to take (pure).

The one home of the start-path decision: the autoscaler plans with its expected time, the replica
reconcile writes its path onto the pods it creates (env EMBER_START_PATH, annotation start-path) and
the supervisor obeys it (`cold`: it does not look for a checkpoint; `restore`: it restores, falling
back to cold once) and reports what really happened (ember_supervisor_start_path_total{path}).

Choice, fastest first:

| a sleeping replica of this service | checkpoint granted, restorable, verified | on its node | path    |
|------------------------------------|------------------------------------------|-------------|---------|
| yes                                | any                                      | any         | wake    |
| no                                 | yes                                      | yes         | restore |
| no                                 | yes                                      | no          | cold    |
| no                                 | no                                       | any         | cold    |

"On its node": checkpoint storage is per node (a hostPath) or shared (a PVC, object storage); a
replica that lands on a node without the checkpoint starts cold there (`node_has_checkpoint=False`).

Expected times: the median of the measured history for that path when there is one (`History`,
from `status.startHistory`: `history_of`), else the defaults (operator settings `wakeSeconds`,
`restoreSeconds`, `coldStartSeconds`; documented in config.py): 1 s wake (the CPU stand-in thaws in
well under that; vLLM sleep level 1 on an H200: 0.45 s), 10 s restore, 90 s cold.

The measured history (`fold`). Every decision interval the autoscaler reads, per pod, what the
supervisors export (observe/starts.py, instant queries only, in bulk like the other metrics):
`ember_supervisor_start_path_total{path}` (the path actually taken, after any fallback) with
`ember_supervisor_start_phase_seconds{phase="total"}` (that start's seconds), and
`ember_supervisor_last_wake_seconds` with `ember_supervisor_last_wake_timestamp_seconds` (the last
successful wake's seconds and end). Each becomes a `Measured(pod, path, seconds, at)`; `at` is the
pod's creation time for a start (one start per pod) and the wake's end for a wake (a pod wakes many
times). `fold` adds the ones not yet in `status.startHistory` (same pod and `at`: counted once, so a
pod read on every pass, or again after an operator restart, is not double-counted) and keeps per
path the newest `START_HISTORY_SIZE` (10) by `at`; a measurement older than everything a full list
keeps drops out at once, so a long-lived pod never re-enters. A restore that fell back to cold is
counted as cold, with its whole time (the failed restore included): it is what that start cost.
The history lives in the status, not in Prometheus: an outage adds nothing and loses nothing (the
pass goes on with the history it has), and a restarted operator starts from it. Why not the counter
or the wake histogram over time: a counter that first appears at 1 is invisible to increase(), and a
histogram's _sum/_count per pod gives a mean over the pod's wakes, not each one; instant gauges by
pod give each start exactly, and the pod plus `at` name it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ember.api.v1alpha1 import (
    START_HISTORY_SIZE,
    InferenceServiceSpec,
    InferenceServiceStatus,
    StartHistory,
    StartSample,
)

Path = Literal["wake", "restore", "cold"]
PATHS: tuple[Path, ...] = ("wake", "restore", "cold")


@dataclass(frozen=True)
class Defaults:
    wake_s: float = 1.0
    restore_s: float = 10.0
    cold_s: float = 90.0

    def of(self, path: Path) -> float:
        return {"wake": self.wake_s, "restore": self.restore_s, "cold": self.cold_s}[path]


@dataclass(frozen=True)
class History:
    """Measured start times per path (seconds), newest last. Empty: none measured yet."""

    seconds: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def expected(self, path: Path, default: float) -> tuple[float, str]:
        xs = [x for x in self.seconds.get(path, ()) if x >= 0]
        if not xs:
            return default, "default"
        return float(statistics.median(xs)), f"median of {len(xs)} measured"


@dataclass(frozen=True)
class Measured:
    """One start as the supervisors' metrics report it (observe/starts.py): the path taken, its
    seconds, and `at` (the pod's creation for cold and restore, the wake's end for a wake)."""

    pod: str
    path: Path
    seconds: float
    at: float


def fold(history: StartHistory, measured: Iterable[Measured], keep: int = START_HISTORY_SIZE) -> StartHistory:
    """`history` with `measured` folded in: per path, ordered by `at`, the newest `keep`. A start
    already there (same pod and `at`) is not added again; one older than all a full list keeps is
    dropped at once (so the result equals `history` and nothing is written). Seconds that are
    negative or not finite are no measurement."""
    new = [m for m in measured if m.seconds >= 0 and math.isfinite(m.seconds) and math.isfinite(m.at)]
    out: dict[str, list[StartSample]] = {}
    for path in PATHS:
        kept: list[StartSample] = list(getattr(history, path))
        seen = {(s.pod, s.at) for s in kept}
        for m in new:
            if m.path == path and (m.pod, m.at) not in seen:
                seen.add((m.pod, m.at))
                kept.append(StartSample(pod=m.pod, at=m.at, seconds=m.seconds))
        out[path] = sorted(kept, key=lambda s: (s.at, s.pod))[-keep:] if keep > 0 else []
    return StartHistory(wake=out["wake"], restore=out["restore"], cold=out["cold"])


def history_of(status: InferenceServiceStatus) -> History:
    """The measured seconds per path in `status.startHistory`, oldest first, for `choose`."""
    h = status.start_history
    return History({p: tuple(s.seconds for s in getattr(h, p)) for p in PATHS})


@dataclass(frozen=True)
class StartChoice:
    path: Path
    expected_s: float
    reason: str
    wake: str | None = None  # the sleeping pod to wake (path wake)


def restore_available(spec: InferenceServiceSpec, status: InferenceServiceStatus) -> bool:
    """New replicas may start by restoring a checkpoint: enabled, allowed by the spec, and one is
    verified (the admin's grant is checked by the caller: `granted`)."""
    cp = status.checkpoint
    return (
        spec.checkpoint.enabled
        and spec.checkpoint.restore_policy == "IfVerified"
        and cp is not None
        and cp.verified
    )


def choose(
    spec: InferenceServiceSpec,
    status: InferenceServiceStatus,
    *,
    granted: bool,
    sleeping: Sequence[str] = (),
    node_has_checkpoint: bool = True,
    history: History | None = None,
    defaults: Defaults | None = None,
) -> StartChoice:
    """`granted`: the admin's checkpoint grant exists for this service (policy/tenancy.py).
    `sleeping`: names of this service's sleeping replicas, the one to wake first first."""
    h, d = history or History(), defaults or Defaults()
    if sleeping:
        t, src = h.expected("wake", d.wake_s)
        return StartChoice("wake", t, f"a sleeping replica exists ({src})", sleeping[0])
    if granted and restore_available(spec, status):
        if node_has_checkpoint:
            t, src = h.expected("restore", d.restore_s)
            return StartChoice("restore", t, f"a verified checkpoint is usable ({src})")
        t, src = h.expected("cold", d.cold_s)
        return StartChoice("cold", t, f"the node has no copy of the checkpoint ({src})")
    t, src = h.expected("cold", d.cold_s)
    why = "no verified checkpoint" if granted else "no checkpoint grant"
    return StartChoice("cold", t, f"{why} ({src})")
