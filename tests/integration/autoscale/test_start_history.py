"""Measured start times (issue 16) on real parts: the real operator and control plane (kwok nodes), a
real Prometheus scraping a replica's supervisor metrics (the supervisor's own SupervisorMetrics
registry, written the way its start-up writes it, served per pod with the namespace, pod and
inferenceservice labels the chart's PodMonitor attaches). After the replica's start the service's
status carries the measured time and the decision plans with it (timeToReadySeconds: also the
activator's Retry-After and activation ETA) instead of the 90 s default; a wake is measured too;
with Prometheus gone and the operator restarted, the history and the ETA stay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ember.api.v1alpha1 import GROUP
from ember_cluster import LocalCluster, Prometheus
from ember_cluster.procs import free_port
from ember_supervisor.metrics import SupervisorMetrics
from prometheus_client import start_http_server

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import Operator, get_isvc, replica_pods

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
NAME = "hist"
MEASURED_S = 42.0  # far from the 90 s default


@pytest.fixture
def crds(cluster: LocalCluster) -> None:
    install_crds(cluster)


def manifest() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "hf://org/model"},
            "resources": {"gpu": 1, "cpu": "1", "memory": "1Gi"},
            "scaling": {"minReplicas": 1, "maxReplicas": 2, "decisionIntervalSeconds": 1},
            "podMetadata": {"annotations": {"sim.ember.dev/ready-after": "300ms"}},
        },
    }


def status(kube: Kube) -> dict[str, Any]:
    return get_isvc(kube, NAME).get("status") or {}


def ttr(kube: Kube) -> float | None:
    return ((status(kube).get("lastDecision") or {}).get("inputs") or {}).get("timeToReadySeconds")


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[tuple[Prometheus, Path]]:
    sd = tmp_path / "supervisors.json"
    sd.write_text("[]")
    p = Prometheus(tmp_path / "prom", file_sd={"supervisor": [sd]}, scrape_interval_s=1.0).start()
    yield p, sd
    p.stop()


def test_a_replicas_measured_start_becomes_the_services_eta_and_survives_outage_and_restart(
    cluster: LocalCluster, kube: Kube, crds: None, prom: tuple[Prometheus, Path], tmp_path: Path
) -> None:
    p, sd = prom
    op = Operator(
        cluster, tmp_path / "operator.log", EMBER_PROMETHEUS_URL=p.url, EMBER_COLD_START_SECONDS="90"
    )
    op.start()
    try:
        op.wait_healthy()
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest()))
        eventually(lambda: len(replica_pods(kube, NAME)) == 1, 60, what="the replica pod")
        pod = replica_pods(kube, NAME)[0]
        eventually(lambda: ttr(kube) == 90.0, 30, what="a first decision with the default cold ETA")
        assert status(kube).get("startHistory", {}).get("cold", []) == []

        # the pod's supervisor finishes its start the way startup._finish records it: the path that
        # happened (counter, first seen at 1) and the total seconds (gauge)
        sup = SupervisorMetrics()
        sup.start_path.labels("cold").inc()
        sup.phase_seconds.labels("total").set(MEASURED_S)
        port = free_port()
        server, _ = start_http_server(port, addr="127.0.0.1", registry=sup.registry)
        labels = {"namespace": kube.ns, "pod": pod.metadata.name, "inferenceservice": NAME}
        sd.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}]))
        try:
            eventually(lambda: ttr(kube) == MEASURED_S, 60, what=f"the decision plans with {MEASURED_S} s")
            cold = status(kube)["startHistory"]["cold"]
            created = pod.metadata.creation_timestamp
            assert isinstance(created, datetime)
            assert cold == [{"pod": pod.metadata.name, "at": created.timestamp(), "seconds": MEASURED_S}]
            assert status(kube)["lastDecision"]["startPath"] == "cold"

            time.sleep(3)  # more passes read the same series: counted once
            assert status(kube)["startHistory"]["cold"] == cold

            # a wake of that pod, as the supervisor's POST /wake records it (seconds, then its end)
            woke_at = time.time()
            sup.last_wake_seconds.set(0.7)
            sup.last_wake_timestamp.set(woke_at)
            eventually(lambda: status(kube).get("startHistory", {}).get("wake"), 30, what="the wake measured")
            wake = status(kube)["startHistory"]["wake"]
            assert wake == [{"pod": pod.metadata.name, "at": round(woke_at, 3), "seconds": 0.7}]
        finally:
            server.shutdown()

        # Prometheus goes away, then the operator restarts: nothing is lost, the ETA stays measured
        p.stop()
        time.sleep(3)
        assert status(kube)["startHistory"]["cold"] == cold and status(kube)["startHistory"]["wake"] == wake
        op.stop()
        op = Operator(
            cluster, tmp_path / "operator2.log", EMBER_PROMETHEUS_URL=p.url, EMBER_COLD_START_SECONDS="90"
        )
        op.start()
        op.wait_healthy()
        before = (status(kube).get("observed") or {}).get("time")
        eventually(
            lambda: (status(kube).get("observed") or {}).get("time") != before,
            30,
            what="a decision after the restart",
        )
        assert ttr(kube) == MEASURED_S
        assert status(kube)["startHistory"]["cold"] == cold
        assert status(kube)["startHistory"]["wake"] == wake
    finally:
        op.stop()
