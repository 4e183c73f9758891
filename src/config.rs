//! `gateway.toml`: typed, validated, every top-level default in one place;
//! each gateway's section is read by the gateway's file.
//!
//! Unknown keys are errors (a typo such as `failmod = "secure"` must not
//! silently fall back to a default), and every error names file, line, key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::approve::{ApproveConfig, RawApprove};
use crate::directory::{DirectoryConfig, RawDirectory};
use crate::gateway::spec::section_as;
use crate::gateway::{GatewayKind, GatewaySection};
use crate::limits::{Limits, RawLimits};
use crate::policy::AccessPolicy;
use crate::remember::{RawRemember, Remember};
use crate::section::{SectionError, check_range};
use crate::state::DEFAULT_STATE_DIR;
use crate::toml_errors::{
    ParseError, TomlItem, find_key_line, find_section_line, parse_entries, toml_enum, toml_struct,
};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/pam_gateway/gateway.toml";
pub const DEFAULT_USERS_FILE: &str = "/etc/pam_gateway/users.toml";

pub const DEFAULT_TEMPLATE: &str = "{code} is your login code for {user}@{host} \
({service} from {rhost}). It expires in {minutes} min.\n\
If this was not you, do not share it: someone knows your password. \
Change it and tell your admin.";

/// Placeholders a message template may use.
pub const PLACEHOLDERS: &[&str] = &["code", "user", "host", "service", "rhost", "minutes"];

/// What to do with a user who has no entry in the users file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unenrolled {
    /// Prompt anyway, send nothing, fail: enrolment status does not leak.
    #[default]
    Deny,
    /// PAM_IGNORE: the rest of the stack decides.
    Ignore,
}

/// What to do when no gateway could deliver the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Deny with PAM_AUTHINFO_UNAVAIL.
    #[default]
    Secure,
    /// PAM_IGNORE (never PAM_SUCCESS): the rest of the stack decides.
    Safe,
}

toml_struct! {
    /// The top-level keys besides the gateways' sections, which each gateway
    /// reads itself ([`crate::gateway::GatewaySpec::read_section`]).
    #[derive(Debug, Default)]
    struct RawConfig {
        users_file: Option<String>,
        gateways: Option<Vec<String>>,
        state_dir: Option<String>,
        limits: Option<RawLimits>,
        code: Option<RawCode>,
        policy: Option<RawPolicy>,
        message: Option<RawMessage>,
        remember: Option<RawRemember>,
        alert: Option<RawAlert>,
        directory: Option<RawDirectory>,
        approve: Option<RawApprove>,
    }
}

/// [`RawConfig`]'s keys listed before and after the gateways' sections in
/// serde's "expected one of ..." (the order they have always had).
const KEYS_BEFORE_GATEWAYS: &[&str] = &["users_file", "gateways", "state_dir", "limits"];
const KEYS_AFTER_GATEWAYS: &[&str] = &[
    "code",
    "policy",
    "message",
    "remember",
    "alert",
    "directory",
    "approve",
];

/// Every top-level key of `gateway.toml`, as serde's messages list them.
fn top_level_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let gateways = GatewayKind::ALL.iter().map(|k| k.id());
        KEYS_BEFORE_GATEWAYS
            .iter()
            .copied()
            .chain(gateways)
            .chain(KEYS_AFTER_GATEWAYS.iter().copied())
            .collect()
    })
}

toml_struct! {
    #[derive(Debug, Default)]
    struct RawCode {
        digits: Option<u32>,
        ttl: Option<u64>,
        attempts: Option<u32>,
    }
}

toml_struct! {
    #[derive(Debug, Default)]
    struct RawPolicy {
        unenrolled: Option<Unenrolled>,
        failmode: Option<FailMode>,
        exempt_networks: Option<Vec<String>>,
        require_groups: Option<Vec<String>>,
        exempt_groups: Option<Vec<String>>,
    }
}

