"""Every Event names the process that posted it: with leader election, the Lease holder's identity, so
that of two operator replicas the one that decided can be told (tests/integration/operator/
test_failover.py checks it on the real control plane)."""

from __future__ import annotations

import kopf
from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.registry import register
from ember.kube import leader
from ember.kube.client import KubeAPI
from ember.telemetry.metrics import Metrics
from kubernetes import client


def configured(identity: str) -> kopf.OperatorSettings:
    ctx = OperatorContext(
        settings=Settings(), api=KubeAPI(client.ApiClient()), metrics=Metrics.create(), identity=identity
    )
    reg = kopf.OperatorRegistry()
    register(reg, ctx)
    (startup,) = [h for h in reg._activities.get_all_handlers() if h.id.endswith(".configure")]
    settings = kopf.OperatorSettings()
    startup.fn(settings=settings)
    return settings


def test_events_carry_the_processs_identity_as_reporting_instance() -> None:
    identity = leader.new_identity()
    assert configured(identity).posting.reporting_instance == identity
    # an identity fits the Event's reportingInstance (at most 128 characters, events.k8s.io validation)
    assert len(identity) <= 128 and identity != leader.new_identity()


def test_without_an_identity_kopfs_default_stays() -> None:
    assert configured("").posting.reporting_instance == kopf.OperatorSettings().posting.reporting_instance
