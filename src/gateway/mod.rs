//! Delivery of a message to one recipient, behind one trait. One file per
//! gateway; the flow only sees [`Gateway`] and [`DeliveryError`].
//!
//! Each gateway file also owns its `gateway.toml` section: the raw keys,
//! their defaults and checks, next to the requests that use them.

pub mod command;
pub mod delivery;
pub mod signal;
pub mod sms;
pub mod telegram;
pub mod webhook;

pub use delivery::{DeliveryError, Gateway};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in GatewayKind::ALL {
            assert_eq!(GatewayKind::from_id(k.id()), Some(k));
        }
        assert_eq!(GatewayKind::from_id("Telegram"), None);
    }
}
