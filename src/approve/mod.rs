//! Approval in the chat through `pam-gatewayd` (`[approve]` in
//! `gateway.toml`): the daemon owns the Telegram bot's update stream, the
//! module asks it over a Unix socket ([`wire`]) to send a message with
//! number buttons and "Not me", and waits for the tap. Off by default;
//! without the daemon the module sends the code itself, as without
//! `[approve]`.

use std::path::PathBuf;

use crate::toml_errors::toml_struct;

pub mod approver;
pub mod client;
pub mod hosted;
pub mod wire;

pub use approver::{ApprovalRequest, ApproveError, Approved, Approver};
pub use client::Client;

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

/// Three distinct two-digit numbers (10–99) and the index of the one to
/// tap, all from the OS CSPRNG (rejection sampling: no bias).
pub fn draw_numbers() -> Result<([u8; 3], usize), crate::random::RandomError> {
    let mut numbers = [0u8; 3];
    let mut got = 0;
    let mut answer = None;
    for _ in 0..64 {
        let mut buf = [0u8; 16];
        crate::random::fill(&mut buf)?;
        for b in buf {
            if got < 3 {
                // 180 = 2 × 90: values below it map evenly onto 10..=99.
                if b < 180 {
                    let n = 10 + b % 90;
                    if !numbers[..got].contains(&n) {
                        numbers[got] = n;
                        got += 1;
                    }
                }
            } else if answer.is_none() && b < 255 {
                // 255 = 85 × 3.
                answer = Some(usize::from(b % 3));
            }
        }
        if let (3, Some(i)) = (got, answer) {
            return Ok((numbers, i));
        }
    }
    Err(crate::random::RandomError::Skewed)
}

/// A login's nonce: 128 bits from the OS CSPRNG, as 32 hex digits.
pub fn new_nonce() -> Result<String, crate::random::RandomError> {
    let mut bytes = [0u8; 16];
    crate::random::fill(&mut bytes)?;
    Ok(crate::hex::encode(&bytes))
}

/// The private chat a Telegram recipient names, if it is one: a private
/// chat's id is its user's, always positive (groups and channels are
/// negative; an `@name` is a channel). Only there does "the enrolled user
/// tapped" mean something.
pub fn private_chat(recipient: &str) -> Option<i64> {
    recipient.trim().parse::<i64>().ok().filter(|id| *id > 0)
}

/// The prompt of a login offered approval: the number is in the prompt
/// itself (OpenSSH shows PAM info messages only with the next prompt).
pub fn tap_prompt(answer: u8) -> String {
    format!("Tap {answer} in Telegram and press Enter, or type the code: ")
}

/// Whether an answer is "just Enter": empty once whitespace is trimmed.
pub fn is_enter(answer: &[u8]) -> bool {
    answer.trim_ascii().is_empty()
}

#[cfg(test)]
mod draw_tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_two_digit_and_the_answer_moves() {
        let mut positions = [0u32; 3];
        for _ in 0..300 {
            let (n, i) = draw_numbers().expect("random");
            assert!(n.iter().all(|x| (10..=99).contains(x)), "{n:?}");
            assert!(n[0] != n[1] && n[1] != n[2] && n[0] != n[2], "{n:?}");
            positions[i] += 1;
        }
        assert!(positions.iter().all(|p| *p > 0), "{positions:?}");
        let (a, b) = (new_nonce().expect("r"), new_nonce().expect("r"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_positive_chat_ids_are_private_chats() {
        assert_eq!(private_chat("123456789"), Some(123_456_789));
        assert_eq!(private_chat("-1001234"), None);
        assert_eq!(private_chat("@channel"), None);
        assert_eq!(private_chat("0"), None);
        assert!(is_enter(b"") && is_enter(b"\n") && is_enter(b" \r\n"));
        assert!(!is_enter(b"42"));
        assert_eq!(
            tap_prompt(42),
            "Tap 42 in Telegram and press Enter, or type the code: "
        );
    }
}
