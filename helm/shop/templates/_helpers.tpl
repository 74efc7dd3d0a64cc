{{/* The release-scoped name prefix. */}}
{{- define "shop.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; call with (dict "root" $ "component" "user"). */}}
{{- define "shop.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: shop
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels that select one component's pods. */}}
{{- define "shop.selectorLabels" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The values of component `.component`: services.<name>, or gateway. */}}
{{- define "shop.componentValues" -}}
{{- if eq .component "gateway" -}}
{{- toYaml .root.Values.gateway -}}
{{- else -}}
{{- toYaml (index .root.Values.services .component) -}}
{{- end -}}
{{- end -}}

{{/* The image of binary `.name` (user, catalog, order, gateway). */}}
{{- define "shop.image" -}}
{{- $override := index (default dict .root.Values.image.overrides) .name -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- $component := fromYaml (include "shop.componentValues" (dict "root" .root "component" .name)) -}}
{{- $repository := printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) $component.image.repository -}}
{{- if $component.image.digest -}}
{{- printf "%s@%s" $repository $component.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The fully qualified DNS name of service `.name`'s headless Service, with the final dot. */}}
{{- define "shop.serviceHost" -}}
{{- printf "%s-%s.%s.svc.%s." (include "shop.fullname" .root) .name .root.Release.Namespace (trimSuffix "." .root.Values.clusterDomain) -}}
{{- end -}}

{{/* The in-cluster gRPC target of service `.name`: every ready pod behind its headless Service. */}}
{{- define "shop.target" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "dns:///%s:%v" (include "shop.serviceHost" .) $svc.port -}}
{{- end -}}

{{/* The ServiceAccount the release's pods run as. */}}
{{- define "shop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Pod-level hardening shared by every workload. */}}
{{- define "shop.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Container-level hardening shared by every container. */}}
{{- define "shop.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: 10001
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* A key of the backends Secret as an env var: (dict "root" $ "name" "REDIS_URL" "key" "REDIS_URL" "optional" false). */}}
{{- define "shop.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.secretName }}, key: {{ default .name .key }}{{ if .optional }}, optional: true{{ end }}}
{{- end -}}

{{/*
A component's mesh identity: its key and the trust set from the mesh Secret, the grants and the
tokens' life from values. Call with (dict "root" $ "name" "user").
*/}}
{{- define "shop.meshEnv" -}}
- name: SHOP_MESH_KEY
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.mesh.secretName }}, key: {{ .name }}.key}
- name: SHOP_MESH_TRUST
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.mesh.secretName }}, key: trust}
- name: SHOP_MESH_TOKEN_TTL
  value: {{ .root.Values.mesh.tokenTtl | quote }}
{{- with .root.Values.mesh.grants }}
- name: SHOP_MESH_GRANTS
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Environment shared by every component: logs, telemetry and the cache. */}}
{{- define "shop.commonEnv" -}}
- name: SHOP_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.config.logFilter | quote }}
{{- $otlp := .Values.config.otlpEndpoint }}
{{- if and (not $otlp) .Values.otelCollector.enabled }}
{{- $otlp = printf "http://%s-otel-collector.%s.svc.cluster.local:4317" (include "shop.fullname" .) .Release.Namespace }}
{{- end }}
{{- if $otlp }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $otlp | quote }}
{{- end }}
{{ include "shop.secretEnv" (dict "root" . "name" "REDIS_URL") }}
{{- end -}}

{{/* The environment operators add (global, then the component's): call with the component ctx. */}}
{{- define "shop.extraEnv" -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- $env := concat (default list .root.Values.global.extraEnv) (default list $c.extraEnv) -}}
{{- if $env }}
{{ toYaml $env }}
{{- end -}}
{{- end -}}

