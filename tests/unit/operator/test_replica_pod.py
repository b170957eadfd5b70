"""The replica pod the operator builds runs Ember's supervisor with a config the supervisor accepts."""

from __future__ import annotations

import json

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember.policy.tenancy import CheckpointAccess, CheckpointGrant, StorageRoot, checkpoint_grant
from ember_checkpoint.manifest import Identity
from ember_supervisor.config import SupervisorConfig


def spec(**over: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"uri": "hf://org/m", "servedName": "m"}, **over})


def supervisor_of(pod: dict[str, object]) -> SupervisorConfig:
    c = pod["spec"]["containers"][0]  # type: ignore[index]
    assert c["command"] == ["ember-supervisor"]
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    return SupervisorConfig.model_validate_json(env["EMBER_SUPERVISOR_CONFIG_JSON"])


def test_supervisor_accepts_the_config_and_runs_vllm_on_the_asyncio_entry_point() -> None:
    s = spec(engine={"args": ["--enable-prefix-caching"], "maxModelLen": 4096, "dtype": "bfloat16"})
    cfg = supervisor_of(builders.replica_pod("llm", "ns", "uid", s, 0))
    assert cfg.engine_argv[:3] == ["python3", "-m", "ember_checkpoint.vllm_entry"]
    assert cfg.engine_argv[-1] == "--enable-prefix-caching" and "--max-model-len" in cfg.engine_argv
    assert cfg.engine_port == 8000 and cfg.listen_port == builders.SUPERVISOR_PORT
    assert cfg.checkpoint_dir is None, "no checkpoint storage without the admin's grant"
    assert cfg.canary is not None and json.loads(cfg.canary.body or "{}")["model"] == "m"


def test_the_services_weight_loader_reaches_the_supervisor_and_the_engine_argv() -> None:
    from ember_checkpoint.weights import WORKER_EXTENSION

    default = supervisor_of(builders.replica_pod("llm", "ns", "uid", spec(), 0))
    assert default.weight_loader == "ember"
    assert default.cold_argv[-2:] == ["--worker-extension-cls", WORKER_EXTENSION]
    plain = supervisor_of(builders.replica_pod("llm", "ns", "uid", spec(engine={"weightLoader": "vllm"}), 0))
    assert plain.weight_loader == "vllm" and "--worker-extension-cls" not in plain.cold_argv


@pytest.mark.parametrize(("policy", "restores"), [("IfVerified", True), ("Never", False)])
def test_checkpoint_storage_is_handed_to_the_supervisor(policy: str, restores: bool) -> None:
    s = spec(checkpoint={"enabled": True, "restorePolicy": policy, "keep": 3})
    pod = builders.replica_pod("llm", "ns", "uid", s, 0, start_path="restore", checkpoint=GRANT)
    cfg = supervisor_of(pod)
    assert (str(cfg.checkpoint_dir) == builders.CHECKPOINT_MOUNT) is restores
    assert cfg.keep_verified == 3
    mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}  # type: ignore[index]
    assert {builders.CHECKPOINT_MOUNT, builders.STATE_MOUNT} <= mounts


def test_identity_fields_fit_the_checkpoint_manifest_identity() -> None:
    cfg = supervisor_of(builders.replica_pod("llm", "ns", "uid", spec(), 0))
    # the supervisor adds what it detects (CRIU, driver, GPU); the rest comes from the spec
    ident = Identity.model_validate({**cfg.identity, "criu_version": "4.2.1"})
    assert ident.max_model_len == builders.ENGINE_DEFAULT_MAX_LEN and ident.model_digest == "hf://org/m@main"


GRANT = CheckpointGrant(
    {"hostPath": {"path": "/r/ns/llm", "type": "DirectoryOrCreate"}}, None, "/r/ns/llm", "x"
)
ACCESS = CheckpointAccess(
    {"node": StorageRoot(host_path="/var/lib/ember/checkpoints/"), "shared": StorageRoot(pvc="ckpt")},
    frozenset({"team-a"}),
)


@pytest.mark.parametrize(
    ("root", "sub", "volume", "sub_path"),
    [
        (
            "node",
            None,
            {"hostPath": {"path": "/var/lib/ember/checkpoints/team-a/llm", "type": "DirectoryOrCreate"}},
            None,
        ),
        (
            "node",
            "v2",
            {"hostPath": {"path": "/var/lib/ember/checkpoints/team-a/llm/v2", "type": "DirectoryOrCreate"}},
            None,
        ),
        ("shared", "v2", {"persistentVolumeClaim": {"claimName": "ckpt"}}, "team-a/llm/v2"),
    ],
    ids=["hostpath-root", "hostpath-subpath", "pvc-root"],
)
def test_each_service_is_placed_in_its_own_directory_of_an_admin_root(
    root: str, sub: str | None, volume: dict[str, object], sub_path: str | None
) -> None:
    storage = {"root": root} | ({"subPath": sub} if sub else {})
    grant = checkpoint_grant(ACCESS, "team-a", "llm", spec(checkpoint={"enabled": True, "storage": storage}))
    assert isinstance(grant, CheckpointGrant)
    pod = builders.replica_pod(
        "llm", "team-a", "uid", spec(checkpoint={"enabled": True}), 0, checkpoint=grant
    )
    [vol] = [v for v in pod["spec"]["volumes"] if v["name"] == "checkpoints"]  # type: ignore[index]
    assert {k: v for k, v in vol.items() if k != "name"} == volume
    [mount] = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "checkpoints"]  # type: ignore[index]
    assert mount.get("subPath") == sub_path and mount["mountPath"] == builders.CHECKPOINT_MOUNT


