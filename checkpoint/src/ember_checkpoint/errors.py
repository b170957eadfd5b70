"""Typed reasons a restore is refused or fails: the supervisor puts them in a metric label, a log line
and a file, so each must be a short stable word."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    NOT_FOUND = "not_found"
    MANIFEST_INVALID = "manifest_invalid"
    IDENTITY_MISMATCH = "identity_mismatch"
    NOT_VERIFIED = "not_verified"
    CRIU_MISSING = "criu_missing"
    CRIU_TOO_OLD = "criu_too_old"
    GPU_UNAVAILABLE = "gpu_unavailable"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CRIU_RESTORE_FAILED = "criu_restore_failed"
    CUDA_RESTORE_FAILED = "cuda_restore_failed"
    HEALTH_TIMEOUT = "health_timeout"


class RestoreRefused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"restore refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class DumpFailed(Exception):
    pass
