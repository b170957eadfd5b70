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

Expected times: the median of the measured history for that path when there is one (the
supervisors' `ember_supervisor_start_phase_seconds{phase="total"}`, `History`), else the defaults
(operator settings `wakeSeconds`, `restoreSeconds`, `coldStartSeconds`; documented in config.py):
1 s wake (the CPU stand-in thaws in well under that; vLLM sleep level 1 on an H200: 0.45 s),
10 s restore, 90 s cold.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus

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
