"""Warm buffer reconcile (placeholder pods). Being implemented for the warm-buffer issue: until then
it does nothing, and `spec.warmBuffer` has no effect."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ember.handlers.context import OperatorContext


async def reconcile_buffer(ctx: OperatorContext, body: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> None:
    return None
