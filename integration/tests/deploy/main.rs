//! The deployment files agree with each other and with the services:
//! docker-compose.yml (the registry's notification URL and token against the
//! registry-watcher's listen address and token, published ports against
//! listen addresses, NATS URLs, health checks), in its default form and with
//! the `microservices` profile. The Helm chart is checked by
//! ci/validate_deploy.py (rendered with Helm's engine, validated against the
//! Kubernetes schemas).

mod compose;
mod layout;

use compose::{Env, MICROSERVICES, MONOLITH, Project, interpolate, raw_compose};

/// The profile that puts the registry behind the token service.
const TOKEN_AUTH: &str = "token-auth";
use serde_json::Value;

/// The variables compose would see: none (every default applies), or a
/// token of the operator's.
fn environments() -> [Env; 2] {
    [
        Env::new(),
        Env::from([(
            "REGISTRY_WATCHER_TOKEN".to_owned(),
            "operator-chosen-4f1d9a".to_owned(),
        )]),
    ]
}

/// `REGISTRY_TOKEN_AUTH=true IMAGESTREAMS_AUTH_ENABLED=true docker compose --profile token-auth
/// [--profile microservices] up --scale registry=0 [--scale imagestreams=0]`.
fn token_auth(raw: &Value, microservices: bool) -> Project {
    let env = Env::from([
        ("REGISTRY_TOKEN_AUTH".to_owned(), "true".to_owned()),
        ("IMAGESTREAMS_AUTH_ENABLED".to_owned(), "true".to_owned()),
    ]);
    if microservices {
        Project::new(
            raw,
            &env,
            &[TOKEN_AUTH, MICROSERVICES],
            &["registry", MONOLITH],
        )
    } else {
        Project::new(raw, &env, &[TOKEN_AUTH], &["registry"])
    }
    .expect("the compose file interpolates")
}

/// The default form: `docker compose up`.
fn monolith(raw: &Value, env: &Env) -> Project {
    Project::new(raw, env, &[], &[]).expect("the compose file interpolates")
}

/// `docker compose --profile microservices up --scale imagestreams=0`.
fn microservices(raw: &Value, env: &Env) -> Project {
    Project::new(raw, env, &[MICROSERVICES], &[MONOLITH]).expect("the compose file interpolates")
}

fn assert_consistent(project: &Project, what: &str) {
    let problems = project.problems();
    assert!(
        problems.is_empty(),
        "{what} is inconsistent:\n  {}",
        problems.join("\n  ")
    );
}

/// Asserts that `mutate` makes both forms report a problem containing
/// `expected`, in every environment.
fn assert_caught(mutate: impl Fn(&mut Value), expected: &str) {
    assert_caught_in(&environments(), mutate, expected);
}

fn assert_caught_in(envs: &[Env], mutate: impl Fn(&mut Value), expected: &str) {
    let mut raw = raw_compose().expect("docker-compose.yml parses");
    mutate(&mut raw);
    for env in envs {
        for (what, project) in [
            ("default", monolith(&raw, env)),
            ("microservices", microservices(&raw, env)),
        ] {
            let problems = project.problems();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{what} with {env:?}: expected a problem with {expected:?}, got {problems:#?}"
            );
        }
    }
}

/// Replaces `from` (which must occur) in the registry's inline configuration.
fn edit_registry_config(raw: &mut Value, from: &str, to: &str) {
    let content = raw["configs"]["registry-config"]["content"]
        .as_str()
        .expect("the registry configuration is inline")
        .to_owned();
    assert!(
        content.contains(from),
        "{from:?} is not in the registry configuration"
    );
    raw["configs"]["registry-config"]["content"] = Value::String(content.replace(from, to));
}

#[test]
fn the_default_form_runs_the_monolith_consistently() {
    let raw = raw_compose().expect("docker-compose.yml parses");
    for env in environments() {
        let project = monolith(&raw, &env);
        let names: Vec<_> = project.services().map(|(name, _)| name).collect();
        assert_eq!(names, ["imagestreams", "nats", "registry"], "{env:?}");
        assert_consistent(&project, "docker compose up");
    }
}

