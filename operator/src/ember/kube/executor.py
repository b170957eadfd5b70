"""Applies a Plan idempotently: reclaims, deletes and drains before creates; 404/409 are success.

Returns Outcomes (what happened, as Event material) instead of raising: a failed call becomes a
Warning outcome and a Degraded condition, never a crash loop. The next tick re-plans from what exists.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException

from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders, shaping
from ember.kube.client import KubeAPI
from ember.policy.rollout import Action, Create, Delete, Drain, Park, Plan, Reclaim, Wake, Yield
from ember.policy.tenancy import CheckpointGrant
from ember.replica.client import Replicas, SupervisorError

log = logging.getLogger("ember.executor")


@dataclass(frozen=True)
class Target:
    name: str
    namespace: str
    uid: str
    spec: InferenceServiceSpec
    start_path: str = "cold"  # restore once a verified checkpoint exists (handlers/replicas.py)
    supervisor_port: int = builders.SUPERVISOR_PORT
    checkpoint: CheckpointGrant | None = None  # the admin's grant (policy/tenancy.py); None: restricted
    admin: shaping.AdminShaping = shaping.DEFAULT_ADMIN  # replicaDefaults, gpuTypeLabel (chart values)
    replicas: Replicas | None = None  # supervisor calls (Park, Wake); None: none possible now


@dataclass(frozen=True)
class Outcome:
    type: str  # Normal | Warning
    reason: str
    message: str
    action: Action | None = None  # the plan action this is the outcome of
    fallback: bool = False  # a Warning already handled by its fallback (the pod deleted): not Degraded

    @property
    def failed(self) -> bool:
        return self.type == "Warning" and not self.fallback


def error_text(e: BaseException) -> str:
    """An API error in one line (status, reason, body), without the response headers."""
    if isinstance(e, ApiException):
        return f"{e.status} {e.reason}: {(e.body or '')[:300]}"
    return f"{type(e).__name__}: {e}"


def _apply(api: KubeAPI, t: Target, a: Action, now: datetime) -> Outcome | None:
    """One action; None when there was nothing to do (already created, already gone)."""
    if isinstance(a, Delete):
        if api.delete_pod(t.namespace, a.name):
            return Outcome("Normal", "ReplicaDeleted", f"deleted {a.name} ({a.reason})", a)
    elif isinstance(a, Drain):
        if api.patch_pod_metadata(
            t.namespace, a.name, {L.SERVING: "false"}, {L.DRAIN_STARTED: now.isoformat()}
        ):
            return Outcome("Normal", "ReplicaDraining", f"{a.name} left the Service ({a.reason})", a)
    elif isinstance(a, Yield):
        # the mark first: once the sleeper is deleted, no other pass yields a second one for this pod
        if not api.patch_pod_metadata(
            a.waiting_namespace,
            a.waiting,
            {},
            {L.GPU_YIELDED_AT: now.isoformat(), L.GPU_YIELDED_BY: f"{t.namespace}/{a.name}"},
        ):
            return None  # the waiting pod is gone: nothing to yield to
        if api.delete_pod(t.namespace, a.name):
            msg = f"deleted sleeping {a.name}: its GPU goes to {a.waiting_namespace}/{a.waiting}, which waits for one"
            return Outcome("Normal", "YieldedGPU", msg, a)
    elif isinstance(a, Park):
        return _park(api, t, a, now)
    elif isinstance(a, Wake):
        return _wake(api, t, a)
    elif isinstance(a, Reclaim):
        # the serving label is the routing contract: back in the Service at once; no drain clock
        if api.patch_pod_metadata(t.namespace, a.name, {L.SERVING: "true"}, {L.DRAIN_STARTED: None}):
            return Outcome("Normal", "Reclaimed", f"{a.name} is back in the Service ({a.reason})", a)
    else:
        pod = builders.replica_pod(
            t.name,
            t.namespace,
            t.uid,
            t.spec,
            a.index,
            t.start_path,
            t.supervisor_port,
            t.checkpoint,
            t.admin,
        )
        if api.create_pod(pod):
            return Outcome("Normal", "ReplicaCreated", f"created {pod['metadata']['name']}", a)
    return None


def _park(api: KubeAPI, t: Target, a: Park, now: datetime) -> Outcome:
    """POST /sleep, then the sleeping label (the pod is already out of the Service: drained). A sleep
    that fails deletes the pod, as before sleeping replicas existed."""
    try:
        if t.replicas is None:
            raise SupervisorError("no supervisor token", "no_token")
        t.replicas.sleep(a.name)
    except SupervisorError as e:
        api.delete_pod(t.namespace, a.name)
        return Outcome(
            "Warning", "ParkFailed", f"{a.name} deleted: sleep failed ({e.reason}): {e}"[:1000], a, True
        )
    api.patch_pod_metadata(
        t.namespace,
        a.name,
        {L.STATE: L.SLEEPING, L.SERVING: "false"},
        {L.SLEEP_STARTED: now.isoformat(), L.DRAIN_STARTED: None},
    )
    return Outcome("Normal", "Parked", f"{a.name} is asleep ({a.reason})", a)


def _wake(api: KubeAPI, t: Target, a: Wake) -> Outcome:
    """POST /wake, then back into the Service. A wake that fails or times out deletes the pod: the
    next pass replaces it through the next start path (policy/startpath.py), once; never a retry."""
    try:
        if t.replicas is None:
            raise SupervisorError("no supervisor token", "no_token")
        t.replicas.wake(a.name)
    except SupervisorError as e:
        api.delete_pod(t.namespace, a.name)
        msg = f"{a.name} deleted, to be replaced: wake failed ({e.reason}): {e}"[:1000]
        return Outcome("Warning", "WakeFailed", msg, a, True)
    api.patch_pod_metadata(
        t.namespace,
        a.name,
        {L.STATE: None, L.SERVING: "true"},
        {L.SLEEP_STARTED: None, L.DRAIN_STARTED: None},
    )
    return Outcome("Normal", "Woken", f"{a.name} is awake and back in the Service ({a.reason})", a)


def execute(api: KubeAPI, t: Target, plan: Plan, now: datetime | None = None) -> list[Outcome]:
    now = now or datetime.now(UTC)
    out: list[Outcome] = []
    ordered = [a for a in plan.actions if not isinstance(a, Create)] + plan.of(Create)
    for a in ordered:
        try:
            if (o := _apply(api, t, a, now)) is not None:
                out.append(o)
        except shaping.ShapingError as e:  # the template, not the API: say so
            out.append(Outcome("Warning", "InvalidTemplate", f"{a!r}: {e}", a))
        except Exception as e:
            log.warning("action failed", extra={"action": repr(a), "error": error_text(e)})
            out.append(Outcome("Warning", f"{type(a).__name__}Failed", f"{a!r}: {error_text(e)}", a))
    return out


def ensure_service(api: KubeAPI, t: Target) -> list[Outcome]:
    """The Service and the supervisor token's Secret (replica pods read it: it must exist first)."""
    out: list[Outcome] = []
    try:
        if api.ensure_service(builders.service(t.name, t.namespace, t.uid, t.spec)):
            out.append(Outcome("Normal", "ServiceCreated", f"created Service {t.name}"))
    except Exception as e:
        out.append(Outcome("Warning", "ServiceFailed", error_text(e)))
    secret = builders.token_secret_name(t.name)
    try:  # a random token per service; an existing Secret keeps its token
        token = secrets.token_urlsafe(32)
        if api.create_secret(builders.token_secret(t.name, t.namespace, t.uid, token)):
            out.append(Outcome("Normal", "TokenSecretCreated", f"created Secret {secret}"))
    except Exception as e:
        out.append(Outcome("Warning", "TokenSecretFailed", f"Secret {secret}: {error_text(e)}"))
    return out
