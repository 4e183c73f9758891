//! `[directory]`: recipients read from an LDAP directory (a fleet's users
//! live there, not in every host's users.toml).
//!
//! users.toml is read first and an entry there overrides the directory
//! wholly (it is also the only place for a `totp_secret`); a user without
//! one is looked up here: one search under `base_dn` with `user_filter`,
//! the attributes of `[directory.attributes]` read as the user's
//! recipients. The whole lookup -- connect, TLS, bind, search -- ends
//! within `timeout` whatever the server does ([`Connection`] runs every
//! step under one deadline on a runtime of its own).
//!
//! `ldap://` always upgrades with StartTLS before anything is sent;
//! `ldaps://` is TLS from the start; `ldapi://` is a local socket. TLS is
//! rustls with the ring provider, verified against `ca_file` or the
//! system's bundle exactly as the HTTP gateways verify (src/http.rs).
//!
//! What the answers mean for a login ([`crate::setup::Sources::resolve_enrolment`]):
//! an entry with recipients enrols the user; no entry, or an entry without
//! any mapped attribute, is "not enrolled" (`unenrolled` applies); any
//! failure -- unreachable, stalled, TLS refused, bind refused, several
//! entries, a value no gateway accepts -- denies, unless `cache_max_age`
//! is set and the recipients seen last are younger than it (kept in the
//! user's state file, [`crate::state::DirectoryCache`]).
//!
//! The small client API ([`Connection`]) is shared with the CLI.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::tokio;
use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
#[cfg(test)]
use serde::Deserialize;

use crate::gateway::GatewayKind;
use crate::http::TrustRoots;
use crate::secret::Secret;
use crate::section::{SectionError, check_range};
use crate::secure_file::{Owner, Secrecy, read_secure};
use crate::state::{DirectoryCache, StateError, StateStore, update_with};
use crate::toml_errors::{ParseError, toml_struct};

pub mod admin;

/// The default `user_filter`.
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=posixAccount)(uid={user}))";
/// The default `timeout`, seconds.
pub const DEFAULT_TIMEOUT: u64 = 5;
/// The longest `timeout`, seconds.
pub const MAX_TIMEOUT: u64 = 60;
/// The longest `cache_max_age`: 30 days.
pub const MAX_CACHE_AGE: u64 = 30 * 86_400;
/// The longest user name looked up (longer ones find nobody).
pub const MAX_USER_NAME: usize = 256;
/// The longest recipient value read from the directory.
pub const MAX_VALUE: usize = crate::state::MAX_DIRECTORY_VALUE;

toml_struct! {
    /// `[directory]` as written. `attributes` is `[directory.attributes]`.
    #[derive(Debug, Default)]
    // The unit tests read the section alone through serde.
    #[cfg_attr(test, derive(Deserialize))]
    #[cfg_attr(test, serde(deny_unknown_fields))]
    pub struct RawDirectory {
        uri: Option<String>,
        bind_dn: Option<String>,
        bind_password: Option<String>,
        bind_password_file: Option<String>,
        base_dn: Option<String>,
        user_filter: Option<String>,
        timeout: Option<u64>,
        ca_file: Option<String>,
        cache_max_age: Option<u64>,
        attributes: Option<BTreeMap<String, String>>,
    }
}

/// How the module talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldap://`: TCP, upgraded with StartTLS before the bind; a server
    /// that does not offer it is refused.
    StartTls,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldapi://`: a Unix socket on this host.
    Ldapi,
}

/// The bind password: in gateway.toml, or in a root-only file read at
/// each lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindPassword {
    Inline(Secret),
    File(PathBuf),
}

/// `[directory]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    pub uri: String,
    pub transport: Transport,
    /// `bind_dn` and its password; `None`: an anonymous search.
    pub bind: Option<(String, BindPassword)>,
    pub base_dn: String,
    /// The filter with `{user}` where the escaped user name goes.
    pub user_filter: String,
    /// For the whole lookup: connect, TLS, bind, search.
    pub timeout: Duration,
    /// Verifies the server's certificate (ldap://, ldaps://).
    pub roots: TrustRoots,
    /// Seconds the last recipients seen stay usable when the directory
    /// fails; `None`: no cache.
    pub cache_max_age: Option<u64>,
    /// The attribute holding each gateway's recipient, in gateway order.
    pub attributes: BTreeMap<GatewayKind, String>,
}

/// Is `name` an LDAP attribute description (RFC 4512 `descr` or a numeric
/// OID, without options)?
fn is_attribute_name(name: &str) -> bool {
    let descr = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let oid = !name.is_empty()
        && name.len() <= 128
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    descr || oid
}

