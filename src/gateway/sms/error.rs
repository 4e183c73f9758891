//! What went wrong sending an SMS, in the terms all providers share, and
//! a provider's message cleaned for an error text.

use crate::gateway::delivery::DeliveryError;
use crate::http::{self, TransportError};
use crate::recipient::PhoneNumber;
use crate::redact::mask_recipient;

/// What went wrong sending an SMS, common to the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsError {
    Transport(TransportError),
    /// Credentials, token, IP allow-list or account refused.
    Unauthorized(String),
    /// The account has no credit or hit its quota.
    NoCredit(String),
    /// The configured sender is not allowed.
    BadSender(String),
    /// The provider refused the recipient's number.
    BadRecipient(String),
    /// The message needs more parts than allowed.
    TooLong(String),
    RateLimited {
        retry_after: Option<u64>,
    },
    /// Our request is not what this provider expects (wrong URL, API).
    BadRequest(String),
    /// The provider refused the message for another reason.
    Refused(String),
    /// 5xx, or the provider's own "internal error".
    Server(String),
    Malformed(String),
}

impl std::fmt::Display for SmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use SmsError::*;
        match self {
            Transport(t) => write!(f, "{t}"),
            Unauthorized(d) => write!(f, "credentials refused: {d}"),
            NoCredit(d) => write!(f, "no credit or quota left: {d}"),
            BadSender(d) => write!(f, "sender refused: {d} (check [sms] from)"),
            BadRecipient(d) => write!(f, "recipient refused: {d}"),
            TooLong(d) => write!(
                f,
                "message too long: {d} (shorten [message] template or raise [sms] max_parts)"
            ),
            RateLimited {
                retry_after: Some(s),
            } => write!(f, "rate limited, retry after {s} s"),
            RateLimited { retry_after: None } => f.write_str("rate limited"),
            BadRequest(d) => write!(
                f,
                "request not accepted: {d} (check [sms] url and provider)"
            ),
            Refused(d) => write!(f, "refused: {d}"),
            Server(d) => write!(f, "server error: {d}"),
            Malformed(d) => write!(f, "unreadable answer: {d}"),
        }
    }
}

impl std::error::Error for SmsError {}

impl From<SmsError> for DeliveryError {
    fn from(e: SmsError) -> DeliveryError {
        use SmsError::*;
        let text = e.to_string();
        match e {
            Transport(t) => t.delivery_error(text),
            Server(_) | Malformed(_) => DeliveryError::ServiceFailed(text),
            BadRecipient(_) | Refused(_) => DeliveryError::Rejected {
                reason: text,
                retry_after: None,
            },
            RateLimited { retry_after } => DeliveryError::Rejected {
                reason: text,
                retry_after,
            },
            Unauthorized(_) | NoCredit(_) | BadSender(_) | TooLong(_) | BadRequest(_) => {
                DeliveryError::Misconfigured(text)
            }
        }
    }
}

/// A service message for an error: bounded, secrets and the message that
/// was sent (`sent`) redacted, the full phone number masked.
pub(crate) fn clean(text: &str, recipient: &PhoneNumber, secrets: &[&str], sent: &str) -> String {
    let text = http::excerpt_sent(text, 200, secrets, sent);
    // Providers echo numbers with or without `+`.
    let text = mask_recipient(&text, recipient.as_str());
    mask_recipient(&text, recipient.digits())
}