toml_struct! {
    #[derive(Debug, Default)]
    struct RawMessage {
        template: Option<String>,
    }
}

toml_enum!(Unenrolled { "deny" => Deny, "ignore" => Ignore });
toml_enum!(FailMode { "secure" => Secure, "safe" => Safe });
toml_enum!(AlertTo { "user" => User, "admins" => Admins, "both" => Both });

/// Who gets a login alert (`[alert] to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlertTo {
    /// The user, over their own gateways.
    #[default]
    User,
    /// The Telegram chats in `admin_chats`.
    Admins,
    /// Both.
    Both,
}

toml_struct! {
    #[derive(Debug, Default)]
    struct RawAlert {
        enabled: Option<bool>,
        to: Option<AlertTo>,
        admin_chats: Option<Vec<i64>>,
        services: Option<Vec<String>>,
        per_hour: Option<u32>,
    }
}

/// Most `admin_chats`.
pub const MAX_ADMIN_CHATS: usize = 10;

/// `[alert]`: one message per login through `session optional
/// pam_gateway.so` (src/alert.rs). Off when the section is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// On by default once the section is there; `enabled = false` keeps
    /// the settings and sends nothing.
    pub enabled: bool,
    pub to: AlertTo,
    /// Telegram chat ids of the admins (groups have negative ids).
    pub admin_chats: Vec<i64>,
    /// The PAM services whose sessions are reported.
    pub services: Vec<String>,
    /// Alerts per user per hour; more are logged, not sent.
    pub per_hour: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            enabled: false,
            to: AlertTo::User,
            admin_chats: Vec::new(),
            services: vec!["sshd".to_string()],
            per_hour: 10,
        }
    }
}

impl AlertConfig {
    /// Whether a session through `service` is reported.
    pub fn applies_to(&self, service: &str) -> bool {
        self.enabled && self.services.iter().any(|s| s == service)
    }
    pub fn to_user(&self) -> bool {
        matches!(self.to, AlertTo::User | AlertTo::Both)
    }
    pub fn to_admins(&self) -> bool {
        matches!(self.to, AlertTo::Admins | AlertTo::Both)
    }

