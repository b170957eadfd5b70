"""The pod-shaping part of the contract: engine variables from Secrets and ConfigMaps, and the subset of
a PodSpec a tenant may set in `spec.template.spec` (kube/shaping.py merges it into Ember's pods).

The subset is what a tenant could put in a pod of its own and nothing that would give it more:
scheduling (tolerations, nodeSelector, affinity, topologySpreadConstraints, runtimeClassName), its own
namespace's objects (serviceAccountName, imagePullSecrets, Secret/ConfigMap/PVC/emptyDir volumes).
hostPath volumes, host namespaces and security contexts are refused at `kubectl apply` with a sentence
(declared here only to be refused by name); Ember's own volume names, mount paths and variables too.
Any other PodSpec field is not in the schema, so the API server refuses it as an unknown field.

Types mirror core/v1's field names, so a tenant's YAML from a Deployment pastes in unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, WithJsonSchema

from ember.api import rules as R
from ember.api.base import Cel, CelRule, EmberModel

Name253 = Annotated[
    str,
    StringConstraints(max_length=253),
    Cel(
        CelRule(
            R.cel_matches("self", R.DNS_SUBDOMAIN),
            "must be an object name: lowercase letters, digits, '-' and '.', e.g. hf-token",
            R.matches(R.DNS_SUBDOMAIN),
        )
    ),
]
_KEY = r"[-._a-zA-Z0-9]+"
DataKey = Annotated[
    str,
    StringConstraints(max_length=253),
    Cel(
        CelRule(
            R.cel_matches("self", _KEY),
            "must be a key of the Secret or ConfigMap: letters, digits, '-', '_' and '.'",
            R.matches(_KEY),
        )
    ),
]
_QUALIFIED_RULE = CelRule(
    f"{R.cel_matches('self', R.QUALIFIED_NAME)} && self.indexOf('/') <= 253",
    "must be a label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' "
    "or '.' (e.g. nvidia.com/gpu.product)",
    lambda k: R.matches(R.QUALIFIED_NAME)(k) and k.find("/") <= 253,
)
LabelKey = Annotated[str, StringConstraints(max_length=317), Cel(_QUALIFIED_RULE)]
_OPAQUE = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})
Opaque = Annotated[dict[str, Any], _OPAQUE]  # declared only so that a rule can refuse it by name

# Ember's own names in the replica pod (kube/builders.py, kube/placeholders.py): a template must not
# reuse them; `ember-` is kept for whatever Ember adds later.
RESERVED_VOLUMES = ("model", "checkpoints", "state", "dshm")
RESERVED_VOLUME_PREFIX = "ember-"
RESERVED_MOUNT_PATHS = ("/var/lib/ember", "/mnt/models", "/dev/shm", "/ember")
HF_TOKEN_ENV = "HF_TOKEN"


def _one_of(fields: tuple[str, ...], what: str, path: str | None = None) -> CelRule:
    cel = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    py = tuple(
        "".join(("_" + c.lower()) if c.isupper() else c for c in f) for f in fields
    )  # camelCase -> snake_case
    return CelRule(
        f"{cel} == 1",
        f"{what}: exactly one of {', '.join(fields)}",
        lambda m: sum(getattr(m, p) is not None for p in py) == 1,
        path or f".{fields[0]}",
    )


# ---------------------------------------------------------------------------------- environment
class KeySelector(EmberModel):
    """One key of a Secret or ConfigMap in the service's namespace."""

    name: Name253
    """Name of the object."""
    key: DataKey
    """Key in its data."""
    optional: bool | None = None
    """true: the variable is left unset when the object or key is missing (else Ember reports it)."""


class EnvVarSource(EmberModel):
    """Where a variable's value comes from."""

    __cel__ = (_one_of(("secretKeyRef", "configMapKeyRef"), "valueFrom takes one source"),)

    secret_key_ref: KeySelector | None = None
    """A key of a Secret in the service's namespace."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap in the service's namespace."""


class ObjectRef(EmberModel):
    """A Secret or ConfigMap in the service's namespace, all of its keys."""

    name: Name253
    """Name of the object."""
    optional: bool | None = None
    """true: nothing is imported when the object is missing (else Ember reports it)."""


