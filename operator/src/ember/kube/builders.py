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
# The injected supervisor (ember_supervisor/inject.py): the supervisor image holds the tree at
# INJECT_TREE; an init container copies it into an emptyDir at INJECT_MOUNT, and the engine container,
# from any vLLM image, runs INJECT_SUPERVISOR on the image's own python3. With checkpoints the tree
# carries CRIU's relocatable prefix too (run through its own loader: the image's glibc is not used).
INJECT_TREE = "/opt/ember-inject"
INJECT_MOUNT = "/ember"
INJECT_VOLUME = "ember-inject"
INJECT_SUPERVISOR = f"{INJECT_MOUNT}/bin/ember-supervisor"
INJECT_CRIU = f"{INJECT_MOUNT}/criu"
INJECT_RESOURCES = {"cpu": "50m", "memory": "128Mi"}  # one copy of ~25 MB
INJECT_SIZE_LIMIT = "256Mi"


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
    if admin.fingerprint() != shaping.DEFAULT_ADMIN.fingerprint():
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


MODEL_CREDENTIALS_MOUNT = "/var/run/ember/model-credentials"
# The model cache (admin's modelCache.hostPath or modelCache.persistentVolumeClaim): hf:// weights are
# downloaded once per node (hostPath; per claim for a claim) and namespace, by the first replica or by
# the warm buffer's prestage, which mounts the same volume at the same path and downloads into the same
# huggingface_hub layout (<cache>/hf).
MODEL_CACHE_MOUNT = "/var/lib/ember/cache"
MODEL_CACHE_VOLUME = "ember-model-cache"


