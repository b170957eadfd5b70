"""The replica pod the operator builds runs Ember's supervisor with a config the supervisor accepts."""

from __future__ import annotations

import json

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember_checkpoint.manifest import Identity
from ember_checkpoint.supervisor.config import SupervisorConfig


def spec(**over: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"uri": "hf://org/m", "servedName": "m"}, **over})


def supervisor_of(pod: dict[str, object]) -> SupervisorConfig:
    c = pod["spec"]["containers"][0]  # type: ignore[index]
    assert c["command"] == ["ember-supervisor"]
    env = {e["name"]: e["value"] for e in c["env"]}
    return SupervisorConfig.model_validate_json(env["EMBER_SUPERVISOR_CONFIG_JSON"])


def test_supervisor_accepts_the_config_and_runs_vllm_on_the_asyncio_entry_point() -> None:
    s = spec(engine={"args": ["--enable-prefix-caching"], "maxModelLen": 4096, "dtype": "bfloat16"})
    cfg = supervisor_of(builders.replica_pod("llm", "ns", "uid", s, 0))
    assert cfg.engine_argv[:3] == ["python3", "-m", "ember_checkpoint.vllm_entry"]
    assert cfg.engine_argv[-1] == "--enable-prefix-caching" and "--max-model-len" in cfg.engine_argv
    assert cfg.engine_port == 8000 and cfg.listen_port == builders.SUPERVISOR_PORT
    assert cfg.checkpoint_dir is None, "no checkpoint storage unless spec.checkpoint.enabled"
    assert cfg.canary is not None and json.loads(cfg.canary.body or "{}")["model"] == "m"


@pytest.mark.parametrize(("policy", "restores"), [("IfVerified", True), ("Never", False)])
def test_checkpoint_storage_is_handed_to_the_supervisor(policy: str, restores: bool) -> None:
    s = spec(checkpoint={"enabled": True, "restorePolicy": policy, "keep": 3})
    pod = builders.replica_pod("llm", "ns", "uid", s, 0, start_path="restore")
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