@pytest.mark.parametrize(
    ("namespace", "root", "reason"),
    [("team-b", "node", "CheckpointsNotAllowed"), ("team-a", "elsewhere", "UnknownStorageRoot")],
    ids=["namespace-not-opted-in", "unknown-root"],
)
def test_checkpoints_outside_the_admins_grant_are_refused_with_a_reason(
    namespace: str, root: str, reason: str
) -> None:
    s = spec(checkpoint={"enabled": True, "storage": {"root": root}})
    refusal = checkpoint_grant(ACCESS, namespace, "llm", s)
    assert not isinstance(refusal, CheckpointGrant) and refusal is not None
    assert refusal.reason == reason
    assert (namespace if reason == "CheckpointsNotAllowed" else repr(root)) in refusal.message
    assert checkpoint_grant(ACCESS, namespace, "llm", spec()) is None  # not asked: nothing to refuse


def test_a_replica_without_the_grant_meets_the_restricted_pod_security_standard() -> None:
    pod = builders.replica_pod("llm", "ns", "uid", spec(checkpoint={"enabled": True}), 0)
    ps, c = pod["spec"], pod["spec"]["containers"][0]  # type: ignore[index]
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert ps["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert not any("hostPath" in v for v in ps["volumes"]), "restricted allows no hostPath volume"


def test_the_supervisor_token_comes_from_the_services_secret_never_from_the_pod_spec() -> None:
    pod = builders.replica_pod("llm", "ns", "uid", spec(), 0)
    [env] = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == builders.TOKEN_ENV]  # type: ignore[index]
    assert env == {
        "name": builders.TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": "llm-supervisor-token", "key": builders.TOKEN_KEY}},
    }
    secret = builders.token_secret("llm", "ns", "uid-1", "t0k")
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1" and secret["stringData"] == {
        "token": "t0k"
    }


def _env(pod: dict[str, object]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}  # type: ignore[index]


@pytest.mark.parametrize(
    ("scaling", "gpu", "sleeps"),
    [
        ({"maxReplicas": 4, "sleep": {"maxSleeping": 2}}, 1, True),  # auto on a GPU: vLLM's sleep
        ({"maxReplicas": 4, "sleep": {"maxSleeping": 2, "tier": "suspend"}}, 1, True),
        ({"maxReplicas": 4, "sleep": {"maxSleeping": 2, "tier": "freeze"}}, 1, False),
        ({"maxReplicas": 4, "sleep": {"maxSleeping": 2}}, 0, False),  # a CPU replica freezes
        ({"maxReplicas": 4}, 1, False),  # sleeping off
    ],
)
def test_a_replica_that_sleeps_through_vllm_gets_its_sleep_mode_and_dev_routes(
    scaling: dict[str, object], gpu: int, sleeps: bool
) -> None:
    """Without --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 vLLM has no /sleep: on a GPU cluster
    every sleep failed and the drained replica was deleted instead (the routes stay loopback-only:
    ember_checkpoint.vllm_entry)."""
    s = spec(resources={"gpu": gpu, "cpu": "1", "memory": "8Gi"}, scaling=scaling)
    pod = builders.replica_pod("llm", "ns", "uid", s, 0)
    cfg = supervisor_of(pod)
    assert ("--enable-sleep-mode" in cfg.engine_argv) is sleeps
    assert (_env(pod).get("VLLM_SERVER_DEV_MODE") == "1") is sleeps


def test_the_spec_s_own_sleep_flag_and_dev_mode_are_not_doubled() -> None:
    s = spec(
        resources={"gpu": 1, "cpu": "1", "memory": "8Gi"},
        scaling={"maxReplicas": 4, "sleep": {"maxSleeping": 1}},
        engine={"args": ["--enable-sleep-mode"], "env": [{"name": "VLLM_SERVER_DEV_MODE", "value": "1"}]},
    )
    pod = builders.replica_pod("llm", "ns", "uid", s, 0)
    assert supervisor_of(pod).engine_argv.count("--enable-sleep-mode") == 1
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]  # type: ignore[index]
    assert names.count("VLLM_SERVER_DEV_MODE") == 1
