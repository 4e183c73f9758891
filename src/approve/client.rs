//! The module's side of the socket: [`Client`], one connection per login
//! to `pam-gatewayd` ([`super::wire`]), every step bounded: made for the
//! first request and kept for the login's others (`Wait`, `Finish`), made
//! again if the daemon closed it meanwhile. `Finish` is written and not
//! awaited.
//!
//! Before it connects the client checks what it is about to talk to: the
//! path (not followed if a symlink) must be a socket owned by root with no
//! group or other permission bits, in a directory owned by root and not
//! writable by group or others ([`crate::secure_file::check_dir`]); after
//! it connects, the peer must be root (SO_PEERCRED). Anything else is
//! [`ApproveError::Unsafe`]: the module does not use it and says so loudly.
//! A missing socket or a refused connection is [`ApproveError::Absent`]:
//! the daemon is not running, and the module sends the code itself.
//!
//! Each request has its own deadline (connect and write
//! [`IO_TIMEOUT`]; the answer to `Approve` [`SEND_TIMEOUT`], to `Wait` its
//! wait plus [`WAIT_MARGIN`]): a stopped or starved daemon, or a module
//! whose caller stopped it, ends in [`ApproveError::Timeout`], never in a
//! login let through.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::approver::ApproveError;
use super::approver::{ApprovalRequest, Approved, Approver};
use super::wire::{self, ApprovalState, BlockKind, ErrorKind, Final, FrameError, Request};
use crate::secure_file::{Owner, check_dir};

/// Connecting, and writing a request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// The daemon's answer to `Approve`: its own send to Telegram (one warm
/// connection, its own HTTP deadline) plus slack.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Added to a `Wait`'s own wait for the answer to arrive.
pub const WAIT_MARGIN: Duration = Duration::from_secs(3);
/// The answer to `Status` (`Finish` is not awaited).
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The production [`Approver`]: one connection per login to the daemon's
/// socket (see the module docs).
pub struct Client {
    socket: PathBuf,
    /// Who must own the socket, its directory and the peer: root in
    /// production; a test's own uid in unit tests run unprivileged.
    owner: Owner,
    /// The connection of the last request the daemon answered, checked
    /// when it was made, for this login's next request (the daemon closes
    /// a connection idle for 30 s; see [`Client::exchange`]).
    kept: Option<UnixStream>,
}

impl Client {
    /// The daemon at `socket`, which root must own.
    pub fn new(socket: &Path) -> Client {
        Client::owned_by(socket, Owner::ROOT)
    }

    /// The daemon at `socket`, owned (with its peer) by `owner`.
    pub fn owned_by(socket: &Path, owner: Owner) -> Client {
        Client {
            socket: socket.to_path_buf(),
            owner,
            kept: None,
        }
    }

    /// Checks the socket path, connects, checks the peer.
    fn connect(&self) -> Result<UnixStream, ApproveError> {
        check_socket(&self.socket, self.owner)?;
        let stream = connect_within(&self.socket, IO_TIMEOUT)?;
        let uid = crate::system::fs::peer_uid(stream.as_fd())
            .map_err(|e| ApproveError::Protocol(format!("cannot read the peer's uid: {e}")))?;
        check_peer(uid, self.owner, &self.socket)?;
        Ok(stream)
    }

    /// One request and its answer, the answer awaited up to `answer_within`.
    /// On the connection kept from this login's last answered request if
    /// there is one (a login's `Finish` after its `Approve` costs no new
    /// connection and no second round of checks); on a new one if there is
    /// none, or if the daemon had closed the kept one before the request
    /// went out (a Unix socket refuses the write at once: `EPIPE`), which
    /// it does to a connection idle for 30 s.
    fn exchange(
        &mut self,
        request: &Request,
        answer_within: Duration,
    ) -> Result<Answer, ApproveError> {
        if let Some(stream) = self.kept.take() {
            match self.round_trip(stream, true, request, answer_within) {
                Err(Trip::Unsent) => {}
                Err(Trip::Failed(e)) => return Err(e),
                Ok(answer) => return Ok(answer),
            }
        }
        // Its write timeout is set: connect_within.
        let stream = self.connect()?;
        self.round_trip(stream, false, request, answer_within)
            .map_err(Trip::into_error)
    }

