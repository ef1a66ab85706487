//! A firing: one image a trigger fired for, its delivery (the webhook, or a
//! mirror rule's push: state, attempts, backoff) and the lease of the
//! replica driving it.

use super::*;

/// Where a firing's webhook delivery stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    /// The trigger has no webhook.
    #[default]
    None,
    /// More attempts will be made.
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Given up (final answer, policy, or attempt limit).
    Failed,
    /// Mirror rules: not pushed, a newer image was waiting behind it.
    Superseded,
}

impl DeliveryState {
    /// How the API and the CLI spell it; empty for no webhook.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryState::None => "",
            DeliveryState::Pending => "Pending",
            DeliveryState::Succeeded => "Succeeded",
            DeliveryState::Failed => "Failed",
            DeliveryState::Superseded => "Superseded",
        }
    }

    /// Whether no more attempts will be made.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Pending)
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// When it started (RFC 3339).
    pub time: String,
    /// The HTTP status; 0 when none came.
    #[serde(default)]
    pub status_code: u16,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// How long it took.
    #[serde(default)]
    pub duration_ms: u64,
}

/// The delivery log of one firing's webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Where it stands.
    pub state: DeliveryState,
    /// The URL delivered to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt is due (unix milliseconds; `Pending` only).
    #[serde(default)]
    pub next_attempt_ms: i64,
    /// The last [`DELIVERY_HISTORY_KEPT`] attempts, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<DeliveryAttempt>,
}

impl Delivery {
    /// The last attempt, if any.
    pub fn last(&self) -> Option<&DeliveryAttempt> {
        self.history.last()
    }

    /// Appends an attempt, keeping the last [`DELIVERY_HISTORY_KEPT`].
    pub fn record(&mut self, attempt: DeliveryAttempt) {
        self.attempts += 1;
        self.history.push(attempt);
        if self.history.len() > DELIVERY_HISTORY_KEPT {
            let excess = self.history.len() - DELIVERY_HISTORY_KEPT;
            self.history.drain(..excess);
        }
    }
}

impl From<&Delivery> for proto::Delivery {
    fn from(d: &Delivery) -> Self {
        let last = d.last();
        proto::Delivery {
            state: match d.state {
                DeliveryState::None => proto::DeliveryState::None,
                DeliveryState::Pending => proto::DeliveryState::Pending,
                DeliveryState::Succeeded => proto::DeliveryState::Succeeded,
                DeliveryState::Failed => proto::DeliveryState::Failed,
                DeliveryState::Superseded => proto::DeliveryState::Superseded,
            } as i32,
            attempts: d.attempts,
            last_status_code: last.map_or(0, |a| i32::from(a.status_code)),
            last_error: last.map(|a| a.error.clone()).unwrap_or_default(),
            last_attempt_time: last.map(|a| a.time.clone()).unwrap_or_default(),
            next_attempt_time: if d.state == DeliveryState::Pending && d.next_attempt_ms > 0 {
                format_millis(d.next_attempt_ms)
            } else {
                String::new()
            },
            history: d
                .history
                .iter()
                .map(|a| proto::DeliveryAttempt {
                    time: a.time.clone(),
                    status_code: i32::from(a.status_code),
                    error: a.error.clone(),
                    duration_ms: i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
                })
                .collect(),
            url: d.url.clone(),
        }
    }
}

/// Who may perform a firing's side effects, until when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The replica holding it; empty when free.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub holder: String,
    /// When it lapses (unix milliseconds).
    #[serde(default)]
    pub expires_ms: i64,
}

impl Lease {
    /// Whether `replica` may act on the firing at `now_ms`: it holds the lease,
    /// or nobody holds a live one.
    pub fn available_to(&self, replica: &str, now_ms: i64) -> bool {
        self.holder.is_empty() || self.holder == replica || self.expires_ms <= now_ms
    }
}

/// One firing of a trigger: a Build or a Deployment, with its side effects'
/// progress. Keyed by [`subjects::firing_key`]; its id is deterministic in
/// (trigger uid, image), so a second record for the same pair cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firing {
    /// `<trigger>-<hash>`; the event's message id and the webhook's delivery id.
    pub id: String,
    /// The trigger's namespace.
    pub namespace: String,
    /// The trigger's name.
    pub trigger: String,
    /// The trigger's uid.
    pub trigger_uid: String,
    /// Build or Deploy.
    pub kind: TriggerKind,
    /// The ImageStreamTag that changed.
    pub from: TagRef,
    /// The image that fired.
    pub image: String,
    /// Its pinned pull spec.
    #[serde(default)]
    pub docker_image_reference: String,
    /// The image fired before.
    #[serde(default)]
    pub previous_image: String,
    /// Always [`CAUSE_IMAGE_CHANGE`].
    pub cause: String,
    /// When the trigger fired (RFC 3339).
    pub time: String,
    /// Deploy only: the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// Whether the event was published (or there is none to publish: a
    /// mirror rule's).
    #[serde(default)]
    pub event_published: bool,
    /// The delivery log: the webhook's, or a mirror rule's pushes.
    #[serde(default)]
    pub delivery: Delivery,
    /// Who performs the side effects.
    #[serde(default)]
    pub lease: Lease,
    /// W3C `traceparent` of the event that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Firing {
    /// The firing of `pending` by `trigger`, nothing done yet.
    pub fn new(trigger: &Trigger, pending: &PendingFiring) -> Firing {
        let target = match (&trigger.spec.webhook, &trigger.spec.mirror) {
            (Some(w), _) => Some(w.url.clone()),
            (None, Some(m)) => Some(m.to.clone()),
            (None, None) => None,
        };
        let delivery = match target {
            Some(url) => Delivery {
                state: DeliveryState::Pending,
                url,
                ..Delivery::default()
            },
            None => Delivery::default(),
        };
        Firing {
            id: pending.id.clone(),
            namespace: trigger.namespace.clone(),
            trigger: trigger.name.clone(),
            trigger_uid: trigger.uid.clone(),
            kind: trigger.spec.kind,
            from: trigger.spec.from.clone(),
            image: pending.image.clone(),
            docker_image_reference: pending.docker_image_reference.clone(),
            previous_image: pending.previous_image.clone(),
            cause: CAUSE_IMAGE_CHANGE.to_owned(),
            time: pending.time.clone(),
            container: trigger.spec.container.clone(),
            event_published: trigger.spec.kind.event_kind().is_none(),
            delivery,
            lease: Lease::default(),
            traceparent: pending.traceparent.clone(),
        }
    }

    /// The KV key of this firing.
    pub fn key(&self) -> String {
        subjects::firing_key(&self.namespace, &self.trigger, &self.id)
    }

    /// Whether every side effect is done.
    pub fn is_complete(&self) -> bool {
        self.event_published && self.delivery.state.is_final()
    }
}

impl From<&Firing> for proto::Firing {
    fn from(f: &Firing) -> Self {
        proto::Firing {
            id: f.id.clone(),
            namespace: f.namespace.clone(),
            trigger: f.trigger.clone(),
            trigger_uid: f.trigger_uid.clone(),
            kind: proto::TriggerKind::from(f.kind) as i32,
            from: Some((&f.from).into()),
            image: f.image.clone(),
            docker_image_reference: f.docker_image_reference.clone(),
            previous_image: f.previous_image.clone(),
            cause: f.cause.clone(),
            time: f.time.clone(),
            container: f.container.clone(),
            event_published: f.event_published,
            delivery: Some((&f.delivery).into()),
            complete: f.is_complete(),
        }
    }
}
