"""Typed operator settings (environment variables EMBER_*), built once at start-up in main()."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ember.api import labels as L
from ember.api.rules import DNS_SUBDOMAIN, QUALIFIED_NAME
from ember.api.v1alpha1 import PodTemplate
from ember.policy.tenancy import CheckpointAccess, StorageRoot


class Settings(BaseSettings):
    # use_attribute_docstrings: each field's docstring is its description (`ember-operator --help`)
    model_config = SettingsConfigDict(
        env_prefix="EMBER_", env_nested_delimiter="__", use_attribute_docstrings=True
    )

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster (needs cluster-wide RBAC)."""
    kubeconfig: str | None = None
    """Kubeconfig path; unset means in-cluster credentials (then ~/.kube/config)."""
    resync_interval_seconds: float = Field(5.0, gt=0)
    """Each InferenceService is reconciled on every relevant event and at least this often, so drains
    finish and missed events heal. 5 s keeps 1000 objects at 200 cheap, in-memory plans per second."""
    api_timeout_seconds: float = Field(10.0, gt=0)
    """Per-request timeout to the API server; retries with backoff follow (kube/client.py)."""
    prometheus_url: str | None = None
    """Prometheus base URL for the autoscaler and drain (in-flight per replica). None: no metrics."""
    cold_start_seconds: float = Field(90.0, gt=0)
    """Expected time from pod creation to Ready on a cold start (vLLM 8B on H100: ~21 s published,
    plus image and weights on a fresh node): the autoscaler scales ahead by this much. The default
    until a service has measured cold starts (status.startHistory: their median, policy/startpath.py)."""
    restore_seconds: float = Field(10.0, gt=0)
    """Expected time to Ready when a verified checkpoint is restored (see docs/benchmarks-gpu.md); the
    default until a service has measured restores (status.startHistory)."""
    wake_seconds: float = Field(1.0, gt=0)
    """Expected time to Ready when a sleeping replica is woken (vLLM sleep level 1 on an H200: 0.45 s
    to the first token; the CPU stand-in thaws a frozen engine in well under 1 s); the default until a
    service has measured wakes (status.startHistory: their median, policy/startpath.py)."""
    sleep_timeout_seconds: float = Field(60.0, gt=0)
    """How long a supervisor's POST /sleep may take; past it the replica is deleted instead."""
    wake_timeout_seconds: float = Field(30.0, gt=0)
    """How long a supervisor's POST /wake may take; past it the replica is deleted and replaced once
    through the next start path (WakeFallback condition, WakeFailed Event)."""
    supervisor_port: int = Field(8081, ge=1, le=65535)
    """Port of the replica supervisor's HTTP endpoint (POST /checkpoint) inside replica pods."""
    checkpoint_timeout_seconds: float = Field(600.0, gt=0)
    """How long a checkpoint request (dump + canary verify) may take before it counts as failed."""
    supervisor_image: str = Field("", max_length=512)
    """Image whose init container injects Ember's supervisor (and CRIU) into every replica pod, so
    that any vLLM image runs unchanged (the operator image holds the tree at /opt/ember-inject; the
    chart sets the operator's own image by default). Empty: the engine image must bring its own
    `ember-supervisor` (the local CPU replica image does)."""
    model_cache_host_path: str = Field("", max_length=256, pattern=r"^(/[^\s]*)?$")
    """Node directory under which replicas cache hf:// weights, one sub-directory per namespace, shared
    with the warm buffer's prestage (a second replica on a node does not download again). Only in
    namespaces with the checkpoint grant (a hostPath volume). Empty: every start downloads."""
    model_cache_persistent_volume_claim: str = Field("", max_length=253, pattern=f"^({DNS_SUBDOMAIN})?$")
    """Name of a PersistentVolumeClaim that, in each service's own namespace, is mounted read-write as
    the Hugging Face cache of hf:// replicas (and of the warm buffer's prestage where it runs); a claim
    is namespaced, so the cache is per namespace by construction. ReadWriteMany when replicas span
    nodes. A missing claim: Degraded (PersistentVolumeClaimNotFound) and no replica. Exclusive with
    model_cache_host_path."""
    placeholder_image: str = "registry.k8s.io/pause:3.10"
    """Image of warm-buffer placeholder pods: a pause container that only holds the GPUs."""
    metrics_lag_seconds: float = Field(5.0, ge=0)
    """How old a metric may be relative to the events it describes (scrape interval + query): a
    draining replica counts as idle only on metrics taken this long after its drain began."""
    metrics_port: int = Field(8080, ge=0, le=65535)
    """Port of the operator's own /metrics; 0 disables."""
    health_port: int = Field(8081, ge=0, le=65535)
    """Port of kopf's liveness endpoint (/healthz); 0 disables."""
    peering: str | None = None
    """kopf peering name: with several operator replicas only the highest-priority one acts.
    None runs standalone (one replica)."""
    leader_election: bool = False
    """Hold a coordination.k8s.io Lease before acting, so that of several replicas exactly one reconciles
    (kube/leader.py). Off by default: one replica needs no Lease and no Lease RBAC."""
    leader_election_namespace: str | None = None
    """Namespace of the Lease; None: the pod's own namespace (service-account mount), else `default`."""
    leader_election_lease_name: str = Field("ember-operator", min_length=1, max_length=253)
    """Name of the Lease; two Ember installations in one namespace need different names."""
    leader_election_lease_duration_seconds: float = Field(15.0, ge=3)
    """A standby takes over this long after the leader's last renewal; the leader gives up after 2/3 of
    it without a renewal. 15 s as client-go's default: a failover within ~15 s costs at most that long
    without scaling decisions, and shorter leases mean more API writes (one per duration/7.5)."""
    log_format: str = Field("json", pattern="^(json|text)$")
    """json: one JSON object per line (for log pipelines); text: for humans."""
    checkpoint_storage_roots: dict[str, StorageRoot] = Field(
        default_factory=lambda: {"default": StorageRoot(host_path="/var/lib/ember/checkpoints")}
    )
    """Checkpoint storage roots by name (JSON: {"name": {"hostPath": "/dir"} | {"pvc": "claim"}}). Specs
    name a root (spec.checkpoint.storage.root); each service gets <root>/<namespace>/<name>. Only the
    admin chooses node paths and volumes, never a tenant."""
    checkpoint_namespaces: list[str] = Field(default_factory=list)
    """Namespaces whose replicas may get the checkpoint capabilities (SYS_ADMIN, ... and unconfined
    seccomp/AppArmor, kube/builders.py). Elsewhere replicas run under the restricted Pod Security profile
    and checkpointing is refused by condition. Empty: nowhere, unless checkpoint_all_namespaces."""
    checkpoint_all_namespaces: bool = False
    """Allow the checkpoint capabilities in every namespace (a cluster whose tenants are trusted)."""
    bulk_metrics: bool = True
    """Query Prometheus once per decision interval for all services (grouped by their labels) and give
    each service its slice (observe/bulk.py): Prometheus load does not grow with the number of
    services. Off: each service runs its own 7 queries every interval."""
    allow_query_overrides: bool = False
    """Honour spec.scaling.queries (PromQL overrides). Off: an override could read any namespace's series
    back through status, so a spec that sets one gets MetricsAvailable=False (QueryOverridesNotAllowed)."""

    replica_defaults: PodTemplate = Field(default_factory=PodTemplate)
    """Pod shaping for every replica (JSON, the shape of spec.template: {"metadata": {...}, "spec":
    {"tolerations": [...], "nodeSelector": {...}, ...}}), merged under each service's own template
    (kube/shaping.py). Refused at start-up under the same rules as a spec's."""
    gpu_type_label: str = Field(L.GPU_PRODUCT, max_length=317, pattern=f"^({QUALIFIED_NAME})$")
    """Node label resources.gpuType is matched against: nvidia.com/gpu.product, as NVIDIA's GPU
    feature discovery writes it; another key for clusters labelled otherwise."""

    @model_validator(mode="after")
    def _one_model_cache(self) -> Settings:
        if self.model_cache_host_path and self.model_cache_persistent_volume_claim:
            raise ValueError(
                "model_cache_host_path and model_cache_persistent_volume_claim are exclusive: set one"
            )
        return self

    def checkpoint_access(self) -> CheckpointAccess:
        return CheckpointAccess(
            self.checkpoint_storage_roots,
            frozenset(self.checkpoint_namespaces),
            self.checkpoint_all_namespaces,
        )

    activator_service: str | None = Field(
        None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    )
    """`namespace/name` of the activator's Service: while an InferenceService has no replica that
    receives traffic, its Service routes to that Service's endpoints (kube/routing.py). None: no
    activator; such a Service then has no endpoints."""
    demand_ttl_seconds: float = Field(30.0, gt=0)
    """An activator's demand annotation (requests it holds) counts for this long after it was written;
    activators rewrite it every 10 s while they hold requests (api/demand.py)."""
