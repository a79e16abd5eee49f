{{- /*
  Names and labels of lakehub's own objects. z2jh's named templates are not used here:
  a subchart's templates are its own, and lakehub's objects keep fixed names that the
  site renderer (hub_config.values) also knows.
*/}}

{{- define "lakehub.labels" -}}
app.kubernetes.io/name: lakehub
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end }}

{{- define "lakehub.selectorLabels" -}}
app.kubernetes.io/name: lakehub
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{- /* z2jh labels its pods app=<chart name>, release=<release>, component=<role> */}}
{{- define "lakehub.z2jhPodLabels" -}}
app: {{ .root.Values.jupyterhub.nameOverride | default "jupyterhub" | quote }}
release: {{ .root.Release.Name | quote }}
component: {{ .component | quote }}
{{- end }}

{{- define "lakehub.image" -}}
{{- printf "%s:%s" .name .tag }}
{{- end }}

{{- /* a restrictive container securityContext for lakehub's own processes */}}
{{- define "lakehub.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