class EnvFromSource(EmberModel):
    """Every key of a Secret or ConfigMap as a variable. Ember's own variables (EMBER_*, HF_TOKEN when
    engine.hfTokenSecret is set) always win: Kubernetes lets `env` override `envFrom`."""

    __cel__ = (_one_of(("secretRef", "configMapRef"), "an envFrom entry takes one source"),)

    prefix: Annotated[str, Cel(R.ENV_NAME_RULE)] | None = Field(None, max_length=64)
    """Prefix added to every key."""
    secret_ref: ObjectRef | None = None
    """A Secret in the service's namespace."""
    config_map_ref: ObjectRef | None = None
    """A ConfigMap in the service's namespace."""


# ---------------------------------------------------------------------------------- scheduling
class Toleration(EmberModel):
    """core/v1 Toleration."""

    __cel__ = (
        CelRule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "operator Exists matches any value: leave value out",
            lambda t: t.operator != "Exists" or not t.value,
            ".value",
        ),
    )

    key: LabelKey | None = None
    """Taint key; empty with operator Exists tolerates every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    value: R.LabelValue | None = None
    """Taint value (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect; empty matches all."""
    toleration_seconds: int | None = Field(None, ge=0)
    """NoExecute only: how long the pod stays bound after the taint appears."""


class NodeSelectorRequirement(EmberModel):
    """core/v1 NodeSelectorRequirement."""

    key: LabelKey
    """Node label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the label is matched."""
    values: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list, max_length=64
    )
    """Values (In, NotIn: any of them; Gt, Lt: one integer)."""


class NodeSelectorTerm(EmberModel):
    """core/v1 NodeSelectorTerm: its requirements are ANDed."""

    match_expressions: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=16)
    """Requirements on node labels."""
    match_fields: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=16)
    """Requirements on node fields (metadata.name)."""


class NodeSelector(EmberModel):
    """core/v1 NodeSelector: its terms are ORed."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=16)
    """Terms; a node matching any of them fits."""


class PreferredSchedulingTerm(EmberModel):
    """core/v1 PreferredSchedulingTerm."""

    weight: int = Field(ge=1, le=100)
    """Weight, 1-100."""
    preference: NodeSelectorTerm
    """The term."""


class NodeAffinity(EmberModel):
    """core/v1 NodeAffinity."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pod must land on."""
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16
    )
    """Nodes the scheduler prefers."""


class LabelSelectorRequirement(EmberModel):
    """meta/v1 LabelSelectorRequirement."""

    key: LabelKey
    """Label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label is matched."""
    values: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list, max_length=64
    )
    """Values (In, NotIn)."""


