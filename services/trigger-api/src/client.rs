//! The client of the trigger service's write API (NATS request-reply).

use super::*;

/// The client of the trigger service's write API (NATS request-reply).
#[derive(Clone, Debug)]
pub struct TriggerClient {
    nats: async_nats::Client,
    timeout: Duration,
}

impl TriggerClient {
    /// A client over `nats`.
    pub fn new(nats: async_nats::Client) -> Self {
        TriggerClient {
            nats,
            timeout: DEFAULT_TRIGGER_TIMEOUT,
        }
    }

    /// Creates a trigger; returns it as stored (without its secret).
    pub async fn create(&self, trigger: &NewTrigger) -> Result<proto::Trigger, ApiError> {
        self.call("create", &proto::CreateTriggerRequest::from(trigger))
            .await
    }

    /// Deletes a trigger and its firings; returns its last state.
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<proto::Trigger, ApiError> {
        let request = proto::DeleteTriggerRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.call("delete", &request).await
    }

    async fn call(
        &self,
        op: &str,
        request: &impl prost::Message,
    ) -> Result<proto::Trigger, ApiError> {
        requests::ask::<proto::TriggerReply>(
            &self.nats,
            subjects::trigger_api(op),
            request,
            "the trigger service",
            self.timeout,
        )
        .await
    }
}
