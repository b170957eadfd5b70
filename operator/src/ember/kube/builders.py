"""Pure builders of the objects Ember owns: replica pods and the Service. No I/O here."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ember.api import labels as L
from ember.api.v1alpha1 import API_VERSION, KIND, InferenceServiceSpec
from ember.kube import routing, shaping
from ember.policy.tenancy import CheckpointGrant

MODEL_MOUNT = "/mnt/models"
STATE_MOUNT = "/var/lib/ember/state"  # the supervisor's emptyDir: failure file, engine log
SUPERVISOR_PORT = 8081
# The checkpoint identity needs a context length; "the model's own limit" (engine.maxModelLen unset) is
# recorded as this value, so dump and restore agree without guessing the model's number.
ENGINE_DEFAULT_MAX_LEN = 2**31 - 1
CHECKPOINT_MOUNT = "/var/lib/ember/checkpoints"
# What CRIU needs in the replica container, tested by dropping each (replica_image/README.md).
# CHECKPOINT_RESTORE is not asked for: SYS_ADMIN (needed anyway, for namespaces and mounts) grants
# everything CRIU wants from it, and a node whose runtime predates it has it in no bounding set, so
# asking fails every start ("runc create failed: unable to apply caps"; seen on the kind e2e node).
CHECKPOINT_CAPABILITIES = [
    "SYS_ADMIN",
    "SYS_PTRACE",
    "NET_ADMIN",
    "SYS_TIME",
    "SYS_CHROOT",
    "SETPCAP",
    "SETUID",
    "SETGID",
]
# The restricted Pod Security Standard, for replicas without the checkpoint grant: what a tenant's own
# pod would have to be in a namespace that enforces it. 65532 ("nonroot" in distroless images): the
# replica image must run as a non-root user then (its caches live on the emptyDirs, see fsGroup).
RESTRICTED_UID = 65532
RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RESTRICTED_UID,
    "runAsGroup": RESTRICTED_UID,
    "fsGroup": RESTRICTED_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# The supervisor's bearer token (its mutating routes refuse calls without it), from the per-service
# Secret the operator owns; the supervisor reads the variable, the operator the Secret.
TOKEN_ENV = "EMBER_SUPERVISOR_TOKEN"
TOKEN_KEY = "token"
# vLLM allocates its shared-memory queues in /dev/shm (160 MiB on CPU): more than a runtime's 64 MiB
SHM_MOUNT = "/dev/shm"
# vLLM needs a few seconds after SIGTERM to finish streams the Service no longer routes to; the pod
# also waits this long before SIGTERM so endpoint removal reaches every proxy first.
PRESTOP_SLEEP_S = 5


def template_hash(
    spec: InferenceServiceSpec,
    checkpoint: CheckpointGrant | None = None,
    admin: shaping.AdminShaping = shaping.DEFAULT_ADMIN,
) -> str:
    """Hash of everything that shapes a replica pod: a change rolls the replicas (so does the admin
    granting or withdrawing checkpoints, moving the service's storage or changing replicaDefaults)."""
    shaped = spec.model_dump(
        by_alias=True,
        mode="json",
        include={"model", "engine", "resources", "pod_metadata", "checkpoint", "template"},
    )
    if checkpoint is not None:
        shaped["grant"] = checkpoint.location
    if admin != shaping.DEFAULT_ADMIN:
        shaped["admin"] = admin.fingerprint()
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:10]


def selector_labels(name: str) -> dict[str, str]:
    return {L.ISVC: name, L.COMPONENT: L.REPLICA}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def served_name(name: str, spec: InferenceServiceSpec) -> str:
    return spec.model.served_name or name


