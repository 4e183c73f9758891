//! Delivery of a message to one recipient, behind one trait. One file per
//! gateway; the flow only sees [`Gateway`] and [`DeliveryError`].
//!
//! Each gateway file owns everything about its gateway: its
//! [`GatewaySpec`] (its name, its `gateway.toml` section -- the raw keys,
//! their defaults and checks, next to the requests that use them -- its
//! recipients in `users.toml`), its [`GatewaySection`] (the section as
//! configured), its [`GatewayConnect`] (the gateway a section sets up) and
//! its [`GatewayAdmin`] (the CLI's words for it, its health check).
//! Config, users, setup and the CLI ask [`GatewayKind::spec`],
//! [`GatewayKind::connect`] and [`GatewayKind::admin`], never a gateway by
//! name.

pub mod command;
pub mod delivery;
pub mod health;
pub mod signal;
pub mod sms;
pub mod spec;
pub mod telegram;
pub mod webhook;

pub use delivery::{DeliveryError, Gateway};
pub use health::{Health, Problem};
pub use spec::{GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec};

/// Declares the gateways, one `Kind => its spec` line each, in the
/// default order of `gateways`: [`GatewayKind`], its `ALL`, its `spec` and
/// its `admin`.
macro_rules! gateways {
    ($($kind:ident => $spec:path,)+) => {
        /// The gateways this module knows. Everything about one is in its
        /// file, behind [`GatewayKind::spec`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum GatewayKind {
            $($kind,)+
        }

        impl GatewayKind {
            /// Every kind, in the default order of `gateways`.
            pub const ALL: [GatewayKind; [$(GatewayKind::$kind,)+].len()] =
                [$(GatewayKind::$kind,)+];

            /// The gateway's name, section and recipients.
            pub fn spec(self) -> &'static dyn GatewaySpec {
                match self {
                    $(GatewayKind::$kind => &$spec,)+
                }
            }

            /// What sets the gateway up to send (see [`GatewayConnect`]).
            pub fn connect(self) -> &'static dyn GatewayConnect {
                match self {
                    $(GatewayKind::$kind => &$spec,)+
                }
            }

            /// What only the CLI asks of the gateway (see [`GatewayAdmin`]).
            pub fn admin(self) -> &'static dyn GatewayAdmin {
                match self {
                    $(GatewayKind::$kind => &$spec,)+
                }
            }
        }
    };
}

// A new gateway: its file, its `pub mod` above, and its line here.
gateways! {
    Telegram => telegram::TelegramSpec,
    Signal => signal::SignalSpec,
    Sms => sms::SmsSpec,
    Webhook => webhook::WebhookSpec,
    Command => command::CommandSpec,
}

impl GatewayKind {
    /// The key used for it in config and users files
    /// ([`GatewaySpec::id`]).
    pub fn id(self) -> &'static str {
        self.spec().id()
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
