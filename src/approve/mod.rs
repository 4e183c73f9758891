//! Approval in the chat through `pam-gatewayd` (`[approve]` in
//! `gateway.toml`): the daemon owns the Telegram bot's update stream, the
//! module asks it over a Unix socket ([`wire`]) to send a message with
//! number buttons and "Not me", and waits for the tap. Off by default;
//! without the daemon the module sends the code itself, as without
//! `[approve]`.

use std::path::PathBuf;

use crate::toml_errors::toml_struct;

pub mod wire;

/// Where the daemon listens unless `[approve] socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/pam_gateway/pam-gatewayd.sock";
/// Seconds the module waits for a tap after an empty answer (Enter).
pub const DEFAULT_WAIT: u64 = 30;
/// Longest `wait` accepted.
pub const MAX_WAIT: u64 = 300;

toml_struct! {
    /// `[approve]` as written; every key optional.
    #[derive(Debug, Default)]
    pub struct RawApprove {
        enabled: Option<bool>,
        socket: Option<String>,
        admin_chats: Option<Vec<i64>>,
        wait: Option<u64>,
    }
}

/// `[approve]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveConfig {
    /// Approval is offered (Telegram recipients only).
    pub enabled: bool,
    /// The daemon's socket; module and daemon both read it.
    pub socket: PathBuf,
    /// Telegram chats alerted when a user taps "Not me".
    pub admin_chats: Vec<i64>,
    /// Seconds the module waits for a tap after Enter, then asks again.
    pub wait: u64,
}

impl Default for ApproveConfig {
    fn default() -> Self {
        ApproveConfig {
            enabled: false,
            socket: PathBuf::from(DEFAULT_SOCKET),
            admin_chats: Vec::new(),
            wait: DEFAULT_WAIT,
        }
    }
}

impl ApproveConfig {
    /// Validates `[approve]`; `err(key, message)` builds the error with the
    /// file and line. `has_telegram`: approval needs a `[telegram]` bot.
    pub fn from_raw<E>(
        raw: Option<RawApprove>,
        has_telegram: bool,
        err: &dyn Fn(&str, String) -> E,
    ) -> Result<ApproveConfig, E> {
        let raw = raw.unwrap_or_default();
        let d = ApproveConfig::default();
        let enabled = raw.enabled.unwrap_or(d.enabled);
        let socket = match raw.socket {
            None => d.socket,
            Some(s) => {
                let p = PathBuf::from(&s);
                if !p.is_absolute() || s.len() > 100 || s.contains('\0') {
                    return Err(err(
                        "socket",
                        format!("{s:?} must be an absolute path of at most 100 bytes"),
                    ));
                }
                p
            }
        };
        let wait = raw.wait.unwrap_or(d.wait);
        if !(1..=MAX_WAIT).contains(&wait) {
            return Err(err(
                "wait",
                format!("{wait} is out of range 1..={MAX_WAIT}"),
            ));
        }
        let admin_chats = raw.admin_chats.unwrap_or_default();
        if enabled && !has_telegram {
            return Err(err(
                "enabled",
                "needs a [telegram] section: approval goes through its bot".to_string(),
            ));
        }
        Ok(ApproveConfig {
            enabled,
            socket,
            admin_chats,
            wait,
        })
    }
}
