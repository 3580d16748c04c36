{{/*
Pod pieces: what every mlops pod (controller, step, helm test) is made of. The step pod
is rendered here too (mlops.stepPodSpec, into config.yaml), so each value below reaches
every pod from this one file.
*/}}

{{/*
mlops.image: <repository>:<tag>, the tag defaulting to .Chart.AppVersion; refuses `latest`.
A numeric tag (an all-digit commit hash from skaffold's gitCommit tagger) is kept as digits.
*/}}
{{- define "mlops.image" -}}
{{- $raw := default .Chart.AppVersion .Values.image.tag -}}
{{- /* A number (--set image.tag=1234567; a values file gives a float) is printed whole. */ -}}
{{- $tag := ternary (printf "%.0f" $raw) (toString $raw) (kindIs "float64" $raw) -}}
{{- if eq (lower $tag) "latest" -}}
{{- fail "image.tag: 'latest' is not allowed; pin a version (default: the chart's appVersion)" -}}
{{- end -}}
{{- if hasSuffix ":latest" (lower .Values.image.repository) -}}
{{- fail "image.repository must not carry a ':latest' tag; set image.tag to a pinned version" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/*
mlops.configDir: where the ConfigMap is mounted in every pod; mlops.configFile: its config.yaml.
*/}}
{{- define "mlops.configDir" -}}
/etc/mlops
{{- end -}}

{{- define "mlops.configFile" -}}
{{- printf "%s/config.yaml" (include "mlops.configDir" .) -}}
{{- end -}}

{{/*
mlops.podSecurityContext: the pod security context of every pod. The ids come from
.Values.podSecurityContext; a null id is left to the platform (OpenShift's restricted-v2
SCC assigns one from the namespace's range), and runAsNonRoot still holds because the
image's USER is numeric.
*/}}
{{- define "mlops.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext.runAsUser }}
runAsUser: {{ int . }}
{{- end }}
{{- with .Values.podSecurityContext.runAsGroup }}
runAsGroup: {{ int . }}
{{- end }}
{{- with .Values.podSecurityContext.fsGroup }}
fsGroup: {{ int . }}
{{- end }}
# Chown the claim only when its root does not match (not every file at every pod start).
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
mlops.containerSecurityContext: the container security context of every container (the
ids are the pod's).
*/}}
{{- define "mlops.containerSecurityContext" -}}
runAsNonRoot: true
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
  mountPath: {{ include "mlops.configDir" . }}
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
    sizeLimit: {{ .Values.tmpSizeLimit | quote }}
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
mlops.extraEnv: the extra env (.Values.env) of every mlops container, as env entries.
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
mlops.podCommon: identity, pull secrets, security context and volumes of every pod.
*/}}
{{- define "mlops.podCommon" -}}
restartPolicy: Never
serviceAccountName: {{ include "mlops.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "mlops.podSecurityContext" . | nindent 2 }}
volumes:
  {{- include "mlops.volumes" . | nindent 2 }}
{{- end -}}

{{/*
mlops.containerCommon: image, security context, mounts and envFrom of every container.
*/}}
{{- define "mlops.containerCommon" -}}
image: {{ include "mlops.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- include "mlops.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  {{- include "mlops.volumeMounts" . | nindent 2 }}
{{- with (include "mlops.envFrom" . | trim) }}
{{ . }}
{{- end }}
{{- end -}}

{{/*
mlops.claimOnOneNode: "true" when the store claim can be attached to one node only
(ReadWriteOnce without ReadWriteMany): every pod of a run then runs on the controller's node.
*/}}
{{- define "mlops.claimOnOneNode" -}}
{{- $modes := .Values.persistence.accessModes | default list -}}
{{- if and .Values.persistence.enabled (has "ReadWriteOnce" $modes) (not (has "ReadWriteMany" $modes)) -}}
true
{{- end -}}
{{- end -}}

{{/*
mlops.stepPodSpec: the pod spec of every step Job, rendered into config.yaml
(kubernetes.pod_template). The controller fills in the container name and args (step,
run id), the step's resources, nodeSelector and tolerations, and the node affinity of a
one-node claim; everything else comes from here.
*/}}
{{- define "mlops.stepPodSpec" -}}
{{ include "mlops.podCommon" . }}
# Steps only touch the store: no API token, so they cannot use the controller's Role.
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ int .Values.stepJobs.terminationGracePeriodSeconds }}
{{- with .Values.priorityClassName }}
# The run's priority (also the controller's and, unless dask.*.priorityClassName, the Dask pods').
priorityClassName: {{ . | quote }}
{{- end }}
containers:
  - name: step
    {{- include "mlops.containerCommon" . | nindent 4 }}
    # tini (the image's init, as in its ENTRYPOINT) passes SIGTERM on and reaps zombies.
    command: ["tini", "--", "mlops"]
    args: ["--config", {{ include "mlops.configFile" . | quote }}]
    {{- with (include "mlops.extraEnv" . | trim) }}
    env:
      {{- . | nindent 6 }}
    {{- end }}
{{- end -}}
