{{/*
mlops.webhookEnvName: the environment variable holding one webhook's URL
(MLOPS_WEBHOOK_<NAME>, the name upper-cased with "-" as "_").
*/}}
{{- define "mlops.webhookEnvName" -}}
{{- printf "MLOPS_WEBHOOK_%s" (. | upper | replace "-" "_") -}}
{{- end -}}

{{/*
mlops.webhookEnv: the controller's env entries with each webhook URL, read from its
Secret (webhook URLs are credentials: they never go into the ConfigMap).
*/}}
{{- define "mlops.webhookEnv" -}}
{{- range .Values.notifications.webhooks }}
- name: {{ include "mlops.webhookEnvName" .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret | quote }}
      key: {{ .key | default "url" | quote }}
{{- end }}
{{- end -}}

{{/*
mlops.webhooksConfig: notifications.webhooks of config.yaml: name, url_env and events
of each receiver, never its URL.
*/}}
{{- define "mlops.webhooksConfig" -}}
{{- range .Values.notifications.webhooks }}
- name: {{ .name | quote }}
  url_env: {{ include "mlops.webhookEnvName" .name | quote }}
  {{- with .events }}
  events:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
mlops.withNotifications: puts the chart's webhooks into the config dict $cfg; refuses
literal webhook URLs in the config pass-through (they would land in the ConfigMap).
*/}}
{{- define "mlops.withNotifications" -}}
{{- $cfg := .cfg -}}
{{- $n := deepCopy (default dict (get $cfg "notifications")) -}}
{{- range (default list (get $n "webhooks")) }}
{{- if hasKey . "url" }}
{{- fail "config.notifications.webhooks must not hold a url (it would be rendered into the ConfigMap): set notifications.webhooks with an existingSecret instead" -}}
{{- end }}
{{- end }}
{{- if .root.Values.notifications.webhooks }}
{{- $_ := set $n "webhooks" (concat (default list (get $n "webhooks")) (include "mlops.webhooksConfig" .root | fromYamlArray)) -}}
{{- $_ := set $cfg "notifications" $n -}}
{{- end }}
{{- end -}}

{{/*
mlops.metricsSelector: the label selector of this release's pushed metrics.
*/}}
{{- define "mlops.metricsSelector" -}}
{{- $obs := default dict .Values.config.observability -}}
{{- printf "job=%q,release=%q,namespace=%q" (get $obs "job" | default "mlops") (include "mlops.fullname" .) .Release.Namespace -}}
{{- end -}}
