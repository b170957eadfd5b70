"""Invalid InferenceService specs and the field each must be refused on.

Shared by the unit tier (the pydantic models refuse each one) and the integration tier (the real API
server refuses each one at `kubectl apply`, with a message naming the field): the two must agree.
"""

from __future__ import annotations

import copy
from typing import Any

BASE: dict[str, Any] = {"model": {"uri": "hf://org/model"}}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


DELETE = object()

# (id, patch over BASE, substrings the API server's message must contain)
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("model-missing", {"model": DELETE}, ("spec.model", "Required")),
    ("uri-missing", {"model": {"uri": DELETE, "revision": "x"}}, ("spec.model.uri", "Required")),
    ("uri-bad-scheme", {"model": {"uri": "http://example.com/m"}}, ("spec.model.uri",)),
    ("uri-hf-without-org", {"model": {"uri": "hf://llama"}}, ("spec.model.uri",)),
    ("uri-pvc-uppercase-claim", {"model": {"uri": "pvc://Models/x"}}, ("spec.model.uri",)),
    ("uri-with-space", {"model": {"uri": "file:///a b"}}, ("spec.model.uri",)),
    ("served-name-with-space", {"model": {"servedName": "my model"}}, ("spec.model.servedName",)),
    ("replicas-negative", {"replicas": -1}, ("spec.replicas",)),
    ("replicas-wrong-type", {"replicas": "three"}, ("spec.replicas", "integer")),
    (
        "replicas-above-max",
        {"replicas": 9, "scaling": {"maxReplicas": 4}},
        ("spec.replicas", "must not exceed scaling.maxReplicas"),
    ),
    (
        "min-above-max",
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        ("spec.scaling.minReplicas", "minReplicas must not exceed maxReplicas"),
    ),
    ("max-zero", {"scaling": {"maxReplicas": 0}}, ("spec.scaling.maxReplicas",)),
    ("min-negative", {"scaling": {"minReplicas": -1}}, ("spec.scaling.minReplicas",)),
    (
        "scale-to-zero-needs-min-zero",
        {"scaling": {"minReplicas": 1, "scaleToZeroAfterSeconds": 60}},
        ("spec.scaling.scaleToZeroAfterSeconds", "requires minReplicas == 0"),
    ),
    (
        "panic-window-above-stable",
        {"scaling": {"panicWindowSeconds": 120, "stableWindowSeconds": 60}},
        ("spec.scaling.panicWindowSeconds",),
    ),
    ("tolerance-above-one", {"scaling": {"tolerance": 1.5}}, ("spec.scaling.tolerance",)),
    ("panic-threshold-below-one", {"scaling": {"panicThreshold": 0.5}}, ("spec.scaling.panicThreshold",)),
    ("unknown-mode", {"scaling": {"mode": "auto"}}, ("spec.scaling.mode", "Unsupported value")),
    (
        "decision-interval-zero",
        {"scaling": {"decisionIntervalSeconds": 0}},
        ("spec.scaling.decisionIntervalSeconds",),
    ),
    ("scale-up-step-zero", {"scaling": {"maxScaleUpStep": 0}}, ("spec.scaling.maxScaleUpStep",)),
    ("unknown-archetype", {"slo": {"archetype": "chatbot"}}, ("spec.slo.archetype", "Unsupported value")),
    ("ttft-zero", {"slo": {"ttftP95Ms": 0}}, ("spec.slo.ttftP95Ms",)),
    ("utilization-zero", {"slo": {"targetUtilization": 0}}, ("spec.slo.targetUtilization",)),
    ("utilization-above-one", {"slo": {"targetUtilization": 2}}, ("spec.slo.targetUtilization",)),
    ("gpu-negative", {"resources": {"gpu": -1}}, ("spec.resources.gpu",)),
    (
        "zero-gpus-with-tp-2",
        {"resources": {"gpu": 0}, "engine": {"tensorParallelSize": 2}},
        ("spec.engine.tensorParallelSize", "must divide resources.gpu"),
    ),
    (
        "tp-not-dividing-gpus",
        {"resources": {"gpu": 4}, "engine": {"tensorParallelSize": 3}},
        ("spec.engine.tensorParallelSize",),
    ),
    ("tp-zero", {"engine": {"tensorParallelSize": 0}}, ("spec.engine.tensorParallelSize",)),
    ("unknown-dtype", {"engine": {"dtype": "int4"}}, ("spec.engine.dtype", "Unsupported value")),
    ("port-privileged", {"engine": {"port": 80}}, ("spec.engine.port",)),
    ("max-model-len-tiny", {"engine": {"maxModelLen": 4}}, ("spec.engine.maxModelLen",)),
    ("env-bad-name", {"engine": {"env": [{"name": "1BAD", "value": "x"}]}}, ("spec.engine.env[0].name",)),
    ("memory-not-a-quantity", {"resources": {"memory": "lots"}}, ("spec.resources.memory",)),
    ("gpu-type-with-space", {"resources": {"gpuType": "H100 80GB"}}, ("spec.resources.gpuType",)),
    (
        "buffer-floor-above-cap",
        {"warmBuffer": {"idleGPUs": 9, "maxIdleGPUs": 8}},
        ("spec.warmBuffer.idleGPUs", "must not exceed maxIdleGPUs"),
    ),
    (
        "buffer-unknown-policy",
        {"warmBuffer": {"policy": "magic"}},
        ("spec.warmBuffer.policy", "Unsupported value"),
    ),
    ("buffer-confidence-one", {"warmBuffer": {"confidence": 1.0}}, ("spec.warmBuffer.confidence",)),
    (
        "buffer-without-gpus",
        {"resources": {"gpu": 0}, "warmBuffer": {"enabled": True}},
        ("spec.warmBuffer.enabled", "needs resources.gpu > 0"),
    ),
    # Tenants name an admin-declared storage root, never a node path or a volume (policy/tenancy.py).
    (
        "storage-node-root-path",
        {"checkpoint": {"storage": {"path": "/"}}},
        ('unknown field "spec.checkpoint.storage.path"',),
    ),
    (
        "storage-invented-hostpath",
        {"checkpoint": {"storage": {"hostPath": "/etc"}}},
        ('unknown field "spec.checkpoint.storage.hostPath"',),
    ),
    (
        "storage-subpath-climbs-out",
        {"checkpoint": {"storage": {"subPath": "a/../../other-ns"}}},
        ("spec.checkpoint.storage.subPath", "no '.' or '..' parts"),
    ),
    (
        "storage-subpath-absolute",
        {"checkpoint": {"storage": {"subPath": "/etc"}}},
        ("spec.checkpoint.storage.subPath", "no leading '/'"),
    ),
    (
        "storage-root-not-a-name",
        {"checkpoint": {"storage": {"root": "../x"}}},
        ("spec.checkpoint.storage.root",),
    ),
    ("checkpoint-keep-zero", {"checkpoint": {"keep": 0}}, ("spec.checkpoint.keep",)),
    (
        "unknown-restore-policy",
        {"checkpoint": {"restorePolicy": "Always"}},
        ("spec.checkpoint.restorePolicy", "Unsupported value"),
    ),
    ("typo-in-field-name", {"replica": 3}, ('unknown field "spec.replica"',)),
]
