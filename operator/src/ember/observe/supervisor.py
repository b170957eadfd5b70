"""Client of a replica's supervisor (replica_image/: the container's PID 1): ask it to checkpoint the
engine it runs. The answer is the checkpoint's manifest (ember_checkpoint.manifest.Manifest as JSON);
only the fields the operator records are read here, so the two packages stay independent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from ember.api.v1alpha1 import CheckpointStatus


class SupervisorError(RuntimeError):
    pass


def auth_headers(token: str) -> dict[str, str]:
    """What every call to a supervisor's POST routes carries: the service's token (its Secret)."""
    return {"Authorization": f"Bearer {token}"}


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


async def request_checkpoint(url: str, token: str, timeout_s: float) -> dict[str, Any]:
    """POST /checkpoint: the supervisor quiesces, dumps (the engine keeps serving), runs a canary restore
    and answers with the manifest. Takes as long as a dump plus a verify. `token`: the service's
    supervisor token (its Secret); sent as a bearer token, never logged."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as c:
            r = await c.post(f"{url.rstrip('/')}/checkpoint", headers=auth_headers(token))
    except httpx.HTTPError as e:
        raise SupervisorError(f"supervisor unreachable at {url}: {type(e).__name__}: {e}") from e
    if r.status_code != 200:
        raise SupervisorError(f"supervisor answered {r.status_code}: {r.text[:300]}")
    try:
        body = r.json()
    except ValueError as e:
        raise SupervisorError(f"supervisor answered non-JSON: {r.text[:200]}") from e
    if not isinstance(body, dict):
        raise SupervisorError("supervisor answered something other than a manifest")
    return body