/// Checks `uri`: one of the three schemes, a host for TCP, nothing else.
fn check_uri(uri: &str) -> Result<Transport, String> {
    let url = reqwest::Url::parse(uri).map_err(|e| format!("not a valid URI: {e}"))?;
    let transport = match url.scheme() {
        "ldap" => Transport::StartTls,
        "ldaps" => Transport::Ldaps,
        "ldapi" => Transport::Ldapi,
        other => {
            return Err(format!(
                "scheme {other:?} is not supported: use ldap:// (always with StartTLS), \
                 ldaps:// or ldapi://"
            ));
        }
    };
    if url.cannot_be_a_base() {
        return Err("must be scheme://host[:port]".to_string());
    }
    let host = url.host_str().unwrap_or("");
    if transport != Transport::Ldapi && host.is_empty() {
        return Err("has no host".to_string());
    }
    if transport == Transport::Ldapi && !host.is_empty() && !host.starts_with("%2F") {
        return Err(
            "an ldapi:// host is the socket's absolute path, percent-encoded \
             (ldapi://%2Frun%2Fslapd%2Fldapi), or empty for the default socket"
                .to_string(),
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials: use bind_dn and bind_password".to_string());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a path, query or fragment: use base_dn and user_filter".into());
    }
    Ok(transport)
}

/// Checks `user_filter`: one `{user}` at least, no other braces, and a
/// valid RFC 4515 filter once a name is put in.
fn check_filter(filter: &str) -> Result<(), String> {
    if !filter.contains("{user}") {
        return Err("must contain {user}".to_string());
    }
    if filter.replace("{user}", "").contains(['{', '}']) {
        return Err("has a placeholder other than {user}".to_string());
    }
    if filter.len() > 1024 {
        return Err("longer than 1024 bytes".to_string());
    }
    if ldap3::parse_filter(filter.replace("{user}", "alice")).is_err() {
        return Err("is not a valid LDAP filter (RFC 4515), e.g. (uid={user})".to_string());
    }
    Ok(())
}

