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


def test_a_deleted_pod_sleeps_and_a_new_pod_wakes_it_with_the_measured_time(tmp_path: Path) -> None:
    from ember_sim.sleep import SimSleepPlanner, SleepConfig

    runner, clock, members = make(tmp_path)
    runner.sleep = SimSleepPlanner(SleepConfig(max_sleeping=1, delete_after_s=100.0))
    try:
        runner.start()
        run_for(runner, clock, 30.0)  # the trace is served
        del members.pods["sim-1"]
        run_for(runner, clock, 20.0)  # longer than the first sleep (9.16 s)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["states"] == {"serving": 1, "sleeping": 1, "starting": 0}
        assert [e["labels"]["pod"] for e in json.loads((tmp_path / "sd.json").read_text())] == ["sim-0"]
        assert status["gpu_seconds"] >= 2 * 50.0 - 0.5  # asleep, still held
        assert status["gpu_seconds_asleep"] >= 19.5
        members.pods["sim-7"] = PodView("sim-7", False, True)  # a new pod, not Ready
        run_for(runner, clock, 0.1)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["states"] == {"serving": 1, "sleeping": 0, "starting": 1}  # waking
        assert status["starts"] == {"wake": 1}
        run_for(runner, clock, 0.2)
        assert (
            json.loads((tmp_path / "status.json").read_text())["states"]["serving"] == 1
        )  # 0.2 s after the wake
        run_for(runner, clock, 0.3)  # 0.5 s after the wake: past its 0.408 s
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["states"] == {"serving": 2, "sleeping": 0, "starting": 0}
        assert sorted(e["labels"]["pod"] for e in json.loads((tmp_path / "sd.json").read_text())) == [
            "sim-0",
            "sim-7",
        ]
    finally:
        runner.close()


def test_without_sleeping_a_new_pod_is_starting_until_ready(tmp_path: Path) -> None:
    runner, clock, members = make(tmp_path, n=1)
    try:
        runner.start()
        members.pods["sim-5"] = PodView("sim-5", False, True)
        run_for(runner, clock, 1.0)
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["states"] == {"serving": 1, "sleeping": 0, "starting": 1}
        assert status["starts"] == {}
    finally:
        runner.close()
