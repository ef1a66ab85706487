//! docker-compose.yml as compose reads it (merge keys, `${VAR:-default}`
//! interpolation, profiles, scaled-down services), each imagestreams
//! container's effective configuration (the image's baked file, then the
//! container's environment, deserialized into the real `Config`), and the
//! checks that the pieces agree.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use imagestreams_common::config::{CLIENT_ENV_KEYS, Config, ENV_PREFIX};
use serde_json::{Map, Value, json};

/// The compose file, relative to the repository root.
pub const COMPOSE_FILE: &str = "docker-compose.yml";
/// The configuration baked into the image (the Dockerfile copies it to
/// `IMAGESTREAMS_CONFIG`), the layer under the environment.
pub const IMAGE_CONFIG_FILE: &str = "deploy/container/imagestreams.toml";
/// The service running `imagestreams up`, scaled to 0 with the microservices profile.
pub const MONOLITH: &str = "imagestreams";
/// The profile with one container per service.
pub const MICROSERVICES: &str = "microservices";
/// Every service `imagestreams serve` runs.
pub const SERVICES: [&str; 5] = [
    "gateway",
    "registry-watcher",
    "stream-store",
    "tag-syncer",
    "trigger",
];
/// Where distribution reads its configuration in the `registry:2` image.
const REGISTRY_CONFIG_TARGET: &str = "/etc/docker/registry/config.yml";
/// The NATS client port when the command sets none.
const DEFAULT_NATS_PORT: u16 = 4222;

/// The variables compose interpolates from (the shell and `.env`).
pub type Env = BTreeMap<String, String>;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent")
        .to_owned()
}

/// The compose file parsed, merge keys applied, not yet interpolated.
pub fn raw_compose() -> anyhow::Result<Value> {
    let path = repo_root().join(COMPOSE_FILE);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_yaml(&text).with_context(|| format!("parsing {}", path.display()))
}

/// YAML with anchors and `<<` merge keys resolved, as JSON.
fn parse_yaml(text: &str) -> anyhow::Result<Value> {
    let mut yaml: serde_norway::Value = serde_norway::from_str(text)?;
    yaml.apply_merge()?;
    Ok(serde_json::to_value(&yaml)?)
}