    fn from_raw(
        raw: Option<RawAlert>,
        has_telegram: bool,
        e: SectionError,
    ) -> Result<AlertConfig, ParseError> {
        let d = AlertConfig::default();
        let Some(raw) = raw else {
            return Ok(d);
        };
        let to = raw.to.unwrap_or(d.to);
        let admin_chats = raw.admin_chats.unwrap_or_default();
        if admin_chats.len() > MAX_ADMIN_CHATS {
            return Err(e(
                "admin_chats",
                format!(
                    "{} chats, more than the {MAX_ADMIN_CHATS} allowed",
                    admin_chats.len()
                ),
            ));
        }
        if admin_chats.contains(&0) {
            return Err(e("admin_chats", "0 is not a Telegram chat id".to_string()));
        }
        let alert = AlertConfig {
            enabled: raw.enabled.unwrap_or(true),
            to,
            services: match raw.services {
                None => d.services,
                Some(list) => {
                    crate::remember::check_services(&list).map_err(|m| e("services", m))?
                }
            },
            // The times are kept in the state file (64 KiB at most).
            per_hour: check_range(raw.per_hour.unwrap_or(d.per_hour), 1, 100, &|m| {
                e("per_hour", m)
            })?,
            admin_chats,
        };
        if alert.to_admins() && alert.admin_chats.is_empty() {
            return Err(e(
                "admin_chats",
                "is empty, but `to` sends alerts to the admins: list their Telegram chat ids"
                    .to_string(),
            ));
        }
        if !alert.admin_chats.is_empty() && !has_telegram {
            return Err(e(
                "admin_chats",
                "needs a [telegram] section: admin alerts go through its bot".to_string(),
            ));
        }
        Ok(alert)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeConfig {
    pub digits: u32,
    pub ttl: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (for messages).
    pub path: PathBuf,
    pub users_file: PathBuf,
    /// The order in which a user's gateways are tried: exactly the
    /// configured sections.
    pub gateways: Vec<GatewayKind>,
    /// The gateways' sections ([`Config::section`], [`Config::gateway_section`]).
    sections: BTreeMap<GatewayKind, Arc<dyn GatewaySection>>,
    pub code: CodeConfig,
    pub unenrolled: Unenrolled,
    pub failmode: FailMode,
    pub template: String,
    /// Per-user mutable state (limits, TOTP replay guard, backup codes).
    pub state_dir: PathBuf,
    /// `[limits]`: codes per window, lockout after wrong answers.
    pub limits: Limits,
    /// `[policy]` coverage: exempt networks and groups.
    pub access: AccessPolicy,
    /// Keys the decoy recipient shown to users without an entry.
    pub decoy_key: DecoyKey,
    /// `[remember]`: verified sources that skip the code for a while.
    pub remember: Remember,
    /// `[alert]`: a message per login from the session hook.
    pub alert: AlertConfig,
    /// `[directory]`: recipients from LDAP for users without an entry in
    /// the users file; `None` when the section is absent.
    pub directory: Option<DirectoryConfig>,
    /// `[approve]`: approval in the chat through `pam-gatewayd`.
    pub approve: ApproveConfig,
}

/// SHA-256 of the config file's text. The file is root-only and holds the
/// gateways' secrets, so the key is unknown to anyone who could compare a
/// decoy with its inputs. Debug is redacted.
///
/// Hashed the first time it is asked for ([`DecoyKey::get`]): only a user
/// without an entry needs it, and the first SHA-256 in a process runs
/// `sha2`'s CPU feature detection, whose `cpuid` instructions each cost a
/// virtual machine an exit to its hypervisor (BENCHMARKS.md, session 9). The
/// text waits in memory that is zeroed when the config is dropped.
#[derive(Clone)]
pub struct DecoyKey {
    text: zeroize::Zeroizing<String>,
    key: std::sync::OnceLock<[u8; 32]>,
}

impl DecoyKey {
    /// The key of a config whose file holds `text`.
    pub fn new(text: &str) -> DecoyKey {
        DecoyKey {
            text: zeroize::Zeroizing::new(text.to_string()),
            key: std::sync::OnceLock::new(),
        }
    }

    /// The key, hashed now if it was not before.
    pub fn get(&self) -> &[u8; 32] {
        self.key.get_or_init(|| {
            use sha2::Digest;
            sha2::Sha256::digest(self.text.as_bytes()).into()
        })
    }
}

impl PartialEq for DecoyKey {
    fn eq(&self, other: &DecoyKey) -> bool {
        *self.text == *other.text
    }
}

impl Eq for DecoyKey {}

impl fmt::Debug for DecoyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecoyKey([redacted])")
    }
}

/// Checks a message template: known placeholders only, `{code}` present.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut has_code = false;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err("has a `{` without a closing `}`".to_string());
        };
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        has_code |= name == "code";
        rest = &after[end + 1..];
    }
    if !has_code {
        return Err("must contain {code}".to_string());
    }
    if template.len() > 2048 {
        return Err("longer than 2048 bytes".to_string());
    }
    Ok(())
}

/// Checks the `gateways` order against the configured sections: known
/// names, no repeats, each with its section, every section listed.
fn gateway_order(
    listed: Option<&[String]>,
    configured: &[GatewayKind],
) -> Result<Vec<GatewayKind>, String> {
    let Some(listed) = listed else {
        return Ok(GatewayKind::ALL
            .into_iter()
            .filter(|k| configured.contains(k))
            .collect());
    };
    let mut order = Vec::new();
    for name in listed {
        let kind = GatewayKind::from_id(name).ok_or_else(|| {
            format!(
                "unknown gateway {name:?}; known: {}",
                GatewayKind::ALL.map(GatewayKind::id).join(", ")
            )
        })?;
        if order.contains(&kind) {
            return Err(format!("names {name:?} twice"));
        }
        if !configured.contains(&kind) {
            return Err(format!(
                "names {name:?} but there is no [{name}] section: add one or drop it from the list"
            ));
        }
        order.push(kind);
    }
    if let Some(missing) = configured.iter().find(|k| !order.contains(k)) {
        let name = missing.id();
        return Err(format!(
            "does not name {name:?} although [{name}] is configured: add it where it should be \
             tried, or remove the section"
        ));
    }
    Ok(order)
}