#[test]
fn the_microservices_profile_runs_each_service_consistently() {
    let raw = raw_compose().expect("docker-compose.yml parses");
    for env in environments() {
        let project = microservices(&raw, &env);
        let mut names: Vec<_> = project.services().map(|(name, _)| name).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "gateway",
                "nats",
                "registry",
                "registry-watcher",
                "stream-store",
                "tag-syncer",
                "trigger"
            ],
            "{env:?}"
        );
        assert_consistent(
            &project,
            "docker compose --profile microservices up --scale imagestreams=0",
        );
    }
}

#[test]
fn the_microservices_profile_without_scaling_down_the_monolith_refuses_to_start() {
    // Two watchers would both answer `registry-watcher`; the colliding
    // published ports make compose refuse instead.
    let raw = raw_compose().expect("docker-compose.yml parses");
    let project = Project::new(&raw, &Env::new(), &[MICROSERVICES], &[]).expect("interpolates");
    let problems = project.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("both publish host port")),
        "{problems:#?}"
    );
}

#[test]
fn a_notification_url_on_the_wrong_port_is_caught() {
    assert_caught(
        |raw| edit_registry_config(raw, "registry-watcher:8085/", "registry-watcher:8086/"),
        "listens for notifications on",
    );
}

#[test]
fn a_notification_url_to_another_host_is_caught() {
    assert_caught(
        |raw| edit_registry_config(raw, "http://registry-watcher:8085", "http://gateway:8085"),
        "host gateway",
    );
}

#[test]
fn a_token_the_watcher_does_not_expect_is_caught() {
    assert_caught(
        |raw| {
            edit_registry_config(
                raw,
                "Bearer ${REGISTRY_WATCHER_TOKEN:-dev-only-change-me}",
                "Bearer not-the-token",
            )
        },
        "Authorization header",
    );
}

#[test]
fn a_token_that_ignores_the_operators_variable_is_caught() {
    // Equal to the default, so only an operator's REGISTRY_WATCHER_TOKEN tells.
    let [_, operator] = environments();
    assert_caught_in(
        &[operator],
        |raw| {
            edit_registry_config(
                raw,
                "Bearer ${REGISTRY_WATCHER_TOKEN:-dev-only-change-me}",
                "Bearer dev-only-change-me",
            )
        },
        "Authorization header",
    );
}

#[test]
fn a_watcher_listening_elsewhere_is_caught() {
    assert_caught(
        |raw| {
            for service in ["imagestreams", "registry-watcher"] {
                raw["services"][service]["environment"]["IMAGESTREAMS_REGISTRY_WATCHER__LISTEN"] =
                    "0.0.0.0:9999".into();
            }
        },
        "listens for notifications on 0.0.0.0:9999",
    );
}

#[test]
fn a_service_without_a_health_check_is_caught() {
    assert_caught(
        |raw| {
            for service in ["imagestreams", "stream-store"] {
                raw["services"][service]
                    .as_object_mut()
                    .expect("a service")
                    .remove("healthcheck");
            }
        },
        "no health check",
    );
}

#[test]
fn a_health_check_on_the_wrong_port_is_caught() {
    assert_caught(
        |raw| {
            for service in ["imagestreams", "gateway"] {
                for word in raw["services"][service]["healthcheck"]["test"]
                    .as_array_mut()
                    .expect("a health check command")
                {
                    if word.as_str().is_some_and(|w| w.starts_with("http://")) {
                        *word = "http://127.0.0.1:8081/readyz".into();
                    }
                }
            }
        },
        "is not GET /readyz on its HTTP port",
    );
}

#[test]
fn a_nats_url_to_no_nats_service_is_caught() {
    assert_caught(
        |raw| {
            for service in raw["services"]
                .as_object_mut()
                .expect("services")
                .values_mut()
            {
                let env = &mut service["environment"];
                if env.get("IMAGESTREAMS_NATS__URL").is_some() {
                    env["IMAGESTREAMS_NATS__URL"] = "nats://natz:4222".into();
                }
            }
        },
        "nats.url nats://natz:4222",
    );
}

