"""Invalid InferenceService specs and names, the field each must be refused on, and valid ones.

Shared by the unit tier (the pydantic models refuse each one, located at the same field) and the
integration tier (the real API server refuses each one at `kubectl apply`, with a message naming the
field): the two must agree. `ACCEPTED` and `ACCEPTED_NAMES` are their counterparts that must pass both.
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
    (
        "served-name-with-space",
        {"model": {"servedName": "my model"}},
        ("spec.model.servedName", "the name clients send as `model`"),
    ),
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
    (
        "sleeping-over-max",
        {"scaling": {"maxReplicas": 2, "sleep": {"maxSleeping": 3}}},
        ("spec.scaling.sleep.maxSleeping", "must not exceed maxReplicas"),
    ),
    ("sleeping-negative", {"scaling": {"sleep": {"maxSleeping": -1}}}, ("spec.scaling.sleep.maxSleeping",)),
    (
        "sleep-delete-after-zero",
        {"scaling": {"sleep": {"maxSleeping": 1, "deleteAfterSeconds": 0}}},
        ("spec.scaling.sleep.deleteAfterSeconds",),
    ),
    ("sleep-tier-unknown", {"scaling": {"sleep": {"tier": "hibernate"}}}, ("spec.scaling.sleep.tier",)),
    (
        "sleep-tier-gpu-on-cpu",
        {"resources": {"gpu": 0}, "scaling": {"sleep": {"maxSleeping": 1, "tier": "sleep"}}},
        ("spec.scaling.sleep.tier", "need resources.gpu > 0"),
    ),
    (
        "suspend-tier-on-cpu",
        {"resources": {"gpu": 0}, "scaling": {"sleep": {"maxSleeping": 1, "tier": "suspend"}}},
        ("spec.scaling.sleep.tier", "need resources.gpu > 0"),
    ),
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
    (
        "unknown-weight-loader",
        {"engine": {"weightLoader": "fast"}},
        ("spec.engine.weightLoader", "Unsupported value"),
    ),
    ("port-privileged", {"engine": {"port": 80}}, ("spec.engine.port",)),
    ("max-model-len-tiny", {"engine": {"maxModelLen": 4}}, ("spec.engine.maxModelLen",)),
    (
        "env-bad-name",
        {"engine": {"env": [{"name": "1BAD", "value": "x"}]}},
        ("spec.engine.env[0].name", "a variable name"),
    ),
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
    # ---- model.uri: paths out of the claim or the image, schemes in a sentence
    ("uri-pvc-dotdot", {"model": {"uri": "pvc://claim/../../x"}}, ("spec.model.uri", "'..' path segments")),
    (
        "uri-file-dotdot",
        {"model": {"uri": "file:///models/../../etc/shadow"}},
        ("spec.model.uri", "'..' path segments"),
    ),
    ("uri-pvc-dotdot-at-end", {"model": {"uri": "pvc://claim/models/.."}}, ("spec.model.uri", "'..'")),
    (
        "uri-unknown-scheme-in-a-sentence",
        {"model": {"uri": "ftp://host/model"}},
        ("spec.model.uri", "unknown scheme 'ftp'; use hf://org/name", "pvc://claim/path", "file:///path"),
    ),
    (
        "uri-without-scheme",
        {"model": {"uri": "meta-llama/Llama-3.1-8B"}},
        ("spec.model.uri", "no scheme; use hf://org/name"),
    ),
    (
        "uri-hf-three-parts",
        {"model": {"uri": "hf://org/name/extra"}},
        ("spec.model.uri", "hf:// takes a Hugging Face repository id, org/name"),
    ),
    (
        "uri-pvc-without-claim",
        {"model": {"uri": "pvc:///models"}},
        ("spec.model.uri", "pvc:// takes a claim"),
    ),
    (
        "uri-file-relative",
        {"model": {"uri": "file://models/llama"}},
        ("spec.model.uri", "file:// takes an absolute path"),
    ),
    ("uri-too-long", {"model": {"uri": "hf://org/" + "m" * 520}}, ("spec.model.uri", "Too long")),
    ("revision-empty", {"model": {"revision": ""}}, ("spec.model.revision", "a branch, tag or commit")),
    ("revision-dotdot", {"model": {"revision": "../../../x"}}, ("spec.model.revision", "no '..'")),
    ("revision-with-space", {"model": {"revision": "main branch"}}, ("spec.model.revision", "no spaces")),
    # ---- quantities Kubernetes would refuse at pod creation, or that make no pod that works
    ("cpu-negative", {"resources": {"cpu": "-4"}}, ("spec.resources.cpu", "must be a quantity of 0 or more")),
    ("cpu-negative-integer", {"resources": {"cpu": -4}}, ("spec.resources.cpu", "quantity of 0 or more")),
    ("cpu-with-a-word", {"resources": {"cpu": "4 cores"}}, ("spec.resources.cpu", "must be a quantity")),
    ("cpu-boolean", {"resources": {"cpu": True}}, ("spec.resources.cpu",)),
    # a fraction must be a string ("0.5" or 500m): the schema takes an integer or a string
    ("cpu-fraction-as-a-number", {"resources": {"cpu": 0.5}}, ("spec.resources.cpu", "integer,string")),
    (
        "memory-two-dots",
        {"resources": {"memory": "1.2.3Gi"}},
        ("spec.resources.memory", "must be a quantity"),
    ),
    ("memory-lowercase-unit", {"resources": {"memory": "16gi"}}, ("spec.resources.memory", "Gi, not gi")),
    ("memory-zero", {"resources": {"memory": "0"}}, ("spec.resources.memory", "more than 0")),
    ("memory-negative", {"resources": {"memory": "-1Gi"}}, ("spec.resources.memory", "more than 0")),
    # ---- podMetadata: only valid labels and annotations, none of Ember's own keys
    (
        "label-key-with-space",
        {"podMetadata": {"labels": {"my team": "ml"}}},
        ("spec.podMetadata.labels", "label key 'my team' is not valid"),
    ),
    (
        "label-key-starting-with-dash",
        {"podMetadata": {"labels": {"-team": "ml"}}},
        ("spec.podMetadata.labels", "label key '-team' is not valid"),
    ),
    (
        "label-key-name-too-long",
        {"podMetadata": {"labels": {"example.com/" + "k" * 64: "v"}}},
        ("spec.podMetadata.labels", "is not valid"),
    ),
    (
        "label-key-uppercase-prefix",
        {"podMetadata": {"labels": {"Example.com/team": "ml"}}},
        ("spec.podMetadata.labels", "is not valid"),
    ),
    (
        "label-value-with-space",
        {"podMetadata": {"labels": {"team": "machine learning"}}},
        ("spec.podMetadata.labels[team]", "must be a label value"),
    ),
    (
        "label-value-too-long",
        {"podMetadata": {"labels": {"team": "v" * 64}}},
        ("spec.podMetadata.labels.team", "Too long"),
    ),
    (
        "label-value-ending-with-dot",
        {"podMetadata": {"labels": {"version": "1.0."}}},
        ("spec.podMetadata.labels[version]", "must be a label value"),
    ),
    (
        "label-key-of-ember",
        {"podMetadata": {"labels": {"serving.ember.dev/serving": "false"}}},
        ("spec.podMetadata.labels", "label key 'serving.ember.dev/serving' is Ember's own"),
    ),
    (
        "label-instance-of-ember",
        {"podMetadata": {"labels": {"app.kubernetes.io/instance": "other"}}},
        ("spec.podMetadata.labels", "is Ember's own"),
    ),
    (
        "labels-too-many",
        {"podMetadata": {"labels": {f"l{i}": "v" for i in range(33)}}},
        ("spec.podMetadata.labels", "must have at most 32 items"),
    ),
    (
        "annotation-key-invalid",
        {"podMetadata": {"annotations": {"note:": "x"}}},
        ("spec.podMetadata.annotations", "annotation key 'note:' is not valid"),
    ),
    (
        "annotation-drain-mark",
        {"podMetadata": {"annotations": {"serving.ember.dev/drain-started": "2026-01-01T00:00:00Z"}}},
        ("spec.podMetadata.annotations", "annotation key 'serving.ember.dev/drain-started' is Ember's own"),
    ),
    # ---- engine: an image the kubelet can parse; no flag or variable that fights Ember's own
    (
        "image-with-space",
        {"engine": {"image": "vllm/vllm-openai: v0.25.1"}},
        ("spec.engine.image", "not an image reference"),
    ),
    ("image-uppercase", {"engine": {"image": "vllm/vLLM-openai:latest"}}, ("spec.engine.image", "lowercase")),
    (
        "args-set-the-port",
        {"engine": {"args": ["--enforce-eager", "--port", "9000"]}},
        ("spec.engine.args", "must not repeat the flags Ember sets", "engine.port"),
    ),
    (
        "args-set-the-model-with-equals",
        {"engine": {"args": ["--model=/other"]}},
        ("spec.engine.args", "must not repeat the flags"),
    ),
    ("args-set-tp-short", {"engine": {"args": ["-tp", "2"]}}, ("spec.engine.args", "--tensor-parallel-size")),
    ("args-underscore-flag", {"engine": {"args": ["--max_model_len=4096"]}}, ("spec.engine.args",)),
    (
        "env-ember-reserved",
        {"engine": {"env": [{"name": "EMBER_SUPERVISOR_CONFIG_JSON", "value": "{}"}]}},
        ("spec.engine.env[0].name", "names starting with EMBER_ are set by Ember"),
    ),
    # ---- priority classes
    (
        "priority-class-with-space",
        {"resources": {"priorityClassName": "Ember Serving"}},
        ("spec.resources.priorityClassName", "must be a PriorityClass name"),
    ),
    (
        "buffer-priority-equal-to-serving",
        {"warmBuffer": {"enabled": True, "priorityClassName": "ember-serving"}},
        ("spec.warmBuffer.priorityClassName", "must differ from resources.priorityClassName"),
    ),
    # ---- engine env from Secrets and ConfigMaps
    (
        "env-value-and-value-from",
        {
            "engine": {
                "env": [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
            }
        },
        ("spec.engine.env[0].valueFrom", "value and valueFrom are exclusive"),
    ),
    (
        "env-value-from-two-sources",
        {
            "engine": {
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {
                            "secretKeyRef": {"name": "s", "key": "k"},
                            "configMapKeyRef": {"name": "c", "key": "k"},
                        },
                    }
                ]
            }
        },
        ("spec.engine.env[0].valueFrom.secretKeyRef", "exactly one of secretKeyRef, configMapKeyRef"),
    ),
    (
        "env-value-from-empty",
        {"engine": {"env": [{"name": "A", "valueFrom": {}}]}},
        ("spec.engine.env[0].valueFrom.secretKeyRef", "exactly one of"),
    ),
    (
        "env-secret-name-uppercase",
        {
            "engine": {
                "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "My-Secret", "key": "k"}}}]
            }
        },
        ("spec.engine.env[0].valueFrom.secretKeyRef.name", "must be an object name"),
    ),
    (
        "env-secret-key-with-slash",
        {"engine": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}]}},
        ("spec.engine.env[0].valueFrom.secretKeyRef.key", "must be a key of the Secret or ConfigMap"),
    ),
    (
        "env-from-two-sources",
        {"engine": {"envFrom": [{"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]}},
        ("spec.engine.envFrom[0].secretRef", "an envFrom entry takes one source"),
    ),
    (
        "env-from-bad-prefix",
        {"engine": {"envFrom": [{"prefix": "1X_", "secretRef": {"name": "s"}}]}},
        ("spec.engine.envFrom[0].prefix", "a variable name"),
    ),
    (
        "hf-token-twice",
        {
            "engine": {
                "hfTokenSecret": {"name": "hf", "key": "token"},
                "env": [{"name": "HF_TOKEN", "value": "hf_x"}],
            }
        },
        ("spec.engine.hfTokenSecret", "hfTokenSecret sets HF_TOKEN"),
    ),
    (
        "hf-token-without-key",
        {"engine": {"hfTokenSecret": {"name": "hf"}}},
        ("spec.engine.hfTokenSecret.key", "Required"),
    ),
    # ---- spec.template: what a tenant's own pod could have, nothing more (kube/shaping.py)
    (
        "template-host-path-volume",
        {"template": {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}},
        ("spec.template.spec.volumes[0].hostPath", "hostPath volumes are not allowed"),
    ),
    (
        "template-privileged",
        {"template": {"spec": {"securityContext": {"privileged": True}}}},
        ("spec.template.spec.securityContext", "never privileged"),
    ),
    (
        "template-host-network",
        {"template": {"spec": {"hostNetwork": True}}},
        ("spec.template.spec.hostNetwork", "hostNetwork is not allowed"),
    ),
    (
        "template-host-pid",
        {"template": {"spec": {"hostPID": True}}},
        ("spec.template.spec.hostPID", "hostPID is not allowed"),
    ),
    (
        "template-containers",
        {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}]}}},
        ('unknown field "spec.template.spec.containers"',),
    ),
    (
        "template-node-name",
        {"template": {"spec": {"nodeName": "gpu-0"}}},
        ('unknown field "spec.template.spec.nodeName"',),
    ),
    (
        "template-volume-reserved-name",
        {"template": {"spec": {"volumes": [{"name": "state", "emptyDir": {}}]}}},
        ("spec.template.spec.volumes[0].name", "are Ember's own"),
    ),
    (
        "template-volume-ember-prefix",
        {"template": {"spec": {"volumes": [{"name": "ember-cache", "emptyDir": {}}]}}},
        ("spec.template.spec.volumes[0].name", "are Ember's own"),
    ),
    (
        "template-volume-two-sources",
        {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]}}},
        ("spec.template.spec.volumes[0].secret", "a volume takes one source"),
    ),
    (
        "template-volume-no-source",
        {"template": {"spec": {"volumes": [{"name": "v"}]}}},
        ("spec.template.spec.volumes[0].secret", "exactly one of"),
    ),
    (
        "template-volume-unsupported-source",
        {"template": {"spec": {"volumes": [{"name": "v", "nfs": {"server": "x", "path": "/"}}]}}},
        ('unknown field "spec.template.spec.volumes[0].nfs"',),
    ),
    (
        "template-mount-without-volume",
        {"template": {"spec": {"volumeMounts": [{"name": "nope", "mountPath": "/data"}]}}},
        ("spec.template.spec.volumeMounts", "every volumeMount must name one of"),
    ),
    (
        "template-mount-over-ember-state",
        {
            "template": {
                "spec": {
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "volumeMounts": [{"name": "v", "mountPath": "/var/lib/ember/state"}],
                }
            }
        },
        ("spec.template.spec.volumeMounts[0].mountPath", "are Ember's own mounts"),
    ),
    (
        "template-mount-relative",
        {
            "template": {
                "spec": {
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "volumeMounts": [{"name": "v", "mountPath": "data"}],
                }
            }
        },
        ("spec.template.spec.volumeMounts[0].mountPath", "must be an absolute path"),
    ),
    (
        "template-mount-subpath-climbs-out",
        {
            "template": {
                "spec": {
                    "volumes": [{"name": "v", "emptyDir": {}}],
                    "volumeMounts": [{"name": "v", "mountPath": "/data", "subPath": "../../x"}],
                }
            }
        },
        ("spec.template.spec.volumeMounts[0].subPath", "without '..' parts"),
    ),
    (
        "template-secret-item-absolute-path",
        {
            "template": {
                "spec": {
                    "volumes": [
                        {
                            "name": "v",
                            "secret": {"secretName": "s", "items": [{"key": "k", "path": "/etc/x"}]},
                        }
                    ]
                }
            }
        },
        ("spec.template.spec.volumes[0].secret.items[0].path", "must be a relative path"),
    ),
    (
        "template-toleration-bad-effect",
        {"template": {"spec": {"tolerations": [{"key": "gpu", "effect": "NoRun"}]}}},
        ("spec.template.spec.tolerations[0].effect", "Unsupported value"),
    ),
    (
        "template-toleration-exists-with-value",
        {"template": {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"}]}}},
        ("spec.template.spec.tolerations[0].value", "operator Exists matches any value"),
    ),
    (
        "template-node-selector-bad-key",
        {"template": {"spec": {"nodeSelector": {"bad key": "x"}}}},
        ("spec.template.spec.nodeSelector", "not valid"),
    ),
    (
        "template-affinity-bad-operator",
        {
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "zone", "operator": "Near"}]}
                                ]
                            }
                        }
                    }
                }
            }
        },
        (
            "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            ".nodeSelectorTerms[0].matchExpressions[0].operator",
            "Unsupported value",
        ),
    ),
    (
        "template-spread-bad-when",
        {
            "template": {
                "spec": {
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "Maybe",
                        }
                    ]
                }
            }
        },
        ("spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable", "Unsupported value"),
    ),
    (
        "template-service-account-uppercase",
        {"template": {"spec": {"serviceAccountName": "Engine"}}},
        ("spec.template.spec.serviceAccountName", "must be an object name"),
    ),
    (
        "template-runtime-class-with-space",
        {"template": {"spec": {"runtimeClassName": "nvidia runtime"}}},
        ("spec.template.spec.runtimeClassName", "must be an object name"),
    ),
    (
        "template-label-of-ember",
        {"template": {"metadata": {"labels": {"serving.ember.dev/serving": "true"}}}},
        ("spec.template.metadata.labels", "is Ember's own"),
    ),
    # ---- model.uri: object stores and images (issue 17), credentials only where they are used
    (
        "uri-s3-without-bucket",
        {"model": {"uri": "s3:///models/llama"}},
        ("spec.model.uri", "s3:// takes a bucket name"),
    ),
    (
        "uri-gs-uppercase-bucket",
        {"model": {"uri": "gs://Models/llama"}},
        ("spec.model.uri", "gs:// takes a bucket name"),
    ),
    (
        "uri-oci-not-an-image",
        {"model": {"uri": "oci://Registry/Llama:v1"}},
        ("spec.model.uri", "oci:// takes an image reference"),
    ),
    (
        "credentials-secret-with-hf",
        {"model": {"credentialsSecret": {"name": "s3"}}},
        ("spec.model.credentialsSecret", "credentialsSecret is for s3:// and gs:// models"),
    ),
]

# (id, metadata.name, substrings the API server's message must contain); the spec is BASE
NAME_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("name-74-characters", "a" * 74, ("metadata.name", "at most 50 characters")),
    ("name-51-characters", "a" * 51, ("metadata.name", "at most 50 characters")),
    ("name-with-dots", "llama.3", ("metadata.name", "no dots", "Service")),
    ("name-starting-with-digit", "3b-chat", ("metadata.name", "starting with a letter")),
    ("name-ending-in-buffer", "chat-buffer", ("metadata.name", "must not end in '-buffer'")),
]

# (id, patch over BASE): valid specs that both must accept, and the API server store as the models hold
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    (
        "sleep-freeze-on-cpu",
        {
            "resources": {"gpu": 0},
            "scaling": {"maxReplicas": 3, "sleep": {"maxSleeping": 3, "tier": "freeze"}},
        },
    ),
    ("sleep-auto-on-cpu", {"resources": {"gpu": 0}, "scaling": {"sleep": {"maxSleeping": 1}}}),
    (
        "sleep-gpu-tier",
        {
            "resources": {"gpu": 1},
            "scaling": {"sleep": {"maxSleeping": 2, "deleteAfterSeconds": 600, "tier": "sleep"}},
        },
    ),
    ("cpu-integer", {"resources": {"cpu": 4}}),
    ("cpu-millicores", {"resources": {"cpu": "500m"}}),
    ("cpu-fraction-string", {"resources": {"cpu": "0.5"}}),
    ("cpu-zero", {"resources": {"cpu": "0"}}),
    ("memory-gi", {"resources": {"memory": "16Gi"}}),
    ("memory-fraction", {"resources": {"memory": "1.5Gi"}}),
    ("memory-exponent", {"resources": {"memory": "129e6"}}),
    ("uri-pvc-dots-inside-a-name", {"model": {"uri": "pvc://models.shared/llama..v2/weights"}}),
    ("uri-pvc-claim-only", {"model": {"uri": "pvc://models"}}),
    ("uri-file", {"model": {"uri": "file:///models/./qwen2.5-0.5b"}}),
    ("revision-pr-ref", {"model": {"revision": "refs/pr/1"}}),
    ("revision-commit", {"model": {"revision": "0123456789abcdef0123456789abcdef01234567"}}),
    (
        "labels-and-annotations",
        {
            "podMetadata": {
                "labels": {"team": "ml", "example.com/cost-center": "a_b.c-1", "empty": ""},
                "annotations": {"example.com/owner": "Jane Doe <jane@example.com>", "note": ""},
            }
        },
    ),
    (
        "image-with-registry-port-and-digest",
        {"engine": {"image": "registry.local:5000/ember/replica@sha256:" + "a" * 64}},
    ),
    ("image-tag", {"engine": {"image": "vllm/vllm-openai:v0.25.1-cu128"}}),
    (
        "args-other-flags",
        {"engine": {"args": ["--enforce-eager", "--gpu-memory-utilization=0.85", "--model-impl", "vllm"]}},
    ),
    ("buffer-own-priority", {"warmBuffer": {"enabled": True, "priorityClassName": "team-buffer"}}),
    (
        "env-from-secrets-and-config-maps",
        {
            "engine": {
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "app.conf"}}},
                ],
                "envFrom": [{"prefix": "X_", "secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"}}],
            }
        },
    ),
    ("hf-token-secret", {"engine": {"hfTokenSecret": {"name": "hf-token", "key": "token"}}}),
    ("gpu-type-gfd-value", {"resources": {"gpuType": "NVIDIA-H100-80GB-HBM3"}}),
    (
        "template-full",
        {
            "template": {
                "metadata": {"labels": {"team": "ml"}, "annotations": {"example.com/a": "b"}},
                "spec": {
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                    ],
                    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "zone", "operator": "In", "values": ["a", "b"]}
                                        ]
                                    }
                                ]
                            },
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 10,
                                    "preference": {
                                        "matchExpressions": [{"key": "spot", "operator": "DoesNotExist"}]
                                    },
                                }
                            ],
                        },
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 50,
                                    "podAffinityTerm": {
                                        "labelSelector": {
                                            "matchLabels": {"serving.ember.dev/inferenceservice": "ok"}
                                        },
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        },
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                        }
                    ],
                    "serviceAccountName": "engine",
                    "imagePullSecrets": [{"name": "regcred"}],
                    "runtimeClassName": "nvidia",
                    "volumes": [
                        {
                            "name": "conf",
                            "configMap": {"name": "engine-conf", "items": [{"key": "a", "path": "a.json"}]},
                        },
                        {"name": "creds", "secret": {"secretName": "s3", "defaultMode": 256}},
                        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                        {
                            "name": "weights",
                            "persistentVolumeClaim": {"claimName": "weights", "readOnly": True},
                        },
                    ],
                    "volumeMounts": [
                        {"name": "conf", "mountPath": "/etc/engine", "readOnly": True},
                        {"name": "weights", "mountPath": "/weights", "subPath": "llama"},
                    ],
                },
            }
        },
    ),
    (
        "model-s3-with-credentials",
        {"model": {"uri": "s3://models/llama-3-8b", "credentialsSecret": {"name": "s3"}}},
    ),
    ("model-gs", {"model": {"uri": "gs://my-bucket/llama"}}),
    ("model-oci-image", {"model": {"uri": "oci://ghcr.io/acme/llama-3-8b:v1"}}),
]
ACCEPTED_NAMES: list[tuple[str, str]] = [
    ("name-50-characters", "a" * 50),
    ("name-with-digits-and-dashes", "llama-3-8b-instruct"),
    ("name-buffer-inside", "buffered-chat"),
]
