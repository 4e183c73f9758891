//! Delivery of a message to one recipient, behind one trait. One file per
//! gateway; the flow only sees [`Gateway`] and [`DeliveryError`].

pub mod telegram;

use std::fmt;

/// Why a message was not delivered, in the three classes the flow acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// The service could not be reached or did not answer in time (refused
    /// connection, timeout, TLS failure, 5xx, an answer we cannot read).
    Unreachable(String),
    /// The service answered and refused this message (unknown recipient,
    /// bot blocked, rate limited).
    Rejected {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Our side is wrong: bad credentials or settings. Needs the admin.
    Misconfigured(String),
}

impl DeliveryError {
    /// A one-word class for log lines.
    pub fn class(&self) -> &'static str {
        match self {
            DeliveryError::Unreachable(_) => "unreachable",
            DeliveryError::Rejected { .. } => "rejected",
            DeliveryError::Misconfigured(_) => "misconfigured",
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Unreachable(r) => write!(f, "unreachable: {r}"),
            DeliveryError::Rejected {
                reason,
                retry_after: Some(s),
            } => write!(f, "rejected: {reason} (retry after {s} s)"),
            DeliveryError::Rejected { reason, .. } => write!(f, "rejected: {reason}"),
            DeliveryError::Misconfigured(r) => write!(f, "misconfigured: {r}"),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// A way to deliver a short text to a recipient.
pub trait Gateway {
    /// The key used in config and users files (`telegram`).
    fn id(&self) -> &'static str;
    /// The name shown to people (`Telegram`).
    fn display_name(&self) -> &'static str;
    /// Delivers `text` to `recipient`, within the gateway's own timeout.
    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError>;
}

/// Removes every secret from `text` (replaced by `[redacted]`) and control
/// characters that could forge extra log lines.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "[redacted]");
    }
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_controls() {
        let t = redact("GET /bot1:abc/x failed\nforged line", &["1:abc", ""]);
        assert_eq!(t, "GET /bot[redacted]/x failed forged line");
    }
}
