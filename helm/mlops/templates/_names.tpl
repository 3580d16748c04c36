{{/*
Names and labels: every object name and the standard labels (as `helm create` does).
*/}}

{{/*
mlops.name: the chart name, or .Values.nameOverride (63 characters at most).
*/}}
{{- define "mlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
mlops.fullname: the resource name prefix, <release>-<chart> unless the release name
already contains the chart name, or .Values.fullnameOverride (63 characters at most).
*/}}
{{- define "mlops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
mlops.cronjobName: the CronJob name, 52 characters at most because the CronJob
controller appends an 11-character suffix to name its Jobs.
*/}}
{{- define "mlops.cronjobName" -}}
{{- include "mlops.fullname" . | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/*
mlops.manualJobPrefix: the name of a manual run without its suffix: the NOTES' command
appends "-manual-<10-digit epoch>" (18 characters), so the prefix keeps 45 and the Job
name stays within 63.
*/}}
{{- define "mlops.manualJobPrefix" -}}
{{- include "mlops.cronjobName" . | trunc 45 | trimSuffix "-" -}}
{{- end -}}

{{/*
mlops.configMapName: the ConfigMap holding config.yaml: <fullname>-config-<hash>, the hash
(10 hex digits) of its config.yaml rendered with the name left out (the step pod in it
mounts this very ConfigMap). Another config is another ConfigMap: an upgrade never changes
the config of a run that already started (the ConfigMap is immutable, and kept).
*/}}
{{- define "mlops.configMapName" -}}
{{- $base := printf "%s-config" (include "mlops.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- if .mlopsHashingConfig -}}
{{- $base -}}
{{- else -}}
{{- $hash := include "mlops.configYaml" (merge (dict "mlopsHashingConfig" true) .) | sha256sum | trunc 10 -}}
{{- printf "%s-%s" $base $hash -}}
{{- end -}}
{{- end -}}

{{/*
mlops.pvcName: the claim used as the store, "" when persistence is disabled.
*/}}
{{- define "mlops.pvcName" -}}
{{- if .Values.persistence.enabled -}}
{{- if .Values.persistence.existingClaim -}}
{{- .Values.persistence.existingClaim -}}
{{- else -}}
{{- printf "%s-data" (include "mlops.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
mlops.chart: chart name and version, for the helm.sh/chart label.
*/}}
{{- define "mlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
mlops.selectorLabels: the labels that identify this release's objects (stable across
upgrades). The controller gives the step Jobs the same ones (config.yaml `labels`).
*/}}
{{- define "mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
mlops.labels: the standard labels of every object (selector labels, version, chart, manager).
*/}}
{{- define "mlops.labels" -}}
helm.sh/chart: {{ include "mlops.chart" . }}
{{ include "mlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mlops
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
mlops.serviceAccountName: the ServiceAccount of every pod (created or existing).
*/}}
{{- define "mlops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mlops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
mlops.runPorts: the fixed ports the pods of a run talk to each other on (NetworkPolicy):
the Dask scheduler, a worker, a worker's nanny (mlops.config DASK_*_PORT) and LightGBM's
listen port (LIGHTGBM_PORT).
*/}}
{{- define "mlops.runPorts" -}}
- port: 8786
  protocol: TCP
- port: 8788
  protocol: TCP
- port: 8789
  protocol: TCP
- port: 12400
  protocol: TCP
{{- end -}}
