{{/*
Config rendering: config.yaml of every mlops process, and the checks of value
combinations that cannot work (they fail at install time, naming the values).
*/}}

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
mlops.persistenceCheck: fails on access modes that cannot serve a run. The controller and
the running step mount the claim at the same time: ReadWriteOncePod refuses the second
pod even on one node, ReadOnlyMany cannot hold a store. With ReadWriteOnce the steps run
on the controller's node (mlops.claimOnOneNode), so a step nodeSelector must be one the
controller's node also satisfies, and an ephemeral Dask cluster (whose point is to spread
over nodes) is refused.
*/}}
{{- define "mlops.persistenceCheck" -}}
{{- if .Values.persistence.enabled -}}
{{- $modes := .Values.persistence.accessModes | default list -}}
{{- if has "ReadWriteOncePod" $modes -}}
{{- fail "persistence.accessModes: ReadWriteOncePod admits one pod, but the controller and a step mount the store together; use ReadWriteMany, or ReadWriteOnce (every pod of a run then runs on the controller's node)" -}}
{{- end -}}
{{- if not (or (has "ReadWriteOnce" $modes) (has "ReadWriteMany" $modes)) -}}
{{- fail "persistence.accessModes: the store must be writable: use ReadWriteMany or ReadWriteOnce" -}}
{{- end -}}
{{- if and (include "mlops.claimOnOneNode" .) (eq .Values.dask.cluster "ephemeral") -}}
{{- fail "dask.cluster: ephemeral with persistence.accessModes ReadWriteOnce would pin the scheduler and every worker to the controller's node (the claim attaches to one node); use persistence.accessModes [ReadWriteMany], or a bucket (config.storage.uri gs:// or s3:// with persistence.enabled false)" -}}
{{- end -}}
{{- if include "mlops.claimOnOneNode" . -}}
{{- $controller := .Values.controller.nodeSelector | default dict -}}
{{- range $step, $pod := .Values.steps -}}
{{- range $k, $v := ($pod.nodeSelector | default dict) -}}
{{- if ne (toString (get $controller $k)) (toString $v) -}}
{{- fail (printf "steps.%s.nodeSelector %s=%s: with persistence.accessModes ReadWriteOnce every pod of a run runs on the controller's node (the claim attaches to one node); set controller.nodeSelector to match or use ReadWriteMany" $step $k $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
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
mlops.daskPlacement: the placement of the scheduler or worker pods (dask.scheduler /
dask.worker values, camelCase) as the config.yaml keys (snake_case).
*/}}
{{- define "mlops.daskPlacement" -}}
node_selector:
  {{- toYaml (default dict .nodeSelector) | nindent 2 }}
tolerations:
  {{- toYaml (default list .tolerations) | nindent 2 }}
affinity:
  {{- toYaml (default dict .affinity) | nindent 2 }}
topology_spread_constraints:
  {{- toYaml (default list .topologySpreadConstraints) | nindent 2 }}
priority_class_name: {{ default "" .priorityClassName | quote }}
{{- end -}}

{{/*
mlops.kubernetesConfig: the `kubernetes` section of config.yaml, which the controller
reads to create the step Jobs: the step pod (pod_template, from mlops.stepPodSpec), the
per-step settings and the Job names and labels.
*/}}
{{- define "mlops.kubernetesConfig" -}}
namespace: {{ .Release.Namespace | quote }}
release: {{ include "mlops.fullname" . | quote }}
ttl_seconds_after_finished: {{ int .Values.stepJobs.ttlSecondsAfterFinished }}
step_timeout_seconds: {{ int .Values.stepJobs.timeoutSeconds }}
same_node_as_controller: {{ include "mlops.claimOnOneNode" . | eq "true" }}
labels:
  {{- include "mlops.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/component: step
  {{- with .Values.stepJobs.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
pod_template:
  {{- include "mlops.stepPodSpec" . | nindent 2 }}
dask:
  scheduler_resources:
    {{- toYaml .Values.dask.scheduler.resources | nindent 4 }}
  worker_resources:
    {{- toYaml .Values.dask.worker.resources | nindent 4 }}
  start_timeout_seconds: {{ int .Values.dask.startTimeoutSeconds }}
  scheduler:
    {{- include "mlops.daskPlacement" .Values.dask.scheduler | nindent 4 }}
  worker:
    {{- include "mlops.daskPlacement" .Values.dask.worker | nindent 4 }}
  worker_spill:
    volume: {{ .Values.dask.worker.spill.volume | quote }}
    size: {{ .Values.dask.worker.spill.size | quote }}
    storage_class: {{ .Values.dask.worker.spill.storageClass | quote }}
steps:
  ingest:
    {{- include "mlops.stepConfig" .Values.steps.ingest | nindent 4 }}
  monitor_check:
    {{- include "mlops.stepConfig" .Values.steps.monitorCheck | nindent 4 }}
  train:
    {{- include "mlops.stepConfig" .Values.steps.train | nindent 4 }}
{{- end -}}

{{/*
mlops.daskConfig: the `dask` section of config.yaml: the pass-through config.dask with
cluster and n_workers from the dask values (which own them), and the checks of
combinations that cannot work.
*/}}
{{- define "mlops.daskConfig" -}}
{{- $values := .root.Values.dask -}}
{{- $dask := deepCopy (default dict (get .cfg "dask")) -}}
{{- range $key, $value := dict "cluster" "dask.cluster" "n_workers" "dask.nWorkers" -}}
{{- if hasKey $dask $key -}}
{{- fail (printf "config.dask.%s is rendered by the chart; set %s instead" $key $value) -}}
{{- end -}}
{{- end -}}
{{- if has $values.cluster (list "ephemeral" "operator") -}}
{{- if get $dask "address" -}}
{{- fail (printf "dask.cluster: %s starts a cluster for each run, but config.dask.address names an existing scheduler; set only one" $values.cluster) -}}
{{- end -}}
{{- if ne (toString (get (default dict (get .cfg "data")) "engine")) "dask" -}}
{{- fail (printf "dask.cluster: %s needs config.data.engine: dask (no other engine uses a Dask cluster)" $values.cluster) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $dask "cluster" $values.cluster -}}
{{- $_ := set $dask "n_workers" (int $values.nWorkers) -}}
{{- toYaml $dask -}}
{{- end -}}

{{/*
mlops.configYaml: the whole config.yaml: the pass-through .Values.config with the
resolved storage.uri and the chart-owned `kubernetes` section.
*/}}
{{- define "mlops.configYaml" -}}
{{- include "mlops.credentialsCheck" . -}}
{{- include "mlops.persistenceCheck" . -}}
{{- $cfg := deepCopy (default dict .Values.config) -}}
{{- if hasKey $cfg "kubernetes" -}}
{{- fail "config.kubernetes is rendered by the chart; set steps, stepJobs, image, env, credentials and persistence instead" -}}
{{- end -}}
{{- $storage := deepCopy (default dict (get $cfg "storage")) -}}
{{- $_ := set $storage "uri" (include "mlops.storageUri" .) -}}
{{- $_ := set $cfg "storage" $storage -}}
{{- $_ := set $cfg "kubernetes" (include "mlops.kubernetesConfig" . | fromYaml) -}}
{{- $_ := set $cfg "dask" (include "mlops.daskConfig" (dict "cfg" $cfg "root" .) | fromYaml) -}}
{{- include "mlops.withNotifications" (dict "cfg" $cfg "root" .) -}}
{{- $isvc := dig "serving" "kserve" "inference_service" "" $cfg -}}
{{- if and $isvc (not .Values.serving.kserve.inferenceService) -}}
{{- fail "config.serving.kserve.inference_service is set: set serving.kserve.inferenceService instead (it also grants the Role get/patch on that InferenceService)" -}}
{{- end -}}
{{- with .Values.serving.kserve.inferenceService -}}
{{- $serving := deepCopy (default dict (get $cfg "serving")) -}}
{{- $kserve := deepCopy (default dict (get $serving "kserve")) -}}
{{- if and (get $kserve "inference_service") (ne (get $kserve "inference_service") .) -}}
{{- fail "config.serving.kserve.inference_service and serving.kserve.inferenceService differ; set serving.kserve.inferenceService only (it also grants the Role)" -}}
{{- end -}}
{{- $_ := set $kserve "inference_service" . -}}
{{- $_ := set $serving "kserve" $kserve -}}
{{- $_ := set $cfg "serving" $serving -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
