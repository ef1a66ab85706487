//! [`Secret`]: a string that never shows in logs, errors or API responses.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string: never printed by `Debug` or `Display`, never serialized back.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Serialized only as the defaults layer; a real value never leaves the process.
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}
