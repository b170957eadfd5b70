"""The activator's only Kubernetes I/O: three watches (InferenceServices, Ember-owned EndpointSlices,
the Services Ember made: their cluster IPs name the service a request is for) and the demand patch. Reads are list + watch in a thread each (the official client is synchronous),
relisting on 410 Gone or any failure, with a bounded watch timeout so a silently dead connection
cannot freeze the view. Events reach the event loop through `call_soon_threadsafe`.

RBAC it needs: get/list/watch inferenceservices, list/watch endpointslices and services, patch
inferenceservices (the demand annotation, a JSON merge patch of one key). Nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from ember.api import demand
from ember.api import labels as L
from ember.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("ember.activator.kube")
Obj = dict[str, Any]
Key = tuple[str, str]


def api_client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    cfg = client.Configuration()
    config.load_incluster_config(client_configuration=cfg)
    return client.ApiClient(cfg)


class Watch:
    """list + watch of one collection; `reset(items)` after each list, `event(type, obj)` after."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        kwargs: dict[str, Any],
        reset: Callable[[list[Obj]], None],
        event: Callable[[str, Obj], None],
        stop: threading.Event,
        timeout_s: int = 30,
    ) -> None:
        self.name, self.list_fn, self.kwargs = name, list_fn, kwargs
        self.reset, self.event, self.stop, self.timeout_s = reset, event, stop, timeout_s
        self.synced = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> Watch:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                raw = self.list_fn(**self.kwargs, _preload_content=False)
                data = json.loads(raw.data)
                self.reset(list(data.get("items") or []))
                self.synced.set()
                self._watch(str(data.get("metadata", {}).get("resourceVersion", "")))
            except ApiException as e:
                if e.status != 410:
                    log.warning("watch %s failed: %s %s", self.name, e.status, e.reason)
                    self.stop.wait(1.0)
            except Exception as e:  # the API server restarting must not end the watch
                log.warning("watch %s failed: %s", self.name, e)
                self.stop.wait(1.0)

    def _watch(self, rv: str) -> None:
        w = watch.Watch()
        for ev in w.stream(self.list_fn, **self.kwargs, resource_version=rv, timeout_seconds=self.timeout_s):
            if self.stop.is_set():
                w.stop()
                return
            if ev["type"] == "ERROR":
                raise ApiException(status=(ev.get("raw_object") or {}).get("code", 410), reason="watch error")
            self.event(ev["type"], ev["raw_object"])


def watches(
    api: client.ApiClient,
    namespaces: list[str],
    loop: asyncio.AbstractEventLoop,
    on_isvc: Callable[[str, Obj], None],
    on_slice: Callable[[str, Obj], None],
    on_reset: Callable[[str, list[Obj]], None],
    stop: threading.Event,
    on_service: Callable[[str, Obj], None] | None = None,
) -> list[Watch]:
    """One watch per collection (and per namespace when namespaced); callbacks run on `loop`."""
    custom, disc, core = client.CustomObjectsApi(api), client.DiscoveryV1Api(api), client.CoreV1Api(api)
    handlers = {"isvc": on_isvc, "slice": on_slice, "service": on_service or (lambda t, o: None)}
    svc_selector = f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE},{L.ISVC}"

    def bridge(kind: str) -> tuple[Callable[[list[Obj]], None], Callable[[str, Obj], None]]:
        handler = handlers[kind]

        def reset(items: list[Obj]) -> None:
            loop.call_soon_threadsafe(on_reset, kind, items)

        def event(t: str, o: Obj) -> None:
            loop.call_soon_threadsafe(handler, t, o)

        return reset, event

    out = []
    scopes: list[str | None] = list(namespaces) or [None]
    for ns in scopes:
        isvc_fn: Callable[..., Any]
        sl_fn: Callable[..., Any]
        svc_fn: Callable[..., Any]
        if ns is None:
            isvc_fn, isvc_kw = (
                custom.list_cluster_custom_object,
                {"group": GROUP, "version": VERSION, "plural": PLURAL},
            )
            sl_fn, sl_kw = disc.list_endpoint_slice_for_all_namespaces, {"label_selector": L.ROUTE}
            svc_fn, svc_kw = core.list_service_for_all_namespaces, {"label_selector": svc_selector}
        else:
            isvc_fn = custom.list_namespaced_custom_object
            isvc_kw = {"group": GROUP, "version": VERSION, "namespace": ns, "plural": PLURAL}
            sl_fn, sl_kw = disc.list_namespaced_endpoint_slice, {"namespace": ns, "label_selector": L.ROUTE}
            svc_fn, svc_kw = core.list_namespaced_service, {"namespace": ns, "label_selector": svc_selector}
        out.append(Watch(f"isvc-{ns or 'all'}", isvc_fn, isvc_kw, *bridge("isvc"), stop))
        out.append(Watch(f"slices-{ns or 'all'}", sl_fn, sl_kw, *bridge("slice"), stop))
        if on_service is not None:
            out.append(Watch(f"services-{ns or 'all'}", svc_fn, svc_kw, *bridge("service"), stop))
    return out


class DemandPusher:
    """Writes this replica's held count into the InferenceService's demand annotation.

    A change is written at once; changes that arrive while a write is in flight are coalesced into
    the next write. While the count is above 0 it is rewritten every `refresh_s` so the operator
    keeps seeing it fresh (api/demand.py). A failed write is retried after a second.
    """

    def __init__(self, api: client.ApiClient, identity: str, refresh_s: float) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.key, self.refresh_s = demand.key(identity), refresh_s
        self.want: dict[Key, int] = {}
        self.written: dict[Key, int] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}

    def update(self, key: Key, held: int) -> None:
        self.want[key] = held
        task = self.tasks.get(key)
        if task is None or task.done():
            self.tasks[key] = asyncio.get_running_loop().create_task(self._flush(key))

    async def _flush(self, key: Key) -> None:
        while self.written.get(key) != (n := self.want.get(key, 0)):
            try:
                await asyncio.to_thread(self._patch, key, n)
                self.written[key] = n
            except Exception as e:
                log.warning(
                    "demand patch failed", extra={"object": f"{key[0]}/{key[1]}", "error": str(e)[:300]}
                )
                await asyncio.sleep(1.0)
        if self.want.get(key, 0) == 0:
            self.want.pop(key, None)

    def _patch(self, key: Key, held: int) -> None:
        body = {"metadata": {"annotations": {self.key: demand.render(held)}}}
        try:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, key[0], PLURAL, key[1], body)
        except ApiException as e:
            if e.status != 404:  # the InferenceService was deleted: nothing to tell
                raise

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            for key, n in list(self.want.items()):
                if n > 0:
                    self.written.pop(key, None)  # forces a rewrite with a new time
                    self.update(key, n)
