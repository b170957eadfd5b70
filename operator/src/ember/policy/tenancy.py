"""What a tenant's InferenceService may get from the operator (pure): the checkpoint grant.

Anyone who may create an InferenceService must get nothing they could not get by creating a pod
themselves. Checkpoints are the one place where Ember's pods carry more than a tenant's would: CRIU
needs SYS_ADMIN and friends, unconfined seccomp/AppArmor and a storage volume (often a hostPath).
So both come from the cluster admin (chart values -> `ember.config.Settings`), never from the spec:

- storage **roots** are named by the admin (`checkpoints.storageRoots`); the spec names one and may
  add a relative sub-path. Every service is placed under `<root>/<namespace>/<name>[/<subPath>]`, so
  one tenant never sees another's images (the supervisor restores whatever it finds there);
- the capabilities are granted only in namespaces the admin opted in (`checkpoints.namespaces`, or
  `checkpoints.allNamespaces`). Elsewhere the replica is built to the restricted Pod Security
  Standard, without a checkpoint volume, and the spec's checkpoint section is refused by condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ember.api.v1alpha1 import InferenceServiceSpec

NOT_ALLOWED = "CheckpointsNotAllowed"
UNKNOWN_ROOT = "UnknownStorageRoot"


class StorageRoot(BaseModel):
    """One admin-declared checkpoint storage root: a node directory or a PersistentVolumeClaim (a claim
    of that name in each service's namespace, which the admin provides)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    host_path: str | None = Field(None, alias="hostPath", pattern=r"^/[^\s]*$", max_length=1024)
    pvc: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)

    @model_validator(mode="after")
    def _exactly_one(self) -> StorageRoot:
        if (self.host_path is None) == (self.pvc is None):
            raise ValueError("a storage root is exactly one of hostPath or pvc")
        return self


@dataclass(frozen=True)
class CheckpointAccess:
    """The admin's checkpoint settings, as the policy reads them."""

    roots: Mapping[str, StorageRoot] = field(default_factory=dict)
    namespaces: frozenset[str] = frozenset()
    all_namespaces: bool = False

    def allows(self, namespace: str) -> bool:
        return self.all_namespaces or namespace in self.namespaces


@dataclass(frozen=True)
class CheckpointGrant:
    """Checkpoints granted: the volume the replica mounts, already placed in the service's directory."""

    volume: dict[str, Any]  # a pod volume source (hostPath or persistentVolumeClaim)
    sub_path: str | None  # the volumeMount's subPath (pvc roots); None for hostPath (the path has it)
    host_dir: str | None  # the node directory (hostPath roots): the placeholders' pre-stage reads it
    location: str  # for status.checkpoint.location


@dataclass(frozen=True)
class CheckpointRefusal:
    reason: str  # CheckpointsNotAllowed | UnknownStorageRoot
    message: str


def service_dir(namespace: str, name: str, sub_path: str | None) -> str:
    """The service's own directory inside a root. Namespace and name are DNS labels and the sub-path
    is refused at apply unless it is relative names without '.' or '..' (api CheckpointStorage)."""
    return "/".join(p for p in (namespace, name, sub_path) if p)


def checkpoint_grant(
    access: CheckpointAccess, namespace: str, name: str, spec: InferenceServiceSpec
) -> CheckpointGrant | CheckpointRefusal | None:
    """None: checkpoints not asked for. A refusal names why; a grant says what to mount."""
    if not spec.checkpoint.enabled:
        return None
    if not access.allows(namespace):
        return CheckpointRefusal(
            NOT_ALLOWED,
            f"checkpoints need capabilities (SYS_ADMIN, ...) that the cluster admin has not allowed in "
            f"namespace {namespace} (chart values checkpoints.namespaces / checkpoints.allNamespaces); "
            "replicas start cold under the restricted Pod Security profile",
        )
    st = spec.checkpoint.storage
    root = access.roots.get(st.root)
    if root is None:
        known = ", ".join(sorted(access.roots)) or "none"
        return CheckpointRefusal(
            UNKNOWN_ROOT,
            f"spec.checkpoint.storage.root {st.root!r} is not a storage root of this cluster "
            f"(declared by the admin: {known}); replicas start cold without checkpoint storage",
        )
    sub = service_dir(namespace, name, st.sub_path)
    if root.host_path is not None:
        path = f"{root.host_path.rstrip('/')}/{sub}"
        return CheckpointGrant(
            {"hostPath": {"path": path, "type": "DirectoryOrCreate"}}, None, path, f"hostPath://{path}"
        )
    assert root.pvc is not None
    return CheckpointGrant(
        {"persistentVolumeClaim": {"claimName": root.pvc}}, sub, None, f"pvc://{root.pvc}/{sub}"
    )
