"""`ember-operator`: build settings, clients and metrics once, register handlers, run kopf."""

from __future__ import annotations

import argparse
import asyncio
import logging
import textwrap
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

import kopf
from prometheus_client import start_http_server

from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.registry import register
from ember.kube import leader
from ember.kube.client import API_CONCURRENCY, KubeAPI, api_client
from ember.observe.bulk import BulkQueries
from ember.observe.prometheus import Prometheus
from ember.telemetry import logs
from ember.telemetry.metrics import Metrics


def build(settings: Settings, identity: str = "") -> tuple[kopf.OperatorRegistry, OperatorContext]:
    prom = Prometheus(settings.prometheus_url) if settings.prometheus_url else None
    ctx = OperatorContext(
        settings=settings,
        api=KubeAPI(api_client(settings.kubeconfig, settings.api_timeout_seconds)),
        metrics=Metrics.create(),
        prometheus=prom,
        bulk=BulkQueries(prom.query, settings.namespaces) if prom and settings.bulk_metrics else None,
        identity=identity,
    )
    reg = kopf.OperatorRegistry()
    register(reg, ctx)
    return reg, ctx


def use_api_executor() -> ThreadPoolExecutor:
    """The running loop's default executor (asyncio.to_thread: every Kubernetes API call) with
    kube.client.API_CONCURRENCY threads, not Python's min(32, cores + 4)."""
    pool = ThreadPoolExecutor(max_workers=API_CONCURRENCY, thread_name_prefix="ember-api")
    asyncio.get_running_loop().set_default_executor(pool)
    return pool


def parser() -> argparse.ArgumentParser:
    """The operator takes no arguments: the chart configures it by environment variables, listed here."""
    env = ["environment (EMBER_*):"]
    for name, f in Settings.model_fields.items():
        env.append(f"  EMBER_{name.upper()} (default: {f.get_default(call_default_factory=True)!r})")
        env += textwrap.wrap(
            " ".join((f.description or "").split()), 96, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    about = (
        "The Ember operator: reconciles InferenceServices (serving.ember.dev/v1alpha1) into replica pods, "
        "a Service and warm-buffer placeholders, with the credentials it runs with (in-cluster, or "
        "EMBER_KUBECONFIG). It takes no arguments; it is configured by environment variables."
    )
    p = argparse.ArgumentParser(
        prog="ember-operator",
        description=textwrap.fill(about, 100),
        epilog="\n".join(env),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version('ember')}")
    return p


def main(argv: list[str] | None = None) -> None:
    parser().parse_args(argv)  # --help, --version; anything else is refused
    settings = Settings()
    logs.configure(settings.log_format)
    reg, ctx = build(settings, leader.new_identity())
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0", registry=ctx.metrics.registry)
    logging.getLogger("ember").info("starting", extra={"id": ctx.identity, "settings": settings.model_dump()})

    # kopf reads an empty namespace list as "watch nothing", and a peering name as "peering is
    # mandatory": pass each only when it is set.
    optional: dict[str, Any] = {}
    if settings.namespaces:
        optional["namespaces"] = settings.namespaces
    if settings.peering:
        optional["peering_name"] = settings.peering

    async def operate(stop_flag: asyncio.Event | None = None) -> None:
        use_api_executor()
        await kopf.operator(
            registry=reg,
            clusterwide=not settings.namespaces,
            standalone=settings.peering is None,
            **optional,
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
        ctx.identity,
        settings.leader_election_lease_duration_seconds,
    )
    asyncio.run(elector.lead(operate, settings.health_port))


if __name__ == "__main__":
    main()
