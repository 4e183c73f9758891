//! What a login sends off this machine -- a gateway's message, a
//! `[directory]` lookup -- behind one trait, [`Network`], so that the code
//! that does it need not be linked into the PAM module.
//!
//! [`Direct`] does it in this process: the CLI, pam-gatewayd and the direct
//! library (`pam_gateway_direct.so`, [`crate::direct`]) use it. The PAM
//! module uses [`crate::direct::Library`], which hands each of these to the
//! direct library, loaded the first time a login needs it: a login through
//! pam-gatewayd never maps the HTTP, TLS and LDAP clients.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::directory::{self, DirectoryConfig, DirectoryError};
use crate::gateway::{Gateway, GatewayKind};
use crate::secure_file::Owner;

/// A user's recipients, one per gateway.
pub type Recipients = BTreeMap<GatewayKind, String>;

/// Sending and asking, for a login.
pub trait Network: Sync {
    /// The gateway `kind` as `config` sets it up; `None` if `config` has
    /// no section for it.
    fn gateway(&self, config: &Config, kind: GatewayKind) -> Option<Box<dyn Gateway>>;

    /// The user's recipients from `dir` ([`directory::lookup`]).
    fn lookup(
        &self,
        dir: &DirectoryConfig,
        user: &str,
        owner: Owner,
    ) -> Result<Option<Recipients>, DirectoryError>;
}

/// The gateways' own clients and the LDAP client, in this process.
pub struct Direct;

impl Network for Direct {
    fn gateway(&self, config: &Config, kind: GatewayKind) -> Option<Box<dyn Gateway>> {
        kind.connect().gateway(config.gateway_section(kind)?)
    }

    fn lookup(
        &self,
        dir: &DirectoryConfig,
        user: &str,
        owner: Owner,
    ) -> Result<Option<Recipients>, DirectoryError> {
        directory::lookup(dir, user, owner)
    }
}
