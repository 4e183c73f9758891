//! Loading `gateway.toml` and `users.toml` exactly as a login does, and
//! turning a user's entry into delivery routes. Shared by the PAM module and
//! the CLI so both apply the same checks.

use std::fmt;
use std::path::Path;

use crate::config::Config;
use crate::flow::{Enrolment, Route};
use crate::gateway::command::CommandGateway;
use crate::gateway::signal::SignalGateway;
use crate::gateway::sms::SmsGateway;
use crate::gateway::telegram::TelegramGateway;
use crate::gateway::webhook::WebhookGateway;
use crate::gateway::{Gateway, GatewayKind};
use crate::secure_file::{FileError, Owner, Secrecy, read_secure};
use crate::toml_errors::ParseError;
use crate::users::{UserEntry, Users};

/// Why the files could not be used. Any of these denies the login.
#[derive(Debug)]
pub enum SetupError {
    File(FileError),
    Parse(ParseError),
    /// A user's entry needs a gateway the config does not set up.
    GatewayNotConfigured {
        user: String,
        gateway: &'static str,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::File(e) => write!(f, "{e}"),
            SetupError::Parse(e) => write!(f, "{e}"),
            SetupError::GatewayNotConfigured { user, gateway } => write!(
                f,
                "user {user} has a {gateway} recipient but gateway.toml has no [{gateway}] section"
            ),
        }
    }
}

impl std::error::Error for SetupError {}

impl From<FileError> for SetupError {
    fn from(e: FileError) -> Self {
        SetupError::File(e)
    }
}

impl From<ParseError> for SetupError {
    fn from(e: ParseError) -> Self {
        SetupError::Parse(e)
    }
}

/// Reads and validates the config file (it holds secrets: owner-only).
pub fn load_config(path: &Path, owner: Owner) -> Result<Config, SetupError> {
    let text = read_secure(path, Secrecy::Secret, owner)?;
    Ok(Config::parse(path, &text)?)
}

/// Reads and validates the users file the config names.
pub fn load_users(config: &Config, owner: Owner) -> Result<Users, SetupError> {
    let text = read_secure(&config.users_file, Secrecy::Public, owner)?;
    Ok(Users::parse(&config.users_file, &text)?)
}

/// The gateway for `kind` as configured, if `gateway.toml` has its section.
pub fn gateway_for(config: &Config, kind: GatewayKind) -> Option<Box<dyn Gateway>> {
    Some(match kind {
        GatewayKind::Telegram => Box::new(TelegramGateway::new(config.telegram.as_ref()?)),
        GatewayKind::Signal => Box::new(SignalGateway::new(config.signal.as_ref()?)),
        GatewayKind::Sms => Box::new(SmsGateway::new(config.sms.as_ref()?)),
        GatewayKind::Webhook => Box::new(WebhookGateway::new(config.webhook.as_ref()?)),
        GatewayKind::Command => Box::new(CommandGateway::new(config.command.as_ref()?)),
    })
}

/// The routes for one user's entry, in the order of `gateways`. A
/// recipient for a gateway without a section is an error (the login is
/// denied), not silently skipped.
pub fn routes_for(
    config: &Config,
    user: &str,
    entry: &UserEntry,
) -> Result<Vec<Route>, SetupError> {
    if let Some(kind) = GatewayKind::ALL
        .into_iter()
        .find(|k| entry.recipient(*k).is_some() && !config.has(*k))
    {
        return Err(SetupError::GatewayNotConfigured {
            user: user.to_string(),
            gateway: kind.id(),
        });
    }
    let mut routes = Vec::new();
    for kind in &config.gateways {
        let (Some(recipient), Some(gateway)) = (entry.recipient(*kind), gateway_for(config, *kind))
        else {
            continue;
        };
        routes.push(Route {
            gateway,
            recipient: recipient.to_string(),
        });
    }
    Ok(routes)
}

/// The user's [`Enrolment`] from the users file.
pub fn enrolment(config: &Config, users: &Users, user: &str) -> Result<Enrolment, SetupError> {
    match users.get(user) {
        None => Ok(Enrolment::NotEnrolled),
        Some(entry) => Ok(Enrolment::Enrolled(routes_for(config, user, entry)?)),
    }
}
