{{- /* The dashboard's pods: a name of their own, so the controller's Service and PDB never select them. */}}
{{- define "orch.dashboardSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-dashboard" (include "orch.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