/// Compose's interpolation of one string: `$$`, `$VAR`, `${VAR}`,
/// `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
/// `${VAR:+alternative}` and `${VAR+alternative}`.
pub fn interpolate(s: &str, env: &Env) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| anyhow!("unclosed ${{ in {s:?}"))?;
            out.push_str(&expand(&r[..end], env).with_context(|| format!("in {s:?}"))?);
            rest = &r[end + 1..];
        } else {
            let len = name_len(rest);
            if len == 0 {
                bail!("a lone `$` in {s:?} (compose wants `$$`)");
            }
            out.push_str(env.get(&rest[..len]).map_or("", String::as_str));
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

fn expand(expr: &str, env: &Env) -> anyhow::Result<String> {
    let (name, op) = expr.split_at(name_len(expr));
    if name.is_empty() {
        bail!("no variable name in ${{{expr}}}");
    }
    let value = env.get(name).map(String::as_str);
    let non_empty = value.filter(|v| !v.is_empty());
    let chosen = if op.is_empty() {
        value.unwrap_or("")
    } else if let Some(default) = op.strip_prefix(":-") {
        non_empty.unwrap_or(default)
    } else if let Some(default) = op.strip_prefix('-') {
        value.unwrap_or(default)
    } else if let Some(error) = op.strip_prefix(":?") {
        non_empty.ok_or_else(|| anyhow!("required variable {name}: {error}"))?
    } else if let Some(error) = op.strip_prefix('?') {
        value.ok_or_else(|| anyhow!("required variable {name}: {error}"))?
    } else if let Some(alternative) = op.strip_prefix(":+") {
        non_empty.map_or("", |_| alternative)
    } else if let Some(alternative) = op.strip_prefix('+') {
        value.map_or("", |_| alternative)
    } else {
        bail!("unknown interpolation ${{{expr}}}");
    };
    Ok(chosen.to_owned())
}

fn interpolate_all(value: &mut Value, env: &Env) -> anyhow::Result<()> {
    match value {
        Value::String(s) => *s = interpolate(s, env)?,
        Value::Array(items) => {
            for item in items {
                interpolate_all(item, env)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                interpolate_all(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A scalar as compose stringifies it (`environment` values, ports).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A string or a list of strings (`command`, `healthcheck.test`, `profiles`).
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// What a compose service is to the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The NATS server.
    Nats,
    /// The integrated registry (CNCF distribution).
    Registry,
    /// `imagestreams up`.
    Monolith,
    /// `imagestreams serve <service>`.
    Serve(String),
    /// The one-shot `imagestreams registry-keys generate --dir DIR`.
    Keys(String),
    /// Anything else.
    Other,
}

/// One published port.
#[derive(Debug, Clone)]
pub struct Published {
    host_ip: String,
    host_port: Option<u16>,
    target: u16,
}

/// The compose project as `docker compose` would run it with some profiles
/// and some services scaled to 0.
pub struct Project {
    doc: Value,
    active: Vec<String>,
}

impl Project {
    /// Interpolates `raw` with `env` and keeps the services that run with
    /// `profiles`, less those in `scaled_to_zero`.
    pub fn new(
        raw: &Value,
        env: &Env,
        profiles: &[&str],
        scaled_to_zero: &[&str],
    ) -> anyhow::Result<Project> {
        let mut doc = raw.clone();
        interpolate_all(&mut doc, env)?;
        let services = doc["services"]
            .as_object()
            .ok_or_else(|| anyhow!("no services"))?;
        let active = services
            .iter()
            .filter(|(_, def)| {
                let own = words(def.get("profiles"));
                own.is_empty() || own.iter().any(|p| profiles.contains(&p.as_str()))
            })
            .map(|(name, _)| name.clone())
            .filter(|name| !scaled_to_zero.contains(&name.as_str()))
            .collect();
        Ok(Project { doc, active })
    }

    /// The services that run.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.active
            .iter()
            .map(|name| (name.as_str(), &self.doc["services"][name]))
    }

    fn service(&self, name: &str) -> Option<&Value> {
        if self.active.iter().any(|n| n == name) {
            Some(&self.doc["services"][name])
        } else {
            None
        }
    }

    /// What `def` is.
    pub fn role(def: &Value) -> Role {
        let image = def["image"].as_str().unwrap_or_default();
        let repo = image.rsplit('/').next().unwrap_or_default();
        let repo = repo.split(':').next().unwrap_or_default();
        let command = words(def.get("command"));
        // a job's command may be one `sh -c` string
        let split: Vec<String> = command
            .iter()
            .flat_map(|c| c.split_whitespace())
            .map(str::to_owned)
            .collect();
        if repo.contains("imagestreams") && split.join(" ").contains("registry-keys generate") {
            return Role::Keys(flag(&split, &["--dir"]).unwrap_or_default());
        }
        match (repo, command.first().map(String::as_str)) {
            ("nats", _) => Role::Nats,
            ("registry", _) => Role::Registry,
            (r, Some("up")) if r.contains("imagestreams") => Role::Monolith,
            (r, Some("serve")) if r.contains("imagestreams") => {
                Role::Serve(command.get(1).cloned().unwrap_or_default())
            }
            _ => Role::Other,
        }
    }

    /// The container's environment (map or `KEY=VALUE` list); unset entries are left out.
    pub fn environment(def: &Value) -> BTreeMap<String, String> {
        match def.get("environment") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| scalar(v).map(|v| (k.clone(), v)))
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// The published ports, short (`[IP:]HOST:CONTAINER[/proto]`) or long syntax.
    pub fn published(def: &Value) -> anyhow::Result<Vec<Published>> {
        let Some(ports) = def.get("ports").and_then(Value::as_array) else {
            return Ok(Vec::new());
        };
        ports
            .iter()
            .map(|port| match port {
                Value::Object(long) => Ok(Published {
                    host_ip: long
                        .get("host_ip")
                        .and_then(scalar)
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    host_port: long
                        .get("published")
                        .and_then(scalar)
                        .map(|p| p.parse())
                        .transpose()?,
                    target: long
                        .get("target")
                        .and_then(scalar)
                        .ok_or_else(|| anyhow!("a port without target"))?
                        .parse()?,
                }),
                short => {
                    let short = scalar(short).ok_or_else(|| anyhow!("odd port {short}"))?;
                    let spec = short.split('/').next().unwrap_or_default();
                    let mut parts = spec.rsplitn(3, ':');
                    let target = parts.next().unwrap_or_default().parse().with_context(|| {
                        format!("container port of {short:?} (ranges are not used here)")
                    })?;
                    let host_port = parts.next().map(str::parse).transpose()?;
                    let host_ip = parts.next().unwrap_or("0.0.0.0").to_owned();
                    Ok(Published {
                        host_ip,
                        host_port,
                        target,
                    })
                }
            })
            .collect()
    }

    /// The health check's command, or `None` when there is none or it is disabled.
    pub fn healthcheck(def: &Value) -> Option<Vec<String>> {
        let check = def.get("healthcheck")?;
        if check.get("disable").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let test = words(check.get("test"));
        match test.first().map(String::as_str) {
            None | Some("NONE") => None,
            _ => Some(test),
        }
    }

    /// The host names that reach `name` on the default network: its name and aliases.
    fn names_of(name: &str, def: &Value) -> Vec<String> {
        let mut names = vec![name.to_owned()];
        if let Some(networks) = def.get("networks").and_then(Value::as_object) {
            for network in networks.values() {
                names.extend(words(network.get("aliases")));
            }
        }
        names
    }

    /// The services a host name reaches.
    pub fn resolve(&self, host: &str) -> Vec<&str> {
        self.services()
            .filter(|(name, def)| Self::names_of(name, def).iter().any(|n| n == host))
            .map(|(name, _)| name)
            .collect()
    }

    /// The effective configuration of an imagestreams container: defaults,
    /// then the image's baked file, then its environment, read into `Config`.
    pub fn config(def: &Value) -> anyhow::Result<Config> {
        let path = repo_root().join(IMAGE_CONFIG_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut layers =
            toml_subset(&text).with_context(|| format!("parsing {}", path.display()))?;
        merge(&mut layers, env_layer(&Self::environment(def))?);
        serde_json::from_value(layers).context("the configuration does not load")
    }

    /// The registry's distribution configuration, from the compose `configs`
    /// mounted at its config path (inline `content` or a `file`).
    pub fn registry_config(&self, def: &Value) -> anyhow::Result<Value> {
        let mounts = def
            .get("configs")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("the registry mounts no configs"))?;
        let source = mounts
            .iter()
            .find(|m| m["target"] == REGISTRY_CONFIG_TARGET)
            .and_then(|m| m["source"].as_str())
            .ok_or_else(|| anyhow!("no config mounted at {REGISTRY_CONFIG_TARGET}"))?;
        let config = &self.doc["configs"][source];
        let text = if let Some(content) = config["content"].as_str() {
            content.to_owned()
        } else if let Some(file) = config["file"].as_str() {
            fs::read_to_string(repo_root().join(file)).with_context(|| format!("reading {file}"))?
        } else {
            bail!("config {source} has neither content nor file");
        };
        let mut config = parse_yaml(&text).with_context(|| format!("parsing config {source}"))?;
        // distribution reads REGISTRY_<SECTION>_<KEY> over its file
        for (key, value) in Self::environment(def) {
            let Some(path) = key.strip_prefix("REGISTRY_") else {
                continue;
            };
            let mut at = &mut config;
            for part in path.split('_') {
                if !at.is_object() {
                    *at = json!({});
                }
                at = &mut at[part.to_lowercase()];
            }
            *at = Value::String(value);
        }
        Ok(config)
    }

    /// Every inconsistency of this project, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.check(&mut problems) {
            problems.push(format!("{e:#}"));
        }
        problems
    }

    fn check(&self, problems: &mut Vec<String>) -> anyhow::Result<()> {
        let mut configs = BTreeMap::new();
        let mut host_ports: BTreeMap<u16, Vec<(&str, String)>> = BTreeMap::new();
        for (name, def) in self.services() {
            let role = Self::role(def);
            // every service has a health check (a one-shot job runs to completion instead), and
            // depends only on running services (or on optional ones, `required: false`)
            if Self::healthcheck(def).is_none() && !matches!(role, Role::Keys(_)) {
                problems.push(format!("{name}: no health check"));
            }
            for dep in depends_on(def) {
                let optional = def["depends_on"][&dep]["required"] == false;
                if self.service(&dep).is_none() && !optional {
                    problems.push(format!("{name}: depends on {dep}, which does not run"));
                }
            }
            for port in Self::published(def)? {
                let Some(host_port) = port.host_port else {
                    continue;
                };
                // the same host port on the same or on every address collides
                for (other, other_ip) in host_ports.get(&host_port).into_iter().flatten() {
                    if *other_ip == port.host_ip
                        || other_ip == "0.0.0.0"
                        || port.host_ip == "0.0.0.0"
                    {
                        problems.push(format!(
                            "{name} and {other} both publish host port {host_port}"
                        ));
                    }
                }
                host_ports
                    .entry(host_port)
                    .or_default()
                    .push((name, port.host_ip));
            }
            match role {
                Role::Monolith | Role::Serve(_) => match Self::config(def) {
                    Ok(config) => {
                        configs.insert(name, (role, config));
                    }
                    Err(e) => problems.push(format!("{name}: {e:#}")),
                },
                Role::Nats => self.check_nats(name, def, problems)?,
                Role::Registry | Role::Keys(_) => {}
                Role::Other => problems.push(format!("{name}: not a service of the mesh")),
            }
        }
        self.check_mesh(&configs, problems)?;
        for (name, def) in self.services() {
            if Self::role(def) == Role::Registry {
                self.check_registry(name, def, &configs, problems)?;
            }
        }
        Ok(())
    }

    fn check_nats(
        &self,
        name: &str,
        def: &Value,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let command = words(def.get("command"));
        if !command.iter().any(|a| a == "-js" || a == "--jetstream") {
            problems.push(format!("{name}: JetStream is off (no -js)"));
        }
        match flag(&command, &["-sd", "--store_dir"]) {
            Some(dir) if mounts(def).contains(&dir) => {}
            Some(dir) => problems.push(format!("{name}: store dir {dir} is not a volume")),
            None => problems.push(format!("{name}: no -sd store dir")),
        }
        let monitor = flag(&command, &["-m", "--http_port"]);
        let listens = nats_ports(&command)?;
        for port in Self::published(def)? {
            if !listens.contains(&port.target) {
                problems.push(format!(
                    "{name}: publishes {} where nothing listens",
                    port.target
                ));
            }
        }
        if let Some(test) = Self::healthcheck(def) {
            match (monitor, http_target(&test)) {
                (Some(m), Some((_, port, _))) if m.parse() == Ok(port) => {}
                (m, t) => problems.push(format!(
                    "{name}: health check {t:?} does not probe the monitoring port {m:?}"
                )),
            }
        }
        Ok(())
    }

    fn check_mesh(
        &self,
        configs: &BTreeMap<&str, (Role, Config)>,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        for (name, (role, config)) in configs {
            let def = self.service(name).expect("configs holds running services");
            let (health, listens) = match listening(role, config) {
                Ok(ports) => ports,
                Err(e) => {
                    problems.push(format!("{name}: {e:#}"));
                    continue;
                }
            };
            for addr in &listens {
                if !addr.ip().is_unspecified() {
                    problems.push(format!(
                        "{name}: listens on {addr}, unreachable from other containers"
                    ));
                }
            }
            let ports: BTreeSet<u16> = listens.iter().map(SocketAddr::port).collect();
            for port in Self::published(def)? {
                if !ports.contains(&port.target) {
                    problems.push(format!(
                        "{name}: publishes container port {} but listens on {ports:?}",
                        port.target
                    ));
                }
            }
            if let Some(test) = Self::healthcheck(def) {
                match http_target(&test) {
                    Some((host, port, path))
                        if (host == "127.0.0.1" || host == "localhost")
                            && port == health.port()
                            && path == "/readyz" => {}
                    other => problems.push(format!(
                        "{name}: health check {other:?} is not GET /readyz on its HTTP port {}",
                        health.port()
                    )),
                }
            }
            // NATS: every URL names a running NATS service's client port
            for url in config.nats.url.split(',') {
                match host_port(url.trim(), "nats://", DEFAULT_NATS_PORT) {
                    Some((host, port)) => {
                        let mut nats_ports_of = Vec::new();
                        for target in self.resolve(&host) {
                            let d = &self.doc["services"][target];
                            if Self::role(d) == Role::Nats {
                                nats_ports_of.push(nats_ports(&words(d.get("command")))?[0]);
                            }
                        }
                        if nats_ports_of != [port] {
                            problems.push(format!(
                                "{name}: nats.url {url} is not the client port of one running NATS service"
                            ));
                        }
                    }
                    None => {
                        problems.push(format!("{name}: nats.url {url} is not nats://host:port"))
                    }
                }
            }
            if config.nats.auto_start {
                problems.push(format!("{name}: nats.auto_start is on in a container"));
            }
            let on_nats = depends_on(def).into_iter().any(|dep| {
                self.service(&dep)
                    .is_some_and(|d| Self::role(d) == Role::Nats)
                    && def["depends_on"][&dep]["condition"] == "service_healthy"
            });
            if !on_nats {
                problems.push(format!("{name}: does not wait for NATS to be healthy"));
            }
        }
        // which services run: `up` once, or each `serve <service>` once
        let mut roles: Vec<String> = configs
            .values()
            .map(|(role, _)| match role {
                Role::Serve(s) => s.clone(),
                _ => "up".to_owned(),
            })
            .collect();
        roles.sort();
        let mut split: Vec<String> = SERVICES.iter().map(ToString::to_string).collect();
        split.sort();
        if roles != ["up"] && roles != split {
            problems.push(format!(
                "the mesh runs {roles:?}: neither `up` alone nor each of {SERVICES:?} once"
            ));
        }
        Ok(())
    }

    fn check_registry(
        &self,
        name: &str,
        def: &Value,
        configs: &BTreeMap<&str, (Role, Config)>,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let config = self.registry_config(def)?;
        // the registry listens where it is published and probed
        let addr = config["http"]["addr"].as_str().unwrap_or_default();
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("{name}: http.addr {addr:?} has no port"))?;
        for published in Self::published(def)? {
            if published.target != port {
                problems.push(format!(
                    "{name}: publishes {} but listens on {port}",
                    published.target
                ));
            }
        }
        // probed on its port, or on its debug server's (`/debug/health`) when auth guards `/v2/`
        let debug_port: Option<u16> = config["http"]["debug"]["addr"]
            .as_str()
            .and_then(|a| a.rsplit(':').next()?.parse().ok());
        if let Some(test) = Self::healthcheck(def) {
            let probed = http_target(&test).map(|(_, p, _)| p);
            if probed != Some(port) && (probed.is_none() || probed != debug_port) {
                problems.push(format!(
                    "{name}: health check does not probe port {port} (or its debug port)"
                ));
            }
        }
        let endpoints = config["notifications"]["endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if endpoints.is_empty() {
            problems.push(format!("{name}: sends no notifications"));
        }
        for endpoint in endpoints {
            let what = format!("{name}: notification endpoint {}", endpoint["name"]);
            if endpoint["disabled"] == true {
                problems.push(format!("{what} is disabled"));
            }
            let url = endpoint["url"].as_str().unwrap_or_default();
            let Some((host, port, path)) = http_url(url) else {
                problems.push(format!("{what}: url {url:?} is not http://host:port/path"));
                continue;
            };
            if path != "/notifications" {
                problems.push(format!("{what}: path {path} is not /notifications"));
            }
            // the host is one running container, the watcher, listening on that port
            let targets = self.resolve(&host);
            let [target] = targets.as_slice() else {
                problems.push(format!(
                    "{what}: host {host} reaches {targets:?}, not exactly one container"
                ));
                continue;
            };
            let Some((role, watcher)) = configs.get(target) else {
                problems.push(format!(
                    "{what}: host {host} is {target}, not an imagestreams container"
                ));
                continue;
            };
            let runs_watcher = match role {
                Role::Monolith => true,
                Role::Serve(s) => s == "registry-watcher",
                _ => false,
            };
            if !runs_watcher {
                problems.push(format!(
                    "{what}: host {host} is {target}, which runs no registry-watcher"
                ));
            }
            if watcher.registry_watcher.listen.port() != port {
                problems.push(format!(
                    "{what}: port {port}, but {target} listens for notifications on {}",
                    watcher.registry_watcher.listen
                ));
            }
            // the token the registry sends is the one the watcher wants
            let token = watcher
                .registry_watcher
                .token
                .as_ref()
                .map(|t| t.expose().to_owned());
            let sent = &endpoint["headers"]["Authorization"];
            match token {
                Some(token) if !token.is_empty() => {
                    // never print either token
                    if *sent != json!([format!("Bearer {token}")]) {
                        problems.push(format!(
                            "{what}: the Authorization header is not `Bearer <{target}'s registry_watcher.token>`"
                        ));
                    }
                }
                _ => problems.push(format!("{what}: {target} has no registry_watcher.token")),
            }
            if watcher.registry_watcher.insecure {
                problems.push(format!(
                    "{what}: {target} accepts notifications without a token"
                ));
            }
            let ignored: Vec<String> = words(endpoint.get("ignoredmediatypes"))
                .into_iter()
                .chain(words(endpoint["ignore"].get("mediatypes")))
                .collect();
            if !ignored.iter().any(|m| m == "application/octet-stream") {
                problems.push(format!(
                    "{what}: does not ignore application/octet-stream (layer blobs)"
                ));
            }
            if !words(endpoint["ignore"].get("actions"))
                .iter()
                .any(|a| a == "pull")
            {
                problems.push(format!("{what}: does not ignore pulls"));
            }
        }
        self.check_token_auth(name, def, &config, configs, problems);
        Ok(())
    }

    /// With `auth.token`, the registry sends clients to a gateway's token service, published on the
    /// host, which signs with a key whose root certificate the registry reads from a volume they share
    /// with the job that made them.
    fn check_token_auth(
        &self,
        name: &str,
        def: &Value,
        registry: &Value,
        configs: &BTreeMap<&str, (Role, Config)>,
        problems: &mut Vec<String>,
    ) {
        let token = &registry["auth"]["token"];
        let issuing: Vec<(&str, &Config)> = configs
            .iter()
            .filter(|(_, (role, config))| {
                let gateway = match role {
                    Role::Monolith => true,
                    Role::Serve(s) => s == "gateway",
                    _ => false,
                };
                gateway && config.auth.registry.enabled
            })
            .map(|(n, (_, c))| (*n, c))
            .collect();
        if token.is_null() {
            for (gateway, _) in &issuing {
                problems.push(format!(
                    "{gateway}: serves registry tokens, but {name} does not ask for them"
                ));
            }
            return;
        }
        let [(gateway, config)] = issuing.as_slice() else {
            problems.push(format!(
                "{name}: asks for tokens, but {} gateways serve them",
                issuing.len()
            ));
            return;
        };
        let settings = &config.auth.registry;
        // the realm: where a client on the host reaches the gateway's HTTP port
        let realm = token["realm"].as_str().unwrap_or_default();
        let gateway_def = self.service(gateway).expect("a running service");
        let published: Vec<u16> = Self::published(gateway_def)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.target == config.gateway.http_listen.port())
            .filter_map(|p| p.host_port)
            .collect();
        match http_url(realm) {
            Some((host, port, path))
                if (host == "localhost" || host == "127.0.0.1")
                    && published.contains(&port)
                    && path == "/token" => {}
            _ => problems.push(format!(
                "{name}: auth.token.realm {realm:?} is not http://localhost:<{gateway}'s published HTTP port {published:?}>/token"
            )),
        }
        for (key, want) in [("service", &settings.service), ("issuer", &settings.issuer)] {
            if token[key].as_str() != Some(want.as_str()) {
                problems.push(format!(
                    "{name}: auth.token.{key} {} is not {gateway}'s auth.registry.{key} {want:?}",
                    token[key]
                ));
            }
        }
        // one volume: the job writes the keys there, the gateway reads its key, the registry its bundle
        let bundle = token["rootcertbundle"].as_str().unwrap_or_default();
        let Some((volume, _)) = volume_holding(def, bundle) else {
            problems.push(format!(
                "{name}: auth.token.rootcertbundle {bundle} is not in a volume"
            ));
            return;
        };
        for file in [&settings.key_file, &settings.cert_file] {
            let file = file.to_string_lossy();
            if volume_holding(gateway_def, &file).map(|(v, _)| v) != Some(volume.clone()) {
                problems.push(format!(
                    "{gateway}: {file} is not in the volume {volume} that {name} reads its bundle from"
                ));
            }
        }
        let writers: Vec<&str> = self
            .services()
            .filter(|(_, d)| match Self::role(d) {
                Role::Keys(dir) => volume_holding(d, &format!("{dir}/x"))
                    .is_some_and(|(v, at)| v == volume && at == dir),
                _ => false,
            })
            .map(|(n, _)| n)
            .collect();
        if writers.is_empty() {
            problems.push(format!(
                "{name}: no registry-keys job writes into the volume {volume}"
            ));
        }
        let key_dir = settings
            .key_file
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !writers.iter().all(
            |w| matches!(Self::role(&self.doc["services"][*w]), Role::Keys(dir) if dir == key_dir),
        ) {
            problems.push(format!(
                "{name}: the registry-keys job writes elsewhere than {gateway}'s key directory {key_dir}"
            ));
        }
    }
}

