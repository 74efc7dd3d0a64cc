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

{{/* The image of binary `.name`. */}}
{{- define "shop.image" -}}
{{- $override := index (default dict .root.Values.image.overrides) .name -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- $registry := .root.Values.image.registry -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if $registry -}}
{{- printf "%s/shop-%s:%s" $registry .name $tag -}}
{{- else -}}
{{- printf "shop-%s:%s" .name $tag -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The in-cluster DNS target of service `.name` (its headless Service). */}}
{{- define "shop.target" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "dns:///%s-%s.%s.svc.cluster.local:%v" (include "shop.fullname" .root) .name .root.Release.Namespace $svc.port -}}
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

{{/* Environment shared by every component: telemetry and the backends Secret. */}}
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
- name: REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.secretName }}, key: REDIS_URL}
{{- end -}}
