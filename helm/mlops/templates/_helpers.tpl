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
mlops.configMapName: the ConfigMap holding config.yaml.
*/}}
{{- define "mlops.configMapName" -}}
{{- printf "%s-config" (include "mlops.fullname" .) | trunc 63 | trimSuffix "-" -}}
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
mlops.selectorLabels: the labels that identify this release's objects (stable across upgrades).
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
mlops.image: <repository>:<tag>, the tag defaulting to .Chart.AppVersion; refuses `latest`.
*/}}
{{- define "mlops.image" -}}
{{- $tag := toString (default .Chart.AppVersion .Values.image.tag) -}}
{{- if eq (lower $tag) "latest" -}}
{{- fail "image.tag: 'latest' is not allowed; pin a version (default: the chart's appVersion)" -}}
{{- end -}}
{{- if hasSuffix ":latest" (lower .Values.image.repository) -}}
{{- fail "image.repository must not carry a ':latest' tag; set image.tag to a pinned version" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/*
mlops.storageUri: config.storage.uri, or file://<persistence.mountPath> when it is
empty and persistence is enabled; fails when there is no store at all.
*/}}
{{- define "mlops.storageUri" -}}
{{- $storage := default dict .Values.config.storage -}}
{{- $uri := default "" $storage.uri -}}
{{- if $uri -}}
{{- $uri -}}
{{- else if .Values.persistence.enabled -}}
{{- printf "file://%s" .Values.persistence.mountPath -}}
{{- else -}}
{{- fail "config.storage.uri is required (gs://bucket/prefix or s3://bucket/prefix) unless persistence.enabled is true" -}}
{{- end -}}
{{- end -}}

{{/*
mlops.credentialsCheck: fails when credentials are half configured.
*/}}
{{- define "mlops.credentialsCheck" -}}
{{- if and .Values.credentials.existingSecret (not (or .Values.credentials.envFrom .Values.credentials.mount)) -}}
{{- fail "credentials.existingSecret is set: also set credentials.envFrom and/or credentials.mount" -}}
{{- end -}}
{{- if and (not .Values.credentials.existingSecret) (or .Values.credentials.envFrom .Values.credentials.mount) -}}
{{- fail "credentials.envFrom/credentials.mount need credentials.existingSecret" -}}
{{- end -}}
{{- end -}}

{{/*
mlops.podSecurityContext: the pod security context of every pod (uid/gid 10001 as in the image).
*/}}
{{- define "mlops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
mlops.containerSecurityContext: the container security context of every container.
*/}}
{{- define "mlops.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
mlops.volumeMounts: the mounts of every mlops container (config, /tmp, credentials, store).
*/}}
{{- define "mlops.volumeMounts" -}}
- name: config
  mountPath: /etc/mlops
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and .Values.credentials.existingSecret .Values.credentials.mount }}
- name: credentials
  mountPath: {{ .Values.credentials.mountPath }}
  readOnly: true
{{- end }}
{{- if .Values.persistence.enabled }}
- name: data
  mountPath: {{ .Values.persistence.mountPath }}
{{- end }}
{{- end -}}

{{/*
mlops.volumes: the volumes behind mlops.volumeMounts.
*/}}
{{- define "mlops.volumes" -}}
- name: config
  configMap:
    name: {{ include "mlops.configMapName" . }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if and .Values.credentials.existingSecret .Values.credentials.mount }}
- name: credentials
  secret:
    secretName: {{ .Values.credentials.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if .Values.persistence.enabled }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "mlops.pvcName" . }}
{{- end }}
{{- end -}}

{{/*
mlops.env: the extra env (.Values.env) and envFrom of every mlops container.
*/}}
{{- define "mlops.extraEnv" -}}
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/*
mlops.envFrom: envFrom of every mlops container (the credentials Secret, optional).
*/}}
{{- define "mlops.envFrom" -}}
{{- if and .Values.credentials.existingSecret .Values.credentials.envFrom }}
envFrom:
  - secretRef:
      name: {{ .Values.credentials.existingSecret }}
{{- end }}
{{- end -}}

{{/*
mlops.stepConfig: one step's values (camelCase) as the config.yaml keys (snake_case).
*/}}
{{- define "mlops.stepConfig" -}}
resources:
  {{- toYaml .resources | nindent 2 }}
node_selector:
  {{- toYaml (default dict .nodeSelector) | nindent 2 }}
tolerations:
  {{- toYaml (default list .tolerations) | nindent 2 }}
active_deadline_seconds: {{ int .activeDeadlineSeconds }}
backoff_limit: {{ int .backoffLimit }}
{{- end -}}

{{/*
mlops.kubernetesConfig: the `kubernetes` section of config.yaml, which the controller
reads to create the step Jobs. This is the single source of the step pod settings.
*/}}
{{- define "mlops.kubernetesConfig" -}}
namespace: {{ .Release.Namespace | quote }}
release: {{ include "mlops.fullname" . | quote }}
image: {{ include "mlops.image" . | quote }}
image_pull_policy: {{ .Values.image.pullPolicy | quote }}
service_account: {{ include "mlops.serviceAccountName" . | quote }}
config_map: {{ include "mlops.configMapName" . | quote }}
config_mount_path: /etc/mlops
env:
  {{- toYaml (default dict .Values.env) | nindent 2 }}
env_from_secret: {{ ternary .Values.credentials.existingSecret "" .Values.credentials.envFrom | quote }}
credentials_secret: {{ ternary .Values.credentials.existingSecret "" .Values.credentials.mount | quote }}
credentials_mount_path: {{ .Values.credentials.mountPath | quote }}
pvc_claim: {{ include "mlops.pvcName" . | quote }}
pvc_mount_path: {{ .Values.persistence.mountPath | quote }}
ttl_seconds_after_finished: {{ int .Values.stepJobs.ttlSecondsAfterFinished }}
step_timeout_seconds: {{ int .Values.stepJobs.timeoutSeconds }}
labels:
  {{- include "mlops.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/component: step
  {{- with .Values.stepJobs.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
steps:
  ingest:
    {{- include "mlops.stepConfig" .Values.steps.ingest | nindent 4 }}
  monitor_check:
    {{- include "mlops.stepConfig" .Values.steps.monitorCheck | nindent 4 }}
  train:
    {{- include "mlops.stepConfig" .Values.steps.train | nindent 4 }}
{{- end -}}

{{/*
mlops.configYaml: the whole config.yaml: the pass-through .Values.config with the
resolved storage.uri and the chart-owned `kubernetes` section.
*/}}
{{- define "mlops.configYaml" -}}
{{- $cfg := deepCopy (default dict .Values.config) -}}
{{- if hasKey $cfg "kubernetes" -}}
{{- fail "config.kubernetes is rendered by the chart; set steps, stepJobs, image, env, credentials and persistence instead" -}}
{{- end -}}
{{- $storage := deepCopy (default dict (get $cfg "storage")) -}}
{{- $_ := set $storage "uri" (include "mlops.storageUri" .) -}}
{{- $_ := set $cfg "storage" $storage -}}
{{- $_ := set $cfg "kubernetes" (include "mlops.kubernetesConfig" . | fromYaml) -}}
{{- include "mlops.withNotifications" (dict "cfg" $cfg "root" .) -}}
{{- toYaml $cfg -}}
{{- end -}}
