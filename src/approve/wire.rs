//! The module ↔ `pam-gatewayd` protocol: frames over a Unix stream socket.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! JSON (one [`Request`] from the client, one [`Response`] from the
//! daemon). Frames larger than [`MAX_FRAME`] are refused by both sides; a
//! connection may carry several request/response pairs, one at a time.
//!
//! Only root may talk to the daemon: the socket is root's, mode 0600, in a
//! root-only directory, and the daemon checks every peer with SO_PEERCRED
//! (uid 0); the module checks the socket's owner and mode before it
//! connects, and that the peer it reached is uid 0.
//!
//! Texts the module puts in a request (the message) may hold the code: the
//! daemon never logs a request body, and error details it returns are
//! already redacted (no token, no code).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Protocol version; a daemon answers a request of another version with
/// [`ErrorKind::Version`].
pub const VERSION: u32 = 1;

/// Largest frame either side sends or accepts (64 KiB): a Telegram message
/// is at most 4096 characters, and a batch of updates is capped below this.
pub const MAX_FRAME: usize = 64 * 1024;

/// Longest a `Wait` may ask the daemon to hold the answer.
pub const MAX_WAIT_MS: u64 = 60_000;

/// One request from the module (or the CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Send `text` to the private chat `chat_id` with the approval buttons:
    /// one row with the three `numbers` (two digits each, distinct, one of
    /// them `answer`), one row with "Not me". Only a tap by the Telegram
    /// user whose id is `chat_id` counts (a private chat's id is its
    /// user's id). The approval lives until `expires_in_secs`, then the
    /// daemon edits the message to "expired" itself.
    Approve {
        version: u32,
        /// Single-use, unguessable (128 bits from the OS CSPRNG, hex).
        nonce: String,
        /// The account the login is for (canonical name), for "Not me":
        /// the daemon locks this user's second factor.
        user: String,
        chat_id: i64,
        text: String,
        numbers: [u8; 3],
        answer: u8,
        expires_in_secs: u64,
        /// Count the send against the user's `[limits]` first, as the
        /// module would (see [`Reserve`]); absent: the module counted it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reserve: Option<Reserve>,
    },
    /// Wait up to `wait_ms` (capped at [`MAX_WAIT_MS`]) for the approval
    /// `nonce` to leave [`ApprovalState::Pending`]; answers at once when it
    /// already has.
    Wait {
        version: u32,
        nonce: String,
        wait_ms: u64,
    },
    /// The login is over: the daemon edits the message to its final state
    /// (buttons removed) and forgets the nonce; later taps are answered
    /// with why nothing happens.
    Finish {
        version: u32,
        nonce: String,
        result: Final,
    },
    /// Send a plain message (no buttons) over the daemon's connection.
    Send {
        version: u32,
        chat_id: i64,
        text: String,
    },
    /// For `pam-gateway enroll`: text messages the daemon has seen with an
    /// update id above `after` (it keeps the recent ones), waiting up to
    /// `wait_ms` for one when there are none yet.
    Updates {
        version: u32,
        after: i64,
        wait_ms: u64,
    },
    /// For `pam-gateway status`.
    Status { version: u32 },
    /// The module asks the daemon to run this login ([`super::hosted`]):
    /// the daemon reads gateway.toml, the users file and the state, sends,
    /// judges, and holds the PAM conversation through the module
    /// ([`HostMsg::Ask`], answered with [`HostReply`]) until it answers
    /// [`HostMsg::Outcome`], or [`HostMsg::Decline`] when the module is to
    /// run the login itself. The connection carries this login only.
    Login {
        version: u32,
        /// The stack line's module arguments, as libpam gave them.
        args: Vec<String>,
        /// PAM_USER as the application gave it (not yet looked up).
        user: String,
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rhost: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tty: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ruser: Option<String>,
        /// PAM_AUTHTOK is OpenSSH's marker for a wrong password.
        password_was_wrong: bool,
        /// The PAM process's real uid is 0 (not su or sudo run by a user).
        caller_is_root: bool,
    },
}

/// How the daemon wants a [`HostMsg::Ask`] shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskStyle {
    /// PAM_PROMPT_ECHO_OFF: answered with [`HostReply::Reply`] and the text.
    Hidden,
    /// PAM_TEXT_INFO: answered with an empty [`HostReply::Reply`].
    Info,
    /// PAM_ERROR_MSG: answered with an empty [`HostReply::Reply`].
    Error,
}