impl DirectoryConfig {
    /// Validates `[directory]`; `None` when the section is absent.
    /// `configured`: the gateways gateway.toml sets up (an attribute for
    /// another one could never deliver).
    pub fn from_raw(
        raw: Option<RawDirectory>,
        configured: &[GatewayKind],
        e: SectionError,
    ) -> Result<Option<DirectoryConfig>, ParseError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let uri = raw
            .uri
            .ok_or_else(|| e("uri", "is required (ldap://, ldaps:// or ldapi://)".into()))?;
        let transport = check_uri(&uri).map_err(|m| e("uri", m))?;
        let base_dn = raw
            .base_dn
            .ok_or_else(|| e("base_dn", "is required, e.g. \"dc=example,dc=org\"".into()))?;
        if base_dn.is_empty() || base_dn.chars().any(char::is_control) {
            return Err(e("base_dn", "is not a DN".into()));
        }
        let password = match (raw.bind_password, raw.bind_password_file) {
            (Some(_), Some(_)) => {
                return Err(e(
                    "bind_password_file",
                    "set bind_password or bind_password_file, not both".into(),
                ));
            }
            (Some(p), None) => Some(BindPassword::Inline(Secret::new(p))),
            (None, Some(f)) => {
                let path = PathBuf::from(f);
                if !path.is_absolute() {
                    return Err(e("bind_password_file", "must be an absolute path".into()));
                }
                Some(BindPassword::File(path))
            }
            (None, None) => None,
        };
        let bind = match (raw.bind_dn, password) {
            (Some(dn), Some(p)) if !dn.is_empty() && !dn.chars().any(char::is_control) => {
                Some((dn, p))
            }
            (Some(_), Some(_)) => return Err(e("bind_dn", "is not a DN".into())),
            (Some(_), None) => {
                return Err(e(
                    "bind_dn",
                    "needs bind_password or bind_password_file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(e("bind_dn", "is required with a bind password".into()));
            }
            (None, None) => None,
        };
        let user_filter = raw
            .user_filter
            .unwrap_or_else(|| DEFAULT_USER_FILTER.to_string());
        check_filter(&user_filter).map_err(|m| e("user_filter", m))?;
        let timeout = check_range(
            raw.timeout.unwrap_or(DEFAULT_TIMEOUT),
            1,
            MAX_TIMEOUT,
            &|m| e("timeout", m),
        )?;
        let roots = match raw.ca_file {
            None => TrustRoots::System,
            Some(f) => {
                let path = PathBuf::from(f);
                if !path.is_absolute() {
                    return Err(e("ca_file", "must be an absolute path".into()));
                }
                TrustRoots::PemFile(path)
            }
        };
        let cache_max_age = match raw.cache_max_age {
            None => None,
            Some(age) => Some(check_range(age, 1, MAX_CACHE_AGE, &|m| {
                e("cache_max_age", m)
            })?),
        };
        let mut attributes = BTreeMap::new();
        for (name, attribute) in raw.attributes.unwrap_or_default() {
            let key = format!("attributes.{name}");
            let kind = GatewayKind::from_id(&name).ok_or_else(|| {
                e(
                    &key,
                    format!(
                        "unknown gateway {name:?}; known: {}",
                        GatewayKind::ALL.map(GatewayKind::id).join(", ")
                    ),
                )
            })?;
            if !configured.contains(&kind) {
                return Err(e(
                    &key,
                    format!("there is no [{name}] section to deliver through"),
                ));
            }
            if !is_attribute_name(&attribute) {
                return Err(e(
                    &key,
                    format!("{attribute:?} is not an LDAP attribute name"),
                ));
            }
            attributes.insert(kind, attribute);
        }
        if attributes.is_empty() {
            return Err(e(
                "attributes",
                "maps no gateway to an attribute: add [directory.attributes], \
                 e.g. telegram = \"pamGatewayTelegram\""
                    .into(),
            ));
        }
        Ok(Some(DirectoryConfig {
            uri,
            transport,
            bind,
            base_dn,
            user_filter,
            timeout: Duration::from_secs(timeout),
            roots,
            cache_max_age,
            attributes,
        }))
    }

    /// The search filter for `user`, its name escaped (RFC 4515: `*`,
    /// `(`, `)`, `\` and NUL as `\XX`), so that no name widens the search.
    pub fn filter_for(&self, user: &str) -> String {
        self.user_filter
            .replace("{user}", &ldap3::ldap_escape(user))
    }

    /// The bind password (read from `bind_password_file` when that is
    /// where it is: root-owned, not readable by others).
    fn bind_password(&self, owner: Owner) -> Result<Option<(String, Secret)>, DirectoryError> {
        match &self.bind {
            None => Ok(None),
            Some((dn, BindPassword::Inline(p))) => Ok(Some((dn.clone(), p.clone()))),
            Some((dn, BindPassword::File(path))) => {
                let text = read_secure(path, Secrecy::Secret, owner)
                    .map_err(|e| DirectoryError::Local(format!("bind_password_file: {e}")))?;
                let password = text.strip_suffix('\n').unwrap_or(&text);
                let password = password.strip_suffix('\r').unwrap_or(password);
                Ok(Some((dn.clone(), Secret::new(password.to_string()))))
            }
        }
    }
}

/// Why a lookup or another directory operation failed. Any of these denies
/// a login (unless a fresh cache is there).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DirectoryError {
    /// No answer: connection refused, TLS failed, the connection dropped.
    Unavailable(String),
    /// The deadline passed (connect, TLS, bind and search together).
    Timeout(Duration),
    /// The server answered with an error (bind refused, no such base).
    Refused(String),
    /// The answer cannot be used: several entries, a value no gateway takes.
    BadAnswer(String),
    /// This machine: no runtime, an unsafe password file.
    Local(String),
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::Unavailable(m) => write!(f, "directory unreachable: {m}"),
            DirectoryError::Timeout(t) => {
                write!(f, "directory did not answer within {} s", t.as_secs())
            }
            DirectoryError::Refused(m) => write!(f, "directory refused: {m}"),
            DirectoryError::BadAnswer(m) => write!(f, "directory answer unusable: {m}"),
            DirectoryError::Local(m) => write!(f, "directory lookup failed here: {m}"),
        }
    }
}

impl std::error::Error for DirectoryError {}

/// An LDAP error as text. ldap3's messages carry no password (a bind
/// error is the server's result code and text).
fn ldap_error(e: ldap3::LdapError) -> DirectoryError {
    use ldap3::LdapError as E;
    match e {
        E::LdapResult { result } => DirectoryError::Refused(format!(
            "result code {}{}",
            result.rc,
            if result.text.is_empty() {
                String::new()
            } else {
                format!(" ({})", crate::log::field(&result.text))
            }
        )),
        E::Timeout { .. } => DirectoryError::Unavailable("timed out".into()),
        other => DirectoryError::Unavailable(crate::log::field(&other.to_string())),
    }
}

/// One directory entry: its DN and the values of the attributes asked for
/// (names as gateway.toml wrote them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// One connection, every operation under the deadline it was opened with.
/// The runtime is this connection's own (one thread, this one): dropping
/// the connection ends everything it started, a stalled server included.
pub struct Connection {
    runtime: Option<tokio::runtime::Runtime>,
    ldap: ldap3::Ldap,
    deadline: Instant,
    timeout: Duration,
}

impl Connection {
    /// Connects as `[directory]` says (StartTLS for ldap://), all of it
    /// and whatever follows within `dir.timeout` from now.
    pub fn open(dir: &DirectoryConfig) -> Result<Connection, DirectoryError> {
        Connection::open_until(dir, Instant::now() + dir.timeout)
    }

