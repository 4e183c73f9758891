//! `users.toml`: who is enrolled and where their codes go.
//!
//! ```toml
//! [users.alice]
//! telegram = "123456977"
//! ```
//!
//! Only recipients live here; mutable state (rate limits, used codes) is kept
//! elsewhere so this root-owned file is never written at login time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::gateway::GatewayKind;
use crate::recipient::{PhoneNumber, check_address};
use crate::toml_errors::{self, ParseError, find_key_line, find_section_line};
use crate::totp::TotpKey;

/// A Telegram chat id, kept as its decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatId(String);

impl ChatId {
    /// Accepts a plausible chat id: an optional minus sign (groups) and at
    /// most 16 digits, not zero.
    pub fn parse(s: &str) -> Result<ChatId, String> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty()
            || digits.len() > 16
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.bytes().all(|b| b == b'0')
        {
            return Err(
                "is not a Telegram chat id (digits, optionally with a leading minus; \
                 `pam-gateway enroll` finds it for you)"
                    .to_string(),
            );
        }
        Ok(ChatId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a Telegram chat id, as a string or an integer")]
enum RawChatId {
    Int(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    telegram: Option<RawChatId>,
    signal: Option<toml::Value>,
    sms: Option<toml::Value>,
    webhook: Option<String>,
    command: Option<String>,
    /// Base32 authenticator secret (fallback factor).
    totp_secret: Option<String>,
}

/// Reads a phone number that must be a TOML string (an integer would have
/// lost its `+`).
fn phone_from(value: toml::Value) -> Result<PhoneNumber, String> {
    match value {
        toml::Value::String(s) => PhoneNumber::parse(&s),
        toml::Value::Integer(i) => Err(format!(
            "must be a string with the leading `+`: write \"+{i}\""
        )),
        _ => Err("must be a phone number as a string, e.g. \"+4915112345678\"".to_string()),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
}

/// One enrolled user's recipients, per gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEntry {
    pub telegram: Option<ChatId>,
    pub signal: Option<PhoneNumber>,
    pub sms: Option<PhoneNumber>,
    /// Whatever the webhook's URL and body put `{recipient}` in: an ntfy
    /// topic, a Matrix room id, a Slack handle.
    pub webhook: Option<String>,
    /// The command's recipient ($PAM_GATEWAY_RECIPIENT): a phone number, a mail address.
    pub command: Option<String>,
    /// Authenticator secret: asked for when delivery fails, accepted at
    /// any prompt. Its presence makes users.toml a secret (mode 0600).
    pub totp_secret: Option<TotpKey>,
}

impl UserEntry {
    /// True when the entry names no recipient at all.
    pub fn is_empty(&self) -> bool {
        GatewayKind::ALL
            .iter()
            .all(|k| self.recipient(*k).is_none())
    }

    /// The user's address on one gateway, if the entry names one.
    pub fn recipient(&self, kind: GatewayKind) -> Option<&str> {
        match kind {
            GatewayKind::Telegram => self.telegram.as_ref().map(ChatId::as_str),
            GatewayKind::Signal => self.signal.as_ref().map(PhoneNumber::as_str),
            GatewayKind::Sms => self.sms.as_ref().map(PhoneNumber::as_str),
            GatewayKind::Webhook => self.webhook.as_deref(),
            GatewayKind::Command => self.command.as_deref(),
        }
    }

    /// Every recipient of this entry as (gateway id, recipient), in the
    /// default gateway order (`gateways` in gateway.toml may reorder them).
    pub fn recipients(&self) -> Vec<(&'static str, &str)> {
        GatewayKind::ALL
            .iter()
            .filter_map(|k| self.recipient(*k).map(|r| (k.id(), r)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Users {
    pub users: BTreeMap<String, UserEntry>,
}

impl Users {
    pub fn parse(path: &Path, text: &str) -> Result<Users, ParseError> {
        let raw: RawUsers = toml_errors::parse(path, text)?;
        let mut users = BTreeMap::new();
        for (name, entry) in raw.users {
            let section = format!("users.{name}");
            let err = |key: Option<&str>, message: String| ParseError {
                file: path.to_path_buf(),
                line: match key {
                    Some(k) => find_key_line(text, &section, k),
                    None => None,
                }
                .or_else(|| find_section_line(text, &section)),
                key: Some(match key {
                    Some(k) => format!("{section}.{k}"),
                    None => section.clone(),
                }),
                message,
            };
            if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control()) {
                return Err(err(None, "is not a valid user name".to_string()));
            }
            let telegram = match entry.telegram {
                None => None,
                Some(RawChatId::Int(i)) => {
                    Some(ChatId::parse(&i.to_string()).map_err(|m| err(Some("telegram"), m))?)
                }
                Some(RawChatId::Text(s)) => {
                    Some(ChatId::parse(&s).map_err(|m| err(Some("telegram"), m))?)
                }
            };
            let phone = |key: &str, v: Option<toml::Value>| -> Result<_, ParseError> {
                v.map(phone_from).transpose().map_err(|m| err(Some(key), m))
            };
            let signal = phone("signal", entry.signal)?;
            let sms = phone("sms", entry.sms)?;
            let address = |key: &str, v: Option<String>| -> Result<_, ParseError> {
                if let Some(a) = &v {
                    check_address(a).map_err(|m| err(Some(key), m))?;
                }
                Ok(v)
            };
            let webhook = address("webhook", entry.webhook)?;
            let command = address("command", entry.command)?;
            let totp_secret = match &entry.totp_secret {
                None => None,
                Some(text) => {
                    Some(TotpKey::from_base32(text).map_err(|m| err(Some("totp_secret"), m))?)
                }
            };
            let user = UserEntry {
                telegram,
                signal,
                sms,
                webhook,
                command,
                totp_secret,
            };
            // An authenticator alone is a way in too (no gateway needed).
            if user.is_empty() && user.totp_secret.is_none() {
                return Err(err(
                    None,
                    "names no recipient (add e.g. telegram = \"CHAT_ID\" or \
                     signal = \"+4915112345678\") and no totp_secret"
                        .to_string(),
                ));
            }
            users.insert(name, user);
        }
        Ok(Users { users })
    }

    pub fn get(&self, user: &str) -> Option<&UserEntry> {
        self.users.get(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Users, ParseError> {
        Users::parse(Path::new("/etc/pam_gateway/users.toml"), text)
    }

    #[test]
    fn string_and_integer_ids() {
        let u = parse("[users.alice]\ntelegram = \"123456977\"\n[users.bob]\ntelegram = -100123\n")
            .expect("parse");
        assert_eq!(
            u.get("alice").and_then(|e| e.telegram.clone()),
            Some(ChatId("123456977".into()))
        );
        assert_eq!(
            u.get("bob").and_then(|e| e.telegram.clone()),
            Some(ChatId("-100123".into()))
        );
        assert!(u.get("carol").is_none());
    }

    #[test]
    fn empty_file_is_no_users() {
        assert!(parse("").expect("parse").users.is_empty());
        assert!(parse("# nobody yet\n").expect("parse").users.is_empty());
    }

    #[test]
    fn bad_ids_name_user_and_line() {
        for bad in [
            "\"12ab\"",
            "\"\"",
            "0",
            "\"@alice\"",
            "\"99999999999999999\"",
            "1.5",
        ] {
            let text = format!("[users.alice]\n# x\ntelegram = {bad}\n");
            let err = parse(&text).unwrap_err();
            assert_eq!(err.line, Some(3), "{bad}: {err}");
            assert!(err.to_string().contains("users.alice"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_empty_entries_are_errors() {
        let err = parse("[users.alice]\ntelegramm = \"1\"\n").unwrap_err();
        assert!(err.message.contains("telegramm"), "{err}");
        let err = parse("[users.alice]\n").unwrap_err();
        assert!(err.message.contains("no recipient"), "{err}");
        let err = parse("[alice]\ntelegram = \"1\"\n").unwrap_err();
        assert!(err.message.contains("alice"), "{err}");
    }

    #[test]
    fn every_gateway_key() {
        let u = parse(
            "[users.bob]\ntelegram = 123456977\nsignal = \"+4915112345678\"\n\
             sms = \"+4915112345679\"\nwebhook = \"!room:example.org\"\n\
             command = \"bob@example.org\"\n",
        )
        .expect("parse");
        let bob = u.get("bob").expect("bob");
        assert_eq!(bob.recipient(GatewayKind::Telegram), Some("123456977"));
        assert_eq!(bob.recipient(GatewayKind::Signal), Some("+4915112345678"));
        assert_eq!(bob.recipient(GatewayKind::Sms), Some("+4915112345679"));
        assert_eq!(
            bob.recipient(GatewayKind::Webhook),
            Some("!room:example.org")
        );
        assert_eq!(bob.recipient(GatewayKind::Command), Some("bob@example.org"));
        assert_eq!(
            bob.sms.as_ref().map(PhoneNumber::digits),
            Some("4915112345679")
        );
        let only_signal = parse("[users.carol]\nsignal = \"+4915112345678\"\n").expect("parse");
        assert!(!only_signal.get("carol").expect("carol").is_empty());
    }

    #[test]
    fn bad_phone_numbers_and_addresses_name_key_and_line() {
        for (key, bad, hint) in [
            ("signal", "4915112345678", "\"+4915112345678\""),
            ("signal", "\"4915112345678\"", "E.164"),
            ("sms", "\"+49 151 12345678\"", "E.164"),
            ("sms", "\"+0151123456\"", "E.164"),
            ("sms", "\"+1234567\"", "E.164"),
            ("sms", "\"+1234567890123456\"", "E.164"),
            ("sms", "true", "string"),
            ("webhook", "\"\"", "1 to 256"),
            ("webhook", "\"a\\nb\"", "control"),
            ("command", "\"--help\"", "option"),
            ("command", "5", "invalid type"),
        ] {
            let text = format!("[users.alice]\n# x\n{key} = {bad}\n");
            let err = parse(&text).unwrap_err();
            assert_eq!(err.line, Some(3), "{key} = {bad}: {err}");
            assert!(
                err.to_string().contains(&format!("users.alice.{key}")),
                "{err}"
            );
            assert!(err.message.contains(hint), "{key} = {bad}: {err}");
        }
    }

    #[test]
    fn totp_secrets() {
        let u = parse(
            "[users.alice]\ntelegram = \"1\"\ntotp_secret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\n\
             [users.bob]\ntotp_secret = \"gezd gnbv gy3t qojq\"\n",
        )
        .expect("parse");
        assert!(
            u.get("alice")
                .and_then(|e| e.totp_secret.as_ref())
                .is_some()
        );
        let bob = u.get("bob").expect("bob");
        assert!(bob.telegram.is_none() && bob.totp_secret.is_some());
        let err =
            parse("[users.alice]\ntelegram = \"1\"\ntotp_secret = \"SECRETVALUE1\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("users.alice.totp_secret"));
        assert!(!err.to_string().contains("SECRETVALUE1"), "{err}");
        // A TOML type error on the line never quotes it either.
        let err = parse("[users.alice]\ntotp_secret = 12345\n").unwrap_err();
        assert!(!err.to_string().contains("12345"), "{err}");
    }
}
