{{/* Names, labels, the checks that refuse bad values, and the RBAC rules. */}}

{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modeldeploy.fullname" -}}
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

{{- define "modeldeploy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's own objects never carry app.kubernetes.io/managed-by=modeldeploy: that label marks the
model-server children it creates (and the model PodMonitor selects it). */}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ include "modeldeploy.chart" . }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The name of shard i's Deployment (and, with ha.enabled, of its ClusterKopfPeering), from (list . i):
<fullname>-shard-<i> when sharded, the full name when not. */}}
{{- define "modeldeploy.shardName" -}}
{{- $root := index . 0 }}
{{- if gt (int $root.Values.sharding.shards) 1 }}
{{- printf "%s-shard-%d" (include "modeldeploy.fullname" $root | trunc 54 | trimSuffix "-") (index . 1) }}
{{- else }}
{{- include "modeldeploy.fullname" $root }}
{{- end }}
{{- end }}

{{/* The label that tells shard i's pods apart, from (list . i); nothing when unsharded. */}}
{{- define "modeldeploy.shardLabel" -}}
{{- if gt (int (index . 0).Values.sharding.shards) 1 }}
modeldeploy.io/shard: {{ index . 1 | quote }}
{{- end }}
{{- end }}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modeldeploy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Values the schema cannot refuse on its own. Every template includes this, so `helm template` and
`helm install` fail with the reason instead of rendering something that would not work. */}}
{{- define "modeldeploy.validate" -}}
{{- if and .Values.ha.enabled (ne .Values.rbac.scope "cluster") }}
{{- fail "ha.enabled=true needs rbac.scope=cluster: the replicas elect one active operator through a ClusterKopfPeering" }}
{{- end }}
{{- if and .Values.ha.enabled (eq (.Values.strategy.type | default "") "Recreate") }}
{{- fail "strategy.type=Recreate with ha.enabled would stop every replica at once; leave strategy empty (RollingUpdate, maxUnavailable 0) or set RollingUpdate" }}
{{- end }}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- if not .Values.watchNamespaces }}
{{- fail "rbac.scope=namespaced needs at least one namespace in watchNamespaces" }}
{{- end }}
{{- else if .Values.watchNamespaces }}
{{- fail "watchNamespaces is only used with rbac.scope=namespaced; with rbac.scope=cluster the operator serves every namespace, so leave watchNamespaces empty" }}
{{- end }}
{{- end }}

{{/* What the operator does inside each namespace it serves. Exactly the calls it makes: no `*`, no Secrets,
no Pods, no ConfigMaps. */}}
{{- define "modeldeploy.namespacedRules" -}}
# The ModelDeployments it serves: watch them, patch them, and write their status.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch", "update"]
# Children carry ownerReferences with blockOwnerDeletion, which needs update on the owner's finalizers.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# The children: the serving Deployment, Service and HorizontalPodAutoscaler, and the canary routers.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Events on the ModelDeployments.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# AnalysisTemplates that ModelDeployments reference, read while a canary's analysis measures.
- apiGroups: ["modeldeploy.io"]
  resources: ["analysistemplates"]
  verbs: ["get"]
# The serving pods' model-fetch reports (digest, or why it failed), read while a revision's pods are not ready.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}

{{/* ClusterAnalysisTemplates (cluster-scoped) that ModelDeployments reference, read while a canary's analysis
measures. */}}
{{- define "modeldeploy.clusterTemplateRules" -}}
- apiGroups: ["modeldeploy.io"]
  resources: ["clusteranalysistemplates"]
  verbs: ["get"]
{{- end }}

{{/* Kopf watches CustomResourceDefinitions (cluster-scoped) to notice when the resources it serves appear,
change or go. It runs --standalone, so it needs no KopfPeering objects. */}}
{{- define "modeldeploy.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* The Deployment strategy: the one set in values, else Recreate for one standalone replica and, with HA, a rolling
update that starts a new replica before it stops an old one (the peering keeps one of them working). */}}
{{- define "modeldeploy.strategy" -}}
{{- if .Values.strategy -}}
{{ toYaml .Values.strategy }}
{{- else if .Values.ha.enabled -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- else -}}
type: Recreate
{{- end }}
{{- end }}
