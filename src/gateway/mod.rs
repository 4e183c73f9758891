//! Delivery of a message to one recipient, behind one trait. One file per
//! gateway; the flow only sees [`Gateway`] and [`DeliveryError`].
//!
//! Each gateway file also owns its `gateway.toml` section: the raw keys,
//! their defaults and checks, next to the requests that use them.

pub mod command;
pub mod signal;
pub mod sms;
pub mod telegram;
pub mod webhook;

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
    /// The name shown to people in the prompt (`Telegram`; configurable
    /// for the webhook and command gateways).
    fn display_name(&self) -> &str;
    /// Delivers `text` to `recipient`, within the gateway's own timeout.
    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError>;
}

/// The gateways this module knows, by their key in `gateway.toml` and
/// `users.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GatewayKind {
    Telegram,
    Signal,
    Sms,
    Webhook,
    Command,
}

impl GatewayKind {
    /// Every kind, in the default order of `gateways`.
    pub const ALL: [GatewayKind; 5] = [
        GatewayKind::Telegram,
        GatewayKind::Signal,
        GatewayKind::Sms,
        GatewayKind::Webhook,
        GatewayKind::Command,
    ];

    /// The key used for it in config and users files.
    pub fn id(self) -> &'static str {
        match self {
            GatewayKind::Telegram => "telegram",
            GatewayKind::Signal => "signal",
            GatewayKind::Sms => "sms",
            GatewayKind::Webhook => "webhook",
            GatewayKind::Command => "command",
        }
    }

    pub fn from_id(id: &str) -> Option<GatewayKind> {
        GatewayKind::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// Replaces the recipient's address in a service's message by its masked
/// form (`***678`): error texts end up in syslog.
pub fn mask_recipient(text: &str, recipient: &str) -> String {
    if recipient.len() < 4 {
        return text.to_string();
    }
    text.replace(recipient, &crate::users::mask(recipient))
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

    #[test]
    fn kinds_round_trip() {
        for k in GatewayKind::ALL {
            assert_eq!(GatewayKind::from_id(k.id()), Some(k));
        }
        assert_eq!(GatewayKind::from_id("Telegram"), None);
    }

    #[test]
    fn recipients_are_masked() {
        assert_eq!(
            mask_recipient("Unregistered user \"+4915112345678\"", "+4915112345678"),
            "Unregistered user \"***678\""
        );
    }
}
