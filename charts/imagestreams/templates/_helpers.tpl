{{/*
Helpers shared by the templates: names, labels, the image, the NATS URL and
the workloads (one per service, or the monolith).
*/}}

{{/* The chart's name, overridable with nameOverride. */}}
{{- define "imagestreams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the prefix of every object's name. */}}
{{- define "imagestreams.fullname" -}}
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

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "imagestreams.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select this release's pods (without a component). */}}
{{- define "imagestreams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagestreams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The standard labels of every object. */}}
{{- define "imagestreams.labels" -}}
helm.sh/chart: {{ include "imagestreams.chart" . }}
{{ include "imagestreams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: imagestreams
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount the pods run as. */}}
{{- define "imagestreams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imagestreams.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest. */}}
{{- define "imagestreams.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the registry-watcher token. */}}
{{- define "imagestreams.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else if .Values.secret.create -}}
{{- include "imagestreams.fullname" . -}}
{{- else -}}
{{- fail "secret: set secret.existingSecret, or secret.create=true" -}}
{{- end -}}
{{- end -}}

{{/* The NATS chart's full name, computed as that chart does. */}}
{{- define "imagestreams.natsFullname" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" .Values.nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* nats.url, else the in-cluster NATS chart's Service. */}}
{{- define "imagestreams.natsUrl" -}}
{{- if .Values.nats.url -}}
{{- .Values.nats.url -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "imagestreams.natsFullname" .) .Release.Namespace -}}
{{- else -}}
{{- fail "nats.url is required when nats.enabled is false: the URL of a NATS (2.10 or later) with JetStream" -}}
{{- end -}}
{{- end -}}

{{/* host:port for a container port. */}}
{{- define "imagestreams.listen" -}}
{{- printf "%s:%d" .root.Values.listenHost (int .port) -}}
{{- end -}}

{{/*
The workloads to deploy, as a YAML list. Each has its component (the
Deployment's name suffix and label), the values key of its replicas and
resources, its arguments, its container ports (the one named `http` serves
/healthz, /readyz and /metrics), and whether it needs the watcher token.
*/}}
{{- define "imagestreams.workloads" -}}
{{- $p := .Values.ports -}}
{{- if eq .Values.mode "monolith" }}
- component: monolith
  values: monolith
  args: [up]
  token: true
  ports:
    - { name: grpc, port: {{ int $p.grpc }} }
    - { name: http, port: {{ int $p.http }} }
    - { name: notifications, port: {{ int $p.notifications }} }
    - { name: hooks, port: {{ int $p.hooks }} }
    {{- if .Values.apiService.enabled }}
    - { name: kube, port: {{ int $p.kube }} }
    {{- end }}
{{- else }}
- component: gateway
  values: gateway
  args: [serve, gateway]
  token: false
  ports:
    - { name: grpc, port: {{ int $p.grpc }} }
    - { name: http, port: {{ int $p.http }} }
    {{- if .Values.apiService.enabled }}
    - { name: kube, port: {{ int $p.kube }} }
    {{- end }}
- component: registry-watcher
  values: registryWatcher
  args: [serve, registry-watcher]
  token: true
  ports:
    - { name: http, port: {{ int $p.notifications }} }
- component: stream-store
  values: streamStore
  args: [serve, stream-store]
  token: false
  ports:
    - { name: http, port: {{ int $p.streamStore }} }
- component: tag-syncer
  values: tagSyncer
  args: [serve, tag-syncer]
  token: false
  ports:
    - { name: http, port: {{ int $p.tagSyncer }} }
    - { name: hooks, port: {{ int $p.hooks }} }
- component: trigger
  values: trigger
  args: [serve, trigger]
  token: false
  ports:
    - { name: http, port: {{ int $p.trigger }} }
{{- end }}
{{- end -}}

{{/* The component label of the pods serving the gateway and the watcher. */}}
{{/* Where the gateway's TLS Secret is mounted (beside, not inside, the configuration's directory). */}}
{{- define "imagestreams.tlsDir" -}}/etc/imagestreams-tls{{- end -}}
{{/* Where the aggregated API's serving Secret and kube-apiserver's request-header CA are mounted. */}}
{{- define "imagestreams.kubeTlsDir" -}}/etc/imagestreams-kube-tls{{- end -}}
{{- define "imagestreams.requestHeaderDir" -}}/etc/imagestreams-requestheader{{- end -}}

{{- define "imagestreams.gatewayComponent" -}}
{{- if eq .Values.mode "monolith" -}}monolith{{- else -}}gateway{{- end -}}
{{- end -}}
{{- define "imagestreams.watcherComponent" -}}
{{- if eq .Values.mode "monolith" -}}monolith{{- else -}}registry-watcher{{- end -}}
{{- end -}}

{{/* The component label of the pods serving the webhook receivers. */}}
{{- define "imagestreams.hooksComponent" -}}
{{- if eq .Values.mode "monolith" -}}monolith{{- else -}}tag-syncer{{- end -}}
{{- end -}}

{{/* Where the configuration is mounted, and the file --config names. */}}
{{- define "imagestreams.configDir" -}}/etc/imagestreams{{- end -}}
{{- define "imagestreams.configFile" -}}/etc/imagestreams/imagestreams.toml{{- end -}}

{{/* imagestreams.toml: every key is one of services/common/src/config.rs. */}}
{{- define "imagestreams.toml" -}}
{{- $c := .Values.config -}}
{{- $p := .Values.ports -}}
# Rendered by the imagestreams chart from its values; see the README's
# configuration table. The registry-watcher token comes from the environment
# (IMAGESTREAMS_REGISTRY_WATCHER__TOKEN, from the Secret).

[nats]
url = {{ include "imagestreams.natsUrl" . | toJson }}
connect_timeout_secs = {{ int $c.nats.connect_timeout_secs }}
replicas = {{ int $c.nats.replicas }}
auto_start = false

[gateway]
grpc_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.grpc) | toJson }}
http_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.http) | toJson }}

# The Kubernetes-compatible HTTPS API: in a cluster, an aggregated API
# (apiService.enabled) with the Secret's certificate and kube-apiserver's
# request-header CA; off otherwise (its local CA would go to the read-only
# working directory).
[gateway.kube]
{{- if .Values.apiService.enabled }}
enabled = true
listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.kube) | toJson }}

[gateway.kube.tls]
cert_file = {{ printf "%s/tls.crt" (include "imagestreams.kubeTlsDir" .) | toJson }}
key_file = {{ printf "%s/tls.key" (include "imagestreams.kubeTlsDir" .) | toJson }}

[gateway.kube.request_header]
client_ca_file = {{ printf "%s/ca.crt" (include "imagestreams.requestHeaderDir" .) | toJson }}
allowed_names = {{ .Values.apiService.requestHeader.allowedNames | toJson }}
{{- else }}
enabled = false
{{- end }}

[registry_watcher]
listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.notifications) | toJson }}
insecure = {{ $c.registry_watcher.insecure }}

[integrated_registry]
host = {{ $c.integrated_registry.host | toJson }}

[auth]
enabled = {{ $c.auth.enabled }}

[stream_store]
http_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.streamStore) | toJson }}
history_limit = {{ int $c.stream_store.history_limit }}

[tag_syncer]
http_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.tagSyncer) | toJson }}
hooks_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.hooks) | toJson }}
hooks_url = {{ .Values.tagSyncer.hooksUrl | default (printf "http://%s-hooks.%s.svc:%d" (include "imagestreams.fullname" .) .Release.Namespace (int $p.hooks)) | toJson }}

[trigger]
http_listen = {{ include "imagestreams.listen" (dict "root" . "port" $p.trigger) | toJson }}

[telemetry]
log_format = {{ $c.telemetry.log_format | toJson }}
{{- with $c.telemetry.otlp_endpoint }}
otlp_endpoint = {{ . | toJson }}
{{- end }}
{{- end -}}