    /// Writes `request` and does not wait for its answer: on the kept
    /// connection, or on a new one if the daemon had closed that. Whatever
    /// the daemon answers is not read; the connection is closed.
    fn tell(&mut self, request: &Request) -> Result<(), ApproveError> {
        if let Some(mut stream) = self.kept.take() {
            match write_request(&mut stream, request) {
                Err(Trip::Unsent) => {}
                Err(Trip::Failed(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
        write_request(&mut self.connect()?, request).map_err(Trip::into_error)
    }

    /// [`Client::exchange`] on `stream`, kept for the next request if the
    /// daemon answered without an error.
    fn round_trip(
        &mut self,
        mut stream: UnixStream,
        reused: bool,
        request: &Request,
        answer_within: Duration,
    ) -> Result<Answer, Trip> {
        let io = |e: io::Error| Trip::Failed(ApproveError::Protocol(format!("socket: {e}")));
        stream.set_read_timeout(Some(answer_within)).map_err(io)?;
        write_request(&mut stream, request)?;
        // One recv for an answer of up to ANSWER_BUFFER bytes (all the module
        // acts on are), not one for the length and one for the body.
        let body = match wire::read_frame_body(&mut io::BufReader::with_capacity(
            ANSWER_BUFFER,
            &stream,
        )) {
            Ok(body) => body,
            // A kept connection the daemon closed as idle just as the
            // request went out, unread: asked again on a new one, unless
            // asking twice could do a thing twice (`Approve` sends).
            Err(e)
                if reused
                    && !matches!(request, Request::Approve { .. })
                    && closed_unanswered(&e) =>
            {
                return Err(Trip::Unsent);
            }
            Err(e) => return Err(Trip::Failed(frame_error(e))),
        };
        match decode(&body).map_err(|e| Trip::Failed(frame_error(e)))? {
            Answer::Error { kind, detail } => Err(Trip::Failed(ApproveError::Failed {
                kind,
                detail: detail.chars().take(300).collect(),
            })),
            answer => {
                self.kept = Some(stream);
                Ok(answer)
            }
        }
    }
}

/// Writes one request; [`Trip::Unsent`] if the daemon had closed the
/// connection (a Unix socket refuses the write at once).
fn write_request(stream: &mut UnixStream, request: &Request) -> Result<(), Trip> {
    match wire::write_frame(stream, request) {
        Ok(()) => Ok(()),
        Err(FrameError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Err(Trip::Unsent)
        }
        Err(e) => Err(Trip::Failed(frame_error(e))),
    }
}

/// The connection ended before any byte of an answer.
fn closed_unanswered(e: &FrameError) -> bool {
    match e {
        FrameError::Closed => true,
        FrameError::Io(e) => e.kind() == io::ErrorKind::ConnectionReset,
        _ => false,
    }
}

/// What one read of an answer takes in at most ([`Client::round_trip`]).
const ANSWER_BUFFER: usize = 512;

/// How a request on one connection ended, when it did not end in an answer.
enum Trip {
    /// The connection was closed before the request could be written, or
    /// (a kept one, for a request that may be asked twice) before it was
    /// answered: it may be sent again on a new one.
    Unsent,
    Failed(ApproveError),
}

impl Trip {
    /// On a new connection, where there is nothing to fall back to.
    fn into_error(self) -> ApproveError {
        match self {
            Trip::Unsent => {
                ApproveError::Protocol("socket: the daemon closed the connection".into())
            }
            Trip::Failed(e) => e,
        }
    }
}

/// A [`wire::Response`] as far as the module acts on it. The module reads
/// the daemon's JSON through `serde_json::Value` (which reads the HTTP
/// gateways' answers already) rather than through the derived
/// `Deserialize` of the whole internally tagged enum, whose `updates` and
/// status fields it never uses: a module-size choice (BENCHMARKS.md). The
/// wire format is [`wire::Response`]'s, unchanged; [`decode`] accepts the
/// answers the module acts on exactly when that type does (the tests
/// below hold the two together).
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Sent,
    Blocked {
        block: BlockKind,
        until: u64,
        backup_codes: u32,
    },
    State(ApprovalState),
    Done,
    Status,
    /// `updates`: never the answer to a request of the module's.
    Updates,
    Error {
        kind: ErrorKind,
        detail: String,
    },
}

/// One frame's body as an [`Answer`]; anything [`wire::Response`] would
/// not read (another shape, an unknown field or variant, a missing or
/// mistyped field) is [`FrameError::Malformed`].
fn decode(body: &[u8]) -> Result<Answer, FrameError> {
    use serde_json::Value;
    let bad = |why: String| FrameError::Malformed(why);
    let text = std::str::from_utf8(body).map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(bad("not a JSON object".into()));
    };
    let tag = match fields.remove("result") {
        Some(Value::String(tag)) => tag,
        Some(_) => return Err(bad("`result` is not a string".into())),
        None => return Err(bad("missing field `result`".into())),
    };
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| bad(format!("missing field `{name}`")))
    };
    let invalid = |name: &str| bad(format!("invalid value of `{name}`"));
    // `known`: the variant's fields; `None` for `done`, a unit variant,
    // which serde reads whatever else the object holds.
    let (answer, known): (Answer, Option<&[&str]>) = match tag.as_str() {
        "sent" => {
            field("message_id")?
                .as_i64()
                .ok_or_else(|| invalid("message_id"))?;
            (Answer::Sent, Some(&["message_id"]))
        }
        "blocked" => {
            let block = field("block")?
                .as_str()
                .and_then(block_kind)
                .ok_or_else(|| invalid("block"))?;
            let until = field("until")?.as_u64().ok_or_else(|| invalid("until"))?;
            let backup_codes = field("backup_codes")?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("backup_codes"))?;
            let answer = Answer::Blocked {
                block,
                until,
                backup_codes,
            };
            (answer, Some(&["block", "until", "backup_codes"]))
        }
        "state" => {
            let state = field("state")?
                .as_str()
                .and_then(approval_state)
                .ok_or_else(|| invalid("state"))?;
            (Answer::State(state), Some(&["state"]))
        }
        "done" => (Answer::Done, None),
        "updates" => (Answer::Updates, Some(&["updates"])),
        "status" => {
            if !is_status(field("status")?) {
                return Err(invalid("status"));
            }
            (Answer::Status, Some(&["status"]))
        }
        "error" => {
            let kind = field("kind")?
                .as_str()
                .and_then(error_kind)
                .ok_or_else(|| invalid("kind"))?;
            let detail = field("detail")?
                .as_str()
                .ok_or_else(|| invalid("detail"))?
                .to_string();
            (Answer::Error { kind, detail }, Some(&["kind", "detail"]))
        }
        other => return Err(bad(format!("unknown variant `{other}`"))),
    };
    let unknown = |k: &&String| known.is_some_and(|known| !known.contains(&k.as_str()));
    if let Some(key) = fields.keys().find(unknown) {
        return Err(bad(format!("unknown field `{key}`")));
    }
    Ok(answer)
}