impl Config {
    /// Parses and validates the text of a config file found at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ParseError> {
        // Serde's pass over the file, key by key in its order: the first
        // key with a wrong type, an unknown key or a gateway section
        // without a required key is the error, as if one struct had been
        // deserialized. The values are checked after it, below.
        let mut common = Vec::new();
        let mut sections = BTreeMap::new();
        for entry in parse_entries(path, text)? {
            let failure = match GatewayKind::from_id(entry.key()) {
                Some(kind) => match kind.spec().read_section(entry.value) {
                    Ok(check) => {
                        sections.insert(kind, check);
                        None
                    }
                    Err(e) => Some(e),
                },
                None if KEYS_BEFORE_GATEWAYS.contains(&entry.key())
                    || KEYS_AFTER_GATEWAYS.contains(&entry.key()) =>
                {
                    common.push(entry);
                    None
                }
                None => Some(entry.unknown(top_level_keys())),
            };
            if let Some(e) = failure {
                // A key before this one may be wrong already.
                RawConfig::read(TomlItem::table(path, text, common))?;
                return Err(e);
            }
        }
        let raw = RawConfig::read(TomlItem::table(path, text, common))?;
        let err_at = |section: &str, key: &str, message: String| ParseError {
            file: path.to_path_buf(),
            // A missing key has no line of its own: point at its section.
            line: find_key_line(text, section, key).or_else(|| find_section_line(text, section)),
            key: Some(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            }),
            message,
        };

        let users_file = PathBuf::from(raw.users_file.as_deref().unwrap_or(DEFAULT_USERS_FILE));
        if !users_file.is_absolute() {
            return Err(err_at(
                "",
                "users_file",
                "must be an absolute path".to_string(),
            ));
        }

        // Each section's values, in the order of the gateways' list.
        let mut configured = BTreeMap::new();
        for (kind, check) in sections {
            let section = check(&|k, m| err_at(kind.id(), k, m))?;
            configured.insert(kind, section);
        }
        let gateways = gateway_order(
            raw.gateways.as_deref(),
            &configured.keys().copied().collect::<Vec<_>>(),
        )
        .map_err(|m| err_at("", "gateways", m))?;

        let code = raw.code.unwrap_or_default();
        let e = |k: &str, m: String| err_at("code", k, m);
        let digits = check_range(code.digits.unwrap_or(6), 6, 10, &|m| e("digits", m))?;
        let ttl = check_range(code.ttl.unwrap_or(300), 30, 3600, &|m| e("ttl", m))?;
        let attempts = check_range(code.attempts.unwrap_or(3), 1, 10, &|m| e("attempts", m))?;

        let state_dir = PathBuf::from(raw.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(err_at(
                "",
                "state_dir",
                "must be an absolute path".to_string(),
            ));
        }
        let limits = Limits::from_raw(raw.limits, &|k, m| err_at("limits", k, m))?;

        let policy = raw.policy.unwrap_or_default();
        let access = AccessPolicy::from_lists(
            policy.exempt_networks.as_deref(),
            policy.require_groups.as_deref(),
            policy.exempt_groups.as_deref(),
            &|k, m| err_at("policy", k, m),
        )?;
        let template = raw
            .message
            .and_then(|m| m.template)
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
        check_template(&template).map_err(|m| err_at("message", "template", m))?;
        let remember = Remember::from_raw(raw.remember, &|k, m| err_at("remember", k, m))?;
        let alert = AlertConfig::from_raw(
            raw.alert,
            configured.contains_key(&GatewayKind::Telegram),
            &|k, m| err_at("alert", k, m),
        )?;
        let directory = DirectoryConfig::from_raw(
            raw.directory,
            &configured.keys().copied().collect::<Vec<_>>(),
            &|k, m| match k.split_once('.') {
                // A key of [directory.attributes].
                Some((table, key)) => err_at(&format!("directory.{table}"), key, m),
                None => err_at("directory", k, m),
            },
        )?;
        let approve = ApproveConfig::from_raw(
            raw.approve,
            configured.contains_key(&GatewayKind::Telegram),
            &|k, m| err_at("approve", k, m),
        )?;

        Ok(Config {
            path: path.to_path_buf(),
            users_file,
            gateways,
            sections: configured,
            code: CodeConfig {
                digits,
                ttl: Duration::from_secs(ttl),
                attempts,
            },
            unenrolled: policy.unenrolled.unwrap_or_default(),
            failmode: policy.failmode.unwrap_or_default(),
            template,
            state_dir,
            limits,
            access,
            decoy_key: DecoyKey::new(text),
            remember,
            alert,
            directory,
            approve,
        })
    }

    /// The gateway name a prompt shows for `kind` ("Telegram", or the
    /// `name` of a `[webhook]` or `[command]` section).
    pub fn display_name(&self, kind: GatewayKind) -> &str {
        self.gateway_section(kind)
            .and_then(|s| s.name())
            .unwrap_or(kind.spec().display_name())
    }

    /// Whether `gateway.toml` has a section for `kind`.
    pub fn has(&self, kind: GatewayKind) -> bool {
        self.sections.contains_key(&kind)
    }

    /// The section for `kind`, if `gateway.toml` has one.
    pub fn gateway_section(&self, kind: GatewayKind) -> Option<&dyn GatewaySection> {
        self.sections.get(&kind).map(|s| s.as_ref())
    }

    /// A gateway's section as its own type (`config.section::<TelegramConfig>()`).
    pub fn section<T: GatewaySection>(&self) -> Option<&T> {
        self.sections
            .values()
            .find_map(|s| section_as::<T>(s.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::telegram::{DEFAULT_TELEGRAM_API, TelegramConfig};

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

    fn parse(text: &str) -> Result<Config, ParseError> {
        Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), text)
    }

    /// The decoy key is the SHA-256 of the file's text, hashed only when
    /// first asked for (parsing runs no SHA-256, and so no CPU feature
    /// detection); equal configs have equal keys, and Debug shows neither
    /// key nor text.
    #[test]
    fn the_decoy_key_is_hashed_when_first_asked_for() {
        use sha2::Digest;
        let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n");
        let c = parse(&text).expect("parse");
        assert!(c.decoy_key.key.get().is_none(), "hashed while parsing");
        let want: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        assert_eq!(c.decoy_key.get(), &want);
        assert_eq!(c.decoy_key.key.get(), Some(&want));
        assert_eq!(c.decoy_key, parse(&text).expect("parse").decoy_key);
        let other = parse(&format!("{text}# another file\n")).expect("parse");
        assert_ne!(c.decoy_key, other.decoy_key);
        assert_ne!(c.decoy_key.get(), other.decoy_key.get());
        let shown = format!("{:?}", c.decoy_key);
        assert!(
            !shown.contains(TOKEN) && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn defaults() {
        let c = parse(&format!("[telegram]\nbot_token = \"{TOKEN}\"\n")).expect("parse");
        assert_eq!(c.users_file, PathBuf::from(DEFAULT_USERS_FILE));
        let t = c.section::<TelegramConfig>().expect("telegram");
        assert_eq!(t.api_url, DEFAULT_TELEGRAM_API);
        assert_eq!(t.http.timeout, Duration::from_secs(10));
        assert_eq!(t.http.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.code.digits, 6);
        assert_eq!(c.code.ttl, Duration::from_secs(300));
        assert_eq!(c.code.attempts, 3);
        assert_eq!(c.unenrolled, Unenrolled::Deny);
        assert_eq!(c.failmode, FailMode::Secure);
        assert_eq!(c.template, DEFAULT_TEMPLATE);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/pam_gateway"));
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.access, AccessPolicy::default());
    }

    #[test]
    fn state_limits_and_policy_keys() {
        let text = "state_dir = \"/srv/state\"\n[limits]\ncodes_per_window = 3\nwindow = 600\n\
                    failures_before_lockout = 4\nlockout = 60\nmax_lockout = 3600\n\
                    [policy]\nexempt_networks = [\"10.0.0.0/8\", \"::1\"]\n\
                    require_groups = [\"staff\"]\nexempt_groups = [\"robots\"]\n";
        let c = parse(text).expect("parse");
        assert_eq!(c.state_dir, PathBuf::from("/srv/state"));
        assert_eq!(
            c.limits,
            Limits {
                codes_per_window: 3,
                window: 600,
                failures_before_lockout: 4,
                lockout: 60,
                max_lockout: 3600
            }
        );
        assert_eq!(c.access.exempt_networks.len(), 2);
        assert_eq!(c.access.require_groups, ["staff"]);
        assert_eq!(c.access.exempt_groups, ["robots"]);
        for (bad, line, key) in [
            ("state_dir = \"state\"\n", 1, "state_dir"),
            (
                "[limits]\n\ncodes_per_window = 0\n",
                3,
                "limits.codes_per_window",
            ),
            ("[limits]\nlockouts = 5\n", 2, "limits.lockouts"),
            (
                "[policy]\nexempt_networks = [\"10.0.0.1/8\"]\n",
                2,
                "policy.exempt_networks",
            ),
            (
                "[policy]\nrequire_groups = [\"\"]\n",
                2,
                "policy.require_groups",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.line, Some(line), "{bad}: {err}");
            assert_eq!(err.key.as_deref(), Some(key), "{bad}: {err}");
        }
    }

    #[test]
    fn remember_and_alert_sections() {
        let c = parse("").expect("empty");
        assert_eq!(c.remember, Remember::default());
        assert!(!c.remember.applies_to("sshd"), "remember is off by default");
        assert_eq!(c.alert, AlertConfig::default());
        assert!(!c.alert.applies_to("sshd"), "alerts are off by default");

        let text = format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\n[remember]\nduration = 36000\n\
             services = [\"sshd\", \"login\"]\n[alert]\nto = \"both\"\n\
             admin_chats = [123456789, -1001234567890]\nservices = [\"sshd\"]\nper_hour = 5\n"
        );
        let c = parse(&text).expect("parse");
        assert_eq!(c.remember.duration, 36_000);
        assert!(c.remember.applies_to("login") && !c.remember.applies_to("sudo"));
        assert!(
            c.alert.enabled,
            "a present [alert] is on unless enabled = false"
        );
        assert!(c.alert.to_user() && c.alert.to_admins());
        assert_eq!(c.alert.admin_chats, [123_456_789, -1_001_234_567_890]);
        assert_eq!(c.alert.per_hour, 5);
        let c = parse("[alert]\nenabled = false\n").expect("parse");
        assert!(!c.alert.applies_to("sshd"));

        for (bad, line, key) in [
            ("[remember]\nduration = 9999999\n", 2, "remember.duration"),
            ("[remember]\nduration = -1\n", 2, "remember.duration"),
            (
                "[remember]\n\nservices = [\"ss hd\"]\n",
                3,
                "remember.services",
            ),
            ("[remember]\ndurations = 5\n", 2, "remember.durations"),
            ("[alert]\nto = \"admins\"\n", 1, "alert.admin_chats"),
            ("[alert]\nadmin_chats = [1]\n", 2, "alert.admin_chats"),
            ("[alert]\nto = \"everyone\"\n", 2, "alert.to"),
            ("[alert]\nper_hour = 0\n", 2, "alert.per_hour"),
            ("[alert]\nservices = [\"\"]\n", 2, "alert.services"),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.line, Some(line), "{bad}: {err}");
            assert_eq!(err.key.as_deref(), Some(key), "{bad}: {err}");
        }
    }

    #[test]
    fn every_key() {
        let text = format!(
            "users_file = \"/srv/u.toml\"\n[telegram]\nbot_token = \"{TOKEN}\"\n\
             api_url = \"http://127.0.0.1:8081/\"\ntimeout = 3\nconnect_timeout = 2\n\
             proxy = \"http://127.0.0.1:3128\"\n[code]\ndigits = 8\nttl = 60\nattempts = 1\n\
             [policy]\nunenrolled = \"ignore\"\nfailmode = \"safe\"\n\
             [message]\ntemplate = \"code {{code}} for {{user}}\"\n"
        );
        let c = parse(&text).expect("parse");
        assert_eq!(c.users_file, PathBuf::from("/srv/u.toml"));
        let t = c.section::<TelegramConfig>().expect("telegram");
        assert_eq!(t.api_url, "http://127.0.0.1:8081");
        assert_eq!(t.http.proxy.as_deref(), Some("http://127.0.0.1:3128"));
        assert_eq!(c.code.digits, 8);
        assert_eq!(c.unenrolled, Unenrolled::Ignore);
        assert_eq!(c.failmode, FailMode::Safe);
        assert_eq!(c.template, "code {code} for {user}");
    }

    const SIGNAL: &str =
        "[signal]\nurl = \"https://signal.example.org\"\nnumber = \"+4915100000001\"\n";
    const COMMAND: &str = "[command]\npath = \"/usr/bin/gammu\"\n";

    #[test]
    fn gateway_order_defaults_to_the_fixed_order_of_configured_sections() {
        let text = format!("{COMMAND}{SIGNAL}[telegram]\nbot_token = \"{TOKEN}\"\n");
        let c = parse(&text).expect("parse");
        assert_eq!(
            c.gateways,
            [
                GatewayKind::Telegram,
                GatewayKind::Signal,
                GatewayKind::Command
            ]
        );
        assert!(c.has(GatewayKind::Signal) && !c.has(GatewayKind::Sms));
        assert!(parse("").expect("empty").gateways.is_empty());
    }

    #[test]
    fn gateway_order_as_listed() {
        let text = format!(
            "gateways = [\"command\", \"telegram\", \"signal\"]\n{SIGNAL}{COMMAND}\
             [telegram]\nbot_token = \"{TOKEN}\"\n"
        );
        let c = parse(&text).expect("parse");
        assert_eq!(
            c.gateways,
            [
                GatewayKind::Command,
                GatewayKind::Telegram,
                GatewayKind::Signal
            ]
        );
    }

    #[test]
    fn gateway_order_errors() {
        for (list, hint) in [
            ("[\"signal\", \"whatsapp\"]", "unknown gateway \"whatsapp\""),
            ("[\"signal\", \"signal\"]", "twice"),
            ("[\"signal\", \"sms\"]", "no [sms] section"),
            ("[]", "does not name \"signal\""),
            ("\"signal\"", "invalid type"),
        ] {
            let err = parse(&format!("# order\ngateways = {list}\n{SIGNAL}")).unwrap_err();
            assert_eq!(err.line, Some(2), "{list}: {err}");
            assert_eq!(err.key.as_deref(), Some("gateways"), "{list}: {err}");
            assert!(err.message.contains(hint), "{list}: {err}");
        }
    }

    #[test]
    fn missing_required_key_points_at_its_section() {
        let err = parse("[code]\ndigits = 6\n\n[signal]\nmode = \"jsonrpc\"\n").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("missing field `url`"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let err = parse("[policy]\nfailmod = \"safe\"\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("unknown field `failmod`"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let err = parse("[telegramm]\nbot_token = \"x\"\n").unwrap_err();
        assert!(err.message.contains("telegramm"), "{err}");
    }

    #[test]
    fn unknown_top_level_key_lists_every_key_as_serde_did() {
        let err = parse("# x\nzz = 1\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some("zz"));
        assert_eq!(
            err.message,
            "unknown field `zz`, expected one of `users_file`, `gateways`, `state_dir`, \
             `limits`, `telegram`, `signal`, `sms`, `webhook`, `command`, `code`, `policy`, \
             `message`, `remember`, `alert`, `directory`, `approve`"
        );
    }

    #[test]
    fn serde_errors_come_in_key_order_before_any_value_check() {
        // Keys are visited in order (code < signal < telegram < zz): the
        // first wrong one is reported, a gateway's or not.
        for (text, key) in [
            (
                "[telegram]\nbot_tken = 1\n[code]\ndigits = \"x\"\n",
                "code.digits",
            ),
            (
                "[code]\ndigits = 6\n[telegram]\nbot_tken = 1\nzz = 1\n",
                "telegram.bot_tken",
            ),
            ("zz = 1\n[telegram]\nbot_tken = 1\n", "telegram.bot_tken"),
            (
                "[signal]\nmode = \"rest\"\n[telegram]\nbot_tken = 1\n",
                "signal",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
        }
        // A value check comes after every key's type was read.
        let err = parse(&format!(
            "[code]\ndigits = 99\n[telegram]\nbot_token = \"{TOKEN}\"\ntimeout = \"x\"\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("telegram.timeout"), "{err}");
    }

    #[test]
    fn bad_token_is_named_but_not_shown() {
        let err = parse("[telegram]\nbot_token = \"123:short-secret-value\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("telegram.bot_token"));
        assert_eq!(err.line, Some(2));
        assert!(!err.to_string().contains("short-secret-value"), "{err}");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for (url, ok) in [
            ("http://127.0.0.1:9", true),
            ("http://[::1]:9", true),
            ("http://localhost", true),
            ("https://api.example.org", true),
            ("http://api.telegram.org", false),
            ("http://10.0.0.1", false),
            ("ftp://127.0.0.1", false),
            ("https://user:pw@example.org", false),
            ("not a url", false),
            // Internationalised host names only in their ASCII (xn--) form.
            ("https://xn--bcher-kva.example", true),
            ("https://b\u{fc}cher.example", false),
        ] {
            let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{url}\"\n");
            assert_eq!(parse(&text).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn ranges_and_enums() {
        for bad in [
            "[code]\ndigits = 5\n",
            "[code]\ndigits = 11\n",
            "[code]\nattempts = 0\n",
            "[code]\nttl = 5\n",
            "[code]\ndigits = -1\n",
            "[policy]\nfailmode = \"open\"\n",
            "[policy]\nunenrolled = \"allow\"\n",
            "users_file = \"relative.toml\"\n",
            "[message]\ntemplate = \"no code here\"\n",
            "[message]\ntemplate = \"{code} {nope}\"\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.line.is_some(), "{bad}: {err}");
        }
    }

    #[test]
    fn enums_read_as_serde_reads_them() {
        use crate::gateway::signal::SignalMode;
        use crate::toml_errors::tests::{VALUES, reads_as_serde};
        let names = [
            "\"deny\"",
            "\"ignore\"",
            "\"secure\"",
            "\"safe\"",
            "\"user\"",
            "\"admins\"",
            "\"both\"",
            "\"rest\"",
            "\"jsonrpc\"",
            "{ safe = {} }",
        ];
        for values in [VALUES, &names] {
            reads_as_serde::<Unenrolled>(values);
            reads_as_serde::<FailMode>(values);
            reads_as_serde::<AlertTo>(values);
            reads_as_serde::<SignalMode>(values);
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let c = parse(&format!("[telegram]\nbot_token = \"{TOKEN}\"\n")).expect("parse");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AAEhBP0av28"), "{dbg}");
    }
}
