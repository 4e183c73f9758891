//! What the rest of pam_gateway knows of a gateway without knowing which:
//! [`GatewaySpec`] -- its name, its `gateway.toml` section, its recipients
//! in `users.toml` --, [`GatewaySection`] -- its section as configured --,
//! [`GatewayConnect`] -- the gateway a section sets up -- and
//! [`GatewayAdmin`], what only the CLI asks: its words for recipients, its
//! health check. Each gateway file implements the four; `gateway/mod.rs`
//! lists the gateways.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use super::delivery::Gateway;
use super::health::Health;
use crate::redact::mask;
use crate::section::SectionError;
use crate::secure_file::Owner;
use crate::toml_errors::{ParseError, TomlItem};

/// One gateway: a unit struct in the gateway's file, registered with one
/// line in `gateway/mod.rs`.
pub trait GatewaySpec: Sync {
    /// The gateway's one name: its `[section]` in gateway.toml, its key in
    /// users.toml and in `gateways`, `pam-gateway configure ID` and
    /// `enroll --ID` (`telegram`).
    fn id(&self) -> &'static str;

    /// The name prompts and messages show (`Telegram`), unless the
    /// section sets its own ([`GatewaySection::name`]).
    fn display_name(&self) -> &'static str;

    /// Reads the gateway's section: the types of its keys, unknown and
    /// missing keys now (serde's errors), the checks of their values when
    /// the returned [`SectionCheck`] runs (after every section was read,
    /// as one `#[derive(Deserialize)]` of the whole file would).
    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError>;

    /// Checks a recipient (`enroll --ID RECIPIENT`, users.toml): `Ok` when
    /// this gateway can deliver to it, else why not.
    fn check_recipient(&self, recipient: &str) -> Result<(), String>;

    /// Reads a recipient from its value in users.toml. The outer error is
    /// the value's TOML type (serde's, at the value); the inner one says
    /// why its text is no recipient (reported at the key, after the whole
    /// file was read). By default the value is a string.
    fn read_recipient(&self, value: TomlItem<'_>) -> Result<Result<String, String>, ParseError> {
        let text: String = value.deserialize()?;
        Ok(self.check_recipient(&text).map(|()| text))
    }
}

/// What only the admin's CLI asks of a gateway. A trait of its own, on the
/// same unit struct as [`GatewaySpec`], reached through
/// [`GatewayKind::admin`](super::GatewayKind::admin), which the PAM module
/// never calls: none of it (the health checks' requests above all) is
/// linked into the module.
pub trait GatewayAdmin: GatewaySpec {
    /// What a recipient is called in messages: "chat", "number", "recipient".
    fn recipient_noun(&self) -> &'static str;

    /// A recipient as messages show it: masked (`***977`).
    fn show_recipient(&self, recipient: &str) -> String {
        mask(recipient)
    }

    /// What to tell the admin when `name` (the display name) could not
    /// deliver for now, for `reason`.
    fn unreachable_advice(&self, name: &str, reason: &str) -> String {
        let id = self.id();
        format!(
            "{name} cannot be reached from this host: {reason}. Check that the service \
             runs, the network, DNS and firewall, or [{id}] url and proxy in gateway.toml"
        )
    }

    /// Whether the gateway `section` sets up can deliver, asking the
    /// service only what sends nothing to anyone (`pam-gateway status` and
    /// `configure`); `None` if `section` is another gateway's.
    fn health(&self, section: &dyn GatewaySection, owner: Owner) -> Option<Health>;
}

/// What sends: the gateway a section sets up. A trait of its own, on the
/// same unit struct as [`GatewaySpec`], reached through
/// [`GatewayKind::connect`](super::GatewayKind::connect), which only
/// [`crate::network::Direct`] calls: the PAM module reaches the gateways
/// through the direct library (`pam_gateway_direct.so`), so none of their
/// clients (HTTP, TLS, a helper program's process) is linked into it.
pub trait GatewayConnect: GatewaySpec {
    /// The gateway `section` sets up (its client is built on first use);
    /// `None` if `section` is another gateway's.
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>>;
}

/// The checks of a section's values, run once every section was read:
/// given the section's error builder, the configured section.
pub type SectionCheck =
    Box<dyn FnOnce(SectionError) -> Result<Arc<dyn GatewaySection>, ParseError>>;

/// [`GatewaySpec::read_section`] for a section read as `R` by `read` (its
/// `toml_struct!` raw keys) and checked
/// by `check`.
pub fn read_section_as<R, C>(
    section: TomlItem<'_>,
    read: fn(TomlItem<'_>) -> Result<R, ParseError>,
    check: fn(R, SectionError) -> Result<C, ParseError>,
) -> Result<SectionCheck, ParseError>
where
    R: 'static,
    C: GatewaySection,
{
    let raw = read(section)?;
    Ok(Box::new(move |e| {
        Ok(Arc::new(check(raw, e)?) as Arc<dyn GatewaySection>)
    }))
}

/// A gateway's section of `gateway.toml`, checked: the gateway's own
/// config type (`TelegramConfig`).
pub trait GatewaySection: AnySection + fmt::Debug + Send + Sync {
    /// The name the section gives the gateway (`name = "ntfy"`), for
    /// gateways whose section has that key.
    fn name(&self) -> Option<&str> {
        None
    }
}

/// `section` as `C`, if it is one (`Config::section`, the health checks).
pub fn section_as<C: GatewaySection>(section: &dyn GatewaySection) -> Option<&C> {
    section.as_any().downcast_ref::<C>()
}

/// What lets [`Config`](crate::config::Config) hand out a section as its
/// own type (`Config::section::<TelegramConfig>()`): every `'static` type
/// has it. (Trait upcasting would do, from Rust 1.86.)
pub trait AnySection: Any {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any> AnySection for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
