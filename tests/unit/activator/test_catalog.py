"""Which InferenceService a request is for (catalog.resolve): the header, every DNS form of the
Service's name, and its cluster IP (the kind tier's step 6 sent a request to the Service's cluster IP
and the activator answered 404 "no InferenceService for host '10.96.184.203'")."""

from __future__ import annotations

from typing import Any

import pytest
from ember.api import labels as L
from ember_activator.catalog import Catalog, ServiceInfo, hostname, service_addresses

K = ("team-a", "chat")


def svc(name: str, ns: str, ips: list[str], *, ember: bool = True) -> dict[str, Any]:
    labels = {L.ISVC: name, L.MANAGED_BY: L.MANAGED_BY_VALUE} if ember else {"app": name}
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"clusterIP": ips[0] if ips else "None", "clusterIPs": ips or ["None"]},
    }


def catalog() -> Catalog:
    c = Catalog(services={K: ServiceInfo(), ("team-b", "chat"): ServiceInfo()})
    c.set_addresses(
        [
            svc("chat", "team-a", ["10.96.184.203", "fd00:10:96::1c"]),
            svc("x", "team-a", ["10.96.0.9"], ember=False),
        ]
    )
    return c


@pytest.mark.parametrize(
    "host",
    ["10.96.184.203", "10.96.184.203:80", "[fd00:10:96::1c]:80", "[fd00:10:96:0::1c]", "fd00:10:96::1c"],
)
def test_the_services_cluster_ip_names_it(host: str) -> None:
    assert catalog().resolve(host, None) == K


@pytest.mark.parametrize(
    "host",
    ["chat.team-a", "chat.team-a:80", "chat.team-a.svc", "chat.team-a.svc.cluster.local.", "CHAT.team-a"],
)
def test_every_dns_form_names_it(host: str) -> None:
    assert catalog().resolve(host, None) == K


def test_an_unknown_ip_a_foreign_service_and_an_ambiguous_short_name_name_nothing() -> None:
    c = catalog()
    assert c.resolve("10.96.0.1", None) is None
    assert c.resolve("10.96.0.9", None) is None  # not a Service Ember made
    assert c.resolve("chat", None) is None  # two InferenceServices are called chat


def test_the_header_wins_and_a_changed_or_deleted_service_moves_its_ips() -> None:
    c = catalog()
    assert c.resolve("10.96.184.203", "team-b/chat") == ("team-b", "chat")
    c.add_service(svc("chat", "team-a", ["10.96.7.7"]))  # recreated with another IP
    assert c.resolve("10.96.184.203", None) is None and c.resolve("10.96.7.7", None) == K
    c.remove_service(svc("chat", "team-a", []))
    assert c.resolve("10.96.7.7", None) is None


def test_headless_and_foreign_services_carry_no_addresses() -> None:
    assert service_addresses(svc("chat", "team-a", [])) == (K, [])
    assert service_addresses(svc("x", "team-a", ["10.0.0.1"], ember=False)) is None
    assert hostname("Chat.Team-A.:8000") == "chat.team-a"
