"""SLO targets by archetype (pure): the presets the CRD's `slo` docstrings promise.

| archetype   | TTFT p95 | ITL p95 |
|-------------|----------|---------|
| interactive | 500 ms   | 50 ms   |
| background  | 5000 ms  | 200 ms  |
| batch       | 60000 ms | 1000 ms |

A target written in the spec wins over the preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.api.v1alpha1 import SLO

PRESETS_MS: dict[str, tuple[int, int]] = {
    "interactive": (500, 50),
    "background": (5000, 200),
    "batch": (60000, 1000),
}


@dataclass(frozen=True)
class Targets:
    ttft_p95_s: float
    itl_p95_s: float
    utilization: float


def targets(slo: SLO) -> Targets:
    """The effective targets, in seconds: the spec's values, else the archetype's preset."""
    ttft_ms, itl_ms = PRESETS_MS[slo.archetype]
    return Targets(
        ttft_p95_s=(slo.ttft_p95_ms if slo.ttft_p95_ms is not None else ttft_ms) / 1000.0,
        itl_p95_s=(slo.itl_p95_ms if slo.itl_p95_ms is not None else itl_ms) / 1000.0,
        utilization=slo.target_utilization,
    )
