//! A trigger to create: a request checked at the edge (names, the followed
//! tag, the kind's own fields, a webhook URL's shape, a mirror rule's
//! destination) into a [`NewTrigger`], and back to the wire for the client.

use super::*;

/// A trigger to create, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrigger {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What it follows and requests.
    pub spec: TriggerSpec,
    /// Fire for the image the tag already holds (the default).
    pub fire_existing: bool,
}

impl TryFrom<proto::CreateTriggerRequest> for NewTrigger {
    type Error = ApiError;

    /// Validates a create request; the request's namespace fills an empty
    /// `trigger.namespace` and must match a set one, and an empty
    /// `from.namespace` means the trigger's own.
    fn try_from(request: proto::CreateTriggerRequest) -> Result<Self, ApiError> {
        let trigger = request
            .trigger
            .ok_or_else(|| invalid("trigger", "Required value"))?;
        let namespace = match (request.namespace.as_str(), trigger.namespace.as_str()) {
            ("", "") => return Err(invalid("namespace", "Required value")),
            (ns, "") | ("", ns) => ns.to_owned(),
            (a, b) if a == b => a.to_owned(),
            (a, b) => {
                return Err(invalid(
                    "namespace",
                    format!(
                        "the namespace of the request ({a}) does not match the trigger's ({b})"
                    ),
                ));
            }
        };
        if !is_dns1123_label(&namespace) {
            return Err(invalid(
                "namespace",
                format!("Invalid value: {namespace:?}: not a valid namespace"),
            ));
        }
        if !is_dns1123_label(&trigger.name) {
            return Err(invalid(
                "name",
                format!(
                    "Invalid value: {:?}: a trigger name must be a lowercase RFC 1123 label",
                    trigger.name
                ),
            ));
        }
        let spec = trigger
            .spec
            .ok_or_else(|| invalid("spec", "Required value"))?;
        let from = spec
            .from
            .ok_or_else(|| invalid("spec.from", "Required value"))?;
        let from = TagRef {
            namespace: if from.namespace.is_empty() {
                namespace.clone()
            } else {
                from.namespace
            },
            stream: from.stream,
            tag: from.tag,
        };
        from.validate("spec.from")?;
        let kind = TriggerKind::try_from(
            proto::TriggerKind::try_from(spec.kind).unwrap_or(proto::TriggerKind::Unspecified),
        )?;
        if kind != TriggerKind::Deploy && !spec.container.is_empty() {
            return Err(invalid(
                "spec.container",
                "Forbidden: a container is set only for Deploy triggers",
            ));
        }
        if !spec.container.is_empty() && !is_dns1123_label(&spec.container) {
            return Err(invalid(
                "spec.container",
                format!(
                    "Invalid value: {:?}: not a valid container name",
                    spec.container
                ),
            ));
        }
        let webhook = match spec.webhook {
            None => None,
            Some(w) if w.url.is_empty() && w.secret.is_empty() => None,
            Some(w) if w.url.is_empty() => {
                return Err(invalid(
                    "spec.webhook.url",
                    "Required value: a secret needs a webhook URL",
                ));
            }
            Some(w) => {
                check_webhook_url_shape(&w.url)?;
                Some(Webhook {
                    url: w.url,
                    secret: (!w.secret.is_empty()).then(|| WebhookSecret::new(w.secret)),
                })
            }
        };
        let mirror = mirror_target(kind, spec.mirror, &from, &namespace)?;
        if kind == TriggerKind::Mirror && webhook.is_some() {
            return Err(invalid(
                "spec.webhook",
                "Forbidden: a mirror rule's firings are pushes, not webhooks",
            ));
        }
        Ok(NewTrigger {
            namespace,
            name: trigger.name,
            spec: TriggerSpec {
                from,
                kind,
                paused: spec.paused,
                container: spec.container,
                webhook,
                mirror,
            },
            fire_existing: !request.no_fire_existing,
        })
    }
}

impl From<&NewTrigger> for proto::CreateTriggerRequest {
    fn from(t: &NewTrigger) -> Self {
        proto::CreateTriggerRequest {
            namespace: t.namespace.clone(),
            trigger: Some(proto::Trigger {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                spec: Some(proto::TriggerSpec {
                    from: Some((&t.spec.from).into()),
                    kind: proto::TriggerKind::from(t.spec.kind) as i32,
                    paused: t.spec.paused,
                    container: t.spec.container.clone(),
                    webhook: t.spec.webhook.as_ref().map(|w| proto::Webhook {
                        url: w.url.clone(),
                        secret: w
                            .secret
                            .as_ref()
                            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
                            .unwrap_or_default(),
                        has_secret: w.secret.is_some(),
                    }),
                    mirror: t.spec.mirror.as_ref().map(Into::into),
                }),
                ..Default::default()
            }),
            no_fire_existing: !t.fire_existing,
        }
    }
}