/// [`ApprovalState`] by its wire name.
fn approval_state(name: &str) -> Option<ApprovalState> {
    Some(match name {
        "pending" => ApprovalState::Pending,
        "approved" => ApprovalState::Approved,
        "wrong" => ApprovalState::Wrong,
        "not_me" => ApprovalState::NotMe,
        "gone" => ApprovalState::Gone,
        _ => return None,
    })
}

/// [`BlockKind`] by its wire name.
fn block_kind(name: &str) -> Option<BlockKind> {
    Some(match name {
        "locked_out" => BlockKind::LockedOut,
        "too_many_codes" => BlockKind::TooManyCodes,
        _ => return None,
    })
}

/// [`ErrorKind`] by its wire name.
fn error_kind(name: &str) -> Option<ErrorKind> {
    Some(match name {
        "unreachable" => ErrorKind::Unreachable,
        "refused" => ErrorKind::Refused,
        "service_failed" => ErrorKind::ServiceFailed,
        "rejected" => ErrorKind::Rejected,
        "misconfigured" => ErrorKind::Misconfigured,
        "local" => ErrorKind::Local,
        "bad_request" => ErrorKind::BadRequest,
        "version" => ErrorKind::Version,
        "busy" => ErrorKind::Busy,
        "state" => ErrorKind::State,
        _ => return None,
    })
}

/// Would `value` read as a [`wire::DaemonStatus`]? (Unknown keys are
/// ignored there, as here.)
fn is_status(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let Value::Object(m) = value else {
        return false;
    };
    let optional =
        |key: &str, ok: fn(&Value) -> bool| m.get(key).is_none_or(|v| v.is_null() || ok(v));
    m.get("daemon").is_some_and(Value::is_string)
        && m.get("started").is_some_and(Value::is_u64)
        && optional("last_update_at", Value::is_u64)
        && optional("webhook", Value::is_string)
        && m.get("pending")
            .and_then(Value::as_u64)
            .is_some_and(|p| u32::try_from(p).is_ok())
}

/// The process at the other end must be `owner` (root).
pub(crate) fn check_peer(uid: u32, owner: Owner, socket: &Path) -> Result<(), ApproveError> {
    if uid != owner.0 {
        return Err(ApproveError::Unsafe(format!(
            "{}: the process listening is uid {uid}, not uid {}",
            socket.display(),
            owner.0
        )));
    }
    Ok(())
}

fn frame_error(e: FrameError) -> ApproveError {
    match e {
        FrameError::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            ApproveError::Timeout
        }
        FrameError::Closed => ApproveError::Protocol("the daemon closed the connection".into()),
        other => ApproveError::Protocol(other.to_string()),
    }
}

fn unexpected(answer: &Answer) -> ApproveError {
    let what = match answer {
        Answer::Sent => "sent",
        Answer::Blocked { .. } => "blocked",
        Answer::State(_) => "state",
        Answer::Done => "done",
        Answer::Updates => "updates",
        Answer::Status => "status",
        Answer::Error { .. } => "error",
    };
    ApproveError::Protocol(format!("unexpected answer {what:?}"))
}

