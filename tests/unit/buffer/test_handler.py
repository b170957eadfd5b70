"""The warm-buffer pass against a recording fake API: creates, preemption bookkeeping, status, Events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ember.config import Settings
from ember.handlers.buffer import reconcile_buffer
from ember.handlers.context import OperatorContext
from ember.telemetry.metrics import Metrics


class FakeAPI:
    def __init__(self, missing_pcs: tuple[str, ...] = ()) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.missing, self.pc_checks, self.calls = set(missing_pcs), 0, []  # type: ignore[var-annotated]
        self.clock = 0

    def create_pod(self, m: dict[str, Any]) -> bool:
        name = m["metadata"]["name"]
        self.calls.append(("create", name))
        if name in self.pods:
            return False
        self.clock += 1
        m = {**m, "metadata": {**m["metadata"], "creationTimestamp": f"2026-01-01T00:00:{self.clock:02d}Z"}}
        self.pods[name] = {**m, "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
        return True

    def delete_pod(self, ns: str, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.pods.pop(name, None) is not None

    def apply_status(self, ns: str, name: str, owned: dict[str, Any], manager: str) -> None:
        assert manager == "ember-warm-buffer"
        self.status.update(owned)

    def priority_class_exists(self, name: str) -> bool:
        self.pc_checks += 1
        return name not in self.missing


def isvc(**wb: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "llm", "uid": "u-1", "generation": 1},
        "spec": {
            "model": {"uri": "hf://o/m"},
            "resources": {"gpu": 2},
            "warmBuffer": {"enabled": True, "idleGPUs": 4, **wb},
        },
        "status": {},
    }


class Loop:
    """Runs passes the way the daemon does: body status follows our writes, pods follow the fake API."""

    def __init__(self, body: dict[str, Any], api: FakeAPI) -> None:
        self.body, self.api, self.events = body, api, []  # type: ignore[var-annotated]
        self.ctx = OperatorContext(settings=Settings(), api=api, metrics=Metrics.create())  # type: ignore[arg-type]

    def run(self, now: float = 1000.0) -> None:
        self.body["status"] = {**self.body["status"], **self.api.status}
        pods = list(self.api.pods.values())
        asyncio.run(reconcile_buffer(self.ctx, self.body, pods, emit=self.emit, now=now))

    def emit(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)

    def cond(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.api.status["conditions"] if c["type"] == type_)


def test_static_buffer_creates_whole_replica_placeholders_and_reports_ready() -> None:
    api = FakeAPI()
    loop = Loop(isvc(), api)
    loop.run()
    assert sorted(api.pods) == ["llm-buffer-0", "llm-buffer-1"]
    assert api.status["warmBuffer"]["desired"] == 2 and loop.events.count("PlaceholderCreated") == 2
    loop.run()  # now they are seen, scheduled
    wb = api.status["warmBuffer"]
    assert (wb["ready"], wb["pending"], wb["idleGPUs"], wb["reason"]) == (2, 0, 4, "Static")
    assert loop.cond("WarmBufferReady")["status"] == "True"
    assert loop.cond("WarmBufferMisconfigured")["status"] == "False"


def test_a_placeholder_that_vanishes_is_counted_as_preempted_and_recreated() -> None:
    api = FakeAPI()
    loop = Loop(isvc(), api)
    loop.run()
    loop.run()
    del api.pods["llm-buffer-0"]  # the scheduler preempted it
    loop.run()
    assert api.status["warmBuffer"]["preemptions"] == 1
    assert "PlaceholderPreempted" in loop.events
    assert "llm-buffer-0" in api.pods  # recreated (smallest free index)
    loop.run()
    loop.run()
    assert api.status["warmBuffer"]["preemptions"] == 1  # counted once


def test_scheduler_preemption_mark_is_counted_once_and_own_deletes_never() -> None:
    api = FakeAPI()
    loop = Loop(isvc(), api)
    loop.run()
    loop.run()
    api.pods["llm-buffer-1"]["status"]["conditions"].append(
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    )
    api.pods["llm-buffer-1"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    loop.run()
    del api.pods["llm-buffer-1"]
    loop.run()
    assert api.status["warmBuffer"]["preemptions"] == 1
    loop.body["spec"]["warmBuffer"]["idleGPUs"] = 0  # shrink: the operator's own deletes are no preemption
    loop.run()
    loop.run()
    assert api.status["warmBuffer"]["preemptions"] == 1 and api.status["warmBuffer"]["desired"] == 0
    assert not api.pods


def test_disabling_the_buffer_deletes_every_placeholder() -> None:
    api = FakeAPI()
    loop = Loop(isvc(), api)
    loop.run()
    loop.body["spec"]["warmBuffer"]["enabled"] = False
    loop.run()
    assert not api.pods and loop.cond("WarmBufferReady")["reason"] == "Disabled"


def test_a_service_without_a_buffer_writes_nothing() -> None:
    api = FakeAPI()
    body = isvc()
    body["spec"]["warmBuffer"] = {"enabled": False}
    Loop(body, api).run()
    assert api.status == {} and api.calls == [] and api.pc_checks == 0


@pytest.mark.parametrize(
    ("missing", "creates"),
    [(("ember-warm-buffer",), False), (("ember-serving",), True)],
    ids=["buffer-pc", "serving-pc"],
)
def test_a_missing_priority_class_is_reported_and_checked_through_a_cache(
    missing: tuple[str, ...], creates: bool
) -> None:
    api = FakeAPI(missing_pcs=missing)
    loop = Loop(isvc(), api)
    loop.run()
    loop.run(now=1001.0)
    assert bool(api.pods) == creates
    c = loop.cond("WarmBufferMisconfigured")
    assert (c["status"], c["reason"]) == ("True", "PriorityClassMissing") and missing[0] in c["message"]
    assert loop.cond("WarmBufferReady")["status"] == "False"
    assert loop.events.count("WarmBufferMisconfigured") == 1
    assert api.pc_checks == 2  # two names, once each: the second pass used the cache
    api.missing.clear()
    loop.run(now=1100.0)  # a missing one is re-checked soon
    assert loop.cond("WarmBufferMisconfigured")["status"] == "False" and api.pods


def test_adaptive_sizes_from_the_autoscaler_inputs_and_falls_back_without_them() -> None:
    api = FakeAPI()
    body = isvc(policy="adaptive", idleGPUs=2, maxIdleGPUs=16, nodeProvisionSeconds=60)
    loop = Loop(body, api)
    loop.run()
    assert api.status["warmBuffer"]["reason"] == "AdaptiveFallback"
    assert "fell back" in loop.cond("WarmBufferReady")["message"]
    for i, q in enumerate([100, 110, 100, 112, 100, 110]):
        body["status"]["lastDecision"] = {
            "time": "2026-01-01T00:00:00Z",
            "desiredReplicas": 1,
            "currentReplicas": 1,
            "reason": "Hold",
            "inputs": {"qps": q, "capacityPerReplica": 20.0},
        }
        loop.run(now=2000.0 + 5 * i)
    wb = api.status["warmBuffer"]
    assert wb["reason"] == "Adaptive" and wb["desired"] > 1 and len(wb["samples"]) == 6
    assert len(api.pods) == wb["desired"]


class ClaimAPI(FakeAPI):
    def __init__(self, claims: set[str]) -> None:
        super().__init__()
        self.claims, self.claim_reads = claims, 0

    def data_keys(self, kind: str, ns: str, name: str) -> set[str] | None:
        assert kind == "PersistentVolumeClaim" and ns == "ns"
        self.claim_reads += 1
        return set() if name in self.claims else None


def claim_ctx(api: ClaimAPI) -> OperatorContext:
    """The chart's modelCache.persistentVolumeClaim set, and the namespace allowed to pre-stage."""
    return OperatorContext(
        settings=Settings(model_cache_persistent_volume_claim="hf-cache", checkpoint_namespaces=["ns"]),
        api=api,  # type: ignore[arg-type]
        metrics=Metrics.create(),
    )


