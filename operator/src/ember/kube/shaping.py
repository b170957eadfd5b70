"""Pod shaping (pure): the spec's template and the admin's replicaDefaults applied to Ember's pods,
engine variables from Secrets and ConfigMaps, and resources.gpuType matched to GPU feature discovery.

Merge rules, each layer over the one before: what Ember builds, then the admin's `replicaDefaults`
(chart values), then the service's own `spec.podMetadata` and `spec.template`:

- maps (labels, annotations, nodeSelector) are merged key by key, the later layer winning; Ember's own
  labels and annotations win over both (the API refuses its keys in a spec anyway);
- named lists are merged by name (volumes; imagePullSecrets; volumeMounts by mountPath), the later
  layer replacing an entry of the same name; tolerations are added (Ember's GPU toleration first);
- scheduling policies are taken whole from the last layer that sets them (affinity,
  topologySpreadConstraints), and so are the single values (serviceAccountName, runtimeClassName);
- resources.gpuType is ANDed into every required node-affinity term, whatever the layers said;
- a volume or mount path that collides with one Ember built is a `ShapingError` (the API refuses
  Ember's reserved names; this catches the rest, e.g. an admin default), reported as a condition.

Placeholders get what decides where a pod may land (tolerations, nodeSelector, node affinity, the
GPU type, runtimeClassName, imagePullSecrets for the pre-stage image), so a placeholder never holds a
node the replica cannot use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ember.api import labels as L
from ember.api import podspec as P
from ember.api.v1alpha1 import InferenceServiceSpec, PodTemplate

# resources.gpuType short names -> the values NVIDIA's GPU feature discovery writes to
# nvidia.com/gpu.product: NVML's device name with spaces as '-' (gpu-feature-discovery, lm/resource.go).
# A short name matches every listed product; any other value is matched as it is written. The short
# name itself is matched too, for nodes an admin labelled by hand.
GPU_PRODUCTS: dict[str, tuple[str, ...]] = {
    "B200": ("NVIDIA-B200",),
    "GH200": ("NVIDIA-GH200-480GB",),
    "H200": ("NVIDIA-H200", "NVIDIA-H200-NVL"),
    "H200-141GB": ("NVIDIA-H200",),
    "H100": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL"),
    "H100-80GB": ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
    "H100-NVL": ("NVIDIA-H100-NVL",),
    "H20": ("NVIDIA-H20",),
    "A100": (
        "NVIDIA-A100-SXM4-80GB",
        "NVIDIA-A100-80GB-PCIe",
        "NVIDIA-A100-SXM4-40GB",
        "NVIDIA-A100-PCIE-40GB",
    ),
    "A100-80GB": ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
    "A100-40GB": ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
    "L40S": ("NVIDIA-L40S",),
    "L40": ("NVIDIA-L40",),
    "L4": ("NVIDIA-L4",),
    "A10G": ("NVIDIA-A10G",),
    "A10": ("NVIDIA-A10",),
    "T4": ("Tesla-T4",),
}


class ShapingError(ValueError):
    """The merged template cannot be applied to Ember's pod (a name or path Ember uses)."""


@dataclass(frozen=True)
class AdminShaping:
    """The cluster admin's part (chart values -> ember.config.Settings)."""

    defaults: PodTemplate = field(default_factory=PodTemplate)  # replicaDefaults
    gpu_type_label: str = L.GPU_PRODUCT  # gpuTypeLabel
    # supervisorImage: the image whose init container injects Ember's supervisor into the engine's
    # (kube/builders.py); "" runs the engine image's own `ember-supervisor`. Not in the fingerprint: a
    # new operator version's supervisor reaches replicas as they are replaced, without a rollout.
    supervisor_image: str = ""
    # modelCache.hostPath: the node directory under which hf:// weights are cached per namespace
    # (kube/builders.model_cache_volume); "" for none
    model_cache: str = ""
    # modelCache.persistentVolumeClaim: the claim, in each service's namespace, mounted as the hf://
    # cache instead (exclusive with model_cache); "" for none
    model_cache_claim: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """What of it shapes pods, for the template hashes (a change rolls the pods)."""
        cache = {"model_cache": self.model_cache} if self.model_cache else {}
        if self.model_cache_claim:
            cache["model_cache_claim"] = self.model_cache_claim
        return {"defaults": self.defaults.to_k8s(), "label": self.gpu_type_label, **cache}


DEFAULT_ADMIN = AdminShaping()


def gpu_products(gpu_type: str) -> list[str]:
    """The node label values resources.gpuType matches."""
    return sorted({gpu_type, *GPU_PRODUCTS.get(gpu_type, ())})


