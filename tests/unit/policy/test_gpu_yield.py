"""A sleeping replica yields its GPU to a serving replica (of any service) that waits for one:
one sleeper per waiting pod, chosen for all services at once (policy/gpuyield.py, wired in
handlers/registry.gpu_yields), the waiting pod marked before the sleeper is deleted
(kube/executor.py), so neither a second service nor a later pass yields another for it.

The bug this is about: each service's pass deleted one of its own sleepers whenever any pod waited,
so one waiting pod cost a sleeper in every service with one, and another on every pass until the
scheduler placed it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.handlers.registry import gpu_yields
from ember.kube import executor
from ember.policy import gpuyield
from ember.policy.gpuyield import Sleeper, Waiting
from ember.policy.rollout import Plan, Yield
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW = T0.timestamp()
STARVED = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def sleeper(ns: str, svc: str, i: int, since: float, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": ns, "name": f"{svc}-{i}", "creationTimestamp": iso(since - 600),
        "labels": {L.ISVC: svc, L.STATE: L.SLEEPING, L.SERVING: "false"},
        "annotations": {L.SLEEP_STARTED: iso(since)},
    }  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = iso(NOW)
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}


def waiting(ns: str, svc: str, i: int, ann: dict[str, str] | None = None) -> dict[str, Any]:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": STARVED}
    meta = {"namespace": ns, "name": f"{svc}-{i}", "creationTimestamp": iso(NOW - 30),
            "labels": {L.ISVC: svc}, "annotations": dict(ann or {})}  # fmt: skip
    return {"metadata": meta, "status": {"phase": "Pending", "conditions": [cond]}}


SERVICES = [("a", "llm-a"), ("b", "llm-b"), ("c", "llm-c")]


def passes(
    pods: list[dict[str, Any]], now: float = NOW
) -> dict[tuple[str, str], tuple[tuple[str, str, str], ...]]:
    """Every service's pass over the same pods: the yields each would plan."""
    return {key: gpu_yields(key, pods, now)[1] for key in SERVICES}


def test_one_waiting_pod_costs_one_sleeper_across_services_and_passes() -> None:
    pods = [
        sleeper("a", "llm-a", 1, NOW - 500),
        sleeper("b", "llm-b", 1, NOW - 100),
        waiting("c", "llm-c", 0),
    ]
    plans = passes(pods)
    # one yield in all: the longest asleep (llm-a-1), planned by its own service only
    assert plans == {("a", "llm-a"): (("llm-a-1", "c", "llm-c-0"),), ("b", "llm-b"): (), ("c", "llm-c"): ()}
    wanted, _, others = gpu_yields(("c", "llm-c"), pods, NOW)
    assert wanted and others == {("a", "llm-a")}  # the waiting pod's own loop wakes the sleeper's owner

    # the executor marks the waiting pod, then deletes the sleeper: it is terminating
    marked = waiting("c", "llm-c", 0, {L.GPU_YIELDED_AT: iso(NOW), L.GPU_YIELDED_BY: "a/llm-a-1"})
    during = [sleeper("a", "llm-a", 1, NOW - 500, deleting=True), sleeper("b", "llm-b", 1, NOW - 100), marked]
    assert all(not y for y in passes(during, NOW + 20).values())  # for as long as it terminates
    after = [sleeper("b", "llm-b", 1, NOW - 100), marked]
    assert all(not y for y in passes(after, NOW + 20).values())  # gone: the scheduler's turn to retry
    # still waiting once it had its chance (say, the GPU was on a node it does not fit): the next one
    late = passes(after, NOW + gpuyield.SETTLE_S + 1)
    assert late[("b", "llm-b")] == (("llm-b-1", "c", "llm-c-0"),) and not late[("a", "llm-a")]


def test_no_waiting_pod_no_yield_and_no_sleeper_no_yield() -> None:
    assert passes([sleeper("a", "llm-a", 1, NOW - 500)]) == {k: () for k in SERVICES}
    assert gpu_yields(("c", "llm-c"), [waiting("c", "llm-c", 0)], NOW) == (True, (), set())


def test_two_waiting_pods_take_two_sleepers() -> None:
    pods = [sleeper("a", "llm-a", 1, NOW - 500), sleeper("a", "llm-a", 2, NOW - 50),
            sleeper("b", "llm-b", 1, NOW - 100), waiting("c", "llm-c", 0), waiting("c", "llm-c", 1)]  # fmt: skip
    plans = passes(pods)
    assert sorted(y for ys in plans.values() for y in ys) == [
        ("llm-a-1", "c", "llm-c-0"), ("llm-b-1", "c", "llm-c-1")
    ]  # fmt: skip


when = st.floats(min_value=0, max_value=1e4, allow_nan=False)


@given(
    st.lists(st.tuples(when, st.none() | when, st.booleans()), max_size=8),
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.none() | when), max_size=8),
    when,
)
def test_choice_never_exceeds_the_unserved_need(
    ws: list[tuple[float, float | None, bool]], ss: list[tuple[str, float | None]], now: float
) -> None:
    sleepers = [Sleeper(ns, f"s-{i}", "svc", t) for i, (ns, t) in enumerate(ss)]
    present = frozenset({f"{s.namespace}/{s.name}" for s in sleepers} | {"x/gone-but-terminating"})
    waits = [
        Waiting("w", f"w-{i}", c, y, "x/gone-but-terminating" if by else "x/long-gone")
        for i, (c, y, by) in enumerate(ws)
    ]
    choice = gpuyield.choose(waits, sleepers, present, now)
    unserved = [w for w in waits if not gpuyield.served(w, present, now)]
    assert len(choice) == min(len(unserved), len(sleepers))
    assert len(set(choice.values())) == len(choice) and all(w in unserved for w in choice.values())
    # the longest asleep go first
    order = sorted(sleepers, key=lambda s: (s.sleep_started or 0.0, s.namespace, s.name))
    assert set(choice) == set(order[: len(choice)])


class API:
    def __init__(self, waiting_exists: bool = True) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.waiting_exists = waiting_exists

    def patch_pod_metadata(self, ns: str, name: str, labels: dict[str, Any], ann: dict[str, Any]) -> bool:
        self.calls.append(("patch", ns, name))
        self.ann = ann
        return self.waiting_exists

    def delete_pod(self, ns: str, name: str) -> bool:
        self.calls.append(("delete", ns, name))
        return True


SPEC = InferenceServiceSpec.model_validate({"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}})


def test_executor_marks_the_waiting_pod_before_it_deletes_the_sleeper() -> None:
    api = API()
    t = executor.Target("llm-a", "a", "uid", SPEC)
    out = executor.execute(api, t, Plan((Yield("llm-a-1", "c", "llm-c-0"),)), T0)  # type: ignore[arg-type]
    assert api.calls == [("patch", "c", "llm-c-0"), ("delete", "a", "llm-a-1")]
    assert api.ann == {L.GPU_YIELDED_AT: T0.isoformat(), L.GPU_YIELDED_BY: "a/llm-a-1"}
    assert [(o.type, o.reason) for o in out] == [("Normal", "YieldedGPU")] and "c/llm-c-0" in out[0].message
    # the waiting pod is gone (placed elsewhere, deleted): the sleeper stays
    api = API(waiting_exists=False)
    assert executor.execute(api, t, Plan((Yield("llm-a-1", "c", "llm-c-0"),)), T0) == []  # type: ignore[arg-type]
    assert api.calls == [("patch", "c", "llm-c-0")]
