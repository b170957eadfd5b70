"""Request traces: the `TIMESTAMP,ContextTokens,GeneratedTokens` CSV format, and synthetic loads for tests.

Transformations, applied in this order so each keeps its meaning:

1. slice: keep arrivals in [offset_s, offset_s + duration_s) of the *original* timeline, measured
   from the trace's first timestamp;
2. rate scaling by r > 0 without changing the timeline: request i of the slice appears
   ``floor((i + 1) r) - floor(i r)`` times (deterministic; r = 2 doubles every request, r = 0.5
   keeps every other one), so bursts keep their shape and their height scales by r;
3. time compression by c > 0: arrival' = (arrival - offset_s) / c, so a 1-hour trace with c = 10
   replays in 6 minutes at 10x the rate. Figures measured on a transformed trace must say so.

Requests get ids ``<i>`` or ``<i>.<copy>`` from their row number, so runs are reproducible.
"""

from __future__ import annotations

import csv
import math
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ember_sim.records import Request

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of an ISO timestamp (naive means UTC), or a plain number of seconds.

    The Azure traces carry 7 fractional digits; `datetime` takes at most 6, so the rest is cut.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = re.match(r"^(.*?\.)(\d+)(.*)$", text)
    if m:
        text = f"{m.group(1)}{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_rows(path: Path) -> list[tuple[float, int, int]]:
    """(seconds since the first arrival, prompt tokens, output tokens), sorted by arrival."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; need {', '.join(COLUMNS)}")
        raw = [
            (parse_timestamp(r["TIMESTAMP"]), int(r["ContextTokens"]), int(r["GeneratedTokens"]))
            for r in reader
            if r["TIMESTAMP"]
        ]
    if not raw:
        return []
    raw.sort(key=lambda r: r[0])
    t0 = raw[0][0]
    # a zero-token prompt or output is clamped to one token: the engine always processes one
    return [(t - t0, max(1, p), max(1, g)) for t, p, g in raw]


def transform(
    rows: Sequence[tuple[float, int, int]],
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    time_scale: float = 1.0,
) -> list[Request]:
    """Slice, rate-scale and time-compress rows as the module docstring defines."""
    if rate_scale <= 0 or time_scale <= 0:
        raise ValueError("rate_scale and time_scale must be > 0")
    end = math.inf if duration_s is None else offset_s + duration_s
    kept = [r for r in rows if offset_s <= r[0] < end]
    out: list[Request] = []
    for i, (t, p, g) in enumerate(kept):
        copies = math.floor((i + 1) * rate_scale + 1e-9) - math.floor(i * rate_scale + 1e-9)
        for c in range(copies):
            rid = str(i) if c == 0 else f"{i}.{c}"
            out.append(Request(rid, (t - offset_s) / time_scale, p, g))
    return out


def load_trace(
    path: Path,
    *,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    rate_scale: float = 1.0,
    time_scale: float = 1.0,
) -> list[Request]:
    """Read a trace CSV and transform it; arrivals start at 0 (the slice's start)."""
    return transform(
        read_rows(path),
        offset_s=offset_s,
        duration_s=duration_s,
        rate_scale=rate_scale,
        time_scale=time_scale,
    )


def piecewise(
    segments: Sequence[tuple[float, float]],
    *,
    prompt_tokens: int = 512,
    output_tokens: int = 128,
    poisson: bool = False,
    seed: int = 0,
    start_s: float = 0.0,
    prefix: str = "s",
) -> list[Request]:
    """Synthetic load: for each (duration_s, rate_per_s) segment, arrivals at that rate.

    Evenly spaced (1 / rate apart) by default, so counts are exact; ``poisson=True`` draws
    exponential gaps from a seeded generator instead (bursty, still reproducible).
    """
    rng = random.Random(seed)
    out: list[Request] = []
    t0 = start_s
    for duration, rate in segments:
        if rate > 0:
            t = t0 + (rng.expovariate(rate) if poisson else 0.0)
            while t < t0 + duration - 1e-12:
                out.append(Request(f"{prefix}{len(out)}", t, prompt_tokens, output_tokens))
                t += rng.expovariate(rate) if poisson else 1.0 / rate
        t0 += duration
    return out


def step_load(
    low_rate: float, high_rate: float, step_at_s: float, duration_s: float, **kw: object
) -> list[Request]:
    """`low_rate` until `step_at_s`, then `high_rate` until `duration_s` (a load step up or down)."""
    return piecewise([(step_at_s, low_rate), (duration_s - step_at_s, high_rate)], **kw)  # type: ignore[arg-type]


def burst(
    base_rate: float, burst_rate: float, at_s: float, length_s: float, duration_s: float, **kw: object
) -> list[Request]:
    """`base_rate`, with `burst_rate` during [at_s, at_s + length_s), for `duration_s` in all."""
    segs = [(at_s, base_rate), (length_s, burst_rate), (duration_s - at_s - length_s, base_rate)]
    return piecewise(segs, **kw)  # type: ignore[arg-type]
