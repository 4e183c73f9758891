//! A login pam-gatewayd runs: the module's side.
//!
//! With the daemon running, the PAM process does not read gateway.toml,
//! the users file or the state, look the user up in NSS, or open syslog:
//! it sends the login's facts ([`Request::Login`]) and shows what the
//! daemon asks through the PAM conversation ([`HostMsg::Ask`]) until the
//! daemon says how the login ended ([`HostMsg::Outcome`]). The daemon
//! runs the same flow the module would, on the same files (issue 14's
//! per-login cost in the PAM process; BENCHMARKS.md).
//!
//! The daemon only adds; it is never a new way in:
//! - no socket, or nobody listening: [`Hosted::Local`] with nothing to
//!   log, and the module runs the login itself as without the daemon;
//! - an unsafe socket or peer (the checks of [`super::client`]), a daemon
//!   that declines (another config, `[approve]` off), is busy, answers
//!   garbage or nothing in time, or goes away before the code went out:
//!   [`Hosted::Local`] from the start, the reason logged;
//! - the daemon goes away after the code went out: [`Hosted::Local`] with
//!   the [`Handover`] the daemon gave before the first prompt, and the
//!   answer typed but not yet judged: the module finishes the same
//!   dialogue itself ([`crate::flow::Flow::resume`]), so the code the user
//!   got still works;
//! - a conversation that fails is told to the daemon, which ends the login
//!   as the module would (PAM_CONV_ERR).
//!
//! Every read has a deadline: the first answer [`FIRST_WITHIN`] (the
//! daemon's sends, each bounded by its gateway's timeout), each later one
//! the `reply_within_ms` its question gave (at most [`MAX_REPLY_WITHIN`]).
//! A caller of su who stops this process does not get a second dialogue
//! out of it: the daemon ends a login whose module stops answering, and
//! its last frame (read before anything is resumed) says how.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::approver::ApproveError;
use super::client::{IO_TIMEOUT, check_peer, check_socket, connect_within};
use super::wire::{self, AskStyle, FrameError, Handover, HostMsg, HostReply, PamResult, Request};
use crate::code::MAX_ANSWER_LEN;
use crate::flow::{Answer, ConvError, Conversation};
use crate::secure_file::Owner;

/// The daemon's first frame: it reads the files, looks the user up and
/// sends (each gateway bounded by its own timeout) before it asks.
pub const FIRST_WITHIN: Duration = Duration::from_secs(90);
/// The most a question's `reply_within_ms` is taken to mean.
pub const MAX_REPLY_WITHIN: Duration = Duration::from_secs(super::MAX_WAIT + 60);
/// After a reply could not be written: how long the daemon's last frame
/// (already written, or about to be) is waited for.
pub const DRAIN_WITHIN: Duration = Duration::from_millis(500);

/// How the daemon's part of a login ended.
pub enum Hosted {
    /// The daemon ran the login to this end.
    Done(PamResult),
    /// The module runs the login itself; `why` is for its log (`None`:
    /// no daemon, nothing to say).
    Local {
        why: Option<String>,
        resume: Option<Resume>,
    },
}

/// A login the daemon went away from after the code went out.
pub struct Resume {
    pub handover: Handover,
    /// The answer the daemon was sent and did not judge, for the module to
    /// judge first (no second prompt for it).
    pub pending: Option<Answer>,
}