def model_cache_volume(admin: shaping.AdminShaping, namespace: str) -> dict[str, Any] | None:
    """The cache's volume, placed per namespace: a tenant writes files there that the engine loads, so
    a cache shared across namespaces would let one tenant plant weights another serves (the checkpoint
    roots' rule, ARCHITECTURE.md: Tenancy). A hostPath root is placed at `<root>/<namespace>`; a claim
    (`admin.model_cache_claim`) is the claim of that name in the pod's own namespace, per namespace by
    construction (a pod can only mount a claim of its namespace), mounted read-write since the engine
    downloads into it. None without either."""
    if admin.model_cache_claim:
        return {"name": MODEL_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": admin.model_cache_claim}}
    if not admin.model_cache:
        return None
    path = f"{admin.model_cache.rstrip('/')}/{namespace}"
    return {"name": MODEL_CACHE_VOLUME, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}


GCS_KEY = "key.json"


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
    if uri.startswith("oci://"):  # model-as-image: the kubelet pulls it; no download code in Ember
        vol = {
            "name": "model",
            "image": {"reference": uri.removeprefix("oci://"), "pullPolicy": "IfNotPresent"},
        }
        return MODEL_MOUNT, [vol], [{"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}]
    if uri.startswith(("s3://", "gs://")):  # vLLM's Run:ai streamer reads the bucket itself
        cred = spec.model.credentials_secret
        if cred is None or uri.startswith("s3://"):
            return uri, [], []
        vol = {"name": "ember-model-credentials", "secret": {"secretName": cred.name}}
        mount = {"name": "ember-model-credentials", "mountPath": MODEL_CREDENTIALS_MOUNT, "readOnly": True}
        return uri, [vol], [mount]
    return uri.removeprefix("file://"), [], []


def model_env(spec: InferenceServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The engine's env and envFrom for the model's credentialsSecret (s3://, gs://)."""
    cred = spec.model.credentials_secret
    if cred is None:
        return [], []
    env = []
    if spec.model.uri.startswith("gs://"):
        env.append(
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{MODEL_CREDENTIALS_MOUNT}/{GCS_KEY}"}
        )
    return env, [{"secretRef": {"name": cred.name}}]


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
    if spec.model.uri.startswith(("s3://", "gs://")):
        args += ["--load-format", "runai_streamer"]
    if e.max_model_len:
        args += ["--max-model-len", str(e.max_model_len)]
    if uses_vllm_sleep(spec) and "--enable-sleep-mode" not in e.args:
        args.append("--enable-sleep-mode")
    return args + list(e.args)


def uses_vllm_sleep(spec: InferenceServiceSpec) -> bool:
    """Replicas may sleep and sleep on a GPU through vLLM's sleep mode (tier sleep or suspend; auto is
    sleep where there is a GPU): the engine needs `--enable-sleep-mode`, and VLLM_SERVER_DEV_MODE=1
    for its /sleep and /wake_up routes, which `ember_checkpoint.vllm_entry` serves to loopback only."""
    sl = spec.scaling.sleep
    return sl.max_sleeping > 0 and spec.resources.gpu > 0 and sl.tier in ("auto", "sleep", "suspend")


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


# the engine container's readiness probe (GET /healthz of the supervisor): a replica leaves the Service
# within period x failures of /healthz answering 503
READINESS_PERIOD_S, READINESS_FAILURES = 2, 2


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
        "sleep_tier": spec.scaling.sleep.tier,  # spec.scaling.sleep: how POST /sleep sleeps
        "require_verified": cp.restore_policy == "IfVerified",
        "keep_verified": cp.keep,
        "weight_loader": e.weight_loader,
        # before a dump (asleep, where the engine has sleep mode on a GPU), /healthz answers 503 this long
        # while the engine still serves: the readiness probe takes the pod out of the Service first
        "checkpoint_unready_s": READINESS_PERIOD_S * READINESS_FAILURES + 1,
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


def checkpoint_engine_env() -> dict[str, str]:
    """The engine's environment a checkpoint needs, for images that bring nothing of Ember: no
    io_uring in libuv (CRIU cannot dump one), vLLM's own sockets on loopback (a socket on the pod's
    address cannot be restored in another pod), vLLM's compile cache on the checkpoint volume (the
    kernels the engine maps must exist at the same path in the restoring pod)."""
    return {
        "UV_USE_IO_URING": "0",
        "VLLM_HOST_IP": "127.0.0.1",
        "GLOO_SOCKET_IFNAME": "lo",
        "VLLM_CACHE_ROOT": f"{CHECKPOINT_MOUNT}/.vllm-cache",
    }


def inject_container(image: str, criu: bool) -> dict[str, Any]:
    """The init container that copies the supervisor tree (and, with `criu`, CRIU) into /ember."""
    parts = ["bin", "lib", *(["criu"] if criu else [])]
    return {
        "name": "ember-inject",
        "image": image,
        "command": ["cp", "-R", *(f"{INJECT_TREE}/{p}" for p in parts), f"{INJECT_MOUNT}/"],
        "resources": {"requests": dict(INJECT_RESOURCES), "limits": {"memory": INJECT_RESOURCES["memory"]}},
        "securityContext": dict(RESTRICTED_CONTAINER_SECURITY),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": INJECT_VOLUME, "mountPath": INJECT_MOUNT}],
    }


def inject_volume() -> dict[str, Any]:
    return {"name": INJECT_VOLUME, "emptyDir": {"sizeLimit": INJECT_SIZE_LIMIT}}


def inject_mount() -> dict[str, Any]:
    return {"name": INJECT_VOLUME, "mountPath": INJECT_MOUNT, "readOnly": True}


def supervisor_command(admin: shaping.AdminShaping) -> list[str]:
    """The engine container's command: the injected supervisor, or the image's own."""
    return [INJECT_SUPERVISOR] if admin.supervisor_image else ["ember-supervisor"]


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
    if admin.supervisor_image:
        volumes.append(inject_volume())
        mounts.append(inject_mount())
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    mounts.append({"name": "dshm", "mountPath": SHM_MOUNT})
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    sup = supervisor_config(name, spec, model, supervisor_port, checkpoints=checkpoint is not None)
    own_env, env_from = shaping.engine_env(spec)
    cred_env, cred_from = model_env(spec)
    own_env, env_from = [*cred_env, *own_env], [*cred_from, *env_from]
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
    if admin.supervisor_image and checkpoint is not None:
        env.append({"name": "EMBER_CRIU", "value": INJECT_CRIU})
        # what the CPU replica image sets in its Dockerfile, and a stock image does not: a restorable
        # engine (replica_image/Dockerfile has the why of each)
        own = {v.name for v in e.env}
        env += [{"name": k, "value": v} for k, v in checkpoint_engine_env().items() if k not in own]
    if uses_vllm_sleep(spec) and not any(v.name == "VLLM_SERVER_DEV_MODE" for v in e.env):
        env.append({"name": "VLLM_SERVER_DEV_MODE", "value": "1"})
    cache = model_cache_volume(admin, namespace)
    hostpath_cache = cache is not None and "hostPath" in cache
    if (
        cache is not None
        and spec.model.uri.startswith("hf://")
        and (checkpoint is not None or not hostpath_cache)
    ):
        # a node directory only with the admin's grant, like checkpoints (the restricted and baseline
        # Pod Security profiles refuse hostPath volumes); a claim, which they allow, everywhere
        volumes.append(cache)
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_MOUNT})
        env.append({"name": "HF_HUB_CACHE", "value": f"{MODEL_CACHE_MOUNT}/hf"})
    if checkpoint is None and not any(v.name == "HOME" for v in e.env):
        # a non-root engine cannot write the image's /root: its caches (Hugging Face, vLLM) go to the
        # state emptyDir, which fsGroup makes writable (unless the spec sets HOME itself)
        env.append({"name": "HOME", "value": STATE_MOUNT})
    container: dict[str, Any] = {
        "name": "engine",
        "image": e.image,
        # PID 1 is Ember's supervisor: it restores a verified checkpoint or starts vLLM cold (falling back
        # to cold once on any restore failure); the engine's own flags are in its config. Injected
        # (admin.supervisor_image), it needs nothing of Ember in the image.
        "command": supervisor_command(admin),
        "args": [],
        # an image without vLLM or Python 3 ends with one line: the kubelet keeps it as the
        # termination message, which the operator shows in the Degraded condition
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [
            {"name": "http", "containerPort": e.port, "protocol": "TCP"},
            {"name": "supervisor", "containerPort": supervisor_port, "protocol": "TCP"},
        ],
        "env": env,
        **({"envFrom": env_from} if env_from else {}),
        "resources": {"requests": requests, "limits": limits},
        # cold starts take minutes: the startup probe allows 30 min before liveness applies
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 360},
        "readinessProbe": {
            **probe,
            "periodSeconds": READINESS_PERIOD_S,
            "failureThreshold": READINESS_FAILURES,
        },
        # liveness asks the supervisor (GET /livez: 200 unless the engine failed): an asleep engine
        # cannot answer /health, and a sleeping replica must not be restarted by the kubelet
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "supervisor"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
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
        **(
            {"initContainers": [inject_container(admin.supervisor_image, criu=checkpoint is not None)]}
            if admin.supervisor_image
            else {}
        ),
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