    /// Like [`Connection::open`], with the deadline given.
    pub fn open_until(
        dir: &DirectoryConfig,
        deadline: Instant,
    ) -> Result<Connection, DirectoryError> {
        let runtime = new_runtime()?;
        let ldap = match settings(dir) {
            Ok(settings) => within(&runtime, deadline, dir.timeout, connect(dir, settings)),
            Err(e) => Err(e),
        };
        match ldap {
            Ok(ldap) => Ok(Connection {
                runtime: Some(runtime),
                ldap,
                deadline,
                timeout: dir.timeout,
            }),
            Err(e) => {
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut ldap3::Ldap) -> Result<T, ldap3::LdapError>,
    ) -> Result<T, DirectoryError> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(DirectoryError::Local("the connection is closed".into()));
        };
        let ldap = &mut self.ldap;
        within(runtime, self.deadline, self.timeout, async move {
            f(ldap).await.map_err(ldap_error)
        })
    }

    /// Simple bind as `dn`.
    pub fn bind(&mut self, dn: &str, password: &str) -> Result<(), DirectoryError> {
        self.run(async |ldap| ldap.simple_bind(dn, password).await?.success().map(|_| ()))
    }

    /// Binds as `[directory]` says (nothing for an anonymous search).
    pub fn bind_configured(
        &mut self,
        dir: &DirectoryConfig,
        owner: Owner,
    ) -> Result<(), DirectoryError> {
        match dir.bind_password(owner)? {
            None => Ok(()),
            Some((dn, password)) => self.bind(&dn, password.expose()),
        }
    }

    /// The entry `user_filter` finds for `user` under `base_dn`, with the
    /// mapped attributes; `None` when there is none. Several entries are
    /// an error: a login must not pick one.
    pub fn find_user(
        &mut self,
        dir: &DirectoryConfig,
        user: &str,
    ) -> Result<Option<Entry>, DirectoryError> {
        self.find_user_with(dir, user, &[])
    }

    /// [`Connection::find_user`], reading `extra` attributes too (e.g.
    /// `objectClass`, to see whether `pamGatewayUser` must be added).
    pub fn find_user_with(
        &mut self,
        dir: &DirectoryConfig,
        user: &str,
        extra: &[&str],
    ) -> Result<Option<Entry>, DirectoryError> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(DirectoryError::Local("the connection is closed".into()));
        };
        let find = find_user(&mut self.ldap, dir, user, extra);
        within(runtime, self.deadline, self.timeout, find)
    }

    /// Replaces every value of `attribute` of `dn` with `values` (none:
    /// removes the attribute).
    pub fn replace_attribute(
        &mut self,
        dn: &str,
        attribute: &str,
        values: &[&str],
    ) -> Result<(), DirectoryError> {
        self.modify(dn, attribute, values, Mod::Replace)
    }

    /// Adds `values` to `attribute` of `dn` (e.g. `objectClass:
    /// pamGatewayUser`); the server refuses a value that is there already.
    pub fn add_values(
        &mut self,
        dn: &str,
        attribute: &str,
        values: &[&str],
    ) -> Result<(), DirectoryError> {
        self.modify(dn, attribute, values, Mod::Add)
    }

    /// One modification of `attribute` of `dn` with `values`, of the kind
    /// `kind` makes (`Mod::Replace`, `Mod::Add`).
    fn modify<'a>(
        &mut self,
        dn: &str,
        attribute: &'a str,
        values: &[&'a str],
        kind: fn(&'a str, std::collections::HashSet<&'a str>) -> Mod<&'a str>,
    ) -> Result<(), DirectoryError> {
        let values: std::collections::HashSet<&str> = values.iter().copied().collect();
        self.run(async |ldap| {
            ldap.modify(dn, vec![kind(attribute, values)])
                .await?
                .success()
                .map(|_| ())
        })
    }

    /// Says goodbye to the server (within the deadline) and closes.
    pub fn close(mut self) {
        let _ = self.run(async |ldap| ldap.unbind().await);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Never waits: a name lookup stuck in the blocking pool is left to
        // finish on its own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A connection's own runtime: one thread, this one.
fn new_runtime() -> Result<tokio::runtime::Runtime, DirectoryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DirectoryError::Local(format!("cannot start the LDAP client: {e}")))
}

/// ldap3's settings for `dir`: our rustls configuration for ldap:// and
/// ldaps://, StartTLS for ldap://.
fn settings(dir: &DirectoryConfig) -> Result<LdapConnSettings, DirectoryError> {
    let mut settings = LdapConnSettings::new();
    if dir.transport != Transport::Ldapi {
        let tls = crate::http::rustls_config(dir.roots.clone()).map_err(DirectoryError::Local)?;
        settings = settings
            .set_config(Arc::new(tls))
            .set_starttls(dir.transport == Transport::StartTls);
    }
    Ok(settings)
}

