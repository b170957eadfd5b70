"""The operator's checkpoint hook, against a real HTTP server playing the supervisor (our own seam):
the first warm replica is asked once, the manifest lands in status with CheckpointReady, failures back
off and are reported, and new replicas then take the restore path."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus
from ember.config import Settings
from ember.handlers.checkpoint import checkpoint_step
from ember.handlers.context import OperatorContext
from ember.observe.supervisor import checkpoint_status
from ember.policy.startpath import restore_available
from ember.replica.client import SupervisorError
from ember.telemetry.metrics import Metrics

MANIFEST = {
    "checkpoint_id": "3f2a9c-20261124T010203",
    "identity_hash": "3f2a9c" + "0" * 58,
    "created": "2026-11-24T01:02:03Z",
    "sizes": {"image_bytes": 2_300_000_000, "gpu_state_bytes": 0},
    "verification": {"verified": True},
}


class Supervisor:
    def __init__(self, code: int = 200, body: Any = MANIFEST) -> None:
        self.code, self.body, self.calls = code, body, 0
        self.auth: list[str | None] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                outer.calls += 1
                outer.auth.append(self.headers.get("Authorization"))
                data = json.dumps(outer.body).encode()
                self.send_response(outer.code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


TOKEN = "s3cret-token"


class StatusAPI:
    def __init__(self) -> None:
        self.applied: list[tuple[dict[str, Any], str]] = []

    def read_secret_key(self, ns: str, name: str, key: str) -> str | None:
        return TOKEN if (ns, name, key) == ("ns", "llm-supervisor-token", "token") else None

    def apply_status(self, ns: str, name: str, owned: dict[str, Any], manager: str) -> None:
        self.applied.append((owned, manager))


def body(checkpoint: dict[str, Any] | None = None, enabled: bool = True) -> dict[str, Any]:
    status: dict[str, Any] = {"checkpoint": checkpoint} if checkpoint else {}
    return {
        "metadata": {"namespace": "ns", "name": "llm", "generation": 1},
        "spec": {"model": {"uri": "hf://o/m"}, "checkpoint": {"enabled": enabled}},
        "status": status,
    }


def pod(name: str, created: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"serving.ember.dev/serving": "true"},
        },
        "status": {
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.fixture
def ctx_for() -> Iterator[Any]:
    def make(
        sup: Supervisor, allowed: tuple[str, ...] = ("ns",)
    ) -> tuple[OperatorContext, StatusAPI, list[tuple[str, str]]]:
        api = StatusAPI()
        ctx = OperatorContext(
            settings=Settings(
                supervisor_port=sup.port, checkpoint_timeout_seconds=5, checkpoint_namespaces=list(allowed)
            ),
            api=api,
            metrics=Metrics.create(),
        )  # type: ignore[arg-type]
        return ctx, api, []

    yield make


def run(
    ctx: OperatorContext, b: dict[str, Any], pods: list[dict[str, Any]], events: list[tuple[str, str]]
) -> None:
    asyncio.run(checkpoint_step(ctx, b, pods, emit=lambda _b, t, r, m: events.append((t, r))))


def test_first_warm_replica_is_checkpointed_and_recorded_as_verified(ctx_for: Any) -> None:
    sup = Supervisor()
    ctx, api, events = ctx_for(sup)
    run(ctx, body(), [pod("llm-1", "2026-11-24T01:00:05Z"), pod("llm-0", "2026-11-24T01:00:00Z")], events)
    assert sup.calls == 1
    owned, manager = api.applied[-1]
    assert manager == "ember-checkpoint"
    assert owned["checkpoint"]["id"] == MANIFEST["checkpoint_id"] and owned["checkpoint"]["verified"] is True
    assert owned["checkpoint"]["sizeBytes"] == 2_300_000_000
    assert [c["type"] for c in owned["conditions"]] == ["CheckpointReady"]
    assert owned["conditions"][0]["status"] == "True"
    assert events == [("Normal", "CheckpointTaken")]
    assert sup.auth == [f"Bearer {TOKEN}"]  # the service's token, from its Secret
    assert owned["checkpoint"]["location"] == "hostPath:///var/lib/ember/checkpoints/ns/llm"


def test_nothing_is_asked_without_a_ready_replica_or_when_disabled_or_already_verified(ctx_for: Any) -> None:
    sup = Supervisor()
    ctx, api, events = ctx_for(sup)
    run(ctx, body(), [pod("llm-0", "2026-11-24T01:00:00Z", ready=False)], events)
    run(ctx, body(enabled=False), [pod("llm-0", "2026-11-24T01:00:00Z")], events)
    verified = checkpoint_status(MANIFEST, "hostPath:///x").to_k8s()
    run(ctx, body(checkpoint=verified), [pod("llm-0", "2026-11-24T01:00:00Z")], events)
    assert sup.calls == 0 and not api.applied and not events


def test_a_failing_supervisor_is_reported_and_backed_off(ctx_for: Any) -> None:
    sup = Supervisor(code=500, body={"error": "criu dump failed: Can't open mapfile"})
    ctx, api, events = ctx_for(sup)
    pods = [pod("llm-0", "2026-11-24T01:00:00Z")]
    run(ctx, body(), pods, events)
    run(ctx, body(), pods, events)  # within the backoff: not asked again
    assert sup.calls == 1
    owned, _ = api.applied[-1]
    assert (
        owned["conditions"][0]["status"] == "False" and owned["conditions"][0]["reason"] == "CheckpointFailed"
    )
    assert "criu dump failed" in owned["conditions"][0]["message"]
    assert events == [("Warning", "CheckpointFailed")]


def test_unreadable_manifest_is_an_error_not_a_crash() -> None:
    with pytest.raises(SupervisorError, match="unreadable manifest"):
        checkpoint_status({"sizes": {}}, "x")


def test_new_replicas_restore_only_from_a_verified_checkpoint() -> None:
    spec = InferenceServiceSpec.model_validate(body()["spec"])
    unverified = InferenceServiceStatus.model_validate(
        {"checkpoint": {**checkpoint_status(MANIFEST, "x").to_k8s(), "verified": False}}
    )
    verified = InferenceServiceStatus.model_validate(
        {"checkpoint": checkpoint_status(MANIFEST, "x").to_k8s()}
    )
    assert not restore_available(spec, InferenceServiceStatus())
    assert not restore_available(spec, unverified)
    assert restore_available(spec, verified)
    never = spec.model_copy(
        update={"checkpoint": spec.checkpoint.model_copy(update={"restore_policy": "Never"})}
    )
    assert not restore_available(never, verified)


def test_a_namespace_the_admin_did_not_opt_in_gets_a_condition_and_one_event_and_no_call(
    ctx_for: Any,
) -> None:
    sup = Supervisor()
    ctx, api, events = ctx_for(sup, allowed=())
    pods = [pod("llm-0", "2026-11-24T01:00:00Z")]
    run(ctx, body(), pods, events)
    assert sup.calls == 0
    owned, _ = api.applied[-1]
    [cond] = owned["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "CheckpointReady",
        "False",
        "CheckpointsNotAllowed",
    )
    assert "namespace ns" in cond["message"]
    b = body()
    b["status"] = {"conditions": owned["conditions"]}
    run(ctx, b, pods, events)  # the condition is already there: no second write, no second Event
    assert events == [("Warning", "CheckpointsNotAllowed")] and len(api.applied) == 1


def test_an_unknown_storage_root_is_a_condition_not_a_call(ctx_for: Any) -> None:
    sup = Supervisor()
    ctx, api, events = ctx_for(sup)
    b = body()
    b["spec"]["checkpoint"]["storage"] = {"root": "made-up"}
    run(ctx, b, [pod("llm-0", "2026-11-24T01:00:00Z")], events)
    assert sup.calls == 0 and events == [("Warning", "UnknownStorageRoot")]
    assert "made-up" in api.applied[-1][0]["conditions"][0]["message"]
