"""The replica planner: tables for the cases users meet, Hypothesis for the invariants."""

from __future__ import annotations

import pytest
from ember.policy.rollout import Create, Delete, Desired, Drain, Plan, PodView, Reclaim, plan, replicas_after
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 1_000.0


def pod(i: int, h: str = "new", ready: bool = True, **kw: object) -> PodView:
    return PodView(
        name=f"s-{i}", index=i, template_hash=h, created=float(kw.pop("created", 100 + i)), ready=ready, **kw
    )  # type: ignore[arg-type]


def kinds(p: Plan) -> list[tuple[str, object]]:
    return [(type(a).__name__, getattr(a, "index", getattr(a, "name", None))) for a in p.actions]


@pytest.mark.parametrize(
    ("desired", "pods", "expect"),
    [
        pytest.param(3, [], [("Create", 0), ("Create", 1), ("Create", 2)], id="scale-from-zero"),
        pytest.param(3, [pod(0), pod(2)], [("Create", 1)], id="fills-the-smallest-free-index"),
        pytest.param(
            1, [pod(0), pod(1), pod(2)], [("Drain", "s-2"), ("Drain", "s-1")], id="scale-down-newest-first"
        ),
        pytest.param(
            1, [pod(0), pod(1, ready=False)], [("Delete", "s-1")], id="not-ready-surplus-deleted-at-once"
        ),
        pytest.param(
            1, [pod(0, in_flight=5), pod(1, in_flight=0.0)], [("Drain", "s-1")], id="fewest-in-flight-goes"
        ),
        pytest.param(
            2,
            [pod(0, in_flight=0.0), pod(1, in_flight=9), pod(2, in_flight=3)],
            [("Drain", "s-0")],
            id="metrics-beat-age",
        ),
        pytest.param(0, [pod(0)], [("Drain", "s-0")], id="scale-to-zero-drains"),
        pytest.param(2, [pod(0), pod(1)], [], id="converged-is-a-no-op"),
        pytest.param(
            1, [pod(0), pod(1, serving=False, drain_started=NOW - 1)], [], id="drain-in-progress-waits"
        ),
        pytest.param(
            1,
            [pod(0), pod(1, serving=False, drain_started=NOW - 91)],
            [("Delete", "s-1")],
            id="drain-timeout-deletes",
        ),
        pytest.param(
            1,
            [pod(0), pod(1, serving=False, drain_started=NOW - 1, in_flight=0.0)],
            [("Delete", "s-1")],
            id="idle-drained-pod-deleted-early",
        ),
        pytest.param(
            1, [pod(0), pod(1, serving=False)], [("Drain", "s-1")], id="half-done-drain-is-finished"
        ),
        pytest.param(
            2, [pod(0), pod(1, terminating=True)], [("Create", 2)], id="terminating-pod-index-not-reused"
        ),
        pytest.param(2, [pod(0, "old"), pod(1, "old")], [("Create", 2)], id="rollout-surges-one"),
        pytest.param(
            2,
            [pod(0, "old"), pod(1, "old"), pod(2, "new", ready=True)],
            [("Drain", "s-1")],
            id="rollout-drains-an-old-one-when-its-replacement-is-ready",
        ),
        pytest.param(
            2,
            [pod(0, "old"), pod(1, "old", ready=False)],
            [("Delete", "s-1"), ("Create", 2), ("Create", 3)],
            id="rollout-replaces-unready-old-at-once",
        ),
        pytest.param(
            3,
            [
                pod(0),
                pod(1, serving=False, drain_started=NOW - 1),
                pod(2, serving=False, drain_started=NOW - 2),
            ],
            [("Reclaim", "s-1"), ("Reclaim", "s-2")],
            id="scale-up-after-scale-down-reclaims-the-draining-pods",
        ),
        pytest.param(
            3,
            [pod(0), pod(1, serving=False, drain_started=NOW - 1), pod(2, ready=False, serving=False)],
            [("Reclaim", "s-1"), ("Drain", "s-2"), ("Create", 3)],
            id="only-a-ready-draining-pod-is-reclaimed",
        ),
        pytest.param(
            2,
            [
                pod(0),
                pod(1, serving=False, drain_started=NOW - 1),
                pod(2, serving=False, drain_started=NOW - 3),
            ],
            [("Reclaim", "s-1")],
            id="reclaims-only-what-is-missing-the-latest-drain-first",
        ),
        pytest.param(
            2,
            [
                pod(0),
                pod(1, "old", serving=False, drain_started=NOW - 1),
                pod(2, serving=False, drain_started=NOW - 5),
            ],
            [("Reclaim", "s-2")],
            id="reclaims-the-current-template-first",
        ),
        pytest.param(
            2,
            [pod(0, "old"), pod(1, "old"), pod(2, "old", serving=False, drain_started=NOW - 1)],
            [],
            id="a-draining-pod-uses-up-the-surge",
        ),
        pytest.param(
            2,
            [
                pod(0, "old"),
                pod(1, "old"),
                pod(2, "old", serving=False, drain_started=NOW - 1, in_flight=0.0),
            ],
            [("Delete", "s-2"), ("Create", 3)],
            id="the-surge-is-free-again-once-the-drain-ends",
        ),
    ],
)
def test_plan_table(desired: int, pods: list[PodView], expect: list[tuple[str, object]]) -> None:
    assert kinds(plan(Desired(desired, "new", drain_timeout_s=90), pods, NOW)) == expect


