{{/* Chart name, at most 63 characters. */}}
{{- define "clerk-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "clerk-sync.fullname" -}}
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

{{- define "clerk-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every pod of the release carries (NetworkPolicy selects on these). */}}
{{- define "clerk-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clerk-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the server pods only (Service, PDB, HPA and spread constraints). */}}
{{- define "clerk-sync.serverSelectorLabels" -}}
{{ include "clerk-sync.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "clerk-sync.labels" -}}
helm.sh/chart: {{ include "clerk-sync.chart" . }}
{{ include "clerk-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: clerk-sync
{{- end }}

{{- define "clerk-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clerk-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "clerk-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the user's existingSecret or the one this chart creates. */}}
{{- define "clerk-sync.secretName" -}}
{{- default (include "clerk-sync.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Secret data as KEY: base64 lines. Fails with a clear message when a required setting is
missing (values.schema.json says the same; this also covers --skip-schema-validation).
*/}}
{{- define "clerk-sync.secretData" -}}
{{- $s := .Values.secrets -}}
MONGODB_URL: {{ required "secrets.mongodbUrl (MONGODB_URL) is required unless existingSecret is set" $s.mongodbUrl | b64enc | quote }}
CLERK_WEBHOOK_SIGNING_SECRET: {{ required "secrets.webhookSigningSecret (CLERK_WEBHOOK_SIGNING_SECRET) is required unless existingSecret is set" $s.webhookSigningSecret | b64enc | quote }}
{{- with $s.jwtKey }}
CLERK_JWT_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- with $s.clerkSecretKey }}
CLERK_SECRET_KEY: {{ . | b64enc | quote }}
{{- end }}
{{- range $key, $value := $s.extra }}
{{ $key }}: {{ $value | toString | b64enc | quote }}
{{- end }}
{{- end }}

{{/* Non-secret settings as KEY: "value" lines; empty settings are left out. */}}
{{- define "clerk-sync.configData" -}}
{{- $c := .Values.config -}}
MONGODB_DB: {{ $c.mongodbDb | quote }}
{{- with $c.plugins }}
CLERK_SYNC_PLUGINS: {{ . | quote }}
{{- end }}
{{- with $c.disabledPlugins }}
CLERK_SYNC_DISABLED_PLUGINS: {{ . | quote }}
{{- end }}
{{- with $c.requiredPlugins }}
CLERK_SYNC_REQUIRED_PLUGINS: {{ . | quote }}
{{- end }}
CLERK_SYNC_WEBHOOK_PATH: {{ $c.webhookPath | quote }}
CLERK_SYNC_MAX_BODY_BYTES: {{ $c.maxBodyBytes | int64 | quote }}
CLERK_SYNC_HANDLER_TIMEOUT: {{ $c.handlerTimeout | toString | quote }}
CLERK_SYNC_SHUTDOWN_DELAY: {{ $c.shutdownDelay | toString | quote }}
CLERK_SYNC_EVENT_RETENTION_DAYS: {{ $c.eventRetentionDays | int64 | quote }}
{{- with $c.jwksUrl }}
CLERK_JWKS_URL: {{ . | quote }}
{{- end }}
{{- with $c.issuer }}
CLERK_ISSUER: {{ . | quote }}
{{- end }}
{{- with $c.authorizedParties }}
CLERK_AUTHORIZED_PARTIES: {{ . | quote }}
{{- end }}
LOG_LEVEL: {{ $c.logLevel | quote }}
LOG_FORMAT: {{ $c.logFormat | quote }}
{{- include "clerk-sync.consoleData" . }}
{{- range $key, $value := .Values.extraEnv }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The pod-level security settings shared by the server, the check Job and the test pod. */}}
{{- define "clerk-sync.podSecurity" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The /tmp emptyDir: the only writable place, as the root filesystem is read-only. */}}
{{- define "clerk-sync.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{/*
Seconds the server gives in-flight requests once the listener has closed: GRACEFUL_TIMEOUT in
service/clerk_sync/cli/server.py (tests/ops/test_chart.py keeps the two equal).
*/}}
{{- define "clerk-sync.gracefulTimeout" -}}
15
{{- end }}

{{/*
terminationGracePeriodSeconds, checked: the kubelet must not SIGKILL a pod that is still in its
shut-down delay or finishing requests (DESIGN.md "Shut-down").
*/}}
{{- define "clerk-sync.terminationGracePeriod" -}}
{{- $grace := .Values.terminationGracePeriodSeconds | float64 -}}
{{- $delay := .Values.config.shutdownDelay | float64 -}}
{{- $graceful := include "clerk-sync.gracefulTimeout" . | float64 -}}
{{- if le $grace (addf $delay $graceful) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdownDelay (%v, CLERK_SYNC_SHUTDOWN_DELAY) + the server's graceful timeout (%v) = %v seconds" $grace $delay $graceful (addf $delay $graceful)) -}}
{{- end -}}
{{- .Values.terminationGracePeriodSeconds | int64 -}}
{{- end }}

{{/* The console's settings, only when console.enabled; it needs callers and session keys. */}}
{{- define "clerk-sync.consoleData" -}}
{{- $console := .Values.console -}}
{{- if $console.enabled }}
{{- if not (or $console.users $console.org) }}
{{- fail "console.enabled needs console.users (CLERK_SYNC_CONSOLE_USERS) or console.org (CLERK_SYNC_CONSOLE_ORG)" }}
{{- end }}
{{- if not (or .Values.existingSecret .Values.secrets.jwtKey .Values.config.jwksUrl) }}
{{- fail "console.enabled needs session-token keys: secrets.jwtKey (CLERK_JWT_KEY) or config.jwksUrl (CLERK_JWKS_URL)" }}
{{- end }}
{{- with $console.users }}
CLERK_SYNC_CONSOLE_USERS: {{ . | quote }}
{{- end }}
{{- with $console.org }}
CLERK_SYNC_CONSOLE_ORG: {{ . | quote }}
{{- end }}
{{- with $console.grafanaUrl }}
CLERK_SYNC_GRAFANA_URL: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
