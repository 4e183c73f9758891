//! The `[directory]` as the CLI uses it: connecting and binding (as the
//! module does, or as the DN an admin gives), its errors in words, the
//! entries that hold recipients (`users`, `status`), and the write of a
//! verified Telegram chat id (`enroll --directory-bind-dn`).

use std::path::Path;
use std::time::{Duration, Instant};

use pam_gateway_core::config::Config;
use pam_gateway_core::directory::admin::{Listing, USER_CLASS};
use pam_gateway_core::directory::{Connection, DirectoryConfig, DirectoryError, Entry, Transport};
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::http::TrustRoots;
use pam_gateway_core::redact::mask;
use pam_gateway_core::secret::Secret;
use pam_gateway_core::secure_file::{Secrecy, read_secure};

use super::terminal::Input;
use super::{CliError, EnrollArgs, Exit, OWNER};

/// Most entries `users` and `status` read from the directory.
pub const LIST_LIMIT: i32 = 1000;

/// `[directory]`, or what to do when there is none.
pub fn section(config: &Config) -> Result<&DirectoryConfig, CliError> {
    config.directory.as_ref().ok_or_else(|| {
        CliError::new(
            Exit::Files,
            format!(
                "{} has no [directory] section: add one first (docs/fleet.md, gateway.toml(5))",
                config.path.display()
            ),
        )
    })
}

/// How the module reaches the server, in words: the transport and what
/// the certificate is checked against.
pub fn transport(dir: &DirectoryConfig) -> String {
    let roots = match &dir.roots {
        TrustRoots::PemFile(p) => format!("the CA in {}", p.display()),
        _ => "the system's CA bundle".to_string(),
    };
    match dir.transport {
        Transport::StartTls => format!("StartTLS (required), certificate verified against {roots}"),
        Transport::Ldaps => format!("TLS (ldaps), certificate verified against {roots}"),
        Transport::Ldapi => "a local socket (ldapi), no TLS needed".to_string(),
    }
}

/// A directory error as a CLI error: the server (exit 4) or this machine's
/// files (exit 3), with `what` saying which step.
pub fn error(dir: &DirectoryConfig, what: &str, e: &DirectoryError) -> CliError {
    let exit = match e {
        DirectoryError::Local(_) => Exit::Files,
        DirectoryError::BadAnswer(_) => Exit::Failed,
        _ => Exit::Gateway,
    };
    CliError::new(exit, format!("{what} ({}): {e}", dir.uri))
}

/// A connection bound as the module binds (gateway.toml's bind_dn), and
/// how long connecting and binding took.
pub fn connect_as_module(dir: &DirectoryConfig) -> Result<(Connection, Duration), CliError> {
    let started = Instant::now();
    let mut conn = Connection::open(dir).map_err(|e| error(dir, "cannot connect", &e))?;
    conn.bind_configured(dir, OWNER)
        .map_err(|e| error(dir, "the module's bind fails", &e))?;
    Ok((conn, started.elapsed()))
}

/// The login name an entry stands for: the value of the attribute
/// `user_filter` matches names with, else the entry's DN.
pub fn name_of(dir: &DirectoryConfig, entry: &Entry) -> String {
    dir.name_attribute()
        .and_then(|a| {
            entry
                .attributes
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(a))
                .and_then(|(_, v)| v.first().cloned())
        })
        .unwrap_or_else(|| entry.dn.clone())
}

/// One row per recipient an entry holds: (gateway, masked recipient).
pub fn recipients(dir: &DirectoryConfig, entry: &Entry) -> Vec<(GatewayKind, String)> {
    dir.attributes
        .iter()
        .filter_map(|(kind, attr)| {
            entry
                .attributes
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first())
                .map(|v| (*kind, mask(v)))
        })
        .collect()
}

/// Every entry with recipients, as the module's bind sees them.
pub fn list(dir: &DirectoryConfig) -> Result<Listing, CliError> {
    let (mut conn, _) = connect_as_module(dir)?;
    let listing = conn
        .enrolled(dir, LIST_LIMIT)
        .map_err(|e| error(dir, "cannot list the entries with recipients", &e))?;
    conn.close();
    Ok(listing)
}

