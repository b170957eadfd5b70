"""The injected supervisor (issue 17): any vLLM image runs unchanged. The pod built with the admin's
supervisorImage copies Ember's tree in with an init container and runs it on the image's python3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.config import Settings
from ember.kube import builders, placeholders, shaping
from ember.policy.tenancy import CheckpointGrant
from ember_supervisor import inject

SUP = "ghcr.io/ember-dev/ember-operator:0.1.0"
ADMIN = shaping.AdminShaping(supervisor_image=SUP)
GRANT = CheckpointGrant(
    {"hostPath": {"path": "/r/ns/llm", "type": "DirectoryOrCreate"}}, None, "/r/ns/llm", "x"
)


def spec(**over: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"uri": "hf://org/m"}, **over})


def engine(pod: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = pod["spec"]["containers"][0]
    return c


def test_the_default_image_runs_the_injected_supervisor_from_an_init_container() -> None:
    pod = builders.replica_pod("llm", "ns", "uid", spec(), 0, admin=ADMIN)
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == SUP and init["name"] == "ember-inject"
    assert init["command"] == ["cp", "-R", "/opt/ember-inject/bin", "/opt/ember-inject/lib", "/ember/"]
    assert init["securityContext"] == builders.RESTRICTED_CONTAINER_SECURITY, "restricted profile holds"
    c = engine(pod)
    assert c["image"] == "vllm/vllm-openai:v0.25.1", "the CRD's default engine image, unchanged"
    assert c["command"] == ["/ember/bin/ember-supervisor"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "ember-inject", "mountPath": "/ember", "readOnly": True} in c["volumeMounts"]
    vol = next(v for v in pod["spec"]["volumes"] if v["name"] == "ember-inject")
    assert "emptyDir" in vol
    assert "EMBER_CRIU" not in {e["name"] for e in c["env"]}, "no CRIU without the checkpoint grant"


def test_with_the_checkpoint_grant_criu_is_injected_too_and_found_through_ember_criu() -> None:
    s = spec(checkpoint={"enabled": True})
    pod = builders.replica_pod("llm", "ns", "uid", s, 0, checkpoint=GRANT, admin=ADMIN)
    (init,) = pod["spec"]["initContainers"]
    assert "/opt/ember-inject/criu" in init["command"]
    env = {e["name"]: e.get("value") for e in engine(pod)["env"]}
    assert env["EMBER_CRIU"] == "/ember/criu"
    # a stock image does not set what a restorable engine needs (the CPU replica image's Dockerfile does)
    assert env["VLLM_HOST_IP"] == "127.0.0.1" and env["UV_USE_IO_URING"] == "0"
    assert env["VLLM_CACHE_ROOT"] == f"{builders.CHECKPOINT_MOUNT}/.vllm-cache"


def test_without_a_supervisor_image_the_engine_image_brings_its_own() -> None:
    pod = builders.replica_pod("llm", "ns", "uid", spec(), 0)
    assert "initContainers" not in pod["spec"]
    assert engine(pod)["command"] == ["ember-supervisor"]


def test_the_supervisor_image_does_not_roll_replicas() -> None:
    plain = builders.replica_pod("llm", "ns", "uid", spec(), 0)
    injected = builders.replica_pod("llm", "ns", "uid", spec(), 0, admin=ADMIN)
    key = "serving.ember.dev/template-hash"
    assert plain["metadata"]["labels"][key] == injected["metadata"]["labels"][key]


def test_prestage_placeholders_inject_the_supervisor_before_prestaging() -> None:
    s = spec(warmBuffer={"enabled": True, "prestage": True})
    pod = placeholders.placeholder_pod("llm", "ns", "uid", s, 0, prestage_allowed=True, admin=ADMIN)
    names = [c["name"] for c in pod["spec"]["initContainers"]]
    assert names == ["ember-inject", "prestage"]
    pre = pod["spec"]["initContainers"][1]
    assert pre["command"] == ["/ember/bin/ember-supervisor"] and pre["args"][0] == "prestage"
    assert any(m["mountPath"] == "/ember" for m in pre["volumeMounts"])


def test_settings_carry_the_supervisor_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_SUPERVISOR_IMAGE", SUP)
    assert Settings().supervisor_image == SUP


# ---------------------------------------------------------------- the tree itself, on real Pythons
@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inject.layout(tmp_path_factory.mktemp("inject") / "ember")


def run(tree: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": "/nonexistent"}
    return subprocess.run(
        [str(tree / "bin/ember-supervisor"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_tree_is_pure_python_and_complete(tree: Path) -> None:
    assert not [p for p in tree.rglob("*") if p.suffix in (".so", ".pyd")]
    assert (tree / "lib/ember/ember_supervisor/main.py").is_file()
    assert (tree / "lib/ember/ember_checkpoint/vllm_entry.py").is_file()
    assert (tree / "lib/deps/httpx").is_dir() and (tree / "lib/deps/prometheus_client").is_dir()
    assert os.access(tree / "bin/ember-supervisor", os.X_OK)


def test_an_image_without_python3_ends_with_one_line(tree: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "dirname"):  # a shell and coreutils, no python3
        (bare / tool).symlink_to(Path("/usr/bin", tool).resolve())
    r = run(tree, str(bare))
    assert r.returncode == 127
    assert r.stderr.splitlines() == [
        "ember: this image has no python3 on PATH; Ember runs images that have vLLM and Python 3 "
        "(e.g. vllm/vllm-openai)"
    ]


def test_an_image_without_vllm_ends_with_one_line(tree: Path, tmp_path: Path) -> None:
    # this test interpreter has pydantic but no vLLM: the stand-in for a Python image without vLLM
    pybin = tmp_path / "bin"
    pybin.mkdir()
    (pybin / "python3").symlink_to(sys.executable)
    r = run(tree, f"{pybin}:/usr/bin:/bin")
    assert r.returncode == 127
    assert r.stderr.splitlines() == [
        f"ember: this image has no vLLM for {pybin / 'python3'}; Ember runs images that have vLLM and Python 3"
    ]


def test_the_supervisor_starts_from_the_tree_on_the_images_python(tree: Path, tmp_path: Path) -> None:
    pybin = tmp_path / "bin"
    pybin.mkdir()
    (pybin / "python3").symlink_to(sys.executable)
    r = run(tree, f"{pybin}:/usr/bin:/bin", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ember-supervisor ")
    probe = subprocess.run(  # the tree's packages, not this venv's, are the ones imported
        [
            str(pybin / "python3"),
            "-c",
            "import ember_supervisor, json; print(json.dumps(ember_supervisor.__file__))",
        ],
        env={"PYTHONPATH": str(tree / "lib/ember")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(probe.stdout).startswith(str(tree))


# ---------------------------------------------------- a replica that fails this way is a condition
NO_VLLM = "ember: this image has no vLLM for /usr/bin/python3; Ember runs images that have vLLM and Python 3"


def crashed_pod(message: str, exit_code: int = 127) -> dict[str, Any]:
    term = {"exitCode": exit_code, "reason": "Error", "message": message}
    return {
        "metadata": {"name": "llm-0", "labels": {}, "creationTimestamp": "2026-12-03T00:00:00Z"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "engine",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": term},
                }
            ],
        },
    }


def test_the_supervisors_one_line_becomes_degraded_replica_failing() -> None:
    from datetime import UTC, datetime

    from ember.handlers.registry import _compact
    from ember.kube.views import pod_view
    from ember.policy.rollout import Plan
    from ember.policy.status import replica_conditions

    # through the operator's compact pod index, as the loop sees it
    view = pod_view(_compact(crashed_pod(f"some log line\n{NO_VLLM}\n")))
    assert view is not None and view.failing == f"container engine: {NO_VLLM}"
    conds = replica_conditions([], 1, [view], Plan(current=1), datetime.now(UTC), 1)
    degraded = next(c for c in conds if c.type == "Degraded")
    assert degraded.status == "True" and degraded.reason == "ReplicaFailing"
    assert degraded.message == f"1 replica(s) failing; llm-0: container engine: {NO_VLLM}"


def test_an_exit_without_a_message_names_the_exit_code_and_a_clean_exit_is_no_failure() -> None:
    from ember.kube.views import failure

    assert failure(crashed_pod("")["status"]) == "container engine: exit code 127 (Error)"
    assert failure(crashed_pod("done", exit_code=0)["status"]) is None


# ------------------------------------------------------------ models from object stores and images
def _args(pod: dict[str, Any]) -> list[str]:
    env = {e["name"]: e.get("value") for e in engine(pod)["env"]}
    return list(json.loads(env["EMBER_SUPERVISOR_CONFIG_JSON"])["engine_argv"])


def test_s3_goes_to_vllms_runai_streamer_with_the_credentials_secret_as_environment() -> None:
    s = spec(model={"uri": "s3://models/llama-3-8b", "credentialsSecret": {"name": "s3"}})
    pod = builders.replica_pod("llm", "ns", "uid", s, 0, admin=ADMIN)
    argv = _args(pod)
    assert argv[argv.index("--model") + 1] == "s3://models/llama-3-8b"
    assert argv[argv.index("--load-format") + 1] == "runai_streamer" and "--revision" not in argv
    assert {"secretRef": {"name": "s3"}} in engine(pod)["envFrom"]
    refs = shaping.references(s)
    assert [(r.kind, r.name, r.where) for r in refs] == [("Secret", "s3", "spec.model.credentialsSecret")]


def test_gs_mounts_the_credentials_secret_and_points_google_credentials_at_its_key() -> None:
    s = spec(model={"uri": "gs://bucket/llama", "credentialsSecret": {"name": "gcs"}})
    pod = builders.replica_pod("llm", "ns", "uid", s, 0, admin=ADMIN)
    env = {e["name"]: e.get("value") for e in engine(pod)["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/run/ember/model-credentials/key.json"
    vol = next(v for v in pod["spec"]["volumes"] if v["name"] == "ember-model-credentials")
    assert vol["secret"]["secretName"] == "gcs"


def test_oci_mounts_the_model_image_as_an_image_volume() -> None:
    pod = builders.replica_pod("llm", "ns", "uid", spec(model={"uri": "oci://ghcr.io/acme/llama:v1"}), 0)
    vol = next(v for v in pod["spec"]["volumes"] if v["name"] == "model")
    assert vol["image"] == {"reference": "ghcr.io/acme/llama:v1", "pullPolicy": "IfNotPresent"}
    argv = _args(pod)
    assert argv[argv.index("--model") + 1] == builders.MODEL_MOUNT
    assert {"name": "model", "mountPath": builders.MODEL_MOUNT, "readOnly": True} in engine(pod)[
        "volumeMounts"
    ]


# ------------------------------------------------------------------- the node-local hf:// cache
CACHED = shaping.AdminShaping(supervisor_image=SUP, model_cache="/var/lib/ember/models")


def test_replicas_and_prestage_share_the_namespaces_cache_directory_in_one_layout() -> None:
    s = spec(checkpoint={"enabled": True}, warmBuffer={"enabled": True, "prestage": True})
    pod = builders.replica_pod("llm", "team-a", "uid", s, 0, checkpoint=GRANT, admin=CACHED)
    vol = next(v for v in pod["spec"]["volumes"] if v["name"] == builders.MODEL_CACHE_VOLUME)
    assert vol["hostPath"] == {"path": "/var/lib/ember/models/team-a", "type": "DirectoryOrCreate"}
    env = {e["name"]: e.get("value") for e in engine(pod)["env"]}
    assert env["HF_HUB_CACHE"] == "/var/lib/ember/cache/hf"  # prestage downloads into <--cache>/hf
    ph = placeholders.placeholder_pod("llm", "team-a", "uid", s, 0, prestage_allowed=True, admin=CACHED)
    pre = ph["spec"]["initContainers"][1]
    assert pre["args"][pre["args"].index("--cache") + 1] == builders.MODEL_CACHE_MOUNT
    cache = next(v for v in ph["spec"]["volumes"] if v["name"] == "ember-cache")
    assert cache["hostPath"] == vol["hostPath"], "the same node directory as the replicas'"


def test_no_cache_without_the_grant_or_for_other_schemes() -> None:
    restricted = builders.replica_pod("llm", "team-a", "uid", spec(), 0, admin=CACHED)
    assert all("hostPath" not in v for v in restricted["spec"]["volumes"]), "restricted: no node paths"
    pvc = spec(model={"uri": "pvc://models/llama"}, checkpoint={"enabled": True})
    pod = builders.replica_pod("llm", "team-a", "uid", pvc, 0, checkpoint=GRANT, admin=CACHED)
    assert builders.MODEL_CACHE_VOLUME not in {v["name"] for v in pod["spec"]["volumes"]}


def test_setting_a_cache_rolls_replicas_and_no_cache_keeps_todays_hash() -> None:
    key = "serving.ember.dev/template-hash"
    plain = builders.replica_pod("llm", "ns", "uid", spec(), 0)["metadata"]["labels"][key]
    cached = builders.replica_pod("llm", "ns", "uid", spec(), 0, admin=CACHED)["metadata"]["labels"][key]
    assert plain != cached


# ------------------------------------------------------------------- the cache on a claim
CLAIMED = shaping.AdminShaping(supervisor_image=SUP, model_cache_claim="hf-cache")


def _cache_parts(pod: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    vols = [v for v in pod["spec"]["volumes"] if v["name"] == builders.MODEL_CACHE_VOLUME]
    mounts = [m for m in engine(pod)["volumeMounts"] if m["name"] == builders.MODEL_CACHE_VOLUME]
    return vols, mounts, {e["name"]: e.get("value") for e in engine(pod)["env"]}


def test_a_cache_claim_is_mounted_read_write_with_the_hf_cache_env_in_every_namespace() -> None:
    # no grant needed: a claim is allowed under the restricted profile, and namespaced by construction
    for grant in (None, GRANT):
        s = spec(checkpoint={"enabled": True}) if grant else spec()
        pod = builders.replica_pod("llm", "team-a", "uid", s, 0, checkpoint=grant, admin=CLAIMED)
        vols, mounts, env = _cache_parts(pod)
        assert vols == [
            {"name": builders.MODEL_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": "hf-cache"}}
        ]
        assert mounts == [{"name": builders.MODEL_CACHE_VOLUME, "mountPath": builders.MODEL_CACHE_MOUNT}]
        assert env["HF_HUB_CACHE"] == f"{builders.MODEL_CACHE_MOUNT}/hf"
        assert all("hostPath" not in v for v in pod["spec"]["volumes"]) or grant is not None
    pvc = spec(model={"uri": "pvc://models/llama"})
    vols, mounts, env = _cache_parts(builders.replica_pod("llm", "team-a", "uid", pvc, 0, admin=CLAIMED))
    assert vols == [] and mounts == [] and "HF_HUB_CACHE" not in env, "only hf:// downloads"


def test_the_prestage_downloads_into_the_same_claim_and_the_claim_is_in_the_hash() -> None:
    s = spec(checkpoint={"enabled": True}, warmBuffer={"enabled": True, "prestage": True})
    ph = placeholders.placeholder_pod("llm", "team-a", "uid", s, 0, prestage_allowed=True, admin=CLAIMED)
    pre = ph["spec"]["initContainers"][1]
    assert pre["args"][pre["args"].index("--cache") + 1] == builders.MODEL_CACHE_MOUNT
    cache = next(v for v in ph["spec"]["volumes"] if v["name"] == "ember-cache")
    assert cache == {"name": "ember-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}
    h = [placeholders.spec_hash(s, prestage_allowed=True, admin=a) for a in (ADMIN, CACHED, CLAIMED)]
    assert len(set(h)) == 3, "a cache change replaces pre-staged placeholders"


def test_hostpath_cache_unchanged_and_no_cache_without_either() -> None:
    pod = builders.replica_pod(
        "llm", "team-a", "uid", spec(checkpoint={"enabled": True}), 0, checkpoint=GRANT, admin=CACHED
    )
    vols, mounts, env = _cache_parts(pod)
    assert vols == [
        {
            "name": builders.MODEL_CACHE_VOLUME,
            "hostPath": {"path": "/var/lib/ember/models/team-a", "type": "DirectoryOrCreate"},
        }
    ]
    assert len(mounts) == 1 and env["HF_HUB_CACHE"] == f"{builders.MODEL_CACHE_MOUNT}/hf"
    for grant in (None, GRANT):
        s = spec(checkpoint={"enabled": True}) if grant else spec()
        vols, mounts, env = _cache_parts(
            builders.replica_pod("llm", "team-a", "uid", s, 0, checkpoint=grant, admin=ADMIN)
        )
        assert vols == [] and mounts == [] and "HF_HUB_CACHE" not in env


def test_the_claim_is_a_reference_checked_before_creates_and_its_absence_is_named() -> None:
    refs = shaping.references(spec(), CLAIMED)
    assert refs[-1] == shaping.Ref(
        "PersistentVolumeClaim", "hf-cache", None, "the chart's modelCache.persistentVolumeClaim"
    )
    assert shaping.references(spec(model={"uri": "pvc://models/llama"}), CLAIMED) == []
    m = shaping.missing(refs, lambda kind, name: None)
    assert m is not None and m.reason == "PersistentVolumeClaimNotFound"
    assert "'hf-cache'" in m.message and "modelCache.persistentVolumeClaim" in m.message
    assert shaping.missing(refs, lambda kind, name: set()) is None


def test_settings_refuse_both_caches_and_a_claim_that_is_no_name() -> None:
    with pytest.raises(ValueError, match="exclusive"):
        Settings(model_cache_host_path="/var/lib/m", model_cache_persistent_volume_claim="hf-cache")
    with pytest.raises(ValueError):
        Settings(model_cache_persistent_volume_claim="Not_A_Name")
    assert (
        Settings(model_cache_persistent_volume_claim="hf-cache").model_cache_persistent_volume_claim
        == "hf-cache"
    )
