//! How triggers and firings print: the `get` tables (OpenShift-like columns)
//! and the `describe` text with each firing's webhook delivery log.

use imagestreams_trigger_api::object::delivery_state_label;

use super::*;

pub(super) use imagestreams_trigger_api::object::kind_label as kind_name;

pub(super) fn delivery_state(delivery: Option<&pb::Delivery>) -> &'static str {
    delivery.map_or("<none>", |d| delivery_state_label(d.state))
}

pub(super) fn from_string(from: Option<&pb::ImageStreamTagReference>, namespace: &str) -> String {
    match from {
        Some(f) if f.namespace == namespace || f.namespace.is_empty() => {
            format!("{}:{}", f.stream, f.tag)
        }
        Some(f) => format!("{}/{}:{}", f.namespace, f.stream, f.tag),
        None => String::new(),
    }
}

/// `sha256:0123456789ab…` → `sha256:0123456789ab` (as `oc` shortens image ids).
pub(super) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) if hex.len() > 12 => format!("{algorithm}:{}", &hex[..12]),
        _ => digest.to_owned(),
    }
}

pub(super) fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

pub(super) fn trigger_table(
    items: &[pb::Trigger],
    all_namespaces: bool,
    wide: bool,
    now: chrono::DateTime<Utc>,
) -> String {
    let mut table = TabWriter::table();
    let mut header = vec![
        "NAME",
        "TYPE",
        "FROM",
        "PAUSED",
        "LAST IMAGE",
        "LAST TRIGGERED",
        "DELIVERY",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["WEBHOOK/TO", "SUBJECT"]);
    }
    table.row(&header);
    for t in items {
        let spec = t.spec.clone().unwrap_or_default();
        let status = t.status.clone().unwrap_or_default();
        let mut row = vec![
            t.name.clone(),
            kind_name(spec.kind).to_owned(),
            from_string(spec.from.as_ref(), &t.namespace),
            spec.paused.to_string(),
            or_none(&short_digest(&status.last_triggered_image)).to_owned(),
            or_none(&ago_str(&status.last_trigger_time, now)).to_owned(),
            delivery_state(status.last_delivery.as_ref()).to_owned(),
        ];
        if all_namespaces {
            row.insert(0, t.namespace.clone());
        }
        if wide {
            // a mirror rule's target is its destination
            let target = match (spec.webhook, spec.mirror) {
                (Some(w), _) => w.url,
                (None, Some(m)) => m.to,
                (None, None) => String::new(),
            };
            row.push(or_none(&target).to_owned());
            row.push(or_none(&t.subject).to_owned());
        }
        table.row(&row);
    }
    table.finish()
}

pub(super) fn firing_table(
    items: &[pb::Firing],
    all_namespaces: bool,
    wide: bool,
    now: chrono::DateTime<Utc>,
) -> String {
    let mut table = TabWriter::table();
    let mut header = vec![
        "NAME", "TRIGGER", "FROM", "IMAGE", "WEBHOOK", "ATTEMPTS", "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["REFERENCE", "CAUSE", "LAST ERROR"]);
    }
    table.row(&header);
    for f in items {
        let delivery = f.delivery.clone().unwrap_or_default();
        let mut row = vec![
            f.id.clone(),
            f.trigger.clone(),
            from_string(f.from.as_ref(), &f.namespace),
            short_digest(&f.image),
            delivery_state(f.delivery.as_ref()).to_owned(),
            delivery.attempts.to_string(),
            ago_str(&f.time, now).trim_end_matches(" ago").to_owned(),
        ];
        if all_namespaces {
            row.insert(0, f.namespace.clone());
        }
        if wide {
            row.push(f.docker_image_reference.clone());
            row.push(f.cause.clone());
            row.push(or_none(&delivery.last_error).to_owned());
        }
        table.row(&row);
    }
    table.finish()
}