/// The destination of a mirror rule, checked: required for (and only for)
/// `Mirror`, a repository with an optional tag (the followed tag's name when
/// none), and only from a stream of the rule's own namespace, whose
/// credentials push it.
fn mirror_target(
    kind: TriggerKind,
    mirror: Option<proto::MirrorTarget>,
    from: &TagRef,
    namespace: &str,
) -> Result<Option<MirrorTarget>, ApiError> {
    let mirror = mirror.filter(|m| !m.to.is_empty());
    let Some(mirror) = mirror else {
        return if kind == TriggerKind::Mirror {
            Err(invalid(
                "spec.mirror.to",
                "Required value: the REPOSITORY[:TAG] a mirror rule pushes to",
            ))
        } else {
            Ok(None)
        };
    };
    if kind != TriggerKind::Mirror {
        return Err(invalid(
            "spec.mirror",
            "Forbidden: a destination is set only for Mirror rules",
        ));
    }
    if from.namespace != namespace {
        return Err(invalid(
            "spec.from.namespace",
            format!(
                "Forbidden: a mirror rule pushes images of its own namespace ({namespace}), not of {}",
                from.namespace
            ),
        ));
    }
    let to = mirror.to.trim();
    let bad = |why: String| invalid("spec.mirror.to", format!("Invalid value: {to:?}: {why}"));
    let reference = Reference::parse_normalized(to).map_err(|e| bad(e.to_string()))?;
    if reference.digest().is_some() {
        return Err(bad("a destination names a tag, not a digest".into()));
    }
    let to = match reference.tag() {
        Some(_) => to.to_owned(),
        None => format!("{to}:{}", from.tag),
    };
    Ok(Some(MirrorTarget {
        to,
        insecure: mirror.insecure,
    }))
}

