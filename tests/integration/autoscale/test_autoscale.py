"""Autoscaling end to end on real parts: the real operator, the real control plane with kwok GPU
nodes, a real Prometheus scraping simulated vLLM replicas (ember-sim in cluster mode: one simulated
engine per Ready pod, traffic only to pods in the Service)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember_cluster import LocalCluster, Prometheus

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import Operator, condition, get_isvc, patch_spec, replica_pods

ROOT = Path(__file__).resolve().parents[3]


def autoscaled(name: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.ember.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "hf://org/model"},
            "resources": {"gpu": 1, "cpu": "1", "memory": "1Gi"},
            "slo": {"archetype": "interactive"},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 6,
                "decisionIntervalSeconds": 1,
                "stableWindowSeconds": 12,
                "panicWindowSeconds": 4,
                "scaleDownDelaySeconds": 8,
                "drainTimeoutSeconds": 2,
                "maxScaleDownStep": 2,
                **scaling,
            },
            "podMetadata": {"annotations": {"sim.ember.dev/ready-after": "2s"}},
        },
    }


class Stack:
    def __init__(self, cluster: LocalCluster, kube: Kube, workdir: Path, name: str, load: str) -> None:
        self.sd, self.status = workdir / "targets.json", workdir / "sim-status.json"
        self.sd.write_text("[]")
        self.prom = Prometheus(workdir / "prom", file_sd={"vllm": [self.sd]}, scrape_interval_s=1.0).start()
        self.op = Operator(
            cluster,
            workdir / "operator.log",
            EMBER_PROMETHEUS_URL=self.prom.url,
            EMBER_COLD_START_SECONDS="2",
            EMBER_METRICS_LAG_SECONDS="2",
        ).start()
        self.op.wait_healthy()
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(autoscaled(name)))
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ember_sim.cli",
                "live",
                "--synthetic",
                load,
                "--prompt-tokens",
                "256",
                "--output-tokens",
                "96",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--namespace",
                kube.ns,
                "--name",
                name,
                "--targets-file",
                str(self.sd),
                "--status-file",
                str(self.status),
            ],
            stdout=(workdir / "sim.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def sim_status(self) -> dict[str, Any]:
        return json.loads(self.status.read_text()) if self.status.exists() else {}

    def close(self) -> None:
        self.sim.terminate()
        self.sim.wait(10)
        self.op.stop()
        self.prom.stop()


@pytest.fixture
def crds(cluster: LocalCluster) -> None:
    install_crds(cluster)


@pytest.fixture
def stack(cluster: LocalCluster, kube: Kube, crds: None, tmp_path: Path) -> Iterator[Stack]:
    # 15 s at 2 req/s, 35 s at 60 req/s, then nothing
    s = Stack(cluster, kube, tmp_path, "auto", "15:2,35:60,120:0")
    yield s
    s.close()


def decision(kube: Kube, name: str) -> dict[str, Any]:
    return get_isvc(kube, name).get("status", {}).get("lastDecision") or {}


def test_load_step_scales_up_then_down_after_the_delay_then_to_zero_when_allowed(
    kube: Kube, stack: Stack
) -> None:
    eventually(
        lambda: len([p for p in replica_pods(kube, "auto") if kube.pod_ready(p)]) == 1, 30, what="1 ready"
    )
    eventually(
        lambda: (condition(kube, "auto", "MetricsAvailable") or {}).get("status") == "True",
        30,
        what="metrics flowing",
    )

    # the step: 60 req/s needs several replicas
    peak = eventually(
        lambda: (d := decision(kube, "auto")).get("desiredReplicas", 0) >= 3 and d,
        45,
        what="scale-up decision",
    )
    assert peak["reason"] in {"DemandRising", "Panic", "SLOBreached", "QueueBuilding", "AtMax"}, peak
    assert peak["inputs"].get("qps") is not None and peak["inputs"].get("queue") is not None, peak["inputs"]
    eventually(
        lambda: get_isvc(kube, "auto")["status"].get("readyReplicas", 0) >= 3, 30, what="replicas ready"
    )
    reasons = {e.reason for e in kube.core.list_namespaced_event(kube.ns).items}
    assert "ScalingDecision" in reasons

    # load gone: down to minReplicas after the delay, never below
    eventually(
        lambda: stack.sim_status().get("trace_done") or stack.sim_status().get("submitted", 0) > 2000,
        60,
        1,
        what="load over",
    )
    t_gone = time.monotonic()
    eventually(lambda: get_isvc(kube, "auto")["status"].get("desiredReplicas") == 1, 60, what="scaled down")
    assert time.monotonic() - t_gone >= 4, "scale-down must wait for the delay"
    eventually(lambda: len(replica_pods(kube, "auto", include_terminating=True)) == 1, 30, what="drained")

    st = stack.sim_status()
    assert st["failed_total"] == 0, f"scale-down lost requests: {st}"
    assert st["completed"] > 1500

    # allowed to reach zero: minReplicas 0 and an idle delay
    patch_spec(kube, "auto", {"scaling": {"minReplicas": 0, "scaleToZeroAfterSeconds": 3}})
    eventually(
        lambda: get_isvc(kube, "auto")["status"].get("desiredReplicas") == 0, 45, what="scaled to zero"
    )
    eventually(lambda: not replica_pods(kube, "auto", include_terminating=True), 30, what="no pods")


def test_prometheus_lost_after_values_flowed_is_reported_within_two_intervals_and_scaling_still_works(
    kube: Kube, stack: Stack
) -> None:
    interval = autoscaled("auto")["spec"]["scaling"]["decisionIntervalSeconds"]
    patch_spec(kube, "auto", {"scaling": {"minReplicas": 2}})
    eventually(lambda: get_isvc(kube, "auto")["status"].get("readyReplicas") == 2, 30, what="2 ready")
    # real values in status.observed first: the fault must hit a status that has them
    eventually(
        lambda: (get_isvc(kube, "auto")["status"].get("observed") or {}).get("qps") is not None,
        40,
        what="real values in status.observed",
    )
    assert (condition(kube, "auto", "MetricsAvailable") or {}).get("status") == "True"
    held = get_isvc(kube, "auto")["status"]["desiredReplicas"]
    log_lines = len(stack.op.log.read_text(errors="replace").splitlines())

    stack.prom.stop()
    t0 = time.monotonic()
    cond = eventually(
        lambda: (c := condition(kube, "auto", "MetricsAvailable") or {}).get("status") == "False" and c,
        4 * interval,
        0.05,
        what="MetricsAvailable=False",
    )
    blind_s = time.monotonic() - t0
    print(f"MetricsAvailable=False {blind_s:.2f} s after Prometheus stopped (decision interval {interval} s)")
    assert blind_s <= 2 * interval + 0.25, f"took {blind_s:.2f} s"
    assert cond["reason"] == "PrometheusUnreachable", cond
    assert decision(kube, "auto")["reason"] == "MetricsUnavailable"

    # status writes keep succeeding: observed moves on, and shows the values as unknown, not stale
    first = get_isvc(kube, "auto")["status"]["observed"]
    for _ in range(5):  # the count holds while blind, through the load step
        st = get_isvc(kube, "auto")["status"]
        assert st["desiredReplicas"] == held
        assert len(replica_pods(kube, "auto")) == held
        time.sleep(1)
    later = st["observed"]
    assert later["time"] > first["time"], (first, later)
    assert not {"qps", "ttftP95Ms", "itlP95Ms", "queue"} & set(later), later

    # and a kubectl scale is honoured at once while Prometheus is gone
    t1 = time.monotonic()
    kube.kubectl("scale", "eis/auto", "--replicas=4")
    eventually(lambda: len(replica_pods(kube, "auto")) == 4, 5, 0.05, what="4 replica pods")
    created_s = time.monotonic() - t1
    eventually(
        lambda: get_isvc(kube, "auto")["status"].get("readyReplicas") == 4, 15, what="4 ready while blind"
    )
    print(f"kubectl scale 2 -> 4 while blind: 4 pods after {created_s:.2f} s")
    after = stack.op.log.read_text(errors="replace").splitlines()[log_lines:]
    errors = [line for line in after if " ERROR " in line or "UnprocessableEntity" in line]
    assert not errors, errors[:5]