def _dump(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [i.to_k8s() for i in items]


def _by(key: Callable[[dict[str, Any]], str], *layers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for item in layer:
            out.pop(key(item), None)  # a replaced entry moves to where the later layer put it
            out[key(item)] = item
    return list(out.values())


def _gpu_requirement(spec: InferenceServiceSpec, admin: AdminShaping) -> dict[str, Any] | None:
    t = spec.resources.gpu_type
    if not t:
        return None
    return {"key": admin.gpu_type_label, "operator": "In", "values": gpu_products(t)}


def _node_affinity(affinity: dict[str, Any], req: dict[str, Any] | None) -> dict[str, Any]:
    """`affinity` with `req` ANDed into every required node-selector term (terms are ORed)."""
    if req is None:
        return affinity
    out = dict(affinity)
    na = dict(out.get("nodeAffinity") or {})
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or [{}]
    na["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {**t, "matchExpressions": [*(t.get("matchExpressions") or []), req]} for t in terms
        ]
    }
    out["nodeAffinity"] = na
    return out


def _layers(spec: InferenceServiceSpec, admin: AdminShaping) -> tuple[P.PodShaping, P.PodShaping]:
    return admin.defaults.spec, spec.template.spec


def _placement(spec: InferenceServiceSpec, admin: AdminShaping, pod_spec: dict[str, Any]) -> None:
    """Tolerations, nodeSelector, affinity (with the GPU type), runtimeClassName, imagePullSecrets:
    the part replicas and placeholders share."""
    d, own = _layers(spec, admin)
    tolerations = list(pod_spec.get("tolerations") or [])
    for t in _dump([*d.tolerations, *own.tolerations]):
        if t not in tolerations:
            tolerations.append(t)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    selector = {**d.node_selector, **own.node_selector}
    if selector:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **selector}
    chosen = own.affinity or d.affinity
    affinity = chosen.to_k8s() if chosen is not None else {}
    affinity = _node_affinity(affinity, _gpu_requirement(spec, admin))
    if affinity:
        pod_spec["affinity"] = affinity
    runtime = own.runtime_class_name or d.runtime_class_name
    if runtime:
        pod_spec["runtimeClassName"] = runtime
    pulls = _by(lambda s: s["name"], _dump(d.image_pull_secrets), _dump(own.image_pull_secrets))
    if pulls:
        pod_spec["imagePullSecrets"] = pulls


def placeholder_affinity(spec: InferenceServiceSpec, admin: AdminShaping, pod_spec: dict[str, Any]) -> None:
    """Shape a placeholder's spec like the replica's placement, without pod affinity (the
    placeholder's labels are not the replica's, so pod (anti-)affinity would not mean the same)."""
    _placement(spec, admin, pod_spec)
    aff = pod_spec.get("affinity")
    if aff:
        node = {k: v for k, v in aff.items() if k == "nodeAffinity"}
        if node:
            pod_spec["affinity"] = node
        else:
            del pod_spec["affinity"]


def placement_fingerprint(spec: InferenceServiceSpec, admin: AdminShaping) -> dict[str, Any]:
    """What of the shaping a placeholder carries, for its spec hash."""
    probe: dict[str, Any] = {}
    placeholder_affinity(spec, admin, probe)
    return probe


