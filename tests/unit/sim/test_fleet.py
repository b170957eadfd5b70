"""Behaviour of the fleet: routing, drain, removal, the scale-from-zero queue, accounting."""

from __future__ import annotations

import pytest
from ember_sim.fleet import Fleet
from ember_sim.records import Outcome, Request
from ember_sim.trace import piecewise
from hypothesis import given, settings
from hypothesis import strategies as st


def drive(fleet: Fleet, reqs: list[Request]) -> dict[str, str | None]:
    return {r.id: fleet.submit(r) for r in sorted(reqs, key=lambda r: r.arrival_s)}


def assert_conserved(fleet: Fleet) -> None:
    t = fleet.totals()
    assert t.submitted == t.completed + t.failed_total + t.in_flight


def test_requests_go_only_to_ready_replicas() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=0.0)
    fleet.add_replica("b", ready_at_s=10.0)
    routed = drive(fleet, piecewise([(20.0, 5.0)], output_tokens=2000))
    early = {rid for r, rid in routed.items() if int(r[1:]) < 50}  # arrivals before t = 10
    assert early == {"a"}
    assert "b" in set(routed.values())


def test_the_router_picks_the_replica_with_fewest_outstanding_requests() -> None:
    fleet = Fleet()
    for rid in ("a", "b", "c"):
        fleet.add_replica(rid, ready_at_s=0.0)
    # long requests arriving together: each replica gets one before any gets a second
    routed = drive(fleet, [Request(str(i), 1.0, 100, 5000) for i in range(9)])
    assert list(routed.values()) == ["a", "b", "c"] * 3


def test_drain_stops_new_traffic_and_loses_nothing() -> None:
    fleet = Fleet()
    fleet.add_replica("a", 0.0)
    fleet.add_replica("b", 0.0)
    reqs = piecewise([(60.0, 8.0)], prompt_tokens=1000, output_tokens=300, poisson=True, seed=2)
    drive(fleet, [r for r in reqs if r.arrival_s < 30.0])
    fleet.advance(30.0)
    in_flight_on_b = fleet.slots["b"].replica.outstanding
    assert in_flight_on_b > 0
    fleet.drain("b")
    drive(fleet, [r for r in reqs if r.arrival_s >= 30.0])
    fleet.advance(200.0)
    assert max(fleet.slots["b"].replica.routed_at_s) <= 30.0
    t = fleet.totals()
    assert t.completed == len(reqs) and t.failed_total == 0 and t.in_flight == 0


def test_remove_loses_in_flight_requests_and_counts_them_as_failed() -> None:
    fleet = Fleet()
    fleet.add_replica("a", 0.0)
    fleet.add_replica("b", 0.0)
    drive(fleet, [Request(str(i), 0.0, 500, 3000) for i in range(10)])
    fleet.advance(5.0)
    on_b = fleet.slots["b"].replica.outstanding
    lost = fleet.remove("b")
    assert len(lost) == on_b == 5
    assert all(r.outcome is Outcome.REPLICA_REMOVED and r.finished_s == 5.0 for r in lost)
    fleet.advance(100.0)
    t = fleet.totals()
    assert (t.completed, t.failed, t.in_flight) == (5, {Outcome.REPLICA_REMOVED: 5}, 0)
    assert fleet.window_stats(0.0, 100.0).aggregate.failed == 5


def test_a_request_with_no_ready_replica_waits_for_one() -> None:
    fleet = Fleet(queue_timeout_s=30.0)
    assert fleet.submit(Request("first", 1.0, 100, 10)) is None
    fleet.advance(2.0)
    fleet.add_replica("a", ready_at_s=8.0)  # e.g. a cold start of 6 s
    fleet.advance(20.0)
    (rec,) = fleet.all_records()
    assert rec.ok and rec.replica == "a"
    assert rec.ttft_s == pytest.approx(7.0 + fleet.params.step_s(0, 100))


def test_a_request_that_waits_past_the_timeout_fails() -> None:
    fleet = Fleet(queue_timeout_s=30.0)
    fleet.submit(Request("first", 1.0, 100, 10))
    fleet.submit(Request("second", 20.0, 100, 10))
    fleet.advance(40.0)
    fleet.add_replica("a", ready_at_s=40.0)
    fleet.advance(60.0)
    outcomes = {r.request.id: r.outcome for r in fleet.all_records()}
    assert outcomes == {"first": Outcome.QUEUE_TIMEOUT, "second": Outcome.COMPLETED}
    assert fleet.window_stats(0.0, 60.0).aggregate.failed == 1


def test_gpu_seconds_run_from_creation_to_removal_ready_or_not() -> None:
    fleet = Fleet()
    fleet.add_replica("a", ready_at_s=30.0)
    fleet.advance(100.0)
    fleet.remove("a")
    fleet.add_replica("b", ready_at_s=100.0)
    fleet.advance(150.0)
    assert fleet.gpu_seconds() == pytest.approx(150.0)
    w = fleet.window_stats(90.0, 150.0)
    assert w.aggregate.gpu_seconds == pytest.approx(60.0)
    assert set(w.replicas) == {"a", "b"}


def test_window_stats_report_rate_latency_and_utilisation() -> None:
    fleet = Fleet()
    fleet.add_replica("a", 0.0)
    fleet.add_replica("b", 0.0)
    drive(fleet, piecewise([(120.0, 4.0)], prompt_tokens=1000, output_tokens=100))
    fleet.advance(120.0)
    w = fleet.window_stats(60.0, 120.0)
    agg = w.aggregate
    assert agg.qps == pytest.approx(4.0)
    assert sum(s.arrivals for s in w.replicas.values()) == agg.arrivals
    assert agg.ttft_p50_s is not None and agg.ttft_p95_s is not None
    assert agg.itl_p50_s is not None and agg.itl_p95_s is not None
    assert fleet.params.step_s(0, 1000) <= agg.ttft_p50_s <= agg.ttft_p95_s < 0.5
    assert fleet.params.decode_step_s(1) <= agg.itl_p50_s <= agg.itl_p95_s
    assert 0.0 < agg.busy_fraction < 1.0
    assert agg.gpu_seconds == pytest.approx(120.0)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 4000), st.integers(1, 500)),
        st.tuples(st.just("add"), st.floats(0, 10), st.just(0)),
        st.tuples(st.sampled_from(["drain", "serve", "remove"]), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("wait"), st.floats(0, 5), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_every_request_is_accounted_for_and_routed_only_to_routable_replicas(program: list) -> None:
    fleet = Fleet(queue_timeout_s=20.0)
    n = 0
    for op, a, b in program:
        live = fleet.live()
        if op == "submit":
            allowed = set(fleet.routable())
            rid = fleet.submit(Request(str(n), fleet.now_s, a, b))
            assert rid is None or rid in allowed
            n += 1
        elif op == "add":
            fleet.add_replica(f"r{len(fleet.slots)}", fleet.now_s + a)
        elif op == "wait":
            fleet.advance(fleet.now_s + a)
        elif live:
            rid = live[a % len(live)]
            {"drain": fleet.drain, "remove": fleet.remove}.get(op, lambda r: fleet.set_serving(r, True))(rid)
        assert_conserved(fleet)
    fleet.add_replica("last", fleet.now_s)
    fleet.advance(fleet.now_s + 10_000.0)
    t = fleet.totals()
    assert t.in_flight == 0 and t.completed + t.failed_total == n