/// The named volume and mount point of `def` that hold the container path `path`.
fn volume_holding(def: &Value, path: &str) -> Option<(String, String)> {
    def.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::String(s) => {
                let mut parts = s.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            }
            Value::Object(long) => Some((
                long.get("source").and_then(scalar)?,
                long.get("target").and_then(scalar)?,
            )),
            _ => None,
        })
        .filter(|(_, target)| path.starts_with(&format!("{}/", target.trim_end_matches('/'))))
        .max_by_key(|(_, target)| target.len())
}

/// The services a service depends on (list or map form).
fn depends_on(def: &Value) -> Vec<String> {
    match def.get("depends_on") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        other => words(other),
    }
}

/// The container paths of a service's volumes (short syntax or long).
fn mounts(def: &Value) -> Vec<String> {
    def.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::String(s) => s.split(':').nth(1).map(str::to_owned),
            Value::Object(long) => long.get("target").and_then(scalar),
            _ => None,
        })
        .collect()
}

/// The value after any of `names` in an argument list.
fn flag(args: &[String], names: &[&str]) -> Option<String> {
    args.windows(2)
        .find(|w| names.contains(&w[0].as_str()))
        .map(|w| w[1].clone())
}

/// A nats-server's ports from its arguments: the client port first, then the monitoring port.
fn nats_ports(command: &[String]) -> anyhow::Result<Vec<u16>> {
    let client = flag(command, &["-p", "--port"])
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(DEFAULT_NATS_PORT);
    let mut ports = vec![client];
    if let Some(m) = flag(command, &["-m", "--http_port"]) {
        ports.push(m.parse()?);
    }
    Ok(ports)
}