def _model_arg(spec: InferenceServiceSpec) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The --model value, plus volumes and mounts the URI needs."""
    uri = spec.model.uri
    if uri.startswith("hf://"):
        return uri.removeprefix("hf://"), [], []
    if uri.startswith("pvc://"):
        claim, _, sub = uri.removeprefix("pvc://").partition("/")
        vol = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        mount = {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}
        return f"{MODEL_MOUNT}/{sub}".rstrip("/"), [vol], [mount]
    return uri.removeprefix("file://"), [], []


def engine_args(name: str, spec: InferenceServiceSpec, model: str) -> list[str]:
    e = spec.engine
    args = [
        "--model",
        model,
        "--served-model-name",
        served_name(name, spec),
        "--port",
        str(e.port),
        "--tensor-parallel-size",
        str(e.tensor_parallel_size),
        "--dtype",
        e.dtype,
    ]
    if spec.model.uri.startswith("hf://"):
        args += ["--revision", spec.model.revision]
    if e.max_model_len:
        args += ["--max-model-len", str(e.max_model_len)]
    return args + list(e.args)


def token_secret_name(name: str) -> str:
    return f"{name}-supervisor-token"


def token_secret(name: str, namespace: str, uid: str, token: str) -> dict[str, Any]:
    """The per-service Secret holding the supervisor's token; owned by the InferenceService."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": token_secret_name(name),
            "namespace": namespace,
            "labels": {L.ISVC: name, L.MANAGED_BY: L.MANAGED_BY_VALUE},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def supervisor_config(
    name: str, spec: InferenceServiceSpec, model: str, port: int, checkpoints: bool = False
) -> dict[str, Any]:
    """The replica supervisor's config (ember_supervisor.config.SupervisorConfig as JSON):
    the engine runs through `ember_checkpoint.vllm_entry` (vLLM on the plain asyncio loop: CRIU cannot
    dump the io_uring uvloop opens), restores come from the mounted checkpoint storage."""
    e, cp = spec.engine, spec.checkpoint
    restore = checkpoints and cp.restore_policy != "Never"
    return {
        "engine_argv": ["python3", "-m", "ember_checkpoint.vllm_entry", *engine_args(name, spec, model)],
        "engine_port": e.port,
        "health_path": "/health",
        "identity": {
            "model_digest": f"{spec.model.uri}@{spec.model.revision}",
            "engine_version": e.image,
            "tensor_parallel_size": e.tensor_parallel_size,
            "dtype": e.dtype,
            "max_model_len": e.max_model_len or ENGINE_DEFAULT_MAX_LEN,
        },
        "checkpoint_dir": CHECKPOINT_MOUNT if restore else None,
        "state_dir": STATE_MOUNT,
        "listen_port": port,
        "require_verified": cp.restore_policy == "IfVerified",
        "keep_verified": cp.keep,
        "canary": {
            "method": "POST",
            "path": "/v1/completions",
            "body": json.dumps(
                {
                    "model": served_name(name, spec),
                    "prompt": "Ember canary:",
                    "max_tokens": 8,
                    "temperature": 0,
                }
            ),
            "json_field": "choices.0.text",
        },
    }


