//! What the login flow asks of `pam-gatewayd` ([`Approver`]), apart from
//! how: [`super::Client`] over the socket in production, fakes in tests.

use std::fmt;
use std::time::Duration;

use super::wire::{ApprovalState, ErrorKind, Final, Reserve};
use crate::limits::Block;

/// Why a request to the daemon came to nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproveError {
    /// No socket, or nobody listening on it: the daemon is not running.
    Absent(String),
    /// The socket, its directory or the peer is not root's alone: not used.
    Unsafe(String),
    /// The daemon answered with an error (`detail` is redacted by it).
    Failed { kind: ErrorKind, detail: String },
    /// No answer in time (the daemon, or this process, stalled).
    Timeout,
    /// An answer that is not one, or another socket error.
    Protocol(String),
}

impl fmt::Display for ApproveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproveError::Absent(why) => write!(f, "pam-gatewayd is not running ({why})"),
            ApproveError::Unsafe(why) => {
                write!(f, "pam-gatewayd's socket is not safe to use: {why}")
            }
            ApproveError::Failed { kind, detail } => {
                write!(f, "pam-gatewayd answered {kind:?}: {detail}")
            }
            ApproveError::Timeout => f.write_str("pam-gatewayd did not answer in time"),
            ApproveError::Protocol(why) => write!(f, "pam-gatewayd: {why}"),
        }
    }
}

impl std::error::Error for ApproveError {}

/// One login's approval, as the module asks the daemon for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// 128 bits from the OS CSPRNG, hex: the login's single-use key.
    pub nonce: String,
    /// The account (canonical name): "Not me" locks its second factor.
    pub user: String,
    /// The private chat, whose id is its Telegram user's.
    pub chat_id: i64,
    /// The message: the login's context and the code.
    pub text: String,
    /// The three buttons, distinct two-digit numbers.
    pub numbers: [u8; 3],
    /// The one shown in the prompt.
    pub answer: u8,
    pub expires_in_secs: u64,
    /// The daemon counts the send against the limits first
    /// ([`Reserve`]); `None`: the module has counted it.
    pub reserve: Option<Reserve>,
}

impl ApprovalRequest {
    /// The `Approve` request on the wire.
    pub fn to_wire(&self) -> super::wire::Request {
        super::wire::Request::Approve {
            version: super::wire::VERSION,
            nonce: self.nonce.clone(),
            user: self.user.clone(),
            chat_id: self.chat_id,
            text: self.text.clone(),
            numbers: self.numbers,
            answer: self.answer,
            expires_in_secs: self.expires_in_secs,
            reserve: self.reserve.clone(),
        }
    }
}

/// What the daemon did with an [`ApprovalRequest`] it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approved {
    /// The message with the buttons went out (and, with
    /// [`ApprovalRequest::reserve`], was counted).
    Sent,
    /// With [`ApprovalRequest::reserve`]: the limits allow no send now and
    /// nothing went out; the user has `backup_codes` backup codes left.
    Blocked { block: Block, backup_codes: usize },
}

impl Approved {
    /// The daemon's [`super::wire::Response::Blocked`].
    pub fn blocked(block: super::wire::BlockKind, until: u64, backup_codes: u32) -> Approved {
        Approved::Blocked {
            block: match block {
                super::wire::BlockKind::LockedOut => Block::LockedOut { until },
                super::wire::BlockKind::TooManyCodes => Block::TooManyCodes { until },
            },
            backup_codes: backup_codes as usize,
        }
    }
}

/// The daemon as the login flow sees it; [`Client`](crate::approve::client::Client) in production, fakes
/// in tests.
pub trait Approver {
    /// Has the daemon send the message with the buttons (counting the
    /// send first when the request asks it to).
    fn approve(&mut self, request: &ApprovalRequest) -> Result<Approved, ApproveError>;
    /// Waits up to `wait` for the approval to leave `Pending`.
    fn wait(&mut self, nonce: &str, wait: Duration) -> Result<ApprovalState, ApproveError>;
    /// The login is over: the message shows `result`, the nonce is gone.
    fn finish(&mut self, nonce: &str, result: Final) -> Result<(), ApproveError>;
    /// The daemon answers (a `Status` request): whether a real login would
    /// be offered approval now. For decoy dialogues, which must look alike.
    fn available(&mut self) -> bool;
}