/// The HTTP port (health) and every address an imagestreams container listens on.
fn listening(role: &Role, c: &Config) -> anyhow::Result<(SocketAddr, Vec<SocketAddr>)> {
    Ok(match role {
        Role::Monolith => (
            c.gateway.http_listen,
            vec![
                c.gateway.grpc_listen,
                c.gateway.http_listen,
                c.registry_watcher.listen,
                c.tag_syncer.hooks_listen,
            ],
        ),
        Role::Serve(s) => match s.as_str() {
            "gateway" => (
                c.gateway.http_listen,
                vec![c.gateway.grpc_listen, c.gateway.http_listen],
            ),
            "registry-watcher" => (c.registry_watcher.listen, vec![c.registry_watcher.listen]),
            "stream-store" => (c.stream_store.http_listen, vec![c.stream_store.http_listen]),
            "tag-syncer" => (
                c.tag_syncer.http_listen,
                vec![c.tag_syncer.http_listen, c.tag_syncer.hooks_listen],
            ),
            "trigger" => (c.trigger.http_listen, vec![c.trigger.http_listen]),
            other => bail!("`serve {other}` is not a service"),
        },
        other => bail!("{other:?} is not an imagestreams container"),
    })
}

/// `(host, port)` of `scheme://[user[:pass]@]host[:port][/…]`.
fn host_port(url: &str, scheme: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.strip_prefix(scheme)?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_owned(), default_port)),
        None => None,
    }
}

