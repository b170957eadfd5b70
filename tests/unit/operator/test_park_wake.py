"""Park and Wake in the planner's vocabulary (policy/rollout.py), applied by the one executor
(kube/executor.py) through the one replica client (replica/client.py), here against a real HTTP
server playing the supervisor (our own seam) and a recording stand-in for the Kubernetes API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import executor
from ember.kube.views import pod_view
from ember.policy.rollout import Delete, Desired, Park, Plan, PodView, Wake, plan, replicas_after
from ember.replica.client import Replicas, SupervisorError, sleep, wake

NOW = 10_000.0


def pod(i: int, h: str = "new", ready: bool = True, **kw: Any) -> PodView:
    return PodView(name=f"s-{i}", index=i, template_hash=h, created=100.0 + i, ready=ready, **kw)


def asleep(i: int, since: float = NOW - 60, h: str = "new") -> PodView:
    return pod(i, h, ready=False, serving=False, sleeping=True, sleep_started=since)


def idle_drained(i: int) -> PodView:
    return pod(i, serving=False, drain_started=NOW - 5, in_flight=0.0)


def kinds(p: Plan) -> list[tuple[str, object]]:
    return [(type(a).__name__, getattr(a, "name", getattr(a, "index", None))) for a in p.actions]


def d(n: int, **kw: Any) -> Desired:
    return Desired(n, "new", **kw)


@pytest.mark.parametrize(
    ("desired", "pods", "expect"),
    [
        pytest.param(d(1), [pod(0), idle_drained(1)], [("Delete", "s-1")], id="off: drained pods are deleted"),
        pytest.param(d(1, max_sleeping=1), [pod(0), idle_drained(1)], [("Park", "s-1")], id="drained-parks"),
        pytest.param(
            d(1, max_sleeping=1), [pod(0), asleep(2), idle_drained(1)], [("Delete", "s-1")], id="bound-reached"
        ),
        pytest.param(
            d(1, max_sleeping=1), [pod(0), pod(1, serving=False, drain_started=NOW - 5, in_flight=0.0, ready=False)],
            [("Delete", "s-1")], id="not-ready-drain-is-deleted",
        ),
        pytest.param(d(2, max_sleeping=1), [pod(0), asleep(1)], [("Wake", "s-1")], id="wake-before-create"),
        pytest.param(
            d(3, max_sleeping=2), [pod(0), asleep(1, NOW - 100), asleep(2, NOW - 10)],
            [("Wake", "s-2"), ("Wake", "s-1")], id="wakes-most-recent-first",
        ),
        pytest.param(d(3, max_sleeping=1), [pod(0), asleep(1)], [("Wake", "s-1"), ("Create", 2)], id="then-create"),
        pytest.param(d(1, max_sleeping=1), [pod(0), asleep(1)], [], id="sleeping-is-steady"),
        pytest.param(
            d(1, max_sleeping=1, delete_after_s=300), [pod(0), asleep(1, NOW - 301)], [("Delete", "s-1")],
            id="slept-too-long",
        ),
        pytest.param(d(1, max_sleeping=1), [pod(0), asleep(1, h="old")], [("Delete", "s-1")], id="outdated"),
        pytest.param(d(1, max_sleeping=0), [pod(0), asleep(1)], [("Delete", "s-1")], id="bound-lowered"),
        pytest.param(
            d(1, max_sleeping=2, yield_gpu=True, yields=(("s-1", "other", "o-0"),)),
            [pod(0), asleep(1, NOW - 100), asleep(2, NOW - 10)],
            [("Yield", "s-1")], id="yields-the-sleepers-it-is-told",
        ),
        pytest.param(
            d(1, max_sleeping=2, yield_gpu=True), [pod(0), asleep(1, NOW - 100), asleep(2, NOW - 10)],
            [], id="gpus-wanted-but-no-yield-chosen-here",
        ),
        pytest.param(
            d(1, max_sleeping=1, yields=(("s-1", "other", "o-0"),)), [pod(0), asleep(1, h="old")],
            [("Yield", "s-1")], id="an-outdated-sleeper-chosen-yields-so-the-mark-is-written",
        ),
        pytest.param(
            d(1, max_sleeping=1, yield_gpu=True), [pod(0), idle_drained(1)], [("Delete", "s-1")],
            id="no-park-while-gpus-are-wanted",
        ),
    ],
)  # fmt: skip
def test_sleep_table(desired: Desired, pods: list[PodView], expect: list[tuple[str, object]]) -> None:
    assert kinds(plan(desired, pods, NOW)) == expect


def test_sleeping_pods_are_not_replicas_and_a_wake_makes_one() -> None:
    pods = [pod(0), asleep(1)]
    assert replicas_after(pods, []) == 1
    assert replicas_after(pods, [Wake("s-1", "ScaleUp")]) == 2
    assert replicas_after([pod(0), idle_drained(1)], [Park("s-1", "DrainedIdle")]) == 1
    assert plan(d(2, max_sleeping=1), pods, NOW).current == 2


def test_pod_view_reads_the_sleeping_label_alone() -> None:
    """An operator restart resumes from the pods: the label and annotation are the whole state."""
    raw = {
        "metadata": {
            "name": "s-3", "creationTimestamp": "2026-12-03T00:00:00Z",
            "labels": {L.STATE: L.SLEEPING, L.SERVING: "false", L.TEMPLATE_HASH: "new"},
            "annotations": {L.SLEEP_STARTED: "2026-12-03T00:10:00+00:00"},
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }  # fmt: skip
    v = pod_view(raw)
    assert v is not None and v.sleeping and not v.draining
    assert v.sleep_started == datetime(2026, 12, 3, 0, 10, tzinfo=UTC).timestamp()


class Supervisor:
    """Answers /sleep and /wake as ember_supervisor/sleep_routes.py documents."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {
            "/sleep": (200, {"state": "asleep", "tier": "freeze"}),
            "/wake": (200, {"state": "serving", "wake_s": 0.01}),
        }
        self.calls: list[tuple[str, str | None]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.calls.append((self.path, self.headers.get("Authorization")))
                code, body = outer.answers[self.path]
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    s = Supervisor()
    t = threading.Thread(target=s.server.serve_forever, daemon=True)
    t.start()
    yield s
    s.server.shutdown()


def test_client_sends_the_token_and_reads_the_answers(sup: Supervisor) -> None:
    assert sleep(sup.url, "tok", 5)["state"] == "asleep"
    assert wake(sup.url, "tok", 5)["state"] == "serving"
    assert sup.calls == [("/sleep", "Bearer tok"), ("/wake", "Bearer tok")]
    sup.answers["/wake"] = (409, {"error": "not asleep", "state": "serving"})
    assert wake(sup.url, "tok", 5)["already"] is True  # an earlier wake did it (operator restart)
    sup.answers["/wake"] = (503, {"error": "engine gone", "reason": "engine_exited", "state": "failed"})
    with pytest.raises(SupervisorError) as e:
        wake(sup.url, "tok", 5)
    assert e.value.reason == "engine_exited"
    with pytest.raises(SupervisorError) as e:
        wake("http://127.0.0.1:9", "tok", 1)
    assert e.value.reason == "unreachable"


class API:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.patched: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def delete_pod(self, ns: str, name: str) -> bool:
        self.deleted.append(name)
        return True

    def patch_pod_metadata(self, ns: str, name: str, labels: dict[str, Any], ann: dict[str, Any]) -> bool:
        self.patched.append((name, labels, ann))
        return True


SPEC = InferenceServiceSpec.model_validate({"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}})
T0 = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def target(sup: Supervisor | None) -> executor.Target:
    reps = None if sup is None else Replicas({"s-1": sup.url}, "tok", 5, 5)
    return executor.Target("s", "ns", "uid", SPEC, replicas=reps)


def test_executor_parks_and_wakes_through_the_supervisor(sup: Supervisor) -> None:
    api = API()
    out = executor.execute(api, target(sup), Plan((Park("s-1", "DrainedIdle"),)), T0)  # type: ignore[arg-type]
    assert [(o.type, o.reason) for o in out] == [("Normal", "Parked")]
    assert api.patched == [
        (
            "s-1",
            {L.STATE: L.SLEEPING, L.SERVING: "false"},
            {L.SLEEP_STARTED: T0.isoformat(), L.DRAIN_STARTED: None},
        )
    ]
    out = executor.execute(api, target(sup), Plan((Wake("s-1", "ScaleUp"),)), T0)  # type: ignore[arg-type]
    assert [(o.type, o.reason) for o in out] == [("Normal", "Woken")]
    assert api.patched[-1] == (
        "s-1",
        {L.STATE: None, L.SERVING: "true"},
        {L.SLEEP_STARTED: None, L.DRAIN_STARTED: None},
    )
    assert [c[0] for c in sup.calls] == ["/sleep", "/wake"] and api.deleted == []


def test_a_failed_wake_deletes_the_pod_once_with_the_reason(sup: Supervisor) -> None:
    api = API()
    sup.answers["/wake"] = (503, {"error": "timed out", "reason": "timeout", "state": "failed"})
    out = executor.execute(api, target(sup), Plan((Wake("s-1", "ScaleUp"),)), T0)  # type: ignore[arg-type]
    assert [(o.type, o.reason, o.failed) for o in out] == [("Warning", "WakeFailed", False)]
    assert "timeout" in out[0].message and api.deleted == ["s-1"] and api.patched == []
    assert len(sup.calls) == 1  # no retry


def test_a_failed_park_deletes_the_pod_as_before(sup: Supervisor) -> None:
    api = API()
    sup.answers["/sleep"] = (409, {"error": "not serving", "state": "checkpointing"})
    out = executor.execute(api, target(sup), Plan((Park("s-1", "DrainedIdle"),)), T0)  # type: ignore[arg-type]
    assert [(o.reason, o.fallback) for o in out] == [("ParkFailed", True)] and api.deleted == ["s-1"]
    out = executor.execute(api, target(None), Plan((Park("s-1", "DrainedIdle"),)), T0)  # type: ignore[arg-type]
    assert out[0].reason == "ParkFailed" and "no_token" in out[0].message


def test_delete_is_in_the_same_vocabulary() -> None:
    api = API()
    out = executor.execute(api, target(None), Plan((Delete("s-1", "SleptTooLong"),)), T0)  # type: ignore[arg-type]
    assert out[0].reason == "ReplicaDeleted" and api.deleted == ["s-1"]


def test_waits_for_gpu_sees_a_pending_replica_but_not_a_sleeper_or_another_shortage() -> None:
    from ember.kube.views import waits_for_gpu

    def p(labels: dict[str, str], reason: str, msg: str) -> dict[str, Any]:
        cond = {"type": "PodScheduled", "status": "False", "reason": reason, "message": msg}
        return {"metadata": {"labels": labels}, "status": {"conditions": [cond]}}

    assert waits_for_gpu(p({}, "Unschedulable", "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."))
    assert not waits_for_gpu(p({}, "Unschedulable", "0/5 nodes are available: 5 Insufficient cpu."))
    assert not waits_for_gpu(p({L.STATE: L.SLEEPING}, "Unschedulable", "Insufficient nvidia.com/gpu"))


def test_wake_fallback_is_set_by_a_failed_wake_and_cleared_only_by_a_successful_one() -> None:
    from ember.handlers.replicas import wake_fallback

    failed = executor.Outcome("Warning", "WakeFailed", "s-1 deleted: wake failed (timeout)", None, True)
    woken = executor.Outcome("Normal", "Woken", "s-2 is awake", None)
    other = executor.Outcome("Normal", "ReplicaCreated", "created s-1", None)
    conds = wake_fallback([], [failed], T0, 1)
    assert conds is not None and [(c.type, c.status, c.reason) for c in conds] == [
        ("WakeFallback", "True", "WakeFailed")
    ]
    assert wake_fallback(conds, [other], T0, 1) is None  # nothing to write: the condition stays as it is
    cleared = wake_fallback(conds, [woken], T0, 1)
    assert cleared is not None and cleared[0].status == "False" and cleared[0].reason == "Woken"


def test_status_counts_replicas_by_lifecycle_state() -> None:
    from ember.handlers.replicas import lifecycle_counts

    views = [pod(0), pod(1, ready=False), asleep(2), idle_drained(3), pod(4, terminating=True)]
    assert lifecycle_counts(views, Plan()) == {
        "serving_replicas": 1, "sleeping_replicas": 1, "starting_replicas": 1, "draining_replicas": 1,
    }  # fmt: skip