/// What a login's PAM return code is to be: [`crate::flow::Outcome`] as
/// DESIGN.md's table maps it ([`crate::flow::Outcome::pam_result`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PamResult {
    Success,
    AuthErr,
    MaxTries,
    UserUnknown,
    Ignore,
    ServiceErr,
    AuthinfoUnavail,
    ConvErr,
    SystemErr,
}

/// A code's dialogue as the daemon hands it to the module before the
/// first prompt: enough for the module to finish the login itself should
/// the daemon go away mid-dialogue ([`crate::flow::Flow::resume`]). Holds
/// the code: never logged, wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    pub code: String,
    /// Until the code expires, from when the daemon wrote this.
    pub ttl_left_ms: u64,
    /// The gateway that delivered it (a [`crate::gateway::GatewayKind`] id).
    pub gateway: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<HandedApproval>,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("code", &"<redacted>")
            .field("ttl_left_ms", &self.ttl_left_ms)
            .field("gateway", &self.gateway)
            .field("approval", &self.approval)
            .finish_non_exhaustive()
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.code);
    }
}

/// The tap a [`Handover`]'s message offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandedApproval {
    pub nonce: String,
    /// The number shown in the prompt.
    pub answer: u8,
    /// The prompt once approval is no longer offered.
    pub code_prompt: String,
    pub offered: bool,
}

/// The daemon's frames during a [`Request::Login`]. `error` has
/// [`Response::Error`]'s shape, so that `Busy` (written before any request
/// is read) and a daemon too old to know `login` are read as what they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMsg {
    /// The module runs the login itself (`why` is for its log).
    Decline {
        why: String,
    },
    /// The code went out; the dialogue follows.
    Handover {
        handover: Handover,
    },
    /// Show `text` through the PAM conversation and answer; the daemon's
    /// next frame follows the answer within `reply_within_ms`.
    Ask {
        style: AskStyle,
        text: String,
        reply_within_ms: u64,
    },
    /// The login is over.
    Outcome {
        verdict: PamResult,
    },
    Error {
        kind: ErrorKind,
        detail: String,
    },
}

/// The module's answers to [`HostMsg::Ask`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostReply {
    /// A hidden prompt's answer, cut to one byte more than
    /// [`crate::code::MAX_ANSWER_LEN`] (still too long to match); `None`
    /// for an info or error message shown.
    Reply {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<Vec<u8>>,
    },
    /// The conversation failed or gave no answer.
    ConvFailed { detail: String },
}

/// `Approve`'s reservation: before it sends, the daemon counts the send
/// against the user's `[limits]` in the user's state file in `state_dir`
/// (`limits::reserve_send`, under the file's lock, as the module does),
/// and gives it back when the send certainly reached nobody. The values
/// are the module's own gateway.toml's, so both count alike whichever
/// file the daemon was started with. The login's process then writes no
/// state file before the code goes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reserve {
    /// Absolute; checked as root's as the module checks it.
    pub state_dir: String,
    pub codes_per_window: u32,
    pub window: u64,
    pub failures_before_lockout: u32,
    pub lockout: u64,
    pub max_lockout: u64,
}

impl Reserve {
    /// The `[limits]` it carries.
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            codes_per_window: self.codes_per_window,
            window: self.window,
            failures_before_lockout: self.failures_before_lockout,
            lockout: self.lockout,
            max_lockout: self.max_lockout,
        }
    }
}

/// Why [`Response::Blocked`] sent nothing (`limits::Block`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Too many wrong answers, or "Not me".
    LockedOut,
    /// `codes_per_window` codes went out in the window.
    TooManyCodes,
}

/// How a login ended, as the message will say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Final {
    /// Approved by the tap.
    Approved,
    /// Refused (wrong number, "Not me", attempts used up, locked).
    Denied,
    /// Nothing happened in time.
    Expired,
    /// The code was typed: the buttons are no longer needed.
    Used,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    /// The enrolled user tapped the right number.
    Approved,
    /// The enrolled user tapped another number: a wrong answer.
    Wrong,
    /// The enrolled user tapped "Not me": the daemon has locked the user's
    /// second factor and alerted the admin chats.
    NotMe,
    /// Expired, finished, or unknown to this daemon (e.g. it restarted).
    Gone,
}

