"""Pure builders of warm-buffer placeholder pods, and their translation into the planner's view.

A placeholder holds the node capacity of exactly one replica: the same GPU count, CPU and memory
requests, GPU toleration, `nvidia.com/gpu.product` node affinity and the template's placement
(tolerations, nodeSelector, node affinity, runtimeClassName: kube/shaping.py) as `builders.replica_pod`,
so any replica fits where a placeholder was, and a replica of one GPU type never preempts a placeholder
of another (the GPU affinity keeps them on disjoint nodes). It runs a pause container
(`PAUSE_IMAGE`), which exits on SIGTERM at once, and runs at the PriorityClass of
`spec.warmBuffer.priorityClassName`,
which must rank below the serving replicas' and should have `preemptionPolicy: Never` so that a
recreated placeholder waits Pending instead of evicting anything.

Why `terminationGracePeriodSeconds: 1` and not 0: with 0 the API server removes the pod object at
once, before any kubelet has stopped the container. The preemptor can then reach the node while the
pause container still holds the device, and the scheduler's asynchronous preemption can issue a
redundant second preemption that finds the victim gone, emits no event, and parks the preemptor for
5 minutes (kubernetes/kubernetes#141694; reproduced here on kwok in ~1 of 3 scale-ups). With 1 the
deletion is graceful: the preemptor waits, nominated, until the kubelet confirms, which the pause
container allows within milliseconds; 1 s is only the upper bound.

Pre-staging (`spec.warmBuffer.prestage`): an init container runs the *replica image* itself (so the
kubelet pulls it onto the node: the replica that lands there later finds it cached) with the command

    ember-supervisor prestage --model URI --revision REV --cache CACHE_DIR [--checkpoints DIR]

The replica image's supervisor implements it (supervisor/src/ember_supervisor/prestage.py):
it reads the model (a local path; `hf://` downloaded into `CACHE_DIR`, a hostPath, `PRESTAGE_CACHE`)
and the newest *verified* checkpoint of the model in the checkpoint directory (the hostPath the
replicas mount when checkpoint.storage.type is hostPath) into the node's page cache, prints one JSON
line and exits 0; runtime failures are reported and also exit 0, because a placeholder that cannot
pre-stage still holds the GPUs (only a malformed invocation exits 2). Page cache beyond the init
container's memory limit (`PRESTAGE_RESOURCES`) is evicted while it is read. On kwok nodes no
container runs, so the operator's tests exercise only the pod shape.

Pre-staging runs a tenant-chosen image with a node directory mounted (the shared weights cache), so it
is the admin's grant like checkpoints (policy/tenancy.py): only in namespaces opted in to checkpoints
(`prestage_allowed`). Elsewhere the placeholder is the pause container alone, built to the restricted
Pod Security Standard, and only holds capacity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ember.api import labels as L
from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders, shaping
from ember.kube.builders import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY, owner_reference
from ember.policy.buffer import PlaceholderView

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PRESTAGE_CACHE = "/var/lib/ember/cache"  # node-local cache of images' weights (hostPath)
PRESTAGE_RESOURCES = {"cpu": "500m", "memory": "2Gi"}  # copies files; the pod's GPUs come from `hold`
GRACE_S = 1  # module docstring: why not 0
SPEC_HASH = f"{L.PREFIX}/buffer-hash"  # label: hash of the placeholder-shaping spec
INFIX = "-buffer-"


def placeholder_name(service: str, index: int) -> str:
    return f"{service}{INFIX}{index}"


def selector_string(service: str) -> str:
    return f"{L.ISVC}={service},{L.COMPONENT}={L.PLACEHOLDER}"


def spec_hash(
    spec: InferenceServiceSpec,
    pause_image: str = PAUSE_IMAGE,
    checkpoint_dir: str | None = None,
    prestage_allowed: bool = False,
    admin: shaping.AdminShaping = shaping.DEFAULT_ADMIN,
) -> str:
    """Hash of everything that shapes a placeholder: a change replaces the placeholders."""
    prestage = spec.warm_buffer.prestage and prestage_allowed
    shaped = {
        "resources": spec.resources.model_dump(mode="json", by_alias=True),
        "buffer": spec.warm_buffer.model_dump(mode="json", by_alias=True, include={"priority_class_name"}),
        "prestage": [spec.engine.image, spec.model.uri, spec.model.revision] if prestage else [],
        "checkpoint": checkpoint_dir,
        "pause": pause_image,
    }
    if placement := shaping.placement_fingerprint(spec, admin):
        shaped["placement"] = placement
    if prestage and (cache := builders.model_cache_volume(admin, "")) is not None:
        shaped["cache"] = cache  # the volume the prestage downloads into (namespace-free: the hash's part)
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:10]


def _prestage(
    spec: InferenceServiceSpec, checkpoint_dir: str | None, admin: shaping.AdminShaping, namespace: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pre-stage init containers and their volumes. `checkpoint_dir`: the service's node directory
    of checkpoints when the admin granted checkpoints on a hostPath root (policy/tenancy.py), else
    None. With `admin.supervisor_image` the supervisor is injected first, as in the replica pod."""
    args = [
        "prestage",
        "--model",
        spec.model.uri,
        "--revision",
        spec.model.revision,
        "--cache",
        PRESTAGE_CACHE,
    ]
    # with the admin's modelCache the replicas' own cache (the same node directory or the same claim,
    # same layout), so the replica that lands here does not download again; else the node-wide prestage
    # directory
    cache = builders.model_cache_volume(admin, namespace)
    volumes: list[dict[str, Any]] = [
        {**cache, "name": "ember-cache"}
        if cache is not None
        else {"name": "ember-cache", "hostPath": {"path": PRESTAGE_CACHE, "type": "DirectoryOrCreate"}}
    ]
    mounts: list[dict[str, Any]] = [{"name": "ember-cache", "mountPath": PRESTAGE_CACHE}]
    if checkpoint_dir is not None:
        args += ["--checkpoints", checkpoint_dir]
        volumes.append(
            {"name": "checkpoints", "hostPath": {"path": checkpoint_dir, "type": "DirectoryOrCreate"}}
        )
        mounts.append({"name": "checkpoints", "mountPath": checkpoint_dir, "readOnly": True})
    inject: list[dict[str, Any]] = []
    if admin.supervisor_image:
        inject = [builders.inject_container(admin.supervisor_image, criu=False)]
        volumes.append(builders.inject_volume())
        mounts.append(builders.inject_mount())
    init = {
        "name": "prestage",
        "image": spec.engine.image,
        "command": builders.supervisor_command(admin),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "args": args,
        "resources": {
            "requests": dict(PRESTAGE_RESOURCES),
            "limits": {"memory": PRESTAGE_RESOURCES["memory"]},
        },
        "volumeMounts": mounts,
    }
    return [*inject, init], volumes


