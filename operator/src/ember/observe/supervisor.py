"""What the operator reads from a supervisor's answers (pure): a checkpoint manifest
(ember_checkpoint.manifest.Manifest as JSON) -> status.checkpoint. The calls themselves are in
ember.replica.client; only the fields the operator records are read, so the two packages stay
independent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ember.api.v1alpha1 import CheckpointStatus
from ember.replica.client import SupervisorError


def checkpoint_status(manifest: dict[str, Any], location: str) -> CheckpointStatus:
    """A supervisor's manifest -> what status.checkpoint records (pure)."""
    try:
        sizes, ver = manifest.get("sizes") or {}, manifest.get("verification") or {}
        return CheckpointStatus(
            id=str(manifest["checkpoint_id"]),
            identity=str(manifest["identity_hash"]),
            size_bytes=int(sizes.get("image_bytes", 0)),
            gpu_bytes=int(sizes.get("gpu_state_bytes", 0)),
            created=datetime.fromisoformat(str(manifest["created"]).replace("Z", "+00:00")),
            verified=bool(ver.get("verified", False)),
            location=location,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SupervisorError(f"unreadable manifest from the supervisor: {e}") from e
