//! Loading `gateway.toml` and `users.toml` exactly as a login does, and
//! turning a user's entry into delivery routes. Shared by the PAM module and
//! the CLI so both apply the same checks.

use std::fmt;
use std::path::Path;

use crate::approve::wire::PamResult;
use crate::config::Config;
use crate::directory;
use crate::flow::{Enrolment, Lookup, Route, clean};
use crate::gateway::GatewayKind;
use crate::log::{Level, Log};
use crate::network::Network;
use crate::secure_file::{
    FileError, Owner, Secrecy, read_secure, read_secure_with_mode, update_locked, update_locked_as,
};
use crate::state::{StateStore, WallClock};
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
    load_config_with_text(path, owner).map(|(config, _)| config)
}

/// [`load_config`], also returning the text that was read (which the PAM
/// module hands to the direct library, [`crate::direct::Library`]).
pub fn load_config_with_text(path: &Path, owner: Owner) -> Result<(Config, String), SetupError> {
    let text = read_secure(path, Secrecy::Secret, owner)?;
    let config = Config::parse(path, &text)?;
    Ok((config, text))
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

/// The routes for one user's entry, in the order of `gateways`. A
/// recipient for a gateway without a section is an error (the login is
/// denied), not silently skipped.
pub fn routes_for(
    net: &dyn Network,
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
        let (Some(recipient), Some(gateway)) = (entry.recipient(*kind), net.gateway(config, *kind))
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

/// The user's [`Enrolment`] from the users file alone.
pub fn enrolment(
    net: &dyn Network,
    config: &Config,
    users: &Users,
    user: &str,
) -> Result<Enrolment, SetupError> {
    match users.get(user) {
        None => Ok(Enrolment::NotEnrolled),
        Some(entry) => Ok(Enrolment::Enrolled(routes_for(net, config, user, entry)?)),
    }
}

/// Where a user's recipients come from, for a login and for its session
/// alert: the users file first (an entry there overrides the directory
/// wholly), then `[directory]`, whose last answer per user may be cached
/// in the state dir (`cache_max_age`).
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub config: &'a Config,
    pub users: &'a Users,
    /// Where gateways and the directory are reached.
    pub net: &'a dyn Network,
    /// The state dir, for the directory's cache.
    pub store: &'a dyn StateStore,
    pub wall: &'a dyn WallClock,
    /// Who must own the directory's bind password file.
    pub owner: Owner,
}

impl<'a> Sources<'a> {
    /// A login's sources as a real login has them: root's files, the
    /// system's clock.
    pub fn of_root(
        config: &'a Config,
        users: &'a Users,
        net: &'a dyn Network,
        store: &'a dyn StateStore,
    ) -> Sources<'a> {
        Sources {
            config,
            users,
            net,
            store,
            wall: &crate::state::SystemWallClock,
            owner: Owner::ROOT,
        }
    }

    /// Whom the session alert tells for `user` (`[alert] to = "user"`):
    /// the users file's entry, else (with `[directory]`) the directory's
    /// recipients, or the fresh cache when the directory fails (logged).
    /// `None`: nobody to tell.
    pub fn alert_entry(&self, user: &str, log: &mut dyn Log) -> Option<UserEntry> {
        if let Some(entry) = self.users.get(user) {
            return Some(entry.clone());
        }
        let dir = self.config.directory.as_ref()?;
        let error = match self.net.lookup(dir, user, self.owner) {
            Ok(found) => {
                return found
                    .filter(|r| !r.is_empty())
                    .map(UserEntry::from_recipients);
            }
            Err(e) => e,
        };
        let cached = dir.cache_max_age.and_then(|max_age| {
            match directory::cached(self.store, user, self.wall.unix_now(), max_age) {
                Ok(directory::Cached::Fresh { recipients, .. }) if !recipients.is_empty() => {
                    Some(recipients)
                }
                _ => None,
            }
        });
        let then = if cached.is_some() {
            "using the cached recipients"
        } else {
            "the user is not told"
        };
        log.log(
            Level::Warning,
            &format!(
                "user={} session: alert: {}; {then}",
                clean(user),
                directory_failed(dir, &error)
            ),
        );
        cached.map(UserEntry::from_recipients)
    }

    /// The user's enrolment for [`crate::flow::Flow::authenticate`]: known
    /// at once when the name is unknown to NSS (`known` false), when the
    /// users file has an entry (it overrides the directory wholly) or when
    /// there is no `[directory]`; otherwise a [`Lookup::Deferred`] that
    /// [`Sources::resolve_enrolment`]s only once `[policy]` covers the
    /// login, so a login it exempts never waits on the directory. A
    /// users-file entry that needs a gateway gateway.toml lacks is an error
    /// here, as always; one from the directory cannot be
    /// (`[directory.attributes]` only maps gateways that have a section)
    /// and would deny as the directory's fault.
    pub fn enrolment_lookup(self, user: &'a str, known: bool) -> Result<Lookup<'a>, SetupError> {
        if !known {
            return Ok(Enrolment::UnknownUser.into());
        }
        if self.config.directory.is_none() || self.users.get(user).is_some() {
            return Ok(enrolment(self.net, self.config, self.users, user)?.into());
        }
        Ok(Lookup::Deferred(Box::new(
            move |log: &mut dyn Log| match self.resolve_enrolment(user, log) {
                Ok(found) => found,
                Err(e) => Enrolment::DirectoryUnavailable(e.to_string()),
            },
        )))
    }

    /// The user's [`Enrolment`] as a login sees it: the users file first
    /// (an entry there overrides the directory wholly: its recipients, and
    /// only its, are used), then `[directory]` if configured. A directory
    /// that fails denies ([`Enrolment::DirectoryUnavailable`]) unless the
    /// cache of the last recipients seen is fresh; each step is logged on
    /// `log`.
    pub fn resolve_enrolment(
        &self,
        user: &str,
        log: &mut dyn Log,
    ) -> Result<Enrolment, SetupError> {
        let (config, store) = (self.config, self.store);
        let Some(dir) = config
            .directory
            .as_ref()
            .filter(|_| self.users.get(user).is_none())
        else {
            return enrolment(self.net, config, self.users, user);
        };
        let shown = clean(user);
        let now = self.wall.unix_now();
        let error = match self.net.lookup(dir, user, self.owner) {
            Ok(found) => {
                let recipients = found.unwrap_or_default();
                if let Some(max_age) = dir.cache_max_age
                    && let Err(e) = directory::remember(store, user, now, max_age, &recipients)
                {
                    log.log(
                        Level::Warning,
                        &format!(
                            "user={shown} directory: cannot keep its answer in the cache: {e}"
                        ),
                    );
                }
                if recipients.is_empty() {
                    return Ok(Enrolment::NotEnrolled);
                }
                let entry = UserEntry::from_recipients(recipients);
                return Ok(Enrolment::Enrolled(routes_for(
                    self.net, config, user, &entry,
                )?));
            }
            Err(e) => e,
        };
        log.log(
            Level::Error,
            &format!("user={shown} {}", directory_failed(dir, &error)),
        );
        let unavailable = |why: String| Ok(Enrolment::DirectoryUnavailable(why));
        let Some(max_age) = dir.cache_max_age else {
            return unavailable(format!("{error}; no cache (cache_max_age is not set)"));
        };
        if matches!(error, directory::DirectoryError::BadAnswer(_)) {
            // The directory answered: what it said last is not what it says.
            return unavailable(format!("{error}; the cache is not used for this"));
        }
        match directory::cached(store, user, now, max_age) {
            Ok(directory::Cached::Fresh { recipients, age }) => {
                log.log(
                    Level::Warning,
                    &format!(
                        "user={shown} directory: using the cached recipients seen {age} s ago \
                         (cache_max_age {max_age} s)"
                    ),
                );
                let entry = UserEntry::from_recipients(recipients);
                Ok(Enrolment::Enrolled(routes_for(
                    self.net, config, user, &entry,
                )?))
            }
            Ok(directory::Cached::Stale { age }) => unavailable(format!(
                "{error}; the cached recipients are stale ({}, cache_max_age {max_age} s): not used",
                match age {
                    Some(age) => format!("seen {age} s ago"),
                    None => "seen in the future".to_string(),
                }
            )),
            Ok(directory::Cached::Nothing) => {
                unavailable(format!("{error}; no cached recipients for this user"))
            }
            Err(e) => unavailable(format!("{error}; the cache cannot be read: {e}")),
        }
    }
}

/// How a log line tells that the directory failed: `directory=URI ERROR`.
fn directory_failed(dir: &directory::DirectoryConfig, error: &directory::DirectoryError) -> String {
    format!(
        "directory={} {}",
        clean(&dir.uri),
        crate::log::field(&error.to_string())
    )
}

/// Mode of a `gateway.toml` the CLI creates (it holds the bot token).
pub const CONFIG_FILE_MODE: u32 = 0o600;
/// Mode of a `users.toml` the CLI creates: the module runs as root, so
/// nobody else needs to read who is enrolled where.
pub const USERS_FILE_MODE: u32 = 0o600;

/// The first lines of a users file the CLI creates.
pub const NEW_USERS_FILE: &str = "# pam_gateway recipients: one [users.NAME] table per user.\n\
# Written by `pam-gateway enroll`; comments and other entries are kept.\n\n";

/// The first lines of a config file the CLI creates.
pub const NEW_CONFIG_FILE: &str = "# pam_gateway configuration (root:root, mode 0600: it holds the bot token).\n\
# Every key: /usr/share/doc/pam-gateway/examples/gateway.toml\n\n";

/// Like [`load_users`], but a users file that does not exist yet is an
/// empty one (nobody enrolled): the CLI creates it on first enrolment.
pub fn load_users_or_empty(config: &Config, owner: Owner) -> Result<Users, SetupError> {
    match read_secure(&config.users_file, Secrecy::Public, owner) {
        Ok(text) => Ok(Users::parse(&config.users_file, &text)?),
        Err(FileError::NotFound(_)) => Ok(Users::default()),
        Err(e) => Err(e.into()),
    }
}

/// Changes `gateway.toml` under its lock. `edit` gets the current text (or
/// [`NEW_CONFIG_FILE`] when there is none); what it returns must be a valid
/// config, since the module reads this file at every login. (The current
/// text may be invalid: fixing it is what the edit may be for.)
pub fn update_config<E: From<SetupError> + From<FileError>>(
    path: &Path,
    owner: Owner,
    edit: impl FnOnce(&str) -> Result<String, E>,
) -> Result<(), E> {
    update_locked(
        path,
        Secrecy::Secret,
        owner,
        CONFIG_FILE_MODE,
        |current: Option<&str>| -> Result<Option<String>, E> {
            let new = edit(current.unwrap_or(NEW_CONFIG_FILE))?;
            Config::parse(path, &new).map_err(SetupError::from)?;
            Ok(Some(new))
        },
    )
}

/// Changes the users file the config names, under its lock. `edit` gets
/// the parsed users and the text (or [`NEW_USERS_FILE`]) and returns the
/// new text, or `None` to leave the file alone. The result must parse
/// exactly as the module will parse it. A result holding a `totp_secret`
/// is written owner-only (the module denies it otherwise), in the same
/// atomic replace.
pub fn update_users<E: From<SetupError> + From<FileError>>(
    config: &Config,
    owner: Owner,
    edit: impl FnOnce(&Users, &str) -> Result<Option<String>, E>,
) -> Result<(), E> {
    let path = &config.users_file;
    update_locked_as(
        path,
        Secrecy::Public,
        owner,
        USERS_FILE_MODE,
        |current: Option<&str>| -> Result<Option<(String, Secrecy)>, E> {
            let text = current.unwrap_or(NEW_USERS_FILE);
            let users = Users::parse(path, text).map_err(SetupError::from)?;
            match edit(&users, text)? {
                None => Ok(None),
                Some(new) => {
                    let parsed = Users::parse(path, &new).map_err(SetupError::from)?;
                    let secrecy = if parsed.users.values().any(|u| u.totp_secret.is_some()) {
                        Secrecy::Secret
                    } else {
                        Secrecy::Public
                    };
                    Ok(Some((new, secrecy)))
                }
            }
        },
    )
}

/// The account a login is for, as the module names it: the account's own
/// name (pw_name) through NSS however the client spelled it, and whether
/// NSS knows it (a name it does not know goes on, to be denied by the flow
/// after the same prompts). A failed lookup is logged and PAM_SYSTEM_ERR.
/// The module and pam-gatewayd (for a login it runs) both start so.
pub fn login_account(given: &str, log: &mut dyn Log) -> Result<(String, bool), PamResult> {
    match crate::system::accounts::canonical_user(given) {
        Ok(Some(name)) => {
            if name != given {
                log.log(
                    Level::Info,
                    &format!("user={} is account {}", clean(given), clean(&name)),
                );
            }
            Ok((name, true))
        }
        Ok(None) => Ok((given.to_string(), false)),
        Err(e) => {
            log.log(Level::Error, &format!("user={} denied: {e}", clean(given)));
            Err(PamResult::SystemErr)
        }
    }
}

/// A login's `what` step ([`load_config_with_text`], [`load_users`]),
/// its failure logged and PAM_SERVICE_ERR: any problem with the files
/// denies, whatever failmode says.
pub fn for_login<T>(
    loaded: Result<T, SetupError>,
    user: &str,
    what: &str,
    log: &mut dyn Log,
) -> Result<T, PamResult> {
    loaded.map_err(|e| {
        log.log(
            Level::Error,
            &format!("user={} denied: {what}{e}", clean(user)),
        );
        PamResult::ServiceErr
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::gateway::GatewayKind;
    use crate::log::MemoryLog;
    use crate::state::MemoryStateStore;

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
    const NOW: u64 = 1_700_000_000;

    struct Wall(Cell<u64>);
    impl WallClock for Wall {
        fn unix_now(&self) -> u64 {
            self.0.get()
        }
    }

    /// A directory on a loopback port nobody listens on: every lookup is
    /// refused at once.
    fn config(extra: &str) -> Config {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let text = format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\n[directory]\n\
             uri = \"ldap://127.0.0.1:{port}\"\nbase_dn = \"dc=x\"\ntimeout = 2\n{extra}\
             [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n"
        );
        Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config")
    }

    fn users(text: &str) -> Users {
        Users::parse(Path::new("/etc/pam_gateway/users.toml"), text).expect("users")
    }

    fn sources<'a>(
        config: &'a Config,
        users: &'a Users,
        store: &'a dyn StateStore,
        wall: &'a dyn WallClock,
    ) -> Sources<'a> {
        Sources {
            config,
            users,
            net: &crate::network::Direct,
            store,
            wall,
            owner: Owner::current(),
        }
    }

    fn resolve(
        config: &Config,
        users: &Users,
        store: &MemoryStateStore,
        log: &MemoryLog,
    ) -> Enrolment {
        let mut log = log.clone();
        sources(config, users, store, &Wall(Cell::new(NOW)))
            .resolve_enrolment("alice", &mut log)
            .expect("resolve")
    }

    fn kind(e: &Enrolment) -> &'static str {
        match e {
            Enrolment::UnknownUser => "unknown user",
            Enrolment::NotEnrolled => "not enrolled",
            Enrolment::Enrolled(_) => "enrolled",
            Enrolment::DirectoryUnavailable(_) => "directory unavailable",
        }
    }

    fn recipients(e: &Enrolment) -> Vec<String> {
        match e {
            Enrolment::Enrolled(routes) => routes.iter().map(|r| r.recipient.clone()).collect(),
            other => panic!("not enrolled: {}", kind(other)),
        }
    }

    #[test]
    fn a_users_file_entry_overrides_the_directory_without_asking_it() {
        let c = config("");
        let log = MemoryLog::default();
        let e = resolve(
            &c,
            &users("[users.alice]\ntelegram = \"123456977\"\n"),
            &MemoryStateStore::default(),
            &log,
        );
        // The directory is down: had it been asked, this would be a denial.
        assert_eq!(recipients(&e), ["123456977"]);
        assert!(log.text().is_empty(), "{}", log.text());
    }

    #[test]
    fn a_failed_directory_without_a_fresh_cache_denies() {
        let log = MemoryLog::default();
        let e = resolve(&config(""), &users(""), &MemoryStateStore::default(), &log);
        match e {
            Enrolment::DirectoryUnavailable(why) => {
                assert!(
                    why.contains("directory unreachable") && why.contains("no cache"),
                    "{why}"
                )
            }
            other => panic!("{}", kind(&other)),
        }
        assert!(
            log.text()
                .contains("user=alice directory=ldap://127.0.0.1:"),
            "{}",
            log.text()
        );

        // A cache, but two hours old under a one-hour max age.
        let store = MemoryStateStore::default();
        let seen = BTreeMap::from([(GatewayKind::Telegram, "123456977".to_string())]);
        directory::remember(&store, "alice", NOW - 7200, 3600, &seen).expect("remember");
        let e = resolve(&config("cache_max_age = 3600\n"), &users(""), &store, &log);
        match e {
            Enrolment::DirectoryUnavailable(why) => {
                assert!(why.contains("stale (seen 7200 s ago"), "{why}")
            }
            other => panic!("{}", kind(&other)),
        }
    }

    #[test]
    fn a_fresh_cache_stands_in_and_says_so() {
        let store = MemoryStateStore::default();
        let seen = BTreeMap::from([(GatewayKind::Telegram, "123456977".to_string())]);
        directory::remember(&store, "alice", NOW - 600, 3600, &seen).expect("remember");
        let log = MemoryLog::default();
        let e = resolve(&config("cache_max_age = 3600\n"), &users(""), &store, &log);
        assert_eq!(recipients(&e), ["123456977"]);
        assert!(
            log.text()
                .contains("user=alice directory: using the cached recipients seen 600 s ago"),
            "{}",
            log.text()
        );
    }

    #[test]
    fn the_lookup_is_known_at_once_or_deferred_until_asked() {
        let c = config("");
        let store = MemoryStateStore::default();
        let wall = Wall(Cell::new(NOW));
        let lookup = |users: &Users, known: bool| -> String {
            match sources(&c, users, &store, &wall)
                .enrolment_lookup("alice", known)
                .expect("lookup")
            {
                Lookup::Known(e) => format!("known {}", kind(&e)),
                Lookup::Deferred(find) => {
                    let mut log = MemoryLog::default();
                    let e = find(&mut log);
                    format!("deferred {} / {}", kind(&e), log.text().trim())
                }
            }
        };
        // A name NSS does not know, even with a users entry: known at once.
        let entry = users("[users.alice]\ntelegram = \"123456977\"\n");
        assert_eq!(lookup(&entry, false), "known unknown user");
        // A users-file entry overrides the (down) directory without asking it.
        assert_eq!(lookup(&entry, true), "known enrolled");
        // Otherwise the directory is asked only when the flow calls: here
        // it is down, which denies, and says so in the flow's log.
        let asked = lookup(&users(""), true);
        assert!(
            asked.starts_with("deferred directory unavailable / ")
                && asked.contains("user=alice directory=ldap://127.0.0.1:"),
            "{asked}"
        );
        // No [directory]: the users file alone, known at once.
        let plain = Config::parse(
            Path::new("/etc/pam_gateway/gateway.toml"),
            &format!("[telegram]\nbot_token = \"{TOKEN}\"\n"),
        )
        .expect("config");
        let none = users("");
        let found = sources(&plain, &none, &store, &wall)
            .enrolment_lookup("alice", true)
            .expect("lookup");
        assert!(matches!(found, Lookup::Known(Enrolment::NotEnrolled)));
        // A users entry naming a gateway gateway.toml lacks is an error, as
        // it always was.
        let signal = users("[users.alice]\nsignal = \"+15550100\"\n");
        assert!(matches!(
            sources(&plain, &signal, &store, &wall).enrolment_lookup("alice", true),
            Err(SetupError::GatewayNotConfigured { .. })
        ));
    }
}
