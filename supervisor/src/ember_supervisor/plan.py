"""Which start path to take (pure): restore the newest usable checkpoint, else start cold.

Usable: not excluded (a restore of it already failed in this pod: the failure file lists it, so a
container restart never retries it and never loops), and verified when verification is required.
An exact identity match is preferred; when none matches but other checkpoints exist, the newest is
still tried so that the restore refuses it and the reason (identity_mismatch) is reported rather than
silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ember_checkpoint.manifest import Manifest


@dataclass(frozen=True)
class StartPlan:
    path: Literal["cold", "restore"]
    checkpoint_id: str | None
    why: str


def choose_start(
    manifests: Iterable[Manifest], identity_hash: str | None, excluded: set[str], *, require_verified: bool
) -> StartPlan:
    usable = [
        m
        for m in manifests
        if m.checkpoint_id not in excluded and (m.verification.verified or not require_verified)
    ]
    if not usable:
        return StartPlan("cold", None, "no usable checkpoint")
    usable.sort(key=lambda m: (m.created, m.checkpoint_id), reverse=True)
    matching = [m for m in usable if m.identity_hash == identity_hash]
    if matching:
        return StartPlan("restore", matching[0].checkpoint_id, "newest verified checkpoint of this identity")
    return StartPlan("restore", usable[0].checkpoint_id, "no checkpoint of this identity; trying the newest")
