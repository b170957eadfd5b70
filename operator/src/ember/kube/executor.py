"""Applies a Plan idempotently: deletes and drains before creates; 404/409 are success.

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
from ember.kube import builders
from ember.kube.client import KubeAPI
from ember.policy.rollout import Create, Delete, Drain, Plan
from ember.policy.tenancy import CheckpointGrant

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


@dataclass(frozen=True)
class Outcome:
    type: str  # Normal | Warning
    reason: str
    message: str

    @property
    def failed(self) -> bool:
        return self.type == "Warning"


def _error(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"{e.status} {e.reason}: {(e.body or '')[:300]}"
    return f"{type(e).__name__}: {e}"


def execute(api: KubeAPI, t: Target, plan: Plan, now: datetime | None = None) -> list[Outcome]:
    now = now or datetime.now(UTC)
    out: list[Outcome] = []
    ordered = [a for a in plan.actions if isinstance(a, Delete | Drain)] + plan.of(Create)
    for a in ordered:
        try:
            if isinstance(a, Delete):
                if api.delete_pod(t.namespace, a.name):
                    out.append(Outcome("Normal", "ReplicaDeleted", f"deleted {a.name} ({a.reason})"))
            elif isinstance(a, Drain):
                if api.patch_pod_metadata(
                    t.namespace, a.name, {L.SERVING: "false"}, {L.DRAIN_STARTED: now.isoformat()}
                ):
                    out.append(
                        Outcome("Normal", "ReplicaDraining", f"{a.name} left the Service ({a.reason})")
                    )
            elif isinstance(a, Create):
                pod = builders.replica_pod(
                    t.name, t.namespace, t.uid, t.spec, a.index, t.start_path, t.supervisor_port, t.checkpoint
                )
                if api.create_pod(pod):
                    out.append(Outcome("Normal", "ReplicaCreated", f"created {pod['metadata']['name']}"))
        except Exception as e:
            log.warning("action failed", extra={"action": repr(a), "error": _error(e)})
            out.append(Outcome("Warning", f"{type(a).__name__}Failed", f"{a!r}: {_error(e)}"))
    return out


def ensure_service(api: KubeAPI, t: Target) -> list[Outcome]:
    """The Service and the supervisor token's Secret (replica pods read it: it must exist first)."""
    out: list[Outcome] = []
    try:
        if api.ensure_service(builders.service(t.name, t.namespace, t.uid, t.spec)):
            out.append(Outcome("Normal", "ServiceCreated", f"created Service {t.name}"))
    except Exception as e:
        out.append(Outcome("Warning", "ServiceFailed", _error(e)))
    secret = builders.token_secret_name(t.name)
    try:  # a random token per service; an existing Secret keeps its token
        token = secrets.token_urlsafe(32)
        if api.create_secret(builders.token_secret(t.name, t.namespace, t.uid, token)):
            out.append(Outcome("Normal", "TokenSecretCreated", f"created Secret {secret}"))
    except Exception as e:
        out.append(Outcome("Warning", "TokenSecretFailed", f"Secret {secret}: {_error(e)}"))
    return out
