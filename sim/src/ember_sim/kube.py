"""Watches one InferenceService's replica pods (the only module that talks to the Kubernetes API).

A background thread lists the pods, then watches from the list's resourceVersion, and relists
when the watch expires (410 Gone) or fails; a bounded ``timeout_seconds`` on every watch keeps a
silently dead connection from freezing the view. The simulation loop only reads ``snapshot()``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ember_sim.membership import PodView, label_selector, pod_view

log = logging.getLogger(__name__)


class KubePodWatcher:
    def __init__(
        self,
        kubeconfig: Path | None,
        namespace: str,
        inferenceservice: str,
        watch_timeout_s: int = 30,
        api: Any = None,
    ) -> None:
        self.namespace = namespace
        self.selector = label_selector(inferenceservice)
        self.watch_timeout_s = watch_timeout_s
        # `api` lets tests pass a stand-in; otherwise a client of its own, never the global config
        self._api = api or client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self._pods: dict[str, PodView] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    def start(self) -> KubePodWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, PodView]:
        with self._lock:
            return dict(self._pods)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch(self._relist())
            except ApiException as exc:
                if exc.status != 410:  # 410: our resourceVersion is too old; relist at once
                    log.warning("pod watch failed: %s", exc.reason)
                    self._stop.wait(1.0)
            except Exception as exc:  # the API server restarting must not kill the simulator
                log.warning("pod watch failed: %s", exc)
                self._stop.wait(1.0)

    def _relist(self) -> str:
        pods = self._api.list_namespaced_pod(self.namespace, label_selector=self.selector)
        views = [pod_view(p) for p in pods.items]
        with self._lock:
            self._pods = {v.name: v for v in views}
        self.synced.set()
        return str(pods.metadata.resource_version) if pods.metadata is not None else ""

    def _watch(self, resource_version: str) -> None:
        w = watch.Watch()
        stream = w.stream(
            self._api.list_namespaced_pod, self.namespace, label_selector=self.selector,
            resource_version=resource_version, timeout_seconds=self.watch_timeout_s,
        )  # fmt: skip
        for event in stream:
            if self._stop.is_set():
                w.stop()
                return
            self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        kind, pod = event["type"], event["object"]
        if kind == "ERROR":
            code = pod.get("code") if isinstance(pod, dict) else getattr(pod, "code", None)
            raise ApiException(status=code or 410, reason="watch error event")
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(pod.metadata.name, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._pods[pod.metadata.name] = pod_view(pod)
