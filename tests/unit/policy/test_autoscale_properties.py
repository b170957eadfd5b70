"""Hypothesis properties of `ember.policy.autoscale.decide`: invariants over any spec, state and load."""

from __future__ import annotations

import dataclasses
from typing import Any

from ember.api.v1alpha1 import AutoscalerState, InferenceServiceSpec, ModelSource, Scaling
from ember.policy.autoscale import decide, scale_down_delay
from ember.policy.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 1_700_000_000.0


def none_of(name: str) -> dict[str, Any]:
    return {name: None}


@st.composite
def specs(draw: st.DrawFn) -> InferenceServiceSpec:
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(1, lo), 30))
    stz = draw(st.none() | st.integers(0, 600)) if lo == 0 else None
    stable = draw(st.integers(6, 120))
    sc = Scaling(
        min_replicas=lo, max_replicas=hi, scale_to_zero_after_seconds=stz,
        stable_window_seconds=stable, panic_window_seconds=draw(st.integers(1, stable)),
        scale_down_delay_seconds=draw(st.integers(0, 600)), max_scale_up_step=draw(st.integers(1, 8)),
        max_scale_down_step=draw(st.integers(1, 4)), tolerance=draw(st.sampled_from([0.0, 0.1, 0.3])),
        target_in_flight_per_replica=draw(st.integers(1, 64)),
        target_qps_per_replica=draw(st.none() | st.floats(0.1, 50)),
        max_queue_per_replica=draw(st.integers(0, 16)),
    )  # fmt: skip
    return InferenceServiceSpec(model=ModelSource(uri="hf://o/m"), scaling=sc)


@st.composite
def states(draw: st.DrawFn) -> AutoscalerState:
    n = draw(st.integers(0, 20))
    samples = [[NOW - 5.0 * (n - i), draw(st.floats(0, 100)), draw(st.floats(0, 500))] for i in range(n)]
    recs = [[NOW - 5.0 * (n - i), float(draw(st.integers(0, 40)))] for i in range(n)]
    return AutoscalerState(
        samples=samples, recommendations=recs, capacity_factor=draw(st.floats(0.25, 2.0)),
        service_time_s=draw(st.none() | st.floats(0.1, 30)),
    )  # fmt: skip


latency = st.none() | st.floats(0.0, 20.0)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    cur = draw(st.integers(0, 40))
    return Observation(
        now=NOW, current_replicas=cur, ready_replicas=draw(st.integers(0, cur)),
        qps=draw(st.floats(0, 200)), qps_panic=draw(st.floats(0, 200)),
        ttft_p95_s=draw(latency), itl_p95_s=draw(latency),
        running=float(draw(st.integers(0, 500))), waiting=float(draw(st.integers(0, 500))),
        time_to_ready_s=draw(st.floats(0, 600)),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(specs(), observations(), states())
def test_bounds_always_hold(spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState) -> None:
    d, _ = decide(spec, obs, state)
    assert spec.scaling.min_replicas <= d.desired_replicas <= spec.scaling.max_replicas


@settings(max_examples=150, deadline=None)
@given(specs(), observations(), states(), st.floats(0, 100), st.integers(0, 100), st.integers(0, 100),
       st.floats(0, 2))  # fmt: skip
def test_more_load_never_gives_fewer_replicas(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState,
    dq: float, drun: int, dwait: int, dlat: float,
) -> None:  # fmt: skip
    assert obs.qps is not None and obs.qps_panic is not None and obs.running is not None
    assert obs.waiting is not None
    more = dataclasses.replace(
        obs, qps=obs.qps + dq, qps_panic=obs.qps_panic + dq, running=obs.running + drun,
        waiting=obs.waiting + dwait,
        ttft_p95_s=None if obs.ttft_p95_s is None else obs.ttft_p95_s + dlat,
        itl_p95_s=None if obs.itl_p95_s is None else obs.itl_p95_s + dlat,
    )  # fmt: skip
    assert decide(spec, more, state)[0].desired_replicas >= decide(spec, obs, state)[0].desired_replicas


@settings(max_examples=150, deadline=None)
@given(specs(), observations(), states(), st.floats(0, 1))
def test_no_scale_down_inside_the_stabilisation_window(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState, frac: float
) -> None:
    sc = spec.scaling
    if (
        obs.current_replicas > sc.max_replicas
        or obs.current_replicas == 0
        or sc.scale_down_delay_seconds == 0
    ):
        return  # bounds win; nothing to scale down; a zero delay has no window
    # the delay used is the spec's, shortened where a re-scale-up is cheap (issue 19: cost-aware)
    delay = scale_down_delay(spec, obs)
    if delay <= sc.decision_interval_seconds:
        return  # a delay of one interval or less has no window either
    at = obs.now - frac * delay * 0.99
    recs = [*(p for p in state.recommendations if p[0] < at), [at, float(obs.current_replicas)]]
    recs.sort()
    d, _ = decide(spec, obs, state.model_copy(update={"recommendations": recs}))
    assert d.desired_replicas >= min(obs.current_replicas, sc.max_replicas) or (
        d.desired_replicas == 0 and d.reason == "ScaledToZero"
    )


@settings(max_examples=150, deadline=None)
@given(specs(), observations(), states(), st.floats(0, 1200))
def test_one_to_zero_only_after_the_idle_delay(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState, idle_s: float
) -> None:
    from datetime import UTC, datetime

    sc = spec.scaling
    idle = dataclasses.replace(obs, current_replicas=1, ready_replicas=1, qps=0.0, qps_panic=0.0,
                               running=0.0, waiting=0.0)  # fmt: skip
    st_ = state.model_copy(update={"last_request_time": datetime.fromtimestamp(NOW - idle_s, UTC)})
    d, _ = decide(spec, idle, st_)
    if d.desired_replicas == 0:
        delay = (
            sc.scale_down_delay_seconds
            if sc.scale_to_zero_after_seconds is None
            else sc.scale_to_zero_after_seconds
        )
        assert sc.min_replicas == 0 and idle_s >= delay - 1e-6 and d.reason == "ScaledToZero"


@settings(max_examples=150, deadline=None)
@given(specs(), observations(), states(), st.sampled_from(["failed", "qps", "running", "waiting"]))
def test_missing_data_never_scales_down(
    spec: InferenceServiceSpec, obs: Observation, state: AutoscalerState, what: str
) -> None:
    broken = (
        dataclasses.replace(obs, metrics_ok=False)
        if what == "failed"
        else dataclasses.replace(obs, **none_of(what))
    )
    d, new = decide(spec, broken, state)
    # at zero, with Prometheus answering, there is nothing to measure: not a metrics failure
    at_zero = obs.current_replicas == 0 and what != "failed"
    assert d.reason in (("ScaledToZero", "AtMin") if at_zero else ("MetricsUnavailable",))
    assert d.desired_replicas >= min(obs.current_replicas, spec.scaling.max_replicas)
    assert new.recommendations[-1] == [NOW, float(d.desired_replicas)]
