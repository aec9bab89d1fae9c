{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride; 63 characters at most (a label value). */}}
{{- define "parallelrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, else "<release>-<chart>", or just the
release name when it already contains the chart name.
*/}}
{{- define "parallelrun.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "parallelrun.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "parallelrun.labels" -}}
helm.sh/chart: {{ include "parallelrun.chart" . }}
{{ include "parallelrun.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parallelrun
{{- end }}

{{/* Labels that select the operator pods (never change them in an upgrade). */}}
{{- define "parallelrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parallelrun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "parallelrun.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parallelrun.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "parallelrun.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules the operator needs on ParallelRunJobs and their children (pods, secrets, configmaps,
headless services) and events (created, and patched to count a repeat), and nothing more: the operator reads through informers (list,
watch), patches jobs for its finalizer, deletes them for ttlSecondsAfterFinished, writes status
with update (the restart counts too: status.restarts), creates each job's Secret and never writes it
again (reading it by name, never listing or watching Secrets), creates each job's NetworkPolicy once (no
cache, so no list/watch) and asks LocalSubjectAccessReviews for the admission webhook (the rights
of the user creating a job, in the job's namespace); children go with their job by owner
references. tests/operator compares this list with the cluster's audit log of the operator. The same list goes into the ClusterRole, or into a Role in
watchNamespace; tests/chart checks it against the operator's documented needs.
*/}}
{{- define "parallelrun.jobRules" -}}
- apiGroups: ["parallelrun.io"]
  resources: ["parallelrunjobs"]
  verbs: ["list", "watch", "patch", "delete"]
- apiGroups: ["parallelrun.io"]
  resources: ["parallelrunjobs/status"]
  verbs: ["update"]
- apiGroups: ["parallelrun.io"]
  resources: ["parallelrunjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["localsubjectaccessreviews"]
  verbs: ["create"]
{{- end }}
