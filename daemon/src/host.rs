//! Logins the daemon runs for the module ([`Request::Login`]; the
//! module's side is `pam_gateway_core::approve::hosted`).
//!
//! The daemon does here what the module does without it, on the same
//! files and through the same core flow: the module's arguments, the NSS
//! lookup, gateway.toml (read again for every login, with its checks), the
//! users file, `[directory]`, the state, the send (a Telegram message with
//! the buttons through [`Daemon::handle`], in this process; other gateways
//! directly), the judging, `[alert]`'s record. Only the conversation stays
//! in the PAM process: each prompt is a [`HostMsg::Ask`] the module shows
//! and answers ([`HostReply`]). The log lines are the module's, under its
//! ident and the PAM process's pid.
//!
//! It declines ([`HostMsg::Decline`]: the module runs the login itself)
//! a login whose `config=` is not the file this daemon was started with,
//! when `[approve]` is no longer enabled there, and when a `[command]`
//! gateway is configured (a helper program runs in the PAM process, not
//! under this daemon's sandbox). Before the first prompt
//! of a sent code it hands the dialogue to the module ([`Handover`]), so
//! that the module can finish the login should this process go away.
//!
//! A module that stops answering (its caller stopped it) is given up on
//! after the code's lifetime plus [`CONVERSATION_SLACK`]: the login ends as
//! a failed conversation, and the module, should it run again, reads that.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pam_gateway_core::alert;
use pam_gateway_core::approve::client::{WAIT_MARGIN, wait_in_turns};
use pam_gateway_core::approve::wire::{
    self, ApprovalState, AskStyle, FrameError, Handover, HostMsg, HostReply, PamResult, Request,
    Response,
};
use pam_gateway_core::approve::{ApprovalRequest, ApproveError, Approved, Approver};
use pam_gateway_core::code::OsCodeSource;
use pam_gateway_core::flow::{Answer, ConvError, Conversation, Flow, LoginContext, MonotonicClock};
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::log::{IDENT, Level, Log, SyslogLog};
use pam_gateway_core::module_args::ModuleArgs;
use pam_gateway_core::network::Direct;
use pam_gateway_core::policy::SystemGroups;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::setup;
use pam_gateway_core::state::{FileStateStore, SystemWallClock};
use pam_gateway_core::system::hostname;

use crate::approvals::Daemon;

/// A frame to the module must be written within this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Added to the code's lifetime for the longest the module may take to
/// answer a prompt.
pub const CONVERSATION_SLACK: Duration = Duration::from_secs(10);
/// Added to `[approve] wait` for how soon the daemon's next frame follows
/// a reply (the judging, under the state file's lock).
pub const REPLY_SLACK: Duration = Duration::from_secs(15);

/// Runs one login for the module on `conn` (its pid `pid`, for the log).
pub fn login(d: &Daemon, conn: &UnixStream, pid: u32, request: Request) {
    if conn.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let last = match run(d, conn, pid, request) {
        Ok(result) | Err(Ended::Result(result)) => HostMsg::Outcome { verdict: result },
        Err(Ended::Declined(why)) => HostMsg::Decline { why },
    };
    send(conn, &last);
}

/// How a login ended before its flow ran.
enum Ended {
    /// With this PAM result, logged already.
    Result(PamResult),
    /// The module is to run it (why, for its log).
    Declined(String),
}

impl From<PamResult> for Ended {
    fn from(result: PamResult) -> Ended {
        Ended::Result(result)
    }
}

/// The login, up to its PAM result; the last frame is the caller's.
fn run(d: &Daemon, conn: &UnixStream, pid: u32, request: Request) -> Result<PamResult, Ended> {
    let Request::Login {
        args,
        user: given,
        service,
        rhost,
        tty,
        ruser,
        password_was_wrong,
        caller_is_root,
        ..
    } = request
    else {
        return Err(PamResult::ServiceErr.into());
    };
    let mut log = SyslogLog::open_for(IDENT, pid);
    let args = ModuleArgs::parse(&args).map_err(|e| {
        log.log(Level::Error, &format!("denied: {e}"));
        PamResult::ServiceErr
    })?;
    if args.config != d.config.path {
        return Err(Ended::Declined(format!(
            "it serves {}, this login's config= is {}",
            d.config.path.display(),
            args.config.display()
        )));
    }
    let (user, known) = setup::login_account(&given, &mut log)?;
    let loaded = setup::load_config(&args.config, Owner::ROOT);
    let config = setup::for_login(loaded, &user, "config: ", &mut log)?;
    if !config.approve.enabled {
        let why = "[approve] is not enabled in gateway.toml";
        return Err(Ended::Declined(why.to_string()));
    }
    // A helper program runs where its admin tested it: in the PAM
    // process, not under this daemon's sandbox (pam-gatewayd.service).
    if config.gateways.contains(&GatewayKind::Command) {
        let why = "a [command] gateway is configured; it runs in the PAM process";
        return Err(Ended::Declined(why.to_string()));
    }
    let loaded = setup::load_users(&config, Owner::ROOT);
    let users = setup::for_login(loaded, &user, "users file: ", &mut log)?;
    let store = FileStateStore::new(config.state_dir.clone(), Owner::ROOT);
    let sources = setup::Sources::of_root(&config, &users, &Direct, &store);
    let lookup = sources.enrolment_lookup(&user, known);
    let enrolment = setup::for_login(lookup, &user, "", &mut log)?;
    let ctx = LoginContext {
        user: user.clone(),
        service,
        rhost,
        tty,
        ruser,
        host: hostname(),
        password_was_wrong,
        caller_is_root,
    };
    let mut conversation = Remote {
        conn,
        answer_within: config.code.ttl + CONVERSATION_SLACK,
        reply_within: Duration::from_secs(config.approve.wait) + WAIT_MARGIN + REPLY_SLACK,
    };
    let mut approver = InProcess { d };
    let mut flow = Flow {
        config: &config,
        conv: &mut conversation,
        clock: &MonotonicClock::default(),
        codes: &mut OsCodeSource,
        log: &mut log,
        debug: args.debug,
        state: &store,
        wall: &SystemWallClock,
        groups: &SystemGroups,
        totp: users.get(&user).and_then(|e| e.totp_secret.as_ref()),
        approver: Some(&mut approver),
    };
    let outcome = flow.authenticate_handing_over(&ctx, enrolment, &mut |h: &Handover| {
        let handover = h.clone();
        send(conn, &HostMsg::Handover { handover });
    });
    alert::record_way_in_logged(&config, &store, &ctx, &outcome, &mut log);
    Ok(outcome.pam_result())
}

