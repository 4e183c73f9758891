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
use std::sync::OnceLock;

use crate::gateway::GatewayKind;
use crate::toml_errors::{ParseError, find_key_line, find_section_line, parse_entries};
use crate::totp::TotpKey;

/// The key of a user's authenticator secret; every other key of a
/// `[users.NAME]` table is a gateway's.
const TOTP_KEY: &str = "totp_secret";

/// The keys a `[users.NAME]` table may have, as serde's messages list them.
fn user_keys() -> &'static [&'static str] {
    static KEYS: OnceLock<Vec<&'static str>> = OnceLock::new();
    KEYS.get_or_init(|| {
        GatewayKind::ALL
            .iter()
            .map(|k| k.id())
            .chain([TOTP_KEY])
            .collect()
    })
}

/// A `[users.NAME]` table as read, before its values are checked: each
/// recipient's text or why it is none, the authenticator secret's text.
#[derive(Default)]
struct RawUser {
    recipients: BTreeMap<GatewayKind, Result<String, String>>,
    totp_secret: Option<String>,
}

/// Reads every `[users.NAME]` table: the TOML types of their values and
/// unknown keys, reported in the file's order. Each gateway reads its own
/// recipients.
fn read_users(path: &Path, text: &str) -> Result<BTreeMap<String, RawUser>, ParseError> {
    let mut users = BTreeMap::new();
    for entry in parse_entries(path, text)? {
        if entry.key() != "users" {
            return Err(entry.unknown(&["users"]));
        }
        // Serde's names for the shapes expected, as its messages give them.
        entry.value.read_map("RawUser", user_keys(), |user| {
            let name = user.key().to_string();
            let mut raw = RawUser::default();
            user.value
                .read_struct("RawUser", user_keys(), &mut |key, value| {
                    match GatewayKind::from_id(key) {
                        Some(kind) => {
                            let recipient = kind.spec().read_recipient(value)?;
                            raw.recipients.insert(kind, recipient);
                        }
                        None => raw.totp_secret = Some(value.deserialize()?),
                    }
                    Ok(())
                })?;
            users.insert(name, raw);
            Ok(())
        })?;
    }
    Ok(users)
}

/// One enrolled user's recipients, per gateway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserEntry {
    /// The user's address on each gateway the entry names: a chat id, a
    /// phone number, whatever a webhook's URL and body put `{recipient}`
    /// in, a command's $PAM_GATEWAY_RECIPIENT.
    recipients: BTreeMap<GatewayKind, String>,
    /// Authenticator secret: asked for when delivery fails, accepted at
    /// any prompt. Its presence makes users.toml a secret (mode 0600).
    pub totp_secret: Option<TotpKey>,
}

impl UserEntry {
    /// An entry holding these recipients and no authenticator secret (the
    /// directory's users: [`crate::directory`]). Each must have passed its
    /// gateway's `check_recipient`.
    pub fn from_recipients(recipients: BTreeMap<GatewayKind, String>) -> UserEntry {
        UserEntry {
            recipients,
            totp_secret: None,
        }
    }

    /// True when the entry names no recipient at all.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// The user's address on one gateway, if the entry names one.
    pub fn recipient(&self, kind: GatewayKind) -> Option<&str> {
        self.recipients.get(&kind).map(String::as_str)
    }

    /// Every recipient of this entry as (gateway id, recipient), in the
    /// default gateway order (`gateways` in gateway.toml may reorder them).
    pub fn recipients(&self) -> Vec<(&'static str, &str)> {
        self.recipients
            .iter()
            .map(|(k, r)| (k.id(), r.as_str()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Users {
    pub users: BTreeMap<String, UserEntry>,
}

impl Users {
    pub fn parse(path: &Path, text: &str) -> Result<Users, ParseError> {
        let mut users = BTreeMap::new();
        for (name, raw) in read_users(path, text)? {
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
            let mut recipients = BTreeMap::new();
            for (kind, recipient) in raw.recipients {
                let recipient = recipient.map_err(|m| err(Some(kind.id()), m))?;
                recipients.insert(kind, recipient);
            }
            let totp_secret = match &raw.totp_secret {
                None => None,
                Some(text) => Some(TotpKey::from_base32(text).map_err(|m| err(Some(TOTP_KEY), m))?),
            };
            let user = UserEntry {
                recipients,
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
            u.get("alice")
                .and_then(|e| e.recipient(GatewayKind::Telegram)),
            Some("123456977")
        );
        assert_eq!(
            u.get("bob")
                .and_then(|e| e.recipient(GatewayKind::Telegram)),
            Some("-100123")
        );
        assert!(u.get("carol").is_none());
    }

    #[test]
    fn unknown_keys_and_shapes_as_serde_reported_them() {
        let err = parse("[users.alice]\ntelegram = 1\nphone = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("users.alice.phone"));
        assert_eq!(
            err.message,
            "unknown field `phone`, expected one of `telegram`, `signal`, `sms`, `webhook`, \
             `command`, `totp_secret`"
        );
        let err = parse("user = 1\n").unwrap_err();
        assert_eq!(err.message, "unknown field `user`, expected `users`");
        let err = parse("users = 1\n").unwrap_err();
        assert_eq!(err.message, "invalid type: integer `1`, expected a map");
        let err = parse("[users]\nalice = \"x\"\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid type: string \"x\", expected struct RawUser"
        );
        // An array is read field by field, as serde reads a struct.
        let err = parse("[users]\nalice = [\"1\"]\n").unwrap_err();
        assert_eq!(
            err.message,
            "invalid length 1, expected struct RawUser with 6 elements"
        );
        let fields = r#"[1, "+4915112345678", "+4915112345678", "a", "b", "JBSWY3DPEHPK3PXP"]"#;
        let u = parse(&format!("[users]\nalice = {fields}\n")).expect("array");
        let alice = u.get("alice").expect("alice");
        assert_eq!(alice.recipient(GatewayKind::Telegram), Some("1"));
        assert_eq!(alice.recipient(GatewayKind::Command), Some("b"));
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
        assert!(bob.recipient(GatewayKind::Telegram).is_none() && bob.totp_secret.is_some());
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