class LabelSelector(EmberModel):
    """meta/v1 LabelSelector."""

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=32
    )
    """Labels that must all match."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=16)
    """Requirements that must all hold."""


class PodAffinityTerm(EmberModel):
    """core/v1 PodAffinityTerm."""

    label_selector: LabelSelector | None = None
    """Pods this term is about."""
    namespaces: list[Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=list, max_length=16
    )
    """Their namespaces (default: the pod's own)."""
    namespace_selector: LabelSelector | None = None
    """Their namespaces, by label."""
    topology_key: LabelKey
    """Node label that defines "together" (e.g. kubernetes.io/hostname)."""


class WeightedPodAffinityTerm(EmberModel):
    """core/v1 WeightedPodAffinityTerm."""

    weight: int = Field(ge=1, le=100)
    """Weight, 1-100."""
    pod_affinity_term: PodAffinityTerm
    """The term."""


class PodAffinity(EmberModel):
    """core/v1 PodAffinity (and PodAntiAffinity, the same shape)."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] = Field(
        default_factory=list, max_length=16
    )
    """Terms that must hold."""
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] = Field(
        default_factory=list, max_length=16
    )
    """Terms the scheduler prefers."""


class Affinity(EmberModel):
    """core/v1 Affinity."""

    node_affinity: NodeAffinity | None = None
    """Which nodes."""
    pod_affinity: PodAffinity | None = None
    """Next to which pods."""
    pod_anti_affinity: PodAffinity | None = None
    """Away from which pods."""


class TopologySpreadConstraint(EmberModel):
    """core/v1 TopologySpreadConstraint."""

    max_skew: int = Field(ge=1)
    """Largest allowed difference of matching pods between domains."""
    topology_key: LabelKey
    """Node label whose values are the domains (e.g. topology.kubernetes.io/zone)."""
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    """What the scheduler does when the skew cannot be kept."""
    label_selector: LabelSelector | None = None
    """Pods counted (e.g. serving.ember.dev/inferenceservice: <name>)."""
    min_domains: int | None = Field(None, ge=1)
    """Domains counted at least."""
    match_label_keys: list[Annotated[str, StringConstraints(max_length=317)]] = Field(
        default_factory=list, max_length=16
    )
    """Label keys of the pod itself added to the selector."""


# ---------------------------------------------------------------------------------- volumes
def _no_dotdot(p: str) -> bool:
    return re.search(R.DOTDOT_SEGMENT, p) is None


RELATIVE_PATH_RULE = CelRule(
    f"!self.startsWith('/') && {R.NO_DOTDOT_CEL}",
    "must be a relative path without '..' parts",
    lambda p: not p.startswith("/") and _no_dotdot(p),
)
RelativePath = Annotated[str, StringConstraints(min_length=1, max_length=1024), Cel(RELATIVE_PATH_RULE)]


class KeyToPath(EmberModel):
    """core/v1 KeyToPath: one key of a Secret or ConfigMap as a file."""

    key: DataKey
    """The key."""
    path: RelativePath
    """File path inside the volume."""
    mode: int | None = Field(None, ge=0, le=0o777)
    """File mode bits."""


class SecretVolume(EmberModel):
    """core/v1 SecretVolumeSource: a Secret of the service's namespace as files."""

    secret_name: Name253
    """The Secret."""
    items: list[KeyToPath] = Field(default_factory=list, max_length=64)
    """Only these keys, at these paths (default: every key at its own name)."""
    default_mode: int | None = Field(None, ge=0, le=0o777)
    """File mode bits."""
    optional: bool | None = None
    """true: an empty volume when the Secret is missing (else Ember reports it)."""


class ConfigMapVolume(EmberModel):
    """core/v1 ConfigMapVolumeSource: a ConfigMap of the service's namespace as files."""

    name: Name253
    """The ConfigMap."""
    items: list[KeyToPath] = Field(default_factory=list, max_length=64)
    """Only these keys, at these paths."""
    default_mode: int | None = Field(None, ge=0, le=0o777)
    """File mode bits."""
    optional: bool | None = None
    """true: an empty volume when the ConfigMap is missing (else Ember reports it)."""


class EmptyDirVolume(EmberModel):
    """core/v1 EmptyDirVolumeSource."""

    medium: Literal["", "Memory"] | None = None
    """"" (node disk) or Memory (tmpfs)."""
    size_limit: R.MemoryQuantity | None = None
    """Size limit, a quantity."""


class PVCVolume(EmberModel):
    """core/v1 PersistentVolumeClaimVolumeSource: a claim in the service's namespace."""

    claim_name: Name253
    """The claim."""
    read_only: bool | None = None
    """Mount read-only."""


_VOLUME_NAME_RULES = (
    CelRule(
        R.cel_matches("self", R.DNS_LABEL),
        "a volume name: at most 63 lowercase letters, digits and '-'",
        R.matches(R.DNS_LABEL),
    ),
    CelRule(
        f"!(self in {list(RESERVED_VOLUMES)!r}) && !self.startsWith('{RESERVED_VOLUME_PREFIX}')",
        f"volume names {', '.join(RESERVED_VOLUMES)} and {RESERVED_VOLUME_PREFIX}* are Ember's own",
        lambda n: n not in RESERVED_VOLUMES and not n.startswith(RESERVED_VOLUME_PREFIX),
    ),
)
NO_HOST_PATH = (
    "hostPath volumes are not allowed: a replica gets no node directories from a spec (node storage "
    "is the cluster admin's, through the chart's values)"
)


class Volume(EmberModel):
    """A volume of the replica pod: a Secret, ConfigMap, PersistentVolumeClaim or emptyDir."""

    __cel__ = (
        CelRule("!has(self.hostPath)", NO_HOST_PATH, lambda v: v.host_path is None, ".hostPath"),
        _one_of(
            ("secret", "configMap", "persistentVolumeClaim", "emptyDir"),
            "a volume takes one source",
        ),
    )

    name: Annotated[str, StringConstraints(max_length=63), Cel(*_VOLUME_NAME_RULES)]
    """Volume name, as volumeMounts name it."""
    secret: SecretVolume | None = None
    """A Secret as files."""
    config_map: ConfigMapVolume | None = None
    """A ConfigMap as files."""
    persistent_volume_claim: PVCVolume | None = None
    """A PersistentVolumeClaim."""
    empty_dir: EmptyDirVolume | None = None
    """Scratch space for the pod's lifetime."""
    host_path: Opaque | None = None
    """Refused: node directories are the cluster admin's to give."""


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


_MOUNT_PATH_RULES = (
    CelRule(
        f"self.startsWith('/') && {R.NO_DOTDOT_CEL}",
        "must be an absolute path without '..' parts",
        lambda p: p.startswith("/") and _no_dotdot(p),
    ),
    CelRule(
        "!(" + " || ".join(f"self == '{p}' || self.startsWith('{p}/')" for p in RESERVED_MOUNT_PATHS) + ")",
        f"{', '.join(RESERVED_MOUNT_PATHS)} and below are Ember's own mounts",
        lambda p: not any(_under(p, r) for r in RESERVED_MOUNT_PATHS),
    ),
)


class VolumeMount(EmberModel):
    """core/v1 VolumeMount, in the engine container."""

    name: Annotated[str, StringConstraints(max_length=63)]
    """A volume of spec.template.spec.volumes."""
    mount_path: Annotated[str, StringConstraints(min_length=1, max_length=1024), Cel(*_MOUNT_PATH_RULES)]
    """Where, inside the container."""
    sub_path: RelativePath | None = None
    """A path inside the volume to mount instead of its root."""
    read_only: bool | None = None
    """Mount read-only."""


class LocalObjectReference(EmberModel):
    """An object of the service's namespace, by name."""

    name: Name253
    """Its name."""


# ---------------------------------------------------------------------------------- the subset
def _refuse(field: str, attr: str, why: str) -> CelRule:
    return CelRule(f"!has(self.{field})", why, lambda s: getattr(s, attr) is None, f".{field}")


NO_SECURITY_CONTEXT = (
    "securityContext is Ember's: replicas run under the restricted Pod Security profile, or with "
    "exactly the checkpoint capabilities the cluster admin granted; never privileged"
)


def _host(field: str, attr: str) -> CelRule:
    return _refuse(field, attr, f"{field} is not allowed: a replica shares nothing with its node")


_NODE_LABEL_KEYS = R.metadata_keys("node label", ("-",))[0]  # valid keys (the second rule: Ember's own)


class PodShaping(EmberModel):
    """The part of a PodSpec a spec may set for its replicas (kube/shaping.py: how it is merged)."""

    __cel__ = (
        CelRule(
            "self.volumeMounts.all(m, self.volumes.exists(v, v.name == m.name))",
            "every volumeMount must name one of spec.template.spec.volumes",
            lambda s: {m.name for m in s.volume_mounts} <= {v.name for v in s.volumes},
            ".volumeMounts",
        ),
        _refuse("securityContext", "security_context", NO_SECURITY_CONTEXT),
        _host("hostNetwork", "host_network"),
        _host("hostPID", "host_pid"),
        _host("hostIPC", "host_ipc"),
    )

    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the replicas tolerate (added to Ember's nvidia.com/gpu toleration)."""
    node_selector: Annotated[dict[str, R.LabelValue], Cel(_NODE_LABEL_KEYS)] = Field(
        default_factory=dict, max_length=32
    )
    """Node labels the replicas require (resources.gpuType adds its own requirement)."""
    affinity: Affinity | None = None
    """Node and pod (anti-)affinity."""
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(default_factory=list, max_length=8)
    """How replicas spread over zones or nodes."""
    service_account_name: Name253 | None = None
    """ServiceAccount of the replica pods (in the service's namespace)."""
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list, max_length=16)
    """Secrets for pulling engine.image from a private registry."""
    runtime_class_name: Name253 | None = None
    """RuntimeClass of the replica pods (e.g. nvidia)."""
    volumes: list[Volume] = Field(default_factory=list, max_length=32)
    """Extra volumes: Secrets, ConfigMaps, PersistentVolumeClaims, emptyDirs."""
    volume_mounts: list[VolumeMount] = Field(default_factory=list, max_length=32)
    """Mounts of those volumes in the engine container."""
    security_context: Opaque | None = None
    """Refused: Ember sets the security context (see its message)."""
    host_network: bool | None = None
    """Refused when set."""
    host_pid: bool | None = Field(None, alias="hostPID")
    """Refused when set."""
    host_ipc: bool | None = Field(None, alias="hostIPC")
    """Refused when set."""
