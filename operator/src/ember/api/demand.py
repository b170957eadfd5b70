"""The demand annotation: how an activator tells the operator, at once, that requests wait at zero.

Each activator replica writes its own annotation on the InferenceService (a JSON merge patch of one
key, so replicas never overwrite each other):

    demand.serving.ember.dev/<activator pod>: {"held": 3, "time": "2026-12-01T22:40:00.123+00:00"}

`held` is the number of requests that replica holds now; `time` is when it wrote it. The operator
sums the entries written within `ttl_s` (an activator killed mid-hold stops refreshing and its entry
expires; one that empties its queue writes held 0). A patch of the object wakes the operator's loop
through its watch, so activation does not wait for a Prometheus scrape or a resync.
Pure: parsing and rendering only, used by the operator and the activator alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime

PREFIX = "demand.serving.ember.dev/"
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def key(activator: str) -> str:
    """The annotation key of one activator replica (the name part: at most 63 characters)."""
    name = _NAME_OK.sub("-", activator).strip("-._")[-63:].strip("-._") or "activator"
    return PREFIX + name


def render(held: int, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    return json.dumps({"held": int(held), "time": stamp}, separators=(",", ":"))


def held(annotations: Mapping[str, str] | None, now: float, ttl_s: float) -> int:
    """Requests held now by all activator replicas whose entry is fresher than `ttl_s`. Entries that do
    not parse count as 0: a hand-edited annotation must never make the operator scale."""
    total = 0
    for k, v in (annotations or {}).items():
        if not k.startswith(PREFIX):
            continue
        try:
            d = json.loads(v)
            n, t = int(d["held"]), datetime.fromisoformat(str(d["time"])).timestamp()
        except (ValueError, TypeError, KeyError):
            continue
        if n > 0 and now - ttl_s <= t <= now + ttl_s:
            total += n
    return total
