"""Scale from zero on the activator's pushed demand (policy step 0) and the demand annotation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from ember.api import demand
from ember.api.v1alpha1 import AutoscalerState, InferenceServiceSpec, ModelSource, Scaling
from ember.policy.autoscale import decide
from ember.policy.observation import Observation

NOW = 1_700_000_000.0


def spec(**scaling: object) -> InferenceServiceSpec:
    base: dict[str, object] = {"min_replicas": 0, "max_replicas": 10, "target_in_flight_per_replica": 8}
    return InferenceServiceSpec(model=ModelSource(uri="hf://o/m"), scaling=Scaling(**(base | scaling)))


def at_zero(held: int, cur: int = 0, ready: int = 0) -> Observation:
    """What Prometheus gives with no replica: it answers, with no series (every input None)."""
    return Observation(now=NOW, current_replicas=cur, ready_replicas=ready, held=held,
                       time_to_ready_s=10.0, start_path="restore")  # fmt: skip


@pytest.mark.parametrize(
    ("held", "cur", "want"),
    [
        (1, 0, 1),  # the first held request: one replica at once, no metrics needed
        (11, 0, 2),  # ceil(11 / (0.7 x 8)) = 2: a burst at zero scales to more than one
        (400, 0, 4),  # bounded by maxScaleUpStep
        (30, 1, 5),  # one replica starting, the burst grows: ceil(30 / 5.6) = 6, at most 1 + 4
    ],
)
def test_held_requests_scale_from_zero_at_once(held: int, cur: int, want: int) -> None:
    d, st = decide(spec(), at_zero(held, cur), AutoscalerState())
    assert (d.desired_replicas, d.reason) == (want, "ScaleFromZero"), d.message
    assert d.inputs["held"] == held and d.start_path == "restore"
    assert st.last_request_time is not None and st.recommendations[-1] == [NOW, float(want)]


def test_maxreplicas_bounds_it() -> None:
    d, _ = decide(spec(max_replicas=2), at_zero(400), AutoscalerState())
    assert d.desired_replicas == 2


def test_enough_replicas_already_starting_falls_through_to_the_normal_path() -> None:
    d, _ = decide(spec(), at_zero(3, cur=1), AutoscalerState())
    assert d.desired_replicas == 1 and d.reason == "MetricsUnavailable"


def test_at_zero_without_demand_is_not_a_metrics_failure() -> None:
    """The chart's EmberMetricsUnavailable alert counts that reason: a service at zero on purpose
    must not raise it."""
    d, _ = decide(spec(), at_zero(0), AutoscalerState())
    assert (d.desired_replicas, d.reason) == (0, "ScaledToZero")
    # what observe() reports at zero: Prometheus answered, with no series for a service with no pods
    d, _ = decide(spec(), replace(at_zero(0), metrics_ok=False, unavailable="NoData"), AutoscalerState())
    assert (d.desired_replicas, d.reason) == (0, "ScaledToZero")
    down = replace(at_zero(0), metrics_ok=False, unavailable="PrometheusUnreachable")
    d, _ = decide(spec(), down, AutoscalerState())
    assert d.reason == "MetricsUnavailable"  # Prometheus itself down is one


def test_held_requests_count_as_in_flight_once_replicas_are_ready() -> None:
    o = Observation(now=NOW, current_replicas=1, ready_replicas=1, qps=1.0, qps_panic=1.0, running=2.0,
                    waiting=0.0, held=20)  # fmt: skip
    d, _ = decide(spec(), o, AutoscalerState())
    assert d.desired_replicas > 1, d.message


def test_demand_annotation_sums_fresh_entries_and_ignores_stale_or_garbage() -> None:
    now = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    t = now.timestamp()
    ann = {
        demand.key("ember-activator-7c9f-abcde"): demand.render(3, now),
        demand.key("ember-activator-7c9f-fghij"): demand.render(2, now),
        demand.key("dead"): demand.render(50, datetime.fromtimestamp(t - 120, UTC)),
        demand.key("garbage"): "{not json",
        "other/key": '{"held": 9}',
    }
    assert demand.held(ann, t, 30.0) == 5
    assert demand.held(None, t, 30.0) == 0
    assert len(demand.key("x" * 100).split("/", 1)[1]) <= 63