/// Offers the login (`login`, a [`Request::Login`]) to the daemon at
/// `socket`, which `owner` (root) must own, and holds the conversation for
/// it.
pub fn run(socket: &Path, owner: Owner, login: &Request, conv: &mut dyn Conversation) -> Hosted {
    let stream = match connect(socket, owner) {
        Ok(s) => s,
        Err(ApproveError::Absent(_)) => {
            return Hosted::Local {
                why: None,
                resume: None,
            };
        }
        Err(e) => return from_start(format!("{e}")),
    };
    if let Err(e) = wire::write_frame(&mut &stream, login) {
        return from_start(format!("pam-gatewayd: {e}"));
    }
    let mut handover: Option<Handover> = None;
    let mut pending: Option<Answer> = None;
    let mut within = FIRST_WITHIN;
    // One recv for frames the daemon wrote together (a handover and the
    // first prompt), not one for each length and body.
    let mut frames = io::BufReader::with_capacity(FRAME_BUFFER, &stream);
    loop {
        let msg = match read(&mut frames, within) {
            Ok(msg) => msg,
            Err(e) => return lost(&e, handover, pending),
        };
        // Any frame after a reply: the daemon took the answer.
        pending = None;
        match msg {
            HostMsg::Outcome { verdict } => return Hosted::Done(verdict),
            HostMsg::Decline { why } if handover.is_none() => {
                return from_start(format!("pam-gatewayd does not run this login: {why}"));
            }
            HostMsg::Handover { handover: h } if handover.is_none() => handover = Some(h),
            HostMsg::Ask {
                style,
                text,
                reply_within_ms,
            } => {
                within = Duration::from_millis(reply_within_ms).min(MAX_REPLY_WITHIN);
                let (reply, answer) = ask(conv, style, &text);
                let written = wire::write_frame(&mut &stream, &reply);
                if let HostReply::Reply {
                    answer: Some(mut bytes),
                } = reply
                {
                    zeroize::Zeroize::zeroize(&mut bytes);
                }
                if let Err(e) = written {
                    // The daemon ended the login (this process was stopped
                    // past its deadline, say): its last frame says how.
                    if let Ok(HostMsg::Outcome { verdict }) = read(&mut frames, DRAIN_WITHIN) {
                        return Hosted::Done(verdict);
                    }
                    return lost(&e, handover, answer);
                }
                pending = answer;
            }
            HostMsg::Error { kind, detail } => {
                // `detail` is redacted by the daemon.
                let e = io::Error::other(format!(
                    "answered {kind:?}: {}",
                    detail.chars().take(300).collect::<String>()
                ));
                return lost(&FrameError::Io(e), handover, None);
            }
            HostMsg::Decline { .. } | HostMsg::Handover { .. } => {
                let e = FrameError::Malformed("a second handover or a late decline".into());
                return lost(&e, handover, None);
            }
        }
    }
}

/// The login from its start, in the module, with `why` logged.
fn from_start(why: String) -> Hosted {
    Hosted::Local {
        why: Some(why),
        resume: None,
    }
}

/// The daemon went away: the module goes on from where it was.
fn lost(e: &FrameError, handover: Option<Handover>, pending: Option<Answer>) -> Hosted {
    let what = match e {
        FrameError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            "did not answer in time".to_string()
        }
        // serde's message may quote the frame, and a handover holds the
        // code: only that it was not one.
        FrameError::Malformed(_) => "answered something that is not a frame of a login".into(),
        other => other.to_string(),
    };
    let step = if handover.is_some() {
        "the module finishes the login with the code that went out"
    } else {
        "the module runs the login itself"
    };
    Hosted::Local {
        why: Some(format!("pam-gatewayd: {what}; {step}")),
        resume: handover.map(|handover| Resume { handover, pending }),
    }
}

/// Checks the socket, connects, checks the peer (as [`super::Client`]).
fn connect(socket: &Path, owner: Owner) -> Result<UnixStream, ApproveError> {
    check_socket(socket, owner)?;
    let stream = connect_within(socket, IO_TIMEOUT)?;
    let uid = crate::system::fs::peer_uid(stream.as_fd())
        .map_err(|e| ApproveError::Protocol(format!("cannot read the peer's uid: {e}")))?;
    check_peer(uid, owner, socket)?;
    Ok(stream)
}

/// What one read of the daemon's frames takes in at most.
const FRAME_BUFFER: usize = 1024;

fn read(frames: &mut io::BufReader<&UnixStream>, within: Duration) -> Result<HostMsg, FrameError> {
    frames
        .get_ref()
        .set_read_timeout(Some(within.max(Duration::from_millis(1))))
        .map_err(FrameError::Io)?;
    wire::read_frame(frames)
}