def replica_pod(
    name: str,
    namespace: str,
    uid: str,
    spec: InferenceServiceSpec,
    index: int,
    start_path: str = "cold",
    supervisor_port: int = SUPERVISOR_PORT,
    checkpoint: CheckpointGrant | None = None,
    admin: shaping.AdminShaping = shaping.DEFAULT_ADMIN,
) -> dict[str, Any]:
    """`checkpoint`: the admin's grant (policy/tenancy.py); None builds a restricted pod without it.
    `admin`: the admin's replicaDefaults and GPU label (kube/shaping.py; raises ShapingError)."""
    model, volumes, mounts = _model_arg(spec)
    r, e = spec.resources, spec.engine
    requests: dict[str, str] = {"cpu": r.cpu, "memory": r.memory}
    limits: dict[str, str] = {"memory": r.memory}
    if r.gpu:
        requests[L.GPU_RESOURCE] = limits[L.GPU_RESOURCE] = str(r.gpu)
    if checkpoint is not None:
        volumes.append({"name": "checkpoints", **checkpoint.volume})
        mount = {"name": "checkpoints", "mountPath": CHECKPOINT_MOUNT}
        mounts.append(mount | ({"subPath": checkpoint.sub_path} if checkpoint.sub_path else {}))
    volumes.append({"name": "state", "emptyDir": {}})
    mounts.append({"name": "state", "mountPath": STATE_MOUNT})
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    mounts.append({"name": "dshm", "mountPath": SHM_MOUNT})
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    sup = supervisor_config(name, spec, model, supervisor_port, checkpoints=checkpoint is not None)
    own_env, env_from = shaping.engine_env(spec)
    env: list[dict[str, Any]] = [
        *own_env,
        {"name": "EMBER_INFERENCESERVICE", "value": name},
        {"name": "EMBER_START_PATH", "value": start_path},
        {"name": "EMBER_SUPERVISOR_CONFIG_JSON", "value": json.dumps(sup, sort_keys=True)},
        {
            "name": TOKEN_ENV,
            "valueFrom": {"secretKeyRef": {"name": token_secret_name(name), "key": TOKEN_KEY}},
        },
    ]
    if checkpoint is None and not any(v.name == "HOME" for v in e.env):
        # a non-root engine cannot write the image's /root: its caches (Hugging Face, vLLM) go to the
        # state emptyDir, which fsGroup makes writable (unless the spec sets HOME itself)
        env.append({"name": "HOME", "value": STATE_MOUNT})
    container: dict[str, Any] = {
        "name": "engine",
        "image": e.image,
        # PID 1 is Ember's supervisor: it restores a verified checkpoint or starts vLLM cold (falling back
        # to cold once on any restore failure); the engine's own flags are in its config.
        "command": ["ember-supervisor"],
        "args": [],
        "ports": [
            {"name": "http", "containerPort": e.port, "protocol": "TCP"},
            {"name": "supervisor", "containerPort": supervisor_port, "protocol": "TCP"},
        ],
        "env": env,
        **({"envFrom": env_from} if env_from else {}),
        "resources": {"requests": requests, "limits": limits},
        # cold starts take minutes: the startup probe allows 30 min before liveness applies
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 360},
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_S}}},
        "volumeMounts": mounts,
    }
    if checkpoint is not None:  # CRIU dumps and restores the engine: only these, no privileged mode
        container["securityContext"] = {
            "capabilities": {"drop": ["ALL"], "add": list(CHECKPOINT_CAPABILITIES)},
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        }
    else:
        container["securityContext"] = dict(RESTRICTED_CONTAINER_SECURITY)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "priorityClassName": r.priority_class_name,
        "terminationGracePeriodSeconds": spec.scaling.drain_timeout_seconds + PRESTOP_SLEEP_S + 30,
        "enableServiceLinks": False,
    }
    if checkpoint is None:
        pod_spec["securityContext"] = dict(RESTRICTED_POD_SECURITY)
    if r.gpu:
        pod_spec["tolerations"] = [{"key": L.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    labels = {
        **spec.pod_metadata.labels,
        **selector_labels(name),
        L.SERVING: "true",
        L.TEMPLATE_HASH: template_hash(spec, checkpoint, admin),
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        "app.kubernetes.io/name": "ember-replica",
        "app.kubernetes.io/instance": name,
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{index}",
            "namespace": namespace,
            "labels": labels,
            "annotations": {**spec.pod_metadata.annotations, L.START_PATH: start_path},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": pod_spec,
    }
    return shaping.apply_replica(pod, spec, admin)


def service(name: str, namespace: str, uid: str, spec: InferenceServiceSpec) -> dict[str, Any]:
    """Selector-less: the routing contract (kube/routing.py) fills its EndpointSlice."""
    return routing.service(name, namespace, uid)


def endpoint(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local/v1"
