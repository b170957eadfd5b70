"""The only code that talks to the Kubernetes API (import-linter enforces it).

Every call retries transient failures (409 Conflict on updates, 429, 5xx, dropped connections) with
exponential backoff and jitter (tenacity), and treats the expected idempotency answers as success:
AlreadyExists on create, NotFound on delete.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import tenacity
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ember.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION

log = logging.getLogger("ember.kube")
T = TypeVar("T")
RETRYABLE_STATUS = {409, 429, 500, 502, 503, 504}


def _retryable(e: BaseException) -> bool:
    if isinstance(e, ApiException):
        return e.status in RETRYABLE_STATUS
    return isinstance(e, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def with_retries(
    attempts: int = 6, max_wait_s: float = 5.0
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return tenacity.retry(
        retry=tenacity.retry_if_exception(_retryable),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=max_wait_s),
        stop=tenacity.stop_after_attempt(attempts),
        before_sleep=lambda rs: log.warning(
            "kubernetes API call failed, retrying",
            extra={"attempt": rs.attempt_number, "error": str(rs.outcome.exception() if rs.outcome else "")},
        ),
        reraise=True,
    )


# Kubernetes API calls in flight at once: every call is blocking (the official client) and runs in the
# event loop's default executor (asyncio.to_thread), which main() sizes to this, with as many pooled
# connections. Python's default executor has min(32, cores + 4) threads: 6 on 2 cores, and at 500
# InferenceServices (one status write per service per decision interval, 100/s) the calls queued
# behind each other: a scale-up's pod create waited 27 s (median) behind status writes, and a
# restarted operator took 354 s to converge (bench/scale, docs/benchmarks.md).
API_CONCURRENCY = 32


def api_client(kubeconfig: str | Path | None = None, timeout_s: float = 10.0) -> client.ApiClient:
    cfg = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
    cfg.retries = 0  # tenacity retries, with backoff, at the call level
    cfg.connection_pool_maxsize = API_CONCURRENCY  # one kept-alive connection per concurrent call
    api = client.ApiClient(cfg)
    api.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(total=timeout_s)
    return api


def credentials(kubeconfig: str | Path) -> dict[str, Any]:
    """Server, CA, client cert/key or token from a kubeconfig, for kopf's own connection."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    keys = cfg.api_key or {}
    bearer = keys.get("BearerToken") or keys.get(
        "authorization", ""
    )  # the client stores tokens as BearerToken
    return {
        "server": cfg.host,
        "ca_path": cfg.ssl_ca_cert,
        "insecure": not cfg.verify_ssl,
        "certificate_path": cfg.cert_file,
        "private_key_path": cfg.key_file,
        "token": bearer.removeprefix("Bearer ") or None,
    }


class KubeAPI:
    """Typed verbs Ember uses, over one ApiClient (the seam where tests inject faults)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.scheduling = client.SchedulingV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    @with_retries()
    def create_pod(self, manifest: dict[str, Any]) -> bool:
        """Create; False if it already exists (idempotent)."""
        try:
            self.core.create_namespaced_pod(manifest["metadata"]["namespace"], manifest)
            return True
        except ApiException as e:
            if e.status == 409 and "AlreadyExists" in (e.body or ""):
                return False
            raise

    @with_retries()
    def delete_pod(self, namespace: str, name: str) -> bool:
        try:
            self.core.delete_namespaced_pod(name, namespace)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    @with_retries()
    def patch_pod_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> bool:
        """Strategic merge patch of labels and annotations; a None value removes the key."""
        try:
            self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"labels": labels, "annotations": annotations}}
            )
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    @with_retries()
    def create_secret(self, manifest: dict[str, Any]) -> bool:
        """Create; False if it already exists (an existing Secret is never overwritten)."""
        try:
            self.core.create_namespaced_secret(manifest["metadata"]["namespace"], manifest)
            return True
        except ApiException as e:
            if e.status == 409 and "AlreadyExists" in (e.body or ""):
                return False
            raise

    @with_retries()
    def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None if the Secret or the key does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return None if raw is None else base64.b64decode(raw).decode()

    @with_retries()
    def data_keys(self, kind: str, namespace: str, name: str) -> set[str] | None:
        """The keys of a Secret or ConfigMap (never its values: only names leave this method); None if
        it does not exist. Pod shaping checks the references of a spec with it (kube/shaping.py). A
        PersistentVolumeClaim (the model cache's) has no keys: an empty set when it exists."""
        try:
            if kind == "PersistentVolumeClaim":
                self.core.read_namespaced_persistent_volume_claim(name, namespace)
                return set()
            if kind == "Secret":
                s = self.core.read_namespaced_secret(name, namespace)
                return set(s.data or {})
            cm = self.core.read_namespaced_config_map(name, namespace)
            return set(cm.data or {}) | set(cm.binary_data or {})
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    @with_retries()
    def ensure_service(self, manifest: dict[str, Any]) -> bool:
        """Create the Service, or patch selector and ports back if someone changed them."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            self.core.create_namespaced_service(ns, manifest)
            return True
        except ApiException as e:
            if e.status != 409 or "AlreadyExists" not in (e.body or ""):
                raise
        live = self.core.read_namespaced_service(name, ns)
        want = manifest["spec"]
        if live.spec.selector != want.get("selector") or len(live.spec.ports or []) != len(want["ports"]):
            # null removes a selector (a Service made before routing moved to Ember's EndpointSlice)
            self.core.patch_namespaced_service(name, ns, {"spec": {"selector": None, **want}})
        return False

    @with_retries()
    def apply_endpoint_slice(self, manifest: dict[str, Any], manager: str) -> None:
        """Server-side apply (create or update) of an Ember-owned EndpointSlice (kube/routing.py)."""
        meta = manifest["metadata"]
        self.discovery.patch_namespaced_endpoint_slice(
            meta["name"],
            meta["namespace"],
            manifest,
            field_manager=manager,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    @with_retries()
    def list_endpoint_slices(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items = self.discovery.list_namespaced_endpoint_slice(namespace, label_selector=selector).items
        return [self.api.sanitize_for_serialization(s) for s in items]

    @with_retries()
    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}
            )
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                raise

    @with_retries()
    def apply_status(self, namespace: str, name: str, status: dict[str, Any], manager: str) -> None:
        """Server-side apply of the status fields `manager` owns. Several writers (replicas, autoscaler,
        warm buffer) share status; `conditions` is a list-map keyed by type, so each owns its entries
        and none overwrites another's, whatever its view of the object."""
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                field_manager=manager,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                raise

    @with_retries()
    def list_pods(self, namespace: str, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    @with_retries()
    def priority_class_exists(self, name: str) -> bool:
        try:
            self.scheduling.read_priority_class(name)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise
