{{/* Name of the chart, overridable. */}}
{{- define "ember.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, plus the chart name unless the release name already contains it. */}}
{{- define "ember.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ember.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ember.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every object but the component, which each object names once (operator, test). */}}
{{- define "ember.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ember.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ember
{{- end }}

{{- define "ember.labels" -}}
{{ include "ember.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ember.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ember.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ember.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Leader election: explicit value, else on exactly when more than one replica may run. */}}
{{- define "ember.leaderElection" -}}
{{- if kindIs "bool" .Values.operator.leaderElection.enabled }}
{{- .Values.operator.leaderElection.enabled }}
{{- else }}
{{- gt (int .Values.replicaCount) 1 }}
{{- end }}
{{- end }}

{{/* The prometheus-operator API, when the cluster serves it (ServiceMonitor, PrometheusRule). */}}
{{- define "ember.hasMonitoringAPI" -}}
{{- .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}
{{- end }}

{{/*
Rules on namespaced resources, the same whether granted cluster-wide (ClusterRole) or per watched
namespace (Role). Each rule is what a code path in operator/src/ember needs; nothing is a wildcard.
*/}}
{{- define "ember.workloadRules" -}}
# kopf lists and watches InferenceServices to run one reconcile loop (daemon) per object, and patches
# them to keep its own bookkeeping (finalizer, progress annotations under serving.ember.dev/).
# No create/delete/update: users own these objects.
- apiGroups: ["serving.ember.dev"]
  resources: ["inferenceservices"]
  verbs: ["list", "watch", "patch"]
# kube/client.py patch_status: replicas, readyReplicas, conditions, lastDecision via /status.
- apiGroups: ["serving.ember.dev"]
  resources: ["inferenceservices/status"]
  verbs: ["patch"]
# Replica pods: kopf's index and event handler list/watch them (only Ember-labelled ones are kept);
# executor.py creates them on scale-up, patches labels/annotations to drain them, deletes them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# One Service per InferenceService: created, read back and patched if its selector drifted
# (ensure_service); watched so that a deleted Service is recreated.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# One Secret per InferenceService holding its supervisor's token (executor.ensure_service creates it,
# owned by the InferenceService; replica pods read it through secretKeyRef), read back by name when the
# operator calls the supervisor (handlers/checkpoint.py). No list/watch/update/delete: only its own, by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# Pod shaping (kube/shaping.py): before creating replicas, the Secrets and ConfigMaps a spec names
# (engine.env valueFrom, envFrom, hfTokenSecret, template volumes) are read by name to report a
# missing one as Degraded; only their keys are used, never a value.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# The model cache's claim (modelCache.persistentVolumeClaim, kube/shaping.py): read by name before
# creating hf:// replicas, to report a missing one as Degraded rather than leave pods Pending.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# Routing (kube/routing.py): the Ember-owned EndpointSlice of each Service, written by server-side
# apply (create + patch); the activator's own slices are listed to route Services at zero to it.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "create", "patch"]
# kopf posts core/v1 Events (POST only, never updates them) that explain every action and failure.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* PriorityClass of the operator and activator pods: the admin's, else the chart's control class */}}
{{- define "ember.controlPriorityClass" -}}
{{- default .Values.priorityClasses.control.name .Values.priorityClassName }}
{{- end }}
