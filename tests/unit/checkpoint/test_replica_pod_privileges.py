"""The operator's replica pod gives the replica image what running it showed it needs
(tests/integration/checkpoint/test_replica_image.py, replica_image/README.md)."""

from __future__ import annotations

from typing import Any

from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember.policy.tenancy import CheckpointGrant

GRANT = CheckpointGrant({"hostPath": {"path": "/r/ns/llm"}}, None, "/r/ns/llm", "hostPath:///r/ns/llm")

# the set the replica image test runs with (Docker names SYS_ADMIN for CHECKPOINT_RESTORE)
TESTED = {"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN", "SYS_TIME", "SYS_CHROOT", "SETPCAP", "SETUID", "SETGID"}


def pod(checkpoint: bool) -> dict[str, Any]:
    spec = InferenceServiceSpec.model_validate(
        {"model": {"uri": "hf://org/m"}, "checkpoint": {"enabled": checkpoint}}
    )
    return builders.replica_pod("llm", "ns", "uid", spec, 0, checkpoint=GRANT if checkpoint else None)


def test_a_checkpointing_replica_gets_the_tested_capabilities_and_nothing_more() -> None:
    c = pod(True)["spec"]["containers"][0]
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    # not CHECKPOINT_RESTORE: SYS_ADMIN covers it, and a node without it in its bounding set refuses it
    assert set(sc["capabilities"]["add"]) == TESTED
    assert "privileged" not in sc
    assert sc["seccompProfile"] == {"type": "Unconfined"} and sc["appArmorProfile"] == {"type": "Unconfined"}
    plain = pod(False)["spec"]["containers"][0]["securityContext"]  # no CRIU, no privileges
    assert plain == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_every_replica_gets_a_memory_dev_shm_for_vllms_queues() -> None:
    p = pod(False)
    [mount] = [m for m in p["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    [vol] = [v for v in p["spec"]["volumes"] if v["name"] == mount["name"]]
    assert vol["emptyDir"] == {"medium": "Memory"}