/// `(host, port, path)` of an `http://` URL.
fn http_url(url: &str) -> Option<(String, u16, String)> {
    let (host, port) = host_port(url, "http://", 80)?;
    let rest = &url["http://".len()..];
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    Some((host, port, path.to_owned()))
}

/// The URL a health check command fetches.
fn http_target(test: &[String]) -> Option<(String, u16, String)> {
    test.iter()
        .flat_map(|w| w.split_whitespace())
        .find(|w| w.starts_with("http://"))
        .and_then(http_url)
}

/// The `IMAGESTREAMS_*` variables as nested keys, valued as figment reads
/// them: `true`/`false` are booleans, integers are numbers, the rest strings.
fn env_layer(env: &BTreeMap<String, String>) -> anyhow::Result<Value> {
    let mut root = Value::Object(Map::new());
    for (key, value) in env {
        let Some(key) = key
            .to_ascii_uppercase()
            .strip_prefix(ENV_PREFIX)
            .map(str::to_ascii_lowercase)
        else {
            continue;
        };
        if CLIENT_ENV_KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = match value.as_str() {
            "true" => json!(true),
            "false" => json!(false),
            v => v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n)),
        };
        let path: Vec<&str> = key.split("__").collect();
        let (last, parents) = path.split_last().expect("split yields a part");
        let mut node = &mut root;
        for part in parents {
            node = node
                .as_object_mut()
                .ok_or_else(|| anyhow!("{key}: {part} is both a value and a section"))?
                .entry(*part)
                .or_insert_with(|| json!({}));
        }
        node.as_object_mut()
            .ok_or_else(|| anyhow!("{key}: a value inside a value"))?
            .insert((*last).to_owned(), value);
    }
    Ok(root)
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// The TOML the image carries, which uses only `[section]` and
/// `[section.sub]` tables and `key = "string" | true | false | integer`:
/// those are JSON literals.
fn toml_subset(text: &str) -> anyhow::Result<Value> {
    let mut root = Value::Object(Map::new());
    let mut section: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.split('.').map(|s| s.trim().to_owned()).collect();
            table(&mut root, &section);
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow!("line {}: not `key = value`", n + 1))?;
        let value: Value = serde_json::from_str(value.trim())
            .with_context(|| format!("line {}: a value this reader does not know", n + 1))?;
        table(&mut root, &section).insert(key.trim().to_owned(), value);
    }
    Ok(root)
}

/// The table at `path` under `root`, made when missing.
fn table<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Map<String, Value> {
    let mut at = root;
    for name in path {
        at = at
            .as_object_mut()
            .expect("sections are tables")
            .entry(name.clone())
            .or_insert_with(|| json!({}));
    }
    at.as_object_mut().expect("sections are tables")
}