/// Connects to `dir.uri` with `settings` (and StartTLS for ldap://); the
/// connection's driver is spawned on the current runtime.
async fn connect(
    dir: &DirectoryConfig,
    mut settings: LdapConnSettings,
) -> Result<ldap3::Ldap, DirectoryError> {
    let uri = dir.uri.as_str();
    if dir.transport != Transport::Ldapi {
        // Our own socket, with TCP_NODELAY: without it the small writes
        // of StartTLS, the handshake and the bind wait for delayed ACKs
        // (40 ms per lookup on loopback).
        let stream = connect_tcp(uri).await.map_err(ldap_error)?;
        settings = settings.set_std_stream(ldap3::StdStream::Tcp(stream));
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, uri)
        .await
        .map_err(ldap_error)?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// [`Connection::find_user_with`] on `ldap`.
async fn find_user(
    ldap: &mut ldap3::Ldap,
    dir: &DirectoryConfig,
    user: &str,
    extra: &[&str],
) -> Result<Option<Entry>, DirectoryError> {
    if user.is_empty() || user.len() > MAX_USER_NAME {
        return Ok(None);
    }
    let filter = dir.filter_for(user);
    // Each attribute once (two gateways may map to one, e.g. `mobile`); a
    // handful of names, so no sort (BENCHMARKS.md: module size).
    let mut wanted: Vec<&str> = Vec::new();
    for name in dir
        .attributes
        .values()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    let ldap3::SearchResult(entries, result) = ldap
        .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
        .search(&dir.base_dn, Scope::Subtree, &filter, wanted)
        .await
        .map_err(ldap_error)?;
    // Continuation references (Active Directory returns some for a
    // search from the domain's root) are not entries, and are not
    // followed: the users are where base_dn says.
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| !e.is_ref() && !e.is_intermediate())
        .collect();
    // 4: sizeLimitExceeded, i.e. more than one entry.
    if result.rc == 4 || entries.len() > 1 {
        return Err(DirectoryError::BadAnswer(
            "several entries match user_filter for this user".into(),
        ));
    }
    if result.rc != 0 {
        return Err(ldap_error(ldap3::LdapError::LdapResult { result }));
    }
    let Some(entry) = entries.into_iter().next() else {
        return Ok(None);
    };
    let entry = SearchEntry::construct(entry);
    // Inserted one by one: `collect` into a BTreeMap sorts first, with a
    // copy of std's stable sort per map type (src/small_sort.rs says why
    // that matters here).
    let mut attributes = BTreeMap::new();
    for (name, values) in entry.attrs {
        attributes.insert(name, values);
    }
    Ok(Some(Entry {
        dn: entry.dn,
        attributes,
    }))
}

/// A TCP connection to the host and port of `uri` (389 for ldap://, 636
/// for ldaps:// by default) with TCP_NODELAY, as ldap3 takes it.
async fn connect_tcp(uri: &str) -> Result<std::net::TcpStream, ldap3::LdapError> {
    let url = reqwest::Url::parse(uri)?;
    let port = url
        .port()
        .unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
    // "host:port", "[v6]:port" for a literal: an address literal is used
    // as it is, a name resolved in the blocking pool. The same call as
    // ldap3's own connect, so the module carries one copy of it.
    let host_port = format!("{}:{port}", url.host_str().unwrap_or(""));
    let stream = tokio::net::TcpStream::connect(host_port.as_str()).await?;
    stream.set_nodelay(true)?;
    Ok(stream.into_std()?)
}

/// Runs `f` on `runtime` until `deadline`.
fn within<T>(
    runtime: &tokio::runtime::Runtime,
    deadline: Instant,
    timeout: Duration,
    f: impl Future<Output = Result<T, DirectoryError>>,
) -> Result<T, DirectoryError> {
    runtime.block_on(async {
        match tokio::time::timeout_at(deadline.into(), f).await {
            Ok(r) => r,
            Err(_) => Err(DirectoryError::Timeout(timeout)),
        }
    })
}

