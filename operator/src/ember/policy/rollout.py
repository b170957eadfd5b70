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

Sleeping replicas (`Desired.max_sleeping` > 0; spec.scaling.sleep): a sleeping pod is out of the
Service, holds its GPU and counts neither as a replica nor against the surge.
7. A drain of the current template that finishes with the pod still Ready parks it (Park: the
   supervisor's POST /sleep) instead of deleting it, while fewer than `max_sleeping` sleep.
8. Scale-up wakes sleeping pods of the current template (Wake, the most recently parked first)
   before it creates any: a wake is the fastest start (policy/startpath.py).
9. Sleeping pods are deleted when of an old template, asleep for longer than `delete_after_s`, over
   the bound (oldest first), or yield their GPU (Yield) when `yields` names them: the operator-wide
   choice of policy/gpuyield.py, one sleeper per serving replica that waits for a GPU (a sleeper
   never starves another service). While any waits (`yield_gpu`), no drained pod is parked.

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
    sleeping: bool = False  # parked: label state=sleeping (out of the Service, engine asleep)
    sleep_started: float | None = None
    failing: str | None = None  # a container exited non-zero: its termination message's last line

    @property
    def draining(self) -> bool:
        return not self.sleeping and (self.drain_started is not None or not self.serving)


@dataclass(frozen=True)
class Desired:
    replicas: int
    template_hash: str
    drain_timeout_s: float = 90.0
    surge: int = 1
    max_sleeping: int = 0  # 0: never park, delete as before
    delete_after_s: float | None = None  # a pod asleep longer than this is deleted; None: never
    yield_gpu: bool = False  # a serving replica (any service) is Pending for lack of GPUs
    # (sleeper, waiting pod's namespace, waiting pod): policy/gpuyield.choose's pairs of this service
    yields: tuple[tuple[str, str, str], ...] = ()


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


@dataclass(frozen=True)
class Park:
    """Put a drained, still Ready pod to sleep (supervisor POST /sleep) instead of deleting it."""

    name: str
    reason: str


@dataclass(frozen=True)
class Wake:
    """Wake a sleeping pod (supervisor POST /wake) and put it back into the Service."""

    name: str
    reason: str


@dataclass(frozen=True)
class Yield:
    """Delete a sleeping pod so that its GPU goes to a serving pod (of any service) that waits for one;
    the waiting pod is marked first (policy/gpuyield.py: it is served, no second sleeper yields)."""

    name: str
    waiting_namespace: str
    waiting: str
    reason: str = "YieldGPU"


Action = Create | Drain | Delete | Reclaim | Park | Wake | Yield


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


def _finish_drains(draining: list[PodView], d: Desired, now: float, room: int) -> list[Action]:
    """`room`: how many more may sleep; a finished drain of the current template parks while any."""
    out: list[Action] = []
    for p in draining:
        if p.drain_started is None:
            out.append(Drain(p.name, "DrainResumed"))  # label flipped but not annotated: finish it
            continue
        if not p.ready:
            out.append(Delete(p.name, "DrainedNotReady"))
            continue
        if p.in_flight == 0:
            reason = "DrainedIdle"
        elif now - p.drain_started >= d.drain_timeout_s:
            reason = "DrainTimeout"
        else:
            continue
        if room > 0 and p.template_hash == d.template_hash:
            out.append(Park(p.name, reason))
            room -= 1
        else:
            out.append(Delete(p.name, reason))
    return out


def _sleepers(sleeping: list[PodView], d: Desired, now: float) -> tuple[list[Action], list[PodView]]:
    """(deletes, the sleeping pods kept, the one to wake first first)."""
    out: list[Action] = []
    kept: list[PodView] = []
    yields = {s: (ns, w) for s, ns, w in d.yields}
    for p in sorted(sleeping, key=lambda p: -(p.sleep_started or 0.0)):
        if p.name in yields:  # first: it is deleted in any case, and the waiting pod is marked
            out.append(Yield(p.name, *yields[p.name]))
        elif p.template_hash != d.template_hash:
            out.append(Delete(p.name, "OutdatedSleeping"))
        elif (
            d.delete_after_s is not None
            and p.sleep_started is not None
            and now - p.sleep_started >= d.delete_after_s
        ):
            out.append(Delete(p.name, "SleptTooLong"))
        elif len(kept) >= max(0, d.max_sleeping):
            out.append(Delete(p.name, "SleepBound"))
        else:
            kept.append(p)
    return out, kept


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
    want = max(0, d.replicas)
    sleep_deletes, asleep = _sleepers([p for p in pods if p.sleeping and not p.terminating], d, now)
    live = [p for p in pods if not p.terminating and not p.sleeping]
    draining = [p for p in live if p.draining]
    back = _reclaim(draining, d, pods)
    back_names = {p.name for p in back}
    draining = [p for p in draining if p.name not in back_names]
    current = [p for p in live if not p.draining] + back
    new = [p for p in current if p.template_hash == d.template_hash]
    old = [p for p in current if p.template_hash != d.template_hash]
    old_ready = [p for p in old if p.ready]

    n_wake = min(len(asleep), max(0, want - len(new)))
    wakes = asleep[:n_wake]
    room = 0 if d.yield_gpu else max(0, d.max_sleeping) - len(asleep) + n_wake
    actions: list[Action] = [Reclaim(p.name, "ScaleUp") for p in back]
    actions += sleep_deletes
    actions += [Wake(p.name, "ScaleUp") for p in wakes]
    finish = _finish_drains(draining, d, now, room)
    actions += finish
    actions += [Delete(p.name, "OutdatedNotReady") for p in old if not p.ready]

    gone = {a.name for a in finish if isinstance(a, Delete | Park)}
    still_draining = len([p for p in draining if p.name not in gone])
    cap = want + d.surge if old_ready else want
    n_create = max(
        0,
        min(
            want - len(new) - n_wake,
            cap - len(new) - n_wake - len(old_ready),
            want + d.surge - len(new) - n_wake - len(old_ready) - still_draining,
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
    after = len([p for p in current if p.name not in removed]) + n_create + n_wake
    return Plan(
        actions=tuple(actions),
        current=after,
        ready=sum(p.ready for p in current),
        rolling=bool(old),
    )


def replicas_after(pods: list[PodView], applied: list[Action]) -> int:
    """Replica pods that exist and serve (or start) once `applied`, the actions that took effect, did:
    what `status.replicas` (and so `/scale`) reports. A create that failed is not a replica."""
    removed = {a.name for a in applied if isinstance(a, Drain | Delete | Park)}
    back = {a.name for a in applied if isinstance(a, Reclaim | Wake)}
    live = [p for p in pods if not p.terminating and (p.name in back or not (p.draining or p.sleeping))]
    return len([p for p in live if p.name not in removed]) + sum(isinstance(a, Create) for a in applied)