def engine_env(spec: InferenceServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The engine container's env (the spec's own, then the HF token) and envFrom."""
    e = spec.engine
    env = [
        {"name": v.name, "valueFrom": v.value_from.to_k8s()}
        if v.value_from is not None
        else {"name": v.name, "value": v.value}
        for v in e.env
    ]
    if e.hf_token_secret is not None:
        env.append({"name": P.HF_TOKEN_ENV, "valueFrom": {"secretKeyRef": e.hf_token_secret.to_k8s()}})
    return env, _dump(e.env_from)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/") or root.startswith(path.rstrip("/") + "/")


def apply_replica(pod: dict[str, Any], spec: InferenceServiceSpec, admin: AdminShaping) -> dict[str, Any]:
    """Shape a replica pod Ember built (in place, also returned). Raises ShapingError."""
    d, own = _layers(spec, admin)
    meta, pod_spec = pod["metadata"], pod["spec"]
    engine = pod_spec["containers"][0]
    for part in ("labels", "annotations"):
        pm = getattr(spec.pod_metadata, part)
        embers = {k: v for k, v in meta.get(part, {}).items() if k not in pm}
        meta[part] = {
            **getattr(admin.defaults.metadata, part),
            **pm,
            **getattr(spec.template.metadata, part),
            **embers,
        }
    _placement(spec, admin, pod_spec)
    spread = own.topology_spread_constraints or d.topology_spread_constraints
    if spread:
        pod_spec["topologySpreadConstraints"] = _dump(spread)
    account = own.service_account_name or d.service_account_name
    if account:
        pod_spec["serviceAccountName"] = account
    ours = {v["name"] for v in pod_spec.get("volumes", [])}
    extra = _by(lambda v: v["name"], _dump(d.volumes), _dump(own.volumes))
    if clash := sorted(ours & {v["name"] for v in extra}):
        raise ShapingError(f"volume name {clash[0]!r} is one Ember uses in the replica pod")
    pod_spec["volumes"] = [*pod_spec.get("volumes", []), *extra]
    our_paths = [m["mountPath"] for m in engine.get("volumeMounts", [])]
    mounts = _by(lambda m: m["mountPath"], _dump(d.volume_mounts), _dump(own.volume_mounts))
    for m in mounts:
        if any(_under(m["mountPath"], p) for p in our_paths):
            raise ShapingError(
                f"mountPath {m['mountPath']!r} overlaps a mount Ember uses in the engine container"
            )
    engine["volumeMounts"] = [*engine.get("volumeMounts", []), *mounts]
    return pod


# ------------------------------------------------------------------------ references to check
@dataclass(frozen=True)
class Ref:
    """A Secret or ConfigMap (key), or the cache's PersistentVolumeClaim, the replica pods read; the pods
    cannot start while it is missing."""

    kind: str  # Secret | ConfigMap | PersistentVolumeClaim
    name: str
    key: str | None  # None: the whole object (envFrom, a volume without items)
    where: str  # the spec field, for the message


def references(spec: InferenceServiceSpec, admin: AdminShaping = DEFAULT_ADMIN) -> list[Ref]:
    """Every non-optional Secret/ConfigMap reference of the replica pods, in spec order, then the
    admin's model cache claim where the pods mount it."""
    out: list[Ref] = []
    for i, v in enumerate(spec.engine.env):
        src = v.value_from
        if src is None:
            continue
        for kind, sel in (("Secret", src.secret_key_ref), ("ConfigMap", src.config_map_key_ref)):
            if sel is not None and not sel.optional:
                out.append(Ref(kind, sel.name, sel.key, f"spec.engine.env[{i}] ({v.name})"))
    for i, f in enumerate(spec.engine.env_from):
        for kind, obj in (("Secret", f.secret_ref), ("ConfigMap", f.config_map_ref)):
            if obj is not None and not obj.optional:
                out.append(Ref(kind, obj.name, None, f"spec.engine.envFrom[{i}]"))
    cred = spec.model.credentials_secret
    if cred is not None:
        out.append(Ref("Secret", cred.name, None, "spec.model.credentialsSecret"))
    hf = spec.engine.hf_token_secret
    if hf is not None and not hf.optional:
        out.append(Ref("Secret", hf.name, hf.key, "spec.engine.hfTokenSecret"))
    if admin.model_cache_claim and spec.model.uri.startswith("hf://"):
        # the cache claim (kube/builders.model_cache_volume): a pod naming a missing one stays Pending
        out.append(
            Ref(
                "PersistentVolumeClaim",
                admin.model_cache_claim,
                None,
                "the chart's modelCache.persistentVolumeClaim",
            )
        )
    for where, layer in (
        ("replicaDefaults", admin.defaults.spec),
        ("spec.template.spec", spec.template.spec),
    ):
        for i, vol in enumerate(layer.volumes):
            at = f"{where}.volumes[{i}] ({vol.name})"
            if vol.secret is not None and not vol.secret.optional:
                keys: list[str | None] = [it.key for it in vol.secret.items] or [None]
                out += [Ref("Secret", vol.secret.secret_name, k, at) for k in keys]
            if vol.config_map is not None and not vol.config_map.optional:
                keys_cm: list[str | None] = [it.key for it in vol.config_map.items] or [None]
                out += [Ref("ConfigMap", vol.config_map.name, k, at) for k in keys_cm]
    return out


@dataclass(frozen=True)
class Missing:
    # SecretNotFound | SecretKeyNotFound | ConfigMapNotFound | ConfigMapKeyNotFound |
    # PersistentVolumeClaimNotFound
    reason: str
    message: str


def missing(refs: Iterable[Ref], keys_of: Callable[[str, str], set[str] | None]) -> Missing | None:
    """The first reference that does not resolve. `keys_of(kind, name)`: the object's data keys, None
    when it does not exist (it is called once per object). Names only: never a value."""
    seen: dict[tuple[str, str], set[str] | None] = {}
    for r in refs:
        if (r.kind, r.name) not in seen:
            seen[(r.kind, r.name)] = keys_of(r.kind, r.name)
        keys = seen[(r.kind, r.name)]
        if keys is None:
            return Missing(
                f"{r.kind}NotFound",
                f"{r.kind} {r.name!r} (named in {r.where}) does not exist in this namespace: no replica "
                f"is created until it does",
            )
        if r.key is not None and r.key not in keys:
            return Missing(
                f"{r.kind}KeyNotFound",
                f"{r.kind} {r.name!r} (named in {r.where}) has no key {r.key!r}: no replica is created "
                "until it has",
            )
    return None