/// A user's recipients as the directory holds them: `None` when it has no
/// entry for the user; an empty map when the entry has none of the mapped
/// attributes. The first value of each attribute counts; a value the
/// gateway does not accept is an error (never silently skipped).
pub fn lookup(
    dir: &DirectoryConfig,
    user: &str,
    owner: Owner,
) -> Result<Option<BTreeMap<GatewayKind, String>>, DirectoryError> {
    // What Connection::open, bind_configured, find_user and close do, in
    // one future run once: one copy of the runtime's and the deadline's
    // code for it in the module instead of one per step (BENCHMARKS.md).
    let deadline = Instant::now() + dir.timeout;
    let runtime = new_runtime()?;
    let entry = settings(dir).and_then(|settings| {
        runtime.block_on(async {
            let session = async {
                let mut ldap = connect(dir, settings).await?;
                if let Some((dn, password)) = dir.bind_password(owner)? {
                    let bound = ldap.simple_bind(&dn, password.expose()).await;
                    bound.and_then(|r| r.success()).map_err(ldap_error)?;
                }
                let entry = find_user(&mut ldap, dir, user, &[]).await?;
                Ok((ldap, entry))
            };
            let (mut ldap, entry) = match tokio::time::timeout_at(deadline.into(), session).await {
                Ok(r) => r?,
                Err(_) => return Err(DirectoryError::Timeout(dir.timeout)),
            };
            // Goodbye within the same deadline; its failure changes nothing.
            let _ = tokio::time::timeout_at(deadline.into(), ldap.unbind()).await;
            Ok(entry)
        })
    });
    // Never waits: a name lookup stuck in the blocking pool is left to
    // finish on its own.
    runtime.shutdown_background();
    let Some(entry) = entry? else {
        return Ok(None);
    };
    recipients_of(dir, &entry).map(Some)
}

/// The recipients in `entry`, per `[directory.attributes]`.
pub fn recipients_of(
    dir: &DirectoryConfig,
    entry: &Entry,
) -> Result<BTreeMap<GatewayKind, String>, DirectoryError> {
    let mut out = BTreeMap::new();
    for (kind, attribute) in &dir.attributes {
        let value = entry
            .attributes
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
            .and_then(|(_, values)| values.first());
        let Some(value) = value else { continue };
        if value.len() > MAX_VALUE {
            return Err(DirectoryError::BadAnswer(format!(
                "{attribute} of {} is longer than {MAX_VALUE} bytes",
                crate::log::field(&entry.dn)
            )));
        }
        kind.spec().check_recipient(value).map_err(|m| {
            DirectoryError::BadAnswer(format!(
                "{attribute} of {} is no {} recipient: {}",
                crate::log::field(&entry.dn),
                kind.id(),
                crate::log::field(&m)
            ))
        })?;
        out.insert(*kind, value.clone());
    }
    Ok(out)
}

/// What the cache holds for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Nothing (never seen, or the directory had no recipients for them).
    Nothing,
    /// Recipients seen `age` seconds ago, within the max age.
    Fresh {
        recipients: BTreeMap<GatewayKind, String>,
        age: u64,
    },
    /// Recipients older than the max age, or from the future (`None`: a
    /// clock set back must not stretch the cache): never used.
    Stale { age: Option<u64> },
}

/// The cached recipients of `user` at `now` under `max_age`.
pub fn cached(
    store: &dyn StateStore,
    user: &str,
    now: u64,
    max_age: u64,
) -> Result<Cached, StateError> {
    let cache = update_with(store, user, |s| s.directory.clone())?;
    let Some(cache) = cache else {
        return Ok(Cached::Nothing);
    };
    match now.checked_sub(cache.seen) {
        Some(age) if age <= max_age => {
            let mut recipients = BTreeMap::new();
            for (k, v) in &cache.recipients {
                if let Some(k) = GatewayKind::from_id(k) {
                    recipients.insert(k, v.clone());
                }
            }
            Ok(Cached::Fresh { recipients, age })
        }
        age => Ok(Cached::Stale { age }),
    }
}

