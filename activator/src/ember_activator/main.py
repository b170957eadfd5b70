"""`ember-activator`: settings, watches, hold queue, demand push and the proxy, wired once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import textwrap
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

from aiohttp import web
from ember.telemetry import logs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ember_activator import kube
from ember_activator.catalog import Catalog, Key, address_map, service_info, slice_route
from ember_activator.config import Settings
from ember_activator.hold import Hold
from ember_activator.metrics import Metrics
from ember_activator.proxy import Proxy

log = logging.getLogger("ember.activator")


class Activator:
    def __init__(self, settings: Settings, api: Any) -> None:
        self.s, self.api = settings, api
        self.metrics = Metrics.create()
        self.catalog = Catalog(overrides_only=bool(settings.address_map_file))
        self.demand = kube.DemandPusher(api, settings.identity, settings.demand_refresh_seconds)
        self.hold = Hold(settings.max_held_per_service, settings.herd_limit)
        self.proxy = Proxy(settings, self.catalog, self.hold, self.metrics, push=self.demand.update)
        self.stop = threading.Event()
        self.watches: list[kube.Watch] = []
        self._map_mtime: float | None = None

    # ---- watch events (on the loop) -----------------------------------------------------------

    def on_reset(self, kind: str, items: list[dict[str, Any]]) -> None:
        if kind == "isvc":
            self.catalog.services = {_key(o): service_info(o) for o in items}
        elif kind == "service":
            self.catalog.set_addresses(items)
            return
        else:
            self.catalog.routes = {r[0]: (r[1], r[2]) for o in items if (r := slice_route(o)) is not None}
        self._sync_all()

    def on_isvc(self, type_: str, obj: dict[str, Any]) -> None:
        if type_ == "DELETED":
            self.catalog.services.pop(_key(obj), None)
        else:
            self.catalog.services[_key(obj)] = service_info(obj)

    def on_service(self, type_: str, obj: dict[str, Any]) -> None:
        if type_ == "DELETED":
            self.catalog.remove_service(obj)
        else:
            self.catalog.add_service(obj)

    def on_slice(self, type_: str, obj: dict[str, Any]) -> None:
        r = slice_route(obj)
        if r is None:
            return
        if type_ == "DELETED":
            self.catalog.routes.pop(r[0], None)
        else:
            self.catalog.routes[r[0]] = (r[1], r[2])
        self.hold.set_replicas(r[0], self.catalog.replicas(r[0]))

    def _sync_all(self) -> None:
        for key in set(self.catalog.routes) | set(self.catalog.services):
            self.hold.set_replicas(key, self.catalog.replicas(key))

    async def _watch_address_map(self) -> None:
        """Local clusters without a pod network: where each simulated replica listens (config.py)."""
        assert self.s.address_map_file
        path = Path(self.s.address_map_file)
        while True:
            try:
                mtime = path.stat().st_mtime
                if mtime != self._map_mtime:
                    self._map_mtime = mtime
                    self.catalog.overrides = address_map(path.read_text())
                    self._sync_all()
            except OSError:
                pass
            await asyncio.sleep(0.1)

    # ---- the process --------------------------------------------------------------------------

    def admin_app(self) -> web.Application:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            ok = bool(self.watches) and all(w.synced.is_set() for w in self.watches)
            return web.Response(text="ok" if ok else "syncing", status=200 if ok else 503)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        return app

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.watches = kube.watches(
            self.api,
            self.s.namespaces,
            loop,
            self.on_isvc,
            self.on_slice,
            self.on_reset,
            self.stop,
            on_service=self.on_service,
        )
        for w in self.watches:
            w.start()
        bg = [asyncio.create_task(self.demand.refresh_forever())]
        if self.s.address_map_file:
            bg.append(asyncio.create_task(self._watch_address_map()))
        # handler_cancellation: a client that disconnects cancels its handler, which frees its slot
        runner = web.AppRunner(self.proxy.app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", self.s.port).start()
        admin = web.AppRunner(self.admin_app(), access_log=None)
        await admin.setup()
        if self.s.metrics_port:
            await web.TCPSite(admin, "0.0.0.0", self.s.metrics_port).start()
        log.info("activator listening", extra={"port": self.s.port, "settings": self.s.model_dump()})
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        self.stop.set()
        for t in bg:
            t.cancel()
        await runner.cleanup()
        await admin.cleanup()


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def parser() -> argparse.ArgumentParser:
    """No arguments but --help (which lists the settings) and --version: configured by environment."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    env = ["environment:"]
    for name, f in Settings.model_fields.items():
        env.append(f"  {prefix}{name.upper()} (default: {f.get_default(call_default_factory=True)!r})")
        env += textwrap.wrap(
            " ".join((f.description or "").split()), 96, initial_indent=" " * 6, subsequent_indent=" " * 6
        )
    about = (
        "The Ember activator: holds requests for InferenceServices that have no serving replica, "
        "pushes their demand to the operator and releases them once a replica serves."
    )
    p = argparse.ArgumentParser(
        prog="ember-activator",
        description=textwrap.fill(about, 100),
        epilog="\n".join(env),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version('ember-activator')}")
    return p


def main(argv: list[str] | None = None) -> None:
    parser().parse_args(argv)  # --help, --version; anything else is refused
    settings = Settings()
    logs.configure(os.environ.get("EMBER_LOG_FORMAT", "json"))
    asyncio.run(Activator(settings, kube.api_client(settings.kubeconfig)).run())


if __name__ == "__main__":
    main()
