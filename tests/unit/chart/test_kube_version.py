"""The chart's kubeVersion covers what the pods it makes need (issue 17)."""

from __future__ import annotations

from pathlib import Path

import yaml
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders
from ember.policy.tenancy import CheckpointGrant

CHART = Path(__file__).resolve().parents[3] / "charts/ember/Chart.yaml"


def test_kube_version_is_at_least_1_30_for_the_prestop_sleep_and_apparmor_fields() -> None:
    spec = InferenceServiceSpec.model_validate({"model": {"uri": "hf://org/m"}})
    grant = CheckpointGrant({"hostPath": {"path": "/r", "type": "DirectoryOrCreate"}}, None, "/r", "x")
    c = builders.replica_pod("llm", "ns", "uid", spec, 0, checkpoint=grant)["spec"]["containers"][0]
    assert "sleep" in c["lifecycle"]["preStop"] and "appArmorProfile" in c["securityContext"]
    version = yaml.safe_load(CHART.read_text())["kubeVersion"]
    assert version == ">=1.30.0-0", version