/// `enroll USER --directory-bind-dn DN`: where the verified chat id goes,
/// checked before the user is asked to do anything.
pub struct Target {
    bind_dn: String,
    password: Secret,
    /// The entry of USER the search found.
    pub dn: String,
    /// `[directory.attributes] telegram`.
    pub attribute: String,
}

impl Target {
    /// Reads the bind password (from the file, else without echo), binds
    /// as `bind_dn` and finds USER's entry the way a login does.
    pub fn prepare(config: &Config, args: &EnrollArgs, bind_dn: &str) -> Result<Target, CliError> {
        let dir = section(config)?;
        let attribute = dir
            .attributes
            .get(&GatewayKind::Telegram)
            .cloned()
            .ok_or_else(|| {
                CliError::new(
                    Exit::Usage,
                    format!(
                        "{}: [directory.attributes] maps no attribute to telegram \
                         (e.g. telegram = \"pamGatewayTelegram\"): nowhere to write the chat id",
                        config.path.display()
                    ),
                )
            })?;
        let password = match &args.directory_bind_password_file {
            Some(path) => read_password_file(path)?,
            None => {
                let mut input = Input::new();
                let line = input
                    .line(&format!("Password for {bind_dn}: "), true)
                    .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?
                    .ok_or_else(|| {
                        CliError::new(
                            Exit::Failed,
                            "no password given (end of input); \
                             --directory-bind-password-file for scripts",
                        )
                    })?;
                Secret::new(line.to_string())
            }
        };
        let mut target = Target {
            bind_dn: bind_dn.to_string(),
            password,
            dn: String::new(),
            attribute,
        };
        let mut conn = target.connect(dir)?;
        let user = args.user.as_str();
        let entry = conn
            .find_user(dir, user)
            .map_err(|e| error(dir, &format!("cannot search for {user}"), &e))?;
        conn.close();
        let Some(entry) = entry else {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "the directory has no entry for {user}: nothing under {} matches {} \
                     (as {bind_dn})",
                    dir.base_dn,
                    dir.filter_for(user)
                ),
            ));
        };
        target.dn = entry.dn;
        Ok(target)
    }

    fn connect(&self, dir: &DirectoryConfig) -> Result<Connection, CliError> {
        let mut conn = Connection::open(dir).map_err(|e| error(dir, "cannot connect", &e))?;
        conn.bind(&self.bind_dn, self.password.expose())
            .map_err(|e| {
                error(
                    dir,
                    &format!("cannot bind as {} (wrong password?)", self.bind_dn),
                    &e,
                )
            })?;
        Ok(conn)
    }

    /// Writes `chat` into the entry (adding the object class when the
    /// attribute is the schema's and the class is missing) and reads it
    /// back. Says what it did.
    pub fn write(&self, config: &Config, chat: &str) -> Result<String, CliError> {
        let dir = section(config)?;
        let mut conn = self.connect(dir)?;
        let added = conn
            .set_recipient(&self.dn, &self.attribute, chat)
            .map_err(|e| {
                error(
                    dir,
                    &format!("cannot write {} of {}", self.attribute, self.dn),
                    &e,
                )
            })?;
        let back = conn
            .values_of(&self.dn, &self.attribute)
            .map_err(|e| error(dir, "cannot read the value back", &e))?;
        conn.close();
        if back != [chat] {
            return Err(CliError::new(
                Exit::Failed,
                format!(
                    "wrote {} of {} but read back {} value(s) that differ: check the entry",
                    self.attribute,
                    self.dn,
                    back.len()
                ),
            ));
        }
        let class = if added {
            format!(" and added objectClass {USER_CLASS}")
        } else {
            String::new()
        };
        Ok(format!(
            "wrote {} = {} to {}{class} in {}",
            self.attribute,
            mask(chat),
            self.dn,
            dir.uri
        ))
    }
}

/// The bind password from a root-only file (one line; a final newline is
/// not part of it).
fn read_password_file(path: &Path) -> Result<Secret, CliError> {
    if !path.is_absolute() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "--directory-bind-password-file {}: give an absolute path",
                path.display()
            ),
        ));
    }
    let text = read_secure(path, Secrecy::Secret, OWNER)
        .map_err(|e| CliError::new(Exit::Files, format!("--directory-bind-password-file: {e}")))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "--directory-bind-password-file {}: the file is empty",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(line.to_string()))
}