/// The checks before connecting; see the module docs.
pub fn check_socket(path: &Path, owner: Owner) -> Result<(), ApproveError> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ApproveError::Absent(format!("{shown}: no such socket")));
        }
        Err(e) => return Err(ApproveError::Unsafe(format!("{shown}: cannot check: {e}"))),
    };
    if !meta.file_type().is_socket() {
        return Err(ApproveError::Unsafe(format!("{shown}: not a socket")));
    }
    if meta.uid() != owner.0 {
        return Err(ApproveError::Unsafe(format!(
            "{shown}: owned by uid {}, must be owned by uid {}",
            meta.uid(),
            owner.0
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(ApproveError::Unsafe(format!(
            "{shown}: mode {:04o} gives group or others access (must be 0600)",
            meta.mode() & 0o7777
        )));
    }
    check_dir(path, owner).map_err(|e| ApproveError::Unsafe(e.to_string()))
}

/// Connects with a deadline: a blocking connect to a Unix socket whose
/// backlog is full waits up to the socket's send timeout, set first.
pub(crate) fn connect_within(path: &Path, timeout: Duration) -> Result<UnixStream, ApproveError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let shown = path.display();
    let io = |e: io::Error| ApproveError::Protocol(format!("{shown}: {e}"));
    let addr = SockAddr::unix(path).map_err(io)?;
    // socket2 sets SOCK_CLOEXEC on Linux.
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io)?;
    socket.set_write_timeout(Some(timeout)).map_err(io)?;
    match socket.connect(&addr) {
        Ok(()) => Ok(UnixStream::from(std::os::fd::OwnedFd::from(socket))),
        Err(e) => Err(match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                ApproveError::Absent(format!("{shown}: {e}"))
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ApproveError::Timeout,
            _ => io(e),
        }),
    }
}

