"""The pod watcher's bookkeeping (with a stand-in API), parameter files, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from ember_sim.cli import main
from ember_sim.kube import KubePodWatcher
from ember_sim.membership import PodView
from ember_sim.params import ReplicaParams, load_params
from kubernetes.client import V1ObjectMeta, V1Pod, V1PodCondition, V1PodStatus
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError


def pod(name: str, ready: bool) -> V1Pod:
    cond = V1PodCondition(type="Ready", status="True" if ready else "False")
    labels = {"serving.ember.dev/serving": "true"}
    return V1Pod(metadata=V1ObjectMeta(name=name, labels=labels), status=V1PodStatus(conditions=[cond]))


class FakeApi:
    def __init__(self) -> None:
        self.selectors: list[str] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: object) -> SimpleNamespace:
        self.selectors.append(label_selector)
        return SimpleNamespace(
            items=[pod("a", True), pod("b", False)], metadata=SimpleNamespace(resource_version="7")
        )


def test_the_watcher_lists_then_applies_watch_events() -> None:
    api = FakeApi()
    w = KubePodWatcher(None, "ns1", "chat", api=api)
    assert w._relist() == "7"
    assert api.selectors == ["serving.ember.dev/inferenceservice=chat,serving.ember.dev/component=replica"]
    assert w.snapshot() == {"a": PodView("a", True, True), "b": PodView("b", False, True)}
    w._apply({"type": "MODIFIED", "object": pod("b", True)})
    w._apply({"type": "DELETED", "object": pod("a", True)})
    assert w.snapshot() == {"b": PodView("b", True, True)}
    with pytest.raises(ApiException):
        w._apply({"type": "ERROR", "object": {"code": 410}})


def test_parameters_load_from_yaml_over_the_defaults(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("max_num_seqs: 64\nprefill_tokens_per_s: 9000\n")
    p = load_params(f)
    assert (p.max_num_seqs, p.prefill_tokens_per_s, p.block_size_tokens) == (64, 9000.0, 16)
    assert load_params(None) == ReplicaParams()
    f.write_text("max_num_seq: 64\n")
    with pytest.raises(ValidationError):
        load_params(f)


def test_simulate_prints_windows_for_a_synthetic_load(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--synthetic", "60:2,60:6", "--replicas", "2", "--window-s", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["completed"] == out["requests"] == 480
    assert [round(w["qps"]) for w in out["windows"][:4]] == [2, 2, 6, 6]


def test_live_static_mode_writes_targets_and_status_then_exits(tmp_path: Path) -> None:
    sd, st = tmp_path / "sd.json", tmp_path / "st.json"
    argv = ["live", "--synthetic", "1:20", "--output-tokens", "8", "--replicas", "2", "--exit-when-done",
            "--targets-file", str(sd), "--status-file", str(st), "--until-s", "20"]  # fmt: skip
    assert main(argv) == 0
    status = json.loads(st.read_text())
    assert status["completed"] == 20 and status["in_flight"] == 0
    assert len(json.loads(sd.read_text())) == 2
