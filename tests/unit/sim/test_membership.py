"""Replicas mirror the pods: added when Ready, drained by label, removed when deleted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ember_sim.membership import LABEL_SERVING, Action, PodView, label_selector, plan_membership, pod_view
from kubernetes.client import V1ObjectMeta, V1Pod, V1PodCondition, V1PodStatus


def pod(name: str, ready: bool = True, serving: str | None = "true", deleting: bool = False) -> V1Pod:
    labels = {"serving.ember.dev/inferenceservice": "chat", "serving.ember.dev/component": "replica"}
    if serving is not None:
        labels[LABEL_SERVING] = serving
    meta = V1ObjectMeta(name=name, labels=labels, deletion_timestamp=datetime.now(UTC) if deleting else None)
    cond = V1PodCondition(type="Ready", status="True" if ready else "False")
    return V1Pod(metadata=meta, status=V1PodStatus(conditions=[cond]))


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (pod("a"), PodView("a", True, True, False)),
        (pod("a", ready=False), PodView("a", False, True, False)),
        (pod("a", serving="false"), PodView("a", True, False, False)),
        (pod("a", serving=None), PodView("a", True, False, False)),
        (pod("a", deleting=True), PodView("a", True, True, True)),
    ],
    ids=["ready-serving", "not-ready", "draining", "unlabelled", "terminating"],
)
def test_a_pod_is_read_from_its_ready_condition_labels_and_deletion(p: V1Pod, expected: PodView) -> None:
    assert pod_view(p) == expected


def test_the_selector_names_the_inferenceservice_and_the_replica_component() -> None:
    assert (
        label_selector("chat")
        == "serving.ember.dev/inferenceservice=chat,serving.ember.dev/component=replica"
    )


def test_only_ready_pods_get_a_replica() -> None:
    pods = {"a": PodView("a", True, True), "b": PodView("b", False, True)}
    assert plan_membership({}, pods) == [Action("add", "a", True)]


def test_flipping_the_serving_label_drains_and_restores_a_replica() -> None:
    assert plan_membership({"a": True}, {"a": PodView("a", True, False)}) == [Action("serving", "a", False)]
    assert plan_membership({"a": False}, {"a": PodView("a", True, True)}) == [Action("serving", "a", True)]


def test_a_terminating_pod_stops_taking_requests_and_a_deleted_one_is_removed() -> None:
    assert plan_membership({"a": True}, {"a": PodView("a", True, True, True)}) == [
        Action("serving", "a", False)
    ]
    assert plan_membership({"a": False}, {}) == [Action("remove", "a")]


def test_a_matching_fleet_needs_no_action() -> None:
    pods = {"a": PodView("a", True, True), "b": PodView("b", True, False)}
    assert plan_membership({"a": True, "b": False}, pods) == []


# ---- sleeping replicas (ember_sim.sleep) ------------------------------------------------------

from ember_sim.sleep import SimSleepPlanner, SleepConfig, Sleeper  # noqa: E402

ON = SimSleepPlanner(SleepConfig(max_sleeping=1, delete_after_s=60.0))


def test_a_deleted_pod_parks_its_replica_under_the_bound_and_is_removed_past_it() -> None:
    assert plan_membership({"a": False}, {}, {}, ON) == [Action("park", "a")]
    assert plan_membership({"a": False, "b": False}, {}, {}, ON) == [
        Action("park", "a"),
        Action("remove", "b"),
    ]
    assert plan_membership({"a": False}, {}, {"z": Sleeper("z", 0.0, 1.0)}, ON) == [Action("remove", "a")]
    assert plan_membership({"a": False}, {}) == [Action("remove", "a")]  # no planner: as before


def test_a_new_pod_wakes_a_sleeper_instead_of_waiting_for_its_start() -> None:
    asleep = {"a": Sleeper("a", 0.0, 1.0)}
    new = {"b": PodView("b", False, True)}  # created, not Ready yet: kwok's delay is the cold start
    assert plan_membership({}, new, asleep, ON, now_s=5.0) == [Action("wake", "a", True, as_pod="b")]
    assert plan_membership({}, new, {}, ON) == []  # no sleeper: wait for Ready, as before


def test_a_new_pod_reusing_a_sleepers_name_wakes_that_one() -> None:
    asleep = {"a": Sleeper("a", 0.0, 1.0), "b": Sleeper("b", 9.0, 10.0)}
    two = SimSleepPlanner(SleepConfig(max_sleeping=2))
    assert plan_membership({}, {"a": PodView("a", False, True)}, asleep, two) == [
        Action("wake", "a", True, as_pod="a")
    ]


def test_a_woken_replica_serves_before_its_pod_is_ready_and_leaves_when_draining() -> None:
    pods = {"b": PodView("b", False, True)}
    assert plan_membership({"b": True}, pods, {}, ON, woken={"b"}) == []
    assert plan_membership({"b": True}, pods, {}, ON) == [Action("serving", "b", False)]  # not woken
    assert plan_membership({"b": True}, {"b": PodView("b", False, False)}, {}, ON, woken={"b"}) == [
        Action("serving", "b", False)
    ]


def test_a_sleeper_past_delete_after_is_removed_and_not_woken() -> None:
    asleep = {"a": Sleeper("a", 0.0, 1.0)}
    new = {"b": PodView("b", False, True)}
    assert plan_membership({}, new, asleep, ON, now_s=60.0) == [Action("remove", "a")]
