//! What the flow sees of a gateway: [`Gateway`], a way to deliver a text,
//! and [`DeliveryError`], why it was not delivered.

use std::fmt;

/// Why a message was not delivered. The flow acts on two questions, and
/// the variants answer both:
///
/// - *May the reservation of this send be given back?* Only when nothing
///   can have reached the user ([`DeliveryError::nothing_delivered`]): a
///   send whose fate is unknown counts as sent.
/// - *May `failmode = "safe"` skip the code?* Only for a service that could
///   not be reached, and, when the caller is not root (su, sudo), only when
///   the remote side proved it ([`DeliveryError::proven_remote`]): a caller
///   can stop the process (a timeout) or starve it (EMFILE), never make a
///   peer refuse a connection or answer 503.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeliveryError {
    /// No answer, or no complete one, within the deadline; a reset
    /// connection, a TLS or DNS failure. The message may have gone out, and
    /// a process stopped by its caller looks the same from inside.
    Unreachable(String),
    /// The peer refused the connection (ECONNREFUSED): nothing left this
    /// machine, and the remote side said so.
    Refused(String),
    /// The service answered with a failure of its own (5xx, an answer that
    /// cannot be read, a helper program's "try later"): the remote side
    /// failed, and the message may have been delivered all the same.
    ServiceFailed(String),
    /// The service answered and refused this message (unknown recipient,
    /// bot blocked, rate limited).
    Rejected {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Our side is wrong: bad credentials or settings. Needs the admin.
    Misconfigured(String),
    /// This machine failed before the message left: no memory, no file
    /// descriptors, a thread or process that cannot be started, a client
    /// that cannot be built. Never a reason to skip the code.
    Local(String),
}

impl DeliveryError {
    /// A one-word class for log lines.
    pub fn class(&self) -> &'static str {
        match self {
            DeliveryError::Unreachable(_)
            | DeliveryError::Refused(_)
            | DeliveryError::ServiceFailed(_) => "unreachable",
            DeliveryError::Rejected { .. } => "rejected",
            DeliveryError::Misconfigured(_) => "misconfigured",
            DeliveryError::Local(_) => "local-error",
        }
    }

    /// The service could not be reached or failed on its side.
    pub fn is_unreachable(&self) -> bool {
        self.class() == "unreachable"
    }

    /// The remote side proved it failed: it refused the connection or
    /// answered with an error. Nothing a local caller can bring about.
    pub fn proven_remote(&self) -> bool {
        matches!(
            self,
            DeliveryError::Refused(_) | DeliveryError::ServiceFailed(_)
        )
    }

    /// Certainly nothing reached the user: the connection was refused, the
    /// service refused the message, or nothing left this machine.
    pub fn nothing_delivered(&self) -> bool {
        matches!(
            self,
            DeliveryError::Refused(_)
                | DeliveryError::Rejected { .. }
                | DeliveryError::Misconfigured(_)
                | DeliveryError::Local(_)
        )
    }

    /// The same error with `prefix: ` before its text (which gateway or
    /// provider it came from).
    pub fn prefixed(self, prefix: &str) -> DeliveryError {
        let p = |r: String| format!("{prefix}: {r}");
        match self {
            DeliveryError::Unreachable(r) => DeliveryError::Unreachable(p(r)),
            DeliveryError::Refused(r) => DeliveryError::Refused(p(r)),
            DeliveryError::ServiceFailed(r) => DeliveryError::ServiceFailed(p(r)),
            DeliveryError::Rejected {
                reason,
                retry_after,
            } => DeliveryError::Rejected {
                reason: p(reason),
                retry_after,
            },
            DeliveryError::Misconfigured(r) => DeliveryError::Misconfigured(p(r)),
            DeliveryError::Local(r) => DeliveryError::Local(p(r)),
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Unreachable(r) => write!(f, "unreachable: {r}"),
            DeliveryError::Refused(r) => write!(f, "unreachable: {r}"),
            DeliveryError::ServiceFailed(r) => write!(f, "unreachable: {r}"),
            DeliveryError::Rejected {
                reason,
                retry_after: Some(s),
            } => write!(f, "rejected: {reason} (retry after {s} s)"),
            DeliveryError::Rejected { reason, .. } => write!(f, "rejected: {reason}"),
            DeliveryError::Misconfigured(r) => write!(f, "misconfigured: {r}"),
            DeliveryError::Local(r) => write!(f, "local error: {r}"),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// A way to deliver a short text to a recipient.
pub trait Gateway {
    /// The key used in config and users files (`telegram`).
    fn id(&self) -> &'static str;
    /// The name shown to people in the prompt (`Telegram`; configurable
    /// for the webhook and command gateways).
    fn display_name(&self) -> &str;
    /// Delivers `text` to `recipient`, within the gateway's own timeout.
    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError>;
}