/// One incoming text message, for enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextUpdate {
    pub update_id: i64,
    pub chat_id: i64,
    pub chat_type: String,
    pub from_id: Option<i64>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub text: String,
}

/// The daemon's state, for `pam-gateway status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The daemon's version string.
    pub daemon: String,
    /// Unix time the daemon started.
    pub started: u64,
    /// Unix time of the last update read from Telegram, if any.
    pub last_update_at: Option<u64>,
    /// What getWebhookInfo said at the last check ("none", or the URL's
    /// host when a webhook is set, which stops getUpdates), if checked.
    pub webhook: Option<String>,
    /// Approvals waiting for a tap.
    pub pending: u32,
}

/// Why a request failed. Delivery kinds mirror
/// [`crate::gateway::DeliveryError`] so the module can treat a failed send
/// exactly like its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Unreachable,
    Refused,
    ServiceFailed,
    Rejected,
    Misconfigured,
    Local,
    /// The request was malformed, too large, or of another version.
    BadRequest,
    Version,
    /// The daemon is at its limit of connections or approvals.
    Busy,
    /// `Approve` with [`Reserve`]: the user's state file could not be
    /// read or written; nothing was sent.
    State,
}

/// One response from the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Approve or Send: the message went out.
    Sent {
        message_id: i64,
    },
    /// Approve with [`Reserve`]: the limits allow no send now, and none
    /// went out; `until` (Unix time) is when one may (`u64::MAX`: until
    /// an admin unlocks the user); `backup_codes`: how many the user has
    /// left, for the module's fallback prompt.
    Blocked {
        block: BlockKind,
        until: u64,
        backup_codes: u32,
    },
    /// Wait.
    State {
        state: ApprovalState,
    },
    /// Finish.
    Done,
    Updates {
        updates: Vec<TextUpdate>,
    },
    Status {
        status: DaemonStatus,
    },
    /// `detail` is safe to log (redacted by the daemon).
    Error {
        kind: ErrorKind,
        detail: String,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// Announced length above [`MAX_FRAME`] (the body is not read).
    TooLarge(usize),
    /// Not JSON of the expected shape.
    Malformed(String),
    /// The peer closed the connection before a frame began.
    Closed,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "socket error: {e}"),
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes is over the {MAX_FRAME}-byte limit")
            }
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
            FrameError::Closed => write!(f, "connection closed"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes one frame. The caller sets the socket's write timeout.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame. The caller sets the socket's read timeout; a length
/// above [`MAX_FRAME`] is refused before any body byte is read.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    let body = read_frame_body(r)?;
    serde_json::from_slice(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Reads one frame's body, not decoded: [`read_frame`] without the JSON
/// (the module decodes the few answers it acts on itself, see
/// [`super::client`]).
pub fn read_frame_body(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approve(reserve: Option<Reserve>) -> Request {
        Request::Approve {
            version: VERSION,
            nonce: "ab".repeat(16),
            user: "alice".into(),
            chat_id: 42,
            text: "Login alice@host".into(),
            numbers: [17, 42, 88],
            answer: 42,
            expires_in_secs: 120,
            reserve,
        }
    }

    #[test]
    fn request_round_trips() {
        let req = approve(None);
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(&buf[..4], &((buf.len() - 4) as u32).to_be_bytes());
        assert!(
            !String::from_utf8_lossy(&buf).contains("reserve"),
            "no reservation, no field"
        );
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn a_reservation_round_trips_and_its_fields_are_checked() {
        let reserve = Reserve {
            state_dir: "/var/lib/pgw".into(),
            codes_per_window: 3,
            window: 60,
            failures_before_lockout: 5,
            lockout: 900,
            max_lockout: 86_400,
        };
        assert_eq!(reserve.limits().codes_per_window, 3);
        assert_eq!(reserve.limits().window, 60);
        let req = approve(Some(reserve));
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let back: Request = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);
        let body =
            String::from_utf8_lossy(&buf[4..]).replace("\"window\":60", "\"window\":60,\"x\":1");
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(body.as_bytes());
        assert!(matches!(
            read_frame::<Request>(&mut framed.as_slice()),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn blocked_reads_as_written() {
        let resp = Response::Blocked {
            block: BlockKind::LockedOut,
            until: u64::MAX,
            backup_codes: 2,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &resp).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf[4..]),
            r#"{"result":"blocked","block":"locked_out","until":18446744073709551615,"backup_codes":2}"#
        );
        let back: Response = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn response_round_trips() {
        let resp = Response::State {
            state: ApprovalState::NotMe,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &resp).unwrap();
        let text = String::from_utf8_lossy(&buf[4..]).into_owned();
        assert_eq!(text, r#"{"result":"state","state":"not_me"}"#);
        let back: Response = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn a_login_s_frames_round_trip_and_busy_reads_as_an_error() {
        let login = Request::Login {
            version: VERSION,
            args: vec!["config=/etc/pam_gateway/gateway.toml".into()],
            user: "alice".into(),
            service: "sudo".into(),
            rhost: None,
            tty: Some("/dev/pts/0".into()),
            ruser: Some("bob".into()),
            password_was_wrong: false,
            caller_is_root: false,
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &login).unwrap();
        assert!(!String::from_utf8_lossy(&buf).contains("rhost"));
        assert_eq!(read_frame::<Request>(&mut buf.as_slice()).unwrap(), login);

        let handover = Handover {
            code: "024681".into(),
            ttl_left_ms: 299_000,
            gateway: "telegram".into(),
            prompt: "Tap 42 in Telegram and press Enter, or type the code: ".into(),
            approval: Some(HandedApproval {
                nonce: "ab".repeat(16),
                answer: 42,
                code_prompt: "Verification code: ".into(),
                offered: true,
            }),
        };
        assert!(!format!("{handover:?}").contains("024681"));
        for msg in [
            HostMsg::Handover { handover },
            HostMsg::Ask {
                style: AskStyle::Hidden,
                text: "Verification code: ".into(),
                reply_within_ms: 48_000,
            },
            HostMsg::Outcome {
                verdict: PamResult::MaxTries,
            },
            HostMsg::Decline { why: "x".into() },
        ] {
            let mut buf = Vec::new();
            write_frame(&mut buf, &msg).unwrap();
            assert_eq!(read_frame::<HostMsg>(&mut buf.as_slice()).unwrap(), msg);
        }
        // What `busy` writes before it reads anything.
        let mut buf = Vec::new();
        let busy = Response::Error {
            kind: ErrorKind::Busy,
            detail: "256 connections open".into(),
        };
        write_frame(&mut buf, &busy).unwrap();
        assert_eq!(
            read_frame::<HostMsg>(&mut buf.as_slice()).unwrap(),
            HostMsg::Error {
                kind: ErrorKind::Busy,
                detail: "256 connections open".into()
            }
        );
        for body in [
            r#"{"result":"outcome","verdict":"success","extra":1}"#,
            r#"{"result":"outcome","verdict":"let_in"}"#,
            r#"{"result":"sent","message_id":1}"#,
        ] {
            let mut buf = (body.len() as u32).to_be_bytes().to_vec();
            buf.extend_from_slice(body.as_bytes());
            assert!(
                matches!(
                    read_frame::<HostMsg>(&mut buf.as_slice()),
                    Err(FrameError::Malformed(_))
                ),
                "{body}"
            );
        }
        let reply = HostReply::Reply {
            answer: Some(b"024681".to_vec()),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &reply).unwrap();
        assert_eq!(read_frame::<HostReply>(&mut buf.as_slice()).unwrap(), reply);
    }

    #[test]
    fn oversized_length_is_refused_before_the_body() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        match read_frame::<Request>(&mut buf.as_slice()) {
            Err(FrameError::TooLarge(n)) => assert_eq!(n, MAX_FRAME + 1),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_and_ops_are_malformed() {
        for body in [
            r#"{"op":"status","version":1,"extra":1}"#,
            r#"{"op":"grant_root","version":1}"#,
            r#"not json"#,
        ] {
            let mut buf = (body.len() as u32).to_be_bytes().to_vec();
            buf.extend_from_slice(body.as_bytes());
            assert!(
                matches!(
                    read_frame::<Request>(&mut buf.as_slice()),
                    Err(FrameError::Malformed(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn empty_stream_is_closed_and_short_stream_is_an_error() {
        assert!(matches!(
            read_frame::<Request>(&mut [].as_slice()),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame::<Request>(&mut [0u8, 0].as_slice()),
            Err(FrameError::Io(_))
        ));
        let mut buf = 10u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame::<Request>(&mut buf.as_slice()),
            Err(FrameError::Io(_))
        ));
    }
}
