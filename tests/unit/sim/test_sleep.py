"""Sleeping replicas in the simulator: the planner's rule, the fleet's accounting, the benchmark's actuator."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ember_sim.fleet import Fleet
from ember_sim.records import Request
from ember_sim.sleep import SimSleepPlanner, SleepConfig, Sleeper, SleepTimes
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.autoscale.harness import FleetView, RunConfig, run

WAKE = SleepTimes().wake_to_first_token_s


def test_the_measured_times_are_the_h200_figures() -> None:
    t = SleepTimes()
    assert (t.wake_to_first_token_s, t.first_sleep_s, t.sleep_s) == (0.408, 9.16, 0.452)
    assert "n=5" in (SleepTimes.model_fields["wake_to_first_token_s"].description or "")


def test_the_planner_parks_under_the_bound_and_deletes_at_it() -> None:
    p = SimSleepPlanner(SleepConfig(max_sleeping=2))
    assert [p.park(n) for n in (0, 1, 2, 3)] == [True, True, False, False]
    assert not SimSleepPlanner(SleepConfig()).park(0)  # default 0: off


def test_the_planner_wakes_the_most_recently_parked() -> None:
    p = SimSleepPlanner(SleepConfig(max_sleeping=3))
    sleepers = {r: Sleeper(r, since, since + 1) for r, since in (("a", 5.0), ("b", 30.0), ("c", 10.0))}
    assert p.wake(sleepers) == "b"
    assert p.wake({}) is None


def test_the_planner_deletes_a_sleeper_at_delete_after() -> None:
    p = SimSleepPlanner(SleepConfig(max_sleeping=3, delete_after_s=100))
    sleepers = {"a": Sleeper("a", 0.0, 9.0), "b": Sleeper("b", 50.0, 51.0)}
    assert p.expired(sleepers, 99.0) == []
    assert p.expired(sleepers, 100.0) == ["a"]
    assert p.expired(sleepers, 150.0) == ["a", "b"]


@pytest.mark.parametrize("bad", [{"max_sleeping": -1}, {"delete_after_s": 0}])
def test_impossible_bounds_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SleepConfig(**bad)  # type: ignore[arg-type]


def test_a_sleeping_replica_holds_its_gpu() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.advance(10.0)
    fleet.park("a")
    fleet.advance(100.0)
    assert fleet.asleep() == ["a"] and fleet.routable() == [] and fleet.awake() == []
    assert fleet.gpu_seconds() == pytest.approx(100.0)
    assert fleet.gpu_seconds_asleep() == pytest.approx(90.0)
    fleet.remove("a")
    fleet.advance(200.0)
    assert fleet.gpu_seconds() == pytest.approx(100.0)
    assert fleet.gpu_seconds_asleep() == pytest.approx(90.0)
    assert fleet.gpu_seconds_asleep(50.0, 70.0) == pytest.approx(20.0)


def test_a_woken_replica_serves_after_the_measured_wake_time() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.advance(10.0)
    fleet.park("a")
    fleet.advance(100.0)
    assert fleet.wake("a") == pytest.approx(100.0 + WAKE)
    assert fleet.starts == {"wake": 1}
    fleet.submit(Request("q", 100.1, 100, 10))
    fleet.advance(110.0)
    [rec] = [r for r in fleet.all_records() if r.request.id == "q"]
    assert rec.ok and rec.first_token_s is not None
    assert rec.first_token_s >= 100.0 + WAKE  # held until the engine is awake
    assert fleet.gpu_seconds_asleep() == pytest.approx(90.0)  # awake again: no longer counted asleep


def test_a_wake_during_the_first_sleep_waits_for_it_to_finish() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.advance(10.0)
    fleet.park("a")  # the first sleep of an engine pins host memory: 9.16 s
    fleet.advance(12.0)
    assert fleet.wake("a") == pytest.approx(10.0 + 9.16 + WAKE)
    fleet.advance(30.0)
    fleet.park("a")  # later sleeps: 0.452 s
    assert fleet.sleepers()["a"].asleep_at_s == pytest.approx(30.452)


def test_a_replica_woken_for_a_new_pod_takes_its_name() -> None:
    fleet = Fleet()
    fleet.add_replica("chat-0", ready_at_s=0.0)
    fleet.park("chat-0")
    fleet.advance(20.0)
    fleet.wake("chat-0", as_id="chat-3")
    assert fleet.live() == ["chat-3"]
    assert fleet.gpu_seconds() == pytest.approx(20.0)  # the same GPU, held throughout


def test_parking_a_replica_with_requests_left_fails_them_as_removal_would() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.submit(Request("q", 0.0, 100, 5000))
    fleet.advance(1.0)
    lost = fleet.park("a")
    assert [r.request.id for r in lost] == ["q"]
    t = fleet.totals()
    assert t.submitted == t.completed + t.failed_total + t.in_flight


# ---- the benchmark's actuator ---------------------------------------------------------------


@dataclass
class Scripted:
    """A policy that asks for a count per time range: [(from_s, count), ...]."""

    script: list[tuple[float, int]]
    name: str = "scripted"
    interval_s: float = 1.0

    def step(self, view: FleetView) -> int:
        return [n for t, n in self.script if t <= view.now][-1]


def cfg(max_sleeping: int = 0, delete_after_s: float = 1800.0, ttr: float = 60.0) -> RunConfig:
    return RunConfig(
        time_to_ready_s=ttr, initial_replicas=2, min_replicas=0, max_replicas=10, drain_timeout_s=5.0,
        sleep=SleepConfig(max_sleeping=max_sleeping, delete_after_s=delete_after_s),
    )  # fmt: skip


def test_scale_up_wakes_a_sleeping_replica_before_a_cold_start() -> None:
    script = [(0.0, 2), (10.0, 1), (100.0, 3)]
    off = run(Scripted(script), [], cfg(), end_s=300.0)
    on = run(Scripted(script), [], cfg(max_sleeping=2), end_s=300.0)
    assert off.starts == {"cold": 2}
    assert on.starts == {"wake": 1, "cold": 1}  # one asleep: woken, the second start is cold
    # the woken one is ready within the tick; the cold one 60 s later
    ready_at_101 = [ready for t, _, ready in on.timeline if t == 101.0]
    assert ready_at_101 == [2]
    assert [ready for t, _, ready in off.timeline if t == 101.0] == [1]
    assert on.gpu_seconds > off.gpu_seconds  # the sleeper held its GPU from 10 s to 100 s
    assert on.gpu_seconds_asleep == pytest.approx(on.gpu_seconds - off.gpu_seconds)


def test_a_sleeper_is_deleted_after_delete_after_seconds() -> None:
    res = run(Scripted([(0.0, 2), (10.0, 1)]), [], cfg(max_sleeping=1, delete_after_s=50.0), end_s=200.0)
    asleep_at = dict(zip((t for t, _, _ in res.timeline), res.asleep, strict=True))
    assert asleep_at[20.0] == 1 and asleep_at[200.0] == 0
    assert res.gpu_seconds_asleep == pytest.approx(50.0, abs=1.0)


def test_the_restore_path_is_counted_as_restore() -> None:
    res = run(Scripted([(0.0, 2), (5.0, 3)]), [], cfg(ttr=8.0), end_s=60.0)
    assert res.starts == {"restore": 1}


def test_ember_plans_with_the_wake_time_while_a_replica_sleeps() -> None:
    from bench.autoscale.policies import EmberPolicy
    from bench.autoscale.runner import ember_spec

    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.add_replica("b", ready_at_s=0.0)
    pol = EmberPolicy(ember_spec(10, 1), 60.0, start_path="cold")
    fleet.advance(5.0)
    assert pol.observe(FleetView(fleet, 5.0, set())).start_path == "cold"
    fleet.park("b")
    obs = pol.observe(FleetView(fleet, 5.0, set()))
    assert (obs.start_path, obs.time_to_ready_s, obs.current_replicas) == ("wake", WAKE, 1)


scripts = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 5)), min_size=1, max_size=12).map(
    lambda steps: (
        [(0.0, 2)] + [(float(sum(d for d, _ in steps[: i + 1])), n) for i, (_, n) in enumerate(steps)]
    )
)


@settings(max_examples=40, deadline=None)
@given(script=scripts, max_sleeping=st.integers(0, 3), delete_after=st.sampled_from([5.0, 40.0, 1800.0]))
def test_gpu_time_is_every_replica_awake_or_asleep_and_the_bound_holds(
    script: list[tuple[float, int]], max_sleeping: int, delete_after: float
) -> None:
    end = script[-1][0] + 100.0
    res = run(Scripted(script), [], cfg(max_sleeping, delete_after), end_s=end)
    assert max(res.asleep) <= max_sleeping
    # actions happen on whole ticks, so held GPU time is the per-tick count of live replicas,
    # awake or asleep: the two initial ones in [0, 1), then each tick's state for the next second
    held = 2 + sum(n + a for (_, n, _), a in zip(res.timeline[:-1], res.asleep[:-1], strict=True))
    assert res.gpu_seconds == pytest.approx(held)
    assert res.gpu_seconds_asleep == pytest.approx(sum(res.asleep[:-1]))
    if max_sleeping == 0:
        assert "wake" not in res.starts and res.gpu_seconds_asleep == 0
    # every wake was a replica parked before: never more wakes than scale-downs that parked
    downs = sum(max(0, a - b) for _, a, b in res.events)
    assert res.starts.get("wake", 0) <= downs
