//! `gateway.toml`: typed, validated, every default in one place.
//!
//! Unknown keys are errors (a typo such as `failmod = "secure"` must not
//! silently fall back to a default), and every error names file, line, key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::GatewayKind;
use crate::gateway::command::{CommandConfig, RawCommand};
use crate::gateway::signal::{RawSignal, SignalConfig};
use crate::gateway::sms::{RawSms, SmsConfig};
use crate::gateway::telegram::{RawTelegram, TelegramConfig};
use crate::gateway::webhook::{RawWebhook, WebhookConfig};
use crate::limits::{Limits, RawLimits};
use crate::policy::AccessPolicy;
use crate::section::check_range;
use crate::state::DEFAULT_STATE_DIR;
use crate::toml_errors::{self, ParseError, find_key_line, find_section_line};

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    users_file: Option<String>,
    gateways: Option<Vec<String>>,
    state_dir: Option<String>,
    limits: Option<RawLimits>,
    telegram: Option<RawTelegram>,
    signal: Option<RawSignal>,
    sms: Option<RawSms>,
    webhook: Option<RawWebhook>,
    command: Option<RawCommand>,
    code: Option<RawCode>,
    policy: Option<RawPolicy>,
    message: Option<RawMessage>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCode {
    digits: Option<u32>,
    ttl: Option<u64>,
    attempts: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    unenrolled: Option<Unenrolled>,
    failmode: Option<FailMode>,
    exempt_networks: Option<Vec<String>>,
    require_groups: Option<Vec<String>>,
    exempt_groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeConfig {
    pub digits: u32,
    pub ttl: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was read from (for messages).
    pub path: PathBuf,
    pub users_file: PathBuf,
    /// The order in which a user's gateways are tried: exactly the
    /// configured sections.
    pub gateways: Vec<GatewayKind>,
    pub telegram: Option<TelegramConfig>,
    pub signal: Option<SignalConfig>,
    pub sms: Option<SmsConfig>,
    pub webhook: Option<WebhookConfig>,
    pub command: Option<CommandConfig>,
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
}

/// SHA-256 of the config file's text. The file is root-only and holds the
/// gateways' secrets, so the key is unknown to anyone who could compare a
/// decoy with its inputs. Debug is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DecoyKey(pub [u8; 32]);

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
        let raw: RawConfig = toml_errors::parse(path, text)?;
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

        let telegram = match raw.telegram {
            None => None,
            Some(r) => Some(crate::gateway::telegram::parse_section(r, &|k, m| {
                err_at("telegram", k, m)
            })?),
        };
        let signal = match raw.signal {
            None => None,
            Some(r) => Some(crate::gateway::signal::parse_section(r, &|k, m| {
                err_at("signal", k, m)
            })?),
        };
        let sms = match raw.sms {
            None => None,
            Some(r) => Some(crate::gateway::sms::parse_section(r, &|k, m| {
                err_at("sms", k, m)
            })?),
        };
        let webhook = match raw.webhook {
            None => None,
            Some(r) => Some(crate::gateway::webhook::parse_section(r, &|k, m| {
                err_at("webhook", k, m)
            })?),
        };
        let command = match raw.command {
            None => None,
            Some(r) => Some(crate::gateway::command::parse_section(r, &|k, m| {
                err_at("command", k, m)
            })?),
        };
        let configured: Vec<GatewayKind> = [
            (GatewayKind::Telegram, telegram.is_some()),
            (GatewayKind::Signal, signal.is_some()),
            (GatewayKind::Sms, sms.is_some()),
            (GatewayKind::Webhook, webhook.is_some()),
            (GatewayKind::Command, command.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        let gateways = gateway_order(raw.gateways.as_deref(), &configured)
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

        Ok(Config {
            path: path.to_path_buf(),
            users_file,
            gateways,
            telegram,
            signal,
            sms,
            webhook,
            command,
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
            decoy_key: {
                use sha2::Digest;
                DecoyKey(sha2::Sha256::digest(text.as_bytes()).into())
            },
        })
    }

    /// The gateway name a prompt shows for `kind` ("Telegram", or the
    /// `name` of a [webhook] or [command] section).
    pub fn display_name(&self, kind: GatewayKind) -> &str {
        match kind {
            GatewayKind::Telegram => "Telegram",
            GatewayKind::Signal => "Signal",
            GatewayKind::Sms => "SMS",
            GatewayKind::Webhook => self.webhook.as_ref().map_or("webhook", |w| w.name.as_str()),
            GatewayKind::Command => self.command.as_ref().map_or("command", |c| c.name.as_str()),
        }
    }

    /// Whether `gateway.toml` has a section for `kind`.
    pub fn has(&self, kind: GatewayKind) -> bool {
        match kind {
            GatewayKind::Telegram => self.telegram.is_some(),
            GatewayKind::Signal => self.signal.is_some(),
            GatewayKind::Sms => self.sms.is_some(),
            GatewayKind::Webhook => self.webhook.is_some(),
            GatewayKind::Command => self.command.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::telegram::DEFAULT_TELEGRAM_API;

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

    fn parse(text: &str) -> Result<Config, ParseError> {
        Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), text)
    }

    #[test]
    fn defaults() {
        let c = parse(&format!("[telegram]\nbot_token = \"{TOKEN}\"\n")).expect("parse");
        assert_eq!(c.users_file, PathBuf::from(DEFAULT_USERS_FILE));
        let t = c.telegram.expect("telegram");
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
        let t = c.telegram.expect("telegram");
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
    fn secret_debug_is_redacted() {
        let c = parse(&format!("[telegram]\nbot_token = \"{TOKEN}\"\n")).expect("parse");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("AAEhBP0av28"), "{dbg}");
    }
}
