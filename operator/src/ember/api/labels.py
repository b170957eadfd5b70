"""Label and annotation keys: the vocabulary shared by the operator, the chart, the simulator and tests."""

PREFIX = "serving.ember.dev"
ISVC = f"{PREFIX}/inferenceservice"  # owner InferenceService name
COMPONENT = f"{PREFIX}/component"  # replica | placeholder
SERVING = f"{PREFIX}/serving"  # "true" while in the Service; "false" while draining
TEMPLATE_HASH = f"{PREFIX}/template-hash"  # hash of the pod-shaping spec: a change rolls replicas
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "ember"

DRAIN_STARTED = f"{PREFIX}/drain-started"  # annotation: RFC 3339 time the drain began
START_PATH = f"{PREFIX}/start-path"  # annotation: cold | restore
GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

REPLICA = "replica"
PLACEHOLDER = "placeholder"
