"""The replica planner: `plan(desired, pods, now) -> Plan`. Pure: data in, data out, time as input.

Algorithm (one pass, idempotent; the executor applies it and the next tick re-plans from what exists):

1. Reclaim: draining pods that are still Ready go back into the Service, of the current template
   while fewer than `desired` Ready pods of it serve, of an old one while fewer than `desired` Ready
   pods serve at all. A warm replica whose drain has not finished is the fastest capacity there is:
   a scale-up right after a scale-down takes it back instead of starting a cold pod beside it.
2. Draining pods not reclaimed are deleted once idle (in-flight 0 from metrics), not Ready, or past
   the drain timeout.
3. Pods of an old template that are not Ready serve nothing: deleted at once.
4. Create pods of the current template until there are `desired` of them, never holding more than
   `desired + surge` non-draining pods while old Ready pods remain (surge only during a rollout), and
   never more than `desired + surge` live pods in all: a draining pod still holds its GPU, so it
   uses up the surge until it is gone. (Terminating pods, which are on their way out, are not
   counted.)
5. Old Ready pods are drained only as far as Ready pods stay >= `desired`: a Ready replica never
   leaves before its replacement is Ready.
6. Surplus pods of the current template (scale-down): not-Ready ones are deleted first; Ready ones are
   drained, fewest in-flight requests first (metrics), else newest first.

Pod names are `<service>-<index>` with the smallest free index. Deterministic names make creation
idempotent under a stale cache or an operator restart: a second create of the same pod gets 409, so
there is never a duplicate (the StatefulSet trick).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PodView:
    """What the planner needs to know of one replica pod."""

    name: str
    index: int
    template_hash: str
    created: float  # unix seconds
    ready: bool = False
    serving: bool = True  # in the Service (label serving=true)
    terminating: bool = False  # deletionTimestamp set
    drain_started: float | None = None
    in_flight: float | None = None  # running + waiting requests, from metrics when known
    unschedulable: str | None = None  # scheduler's message while Pending/Unschedulable

    @property
    def draining(self) -> bool:
        return self.drain_started is not None or not self.serving


@dataclass(frozen=True)
class Desired:
    replicas: int
    template_hash: str
    drain_timeout_s: float = 90.0
    surge: int = 1


@dataclass(frozen=True)
class Create:
    index: int


@dataclass(frozen=True)
class Drain:
    name: str
    reason: str


@dataclass(frozen=True)
class Delete:
    name: str
    reason: str


@dataclass(frozen=True)
class Reclaim:
    """Take a draining (still Ready) pod back into the Service."""

    name: str
    reason: str


Action = Create | Drain | Delete | Reclaim


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    current: int = 0  # non-draining, non-terminating pods after the plan
    ready: int = 0  # Ready pods among them, before the plan
    rolling: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def of(self, kind: type) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]


def _victim_order(p: PodView) -> tuple[float, float, float, int]:
    """Not Ready first, then fewest in-flight (unknown counts as many), then newest (creation times have
    one-second resolution, so the higher index breaks ties)."""
    in_flight = p.in_flight if p.in_flight is not None else math.inf
    return (1.0 if p.ready else 0.0, in_flight, -p.created, -p.index)


def _free_indices(used: set[int], n: int) -> list[int]:
    out: list[int] = []
    i = 0
    while len(out) < n:
        if i not in used:
            out.append(i)
        i += 1
    return out


def _finish_drains(draining: list[PodView], d: Desired, now: float) -> list[Action]:
    out: list[Action] = []
    for p in draining:
        if p.drain_started is None:
            out.append(Drain(p.name, "DrainResumed"))  # label flipped but not annotated: finish it
        elif not p.ready:
            out.append(Delete(p.name, "DrainedNotReady"))
        elif p.in_flight == 0:
            out.append(Delete(p.name, "DrainedIdle"))
        elif now - p.drain_started >= d.drain_timeout_s:
            out.append(Delete(p.name, "DrainTimeout"))
    return out


def _remove(pods: list[PodView], n: int, reason: str) -> list[Action]:
    chosen = sorted(pods, key=_victim_order)[: max(0, n)]
    return [Drain(p.name, reason) if p.ready else Delete(p.name, reason) for p in chosen]


def _reclaim(draining: list[PodView], d: Desired, pods: list[PodView]) -> list[PodView]:
    """Draining pods that are still Ready, to take back: of the current template while fewer than
    `desired` Ready pods of it serve, then of an old one while fewer than `desired` Ready pods serve
    at all. The latest to start draining first (the most recently busy). A pod still starting does
    not count: a warm one serves now, and the surplus step then deletes the starting one."""
    want = max(0, d.replicas)
    up = [p for p in pods if not p.terminating and not p.draining and p.ready]
    healthy = sorted((p for p in draining if p.ready), key=lambda p: -(p.drain_started or 0.0))
    same = [p for p in healthy if p.template_hash == d.template_hash]
    back = same[: max(0, want - sum(p.template_hash == d.template_hash for p in up))]
    other = [p for p in healthy if p.template_hash != d.template_hash]
    return back + other[: max(0, want - len(up) - len(back))]


def plan(d: Desired, pods: list[PodView], now: float) -> Plan:
    live = [p for p in pods if not p.terminating]
    want = max(0, d.replicas)
    draining = [p for p in live if p.draining]
    back = _reclaim(draining, d, pods)
    back_names = {p.name for p in back}
    draining = [p for p in draining if p.name not in back_names]
    current = [p for p in live if not p.draining] + back
    new = [p for p in current if p.template_hash == d.template_hash]
    old = [p for p in current if p.template_hash != d.template_hash]
    old_ready = [p for p in old if p.ready]

    actions: list[Action] = [Reclaim(p.name, "ScaleUp") for p in back]
    finish = _finish_drains(draining, d, now)
    actions += finish
    actions += [Delete(p.name, "OutdatedNotReady") for p in old if not p.ready]

    gone = {a.name for a in finish if isinstance(a, Delete)}
    still_draining = len([p for p in draining if p.name not in gone])
    cap = want + d.surge if old_ready else want
    n_create = max(
        0,
        min(
            want - len(new),
            cap - len(new) - len(old_ready),
            want + d.surge - len(new) - len(old_ready) - still_draining,
        ),
    )
    used = {p.index for p in pods}
    actions += [Create(i) for i in _free_indices(used, n_create)]

    ready_new = sum(p.ready for p in new)
    removable_old = max(0, ready_new + len(old_ready) - want)
    actions += _remove(old_ready, min(removable_old, len(old_ready)), "Outdated")
    if len(new) > want:
        actions += _remove(new, len(new) - want, "ScaleDown")

    removed = {a.name for a in actions if isinstance(a, Drain | Delete)}
    after = len([p for p in current if p.name not in removed]) + n_create
    return Plan(
        actions=tuple(actions),
        current=after,
        ready=sum(p.ready for p in current),
        rolling=bool(old),
    )


def replicas_after(pods: list[PodView], applied: list[Action]) -> int:
    """Replica pods that exist and serve (or start) once `applied`, the actions that took effect, did:
    what `status.replicas` (and so `/scale`) reports. A create that failed is not a replica."""
    removed = {a.name for a in applied if isinstance(a, Drain | Delete)}
    back = {a.name for a in applied if isinstance(a, Reclaim)}
    live = [p for p in pods if not p.terminating and (not p.draining or p.name in back)]
    return len([p for p in live if p.name not in removed]) + sum(isinstance(a, Create) for a in applied)