def placeholder_pod(
    service: str,
    namespace: str,
    uid: str,
    spec: InferenceServiceSpec,
    index: int,
    pause_image: str = PAUSE_IMAGE,
    checkpoint_dir: str | None = None,
    prestage_allowed: bool = False,
    admin: shaping.AdminShaping = shaping.DEFAULT_ADMIN,
) -> dict[str, Any]:
    """`prestage_allowed`: the namespace has the admin's checkpoint grant (module docstring).
    `admin`: replicaDefaults and the GPU label; the placement part of the shaping applies here too."""
    r = spec.resources
    requests: dict[str, str] = {"cpu": r.cpu, "memory": r.memory}
    limits: dict[str, str] = {"memory": r.memory}
    if r.gpu:
        requests[L.GPU_RESOURCE] = limits[L.GPU_RESOURCE] = str(r.gpu)
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "hold",
                "image": pause_image,
                "resources": {"requests": requests, "limits": limits},
                "securityContext": dict(RESTRICTED_CONTAINER_SECURITY),
            }
        ],
        "priorityClassName": spec.warm_buffer.priority_class_name,
        "terminationGracePeriodSeconds": GRACE_S,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if spec.warm_buffer.prestage and prestage_allowed:
        inits, volumes = _prestage(spec, checkpoint_dir, admin, namespace)
        pod_spec["initContainers"] = inits
        pod_spec["volumes"] = volumes
    else:
        pod_spec["securityContext"] = dict(RESTRICTED_POD_SECURITY)
    if r.gpu:
        pod_spec["tolerations"] = [{"key": L.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    shaping.placeholder_affinity(spec, admin, pod_spec)
    labels = {
        L.ISVC: service,
        L.COMPONENT: L.PLACEHOLDER,
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        SPEC_HASH: spec_hash(spec, pause_image, checkpoint_dir, prestage_allowed, admin),
        "app.kubernetes.io/name": "ember-placeholder",
        "app.kubernetes.io/instance": service,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": placeholder_name(service, index),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(service, uid)],
        },
        "spec": pod_spec,
    }


def _ts(value: Any) -> float:
    if not value:
        return 0.0
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def placeholder_view(service: str, pod: Mapping[str, Any]) -> PlaceholderView | None:
    """The planner's view of a placeholder pod (a dict as kopf delivers it); None if not one of ours."""
    meta = pod.get("metadata") or {}
    name = str(meta.get("name") or "")
    prefix = f"{service}{INFIX}"
    suffix = name.removeprefix(prefix)
    if not name.startswith(prefix) or not suffix.isdigit():
        return None
    conds = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    disruption = conds.get("DisruptionTarget", {})
    return PlaceholderView(
        name=name,
        index=int(suffix),
        # kopf's compact index may not carry the uid: name + creation time identify a pod as well
        uid=str(meta.get("uid") or f"{name}@{meta.get('creationTimestamp')}"),
        spec_hash=(meta.get("labels") or {}).get(SPEC_HASH, ""),
        created=_ts(meta.get("creationTimestamp")),
        scheduled=conds.get("PodScheduled", {}).get("status") == "True",
        ready=conds.get("Ready", {}).get("status") == "True",
        terminating=bool(meta.get("deletionTimestamp")),
        preempted=disruption.get("status") == "True" and disruption.get("reason") == "PreemptionByScheduler",
    )