/// Shows one question; the reply for the daemon, and a hidden prompt's
/// answer (kept until the daemon has taken it).
fn ask(conv: &mut dyn Conversation, style: AskStyle, text: &str) -> (HostReply, Option<Answer>) {
    let failed = |ConvError(detail)| HostReply::ConvFailed { detail };
    match style {
        AskStyle::Hidden => match conv.prompt_hidden(text) {
            Ok(Some(answer)) => {
                // Longer than any code is still too long when cut here.
                let cut = answer.as_bytes().len().min(MAX_ANSWER_LEN + 1);
                let bytes = answer.as_bytes()[..cut].to_vec();
                (
                    HostReply::Reply {
                        answer: Some(bytes),
                    },
                    Some(answer),
                )
            }
            Ok(None) => (
                HostReply::ConvFailed {
                    detail: "the conversation gave no answer".into(),
                },
                None,
            ),
            Err(e) => (failed(e), None),
        },
        AskStyle::Info => match conv.info(text) {
            Ok(()) => (HostReply::Reply { answer: None }, None),
            Err(e) => (failed(e), None),
        },
        AskStyle::Error => match conv.error(text) {
            Ok(()) => (HostReply::Reply { answer: None }, None),
            Err(e) => (failed(e), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TestDir;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread;

    fn login() -> Request {
        Request::Login {
            version: wire::VERSION,
            args: vec!["debug".into()],
            user: "alice".into(),
            service: "sshd".into(),
            rhost: Some("203.0.113.7".into()),
            tty: None,
            ruser: None,
            password_was_wrong: false,
            caller_is_root: true,
        }
    }

    fn listener() -> (TestDir, PathBuf, UnixListener) {
        let dir = TestDir::new("hosted");
        let path = dir.join("d.sock");
        let l = UnixListener::bind(&path).expect("bind");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        (dir, path, l)
    }

    /// A user who types `answers` in turn, and what was shown.
    #[derive(Default)]
    struct User {
        answers: Vec<&'static [u8]>,
        shown: Vec<String>,
        broken: bool,
    }

    impl Conversation for User {
        fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
            self.shown.push(format!("? {prompt}"));
            if self.broken {
                return Err(ConvError("hung up".into()));
            }
            Ok(Some(Answer::new(self.answers.remove(0).to_vec())))
        }
        fn error(&mut self, text: &str) -> Result<(), ConvError> {
            self.shown.push(format!("! {text}"));
            Ok(())
        }
        fn info(&mut self, text: &str) -> Result<(), ConvError> {
            self.shown.push(format!("i {text}"));
            Ok(())
        }
    }

    /// A daemon that runs `script` on the one connection it takes (after
    /// reading the login) and returns what it read.
    fn daemon(
        l: UnixListener,
        script: impl FnOnce(&UnixStream) -> Vec<HostReply> + Send + 'static,
    ) -> thread::JoinHandle<Vec<HostReply>> {
        thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let req: Request = wire::read_frame(&mut &s).expect("login");
            assert_eq!(req, login());
            script(&s)
        })
    }

    fn say(s: &UnixStream, msg: HostMsg) {
        wire::write_frame(&mut &*s, &msg).expect("write");
    }

    /// The code prompt, hidden; not waiting for the reply.
    fn prompt(s: &UnixStream, reply_within_ms: u64) {
        let text = "Verification code: ".into();
        let style = AskStyle::Hidden;
        say(
            s,
            HostMsg::Ask {
                style,
                text,
                reply_within_ms,
            },
        );
    }

    fn ask(s: &UnixStream, text: &str, reply_within_ms: u64) -> HostReply {
        let text = text.into();
        let style = AskStyle::Hidden;
        say(
            s,
            HostMsg::Ask {
                style,
                text,
                reply_within_ms,
            },
        );
        wire::read_frame(&mut &*s).expect("reply")
    }

    fn hand_over(s: &UnixStream) {
        say(
            s,
            HostMsg::Handover {
                handover: handover(),
            },
        );
    }

    fn handover() -> Handover {
        Handover {
            code: "024681".into(),
            ttl_left_ms: 300_000,
            gateway: "telegram".into(),
            prompt: "Verification code: ".into(),
            approval: None,
        }
    }

    fn run_with(path: &Path, user: &mut User) -> Hosted {
        run(path, Owner::current(), &login(), user)
    }

    #[test]
    fn no_socket_is_the_module_s_login_and_nothing_to_say() {
        let dir = TestDir::new("hosted-none");
        let mut user = User::default();
        match run_with(&dir.join("d.sock"), &mut user) {
            Hosted::Local { why, resume } => {
                assert!(why.is_none(), "{why:?}");
                assert!(resume.is_none());
            }
            Hosted::Done(r) => panic!("done: {r:?}"),
        }
        assert!(user.shown.is_empty());
    }

    #[test]
    fn the_daemon_runs_the_dialogue_to_its_end() {
        let (_dir, path, l) = listener();
        let d = daemon(l, |s| {
            hand_over(s);
            let first = ask(s, "Verification code: ", 5_000);
            say(
                s,
                HostMsg::Ask {
                    style: AskStyle::Error,
                    text: "Wrong code. 2 attempts left.".into(),
                    reply_within_ms: 5_000,
                },
            );
            let ack: HostReply = wire::read_frame(&mut &*s).expect("ack");
            let second = ask(s, "Verification code: ", 5_000);
            say(
                s,
                HostMsg::Outcome {
                    verdict: PamResult::Success,
                },
            );
            vec![first, ack, second]
        });
        let long: &'static [u8] = Box::leak(vec![b'7'; 1 << 20].into_boxed_slice());
        let mut user = User {
            answers: vec![long, b"024681"],
            ..User::default()
        };
        assert!(matches!(
            run_with(&path, &mut user),
            Hosted::Done(PamResult::Success)
        ));
        let replies = d.join().expect("daemon");
        let HostReply::Reply { answer: Some(cut) } = &replies[0] else {
            panic!("{:?}", replies[0]);
        };
        assert_eq!(cut.len(), MAX_ANSWER_LEN + 1, "a 1 MiB answer is cut");
        assert_eq!(replies[1], HostReply::Reply { answer: None });
        assert_eq!(
            replies[2],
            HostReply::Reply {
                answer: Some(b"024681".to_vec())
            }
        );
        assert_eq!(
            user.shown,
            [
                "? Verification code: ",
                "! Wrong code. 2 attempts left.",
                "? Verification code: "
            ]
        );
    }

    #[test]
    fn a_decline_or_a_busy_daemon_leaves_the_login_to_the_module() {
        for (msg, said) in [
            (
                HostMsg::Decline {
                    why: "another config".into(),
                },
                "pam-gatewayd does not run this login: another config",
            ),
            (
                HostMsg::Error {
                    kind: wire::ErrorKind::Busy,
                    detail: "256 connections open".into(),
                },
                "Busy",
            ),
        ] {
            let (_dir, path, l) = listener();
            let d = daemon(l, move |s| {
                say(s, msg);
                vec![]
            });
            match run_with(&path, &mut User::default()) {
                Hosted::Local { why, resume } => {
                    let why = why.expect("a reason");
                    assert!(why.contains(said), "{why}");
                    assert!(resume.is_none());
                }
                Hosted::Done(r) => panic!("done: {r:?}"),
            }
            d.join().expect("daemon");
        }
    }

    /// Gone after the handover, with an answer it took and did not judge:
    /// the module resumes with both. Before the handover: from the start.
    #[test]
    fn a_daemon_gone_mid_dialogue_hands_the_login_back() {
        let (_dir, path, l) = listener();
        let d = daemon(l, |s| {
            hand_over(s);
            prompt(s, 5_000);
            let reply: HostReply = wire::read_frame(&mut &*s).expect("reply");
            vec![reply]
        });
        let mut user = User {
            answers: vec![b"\n"],
            ..User::default()
        };
        match run_with(&path, &mut user) {
            Hosted::Local {
                why,
                resume: Some(r),
            } => {
                let why = why.expect("why");
                assert!(
                    why.contains("finishes the login with the code that went out"),
                    "{why}"
                );
                assert_eq!(r.handover.code, "024681");
                assert_eq!(r.pending.expect("pending").as_bytes(), b"\n");
            }
            _ => panic!("not resumed"),
        }
        d.join().expect("daemon");

        let (_dir, path, l) = listener();
        let d = daemon(l, |_| vec![]);
        match run_with(&path, &mut User::default()) {
            Hosted::Local { why, resume: None } => {
                assert!(
                    why.expect("why")
                        .contains("the module runs the login itself")
                );
            }
            _ => panic!("resumed without a handover"),
        }
        d.join().expect("daemon");
    }

    /// A daemon that stops answering after a reply: given up on after the
    /// question's `reply_within_ms`, resumed.
    #[test]
    fn a_silent_daemon_is_given_up_on_in_time() {
        let (_dir, path, l) = listener();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let d = daemon(l, move |s| {
            hand_over(s);
            let reply = ask(s, "Verification code: ", 200);
            // Holds the connection open, silent, until the module gave up.
            let _ = rx.recv_timeout(Duration::from_secs(10));
            vec![reply]
        });
        let mut user = User {
            answers: vec![b"123"],
            ..User::default()
        };
        let start = std::time::Instant::now();
        let hosted = run_with(&path, &mut user);
        let took = start.elapsed();
        let _ = tx.send(());
        match hosted {
            Hosted::Local {
                why,
                resume: Some(r),
            } => {
                assert!(why.expect("why").contains("did not answer in time"));
                assert_eq!(r.pending.expect("pending").as_bytes(), b"123");
            }
            _ => panic!("not resumed"),
        }
        assert!(took < Duration::from_secs(5), "{took:?}");
        d.join().expect("daemon");
    }

    /// The daemon ended the login (the module was stopped past its
    /// deadline) and closed: its last frame is read, nothing is resumed.
    #[test]
    fn a_login_the_daemon_ended_is_not_resumed() {
        let (_dir, path, l) = listener();
        let d = daemon(l, |s| {
            hand_over(s);
            prompt(s, 5_000);
            say(
                s,
                HostMsg::Outcome {
                    verdict: PamResult::ConvErr,
                },
            );
            let _ = s.shutdown(std::net::Shutdown::Both);
            vec![]
        });
        let mut user = User {
            answers: vec![b"024681"],
            ..User::default()
        };
        assert!(matches!(
            run_with(&path, &mut user),
            Hosted::Done(PamResult::ConvErr)
        ));
        d.join().expect("daemon");
    }

    #[test]
    fn a_failed_conversation_is_told_and_garbage_is_not_a_way_in() {
        let (_dir, path, l) = listener();
        let d = daemon(l, |s| {
            let reply = ask(s, "Verification code: ", 5_000);
            wire::write_frame(&mut &*s, &serde_json::json!({"result": "success"})).expect("write");
            vec![reply]
        });
        let mut user = User {
            broken: true,
            ..User::default()
        };
        assert!(matches!(
            run_with(&path, &mut user),
            Hosted::Local { resume: None, .. }
        ));
        let replies = d.join().expect("daemon");
        assert_eq!(
            replies,
            [HostReply::ConvFailed {
                detail: "hung up".into()
            }]
        );
    }

    #[test]
    fn a_socket_others_may_use_is_not_used() {
        let (_dir, path, _l) = listener();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        match run_with(&path, &mut User::default()) {
            Hosted::Local { why, resume: None } => {
                assert!(why.expect("why").contains("not safe to use"));
            }
            _ => panic!("used"),
        }
    }
}