/// Writes one frame; a module that is gone is found out by the next read.
fn send(conn: &UnixStream, msg: &HostMsg) -> bool {
    wire::write_frame(&mut &*conn, msg).is_ok()
}

/// The PAM conversation, held by the module at the other end of `conn`.
struct Remote<'a> {
    conn: &'a UnixStream,
    /// The longest the module may take to answer (its user types).
    answer_within: Duration,
    /// Told to the module: how soon this daemon's next frame follows.
    reply_within: Duration,
}

impl Remote<'_> {
    fn ask(&mut self, style: AskStyle, text: &str) -> Result<Option<Vec<u8>>, ConvError> {
        let msg = HostMsg::Ask {
            style,
            text: text.to_string(),
            reply_within_ms: u64::try_from(self.reply_within.as_millis()).unwrap_or(u64::MAX),
        };
        wire::write_frame(&mut &*self.conn, &msg)
            .map_err(|e| ConvError(format!("the module: {e}")))?;
        self.conn
            .set_read_timeout(Some(self.answer_within))
            .map_err(|e| ConvError(format!("the module: {e}")))?;
        match wire::read_frame::<HostReply>(&mut &*self.conn) {
            Ok(HostReply::Reply { answer }) => Ok(answer),
            Ok(HostReply::ConvFailed { detail }) => {
                Err(ConvError(detail.chars().take(200).collect()))
            }
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ConvError(format!(
                    "the module did not answer within {} s",
                    self.answer_within.as_secs()
                )))
            }
            Err(e) => Err(ConvError(format!("the module: {e}"))),
        }
    }
}

impl Conversation for Remote<'_> {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
        Ok(self.ask(AskStyle::Hidden, prompt)?.map(Answer::new))
    }

    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.ask(AskStyle::Error, text).map(|_| ())
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.ask(AskStyle::Info, text).map(|_| ())
    }
}

/// The daemon's approvals, asked in this process: what the module's
/// `approve::Client` asks over the socket.
struct InProcess<'a> {
    d: &'a Daemon,
}

fn failed(response: Response) -> ApproveError {
    match response {
        Response::Error { kind, detail } => ApproveError::Failed { kind, detail },
        _ => ApproveError::Protocol("unexpected answer".into()),
    }
}

impl Approver for InProcess<'_> {
    fn approve(&mut self, r: &ApprovalRequest) -> Result<Approved, ApproveError> {
        let response = self.d.handle(r.to_wire());
        match response {
            Response::Sent { .. } => Ok(Approved::Sent),
            Response::Blocked {
                block,
                until,
                backup_codes,
            } if r.reserve.is_some() => Ok(Approved::blocked(block, until, backup_codes)),
            other => Err(failed(other)),
        }
    }

    fn wait(&mut self, nonce: &str, wait: Duration) -> Result<ApprovalState, ApproveError> {
        wait_in_turns(wait, |chunk| {
            match self.d.handle(Request::Wait {
                version: wire::VERSION,
                nonce: nonce.to_string(),
                wait_ms: u64::try_from(chunk.as_millis()).unwrap_or(wire::MAX_WAIT_MS),
            }) {
                Response::State { state } => Ok(state),
                other => Err(failed(other)),
            }
        })
    }

    fn finish(&mut self, nonce: &str, result: wire::Final) -> Result<(), ApproveError> {
        match self.d.handle(Request::Finish {
            version: wire::VERSION,
            nonce: nonce.to_string(),
            result,
        }) {
            Response::Done => Ok(()),
            other => Err(failed(other)),
        }
    }

    fn available(&mut self) -> bool {
        true
    }
}