pod_strategy = st.builds(
    lambda i, h, ready, drain, term, inflight: PodView(
        name=f"s-{i}",
        index=i,
        template_hash=h,
        created=float(i),
        ready=ready,
        serving=drain is None,
        drain_started=drain,
        terminating=term,
        in_flight=inflight,
    ),
    st.integers(0, 40),
    st.sampled_from(["new", "old"]),
    st.booleans(),
    st.one_of(st.none(), st.floats(NOW - 200, NOW)),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 50)),
)
pods_strategy = st.lists(pod_strategy, max_size=12, unique_by=lambda p: p.index)


@settings(max_examples=400, deadline=None)
@given(desired=st.integers(0, 10), pods=pods_strategy)
def test_never_more_pods_than_desired_plus_surge(desired: int, pods: list[PodView]) -> None:
    d = Desired(desired, "new")
    p = plan(d, pods, NOW)
    live = [x for x in pods if not x.terminating and not x.draining]
    removed = {a.name for a in p.actions if isinstance(a, Drain | Delete)}
    after = len([x for x in live if x.name not in removed]) + len(p.of(Create))
    assert after <= max(desired + d.surge, len(live))  # never grows past desired + surge
    if not any(x.template_hash == "old" for x in live):
        assert len(p.of(Create)) <= max(0, desired - len(live))


@settings(max_examples=400, deadline=None)
@given(desired=st.integers(0, 10), pods=pods_strategy)
def test_rollout_never_removes_a_ready_pod_below_desired_ready(desired: int, pods: list[PodView]) -> None:
    p = plan(Desired(desired, "new"), pods, NOW)
    live = [x for x in pods if not x.terminating and not x.draining]
    removed = {a.name for a in p.actions if isinstance(a, Drain | Delete)}
    ready_before = sum(x.ready for x in live)
    back = len(p.of(Reclaim))  # reclaimed pods are Ready ones back in service
    ready_after = sum(x.ready for x in live if x.name not in removed) + back
    assert ready_after >= min(ready_before, desired)


@settings(max_examples=300, deadline=None)
@given(desired=st.integers(0, 10), pods=pods_strategy)
def test_creates_never_reuse_an_existing_index_and_plans_are_idempotent(
    desired: int, pods: list[PodView]
) -> None:
    p = plan(Desired(desired, "new"), pods, NOW)
    assert not {a.index for a in p.of(Create)} & {x.index for x in pods}  # type: ignore[attr-defined]
    assert plan(Desired(desired, "new"), pods, NOW) == p
    names = [a.name for a in p.actions if isinstance(a, Drain | Delete)]  # type: ignore[union-attr]
    assert len(names) == len(set(names)), "one action per pod"


def live_after(pods: list[PodView], p: Plan) -> int:
    """Pods that are not terminating once the plan is applied: draining ones still hold a GPU."""
    gone = {a.name for a in p.of(Delete)}  # type: ignore[attr-defined]
    return len([x for x in pods if not x.terminating and x.name not in gone]) + len(p.of(Create))


@settings(max_examples=500, deadline=None)
@given(desired=st.integers(0, 10), pods=pods_strategy)
def test_never_more_live_pods_than_max_replicas_plus_surge(desired: int, pods: list[PodView]) -> None:
    """maxReplicas is the most `desired` can be; a plan never creates a pod that takes the live pods
    (draining ones included) past desired + surge, so from any state within the bound it stays there."""
    d = Desired(desired, "new")
    p = plan(d, pods, NOW)
    if p.of(Create):
        assert live_after(pods, p) <= desired + d.surge
    if len([x for x in pods if not x.terminating]) <= desired + d.surge:
        assert live_after(pods, p) <= desired + d.surge


@settings(max_examples=500, deadline=None)
@given(desired=st.integers(0, 10), pods=pods_strategy)
def test_a_draining_healthy_replica_is_reclaimed_before_any_create(desired: int, pods: list[PodView]) -> None:
    p = plan(Desired(desired, "new"), pods, NOW)
    back = {a.name for a in p.of(Reclaim)}  # type: ignore[attr-defined]
    warm = [x for x in pods if x.draining and x.ready and not x.terminating and x.name not in back]
    if p.of(Create):  # a new pod is only ever started when no warm one of its template could come back
        assert not [x.name for x in warm if x.template_hash == "new"]
    up = [x for x in pods if not x.terminating and not x.draining and x.ready]
    if len(up) + len(back) < desired:  # short of capacity: every warm pod, whatever its template, is back
        assert not warm
    removed = {a.name for a in p.actions if isinstance(a, Drain | Delete)}  # type: ignore[union-attr]
    assert not back & removed, "a reclaimed pod is not removed in the same plan"
    back_new = [x for x in pods if x.name in back and x.template_hash == "new"]
    up_new = [x for x in up if x.template_hash == "new"]
    assert len(back_new) <= max(0, desired - len(up_new)), "reclaims only what is missing"
    assert len(back) - len(back_new) <= max(0, desired - len(up) - len(back_new))


@pytest.mark.parametrize(
    ("failed", "expect"),
    [
        pytest.param(set(), 4, id="all-applied"),
        pytest.param({Create(2), Create(3)}, 2, id="refused-creates-are-not-replicas"),
        pytest.param({Reclaim("s-1", "ScaleUp")}, 3, id="a-failed-reclaim-leaves-it-draining"),
    ],
)
def test_status_replicas_counts_what_exists(failed: set[object], expect: int) -> None:
    pods = [pod(0), pod(1, serving=False, drain_started=NOW - 1)]
    p = plan(Desired(4, "new"), pods, NOW)
    assert kinds(p) == [("Reclaim", "s-1"), ("Create", 2), ("Create", 3)]
    assert replicas_after(pods, [a for a in p.actions if a not in failed]) == expect
