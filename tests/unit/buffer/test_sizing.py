"""Warm-buffer sizing: static tables, adaptive trajectories in virtual time, Hypothesis invariants."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from ember.api.v1alpha1 import WarmBuffer
from ember.policy.buffer import MAX_SAMPLES, WINDOW_S, bounds, rate_sigma, record_sample, size
from hypothesis import given, settings
from hypothesis import strategies as st


def wb(**kw: object) -> WarmBuffer:
    return WarmBuffer.model_validate({"enabled": True, **kw})


@pytest.mark.parametrize(
    ("idle", "cap", "gpr", "expect"),
    [
        pytest.param(0, 16, 1, 0, id="no-floor"),
        pytest.param(2, 16, 1, 2, id="one-gpu-replicas"),
        pytest.param(3, 16, 2, 2, id="rounded-up-to-whole-replicas"),
        pytest.param(8, 16, 8, 1, id="one-8-gpu-replica"),
        pytest.param(1, 1, 2, 0, id="cap-wins-over-the-floor"),
        pytest.param(16, 16, 4, 4, id="floor-at-cap"),
    ],
)
def test_static_holds_the_floor_in_whole_replicas(idle: int, cap: int, gpr: int, expect: int) -> None:
    s = size(wb(idleGPUs=idle, maxIdleGPUs=cap), gpr, [], None)
    assert (s.placeholders, s.reason) == (expect, "Static")


def test_disabled_holds_nothing() -> None:
    assert size(WarmBuffer(idle_gpus=4), 1, [], 10.0).placeholders == 0


def series(qps: list[float], dt: float = 5.0, t0: float = 1000.0) -> list[list[float]]:
    return [[t0 + i * dt, q] for i, q in enumerate(qps)]


def test_adaptive_without_capacity_falls_back_to_static_and_says_why() -> None:
    s = size(wb(policy="adaptive", idleGPUs=2), 1, series([1, 50, 2, 80]), None)
    assert (s.placeholders, s.reason) == (2, "AdaptiveFallback")
    assert "capacityPerReplica" in s.message


def test_adaptive_with_too_few_samples_falls_back() -> None:
    s = size(wb(policy="adaptive", idleGPUs=1), 1, series([1, 50]), 10.0)
    assert (s.placeholders, s.reason) == (1, "AdaptiveFallback")


def test_adaptive_formula_matches_the_docstring() -> None:
    # increments of +-10 qps every 5 s: sigma^2 = 100/5 = 20 per s; over 60 s: sqrt(20*60) = 34.64 qps
    samples = series([100, 110, 100, 110, 100])
    sigma, n = rate_sigma(samples)
    assert n == 4 and sigma == pytest.approx(math.sqrt(20))
    s = size(wb(policy="adaptive", confidence=0.95, nodeProvisionSeconds=60), 1, samples, 10.0)
    # z(0.95) = 1.645 -> 1.645 * 34.64 / 10 = 5.7 -> 6 replicas
    assert (s.placeholders, s.reason, s.adaptive) == (6, "Adaptive", 6)


def test_adaptive_is_capped_by_max_idle_gpus() -> None:
    s = size(wb(policy="adaptive", maxIdleGPUs=4, nodeProvisionSeconds=600), 2, series([0, 500, 0, 500]), 5.0)
    assert (s.placeholders, s.reason) == (2, "Capped")


def test_adaptive_never_below_the_static_floor() -> None:
    s = size(wb(policy="adaptive", idleGPUs=3), 1, series([10, 10, 10, 10, 10]), 10.0)
    assert (s.placeholders, s.adaptive) == (3, 0)


def trajectory(rates: list[float], policy: WarmBuffer, capacity: float) -> list[int]:
    """Replay a qps series tick by tick (5 s, virtual time) through record_sample + size."""
    samples: list[list[float]] = []
    out = []
    for i, q in enumerate(rates):
        samples = record_sample(samples, 10_000.0 + 5.0 * i, q)
        out.append(size(policy, 1, samples, capacity).placeholders)
    return out


def test_adaptive_grows_under_a_bursty_trace_and_shrinks_when_traffic_is_steady() -> None:
    rng = random.Random(7)
    policy = wb(policy="adaptive", idleGPUs=1, maxIdleGPUs=16, nodeProvisionSeconds=120)
    steady = [100.0 + rng.uniform(-0.5, 0.5) for _ in range(60)]
    bursty = [100.0 + (120.0 if rng.random() < 0.3 else 0.0) + rng.uniform(-5, 5) for _ in range(60)]
    after = [100.0 + rng.uniform(-0.5, 0.5) for _ in range(int(WINDOW_S / 5) + 10)]
    sizes = trajectory(steady + bursty + after, policy, capacity=20.0)
    calm, burst, calm_again = sizes[59], max(sizes[60:120]), sizes[-1]
    assert calm == 1  # the floor: steady traffic needs no more
    assert burst >= 4  # bursts of +120 qps at 20 qps per replica
    assert calm_again == 1  # the burst aged out of the window


def test_history_is_bounded_and_sampled_at_most_once_per_interval() -> None:
    s: list[list[float]] = []
    for i in range(1000):
        s = record_sample(s, float(i), 1.0)
    assert len(s) <= MAX_SAMPLES
    assert all(b[0] - a[0] >= 5.0 for a, b in itertools.pairwise(s))
    assert record_sample(s, 2000.0, None) == [x for x in s if x[0] >= 2000.0 - WINDOW_S]


# ------------------------------------------------------------------------------------ properties
rates = st.lists(st.floats(0, 10_000, allow_nan=False), min_size=0, max_size=40)
policies = st.builds(
    lambda idle, extra, conf, prov: wb(
        policy="adaptive", idleGPUs=idle, maxIdleGPUs=idle + extra, confidence=conf, nodeProvisionSeconds=prov
    ),
    st.integers(0, 32),
    st.integers(0, 32),
    st.floats(0.5, 0.9999),
    st.integers(0, 3600),
)


@settings(max_examples=300, deadline=None)
@given(policies, rates, st.integers(1, 8), st.one_of(st.none(), st.floats(0.01, 1000)))
def test_size_is_always_between_floor_and_cap(
    policy: WarmBuffer, qps: list[float], gpr: int, cap_per: float | None
) -> None:
    floor, cap = bounds(policy, gpr)
    s = size(policy, gpr, series(qps), cap_per)
    assert floor <= s.placeholders <= cap
    assert s.placeholders * gpr <= policy.max_idle_gpus


@settings(max_examples=300, deadline=None)
@given(policies, rates, st.floats(1.0, 20.0), st.floats(0.01, 1000))
def test_more_variability_never_gives_a_smaller_buffer(
    policy: WarmBuffer, qps: list[float], k: float, cap_per: float
) -> None:
    mean = sum(qps) / len(qps) if qps else 0.0
    wilder = [mean + k * (q - mean) for q in qps]  # same series, every deviation scaled by k >= 1
    assert (
        size(policy, 1, series(wilder), cap_per).placeholders
        >= size(policy, 1, series(qps), cap_per).placeholders
    )


@settings(max_examples=200, deadline=None)
@given(policies, rates, st.floats(0.01, 1000))
def test_more_confidence_or_a_slower_node_never_gives_a_smaller_buffer(
    policy: WarmBuffer, qps: list[float], cap_per: float
) -> None:
    base = size(policy, 1, series(qps), cap_per).placeholders
    surer = policy.model_copy(update={"confidence": min(0.9999, policy.confidence + 0.04)})
    slower = policy.model_copy(update={"node_provision_seconds": policy.node_provision_seconds * 2})
    assert size(surer, 1, series(qps), cap_per).placeholders >= base
    assert size(slower, 1, series(qps), cap_per).placeholders >= base