/// `Wait` asked in turns of at most [`wire::MAX_WAIT_MS`] (`once` asks one)
/// until the state leaves `Pending` or `wait` is over: `[approve] wait` may
/// be longer than one request may hold. The module's client and the
/// daemon's own logins (pam-gatewayd's `host`) wait so.
pub fn wait_in_turns(
    wait: Duration,
    mut once: impl FnMut(Duration) -> Result<ApprovalState, ApproveError>,
) -> Result<ApprovalState, ApproveError> {
    let start = std::time::Instant::now();
    loop {
        let left = wait.saturating_sub(start.elapsed());
        let chunk = left.min(Duration::from_millis(wire::MAX_WAIT_MS));
        let asked = std::time::Instant::now();
        let state = once(chunk)?;
        if state != ApprovalState::Pending || start.elapsed() >= wait {
            return Ok(state);
        }
        // A daemon that answers Pending early is not asked in a loop.
        if asked.elapsed() + Duration::from_millis(200) < chunk {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Client {
    fn wait_once(&mut self, nonce: &str, wait: Duration) -> Result<ApprovalState, ApproveError> {
        let request = Request::Wait {
            version: wire::VERSION,
            nonce: nonce.to_string(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(wire::MAX_WAIT_MS),
        };
        match self.exchange(&request, wait + WAIT_MARGIN)? {
            Answer::State(state) => Ok(state),
            other => Err(unexpected(&other)),
        }
    }
}

impl Approver for Client {
    fn approve(&mut self, r: &ApprovalRequest) -> Result<Approved, ApproveError> {
        let request = r.to_wire();
        let answer = self.exchange(&request, SEND_TIMEOUT);
        // The request held the message, and so the code.
        if let Request::Approve { mut text, .. } = request {
            zeroize::Zeroize::zeroize(&mut text);
        }
        match answer? {
            Answer::Sent => Ok(Approved::Sent),
            // Only an answer to a request that asked for the reservation.
            Answer::Blocked {
                block,
                until,
                backup_codes,
            } if r.reserve.is_some() => Ok(Approved::blocked(block, until, backup_codes)),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits in requests of at most [`wire::MAX_WAIT_MS`] each until the
    /// state leaves `Pending` or `wait` is over (`[approve] wait` may be
    /// longer than one request may hold).
    fn wait(&mut self, nonce: &str, wait: Duration) -> Result<ApprovalState, ApproveError> {
        wait_in_turns(wait, |chunk| self.wait_once(nonce, chunk))
    }

    /// Written, not awaited: the daemon answers `done` at once whatever
    /// the nonce (the edit is queued, and a nonce it does not know has
    /// nothing to edit), so the answer would tell the login nothing, and
    /// waiting for it would cost the PAM process a sleep and a wake-up
    /// (BENCHMARKS.md, session 9). The daemon reads a request its client
    /// closed after writing, as any other.
    fn finish(&mut self, nonce: &str, result: Final) -> Result<(), ApproveError> {
        self.tell(&Request::Finish {
            version: wire::VERSION,
            nonce: nonce.to_string(),
            result,
        })
    }

    fn available(&mut self) -> bool {
        let request = Request::Status {
            version: wire::VERSION,
        };
        matches!(self.exchange(&request, SHORT_TIMEOUT), Ok(Answer::Status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::super::wire::Response;
    use crate::limits::Block;
    use crate::test_dir::TestDir;

    /// A private directory (0700, ours) with a listener at `d.sock`, mode 0600.
    fn listener() -> (TestDir, PathBuf, UnixListener) {
        let dir = TestDir::new("approve");
        let path = dir.join("d.sock");
        let l = UnixListener::bind(&path).expect("bind");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (dir, path, l)
    }

    fn client(path: &Path) -> Client {
        Client::owned_by(path, Owner::current())
    }

    /// Answers one connection: reads one request, hands it to the test,
    /// writes `answer`.
    fn serve_one(l: UnixListener, answer: Response) -> thread::JoinHandle<Request> {
        thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let req: Request = wire::read_frame(&mut s).expect("request");
            wire::write_frame(&mut s, &answer).expect("answer");
            req
        })
    }

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            nonce: "ab".repeat(16),
            user: "alice".into(),
            chat_id: 42,
            text: "Login alice@h: code 123456".into(),
            numbers: [17, 42, 88],
            answer: 42,
            expires_in_secs: 120,
            reserve: None,
        }
    }

    /// `blocked` is an answer only to a request that asked for the
    /// reservation: to one that did not, it is a protocol error.
    #[test]
    fn blocked_is_read_only_after_a_reservation() {
        use super::super::wire::Reserve;
        let blocked = Response::Blocked {
            block: BlockKind::TooManyCodes,
            until: 99,
            backup_codes: 2,
        };
        let (_d, path, l) = listener();
        let _h = serve_one(l, blocked.clone());
        assert!(matches!(
            client(&path).approve(&request()),
            Err(ApproveError::Protocol(_))
        ));
        let (_d, path, l) = listener();
        let h = serve_one(l, blocked);
        let mut asked = request();
        asked.reserve = Some(Reserve {
            state_dir: "/var/lib/pam_gateway".into(),
            codes_per_window: 5,
            window: 900,
            failures_before_lockout: 5,
            lockout: 900,
            max_lockout: 86_400,
        });
        assert_eq!(
            client(&path).approve(&asked),
            Ok(Approved::Blocked {
                block: Block::TooManyCodes { until: 99 },
                backup_codes: 2
            })
        );
        match h.join().expect("server") {
            Request::Approve { reserve, .. } => assert_eq!(reserve, asked.reserve),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn approve_wait_finish_status_round_trip() {
        let (_d, path, l) = listener();
        let h = serve_one(l, Response::Sent { message_id: 7 });
        client(&path).approve(&request()).expect("approve");
        match h.join().expect("server") {
            Request::Approve {
                nonce,
                chat_id,
                numbers,
                answer,
                expires_in_secs,
                user,
                ..
            } => {
                assert_eq!(
                    (
                        nonce.len(),
                        chat_id,
                        numbers,
                        answer,
                        expires_in_secs,
                        user.as_str()
                    ),
                    (32, 42, [17, 42, 88], 42, 120, "alice")
                );
            }
            other => panic!("{other:?}"),
        }

        let l = UnixListener::bind(path.with_file_name("w.sock")).expect("bind");
        let wpath = path.with_file_name("w.sock");
        std::fs::set_permissions(&wpath, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let h = serve_one(
            l,
            Response::State {
                state: ApprovalState::NotMe,
            },
        );
        let state = client(&wpath)
            .wait("n1", Duration::from_secs(999))
            .expect("wait");
        assert_eq!(state, ApprovalState::NotMe);
        match h.join().expect("server") {
            Request::Wait { nonce, wait_ms, .. } => {
                assert_eq!(
                    (nonce.as_str(), wait_ms),
                    ("n1", wire::MAX_WAIT_MS),
                    "capped"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// Serves one connection as the daemon does: each request in turn
    /// (answered with the next of `answers`, or `done` once they are used
    /// up) until the client closes it. Hands back the requests, and
    /// whether anyone else connected meanwhile.
    fn serve_conn(
        l: UnixListener,
        answers: Vec<Response>,
    ) -> thread::JoinHandle<(Vec<Request>, bool)> {
        thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut answers = answers.into_iter();
            let mut asked = Vec::new();
            loop {
                match wire::read_frame::<Request>(&mut s) {
                    Ok(req) => asked.push(req),
                    Err(FrameError::Closed) => break,
                    // Closed with our last answer unread (Finish's `done`).
                    Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => break,
                    Err(e) => panic!("{e}"),
                }
                let answer = answers.next().unwrap_or(Response::Done);
                // A client that does not read the answer may be gone.
                let _ = wire::write_frame(&mut s, &answer);
            }
            l.set_nonblocking(true).expect("nonblocking");
            (asked, l.accept().is_ok())
        })
    }

    /// A login's requests after the first go on the first one's
    /// connection: no second connect, no second round of checks.
    #[test]
    fn a_login_s_requests_share_one_connection() {
        let (_d, path, l) = listener();
        let h = serve_conn(
            l,
            vec![
                Response::Sent { message_id: 7 },
                Response::State {
                    state: ApprovalState::Approved,
                },
            ],
        );
        let mut c = client(&path);
        assert_eq!(c.approve(&request()), Ok(Approved::Sent));
        assert_eq!(
            c.wait("n", Duration::from_secs(1)),
            Ok(ApprovalState::Approved)
        );
        assert_eq!(c.finish("n", Final::Approved), Ok(()));
        // Finish closed the connection: the server's loop ends.
        let (asked, another) = h.join().expect("server");
        let ops: Vec<&str> = asked
            .iter()
            .map(|r| match r {
                Request::Approve { .. } => "approve",
                Request::Wait { .. } => "wait",
                Request::Finish { result, .. } => {
                    assert_eq!(*result, Final::Approved);
                    "finish"
                }
                _ => "other",
            })
            .collect();
        assert_eq!(ops, ["approve", "wait", "finish"]);
        assert!(!another, "a second connection was made");
    }

    /// The daemon closes a connection idle for 30 s: the next request
    /// goes on a new one, checked as the first was.
    #[test]
    fn a_kept_connection_the_daemon_closed_is_replaced() {
        for finish in [false, true] {
            let (_d, path, l) = listener();
            let (closed, until_closed) = std::sync::mpsc::channel::<()>();
            let h = thread::spawn(move || {
                let (mut s, _) = l.accept().expect("accept");
                let _: Request = wire::read_frame(&mut s).expect("approve");
                wire::write_frame(&mut s, &Response::Sent { message_id: 1 }).expect("answer");
                drop(s);
                closed.send(()).expect("client alive");
                let (mut s, _) = l.accept().expect("second accept");
                let req: Request = wire::read_frame(&mut s).expect("request");
                let _ = wire::write_frame(
                    &mut s,
                    &Response::State {
                        state: ApprovalState::Approved,
                    },
                );
                req
            });
            let mut c = client(&path);
            assert_eq!(c.approve(&request()), Ok(Approved::Sent));
            until_closed.recv().expect("server closed its end");
            if finish {
                assert_eq!(c.finish("n", Final::Expired), Ok(()));
            } else {
                assert_eq!(
                    c.wait("n", Duration::from_millis(1)),
                    Ok(ApprovalState::Approved)
                );
            }
            match (h.join().expect("server"), finish) {
                (Request::Finish { result, .. }, true) => assert_eq!(result, Final::Expired),
                (Request::Wait { .. }, false) => {}
                (other, _) => panic!("{other:?}"),
            }
        }
    }

    /// The daemon's idle timeout can close a kept connection just as a
    /// request arrives, unread: a `Wait` is asked again on a new
    /// connection; an `Approve` (it sends a message) is not.
    #[test]
    fn a_kept_connection_closed_unanswered_is_asked_again_unless_approve() {
        let (_d, path, l) = listener();
        let h = thread::spawn(move || {
            let mut asked = Vec::new();
            let (mut s, _) = l.accept().expect("accept");
            let _: Request = wire::read_frame(&mut s).expect("approve");
            wire::write_frame(&mut s, &Response::Sent { message_id: 1 }).expect("answer");
            // Read, not answered, closed.
            asked.push(wire::read_frame::<Request>(&mut s).expect("wait"));
            drop(s);
            let (mut s, _) = l.accept().expect("second accept");
            asked.push(wire::read_frame::<Request>(&mut s).expect("wait again"));
            let approved = Response::State {
                state: ApprovalState::Approved,
            };
            wire::write_frame(&mut s, &approved).expect("answer");
            // The same for an Approve on the kept connection: closed, and
            // no third connection is made.
            asked.push(wire::read_frame::<Request>(&mut s).expect("approve"));
            drop(s);
            l.set_nonblocking(true).expect("nonblocking");
            (asked, l.accept().is_ok())
        });
        let mut c = client(&path);
        assert_eq!(c.approve(&request()), Ok(Approved::Sent));
        assert_eq!(
            c.wait("n", Duration::from_secs(1)),
            Ok(ApprovalState::Approved)
        );
        assert!(matches!(
            c.approve(&request()),
            Err(ApproveError::Protocol(_))
        ));
        let (asked, third) = h.join().expect("server");
        assert!(matches!(
            asked.as_slice(),
            [
                Request::Wait { .. },
                Request::Wait { .. },
                Request::Approve { .. }
            ]
        ));
        assert!(!third, "an Approve was sent again");
    }

    /// Finish is written and not awaited: a daemon that reads it and
    /// never answers does not hold the login (were it awaited, this
    /// would be a timeout after SHORT_TIMEOUT).
    #[test]
    fn finish_is_written_and_not_awaited() {
        let (_d, path, l) = listener();
        let (done, until_done) = std::sync::mpsc::channel::<()>();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let req: Request = wire::read_frame(&mut s).expect("request");
            let _ = until_done.recv();
            req
        });
        assert_eq!(client(&path).finish("n1", Final::Used), Ok(()));
        done.send(()).expect("server alive");
        match h.join().expect("server") {
            Request::Finish { nonce, result, .. } => {
                assert_eq!((nonce.as_str(), result), ("n1", Final::Used));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_long_wait_is_asked_in_turns_until_the_state_changes() {
        let (_d, path, l) = listener();
        let h = thread::spawn(move || {
            let mut asked = Vec::new();
            // One connection, as the client keeps it between requests.
            let (mut s, _) = l.accept().expect("accept");
            for state in [ApprovalState::Pending, ApprovalState::Approved] {
                let req: Request = wire::read_frame(&mut s).expect("request");
                asked.push(req);
                wire::write_frame(&mut s, &Response::State { state }).expect("answer");
            }
            asked
        });
        let got = client(&path).wait("n", Duration::from_secs(5));
        assert_eq!(got, Ok(ApprovalState::Approved));
        let asked = h.join().expect("server");
        assert_eq!(asked.len(), 2, "asked again after an early Pending");
    }

    #[test]
    fn a_daemon_error_is_failed_with_its_kind() {
        let (_d, path, l) = listener();
        let _h = serve_one(
            l,
            Response::Error {
                kind: ErrorKind::Refused,
                detail: "Forbidden: bot was blocked by the user".into(),
            },
        );
        assert_eq!(
            client(&path).approve(&request()),
            Err(ApproveError::Failed {
                kind: ErrorKind::Refused,
                detail: "Forbidden: bot was blocked by the user".into()
            })
        );
    }

    /// The module's [`decode`] reads what [`wire::Response`] reads, as
    /// the same answer, and refuses what it refuses.
    #[test]
    fn decode_agrees_with_the_wire_type() {
        use super::super::wire::{DaemonStatus, TextUpdate};
        let as_answer = |r: &Response| match r {
            Response::Sent { .. } => Answer::Sent,
            Response::Blocked {
                block,
                until,
                backup_codes,
            } => Answer::Blocked {
                block: *block,
                until: *until,
                backup_codes: *backup_codes,
            },
            Response::State { state } => Answer::State(*state),
            Response::Done => Answer::Done,
            Response::Updates { .. } => Answer::Updates,
            Response::Status { .. } => Answer::Status,
            Response::Error { kind, detail } => Answer::Error {
                kind: *kind,
                detail: detail.clone(),
            },
        };
        let mut bodies: Vec<String> = Vec::new();
        let states = [
            ApprovalState::Pending,
            ApprovalState::Approved,
            ApprovalState::Wrong,
            ApprovalState::NotMe,
            ApprovalState::Gone,
        ];
        let kinds = [
            ErrorKind::Unreachable,
            ErrorKind::Refused,
            ErrorKind::ServiceFailed,
            ErrorKind::Rejected,
            ErrorKind::Misconfigured,
            ErrorKind::Local,
            ErrorKind::BadRequest,
            ErrorKind::Version,
            ErrorKind::Busy,
            ErrorKind::State,
        ];
        let status = DaemonStatus {
            daemon: "0.1.0".into(),
            started: 1,
            last_update_at: Some(2),
            webhook: None,
            pending: 3,
        };
        let update = TextUpdate {
            update_id: 1,
            chat_id: 2,
            chat_type: "private".into(),
            from_id: None,
            username: None,
            first_name: Some("A".into()),
            last_name: None,
            text: "hi".into(),
        };
        let mut responses = vec![
            Response::Sent { message_id: -7 },
            Response::Blocked {
                block: BlockKind::TooManyCodes,
                until: 1_700_000_000,
                backup_codes: 0,
            },
            Response::Blocked {
                block: BlockKind::LockedOut,
                until: u64::MAX,
                backup_codes: 7,
            },
            Response::Done,
            Response::Status { status },
            Response::Updates {
                updates: vec![update],
            },
        ];
        responses.extend(states.map(|state| Response::State { state }));
        responses.extend(kinds.map(|kind| Response::Error {
            kind,
            detail: "x \"y\"".into(),
        }));
        for r in &responses {
            bodies.push(serde_json::to_string(r).expect("json"));
        }
        bodies.extend(
            [
                r#"{"result":"sent"}"#,
                r#"{"result":"sent","message_id":"7"}"#,
                r#"{"result":"sent","message_id":1.5}"#,
                r#"{"result":"sent","message_id":18446744073709551615}"#,
                r#"{"result":"sent","message_id":7,"extra":1}"#,
                r#"{"message_id":7}"#,
                r#"{"result":7}"#,
                r#"{"result":"granted"}"#,
                r#"{"result":"state","state":"maybe"}"#,
                r#"{"result":"state","state":null}"#,
                r#"{"result":"state"}"#,
                r#"{"result":"done","state":"gone"}"#,
                r#"{"result":"blocked","block":"locked_out","until":1}"#,
                r#"{"result":"blocked","block":"frozen","until":1,"backup_codes":0}"#,
                r#"{"result":"blocked","block":"locked_out","until":-1,"backup_codes":0}"#,
                r#"{"result":"blocked","block":"locked_out","until":1,"backup_codes":4294967296}"#,
                r#"{"result":"blocked","block":"locked_out","until":1,"backup_codes":0,"x":0}"#,
                r#"{"result":"error","kind":"refused"}"#,
                r#"{"result":"error","kind":"nope","detail":""}"#,
                r#"{"result":"error","kind":"busy","detail":5}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1,"pending":0}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1,"pending":0,"x":[]}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1,"pending":0,"webhook":"h","last_update_at":null}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":-1,"pending":0}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1,"pending":4294967296}}"#,
                r#"{"result":"status","status":{"daemon":"d","started":1,"pending":0,"webhook":1}}"#,
                r#"{"result":"status","status":[]}"#,
                r#"{"result":"status"}"#,
                r#"[]"#,
                r#"null"#,
                r#"not json"#,
                "{\"result\":\"done\"} x",
            ]
            .map(String::from),
        );
        for body in &bodies {
            let wire = serde_json::from_str::<Response>(body);
            let ours = decode(body.as_bytes());
            match (&wire, &ours) {
                (Ok(r), Ok(a)) => assert_eq!(&as_answer(r), a, "{body}"),
                (Err(_), Err(FrameError::Malformed(_))) => {}
                _ => panic!("{body}: wire {wire:?}, module {ours:?}"),
            }
        }
        assert!(matches!(
            decode(b"{\"result\":\"done\",\xff:1}"),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_wrong_answer_type_is_a_protocol_error() {
        let (_d, path, l) = listener();
        let _h = serve_one(l, Response::Done);
        assert!(matches!(
            client(&path).wait("n", Duration::from_millis(10)),
            Err(ApproveError::Protocol(_))
        ));
    }

    #[test]
    fn no_socket_or_nobody_listening_is_absent() {
        let (_d, path, l) = listener();
        let missing = path.with_file_name("none.sock");
        assert!(matches!(
            client(&missing).finish("n", Final::Used),
            Err(ApproveError::Absent(_))
        ));
        // The socket file stays, its listener is gone: ECONNREFUSED.
        drop(l);
        match client(&path).finish("n", Final::Used) {
            Err(ApproveError::Absent(why)) => assert!(why.contains("refused"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!client(&path).available());
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let (_d, path, l) = listener();
        // Accepts and reads, never answers; keeps the connection open until
        // the client gave up.
        let (done, until_done) = std::sync::mpsc::channel::<()>();
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let _req: Request = wire::read_frame(&mut s).expect("request");
            let _ = until_done.recv();
        });
        let got = client(&path).wait("n", Duration::from_millis(1));
        assert_eq!(got, Err(ApproveError::Timeout));
        done.send(()).expect("server alive");
        h.join().expect("server");
    }

    #[test]
    fn a_socket_open_to_others_or_not_a_socket_is_unsafe() {
        let (_d, path, _l) = listener();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        match client(&path).finish("n", Final::Used) {
            Err(ApproveError::Unsafe(why)) => assert!(why.contains("mode 0666"), "{why}"),
            other => panic!("{other:?}"),
        }
        let file = path.with_file_name("plain");
        std::fs::write(&file, "").expect("write");
        match check_socket(&file, Owner::current()) {
            Err(ApproveError::Unsafe(why)) => assert!(why.contains("not a socket"), "{why}"),
            other => panic!("{other:?}"),
        }
        let link = path.with_file_name("link.sock");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            check_socket(&link, Owner::current()),
            Err(ApproveError::Unsafe(_))
        ));
    }

    #[test]
    fn a_socket_of_another_owner_or_in_an_open_directory_is_unsafe() {
        let (d, path, _l) = listener();
        let other = Owner(Owner::current().0 + 1);
        match check_socket(&path, other) {
            Err(ApproveError::Unsafe(why)) => assert!(why.contains("owned by uid"), "{why}"),
            r => panic!("{r:?}"),
        }
        std::fs::set_permissions(&*d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        match check_socket(&path, Owner::current()) {
            Err(ApproveError::Unsafe(why)) => assert!(why.contains("directory"), "{why}"),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_peer_of_another_uid_is_unsafe() {
        // The socket and its directory pass as ours; the listener is ours
        // too, so asking for another owner of the peer only is what fails:
        // the check runs after connect on SO_PEERCRED.
        let (_d, path, l) = listener();
        let _h = thread::spawn(move || {
            let _ = l.accept();
        });
        let c = Client::owned_by(&path, Owner::current());
        let stream = c.connect().expect("connect");
        let uid = crate::system::fs::peer_uid(stream.as_fd()).expect("uid");
        assert_eq!(uid, Owner::current().0);
        // Through the client's own check: a daemon not run by the owner.
        let mismatch = check_peer(uid, Owner(uid + 1), &path);
        assert!(
            matches!(mismatch, Err(ApproveError::Unsafe(_))),
            "{mismatch:?}"
        );
    }
}