{{/* envFrom of a component (global, then the component's); empty when there is none. */}}
{{- define "shop.envFrom" -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- $from := concat (default list .root.Values.global.extraEnvFrom) (default list $c.extraEnvFrom) -}}
{{- if $from -}}
envFrom:
  {{- toYaml $from | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
The checksum of the backends Secret's data, on every pod template, so that a changed Secret rolls
the pods on the next upgrade: of the data the chart renders when it creates the Secret, else of
the Secret found in the cluster (nothing under `helm template`, where lookup finds nothing).
*/}}
{{- define "shop.secretChecksum" -}}
{{- if .Values.devBackends.enabled -}}
{{- include "shop.devSecretData" . | sha256sum -}}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.secretName -}}
{{- if $secret -}}
{{- toJson (get $secret "data") | sha256sum -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Pod metadata and scheduling for a component's pod template, merged from global and the
component's values. Call with (dict "root" $ "component" "user"); renders `metadata:` and the
spec fields up to (not including) `containers:`.
*/}}
{{- define "shop.podMeta" -}}
{{- $root := .root -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- $g := $root.Values.global -}}
{{- $annotations := merge (dict) (default dict $c.podAnnotations) (default dict $g.podAnnotations) -}}
{{- $checksum := include "shop.secretChecksum" $root -}}
{{- if $checksum }}{{ $_ := set $annotations "checksum/secret" $checksum }}{{ end -}}
{{- /* For a Prometheus that discovers pods by annotation; the Operator's monitors ignore them. */ -}}
{{- if $root.Values.monitoring.scrapeAnnotations.enabled -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString $root.Values.monitoring.metricsPort) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
metadata:
  labels:
    {{- include "shop.labels" . | nindent 4 }}
    {{- with merge (dict) (default dict $c.podLabels) (default dict $g.podLabels) }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "shop.podScheduling" -}}
{{- $root := .root -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- $g := $root.Values.global -}}
serviceAccountName: {{ include "shop.serviceAccountName" $root }}
{{- with concat (default list $g.imagePullSecrets) }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with default $g.priorityClassName $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with merge (dict) (default dict $c.nodeSelector) (default dict $g.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with concat (default list $g.tolerations) (default list $c.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with default $g.affinity $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $spread := default $g.topologySpreadConstraints $c.topologySpreadConstraints -}}
{{- if $spread }}
topologySpreadConstraints:
  {{- toYaml $spread | nindent 2 }}
{{- else if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "shop.selectorLabels" (dict "root" $root "component" $.component) | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end -}}

{{/* A component's replicas, unless its HorizontalPodAutoscaler owns them. */}}
{{- define "shop.replicas" -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- if not $c.autoscaling.enabled -}}
replicas: {{ $c.replicas }}
{{- end -}}
{{- end -}}

{{/* The autoscaler and the disruption budget of a component. */}}
{{- define "shop.scaling" -}}
{{- $root := .root -}}
{{- $c := fromYaml (include "shop.componentValues" .) -}}
{{- $name := printf "%s-%s" (include "shop.fullname" $root) .component -}}
{{- if $c.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "shop.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}}
    {{- with $c.autoscaling.metrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- if $root.Values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "shop.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ $root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "shop.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{/* The gRPC services (proto full names) that shop service `.` implements. */}}
{{- define "shop.grpcServices" -}}
{{- $names := dict
    "user" "shop.user.v1.UserService shop.user.v1.WishlistService shop.user.v1.CartService"
    "catalog" "shop.catalog.v1.CatalogService"
    "order" "shop.order.v1.OrderService" -}}
{{- index $names . -}}
{{- end -}}

{{/* The name of dev backend `.name` (postgres, redis, rabbitmq, mailpit). */}}
{{- define "shop.devHost" -}}
{{- printf "%s-%s.%s.svc.%s." (include "shop.fullname" .root) .name .root.Release.Namespace (trimSuffix "." .root.Values.clusterDomain) -}}
{{- end -}}

{{/*
The data of the backends Secret the chart creates for the dev backends. The JWT signing key is
generated once and then read back from the Secret in the cluster, so upgrades keep it (and the
sessions signed with it).
*/}}
{{- define "shop.devSecretData" -}}
{{- $dev := .Values.devBackends -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace .Values.secretName -}}
{{- $key := "" -}}
{{- if and $existing (hasKey (default dict $existing.data) "SHOP_JWT_SIGNING_KEYS") -}}
{{- $key = index $existing.data "SHOP_JWT_SIGNING_KEYS" | b64dec -}}
{{- else -}}
{{- $key = printf "dev=%s" (randBytes 32 | replace "+" "-" | replace "/" "_" | trimSuffix "=") -}}
{{- end -}}
DATABASE_URL: {{ printf "postgres://shop:%s@%s:5432/shop" $dev.postgres.password (include "shop.devHost" (dict "root" . "name" "postgres")) | b64enc }}
REDIS_URL: {{ printf "redis://%s:6379" (include "shop.devHost" (dict "root" . "name" "redis")) | b64enc }}
AMQP_URL: {{ printf "amqp://shop:%s@%s:5672/%%2f" $dev.rabbitmq.password (include "shop.devHost" (dict "root" . "name" "rabbitmq")) | b64enc }}
SMTP_URL: {{ printf "smtp://%s:1025" (include "shop.devHost" (dict "root" . "name" "mailpit")) | b64enc }}
SHOP_JWT_SIGNING_KEYS: {{ $key | b64enc }}
{{- if $dev.adminEmail }}
SHOP_ADMIN_EMAIL: {{ $dev.adminEmail | b64enc }}
SHOP_ADMIN_PASSWORD: {{ $dev.adminPassword | b64enc }}
{{- end }}
{{- end -}}
