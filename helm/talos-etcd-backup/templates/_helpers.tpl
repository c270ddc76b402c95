{{/* Chart name, for the app.kubernetes.io/name label. */}}
{{- define "talos-etcd-backup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object name prefix: the release name, plus the chart name unless the release name contains it, so the default
release "talos-etcd-backup" gives exactly the names of metacontroller/*.yaml.
*/}}
{{- define "talos-etcd-backup.fullname" -}}
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

{{/* Value of the helm.sh/chart label. */}}
{{- define "talos-etcd-backup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the hook server's pods (immutable in the Deployment: never add to them). */}}
{{- define "talos-etcd-backup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "talos-etcd-backup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object; call with (dict "context" $ "component" "...") . */}}
{{- define "talos-etcd-backup.labels" -}}
{{- $ := .context -}}
helm.sh/chart: {{ include "talos-etcd-backup.chart" $ }}
{{ include "talos-etcd-backup.selectorLabels" $ }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: talos-etcd-backup
app.kubernetes.io/managed-by: {{ $.Release.Service }}
{{- with $.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The hook server's ServiceAccount. */}}
{{- define "talos-etcd-backup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "talos-etcd-backup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference of the server, which is also the backup Jobs' JOB_IMAGE. */}}
{{- define "talos-etcd-backup.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/* The webhook target of every Metacontroller hook: this release's Service. */}}
{{- define "talos-etcd-backup.hookService" -}}
service:
  name: {{ include "talos-etcd-backup.fullname" . }}
  namespace: {{ .Release.Namespace }}
  port: {{ .Values.service.port }}
  protocol: http
{{- end }}

{{/*
Whether talosControlPlaneRef is served (TALOS_OPERATOR): talosOperator.enabled, or with `auto` whether the cluster
serves talos-operator's TalosControlPlane kind now (Metacontroller would fail every backup asking for a missing kind).
*/}}
{{- define "talos-etcd-backup.talosOperator" -}}
{{- $enabled := toString .Values.talosOperator.enabled -}}
{{- if eq $enabled "auto" -}}
{{- .Capabilities.APIVersions.Has "talos.alperen.cloud/v1alpha1/TalosControlPlane" -}}
{{- else -}}
{{- $enabled -}}
{{- end -}}
{{- end }}