/// The shape check of a webhook URL that needs no network: `http(s)://host…`,
/// no whitespace, no user info. The trigger service also applies its SSRF policy.
pub fn check_webhook_url_shape(url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| invalid("spec.webhook.url", format!("Invalid value: {url:?}: {why}"));
    if url.len() > MAX_WEBHOOK_URL_LENGTH {
        return Err(bad("too long"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("holds whitespace"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("must be an http or https URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("must not hold credentials"));
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(bad("has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec of a request's trigger.
    fn spec(r: &mut proto::CreateTriggerRequest) -> &mut proto::TriggerSpec {
        r.trigger.as_mut().unwrap().spec.as_mut().unwrap()
    }

    /// The field an invalid request is refused for.
    fn refused_field(r: proto::CreateTriggerRequest) -> String {
        match NewTrigger::try_from(r) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn request() -> proto::CreateTriggerRequest {
        proto::CreateTriggerRequest {
            namespace: "ns1".into(),
            trigger: Some(proto::Trigger {
                name: "app-build".into(),
                spec: Some(proto::TriggerSpec {
                    from: Some(proto::ImageStreamTagReference {
                        namespace: String::new(),
                        stream: "app".into(),
                        tag: "latest".into(),
                    }),
                    kind: proto::TriggerKind::Build as i32,
                    webhook: Some(proto::Webhook {
                        url: "https://ci.example.com/hook".into(),
                        secret: "s3cret".into(),
                        has_secret: false,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            no_fire_existing: false,
        }
    }

    #[test]
    fn a_valid_request_converts_and_defaults_the_namespace() {
        let t = NewTrigger::try_from(request()).unwrap();
        assert_eq!(t.namespace, "ns1");
        assert_eq!(t.spec.from.to_string(), "ns1/app:latest");
        assert_eq!(t.spec.kind, TriggerKind::Build);
        assert!(t.fire_existing);
        let back = NewTrigger::try_from(proto::CreateTriggerRequest::from(&t)).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn invalid_requests_name_the_refused_field() {
        let mut r = request();
        spec(&mut r).kind = 0;
        assert_eq!(refused_field(r), "spec.kind");
        let mut r = request();
        r.trigger.as_mut().unwrap().name = "Bad_Name".into();
        assert_eq!(refused_field(r), "name");
        let mut r = request();
        spec(&mut r).from.as_mut().unwrap().tag = "bad tag".into();
        assert_eq!(refused_field(r), "spec.from.tag");
        let mut r = request();
        spec(&mut r).container = "web".into();
        assert_eq!(refused_field(r), "spec.container");
        let mut r = request();
        spec(&mut r).webhook.as_mut().unwrap().url = "ftp://x/".into();
        assert_eq!(refused_field(r), "spec.webhook.url");
        let mut r = request();
        r.namespace = "other".into();
        r.trigger.as_mut().unwrap().namespace = "ns1".into();
        assert_eq!(refused_field(r), "namespace");
    }

    fn mirror_request(to: &str) -> proto::CreateTriggerRequest {
        let mut r = request();
        let spec = spec(&mut r);
        spec.kind = proto::TriggerKind::Mirror as i32;
        spec.webhook = None;
        spec.mirror = Some(proto::MirrorTarget {
            to: to.into(),
            insecure: true,
        });
        r
    }

    #[test]
    fn mirror_rules_need_a_tagged_destination_of_their_own_namespace() {
        let rule = NewTrigger::try_from(mirror_request("registry.example.com/team/app")).unwrap();
        assert_eq!(rule.spec.kind, TriggerKind::Mirror);
        let target = rule.spec.mirror.clone().unwrap();
        assert_eq!(target.to, "registry.example.com/team/app:latest");
        assert!(target.insecure);
        let back = NewTrigger::try_from(proto::CreateTriggerRequest::from(&rule)).unwrap();
        assert_eq!(back, rule);
        let kept = NewTrigger::try_from(mirror_request("r.example.com/app:prod")).unwrap();
        assert_eq!(kept.spec.mirror.unwrap().to, "r.example.com/app:prod");

        assert_eq!(refused_field(mirror_request("")), "spec.mirror.to");
        assert_eq!(
            refused_field(mirror_request("r.example.com/App:x")),
            "spec.mirror.to"
        );
        let digest = format!("r.example.com/app@sha256:{}", "a".repeat(64));
        assert_eq!(refused_field(mirror_request(&digest)), "spec.mirror.to");
        let mut foreign = mirror_request("r.example.com/app");
        let spec = spec(&mut foreign);
        spec.from.as_mut().unwrap().namespace = "other".into();
        assert_eq!(refused_field(foreign), "spec.from.namespace");
        let mut hooked = mirror_request("r.example.com/app");
        hooked
            .trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .webhook = Some(proto::Webhook {
            url: "https://ci.example.com/".into(),
            ..Default::default()
        });
        assert_eq!(refused_field(hooked), "spec.webhook");
        let mut build = request();
        build
            .trigger
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .mirror = Some(proto::MirrorTarget {
            to: "r.example.com/app".into(),
            insecure: false,
        });
        assert_eq!(refused_field(build), "spec.mirror");
    }

    #[test]
    fn a_mirror_rule_reports_whether_its_newest_image_is_there() {
        let rule = NewTrigger::try_from(mirror_request("r.example.com/app:prod")).unwrap();
        let mut stored = Trigger {
            namespace: rule.namespace.clone(),
            name: rule.name.clone(),
            uid: "u".into(),
            creation_timestamp: String::new(),
            spec: rule.spec.clone(),
            status: TriggerStatus::default(),
        };
        let status = |t: &Trigger, d: Option<&Delivery>| {
            let c = t.mirrored_condition(d).unwrap();
            (c.status, c.reason)
        };
        assert_eq!(
            status(&stored, None),
            ("Unknown".into(), "NothingMirrored".into())
        );
        let mut delivery = Delivery {
            state: DeliveryState::Pending,
            ..Delivery::default()
        };
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("Unknown".into(), "Mirroring".into())
        );
        delivery.record(DeliveryAttempt {
            error: "Unauthorized: authentication required".into(),
            ..DeliveryAttempt::default()
        });
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("False".into(), "Retrying".into())
        );
        delivery.state = DeliveryState::Failed;
        assert_eq!(
            status(&stored, Some(&delivery)),
            ("False".into(), "Failed".into())
        );
        delivery.state = DeliveryState::Succeeded;
        stored.status.last_mirrored_image = "sha256:1".into();
        let c = stored.mirrored_condition(Some(&delivery)).unwrap();
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("True", "sha256:1 is at r.example.com/app:prod")
        );
        stored.spec.kind = TriggerKind::Build;
        assert!(stored.mirrored_condition(Some(&delivery)).is_none());
    }

    #[test]
    fn secrets_never_leave_through_debug_or_the_wire() {
        let t = NewTrigger::try_from(request()).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        let stored = Trigger {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            uid: "u".into(),
            creation_timestamp: String::new(),
            spec: t.spec.clone(),
            status: TriggerStatus::default(),
        };
        let wire = stored.to_proto(3, None);
        let webhook = wire.spec.unwrap().webhook.unwrap();
        assert!(webhook.secret.is_empty());
        assert!(webhook.has_secret);
        assert_eq!(wire.resource_version, "3");
        assert_eq!(wire.subject, "imagestreams.builds.requested.ns1.app-build");
    }

    #[test]
    fn url_shapes_are_checked() {
        assert!(check_webhook_url_shape("http://127.0.0.1:8080/x").is_ok());
        assert!(check_webhook_url_shape("https://h").is_ok());
        assert!(check_webhook_url_shape("https://u:p@h/").is_err());
        assert!(check_webhook_url_shape("https:///x").is_err());
        assert!(check_webhook_url_shape("http://h/a b").is_err());
    }
}
