"""Which checkpoints to delete: keep the newest N verified per identity (pure).

Per identity hash, sorted newest first by creation time (id as the tie-break, so the plan is
deterministic):
- verified: the first N are kept, the rest deleted;
- failed verification (a canary restore ran and did not match): deleted, they can never be used;
- not yet verified: kept while newer than the newest kept verified one (a verify may be pending),
  deleted when older (a verified newer one supersedes it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from ember_checkpoint.manifest import Manifest


def plan_gc(manifests: Iterable[Manifest], keep: int) -> list[str]:
    if keep < 0:
        raise ValueError("keep must be >= 0")
    by_identity: dict[str, list[Manifest]] = defaultdict(list)
    for m in manifests:
        by_identity[m.identity_hash].append(m)
    doomed: list[str] = []
    for group in by_identity.values():
        group.sort(key=lambda m: (m.created, m.checkpoint_id), reverse=True)
        verified = [m for m in group if m.verification.verified]
        doomed += [m.checkpoint_id for m in verified[keep:]]
        newest_verified = verified[0].created if verified else None
        for m in group:
            if m.verification.verified:
                continue
            if m.verification.failure is not None or (newest_verified and m.created < newest_verified):
                doomed.append(m.checkpoint_id)
    return sorted(doomed)
