"""The demo's record: replicas by state in the samples, the summary and the plot."""

from __future__ import annotations

from pathlib import Path

from ember_demo.report import Record, Sample, plot


def test_the_summary_reports_held_gpu_time_asleep_and_starts_by_path(tmp_path: Path) -> None:
    rec = Record(ttft_target_ms=500, itl_target_ms=50)
    rec.samples += [
        Sample(0.0, 3, 3, 2, 5.0, 100.0, 20.0, "Demand", serving=3),
        Sample(1.0, 1, 1, 2, 0.0, None, None, "Idle", serving=1, sleeping=2),
        Sample(2.0, 2, 1, 2, 3.0, None, None, "Demand", serving=1, sleeping=1, starting=1),
    ]
    s = rec.summary(3600.0, 10, 0, 900.0, {"wake": 1, "cold": 2})
    assert (s["gpu_hours"], s["gpu_hours_asleep"]) == (1.0, 0.25)
    assert s["starts_by_path"] == "cold 2, wake 1"
    assert s["max_sleeping_seen"] == 2
    plot(rec, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").stat().st_size > 0
