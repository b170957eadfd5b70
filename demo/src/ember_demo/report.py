"""Samples taken while the demo runs, the end-of-run summary and the PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx


@dataclass
class Sample:
    t: float  # seconds since traffic started
    desired: int
    ready: int
    buffer: int
    qps: float | None
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    reason: str
    # the simulator's replicas by state (ember_sim.live status "states"): in the Service; asleep on
    # their GPU (parked instead of deleted, ember_sim.sleep); created or woken, not serving yet
    serving: int = 0
    sleeping: int = 0
    starting: int = 0


@dataclass
class Window:
    t: float
    ttft_p95_ms: float | None
    itl_p95_ms: float | None
    qps: float | None


@dataclass
class Record:
    ttft_target_ms: float
    itl_target_ms: float
    samples: list[Sample] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def attainment(self) -> float | None:
        """Share of 10-second windows with traffic whose TTFT p95 and ITL p95 (Prometheus, from the
        replicas' vLLM histograms) are within the SLO."""
        w = [x for x in self.windows if x.qps and x.ttft_p95_ms is not None and x.itl_p95_ms is not None]
        if not w:
            return None
        ok = [x for x in w if x.ttft_p95_ms <= self.ttft_target_ms and x.itl_p95_ms <= self.itl_target_ms]  # type: ignore[operator]
        return len(ok) / len(w)

    def summary(
        self,
        gpu_seconds: float,
        completed: int,
        failed: int,
        gpu_seconds_asleep: float = 0.0,
        starts: dict[str, int] | None = None,
    ) -> dict[str, object]:
        att = self.attainment()
        return {
            "slo_attainment": None if att is None else round(att, 4),
            "windows": len(self.windows),
            "gpu_hours": round(gpu_seconds / 3600, 4),
            "gpu_hours_asleep": round(gpu_seconds_asleep / 3600, 4),
            "starts_by_path": ", ".join(f"{k} {v}" for k, v in sorted((starts or {}).items())) or "-",
            "max_sleeping_seen": max((s.sleeping for s in self.samples), default=0),
            "scale_events": sum(
                a.desired != b.desired for a, b in zip(self.samples, self.samples[1:], strict=False)
            ),
            "max_desired": max((s.desired for s in self.samples), default=0),
            "final_desired": self.samples[-1].desired if self.samples else 0,
            "requests_completed": completed,
            "requests_failed": failed,
        }

    def save(self, path: Path, summary: dict[str, object]) -> None:
        path.write_text(
            json.dumps(
                {
                    "summary": summary,
                    "samples": [asdict(s) for s in self.samples],
                    "windows": [asdict(w) for w in self.windows],
                },
                indent=1,
            )
        )


def prometheus_window(
    url: str, selector: str, window_s: int = 10
) -> tuple[float | None, float | None, float | None]:
    """(TTFT p95 ms, ITL p95 ms, qps) over the last window, from the replicas' histograms."""

    def q(expr: str) -> float | None:
        try:
            r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=3).json()
            res = r["data"]["result"]
            v = float(res[0]["value"][1]) if res else None
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            return None
        return v if v is not None and v == v else None  # NaN -> None

    h = "histogram_quantile(0.95, sum by (le) (rate(vllm:{m}_bucket{{{s}}}[{w}s])))"
    ttft = q(h.format(m="time_to_first_token_seconds", s=selector, w=window_s))
    itl = q(h.format(m="inter_token_latency_seconds", s=selector, w=window_s))
    qps = q(f"sum(rate(vllm:time_to_first_token_seconds_count{{{selector}}}[{window_s}s]))")
    return (None if ttft is None else ttft * 1000, None if itl is None else itl * 1000, qps)


def plot(rec: Record, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in rec.samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    a.step(t, [s.desired for s in rec.samples], where="post", label="desired replicas")
    a.step(t, [s.serving for s in rec.samples], where="post", label="serving")
    a.step(t, [s.sleeping for s in rec.samples], where="post", label="sleeping (GPU held)")
    a.step(t, [s.starting for s in rec.samples], where="post", label="starting / waking", ls=":")
    a.step(t, [s.buffer for s in rec.samples], where="post", label="warm buffer (placeholders)", alpha=0.6)
    a2 = a.twinx()
    a2.plot(t, [s.qps or 0 for s in rec.samples], color="grey", alpha=0.5, label="QPS")
    a2.set_ylabel("QPS")
    a.set_ylabel("replicas")
    a.legend(loc="upper left")
    a.set_title(title)
    wt = [w.t for w in rec.windows]
    b.plot(wt, [w.ttft_p95_ms for w in rec.windows], marker=".", label="TTFT p95 (10 s windows)")
    b.plot(wt, [w.itl_p95_ms for w in rec.windows], marker=".", label="ITL p95 (10 s windows)")
    b.axhline(rec.ttft_target_ms, ls="--", color="C0", alpha=0.6, label="TTFT target")
    b.axhline(rec.itl_target_ms, ls="--", color="C1", alpha=0.6, label="ITL target")
    b.set_yscale("log")
    b.set_ylabel("ms")
    b.set_xlabel("seconds since traffic started")
    b.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