/// Keeps the recipients the directory just gave for `user` (or forgets
/// them when it has none). Written only when they changed or half the
/// max age has passed: the age counts from the last write, so a cache is
/// never used older than `max_age`.
pub fn remember(
    store: &dyn StateStore,
    user: &str,
    now: u64,
    max_age: u64,
    recipients: &BTreeMap<GatewayKind, String>,
) -> Result<(), StateError> {
    let mut fresh: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in recipients {
        fresh.insert(k.id().to_string(), v.clone());
    }
    update_with(store, user, |s| {
        if fresh.is_empty() {
            s.directory = None;
            return;
        }
        let keep = s
            .directory
            .as_ref()
            .is_some_and(|c| c.recipients == fresh && c.seen <= now && now - c.seen < max_age / 2);
        if !keep {
            s.directory = Some(DirectoryCache {
                seen: now,
                recipients: fresh,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStateStore, UserState};

    fn raw(text: &str) -> Result<Option<DirectoryConfig>, String> {
        #[derive(Deserialize)]
        struct Doc {
            directory: Option<RawDirectory>,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        DirectoryConfig::from_raw(
            doc.directory,
            &[GatewayKind::Telegram, GatewayKind::Sms],
            &|k, m| ParseError {
                file: PathBuf::from("/x"),
                line: None,
                key: Some(format!("directory.{k}")),
                message: m,
            },
        )
        .map_err(|e| format!("{}: {}", e.key.unwrap_or_default(), e.message))
    }

    const BASE: &str = "[directory]\nuri = \"ldaps://ldap.example.org\"\n\
                        base_dn = \"dc=example,dc=org\"\n";
    const ATTRS: &str = "[directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n";

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(raw("").unwrap(), None);
        let d = raw(&format!("{BASE}{ATTRS}")).unwrap().unwrap();
        assert_eq!(d.transport, Transport::Ldaps);
        assert_eq!(d.user_filter, DEFAULT_USER_FILTER);
        assert_eq!(d.timeout, Duration::from_secs(DEFAULT_TIMEOUT));
        assert_eq!(d.roots, TrustRoots::System);
        assert_eq!(d.cache_max_age, None);
        assert_eq!(d.bind, None);
        let d = raw(
            "[directory]\nuri = \"ldap://10.0.0.5:389\"\nbase_dn = \"ou=people,dc=x\"\n\
             bind_dn = \"cn=reader,dc=x\"\nbind_password_file = \"/etc/pam_gateway/ldap.pw\"\n\
             user_filter = \"(uid={user})\"\ntimeout = 3\nca_file = \"/etc/ssl/ca.pem\"\n\
             cache_max_age = 86400\n[directory.attributes]\nsms = \"mobile\"\n\
             telegram = \"pamGatewayTelegram\"\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.transport, Transport::StartTls);
        assert_eq!(
            d.bind,
            Some((
                "cn=reader,dc=x".to_string(),
                BindPassword::File("/etc/pam_gateway/ldap.pw".into())
            ))
        );
        assert_eq!(d.timeout, Duration::from_secs(3));
        assert_eq!(d.roots, TrustRoots::PemFile("/etc/ssl/ca.pem".into()));
        assert_eq!(d.cache_max_age, Some(86_400));
        assert_eq!(d.attributes.len(), 2);
        assert_eq!(d.attributes[&GatewayKind::Sms], "mobile");
        let d = raw(&format!(
            "[directory]\nuri = \"ldapi://%2Frun%2Fslapd%2Fldapi\"\nbase_dn = \"dc=x\"\n{ATTRS}"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(d.transport, Transport::Ldapi);
    }

    #[test]
    fn config_errors_name_the_key() {
        let with = |extra: &str| format!("{BASE}{extra}{ATTRS}");
        for (text, key) in [
            (format!("[directory]\nbase_dn = \"dc=x\"\n{ATTRS}"), "uri"),
            (
                format!("[directory]\nuri = \"ldaps://h\"\n{ATTRS}"),
                "base_dn",
            ),
            (
                format!("[directory]\nuri = \"http://h\"\nbase_dn = \"dc=x\"\n{ATTRS}"),
                "uri",
            ),
            (
                format!("[directory]\nuri = \"ldap://\"\nbase_dn = \"dc=x\"\n{ATTRS}"),
                "uri",
            ),
            (
                format!("[directory]\nuri = \"ldap://u:p@h\"\nbase_dn = \"dc=x\"\n{ATTRS}"),
                "uri",
            ),
            (
                format!("[directory]\nuri = \"ldap://h/dc=x?uid\"\nbase_dn = \"dc=x\"\n{ATTRS}"),
                "uri",
            ),
            (with("bind_dn = \"cn=r\"\n"), "bind_dn"),
            (with("bind_password = \"pw\"\n"), "bind_dn"),
            (
                with("bind_dn = \"cn=r\"\nbind_password = \"pw\"\nbind_password_file = \"/p\"\n"),
                "bind_password_file",
            ),
            (
                with("bind_dn = \"cn=r\"\nbind_password_file = \"p\"\n"),
                "bind_password_file",
            ),
            (with("user_filter = \"(uid=alice)\"\n"), "user_filter"),
            (with("user_filter = \"(uid={user}\"\n"), "user_filter"),
            (
                with("user_filter = \"(uid={user})({host})\"\n"),
                "user_filter",
            ),
            (with("timeout = 0\n"), "timeout"),
            (with("timeout = 61\n"), "timeout"),
            (with("ca_file = \"ca.pem\"\n"), "ca_file"),
            (with("cache_max_age = 0\n"), "cache_max_age"),
            (BASE.to_string(), "attributes"),
            (
                format!("{BASE}[directory.attributes]\nwhatsapp = \"x\"\n"),
                "attributes.whatsapp",
            ),
            (
                format!("{BASE}[directory.attributes]\nsignal = \"mobile\"\n"),
                "attributes.signal",
            ),
            (
                format!("{BASE}[directory.attributes]\ntelegram = \"a b\"\n"),
                "attributes.telegram",
            ),
        ] {
            let err = raw(&text).unwrap_err();
            assert!(
                err.starts_with(&format!("directory.{key}:")),
                "{text}\n=> {err}"
            );
        }
        let err = raw(&with("zz = 1\n")).unwrap_err();
        assert!(err.contains("unknown field `zz`"), "{err}");
    }

    #[test]
    fn the_bind_password_never_shows() {
        let d = raw(&format!(
            "{BASE}bind_dn = \"cn=r\"\nbind_password = \"s3cret-pw\"\n{ATTRS}"
        ))
        .unwrap()
        .unwrap();
        assert!(!format!("{d:?}").contains("s3cret-pw"));
    }

    #[test]
    fn the_user_name_is_escaped_in_the_filter() {
        let d = raw(&format!("{BASE}{ATTRS}")).unwrap().unwrap();
        assert_eq!(
            d.filter_for("alice"),
            "(&(objectClass=posixAccount)(uid=alice))"
        );
        for (name, escaped) in [
            ("*", "\\2a"),
            (")(uid=*", "\\29\\28uid=\\2a"),
            ("a\\b", "a\\5cb"),
            ("a\0b", "a\\00b"),
            ("x)(|(objectClass=*", "x\\29\\28|\\28objectClass=\\2a"),
        ] {
            let filter = d.filter_for(name);
            assert_eq!(
                filter,
                format!("(&(objectClass=posixAccount)(uid={escaped}))"),
                "{name:?}"
            );
            // Still one valid filter: the name could not close or add any.
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
        }
    }

    #[test]
    fn recipients_are_checked_by_their_gateway() {
        let d = raw(&format!(
            "{BASE}[directory.attributes]\ntelegram = \"pamGatewayTelegram\"\nsms = \"mobile\"\n"
        ))
        .unwrap()
        .unwrap();
        let entry = |attrs: &[(&str, &[&str])]| Entry {
            dn: "uid=alice,dc=x".into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        };
        let r = recipients_of(
            &d,
            &entry(&[
                ("pamgatewaytelegram", &["123456977"]),
                ("mobile", &["+4915100000002", "+4915100000003"]),
            ]),
        )
        .unwrap();
        assert_eq!(r[&GatewayKind::Telegram], "123456977");
        assert_eq!(r[&GatewayKind::Sms], "+4915100000002");
        assert!(
            recipients_of(&d, &entry(&[("cn", &["x"])]))
                .unwrap()
                .is_empty()
        );
        let err = recipients_of(&d, &entry(&[("mobile", &["call me"])])).unwrap_err();
        assert!(matches!(err, DirectoryError::BadAnswer(_)), "{err}");
    }

    #[test]
    fn the_cache_is_kept_refreshed_and_aged() {
        let store = MemoryStateStore::default();
        let mut r = BTreeMap::new();
        r.insert(GatewayKind::Telegram, "123456977".to_string());
        assert_eq!(cached(&store, "alice", 1000, 600).unwrap(), Cached::Nothing);
        remember(&store, "alice", 1000, 600, &r).unwrap();
        assert_eq!(
            cached(&store, "alice", 1600, 600).unwrap(),
            Cached::Fresh {
                recipients: r.clone(),
                age: 600
            }
        );
        assert_eq!(
            cached(&store, "alice", 1601, 600).unwrap(),
            Cached::Stale { age: Some(601) }
        );
        // A clock set back: not used.
        assert_eq!(
            cached(&store, "alice", 999, 600).unwrap(),
            Cached::Stale { age: None }
        );
        // Unchanged and young: not rewritten; older than half: rewritten.
        remember(&store, "alice", 1200, 600, &r).unwrap();
        assert_eq!(store.get("alice").unwrap().directory.unwrap().seen, 1000);
        remember(&store, "alice", 1300, 600, &r).unwrap();
        assert_eq!(store.get("alice").unwrap().directory.unwrap().seen, 1300);
        // Changed: rewritten at once.
        r.insert(GatewayKind::Sms, "+4915100000002".to_string());
        remember(&store, "alice", 1301, 600, &r).unwrap();
        let c = store.get("alice").unwrap().directory.unwrap();
        assert_eq!((c.seen, c.recipients.len()), (1301, 2));
        // The file format keeps it.
        let text = store.get("alice").unwrap().to_text();
        assert_eq!(
            UserState::parse(&text).unwrap(),
            store.get("alice").unwrap()
        );
        // The directory no longer has any: forgotten.
        remember(&store, "alice", 1302, 600, &BTreeMap::new()).unwrap();
        assert_eq!(store.get("alice").unwrap().directory, None);
        assert_eq!(cached(&store, "alice", 1302, 600).unwrap(), Cached::Nothing);
    }
}