#[test]
fn an_unknown_configuration_key_is_caught() {
    assert_caught(
        |raw| {
            for service in ["imagestreams", "trigger"] {
                raw["services"][service]["environment"]["IMAGESTREAMS_TRIGGER__HTTP_LISTN"] =
                    "0.0.0.0:8083".into();
            }
        },
        "http_listn",
    );
}

#[test]
fn interpolation_follows_compose() {
    let env = Env::from([
        ("SET".to_owned(), "x".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    let cases = [
        ("${SET}", "x"),
        ("$SET/$UNSET.", "x/."),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${SET:-d}", "x"),
        ("${SET:+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("$$SET", "$SET"),
    ];
    for (input, expected) in cases {
        assert_eq!(interpolate(input, &env).expect(input), expected, "{input}");
    }
    assert!(interpolate("${UNSET:?needed}", &env).is_err());
    assert!(interpolate("${SET", &env).is_err());
}

#[test]
fn the_token_auth_profile_wires_the_registry_to_the_token_service() {
    let raw = raw_compose().expect("docker-compose.yml parses");
    for microservices in [false, true] {
        let project = token_auth(&raw, microservices);
        let names: Vec<_> = project.services().map(|(name, _)| name).collect();
        assert!(
            names.contains(&"registry-keys") && names.contains(&"registry-token-auth"),
            "{names:?}"
        );
        assert!(!names.contains(&"registry"), "{names:?}");
        assert_consistent(
            &project,
            "docker compose --profile token-auth up --scale registry=0",
        );
    }
}

/// Asserts that `mutate` makes the token-auth forms report a problem containing `expected`.
fn assert_token_auth_caught(mutate: impl Fn(&mut Value), expected: &str) {
    let mut raw = raw_compose().expect("docker-compose.yml parses");
    mutate(&mut raw);
    for microservices in [false, true] {
        let problems = token_auth(&raw, microservices).problems();
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "microservices={microservices}: expected a problem with {expected:?}, got {problems:#?}"
        );
    }
}

fn set_registry_env(raw: &mut Value, key: &str, value: &str) {
    raw["services"]["registry-token-auth"]["environment"][key] = Value::String(value.to_owned());
}

#[test]
fn a_realm_off_the_gateways_published_port_is_caught() {
    assert_token_auth_caught(
        |raw| {
            set_registry_env(
                raw,
                "REGISTRY_AUTH_TOKEN_REALM",
                "http://localhost:9999/token",
            )
        },
        "auth.token.realm",
    );
}

#[test]
fn a_service_the_token_service_does_not_issue_for_is_caught() {
    assert_token_auth_caught(
        |raw| set_registry_env(raw, "REGISTRY_AUTH_TOKEN_SERVICE", "another-registry"),
        "auth.token.service",
    );
}

#[test]
fn a_bundle_outside_the_shared_keys_volume_is_caught() {
    assert_token_auth_caught(
        |raw| {
            set_registry_env(
                raw,
                "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
                "/etc/docker/registry/root.pem",
            )
        },
        "is not in a volume",
    );
}

#[test]
fn keys_written_where_the_gateway_does_not_look_are_caught() {
    assert_token_auth_caught(
        |raw| {
            for service in [MONOLITH, "gateway"] {
                raw["services"][service]["environment"]["IMAGESTREAMS_AUTH__REGISTRY__KEY_FILE"] =
                    Value::String("/var/lib/imagestreams/keys/token.key".to_owned());
            }
        },
        "is not in the volume",
    );
}

#[test]
fn a_registry_without_token_auth_beside_an_issuing_gateway_is_caught() {
    let raw = raw_compose().expect("docker-compose.yml parses");
    let env = Env::from([("REGISTRY_TOKEN_AUTH".to_owned(), "true".to_owned())]);
    let project = Project::new(&raw, &env, &[], &[]).expect("interpolates");
    assert!(
        project
            .problems()
            .iter()
            .any(|p| p.contains("does not ask for them")),
        "{:#?}",
        project.problems()
    );
}
