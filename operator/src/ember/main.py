"""`ember-operator`: build settings, clients and metrics once, register handlers, run kopf."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import kopf
from prometheus_client import start_http_server

from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.registry import register
from ember.kube import leader
from ember.kube.client import KubeAPI, api_client
from ember.observe.prometheus import Prometheus
from ember.telemetry import logs
from ember.telemetry.metrics import Metrics


def build(settings: Settings) -> tuple[kopf.OperatorRegistry, OperatorContext]:
    ctx = OperatorContext(
        settings=settings,
        api=KubeAPI(api_client(settings.kubeconfig, settings.api_timeout_seconds)),
        metrics=Metrics.create(),
        prometheus=Prometheus(settings.prometheus_url) if settings.prometheus_url else None,
    )
    reg = kopf.OperatorRegistry()
    register(reg, ctx)
    return reg, ctx


def main() -> None:
    settings = Settings()
    logs.configure(settings.log_format)
    reg, ctx = build(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0", registry=ctx.metrics.registry)
    logging.getLogger("ember").info("starting", extra={"settings": settings.model_dump()})

    def operate(stop_flag: asyncio.Event | None = None) -> Coroutine[Any, Any, None]:
        return kopf.operator(
            registry=reg,
            # kopf reads an empty namespace list as "watch nothing": pass it only when set
            clusterwide=not settings.namespaces,
            **({"namespaces": settings.namespaces} if settings.namespaces else {}),
            # a peering name makes kopf's peering mandatory: give it only when peering is wanted
            standalone=settings.peering is None,
            **({"peering_name": settings.peering} if settings.peering else {}),
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
            if settings.health_port
            else None,
            stop_flag=stop_flag,
        )

    if not settings.leader_election:
        asyncio.run(operate())
        return
    elector = leader.LeaseElector(
        ctx.api.api,
        settings.leader_election_namespace or leader.default_namespace(),
        settings.leader_election_lease_name,
        leader.new_identity(),
        settings.leader_election_lease_duration_seconds,
    )
    asyncio.run(elector.lead(operate, settings.health_port))


if __name__ == "__main__":
    main()
