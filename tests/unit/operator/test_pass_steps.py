"""One pass, its steps on their own, against a recording fake API (our own seam, `KubeAPI`): a step
that raises is counted, reported in `Synced` and an Event, and never stops the steps after it."""

from __future__ import annotations

import asyncio
from typing import Any

from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.steps import run_pass
from ember.telemetry.metrics import Metrics
from kubernetes.client.exceptions import ApiException


class FakeAPI:
    """Creates pods; refuses the status writes of the managers in `refuse` the way the API server
    refused the autoscaler's (HTTP 422)."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse, self.created, self.applied = refuse, [], []  # type: ignore[var-annotated]

    def create_pod(self, m: dict[str, Any]) -> bool:
        self.created.append(m["metadata"]["name"])
        return True

    def list_endpoint_slices(self, ns: str, selector: str) -> list[Any]:
        return []

    def apply_endpoint_slice(self, m: dict[str, Any], manager: str) -> None:
        pass  # the routing step's slice

    def create_secret(self, m: dict[str, Any]) -> bool:
        return True  # the supervisor token's Secret

    def ensure_service(self, m: dict[str, Any]) -> bool:
        return True

    def apply_status(self, ns: str, name: str, owned: dict[str, Any], manager: str) -> None:
        if manager in self.refuse:
            e = ApiException(status=422, reason="Unprocessable Entity")
            e.body = 'status.observed: Invalid value: "null"'
            raise e
        self.applied.append((manager, owned))


def isvc(replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "llm", "uid": "u-1", "generation": 3},
        "spec": {"model": {"uri": "hf://o/m"}, "replicas": replicas},
        "status": {},
    }


def run(ctx: OperatorContext, body: dict[str, Any], events: list[tuple[str, str, str]]) -> dict[str, str]:
    ctx.last_decision.clear()  # a decision is due on every pass here
    return asyncio.run(run_pass(ctx, body, [], [], lambda _b, t, r, m: events.append((t, r, m))))


def synced(api: FakeAPI) -> dict[str, Any]:
    writes = [o for m, o in api.applied if m == "ember-loop"]
    return writes[-1]["conditions"][0]  # type: ignore[no-any-return]


def test_a_refused_autoscaler_write_does_not_stop_the_replica_reconcile() -> None:
    api, events = FakeAPI(refuse={"ember-autoscaler"}), []  # type: ignore[var-annotated]
    ctx = OperatorContext(Settings(), api, Metrics.create())  # type: ignore[arg-type]
    failed = run(ctx, isvc(2), events)

    assert set(failed) == {"autoscale"}
    assert api.created == ["llm-0", "llm-1"], "the replica step ran after the autoscale step failed"
    assert any(m == "ember-replicas" and o["replicas"] == 2 for m, o in api.applied)
    cond = synced(api)
    assert (cond["type"], cond["status"], cond["reason"]) == ("Synced", "False", "AutoscaleFailed")
    assert "422" in cond["message"] and "status.observed" in cond["message"]
    assert [r for t, r, _ in events if t == "Warning"] == ["StepFailed"]
    assert (
        ctx.metrics.registry.get_sample_value("ember_reconcile_step_failures_total", {"step": "autoscale"})
        == 1.0
    )

    # the same failure again: counted, but no second condition write and no second Event
    n_writes, n_events = len(api.applied), len(events)
    run(ctx, isvc(2), events)
    assert (
        ctx.metrics.registry.get_sample_value("ember_reconcile_step_failures_total", {"step": "autoscale"})
        == 2.0
    )
    assert not [o for m, o in api.applied[n_writes:] if m == "ember-loop"]
    assert not [r for _, r, _ in events[n_events:] if r == "StepFailed"]

    api.refuse.clear()  # the fault goes away: Synced flips back, once
    run(ctx, isvc(2), events)
    cond = synced(api)
    assert (cond["status"], cond["reason"]) == ("True", "ReconcileSuccess")
    assert ("Normal", "StepRecovered", "autoscale step succeeded again") in events


def test_every_failing_step_is_named_and_the_first_gives_the_reason() -> None:
    api, events = FakeAPI(refuse={"ember-autoscaler", "ember-replicas"}), []  # type: ignore[var-annotated]
    ctx = OperatorContext(Settings(), api, Metrics.create())  # type: ignore[arg-type]
    failed = run(ctx, isvc(1), events)
    assert list(failed) == ["autoscale", "replicas"]
    cond = synced(api)
    assert cond["reason"] == "AutoscaleFailed"
    assert cond["message"].startswith("autoscale: 422") and "; replicas: 422" in cond["message"]
    assert [m for t, r, m in events if r == "StepFailed"] == [
        f"{s} step failed: {failed[s]}" for s in ("autoscale", "replicas")
    ]
