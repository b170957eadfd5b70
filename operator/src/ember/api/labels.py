"""Label and annotation keys: the vocabulary shared by the operator, the chart, the simulator and tests."""

PREFIX = "serving.ember.dev"
ISVC = f"{PREFIX}/inferenceservice"  # owner InferenceService name
COMPONENT = f"{PREFIX}/component"  # replica | placeholder
SERVING = f"{PREFIX}/serving"  # "true" while in the Service; "false" while draining
TEMPLATE_HASH = f"{PREFIX}/template-hash"  # hash of the pod-shaping spec: a change rolls replicas
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "ember"

STATE = f"{PREFIX}/state"  # "sleeping" while parked (absent otherwise); an operator restart reads it
SLEEPING = "sleeping"
SLEEP_STARTED = f"{PREFIX}/sleep-started"  # annotation: RFC 3339 time the pod was parked
DRAIN_STARTED = f"{PREFIX}/drain-started"  # annotation: RFC 3339 time the drain began
# annotations on a serving pod that waits for GPUs: a sleeper was deleted for it (policy/gpuyield.py)
GPU_YIELDED_AT = f"{PREFIX}/gpu-yielded-at"  # RFC 3339
GPU_YIELDED_BY = f"{PREFIX}/gpu-yielded-by"  # the sleeper, "namespace/name"
START_PATH = f"{PREFIX}/start-path"  # annotation: cold | restore
# routing (kube/routing.py): the Ember-owned EndpointSlice of a Service says where it routes
ROUTE = f"{PREFIX}/route"  # label on the EndpointSlice: replicas | activator | none
ENDPOINTSLICE_MANAGER = "operator.serving.ember.dev"  # endpointslice.kubernetes.io/managed-by
HOLD_KEEPALIVE = f"{PREFIX}/hold-keepalive"  # annotation on an InferenceService: "true" opts in
GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

REPLICA = "replica"
PLACEHOLDER = "placeholder"
