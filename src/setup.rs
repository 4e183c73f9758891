//! Loading `gateway.toml` and `users.toml` exactly as a login does, and
//! turning a user's entry into delivery routes. Shared by the PAM module and
//! the CLI so both apply the same checks.

use std::fmt;
use std::path::Path;

use crate::config::Config;
use crate::flow::{Enrolment, Route};
use crate::gateway::telegram::TelegramGateway;
use crate::secure_file::{FileError, Owner, Secrecy, read_secure, read_secure_with_mode};
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

/// Reads and validates the users file the config names. Once it holds a
/// `totp_secret` it is a secret itself: group or other read denies.
pub fn load_users(config: &Config, owner: Owner) -> Result<Users, SetupError> {
    let (text, mode) = read_secure_with_mode(&config.users_file, Secrecy::Public, owner)?;
    let users = Users::parse(&config.users_file, &text)?;
    if mode & 0o044 != 0 && users.users.values().any(|u| u.totp_secret.is_some()) {
        return Err(SetupError::File(FileError::GroupOrOtherReadable {
            path: config.users_file.clone(),
            mode,
        }));
    }
    Ok(users)
}

/// The routes for one user's entry, in the order they are tried.
pub fn routes_for(
    config: &Config,
    user: &str,
    entry: &UserEntry,
) -> Result<Vec<Route>, SetupError> {
    let mut routes = Vec::new();
    if let Some(chat) = &entry.telegram {
        let tg = config
            .telegram
            .as_ref()
            .ok_or_else(|| SetupError::GatewayNotConfigured {
                user: user.to_string(),
                gateway: "telegram",
            })?;
        routes.push(Route {
            gateway: Box::new(TelegramGateway::new(tg)),
            recipient: chat.as_str().to_string(),
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