def test_a_missing_model_cache_claim_creates_no_prestaging_placeholder_and_says_why() -> None:
    """Issue 17 item 4: pre-staging placeholders mount the chart's modelCache.persistentVolumeClaim;
    one naming a missing claim would stay Pending, holding nothing. None is created, the buffer is
    WarmBufferMisconfigured PersistentVolumeClaimNotFound with one Event; once the claim exists they are."""
    api = ClaimAPI(set())
    loop = Loop(isvc(prestage=True), api)
    loop.ctx = claim_ctx(api)
    loop.run()
    loop.run(1005.0)
    assert api.pods == {} and api.claim_reads == 2
    c = loop.cond("WarmBufferMisconfigured")
    assert (c["status"], c["reason"]) == ("True", "PersistentVolumeClaimNotFound") and "hf-cache" in c[
        "message"
    ]
    assert loop.cond("WarmBufferReady")["reason"] == "PersistentVolumeClaimNotFound"
    assert loop.events.count("WarmBufferMisconfigured") == 1  # on the change, not every pass
    api.claims.add("hf-cache")
    loop.run(1010.0)
    assert sorted(api.pods) == ["llm-buffer-0", "llm-buffer-1"]
    vols = api.pods["llm-buffer-0"]["spec"]["volumes"]
    assert {"name": "ember-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in vols
    assert loop.cond("WarmBufferMisconfigured")["status"] == "False"


def test_without_prestage_the_claim_is_not_read() -> None:
    api = ClaimAPI(set())
    loop = Loop(isvc(prestage=False), api)
    loop.ctx = claim_ctx(api)
    loop.run()
    assert api.claim_reads == 0 and len(api.pods) == 2
