"""The live runner on a fake clock: trace replay, membership changes, targets and status files."""

from __future__ import annotations

import json
from pathlib import Path

from ember_sim.fleet import Fleet
from ember_sim.live import LiveRunner, StaticMembership
from ember_sim.membership import PodView
from ember_sim.trace import piecewise


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, n: int = 2) -> tuple[LiveRunner, FakeClock, StaticMembership]:
    clock, members = FakeClock(), StaticMembership.of(n)
    reqs = piecewise([(20.0, 5.0)], prompt_tokens=500, output_tokens=400)
    runner = LiveRunner(Fleet(), reqs, members, "chat", "ns1", tmp_path / "sd.json", tmp_path / "status.json",
                        clock=clock)  # fmt: skip
    return runner, clock, members


def run_for(runner: LiveRunner, clock: FakeClock, seconds: float, tick_s: float = 0.1) -> None:
    for _ in range(round(seconds / tick_s)):
        clock.t += tick_s
        runner.tick()


def test_replay_follows_the_clock_and_serves_every_request(tmp_path: Path) -> None:
    runner, clock, _ = make(tmp_path)
    try:
        runner.start()
        run_for(runner, clock, 10.0)
        status = json.loads((tmp_path / "status.json").read_text())
        assert 48 <= status["submitted"] <= 51  # 5/s for 10 s
        run_for(runner, clock, 30.0)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["trace_done"] and status["completed"] == 100 and status["failed_total"] == 0
    finally:
        runner.close()


def test_the_targets_file_lists_each_replica_with_its_pod_labels(tmp_path: Path) -> None:
    runner, clock, members = make(tmp_path)
    try:
        runner.start()
        sd = json.loads((tmp_path / "sd.json").read_text())
        assert [e["labels"] for e in sd] == [
            {"namespace": "ns1", "pod": f"sim-{i}", "inferenceservice": "chat"} for i in range(2)
        ]
        ports = {e["targets"][0] for e in sd}
        assert len(ports) == 2 and all(t.startswith("127.0.0.1:") for t in ports)
        del members.pods["sim-1"]
        run_for(runner, clock, 0.1)
        assert [e["labels"]["pod"] for e in json.loads((tmp_path / "sd.json").read_text())] == ["sim-0"]
    finally:
        runner.close()


def test_draining_a_pod_loses_nothing_and_deleting_one_counts_its_requests_as_failed(tmp_path: Path) -> None:
    runner, clock, members = make(tmp_path, n=3)
    try:
        runner.start()
        run_for(runner, clock, 5.0)
        members.pods["sim-0"] = PodView("sim-0", ready=True, serving=False)  # the operator drains it
        run_for(runner, clock, 1.0)
        on_sim2 = runner.fleet.slots["sim-2"].replica.outstanding
        del members.pods["sim-2"]  # deleted with requests in flight
        run_for(runner, clock, 40.0)
        status = runner.status()
        assert status["failed"] == {"replica_removed": on_sim2} and on_sim2 > 0
        assert status["completed"] + status["failed_total"] == 100 and status["in_flight"] == 0
        assert max(runner.fleet.slots["sim-0"].replica.routed_at_s) <= 5.0 + 1e-9
    finally:
        runner.close()
