"""Behaviour of the single-replica queueing model."""

from __future__ import annotations

import math

import pytest
from ember_sim.model import Replica
from ember_sim.params import ReplicaParams
from ember_sim.records import Outcome, Request
from ember_sim.trace import piecewise
from hypothesis import given, settings
from hypothesis import strategies as st

P = ReplicaParams()


def run(
    reqs: list[Request], params: ReplicaParams = P, until_s: float = 1e6, partial: bool = False
) -> Replica:
    rep = Replica("r0", params)
    for r in sorted(reqs, key=lambda r: r.arrival_s):
        rep.advance(r.arrival_s, partial=partial)
        rep.submit(r)
    rep.advance(until_s, partial=partial)
    return rep


def test_a_lone_request_takes_one_prefill_step_then_one_decode_step_per_token() -> None:
    rep = run([Request("a", 1.0, prompt_tokens=3000, output_tokens=100)])
    (rec,) = rep.records
    assert rec.ttft_s == pytest.approx(P.step_s(0, 3000))
    assert rec.mean_itl_s == pytest.approx(P.decode_step_s(1))
    assert rec.e2e_s == pytest.approx(P.step_s(0, 3000) + 99 * P.decode_step_s(1))


def test_a_prompt_longer_than_the_step_budget_is_prefilled_in_chunks() -> None:
    params = ReplicaParams(max_num_batched_tokens=1000)
    rep = run([Request("a", 0.0, prompt_tokens=2500, output_tokens=2)], params)
    assert [s.prefill_tokens for s in rep.spans[:3]] == [1000, 1000, 500]
    assert rep.records[0].ttft_s == pytest.approx(2 * params.step_s(0, 1000) + params.step_s(0, 500))


def test_ttft_grows_with_load() -> None:
    def mean_ttft(rate: float) -> float:
        rep = run(piecewise([(60.0, rate)], prompt_tokens=1500, output_tokens=200, poisson=True, seed=1))
        return sum(r.ttft_s or 0 for r in rep.records) / len(rep.records)

    ttfts = [mean_ttft(rate) for rate in (1.0, 4.0, 8.0, 12.0)]
    assert ttfts == sorted(ttfts)
    assert ttfts[-1] > 3 * ttfts[0]


def test_littles_law_holds_in_steady_state() -> None:
    """L = lambda W: the time-average number in the system equals arrival rate x mean time in system."""
    rate, horizon = 6.0, 300.0
    reqs = piecewise([(horizon, rate)], prompt_tokens=800, output_tokens=150, poisson=True, seed=7)
    rep = Replica("r0", P)
    samples: list[int] = []
    pending = sorted(reqs, key=lambda r: r.arrival_s)
    t, i = 0.0, 0
    while t < horizon:
        t += 0.05
        while i < len(pending) and pending[i].arrival_s <= t:
            rep.advance(pending[i].arrival_s)
            rep.submit(pending[i])
            i += 1
        rep.advance(t, partial=True)
        if t > 30.0:  # skip the warm-up
            g = rep.gauges(t)
            samples.append(g.running + g.waiting)
    done = [r for r in rep.records if 30.0 < r.request.arrival_s < horizon - 30.0]
    w = sum(r.e2e_s for r in done) / len(done)
    assert sum(samples) / len(samples) == pytest.approx(rate * w, rel=0.1)


def test_kv_capacity_bounds_admission() -> None:
    # each request needs ceil((1000 + 1000) / 16) = 125 blocks; 4000 blocks hold 32 of them
    params = ReplicaParams(kv_cache_tokens=64_000, max_num_seqs=256)
    reqs = [Request(str(i), 0.0, 1000, 1000) for i in range(100)]
    rep = Replica("r0", params)
    for r in reqs:
        rep.submit(r)
    peak = 0
    for k in range(1, 400):
        rep.advance(k * 0.25, partial=True)
        g = rep.gauges(k * 0.25)
        peak = max(peak, g.running)
        assert g.kv_used_blocks <= g.kv_blocks
    assert peak == 32
    rep.advance(1e6)
    assert all(r.ok for r in rep.records) and len(rep.records) == 100


def test_the_batch_never_exceeds_max_num_seqs() -> None:
    params = ReplicaParams(max_num_seqs=8)
    rep = run([Request(str(i), 0.0, 100, 50) for i in range(40)], params)
    assert max(s.decoding for s in rep.spans) == 8
    assert len(rep.records) == 40


def test_a_request_larger_than_the_cache_is_rejected_not_stuck() -> None:
    params = ReplicaParams(kv_cache_tokens=1024)
    rep = run([Request("big", 0.0, 2000, 10), Request("ok", 0.0, 100, 10)], params)
    outcomes = {r.request.id: r.outcome for r in rep.records}
    assert outcomes == {"big": Outcome.TOO_LONG, "ok": Outcome.COMPLETED}


def test_token_counters_match_the_work_done() -> None:
    reqs = piecewise([(30.0, 5.0)], prompt_tokens=700, output_tokens=90, poisson=True, seed=3)
    rep = run(reqs)
    assert rep.prompt_tokens_total == sum(r.prompt_tokens for r in reqs)
    assert rep.generation_tokens_total == sum(r.output_tokens for r in reqs)
    assert sum(s.generated_tokens for s in rep.spans) == rep.generation_tokens_total


requests = st.lists(
    st.builds(
        Request,
        id=st.uuids().map(str),
        arrival_s=st.floats(0, 20, allow_nan=False),
        prompt_tokens=st.integers(1, 9000),
        output_tokens=st.integers(1, 400),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(requests)
def test_the_model_is_deterministic_and_independent_of_how_time_is_cut(reqs: list[Request]) -> None:
    lazy, again, eager = run(reqs), run(reqs), run(reqs, partial=True)
    key = [(r.request.id, r.first_token_s, r.finished_s) for r in lazy.records]
    assert key == [(r.request.id, r.first_token_s, r.finished_s) for r in again.records]
    eager_key = [(r.request.id, r.first_token_s, r.finished_s) for r in eager.records]
    assert [k[0] for k in key] == [k[0] for k in eager_key]
    for (_, f1, e1), (_, f2, e2) in zip(key, eager_key, strict=True):
        assert math.isclose(f1 or 0, f2 or 0, abs_tol=1e-6) and math.isclose(e1, e2, abs_tol=1e-6)


@settings(max_examples=40, deadline=None)
@given(requests)
def test_every_request_completes_with_latencies_bounded_by_the_step_costs(reqs: list[Request]) -> None:
    rep = run(reqs)
    assert sorted(r.request.id for r in rep.records) == sorted(r.id for r in reqs)
    for rec in rep.records:
        assert rec.ok and rec.ttft_s is not None
        assert rec.ttft_s >= P.step_s(0, min(rec.request.prompt_tokens, P.max_num_batched_tokens)) - 1e-9
        if rec.mean_itl_s is not None:
            assert rec.mean_itl_s >= P.decode_step_s(1) - 1e-9