pub(super) fn describe_trigger(
    t: &pb::Trigger,
    firings: &[pb::Firing],
    now: chrono::DateTime<Utc>,
) -> String {
    let spec = t.spec.clone().unwrap_or_default();
    let status = t.status.clone().unwrap_or_default();
    let mut d = TabWriter::describe();
    d.row(&["Name:", &t.name]);
    d.row(&["Namespace:", &t.namespace]);
    d.row(&["Created:", &ago_str(&t.creation_timestamp, now)]);
    d.row(&["Type:", kind_name(spec.kind)]);
    d.row(&[
        "From:",
        &format!(
            "ImageStreamTag {}",
            from_string(spec.from.as_ref(), &t.namespace)
        ),
    ]);
    d.row(&["Paused:", &spec.paused.to_string()]);
    if !spec.container.is_empty() {
        d.row(&["Container:", &spec.container]);
    }
    match &spec.mirror {
        Some(m) => {
            d.row(&["Mirror to:", &m.to]);
            if m.insecure {
                d.row(&["Insecure:", "true"]);
            }
            d.row(&["Last mirrored image:", or_none(&status.last_mirrored_image)]);
            for c in &status.conditions {
                let mut line = format!("{}={}", c.status, c.reason);
                if !c.message.is_empty() {
                    line.push_str(&format!(": {}", c.message));
                }
                d.row(&[&format!("Condition {}:", c.r#type), &line]);
            }
        }
        None => {
            d.row(&["Event subject:", &t.subject]);
            match &spec.webhook {
                Some(w) => {
                    d.row(&["Webhook:", &w.url]);
                    d.row(&[
                        "Webhook secret:",
                        if w.has_secret { "<set>" } else { "<none>" },
                    ]);
                }
                None => d.row(&["Webhook:", "<none>"]),
            }
        }
    }
    d.row(&[
        "Last triggered image:",
        or_none(&status.last_triggered_image),
    ]);
    let last_time = if status.last_trigger_time.is_empty() {
        "<never>".to_owned()
    } else {
        format!(
            "{} ({})",
            status.last_trigger_time,
            ago_str(&status.last_trigger_time, now)
        )
    };
    d.row(&["Last triggered:", &last_time]);
    if let Some(delivery) = &status.last_delivery {
        d.row(&["Last delivery:", &delivery_line(delivery)]);
    }
    if !status.pending_firings.is_empty() {
        d.row(&["Pending firings:", &status.pending_firings.join(", ")]);
    }
    let mut out = d.finish();
    out.push('\n');
    if firings.is_empty() {
        out.push_str("Firings:\t<none>\n");
        return out;
    }
    out.push_str(&format!(
        "Firings ({} {}, newest first):\n",
        firings.len(),
        match kind_name(spec.kind) {
            "Deploy" => "deployments",
            "Mirror" => "mirrors",
            _ => "builds",
        }
    ));
    let mut table = TabWriter::table();
    let delivery = if spec.mirror.is_some() {
        "PUSH"
    } else {
        "WEBHOOK"
    };
    table.row(&[
        "  NAME", "IMAGE", "AGE", "EVENT", delivery, "ATTEMPTS", "LAST",
    ]);
    for f in firings.iter().take(DESCRIBE_FIRINGS) {
        let delivery = f.delivery.clone().unwrap_or_default();
        table.row(&[
            format!("  {}", f.id),
            short_digest(&f.image),
            ago_str(&f.time, now).trim_end_matches(" ago").to_owned(),
            match (spec.mirror.is_some(), f.event_published) {
                (true, _) => "<none>",
                (false, true) => "published",
                (false, false) => "pending",
            }
            .to_owned(),
            delivery_state(f.delivery.as_ref()).to_owned(),
            delivery.attempts.to_string(),
            last_attempt(&delivery),
        ]);
    }
    out.push_str(&table.finish());
    out
}

pub(super) fn last_attempt(d: &pb::Delivery) -> String {
    match (d.last_status_code, d.last_error.as_str()) {
        (0, "") => "<none>".to_owned(),
        (0, error) => error.to_owned(),
        (code, _) => format!("HTTP {code}"),
    }
}

pub(super) fn delivery_line(d: &pb::Delivery) -> String {
    let mut line = format!(
        "{} after {} attempt(s)",
        delivery_state(Some(d)),
        d.attempts
    );
    if d.last_status_code != 0 {
        line.push_str(&format!(", last HTTP {}", d.last_status_code));
    }
    if !d.last_error.is_empty() {
        line.push_str(&format!(": {}", d.last_error));
    }
    if !d.next_attempt_time.is_empty() {
        line.push_str(&format!("; next attempt at {}", d.next_attempt_time));
    }
    line
}
