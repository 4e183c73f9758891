//! One authentication, as plain Rust: no PAM types here.
//!
//! The PAM layer (the module crate, `module/src/lib.rs`) gathers the login's facts, loads the
//! files and hands this module a [`Conversation`], a [`Clock`], a
//! [`CodeSource`], a [`Log`] and the user's delivery [`Route`]s. Tests drive
//! the same function with scripted fakes.
//!
//! [`Flow::authenticate`] runs five steps in the order that keeps it safe:
//! `precheck` (may a code be sent at all: unknown name, `[policy]`,
//! enrolment, wrong-password marker), `reserve` (draw the code and count
//! its send under the user's lock, or handle a lockout or a full window),
//! `deliver` (through the routes in order; the release rule; fallback
//! factors; `failmode`), `prompt` (ask, every gateway dropped) and `judge`
//! (each answer under the user's lock). A step that ends the login early
//! returns `End`: an outcome, or a dialogue that sends nothing (a decoy,
//! or a fallback factor).
//!
//! `[approve]` ([`crate::approve`]) changes who does two steps and no order:
//! when the first route is a private Telegram chat, `pam-gatewayd` (an
//! [`Approver`]) takes `reserve` and `deliver` in one request
//! (`daemon_first`): it counts the send under the user's lock in the same
//! state file, then sends the message with number buttons, so the login's
//! process writes no state file before the code goes out. Whenever the
//! daemon cannot take it, the module reserves and sends the same code
//! directly, as without `[approve]`. `prompt` then shows the number to
//! tap, and an empty answer waits for the tap (`await_tap`), which is
//! judged under the user's lock like an answer (`judge_tap`).

use std::cell::Cell;
use std::ops::ControlFlow;
use std::time::Duration;

use zeroize::Zeroize;

use crate::approve::wire::{
    ApprovalState, ErrorKind, Final, HandedApproval, Handover, PamResult, Reserve,
};
use crate::approve::{self, ApprovalRequest, ApproveError, Approved, Approver};
use crate::backup_codes;
use crate::code::{Code, CodeSource, MAX_ANSWER_LEN};
use crate::config::{Config, FailMode, Unenrolled};
use crate::gateway::{DeliveryError, Gateway, GatewayKind};
use crate::limits::{self, Block, UNTIL_UNLOCKED, wait_text};
use crate::log::{Level, Log};
use crate::policy::{Coverage, Groups};
use crate::redact::mask;
use crate::remember;
use crate::state::{StateError, StateStore, UserState, WallClock, update_with};
use crate::totp::TotpKey;

/// What a user locked by "Not me" is told: no code is sent and no factor
/// is asked for until an admin runs `pam-gateway unlock`.
const NOT_ME_LOCKED: &str =
    "Login locked: \"Not me\" was tapped in Telegram. An admin must unlock it.";

/// A user's answer to a prompt; wiped on drop.
pub struct Answer(Vec<u8>);

impl Answer {
    pub fn new(bytes: Vec<u8>) -> Answer {
        Answer(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The conversation failed: EOF, no terminal, the client hung up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvError(pub String);

/// The application's side of the dialogue (PAM conversation in production).
pub trait Conversation {
    /// Asks with echo off. `Ok(None)`: the application gave no answer.
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError>;
    /// Shows an error line (PAM_ERROR_MSG).
    fn error(&mut self, text: &str) -> Result<(), ConvError>;
    /// Shows an informational line (PAM_TEXT_INFO). By default dropped.
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        let _ = text;
        Ok(())
    }
}

/// Monotonic time since an arbitrary start: expiry must not follow changes
/// of the wall clock.
pub trait Clock {
    fn now(&self) -> Duration;
    /// Lets `d` pass (a decoy's wait for a tap that cannot come). Fakes
    /// move their time instead.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The system's monotonic clock.
pub struct MonotonicClock {
    start: std::time::Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            start: std::time::Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Facts about this login, as PAM gave them.
#[derive(Debug, Clone, Default)]
pub struct LoginContext {
    pub user: String,
    pub service: String,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    /// PAM_RUSER: who asks, as the application says (su and sudo set it
    /// from the caller's real uid; sshd does not set it). Context for the
    /// approval message only, never a reason for any decision.
    pub ruser: Option<String>,
    /// This machine's name, for the message.
    pub host: String,
    /// PAM_AUTHTOK is OpenSSH's marker for a wrong password.
    pub password_was_wrong: bool,
    /// The process's real uid is 0 (sshd, login, root's own su). Under su
    /// or sudo run by a user it is not, and that caller can stop the process
    /// or starve it of resources at will: a failure the remote side did not
    /// prove is then never a reason to skip the code. `false` (the default)
    /// is the strict reading.
    pub caller_is_root: bool,
}

impl LoginContext {
    fn rhost_or_local(&self) -> &str {
        self.rhost
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or("local")
    }
}

/// One way to reach the user: a gateway and the recipient there.
pub struct Route {
    pub gateway: Box<dyn Gateway>,
    pub recipient: String,
}

/// The user's entry in the users file, as routes.
pub enum Enrolment {
    /// The name PAM gave is not an account NSS knows (a typo, an attacker's
    /// guess, or a spelling the account database does not resolve): denied
    /// whatever `unenrolled` says, after the same prompts as a real login.
    UnknownUser,
    NotEnrolled,
    Enrolled(Vec<Route>),
    /// `[directory]` could not say whether the user is enrolled (no
    /// answer, a refusal, an unusable answer) and no fresh cache stood in:
    /// denied whatever `unenrolled` and `failmode` say. Not knowing is
    /// not "not enrolled". The reason is for the log.
    DirectoryUnavailable(String),
}

/// The user's [`Enrolment`] as [`Flow::authenticate`] gets it: known
/// already (the users file, or a name NSS does not know), or found only
/// once `[policy]` covers the login, so that a login `[policy]` exempts
/// never waits on `[directory]` (see `setup::Sources::enrolment_lookup`).
pub enum Lookup<'l> {
    Known(Enrolment),
    /// Asked at most once, after `[policy]`, with the flow's log.
    Deferred(FindEnrolment<'l>),
}

/// What a [`Lookup::Deferred`] calls.
pub type FindEnrolment<'l> = Box<dyn FnOnce(&mut dyn Log) -> Enrolment + 'l>;

impl From<Enrolment> for Lookup<'_> {
    fn from(enrolment: Enrolment) -> Self {
        Lookup::Known(enrolment)
    }
}

/// How an authentication ended. The PAM layer maps each to a return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The right code, in time.
    Success { gateway: &'static str },
    /// Wrong answers until all attempts were used.
    MaxTries,
    /// The code expired before the right answer came.
    Expired,
    /// No entry, `unenrolled = "deny"`: prompted, sent nothing, failed.
    NotEnrolledDenied,
    /// No entry, `unenrolled = "ignore"`.
    NotEnrolledIgnored,
    /// OpenSSH's wrong-password marker: prompted, sent nothing, failed.
    WrongPassword,
    /// No gateway delivered and the fail mode (or the kind of failure) denies.
    DeliveryFailedDenied,
    /// No gateway could be reached and `failmode = "safe"`.
    DeliveryFailedIgnored,
    /// The conversation broke (EOF, no terminal).
    ConversationFailed,
    /// Something on this machine failed (no randomness, group lookup).
    SystemError,
    /// Too many wrong answers: locked out, nothing sent or accepted.
    LockedOut,
    /// `codes_per_window` codes were sent already and no fallback factor
    /// is set up: nothing sent.
    RateLimited,
    /// `[policy]` does not cover this login (exempt network or group).
    PolicyIgnored,
    /// The user's state file is unsafe, corrupt or cannot be written.
    StateFailed,
    /// The account is unknown to NSS: prompted, sent nothing, failed.
    UnknownUser,
    /// `[remember]`: this user proved a second factor from this remote host
    /// through this service lately; no code asked.
    Remembered,
    /// `[directory]` failed for a user without an entry in the users file.
    DirectoryUnavailable,
    /// `[approve]`: the user tapped "Not me" in Telegram; pam-gatewayd
    /// locked the user's second factor and alerted the admins.
    DeniedNotMe,
}

impl Outcome {
    /// What PAM is told (DESIGN.md's table): the module maps this to a
    /// return code, and so does a login pam-gatewayd runs.
    pub fn pam_result(&self) -> PamResult {
        match self {
            Outcome::Success { .. } | Outcome::Remembered => PamResult::Success,
            Outcome::MaxTries => PamResult::MaxTries,
            Outcome::UnknownUser => PamResult::UserUnknown,
            Outcome::Expired
            | Outcome::NotEnrolledDenied
            | Outcome::WrongPassword
            | Outcome::RateLimited
            | Outcome::DeniedNotMe => PamResult::AuthErr,
            // All attempts are used up, across logins.
            Outcome::LockedOut => PamResult::MaxTries,
            Outcome::NotEnrolledIgnored
            | Outcome::DeliveryFailedIgnored
            | Outcome::PolicyIgnored => PamResult::Ignore,
            // An unsafe or corrupt state file is a broken setup, like a bad
            // config.
            Outcome::StateFailed => PamResult::ServiceErr,
            // Whether the user is enrolled cannot be known: the directory
            // failed. Never PAM_IGNORE, whatever failmode or unenrolled say.
            Outcome::DeliveryFailedDenied | Outcome::DirectoryUnavailable => {
                PamResult::AuthinfoUnavail
            }
            Outcome::ConversationFailed => PamResult::ConvErr,
            Outcome::SystemError => PamResult::SystemErr,
        }
    }

    /// The word for the log's `result=` field.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::MaxTries => "denied-max-tries",
            Outcome::Expired => "denied-expired",
            Outcome::NotEnrolledDenied => "denied-not-enrolled",
            Outcome::NotEnrolledIgnored => "ignored-not-enrolled",
            Outcome::WrongPassword => "denied-wrong-password",
            Outcome::DeliveryFailedDenied => "denied-delivery-failed",
            Outcome::DeliveryFailedIgnored => "ignored-delivery-failed",
            Outcome::ConversationFailed => "conversation-error",
            Outcome::SystemError => "system-error",
            Outcome::LockedOut => "denied-locked-out",
            Outcome::RateLimited => "denied-rate-limited",
            Outcome::PolicyIgnored => "ignored-policy",
            Outcome::StateFailed => "denied-state-error",
            Outcome::UnknownUser => "denied-unknown-user",
            Outcome::Remembered => "remembered",
            Outcome::DirectoryUnavailable => "denied-directory-unavailable",
            Outcome::DeniedNotMe => "denied-not-me",
        }
    }
}

/// Everything one authentication needs besides the login's facts.
pub struct Flow<'a> {
    pub config: &'a Config,
    pub conv: &'a mut dyn Conversation,
    pub clock: &'a dyn Clock,
    pub codes: &'a mut dyn CodeSource,
    pub log: &'a mut dyn Log,
    pub debug: bool,
    /// Per-user state: limits, TOTP replay guard, backup codes.
    pub state: &'a dyn StateStore,
    /// Wall-clock time for the persistent limits and TOTP.
    pub wall: &'a dyn WallClock,
    /// Group lookups for `[policy]`.
    pub groups: &'a dyn Groups,
    /// The user's authenticator secret, if they have one.
    pub totp: Option<&'a TotpKey>,
    /// `pam-gatewayd`, for `[approve]`: `None` when approval is off.
    pub approver: Option<&'a mut dyn Approver>,
}

/// The ways a second factor can be proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// The code sent through this gateway.
    Sent(&'static str),
    /// The number shown in the prompt, tapped in Telegram ([approve]).
    Approved,
    Totp,
    Backup {
        left: usize,
    },
}

impl Factor {
    fn id(&self) -> &'static str {
        match self {
            Factor::Sent(gateway) => gateway,
            Factor::Approved => "telegram",
            Factor::Totp => "totp",
            Factor::Backup { .. } => "backup-code",
        }
    }
}

/// The fallback factors a user has.
#[derive(Debug, Clone, Copy)]
struct Fallback {
    totp: bool,
    backup: bool,
}

impl Fallback {
    fn any(&self) -> bool {
        self.totp || self.backup
    }
    fn prompt(&self) -> &'static str {
        match (self.totp, self.backup) {
            (true, true) => "Authenticator or backup code: ",
            (true, false) => "Authenticator code: ",
            _ => "Backup code: ",
        }
    }
}

/// What an answer may match.
#[derive(Debug)]
struct Expect {
    /// The code that was sent, its deadline and gateway. `None`: no code
    /// went out, only the fallback factors can match.
    code: Option<(Code, Duration, &'static str)>,
}

/// The rest of a login once nothing more will be sent: the prompts, then
/// the outcome ([`Flow::prompt`]).
#[derive(Debug)]
struct Dialogue {
    prompt: String,
    /// The gateway named in the result's log line, unless a factor is
    /// accepted (then the factor's).
    gateway: &'static str,
    judging: Judging,
    /// `[approve]`: a tap is offered too (the prompt shows its number).
    approval: Option<Approval>,
}

/// A login offered approval in Telegram ([`crate::approve`]), or a decoy
/// that looks like one.
#[derive(Debug)]
struct Approval {
    /// The daemon's key for this login; `None` in a decoy (nothing sent).
    nonce: Option<String>,
    /// The number shown in the prompt.
    answer: u8,
    /// A tap counts until the code's own deadline.
    deadline: Duration,
    /// The prompt once approval is no longer offered: the code's.
    code_prompt: String,
    /// Still offered: not expired, gone, answered or failed.
    offered: Cell<bool>,
}

/// What pressing Enter at a prompt with a tap offered came to.
enum Tap {
    /// Ask again, the prompt led by this text; no attempt used.
    Again(&'static str),
    /// Judged like an answer (approved, a wrong number, a lockout).
    Judged(Verdict),
    /// "Not me": denied at once.
    NotMe,
    /// The user's state could not be updated.
    StateFailed(StateError),
}

/// What asking the daemon for an approval came to ([`Flow::offer_approval`]).
enum Offer {
    /// The message with the buttons went out.
    Sent(Approval),
    /// The daemon counted the send against the limits, which allow none
    /// now: nothing went out. The user has this many backup codes left.
    Blocked(Block, usize),
    /// The daemon's send failed as a direct one would have: this route failed.
    Failed(DeliveryError),
    /// No approval: send the code directly, as without `[approve]`.
    Direct,
}

/// How the answers of a [`Dialogue`] are taken.
#[derive(Debug)]
enum Judging {
    /// Nothing was sent and no answer is looked at: the dialogue only looks
    /// like a real one, then the login ends in `outcome`, logged with
    /// `reason` (unless the conversation failed first).
    Decoy {
        outcome: Outcome,
        reason: &'static str,
    },
    /// Each answer is judged under the user's lock ([`Flow::judge`]).
    Answers(Expect),
}

/// How a login ends when a step stops it before a code is delivered.
#[derive(Debug)]
enum End {
    /// With this outcome, logged already.
    Done(Outcome),
    /// After this dialogue (a decoy, or a fallback factor asked for).
    Ask(Dialogue),
}

/// The code [`Flow::daemon_first`] gives back for the module to count and
/// send itself.
struct Handback {
    code: Code,
    /// The first route to try.
    from: usize,
    /// Whether the daemon is no longer to be asked.
    approval_off: bool,
}

/// A code whose send is reserved: what [`Flow::reserve`] hands to
/// [`Flow::deliver`].
#[derive(Debug)]
struct Sending {
    code: Code,
    /// The user's fallback factors (backup codes counted under the lock).
    fallback: Fallback,
    /// The wall time the send was reserved at: its key to give it back.
    reserved_at: u64,
}

/// What offering the message to the routes came to ([`Flow::send`]).
struct Sent {
    /// The gateway that delivered, and the prompt naming it.
    delivered: Option<(&'static str, String)>,
    /// One line per failed route, the code scrubbed.
    failures: Vec<String>,
    /// failmode=safe may excuse every failure so far: the service could
    /// not be reached, and (unless the caller is root) the remote side
    /// proved it. A caller of su/sudo can stop this process past the
    /// timeout or starve it of file descriptors, never make a peer refuse
    /// a connection or answer 503.
    safe_may_excuse: bool,
    /// Certainly no message reached anyone: only then is the reservation
    /// given back. A send whose fate is unknown counts as sent.
    nothing_delivered: bool,
    /// The delivering route's message offers a tap.
    approval: Option<Approval>,
}

impl Sent {
    fn new() -> Sent {
        Sent {
            delivered: None,
            failures: Vec::new(),
            safe_may_excuse: true,
            nothing_delivered: true,
            approval: None,
        }
    }

    /// Counts one route's failure (`line`: its log text, code scrubbed).
    fn failed(&mut self, e: &DeliveryError, caller_is_root: bool, line: String) {
        self.safe_may_excuse &= e.is_unreachable() && (caller_is_root || e.proven_remote());
        self.nothing_delivered &= e.nothing_delivered();
        self.failures.push(line);
    }
}

/// How one answer was judged.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accepted(Factor),
    /// The sent code, but too late.
    Expired,
    Wrong {
        expired: bool,
        replay: bool,
        locked_until: Option<u64>,
    },
    Locked(u64),
}

/// Fills the message template.
pub fn render_message(template: &str, ctx: &LoginContext, code: &Code, ttl: Duration) -> String {
    let minutes = ttl.as_secs().div_ceil(60).to_string();
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        match &after[..end] {
            "code" => out.push_str(code.expose()),
            "user" => out.push_str(&message_field(&ctx.user)),
            "host" => out.push_str(&message_field(&ctx.host)),
            "service" => out.push_str(&message_field(&ctx.service)),
            "rhost" => out.push_str(&message_field(ctx.rhost_or_local())),
            "minutes" => out.push_str(&minutes),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A value from PAM as a log field ([`crate::log::field`]): bare when
/// plain, otherwise quoted and escaped, so it cannot forge a line or a field.
pub fn clean(value: &str) -> String {
    crate::log::field(value)
}

/// A value from PAM (user, service, remote host) as it goes into the
/// message: control characters replaced (a newline in PAM_RHOST must not
/// write lines of its own into the user's chat), at most 128 characters.
pub fn message_field(value: &str) -> String {
    value
        .chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Like [`clean`] with another bound: delivery errors are longer (one per
/// gateway tried) and are our own text.
fn clean_max(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| if c.is_control() || c == '"' { '?' } else { c })
        .collect()
}

impl Flow<'_> {
    fn debug(&mut self, ctx: &LoginContext, step: &str) {
        if self.debug {
            self.log.log(
                Level::Debug,
                &format!("user={} step: {step}", clean(&ctx.user)),
            );
        }
    }

    fn finish(
        &mut self,
        ctx: &LoginContext,
        gateway: &str,
        outcome: Outcome,
        reason: &str,
    ) -> Outcome {
        let level = match outcome {
            Outcome::Success { .. } | Outcome::NotEnrolledIgnored | Outcome::Remembered => {
                Level::Info
            }
            Outcome::SystemError
            | Outcome::DeliveryFailedDenied
            | Outcome::DirectoryUnavailable => Level::Error,
            _ => Level::Warning,
        };
        self.log.log(
            level,
            &format!(
                "user={} service={} rhost={} tty={} gateway={} result={} reason=\"{}\"",
                clean(&ctx.user),
                clean(&ctx.service),
                clean(ctx.rhost_or_local()),
                clean(ctx.tty.as_deref().unwrap_or("-")),
                gateway,
                outcome.label(),
                clean_max(reason, 1000),
            ),
        );
        outcome
    }

    /// [`Flow::finish`] as the end of a step.
    fn done(&mut self, ctx: &LoginContext, gateway: &str, outcome: Outcome, reason: &str) -> End {
        End::Done(self.finish(ctx, gateway, outcome, reason))
    }

    /// A log line about this login that is not its result.
    fn note(&mut self, ctx: &LoginContext, level: Level, text: &str) {
        self.log.log(
            level,
            &format!(
                "user={} rhost={} {}",
                clean(&ctx.user),
                clean(ctx.rhost_or_local()),
                clean_max(text, 1000)
            ),
        );
    }

    /// Runs one authentication to its [`Outcome`]. The order of the steps
    /// is what keeps it safe: nothing is sent before `precheck` allows it
    /// and `reserve` has counted it, and the user is asked only once every
    /// gateway is dropped.
    pub fn authenticate<'l>(
        &mut self,
        ctx: &LoginContext,
        enrolment: impl Into<Lookup<'l>>,
    ) -> Outcome {
        self.authenticate_lookup(ctx, enrolment.into())
    }

    /// [`Flow::authenticate`] in pam-gatewayd: `hand_over` is given the
    /// code's dialogue once the code went out and before the first prompt
    /// (not for a dialogue without a sent code), for the module to finish
    /// the login with ([`Flow::resume`]) should the daemon go away.
    pub fn authenticate_handing_over<'l>(
        &mut self,
        ctx: &LoginContext,
        enrolment: impl Into<Lookup<'l>>,
        hand_over: &mut dyn FnMut(&Handover),
    ) -> Outcome {
        let dialogue = match self.send_code(ctx, enrolment.into()) {
            ControlFlow::Continue(dialogue) | ControlFlow::Break(End::Ask(dialogue)) => dialogue,
            ControlFlow::Break(End::Done(outcome)) => return outcome,
        };
        if let Some(handover) = self.handover_of(&dialogue) {
            hand_over(&handover);
        }
        self.prompt(ctx, dialogue)
    }

    /// The dialogue of a code that went out, as [`Handover`].
    fn handover_of(&self, dialogue: &Dialogue) -> Option<Handover> {
        let Judging::Answers(Expect {
            code: Some((code, deadline, gateway)),
        }) = &dialogue.judging
        else {
            return None;
        };
        let left = deadline.saturating_sub(self.clock.now());
        Some(Handover {
            code: code.expose().to_string(),
            ttl_left_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            gateway: (*gateway).to_string(),
            prompt: dialogue.prompt.clone(),
            approval: dialogue.approval.as_ref().and_then(|a| {
                Some(HandedApproval {
                    nonce: a.nonce.clone()?,
                    answer: a.answer,
                    code_prompt: a.code_prompt.clone(),
                    offered: a.offered.get(),
                })
            }),
        })
    }

    /// The rest of a login pam-gatewayd began and went away from after the
    /// code went out ([`Flow::authenticate_handing_over`]): the same
    /// dialogue, judged here, the tap still asked of the daemon (a new one
    /// does not know the nonce: the typed code is asked for). Nothing is
    /// sent or counted again.
    pub fn resume(&mut self, ctx: &LoginContext, handover: &Handover) -> Outcome {
        let Some(gateway) = GatewayKind::from_id(&handover.gateway).map(GatewayKind::id) else {
            self.note(
                ctx,
                Level::Error,
                "pam-gatewayd handed over a login of an unknown gateway; denied",
            );
            return Outcome::SystemError;
        };
        let deadline = self.clock.now() + Duration::from_millis(handover.ttl_left_ms);
        let approval = handover.approval.as_ref().map(|a| Approval {
            nonce: Some(a.nonce.clone()),
            answer: a.answer,
            deadline,
            code_prompt: a.code_prompt.clone(),
            offered: Cell::new(a.offered),
        });
        let dialogue = Dialogue {
            prompt: handover.prompt.clone(),
            gateway,
            judging: Judging::Answers(Expect {
                code: Some((Code::from_digits(&handover.code), deadline, gateway)),
            }),
            approval,
        };
        self.prompt(ctx, dialogue)
    }

    /// [`Flow::authenticate`], one copy for both kinds of [`Lookup`].
    fn authenticate_lookup(&mut self, ctx: &LoginContext, enrolment: Lookup<'_>) -> Outcome {
        let dialogue = match self.send_code(ctx, enrolment) {
            ControlFlow::Continue(dialogue) | ControlFlow::Break(End::Ask(dialogue)) => dialogue,
            ControlFlow::Break(End::Done(outcome)) => return outcome,
        };
        self.prompt(ctx, dialogue)
    }

    /// The steps up to a delivered code, each of which may end the login
    /// early: [`Flow::precheck_lookup`], [`Flow::reserve`], [`Flow::deliver`].
    fn send_code(
        &mut self,
        ctx: &LoginContext,
        enrolment: Lookup<'_>,
    ) -> ControlFlow<End, Dialogue> {
        let routes = self.precheck_lookup(ctx, enrolment)?;
        let mut code = self.draw(ctx, &routes)?;
        let mut sent = Sent::new();
        let mut approval_off = self.approver.is_none() || !self.config.approve.enabled;
        let mut from = 0;
        if !approval_off
            && routes.first().is_some_and(tappable)
            && let Some(reserve) = reserve_for(self.config)
        {
            match self.daemon_first(ctx, &routes[0], code, reserve, &mut sent) {
                ControlFlow::Break(end) => return end,
                ControlFlow::Continue(back) => {
                    code = back.code;
                    from = back.from;
                    approval_off = back.approval_off;
                }
            }
        }
        let sending = self.reserve(ctx, &routes, code)?;
        self.deliver(ctx, routes, from, sending, sent, approval_off)
    }

    /// `[approve]` with a private Telegram chat first: the daemon reserves
    /// the send (in the same state file, under the same lock) and sends,
    /// in one request. A sent message is the dialogue, a full window or a
    /// lockout ends as [`Flow::blocked`] says; otherwise the code comes
    /// back ([`Handback`]) for the module to count and send itself, the
    /// daemon's failed send counted in `sent` as a route's.
    fn daemon_first(
        &mut self,
        ctx: &LoginContext,
        route: &Route,
        code: Code,
        reserve: Reserve,
        sent: &mut Sent,
    ) -> ControlFlow<ControlFlow<End, Dialogue>, Handback> {
        let issued_at = self.clock.now();
        let id = route.gateway.id();
        self.debug(
            ctx,
            &format!(
                "asking pam-gatewayd to count and send via {id} to {}",
                mask(&route.recipient)
            ),
        );
        let mut text = render_message(&self.config.template, ctx, &code, self.config.code.ttl);
        let offer = self.offer_approval(ctx, route, &code, &text, Some(reserve));
        text.zeroize();
        match offer {
            Offer::Sent(approval) => {
                let delivered = (id, approve::tap_prompt(approval.answer));
                let dialogue = self.dialogue(code, issued_at, delivered, Some(approval));
                ControlFlow::Break(ControlFlow::Continue(dialogue))
            }
            Offer::Blocked(block, backup_codes) => {
                let fallback = Fallback {
                    totp: self.totp.is_some(),
                    backup: backup_codes > 0,
                };
                let now = self.wall.unix_now();
                let end = self.blocked(ctx, id, block, fallback, now);
                ControlFlow::Break(ControlFlow::Break(end))
            }
            // This route failed as a direct send would have; the next
            // ones go on as without the daemon's reservation (a later
            // private chat may still be offered through it).
            Offer::Failed(e) => {
                self.route_failed(ctx, id, &e, &code, sent);
                ControlFlow::Continue(Handback {
                    code,
                    from: 1,
                    approval_off: false,
                })
            }
            Offer::Direct => ControlFlow::Continue(Handback {
                code,
                from: 0,
                approval_off: true,
            }),
        }
    }

    /// The dialogue for a code sent at `issued_at` (`delivered`: the
    /// gateway that delivered it and its prompt).
    fn dialogue(
        &self,
        code: Code,
        issued_at: Duration,
        (gateway, prompt): (&'static str, String),
        approval: Option<Approval>,
    ) -> Dialogue {
        let deadline = issued_at + self.config.code.ttl;
        let approval = approval.map(|a| Approval { deadline, ..a });
        Dialogue {
            prompt,
            gateway,
            judging: Judging::Answers(Expect {
                code: Some((code, deadline, gateway)),
            }),
            approval,
        }
    }

    /// Decides whether a code may be sent at all; nothing is sent or
    /// counted here. In this order: a name NSS does not know is refused
    /// after a decoy dialogue, before `[policy]` or `unenrolled` could wave
    /// it through; `[policy]`; the enrolment (a deferred [`Lookup`] is
    /// made here, so a login `[policy]` exempts never asks the directory;
    /// then `unenrolled`); OpenSSH's wrong-password marker (a decoy
    /// dialogue). Goes on with the user's routes.
    fn precheck_lookup(
        &mut self,
        ctx: &LoginContext,
        enrolment: Lookup<'_>,
    ) -> ControlFlow<End, Vec<Route>> {
        if matches!(enrolment, Lookup::Known(Enrolment::UnknownUser)) {
            // Before [policy] and `unenrolled`: neither may wave through a
            // name the account database does not know. Same prompts as a
            // real login; nothing is sent.
            self.debug(ctx, "user unknown to NSS: prompting without sending");
            let dialogue = Dialogue::decoy(
                decoy_prompt(self.config, &ctx.user),
                "-",
                Outcome::UnknownUser,
                "no account of this name (NSS getpwnam); denied whatever unenrolled says",
            );
            let first_is_telegram = self.config.gateways.first() == Some(&GatewayKind::Telegram);
            return ControlFlow::Break(End::Ask(self.decoy_tap(dialogue, first_is_telegram)));
        }
        self.policy(ctx)?;
        let enrolment = match enrolment {
            Lookup::Known(enrolment) => enrolment,
            Lookup::Deferred(find) => find(&mut *self.log),
        };
        let routes = match enrolment {
            // Handled above, before [policy]; kept so no arm is a wildcard.
            Enrolment::UnknownUser => {
                let reason = "no account of this name";
                return ControlFlow::Break(self.done(ctx, "-", Outcome::UnknownUser, reason));
            }
            Enrolment::NotEnrolled => return ControlFlow::Break(self.unenrolled(ctx)),
            Enrolment::DirectoryUnavailable(reason) => {
                let outcome = Outcome::DirectoryUnavailable;
                return ControlFlow::Break(self.done(ctx, "-", outcome, &reason));
            }
            Enrolment::Enrolled(routes) => routes,
        };
        if ctx.password_was_wrong {
            // The first factor already failed: sending would let anyone who
            // knows a user name make the bot spam that user.
            self.debug(
                ctx,
                "OpenSSH marks the password as wrong: prompting without sending",
            );
            let dialogue = Dialogue::decoy(
                routes
                    .first()
                    .map_or_else(|| "Verification code: ".to_string(), prompt_for),
                first_gateway(&routes),
                Outcome::WrongPassword,
                "first factor failed (OpenSSH wrong-password marker); no code sent",
            );
            let tappable = routes.first().is_some_and(tappable);
            return ControlFlow::Break(End::Ask(self.decoy_tap(dialogue, tappable)));
        }
        // [remember] (issue 16): a source that proved a second factor lately
        // skips the code. After policy, enrolment and the wrong-password
        // marker; never during a lockout (remember::lookup checks).
        if let Some(hit) = remember::lookup(
            &self.config.remember,
            &self.config.limits,
            self.state,
            self.wall,
            remember_source(ctx),
        ) {
            let factor = clean(&hit.source.factor);
            return ControlFlow::Break(self.done(ctx, &factor, Outcome::Remembered, &hit.reason()));
        }
        ControlFlow::Continue(routes)
    }

    /// [`Flow::draw`] and [`Flow::reserve`], for the unit tests.
    #[cfg(test)]
    fn reserve_drawn(&mut self, ctx: &LoginContext, routes: &[Route]) -> ControlFlow<End, Sending> {
        let code = self.draw(ctx, routes)?;
        self.reserve(ctx, routes, code)
    }

    /// [`Flow::deliver`] through every route, nothing sent before, for the
    /// unit tests.
    #[cfg(test)]
    fn deliver_all(
        &mut self,
        ctx: &LoginContext,
        routes: Vec<Route>,
        sending: Sending,
    ) -> ControlFlow<End, Dialogue> {
        let approval_off = self.approver.is_none() || !self.config.approve.enabled;
        self.deliver(ctx, routes, 0, sending, Sent::new(), approval_off)
    }

    /// [`Flow::precheck_lookup`] for the unit tests, with a known enrolment.
    #[cfg(test)]
    fn precheck<'l>(
        &mut self,
        ctx: &LoginContext,
        enrolment: impl Into<Lookup<'l>>,
    ) -> ControlFlow<End, Vec<Route>> {
        self.precheck_lookup(ctx, enrolment.into())
    }

    /// `[policy]`: a login it does not cover ends ignored; a policy that
    /// cannot be applied (a failed lookup, a missing group) denies.
    fn policy(&mut self, ctx: &LoginContext) -> ControlFlow<End> {
        let coverage = self
            .config
            .access
            .coverage(&ctx.user, ctx.rhost.as_deref(), self.groups);
        let (outcome, reason) = match coverage {
            Ok(Coverage::Covered) => return ControlFlow::Continue(()),
            Ok(Coverage::Exempt(why)) => (
                Outcome::PolicyIgnored,
                format!("not covered by [policy]: {why}"),
            ),
            Err(e) => (
                Outcome::SystemError,
                format!("[policy] cannot be applied: {e}"),
            ),
        };
        ControlFlow::Break(self.done(ctx, "-", outcome, &reason))
    }

    /// A user without an entry: ignored, or (`unenrolled = "deny"`) denied
    /// after a decoy dialogue, so enrolment does not leak through
    /// behaviour.
    fn unenrolled(&mut self, ctx: &LoginContext) -> End {
        match self.config.unenrolled {
            Unenrolled::Ignore => self.done(
                ctx,
                "-",
                Outcome::NotEnrolledIgnored,
                "user has no entry in the users file; unenrolled=ignore",
            ),
            Unenrolled::Deny => {
                self.debug(ctx, "not enrolled: prompting without sending");
                let dialogue = Dialogue::decoy(
                    decoy_prompt(self.config, &ctx.user),
                    "-",
                    Outcome::NotEnrolledDenied,
                    "user has no entry in the users file; unenrolled=deny",
                );
                let first_is_telegram =
                    self.config.gateways.first() == Some(&GatewayKind::Telegram);
                End::Ask(self.decoy_tap(dialogue, first_is_telegram))
            }
        }
    }

    /// Draws the code; a failed draw denies, with nothing reserved.
    fn draw(&mut self, ctx: &LoginContext, routes: &[Route]) -> ControlFlow<End, Code> {
        match self.codes.generate(self.config.code.digits) {
            Ok(c) => ControlFlow::Continue(c),
            Err(e) => {
                let reason = e.to_string();
                let gateway = first_gateway(routes);
                ControlFlow::Break(self.done(ctx, gateway, Outcome::SystemError, &reason))
            }
        }
    }

    /// Reserves the code's send under the user's lock before anything
    /// goes out, so concurrent logins are counted exactly. A lockout or a
    /// full window sends nothing ([`Flow::blocked`]). An unusable state
    /// file denies, with nothing reserved.
    fn reserve(
        &mut self,
        ctx: &LoginContext,
        routes: &[Route],
        code: Code,
    ) -> ControlFlow<End, Sending> {
        let gateway = first_gateway(routes);
        let now = self.wall.unix_now();
        let limits = &self.config.limits;
        let reserved = update_with(self.state, &ctx.user, |s| {
            (limits::reserve_send(s, limits, now), s.backup_codes.len())
        });
        let (reservation, backup_left) = match reserved {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .conv
                    .error("Login refused: the login state cannot be read. Tell your admin.");
                let reason = e.to_string();
                return ControlFlow::Break(self.done(ctx, gateway, Outcome::StateFailed, &reason));
            }
        };
        let fallback = Fallback {
            totp: self.totp.is_some(),
            backup: backup_left > 0,
        };
        match reservation {
            Ok(()) => ControlFlow::Continue(Sending {
                code,
                fallback,
                reserved_at: now,
            }),
            Err(block) => ControlFlow::Break(self.blocked(ctx, gateway, block, fallback, now)),
        }
    }

    /// No code may be sent. During a lockout only a backup code is asked
    /// for (the lockout may be someone else's doing: they have the
    /// password); with the window full, any fallback factor the user has.
    /// Without one the login is refused.
    fn blocked(
        &mut self,
        ctx: &LoginContext,
        gateway: &'static str,
        block: Block,
        fallback: Fallback,
        now: u64,
    ) -> End {
        let wait = wait_text(block.until(), now);
        match block {
            // "Not me": nothing opens it but `pam-gateway unlock`, not even
            // a backup code (whoever has the password is not the user).
            Block::LockedOut { until } if until == UNTIL_UNLOCKED => {
                let _ = self.conv.error(NOT_ME_LOCKED);
                let reason = "locked: Not me was tapped in Telegram; until an admin unlocks it \
                              (pam-gateway unlock); no code sent";
                self.done(ctx, gateway, Outcome::LockedOut, reason)
            }
            Block::LockedOut { .. } if fallback.backup => {
                // The user's backup codes still work, under their own limit
                // (limits::LOCKOUT_BACKUP_TRIES).
                let text =
                    format!("locked out (retry in {wait}); no code sent; asking for a backup code");
                self.note(ctx, Level::Warning, &text);
                let prompt = format!(
                    "Too many wrong codes: no code sent (try again in {wait}). Backup code: "
                );
                End::Ask(Dialogue::fallback(prompt, gateway))
            }
            Block::LockedOut { .. } => {
                let _ = self
                    .conv
                    .error(&format!("Too many wrong codes. Try again in {wait}."));
                let reason =
                    format!("locked out after too many wrong codes; no code sent; retry in {wait}");
                self.done(ctx, gateway, Outcome::LockedOut, &reason)
            }
            Block::TooManyCodes { .. } => {
                let why = format!(
                    "{} code(s) sent in the last {} s, the [limits] codes_per_window; \
                     no code sent; next in {wait}",
                    self.config.limits.codes_per_window, self.config.limits.window
                );
                if fallback.any() {
                    let text = format!("limit: {why}; asking for a fallback factor");
                    self.note(ctx, Level::Warning, &text);
                    let prompt = format!(
                        "No new code sent (limit reached; next in {wait}). {}",
                        fallback.prompt()
                    );
                    return End::Ask(Dialogue::fallback(prompt, gateway));
                }
                let _ = self.conv.error(&format!(
                    "Too many codes requested: no code sent. Try again in {wait}."
                ));
                self.done(ctx, gateway, Outcome::RateLimited, &why)
            }
        }
    }

    /// Sends the reserved code through the routes from `from` on, in
    /// order, until one delivers ([`Flow::send`]; `sent` holds what came
    /// before, `approval_off`: the daemon is not to be asked), and drops
    /// every route before it returns: no gateway (HTTP client, runtime
    /// thread) is held while the user reads and types. Goes on with the
    /// dialogue for the code; when no route delivered, ends as
    /// [`Flow::undelivered`] decides.
    fn deliver(
        &mut self,
        ctx: &LoginContext,
        routes: Vec<Route>,
        from: usize,
        sending: Sending,
        mut sent: Sent,
        approval_off: bool,
    ) -> ControlFlow<End, Dialogue> {
        let issued_at = self.clock.now();
        let rest = routes.get(from..).unwrap_or_default();
        self.send(ctx, rest, &sending.code, &mut sent, approval_off);
        let first = routes
            .first()
            .map(|r| (r.gateway.id(), r.gateway.display_name().to_string()));
        // The user may take minutes to answer: the gateways' HTTP clients
        // (reqwest's runtime thread, its epoll and sockets) go now, not at
        // the end of the login.
        drop(routes);
        let Some(delivered) = sent.delivered.take() else {
            return ControlFlow::Break(self.undelivered(ctx, first, sent, &sending));
        };
        let approval = sent.approval.take();
        ControlFlow::Continue(self.dialogue(sending.code, issued_at, delivered, approval))
    }

    /// Offers the message to each route in order until one delivers, into
    /// `sent`. Each failure is logged with the code scrubbed (`[code]`): a
    /// service may echo the request in its error. The message is wiped
    /// afterwards.
    fn send(
        &mut self,
        ctx: &LoginContext,
        routes: &[Route],
        code: &Code,
        sent: &mut Sent,
        mut approval_off: bool,
    ) {
        let mut text = render_message(&self.config.template, ctx, code, self.config.code.ttl);
        // Once the daemon is found absent or unsafe, not asked again.
        for route in routes {
            let (id, recipient) = (route.gateway.id(), mask(&route.recipient));
            if !approval_off && tappable(route) {
                self.debug(
                    ctx,
                    &format!("asking pam-gatewayd to send via {id} to {recipient}"),
                );
                match self.offer_approval(ctx, route, code, &text, None) {
                    Offer::Sent(approval) => {
                        sent.delivered = Some((id, approve::tap_prompt(approval.answer)));
                        sent.approval = Some(approval);
                        break;
                    }
                    Offer::Failed(e) => {
                        self.route_failed(ctx, id, &e, code, sent);
                        continue;
                    }
                    // Only an answer to a request that asks for the
                    // reservation, which this one does not.
                    Offer::Blocked(..) | Offer::Direct => approval_off = true,
                }
            }
            self.debug(ctx, &format!("sending via {id} to {recipient}"));
            match route.gateway.send(&route.recipient, &text) {
                Ok(()) => {
                    sent.delivered = Some((id, prompt_for(route)));
                    break;
                }
                Err(e) => self.route_failed(ctx, id, &e, code, sent),
            }
        }
        text.zeroize();
    }

    /// Logs one route's failure with the code scrubbed (the next route
    /// delivers it) and counts it.
    fn route_failed(
        &mut self,
        ctx: &LoginContext,
        id: &str,
        e: &DeliveryError,
        code: &Code,
        sent: &mut Sent,
    ) {
        let line = format!("{id}: {e}").replace(code.expose(), "[code]");
        self.log.log(
            Level::Warning,
            &format!(
                "user={} delivery failed: {}",
                clean(&ctx.user),
                clean_max(&line, 400)
            ),
        );
        sent.failed(e, ctx.caller_is_root, line);
    }

    /// `[approve]`: has pam-gatewayd send `text` (the rendered message) to
    /// the route's private chat with the number buttons and
    /// "Not me", counting the send against the limits first when
    /// `reserve` is given. Whatever keeps the daemon from taking it
    /// (absent, unsafe, stalled, its state file unusable, an answer that
    /// is none) means a direct send of the same code, logged once; a send
    /// the daemon tried and that failed is this route's failure, of the
    /// same kind as a direct send's, so fallback and `failmode` decide as
    /// without it.
    fn offer_approval(
        &mut self,
        ctx: &LoginContext,
        route: &Route,
        code: &Code,
        text: &str,
        reserve: Option<Reserve>,
    ) -> Offer {
        let Some(chat_id) = approve::private_chat(&route.recipient) else {
            return Offer::Direct;
        };
        let reserving = reserve.is_some();
        let drawn = approve::draw_numbers()
            .and_then(|(numbers, i)| Ok((numbers, numbers[i], approve::new_nonce()?)));
        let (numbers, answer, nonce) = match drawn {
            Ok(d) => d,
            Err(e) => {
                let why = format!("approval not offered: {e}; sending the code directly");
                self.note(ctx, Level::Warning, &why);
                return Offer::Direct;
            }
        };
        let mut request = ApprovalRequest {
            nonce,
            user: ctx.user.clone(),
            chat_id,
            text: approval_text(ctx, text),
            numbers,
            answer,
            expires_in_secs: self.config.code.ttl.as_secs(),
            reserve,
        };
        let Some(approver) = self.approver.as_deref_mut() else {
            request.text.zeroize();
            return Offer::Direct;
        };
        let result = approver.approve(&request);
        request.text.zeroize();
        let scrub = |t: String| t.replace(code.expose(), "[code]");
        match result {
            Ok(Approved::Blocked {
                block,
                backup_codes,
            }) if reserving => Offer::Blocked(block, backup_codes),
            Ok(Approved::Blocked { .. }) => {
                let text = "approval: pam-gatewayd answered \"blocked\" to a request \
                            that asked for no reservation; sending the code directly";
                self.note(ctx, Level::Warning, text);
                Offer::Direct
            }
            Ok(Approved::Sent) => Offer::Sent(Approval {
                nonce: Some(request.nonce),
                answer,
                deadline: self.clock.now() + self.config.code.ttl,
                code_prompt: prompt_for(route),
                offered: Cell::new(true),
            }),
            Err(e @ ApproveError::Absent(_)) => {
                let text = format!("approval: {e}; sending the code directly");
                self.note(ctx, Level::Warning, &scrub(text));
                Offer::Direct
            }
            Err(ApproveError::Unsafe(why)) => {
                let text = format!(
                    "approval: NOT using pam-gatewayd, its socket is not safe: {why}; \
                     sending the code directly"
                );
                self.note(ctx, Level::Error, &scrub(text));
                Offer::Direct
            }
            Err(ApproveError::Failed { kind, detail }) => {
                match delivery_error(kind, scrub(detail.clone())) {
                    Some(e) => Offer::Failed(e),
                    None => {
                        let text = format!(
                            "approval: pam-gatewayd did not take it ({kind:?}: {}); \
                             sending the code directly",
                            scrub(detail)
                        );
                        self.note(ctx, Level::Warning, &text);
                        Offer::Direct
                    }
                }
            }
            Err(e @ (ApproveError::Timeout | ApproveError::Protocol(_))) => {
                // Whether the daemon sent is unknown: the same code goes
                // out directly, and the daemon is told the login no longer
                // waits for its buttons (best effort).
                let text = format!("approval: {e}; sending the same code directly");
                self.note(ctx, Level::Warning, &scrub(text));
                if let Some(approver) = self.approver.as_deref_mut() {
                    let _ = approver.finish(&request.nonce, Final::Expired);
                }
                Offer::Direct
            }
        }
    }

    /// A decoy dialogue looks like a real login of the same kind: when a
    /// real one would be offered a tap (`[approve]` on, the first route a
    /// private Telegram chat, the daemon answering), so is the decoy, with
    /// a number drawn the same way. Nothing is sent; pressing Enter waits
    /// as a real login waits for a tap that does not come.
    fn decoy_tap(&mut self, mut dialogue: Dialogue, tappable: bool) -> Dialogue {
        if !self.config.approve.enabled || !tappable {
            return dialogue;
        }
        let Some(approver) = self.approver.as_deref_mut() else {
            return dialogue;
        };
        if !approver.available() {
            return dialogue;
        }
        let Ok((numbers, i)) = approve::draw_numbers() else {
            return dialogue;
        };
        let code_prompt = std::mem::replace(&mut dialogue.prompt, approve::tap_prompt(numbers[i]));
        dialogue.approval = Some(Approval {
            nonce: None,
            answer: numbers[i],
            deadline: self.clock.now() + self.config.code.ttl,
            code_prompt,
            offered: Cell::new(true),
        });
        dialogue
    }

    /// No route delivered. The reservation is given back only when
    /// certainly nothing reached anyone. A user with a fallback factor is
    /// asked for it; otherwise `failmode` decides ([`Flow::failmode`]).
    /// `first`: the first route's gateway id and display name.
    fn undelivered(
        &mut self,
        ctx: &LoginContext,
        first: Option<(&'static str, String)>,
        sent: Sent,
        sending: &Sending,
    ) -> End {
        if sent.nothing_delivered {
            // No code reached the user: the reservation does not count.
            let released = update_with(self.state, &ctx.user, |s| {
                limits::release_send(s, sending.reserved_at)
            });
            if let Err(e) = released {
                let text = format!("could not give back the unused send: {e}");
                self.note(ctx, Level::Warning, &text);
            }
        }
        let mut reason = if sent.failures.is_empty() {
            "the user's entry names no gateway".to_string()
        } else {
            sent.failures.join("; ")
        };
        if !sent.nothing_delivered {
            reason.push_str("; counted against codes_per_window: a send may have got through");
        }
        let gateway = first.as_ref().map_or("-", |(id, _)| *id);
        let fallback = sending.fallback;
        if !fallback.any() {
            return self.failmode(ctx, gateway, &sent, reason);
        }
        // A user with an authenticator or backup codes is asked for one
        // instead of being refused (or waved through).
        let text = format!("no code delivered ({reason}); asking for a fallback factor");
        self.note(ctx, Level::Info, &text);
        let prompt = match first {
            Some((_, name)) => format!("Could not send a code via {name}. {}", fallback.prompt()),
            None => fallback.prompt().to_string(),
        };
        End::Ask(Dialogue::fallback(prompt, gateway))
    }

    /// `failmode` after a failed delivery: `safe` ignores the login only
    /// when every route failed in a way it may excuse
    /// ([`Sent::safe_may_excuse`]); everything else denies.
    fn failmode(
        &mut self,
        ctx: &LoginContext,
        gateway: &str,
        sent: &Sent,
        mut reason: String,
    ) -> End {
        // failmode=safe covers a service we cannot reach. A refusal
        // (rate limit, blocked bot) or a misconfiguration can be caused
        // or kept up on purpose, so it always denies.
        let outcome = match self.config.failmode {
            FailMode::Safe if sent.safe_may_excuse && !sent.failures.is_empty() => {
                Outcome::DeliveryFailedIgnored
            }
            FailMode::Safe => {
                reason.push_str(
                    "; failmode=safe not applied: a local failure, a refusal, or (the \
                     caller not being root) no proof that the service failed",
                );
                Outcome::DeliveryFailedDenied
            }
            FailMode::Secure => Outcome::DeliveryFailedDenied,
        };
        self.done(ctx, gateway, outcome, &reason)
    }

    /// Holds the dialogue to its outcome: up to `attempts` prompts. A decoy
    /// looks at no answer and ends as it says; otherwise each answer is
    /// judged ([`Flow::judge`]) and the way the prompting ended is logged
    /// ([`Flow::conclude`]).
    fn prompt(&mut self, ctx: &LoginContext, dialogue: Dialogue) -> Outcome {
        let attempts = self.config.code.attempts;
        let Dialogue {
            prompt,
            gateway,
            judging,
            approval,
        } = dialogue;
        let approval = approval.as_ref();
        match judging {
            Judging::Decoy { outcome, reason } => {
                match self.ask(ctx, None, approval, &prompt, attempts) {
                    Err(failed) => self.finish(ctx, gateway, failed, "conversation failed"),
                    Ok(_) => self.finish(ctx, gateway, outcome, reason),
                }
            }
            Judging::Answers(expect) => {
                let result = self.ask(ctx, Some(&expect), approval, &prompt, attempts);
                if let Some(a) = approval {
                    self.finish_approval(ctx, a, &result);
                }
                self.conclude(ctx, gateway, result, attempts)
            }
        }
    }

    /// Tells the daemon how the login ended, so the message shows it and
    /// its buttons go (best effort, bounded by the client's deadline).
    fn finish_approval(
        &mut self,
        ctx: &LoginContext,
        approval: &Approval,
        result: &Result<AskResult, Outcome>,
    ) {
        let Some(nonce) = &approval.nonce else {
            return;
        };
        let last = match result {
            Ok(AskResult::Matched(Factor::Approved)) => Final::Approved,
            Ok(AskResult::Matched(_)) => Final::Used,
            Ok(AskResult::Expired) | Err(_) => Final::Expired,
            Ok(_) => Final::Denied,
        };
        let Some(approver) = self.approver.as_deref_mut() else {
            return;
        };
        if let Err(e) = approver.finish(nonce, last) {
            self.debug(ctx, &format!("approval: could not finish the message: {e}"));
        }
    }

    /// Maps how the prompting ended to the outcome, and logs it.
    fn conclude(
        &mut self,
        ctx: &LoginContext,
        gateway: &'static str,
        result: Result<AskResult, Outcome>,
        attempts: u32,
    ) -> Outcome {
        match result {
            Err(outcome) => self.finish(ctx, gateway, outcome, "conversation failed"),
            Ok(AskResult::Matched(factor)) => {
                // [remember] (issue 16): this source skips the code for a while.
                if let Err(e) = remember::record(
                    &self.config.remember,
                    self.state,
                    self.wall,
                    remember_source(ctx),
                    factor.id(),
                ) {
                    self.note(
                        ctx,
                        Level::Warning,
                        &format!("could not remember this source: {e}"),
                    );
                }
                let reason = match factor {
                    Factor::Sent(_) => "code accepted".to_string(),
                    Factor::Approved => {
                        "approved in Telegram: the number shown was tapped (method=approved)"
                            .to_string()
                    }
                    Factor::Totp => "authenticator code accepted".to_string(),
                    Factor::Backup { left } => {
                        format!("backup code accepted; {left} left")
                    }
                };
                let id = factor.id();
                self.finish(ctx, id, Outcome::Success { gateway: id }, &reason)
            }
            Ok(AskResult::Expired) => self.finish(
                ctx,
                gateway,
                Outcome::Expired,
                "answer came after the code expired",
            ),
            Ok(AskResult::NotMe) => self.finish(
                ctx,
                gateway,
                Outcome::DeniedNotMe,
                "\"Not me\" tapped in Telegram: pam-gatewayd locked the second factor and \
                 alerted the admins",
            ),
            Ok(AskResult::Exhausted) => self.finish(
                ctx,
                gateway,
                Outcome::MaxTries,
                &format!("{attempts} wrong code(s)"),
            ),
            Ok(AskResult::LockedOut { until, started }) => {
                let wait = wait_text(until, self.wall.unix_now());
                let reason = if until == UNTIL_UNLOCKED {
                    "locked: Not me was tapped in Telegram during this login; until an admin \
                     unlocks it (pam-gateway unlock)"
                        .to_string()
                } else if started {
                    format!(
                        "{} wrong codes in a row: locked out for {wait}",
                        self.config.limits.failures_before_lockout
                    )
                } else {
                    format!("locked out (by another login's wrong codes); retry in {wait}")
                };
                self.finish(ctx, gateway, Outcome::LockedOut, &reason)
            }
            Ok(AskResult::StateFailed(e)) => {
                self.finish(ctx, gateway, Outcome::StateFailed, &e.to_string())
            }
        }
    }

    /// Judges one answer under the user's lock. During a lockout only a
    /// backup code is looked at ([`judge_locked`]). Otherwise: the sent
    /// code (too late once its deadline passed), an authenticator code
    /// (never the same time step twice), a backup code (used up once
    /// accepted); anything else is a wrong answer and counts towards the
    /// lockout. An accepted answer clears the lockout history.
    fn judge(
        &mut self,
        ctx: &LoginContext,
        expect: &Expect,
        answer: &Answer,
    ) -> Result<Verdict, StateError> {
        let bytes = answer.as_bytes();
        // An absurdly long answer is wrong without further work.
        let bytes_ok = bytes.len() <= MAX_ANSWER_LEN;
        let expired = expect
            .code
            .as_ref()
            .is_some_and(|(_, deadline, _)| self.clock.now() > *deadline);
        let now = self.wall.unix_now();
        let limits = &self.config.limits;
        let totp = self.totp;
        update_with(self.state, &ctx.user, |s| {
            if let Some(until) = limits::locked_until(s, limits, now) {
                return judge_locked(s, bytes_ok.then_some(bytes), until);
            }
            let mut replay = false;
            if bytes_ok {
                if let Some((code, _, gateway)) = &expect.code {
                    if code.matches(bytes) {
                        if expired {
                            return Verdict::Expired;
                        }
                        limits::record_success(s);
                        return Verdict::Accepted(Factor::Sent(gateway));
                    }
                }
                if let Some(step) = totp.and_then(|k| k.matching_step(bytes, now)) {
                    if s.totp_last_step.is_none_or(|last| step > last) {
                        s.totp_last_step = Some(step);
                        limits::record_success(s);
                        return Verdict::Accepted(Factor::Totp);
                    }
                    replay = true;
                }
                if let Some(left) = use_backup_code(s, bytes) {
                    return Verdict::Accepted(Factor::Backup { left });
                }
            }
            // [remember] (issue 16): a wrong answer ends every remembered source.
            remember::end_all(s);
            Verdict::Wrong {
                expired,
                replay,
                locked_until: limits::record_failure(s, limits, now),
            }
        })
    }

    /// Prompts until `attempts` answers were wrong. With `expected = None`
    /// no answer is looked at (nothing was sent), but the dialogue looks the
    /// same. With a tap offered, an empty answer (Enter) waits for the tap
    /// ([`Flow::await_tap`]) instead of being judged; waiting uses no
    /// attempt, and ends when the code expires.
    fn ask(
        &mut self,
        ctx: &LoginContext,
        expected: Option<&Expect>,
        approval: Option<&Approval>,
        prompt: &str,
        attempts: u32,
    ) -> Result<AskResult, Outcome> {
        let mut wrong = 0;
        let mut lead = "";
        while wrong < attempts {
            let base = match approval {
                Some(a) if !a.offered.get() => a.code_prompt.as_str(),
                _ => prompt,
            };
            let shown = format!("{lead}{base}");
            lead = "";
            let answer = match self.conv.prompt_hidden(&shown) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    self.debug(ctx, "conversation returned no answer");
                    return Err(Outcome::ConversationFailed);
                }
                Err(ConvError(e)) => {
                    self.debug(ctx, &format!("conversation error: {e}"));
                    return Err(Outcome::ConversationFailed);
                }
            };
            let tap = approval.filter(|a| a.offered.get() && approve::is_enter(answer.as_bytes()));
            let mut what = "code";
            if let Some(a) = tap {
                let verdict = match self.await_tap(ctx, a) {
                    Tap::Again(text) => {
                        lead = text;
                        continue;
                    }
                    Tap::NotMe => {
                        let _ = self
                            .conv
                            .error("Login denied: \"Not me\" was tapped in Telegram.");
                        return Ok(AskResult::NotMe);
                    }
                    Tap::StateFailed(e) => {
                        let _ = self.conv.error(
                            "Login refused: the login state cannot be saved. Tell your admin.",
                        );
                        return Ok(AskResult::StateFailed(e));
                    }
                    Tap::Judged(v) => v,
                };
                what = "number tapped";
                if let Some(result) = self.tell(ctx, verdict) {
                    return Ok(result);
                }
            } else if let Some(expect) = expected {
                let verdict = match self.judge(ctx, expect, &answer) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = self.conv.error(
                            "Login refused: the login state cannot be saved. Tell your admin.",
                        );
                        return Ok(AskResult::StateFailed(e));
                    }
                };
                if let Some(result) = self.tell(ctx, verdict) {
                    return Ok(result);
                }
            }
            wrong += 1;
            let left = attempts - wrong;
            self.debug(ctx, &format!("wrong {what}, {left} attempt(s) left"));
            if left > 0 {
                let msg = if left == 1 {
                    format!("Wrong {what}. 1 attempt left.")
                } else {
                    format!("Wrong {what}. {left} attempts left.")
                };
                if self.conv.error(&msg).is_err() {
                    return Err(Outcome::ConversationFailed);
                }
            }
        }
        Ok(AskResult::Exhausted)
    }

    /// The user pressed Enter with a tap offered: waits for the tap up to
    /// `[approve] wait`, never past the code's deadline. A decoy (no
    /// nonce) waits the same, and no tap comes. Whatever keeps the answer
    /// from coming (the daemon gone, stalled, restarted, this process
    /// stopped) ends the offer: the user is asked for the typed code.
    fn await_tap(&mut self, ctx: &LoginContext, approval: &Approval) -> Tap {
        let remaining = approval.deadline.saturating_sub(self.clock.now());
        if remaining.is_zero() {
            approval.offered.set(false);
            return Tap::Again("Approval no longer available. ");
        }
        let wait = remaining.min(Duration::from_secs(self.config.approve.wait));
        let Some(nonce) = &approval.nonce else {
            self.clock.sleep(wait);
            return Tap::Again("No tap yet. ");
        };
        let state = match self.approver.as_deref_mut() {
            Some(approver) => approver.wait(nonce, wait),
            None => Err(ApproveError::Protocol("no client".into())),
        };
        let state = match state {
            Ok(ApprovalState::Pending) => return Tap::Again("No tap yet. "),
            Ok(state) => state,
            Err(e) => {
                approval.offered.set(false);
                let text = format!("approval: {e}; asking for the typed code");
                self.note(ctx, Level::Warning, &text);
                return Tap::Again("Approval no longer available. ");
            }
        };
        approval.offered.set(false);
        let right = match state {
            ApprovalState::Approved => true,
            ApprovalState::Wrong => false,
            ApprovalState::NotMe => return Tap::NotMe,
            ApprovalState::Pending | ApprovalState::Gone => {
                let text = "approval: gone (expired, or pam-gatewayd restarted); asking for the \
                            typed code";
                self.note(ctx, Level::Info, text);
                return Tap::Again("Approval no longer available. ");
            }
        };
        match self.judge_tap(ctx, approval, right) {
            Ok(v) => Tap::Judged(v),
            Err(e) => Tap::StateFailed(e),
        }
    }

    /// A tap judged under the user's lock like a typed answer: the right
    /// number is accepted unless the user is locked out or the code's
    /// deadline passed; another number is a wrong answer, counted towards
    /// the lockout.
    fn judge_tap(
        &mut self,
        ctx: &LoginContext,
        approval: &Approval,
        right: bool,
    ) -> Result<Verdict, StateError> {
        let expired = self.clock.now() > approval.deadline;
        let now = self.wall.unix_now();
        let limits = &self.config.limits;
        update_with(self.state, &ctx.user, |s| {
            if let Some(until) = limits::locked_until(s, limits, now) {
                return Verdict::Locked(until);
            }
            if right && expired {
                return Verdict::Expired;
            }
            if right {
                limits::record_success(s);
                return Verdict::Accepted(Factor::Approved);
            }
            remember::end_all(s);
            Verdict::Wrong {
                expired,
                replay: false,
                locked_until: limits::record_failure(s, limits, now),
            }
        })
    }

    /// Tells the user what a verdict means for them; `Some` when it ends
    /// the prompting, `None` for a wrong answer that leaves attempts.
    fn tell(&mut self, ctx: &LoginContext, verdict: Verdict) -> Option<AskResult> {
        match verdict {
            Verdict::Accepted(factor) => {
                if let Factor::Backup { left } = factor {
                    let text = match left {
                        0 => "Backup code accepted. That was your last one: \
                              ask your admin for new backup codes."
                            .to_string(),
                        1 => "Backup code accepted. 1 backup code left.".to_string(),
                        n => format!("Backup code accepted. {n} backup codes left."),
                    };
                    let _ = self.conv.info(&text);
                }
                Some(AskResult::Matched(factor))
            }
            Verdict::Expired => {
                let _ = self.conv.error("The code has expired.");
                Some(AskResult::Expired)
            }
            Verdict::Locked(until) => {
                if until == UNTIL_UNLOCKED {
                    let _ = self.conv.error(NOT_ME_LOCKED);
                } else {
                    let wait = wait_text(until, self.wall.unix_now());
                    let _ = self
                        .conv
                        .error(&format!("Too many wrong codes. Try again in {wait}."));
                }
                Some(AskResult::LockedOut {
                    until,
                    started: false,
                })
            }
            Verdict::Wrong {
                expired,
                replay,
                locked_until,
            } => {
                if replay {
                    let text = "an authenticator code was used a second time: refused";
                    self.note(ctx, Level::Warning, text);
                }
                if let Some(until) = locked_until {
                    let wait = wait_text(until, self.wall.unix_now());
                    let _ = self.conv.error(&format!(
                        "Wrong code. Too many wrong codes: try again in {wait}."
                    ));
                    return Some(AskResult::LockedOut {
                        until,
                        started: true,
                    });
                }
                if expired {
                    let _ = self.conv.error("The code has expired.");
                    return Some(AskResult::Expired);
                }
                None
            }
        }
    }
}

/// An answer during a lockout (`None`: too long to look at). Only a
/// backup code is checked, and only [`limits::LOCKOUT_BACKUP_TRIES`] of
/// them per lockout: the user's way in that someone who merely has the
/// password does not have. Anything else is [`Verdict::Locked`], and
/// counts towards nothing.
fn judge_locked(s: &mut UserState, answer: Option<&[u8]>, until: u64) -> Verdict {
    if let Some(bytes) = answer {
        if !s.backup_codes.is_empty()
            && backup_codes::normalize(bytes).is_some()
            && s.lockout_backup_tries < limits::LOCKOUT_BACKUP_TRIES
        {
            s.lockout_backup_tries += 1;
            if let Some(left) = use_backup_code(s, bytes) {
                return Verdict::Accepted(Factor::Backup { left });
            }
        }
    }
    Verdict::Locked(until)
}

/// If `answer` is one of the user's backup codes: uses it up, records the
/// success, and returns how many are left.
fn use_backup_code(s: &mut UserState, answer: &[u8]) -> Option<usize> {
    let i = backup_codes::find_match(&s.backup_codes, answer)?;
    s.backup_codes.remove(i);
    limits::record_success(s);
    Some(s.backup_codes.len())
}

impl Dialogue {
    /// A dialogue in which nothing was sent and no answer is looked at.
    fn decoy(
        prompt: String,
        gateway: &'static str,
        outcome: Outcome,
        reason: &'static str,
    ) -> Dialogue {
        Dialogue {
            prompt,
            gateway,
            judging: Judging::Decoy { outcome, reason },
            approval: None,
        }
    }

    /// No code went out: only the fallback factors can match.
    fn fallback(prompt: String, gateway: &'static str) -> Dialogue {
        Dialogue {
            prompt,
            gateway,
            judging: Judging::Answers(Expect { code: None }),
            approval: None,
        }
    }
}

/// `[approve]` may offer a tap on this route: Telegram to a private chat.
fn tappable(route: &Route) -> bool {
    route.gateway.id() == GatewayKind::Telegram.id()
        && approve::private_chat(&route.recipient).is_some()
}

/// The message of a login offered approval: who, where and how, then the
/// usual message (with the code). Which number to tap is only in the
/// prompt: number matching, so that a tap is not a reflex.
fn approval_text(ctx: &LoginContext, message: &str) -> String {
    // Under su the login is the target's (root) and PAM_RUSER the account
    // that ran su: the one the user needs to see to say "Not me".
    let by = ctx
        .ruser
        .as_deref()
        .filter(|r| !r.is_empty() && *r != ctx.user)
        .map(|r| format!("Requested by: {}\n", message_field(r)))
        .unwrap_or_default();
    format!(
        "Login request: {}@{}\nService: {}\nFrom: {}\n{by}\nTap the number your login prompt shows, \
         or type the code.\n\n{message}",
        message_field(&ctx.user),
        message_field(&ctx.host),
        message_field(&ctx.service),
        message_field(ctx.rhost_or_local()),
    )
}

/// A failed send the daemon reports, as the same failure of a direct
/// send; `None` for the daemon's own refusals (busy, a bad request, another
/// version, a local failure): nothing was tried, the module sends itself.
/// What the daemon needs to count a send as the module would: `config`'s
/// state dir and limits; `None` for a state dir that is not UTF-8 (the
/// module then counts the send itself).
fn reserve_for(config: &Config) -> Option<Reserve> {
    let l = &config.limits;
    Some(Reserve {
        state_dir: config.state_dir.to_str()?.to_string(),
        codes_per_window: l.codes_per_window,
        window: l.window,
        failures_before_lockout: l.failures_before_lockout,
        lockout: l.lockout,
        max_lockout: l.max_lockout,
    })
}

fn delivery_error(kind: ErrorKind, detail: String) -> Option<DeliveryError> {
    let detail = format!("via pam-gatewayd: {detail}");
    Some(match kind {
        ErrorKind::Unreachable => DeliveryError::Unreachable(detail),
        ErrorKind::Refused => DeliveryError::Refused(detail),
        ErrorKind::ServiceFailed => DeliveryError::ServiceFailed(detail),
        ErrorKind::Rejected => DeliveryError::Rejected {
            reason: detail,
            retry_after: None,
        },
        ErrorKind::Misconfigured => DeliveryError::Misconfigured(detail),
        ErrorKind::Local
        | ErrorKind::BadRequest
        | ErrorKind::Version
        | ErrorKind::Busy
        | ErrorKind::State => {
            return None;
        }
    })
}

/// The first route's gateway, for log lines before any was tried.
fn first_gateway(routes: &[Route]) -> &'static str {
    routes.first().map(|r| r.gateway.id()).unwrap_or("-")
}

enum AskResult {
    Matched(Factor),
    /// "Not me" tapped.
    NotMe,
    Expired,
    Exhausted,
    LockedOut {
        until: u64,
        started: bool,
    },
    StateFailed(StateError),
}

/// This login as `[remember]` sees it.
fn remember_source(ctx: &LoginContext) -> remember::Source<'_> {
    remember::Source {
        user: &ctx.user,
        service: &ctx.service,
        rhost: ctx.rhost.as_deref(),
    }
}

/// The prompt for a user without an entry under `unenrolled = "deny"`: it
/// looks like an enrolled user's (first gateway, three digits), so the prompt
/// does not tell someone who has a password whether the account is enrolled.
/// The digits are keyed on the config's secrets and stable per user.
pub fn decoy_prompt(config: &Config, user: &str) -> String {
    use sha2::Digest;
    let Some(kind) = config.gateways.first() else {
        return "Verification code: ".to_string();
    };
    let mut hash = sha2::Sha256::new();
    hash.update(config.decoy_key.get());
    hash.update(user.as_bytes());
    let digest = hash.finalize();
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1000;
    format!(
        "Code sent via {} to ***{n:03}. Verification code: ",
        config.display_name(*kind)
    )
}

/// "Code sent via Telegram to ***977. Verification code: " — OpenSSH shows
/// informational messages only after authentication, so the hint goes into
/// the prompt itself.
pub fn prompt_for(route: &Route) -> String {
    format!(
        "Code sent via {} to {}. Verification code: ",
        route.gateway.display_name(),
        mask(&route.recipient)
    )
}

/// Each step of [`Flow::authenticate`] called on its own, with fakes.
#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::{Cell, RefCell};
    use std::path::Path;
    use std::rc::Rc;

    use crate::code::CodeError;
    use crate::log::MemoryLog;
    use crate::policy::LookupError;
    use crate::random::RandomError;
    use crate::state::MemoryStateStore;

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
    const START: u64 = 1_700_000_000;
    const CODE: &str = "024681";
    const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const NO_ENTROPY_OS: getrandom::Error = getrandom::Error::UNSUPPORTED;
    const NO_ENTROPY: RandomError = RandomError::Os(NO_ENTROPY_OS);

    /// The user's side: scripted answers (`None`: hangs up), and what the
    /// flow showed.
    #[derive(Default)]
    struct Script {
        answers: Vec<Option<String>>,
        prompts: Vec<String>,
        errors: Vec<String>,
        infos: Vec<String>,
    }

    impl Conversation for Script {
        fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
            self.prompts.push(prompt.to_string());
            assert!(
                !self.answers.is_empty(),
                "prompted more often than scripted"
            );
            match self.answers.remove(0) {
                Some(text) => Ok(Some(Answer::new(text.into_bytes()))),
                None => Err(ConvError("hung up".into())),
            }
        }
        fn error(&mut self, text: &str) -> Result<(), ConvError> {
            self.errors.push(text.to_string());
            Ok(())
        }
        fn info(&mut self, text: &str) -> Result<(), ConvError> {
            self.infos.push(text.to_string());
            Ok(())
        }
    }

    struct Mono(Cell<Duration>);

    impl Clock for Mono {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    struct Wall(Cell<u64>);

    impl WallClock for Wall {
        fn unix_now(&self) -> u64 {
            self.0.get()
        }
    }

    /// [`CODE`], or a failing random source.
    struct Codes {
        broken: bool,
    }

    impl CodeSource for Codes {
        fn generate(&mut self, _: u32) -> Result<Code, CodeError> {
            if self.broken {
                return Err(CodeError::Random(NO_ENTROPY));
            }
            Ok(Code::from_digits(CODE))
        }
    }

    /// No group lookups are expected: any is an error.
    struct NoGroups;

    impl Groups for NoGroups {
        fn user_gids(&self, _: &str) -> Result<Option<Vec<u32>>, LookupError> {
            Err("no group lookups expected".into())
        }
        fn group_gid(&self, _: &str) -> Result<Option<u32>, LookupError> {
            Err("no group lookups expected".into())
        }
    }

    /// A gateway that answers `result`; records what it delivered and
    /// counts the gateways still alive.
    struct Fake {
        id: &'static str,
        name: &'static str,
        result: Result<(), DeliveryError>,
        outbox: Rc<RefCell<Vec<String>>>,
        alive: Rc<Cell<u32>>,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.alive.set(self.alive.get() - 1);
        }
    }

    impl Gateway for Fake {
        fn id(&self) -> &'static str {
            self.id
        }
        fn display_name(&self) -> &str {
            self.name
        }
        fn send(&self, _: &str, text: &str) -> Result<(), DeliveryError> {
            self.result.clone()?;
            self.outbox.borrow_mut().push(text.to_string());
            Ok(())
        }
    }

    /// Everything a [`Flow`] borrows.
    struct Rig {
        config: Config,
        conv: Script,
        clock: Mono,
        codes: Codes,
        log: MemoryLog,
        store: MemoryStateStore,
        wall: Wall,
        totp: Option<TotpKey>,
        outbox: Rc<RefCell<Vec<String>>>,
        alive: Rc<Cell<u32>>,
    }

    impl Rig {
        /// `extra`: gateway.toml after a `[telegram]` section.
        fn new(extra: &str) -> Rig {
            let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n{extra}");
            let path = Path::new("/etc/pam_gateway/gateway.toml");
            Rig {
                config: Config::parse(path, &text).expect("config"),
                conv: Script::default(),
                clock: Mono(Cell::new(Duration::from_secs(100))),
                codes: Codes { broken: false },
                log: MemoryLog::default(),
                store: MemoryStateStore::default(),
                wall: Wall(Cell::new(START)),
                totp: None,
                outbox: Rc::default(),
                alive: Rc::default(),
            }
        }

        fn with_totp(mut self) -> Rig {
            self.totp = Some(TotpKey::from_base32(TOTP_B32).expect("key"));
            self
        }

        fn flow(&mut self) -> Flow<'_> {
            Flow {
                config: &self.config,
                conv: &mut self.conv,
                clock: &self.clock,
                codes: &mut self.codes,
                log: &mut self.log,
                debug: true,
                state: &self.store,
                wall: &self.wall,
                groups: &NoGroups,
                totp: self.totp.as_ref(),
                approver: None,
            }
        }

        fn route(&self, id: &'static str, result: Result<(), DeliveryError>) -> Route {
            self.alive.set(self.alive.get() + 1);
            let name = if id == "telegram" {
                "Telegram"
            } else {
                "Signal"
            };
            Route {
                gateway: Box::new(Fake {
                    id,
                    name,
                    result,
                    outbox: self.outbox.clone(),
                    alive: self.alive.clone(),
                }),
                recipient: "123456977".into(),
            }
        }

        fn state(&self) -> UserState {
            self.store.get("alice").unwrap_or_default()
        }

        fn set_state(&self, f: impl FnOnce(&mut UserState)) {
            let mut s = self.state();
            f(&mut s);
            self.store.set("alice", s);
        }

        /// Gives alice `n` backup codes; returns them in clear.
        fn give_backup_codes(&self, n: usize) -> Vec<String> {
            let (codes, hashes) = backup_codes::generate(n, 10).expect("codes");
            self.set_state(|s| s.backup_codes = hashes);
            codes.iter().map(|c| c.expose().to_string()).collect()
        }

        fn lock_out(&self) {
            self.set_state(|s| s.locked_until = Some(START + 900));
        }

        fn log_text(&self) -> String {
            self.log.text()
        }
    }

    fn ctx() -> LoginContext {
        LoginContext {
            user: "alice".into(),
            service: "sshd".into(),
            rhost: Some("203.0.113.7".into()),
            tty: Some("ssh".into()),
            ruser: None,
            host: "pi".into(),
            password_was_wrong: false,
            caller_is_root: true,
        }
    }

    fn sending(rig: &Rig, fallback: Fallback) -> Sending {
        Sending {
            code: Code::from_digits(CODE),
            fallback,
            reserved_at: rig.wall.unix_now(),
        }
    }

    const NO_FALLBACK: Fallback = Fallback {
        totp: false,
        backup: false,
    };

    fn ended<T>(step: ControlFlow<End, T>) -> End {
        match step {
            ControlFlow::Break(end) => end,
            ControlFlow::Continue(_) => panic!("the step went on"),
        }
    }

    fn done<T>(step: ControlFlow<End, T>) -> Outcome {
        match ended(step) {
            End::Done(outcome) => outcome,
            End::Ask(d) => panic!("expected an outcome, got {d:?}"),
        }
    }

    fn asked<T>(step: ControlFlow<End, T>) -> Dialogue {
        match ended(step) {
            End::Ask(dialogue) => dialogue,
            End::Done(o) => panic!("expected a dialogue, got {o:?}"),
        }
    }

    fn decoy_outcome(d: &Dialogue) -> Outcome {
        match &d.judging {
            Judging::Decoy { outcome, .. } => outcome.clone(),
            Judging::Answers(_) => panic!("expected a decoy, got {d:?}"),
        }
    }

    fn expects_code(d: &Dialogue) -> bool {
        match &d.judging {
            Judging::Answers(expect) => expect.code.is_some(),
            Judging::Decoy { .. } => panic!("expected answers to be judged, got {d:?}"),
        }
    }

    // --- precheck ---

    #[test]
    fn precheck_refuses_an_unknown_name_before_policy_is_looked_at() {
        // A group rule would need a lookup (which fails here): the unknown
        // name is refused first, and [policy] never runs.
        let mut rig = Rig::new("[policy]\nrequire_groups = [\"staff\"]\nunenrolled = \"ignore\"\n");
        let mut c = ctx();
        c.user = "mallory".into();
        let d = asked(rig.flow().precheck(&c, Enrolment::UnknownUser));
        assert_eq!(decoy_outcome(&d), Outcome::UnknownUser);
        assert_eq!(d.gateway, "-");
        assert_eq!(d.prompt, decoy_prompt(&rig.config, "mallory"));
        assert!(!rig.log_text().contains("[policy]"), "{}", rig.log_text());
    }

    #[test]
    fn precheck_applies_policy_before_the_enrolment() {
        let mut rig = Rig::new("[policy]\nexempt_networks = [\"203.0.113.0/24\"]\n");
        let outcome = done(rig.flow().precheck(&ctx(), Enrolment::NotEnrolled));
        assert_eq!(outcome, Outcome::PolicyIgnored);
        assert!(
            rig.log_text().contains(
                "result=ignored-policy reason=\"not covered by [policy]: remote host \
                 203.0.113.7 is in exempt network 203.0.113.0/24\""
            ),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn a_deferred_lookup_is_made_only_when_policy_covers_the_login() {
        let asked = Cell::new(0);
        let deferred = || {
            Lookup::Deferred(Box::new(|log: &mut dyn Log| {
                asked.set(asked.get() + 1);
                log.log(Level::Info, "the directory was asked");
                Enrolment::DirectoryUnavailable("down".into())
            }))
        };
        // Exempt: ignored, and the directory never asked.
        let mut rig = Rig::new("[policy]\nexempt_networks = [\"203.0.113.0/24\"]\n");
        let outcome = done(rig.flow().precheck(&ctx(), deferred()));
        assert_eq!(outcome, Outcome::PolicyIgnored);
        assert_eq!(asked.get(), 0, "{}", rig.log_text());
        // Covered: asked once, with the flow's log, and its answer used.
        let mut rig = Rig::new("");
        let outcome = done(rig.flow().precheck(&ctx(), deferred()));
        assert_eq!(outcome, Outcome::DirectoryUnavailable);
        assert_eq!(asked.get(), 1);
        assert!(
            rig.log_text().contains("the directory was asked"),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn precheck_denies_when_policy_cannot_be_applied() {
        let mut rig = Rig::new("[policy]\nrequire_groups = [\"staff\"]\n");
        let route = rig.route("telegram", Ok(()));
        let outcome = done(
            rig.flow()
                .precheck(&ctx(), Enrolment::Enrolled(vec![route])),
        );
        assert_eq!(outcome, Outcome::SystemError);
        assert!(
            rig.log_text()
                .contains("reason=\"[policy] cannot be applied: no group lookups expected\""),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn precheck_follows_unenrolled() {
        let mut rig = Rig::new("[policy]\nunenrolled = \"ignore\"\n");
        let outcome = done(rig.flow().precheck(&ctx(), Enrolment::NotEnrolled));
        assert_eq!(outcome, Outcome::NotEnrolledIgnored);

        let mut rig = Rig::new("");
        let d = asked(rig.flow().precheck(&ctx(), Enrolment::NotEnrolled));
        assert_eq!(decoy_outcome(&d), Outcome::NotEnrolledDenied);
        assert_eq!(d.prompt, decoy_prompt(&rig.config, "alice"));
        assert!(
            d.prompt.starts_with("Code sent via Telegram to ***"),
            "{}",
            d.prompt
        );
    }

    #[test]
    fn an_unavailable_directory_denies_whatever_failmode_and_unenrolled_say() {
        let mut rig = Rig::new("[policy]\nunenrolled = \"ignore\"\nfailmode = \"safe\"\n");
        let reason = "directory did not answer within 5 s; no cache".to_string();
        let outcome = done(
            rig.flow()
                .precheck(&ctx(), Enrolment::DirectoryUnavailable(reason)),
        );
        assert_eq!(outcome, Outcome::DirectoryUnavailable);
        assert!(
            rig.log_text().contains(
                "result=denied-directory-unavailable reason=\"directory did not answer \
                 within 5 s; no cache\""
            ),
            "{}",
            rig.log_text()
        );
        assert!(rig.outbox.borrow().is_empty(), "nothing sent");
    }

    #[test]
    fn precheck_turns_the_wrong_password_marker_into_a_decoy_that_holds_no_gateway() {
        let mut rig = Rig::new("");
        let route = rig.route("telegram", Ok(()));
        let mut c = ctx();
        c.password_was_wrong = true;
        let d = asked(rig.flow().precheck(&c, Enrolment::Enrolled(vec![route])));
        assert_eq!(decoy_outcome(&d), Outcome::WrongPassword);
        assert_eq!(d.gateway, "telegram");
        assert_eq!(
            d.prompt,
            "Code sent via Telegram to ***977. Verification code: "
        );
        assert_eq!(
            rig.alive.get(),
            0,
            "the routes are dropped before the prompt"
        );
        assert!(rig.outbox.borrow().is_empty());
        assert_eq!(rig.store.get("alice"), None, "nothing reserved");
    }

    #[test]
    fn precheck_goes_on_with_the_routes() {
        let mut rig = Rig::new("");
        let route = rig.route("telegram", Ok(()));
        let step = rig
            .flow()
            .precheck(&ctx(), Enrolment::Enrolled(vec![route]));
        let ControlFlow::Continue(routes) = step else {
            panic!("stopped: {:?}", ended(step));
        };
        assert_eq!(routes.len(), 1);
        assert_eq!(rig.log_text(), "", "nothing logged at info level or above");
    }

    // --- reserve ---

    #[test]
    fn reserve_counts_the_send_under_the_lock_before_anything_goes_out() {
        let mut rig = Rig::new("");
        let routes = vec![rig.route("telegram", Ok(()))];
        let step = rig.flow().reserve_drawn(&ctx(), &routes);
        let ControlFlow::Continue(sending) = step else {
            panic!("stopped: {:?}", ended(step));
        };
        assert_eq!(sending.code.expose(), CODE);
        assert_eq!(sending.reserved_at, START);
        assert_eq!(rig.state().sent, vec![START]);
        assert!(rig.outbox.borrow().is_empty(), "reserve sends nothing");
    }

    #[test]
    fn reserve_denies_without_a_code_and_reserves_nothing() {
        let mut rig = Rig::new("");
        rig.codes.broken = true;
        let routes = vec![rig.route("telegram", Ok(()))];
        let outcome = done(rig.flow().reserve_drawn(&ctx(), &routes));
        assert_eq!(outcome, Outcome::SystemError);
        assert_eq!(rig.store.get("alice"), None);
        let reason = format!("reason=\"OS random source failed: {}\"", NO_ENTROPY_OS);
        assert!(
            rig.log_text()
                .contains("gateway=telegram result=system-error ")
                && rig.log_text().contains(&reason),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn reserve_denies_when_the_state_cannot_be_read() {
        let mut rig = Rig::new("");
        *rig.store.broken.lock().expect("lock") = Some("bad json".into());
        let outcome = done(rig.flow().reserve_drawn(&ctx(), &[]));
        assert_eq!(outcome, Outcome::StateFailed);
        assert_eq!(
            rig.conv.errors,
            ["Login refused: the login state cannot be read. Tell your admin."]
        );
        assert!(
            rig.log_text()
                .contains("gateway=- result=denied-state-error")
        );
    }

    #[test]
    fn reserve_during_a_lockout_asks_for_a_backup_code_only() {
        // The user has an authenticator too: during a lockout only a
        // backup code is asked for, and nothing is sent or reserved.
        let mut rig = Rig::new("").with_totp();
        rig.give_backup_codes(2);
        rig.lock_out();
        let routes = vec![rig.route("telegram", Ok(()))];
        let d = asked(rig.flow().reserve_drawn(&ctx(), &routes));
        assert_eq!(
            d.prompt,
            "Too many wrong codes: no code sent (try again in 15 min). Backup code: "
        );
        assert_eq!(d.gateway, "telegram");
        assert!(!expects_code(&d));
        assert!(rig.state().sent.is_empty());
        assert!(
            rig.log_text().contains(
                "user=alice rhost=203.0.113.7 locked out (retry in 15 min); no code sent; \
                 asking for a backup code"
            ),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn reserve_during_a_lockout_without_backup_codes_refuses() {
        let mut rig = Rig::new("").with_totp();
        rig.lock_out();
        let outcome = done(rig.flow().reserve_drawn(&ctx(), &[]));
        assert_eq!(outcome, Outcome::LockedOut);
        assert_eq!(
            rig.conv.errors,
            ["Too many wrong codes. Try again in 15 min."]
        );
        assert!(rig.log_text().contains(
            "reason=\"locked out after too many wrong codes; no code sent; retry in 15 min\""
        ));
    }

    #[test]
    fn reserve_under_a_not_me_lock_refuses_even_with_backup_codes() {
        // "Not me" locks the second factor until an admin unlocks it: no
        // code, and not even a backup code is asked for.
        let mut rig = Rig::new("").with_totp();
        rig.give_backup_codes(2);
        rig.set_state(|s| s.not_me = Some(START - 5));
        let routes = vec![rig.route("telegram", Ok(()))];
        let outcome = done(rig.flow().reserve_drawn(&ctx(), &routes));
        assert_eq!(outcome, Outcome::LockedOut);
        assert_eq!(rig.conv.errors, [NOT_ME_LOCKED]);
        assert!(rig.state().sent.is_empty());
        assert!(
            rig.log_text().contains(
                "reason=\"locked: Not me was tapped in Telegram; until an admin unlocks it \
                 (pam-gateway unlock); no code sent\""
            ),
            "{}",
            rig.log_text()
        );
    }

    #[test]
    fn reserve_with_the_window_full_asks_for_a_fallback_or_refuses() {
        let config = "[limits]\ncodes_per_window = 1\n";
        let mut rig = Rig::new(config).with_totp();
        rig.set_state(|s| s.sent = vec![START - 10]);
        let d = asked(rig.flow().reserve_drawn(&ctx(), &[]));
        assert_eq!(
            d.prompt,
            "No new code sent (limit reached; next in 15 min). Authenticator code: "
        );
        assert!(!expects_code(&d));
        assert_eq!(rig.state().sent, vec![START - 10], "nothing more reserved");

        let mut rig = Rig::new(config);
        rig.set_state(|s| s.sent = vec![START - 10]);
        let outcome = done(rig.flow().reserve_drawn(&ctx(), &[]));
        assert_eq!(outcome, Outcome::RateLimited);
        assert_eq!(
            rig.conv.errors,
            ["Too many codes requested: no code sent. Try again in 15 min."]
        );
    }

    // --- deliver ---

    #[test]
    fn deliver_logs_failures_with_the_code_scrubbed_and_gives_back_an_unsent_reservation() {
        let mut rig = Rig::new("");
        rig.set_state(|s| s.sent = vec![START]);
        let echo = DeliveryError::Rejected {
            reason: format!("Bad Request: message {CODE} is too long"),
            retry_after: None,
        };
        let routes = vec![rig.route("telegram", Err(echo))];
        let s = sending(&rig, NO_FALLBACK);
        let outcome = done(rig.flow().deliver_all(&ctx(), routes, s));
        assert_eq!(outcome, Outcome::DeliveryFailedDenied);
        let log = rig.log_text();
        assert!(!log.contains(CODE), "{log}");
        assert!(
            log.contains(
                "user=alice delivery failed: telegram: rejected: Bad Request: message [code] is \
                 too long"
            ),
            "{log}"
        );
        assert!(
            rig.state().sent.is_empty(),
            "nothing was delivered: released"
        );
        assert_eq!(rig.alive.get(), 0);
    }

    #[test]
    fn deliver_counts_a_send_whose_fate_is_unknown() {
        let mut rig = Rig::new("");
        rig.set_state(|s| s.sent = vec![START]);
        let routes = vec![rig.route(
            "telegram",
            Err(DeliveryError::Unreachable("timed out".into())),
        )];
        let s = sending(&rig, NO_FALLBACK);
        assert_eq!(
            done(rig.flow().deliver_all(&ctx(), routes, s)),
            Outcome::DeliveryFailedDenied
        );
        assert_eq!(
            rig.state().sent,
            vec![START],
            "kept: the send may have got through"
        );
        assert!(rig.log_text().contains(
            "reason=\"telegram: unreachable: timed out; counted against codes_per_window: a send \
             may have got through\""
        ));
    }

    #[test]
    fn deliver_under_failmode_safe_excuses_only_what_the_caller_cannot_fake() {
        use DeliveryError::*;
        let m = || "x".to_string();
        let rejected = Rejected {
            reason: m(),
            retry_after: None,
        };
        let cases = [
            (Unreachable(m()), true, Outcome::DeliveryFailedIgnored),
            (Unreachable(m()), false, Outcome::DeliveryFailedDenied),
            (Refused(m()), false, Outcome::DeliveryFailedIgnored),
            (ServiceFailed(m()), false, Outcome::DeliveryFailedIgnored),
            (rejected, true, Outcome::DeliveryFailedDenied),
            (Misconfigured(m()), true, Outcome::DeliveryFailedDenied),
            (Local(m()), true, Outcome::DeliveryFailedDenied),
        ];
        for (error, caller_is_root, want) in cases {
            let mut rig = Rig::new("[policy]\nfailmode = \"safe\"\n");
            let label = format!("{error:?} caller_is_root={caller_is_root}");
            let routes = vec![rig.route("telegram", Err(error))];
            let mut c = ctx();
            c.caller_is_root = caller_is_root;
            let s = sending(&rig, NO_FALLBACK);
            assert_eq!(done(rig.flow().deliver_all(&c, routes, s)), want, "{label}");
            let not_applied = rig.log_text().contains("failmode=safe not applied");
            assert_eq!(
                not_applied,
                want == Outcome::DeliveryFailedDenied,
                "{label}"
            );
        }
    }

    #[test]
    fn deliver_under_failmode_safe_denies_a_user_without_gateways() {
        let mut rig = Rig::new("[policy]\nfailmode = \"safe\"\n");
        let s = sending(&rig, NO_FALLBACK);
        assert_eq!(
            done(rig.flow().deliver_all(&ctx(), vec![], s)),
            Outcome::DeliveryFailedDenied
        );
        assert!(rig.log_text().contains(
            "gateway=- result=denied-delivery-failed reason=\"the user's entry names no gateway"
        ));
    }

    #[test]
    fn deliver_tries_the_next_route_and_holds_no_gateway_after() {
        let mut rig = Rig::new("");
        let routes = vec![
            rig.route("telegram", Err(DeliveryError::Refused("refused".into()))),
            rig.route("signal", Ok(())),
        ];
        let s = sending(&rig, NO_FALLBACK);
        let step = rig.flow().deliver_all(&ctx(), routes, s);
        let ControlFlow::Continue(d) = step else {
            panic!("stopped: {:?}", ended(step));
        };
        assert_eq!(d.gateway, "signal");
        assert_eq!(
            d.prompt,
            "Code sent via Signal to ***977. Verification code: "
        );
        let Judging::Answers(Expect {
            code: Some((code, deadline, gateway)),
        }) = &d.judging
        else {
            panic!("no code to check: {d:?}");
        };
        assert_eq!((code.expose(), gateway), (CODE, &"signal"));
        assert_eq!(*deadline, rig.clock.now() + rig.config.code.ttl);
        assert_eq!(rig.alive.get(), 0);
        assert_eq!(rig.outbox.borrow().len(), 1);
        assert!(rig.outbox.borrow()[0].contains(CODE));
    }

    #[test]
    fn deliver_asks_for_a_fallback_factor_instead_of_failmode() {
        let mut rig = Rig::new("[policy]\nfailmode = \"safe\"\n");
        let routes = vec![rig.route("telegram", Err(DeliveryError::Unreachable("down".into())))];
        let fallback = Fallback {
            totp: true,
            backup: true,
        };
        let s = sending(&rig, fallback);
        let d = asked(rig.flow().deliver_all(&ctx(), routes, s));
        assert_eq!(
            d.prompt,
            "Could not send a code via Telegram. Authenticator or backup code: "
        );
        assert_eq!(d.gateway, "telegram");
        assert!(!expects_code(&d));
        assert!(rig.log_text().contains(
            "no code delivered (telegram: unreachable: down; counted against codes_per_window: a \
             send may have got through); asking for a fallback factor"
        ));
    }

    // --- prompt ---

    #[test]
    fn prompt_a_decoy_looks_at_no_answer() {
        let mut rig = Rig::new("");
        rig.conv.answers = vec![Some(CODE.into()), Some(CODE.into()), Some(CODE.into())];
        let d = Dialogue::decoy("P: ".into(), "-", Outcome::NotEnrolledDenied, "because");
        assert_eq!(rig.flow().prompt(&ctx(), d), Outcome::NotEnrolledDenied);
        assert_eq!(rig.conv.prompts, ["P: ", "P: ", "P: "]);
        assert_eq!(
            rig.conv.errors,
            [
                "Wrong code. 2 attempts left.",
                "Wrong code. 1 attempt left."
            ]
        );
        assert_eq!(rig.store.get("alice"), None, "no answer was judged");
        assert!(
            rig.log_text()
                .contains("result=denied-not-enrolled reason=\"because\"")
        );
    }

    #[test]
    fn prompt_ends_when_the_conversation_fails() {
        let mut rig = Rig::new("");
        rig.conv.answers = vec![None];
        let d = Dialogue::decoy("P: ".into(), "telegram", Outcome::WrongPassword, "x");
        assert_eq!(rig.flow().prompt(&ctx(), d), Outcome::ConversationFailed);
        assert!(
            rig.log_text().contains(
                "gateway=telegram result=conversation-error reason=\"conversation failed\""
            )
        );
    }

    #[test]
    fn prompt_accepts_the_code_and_names_its_gateway() {
        let mut rig = Rig::new("");
        rig.conv.answers = vec![Some("111111".into()), Some(format!("{CODE}\n"))];
        let deadline = rig.clock.now() + rig.config.code.ttl;
        let d = Dialogue {
            prompt: "P: ".into(),
            gateway: "signal",
            judging: Judging::Answers(Expect {
                code: Some((Code::from_digits(CODE), deadline, "signal")),
            }),
            approval: None,
        };
        let outcome = rig.flow().prompt(&ctx(), d);
        assert_eq!(outcome, Outcome::Success { gateway: "signal" });
        assert_eq!(rig.conv.errors, ["Wrong code. 2 attempts left."]);
        assert_eq!(
            rig.state().failures,
            0,
            "a success forgives the wrong answer"
        );
    }

    // --- judge ---

    fn expect_code(rig: &Rig, deadline_in: u64) -> Expect {
        let deadline = rig.clock.now() + Duration::from_secs(deadline_in);
        Expect {
            code: Some((Code::from_digits(CODE), deadline, "telegram")),
        }
    }

    fn judge(rig: &mut Rig, expect: &Expect, answer: &str) -> Verdict {
        let answer = Answer::new(answer.as_bytes().to_vec());
        rig.flow().judge(&ctx(), expect, &answer).expect("state")
    }

    #[test]
    fn judge_accepts_a_backup_code_during_a_lockout_only_within_its_tries() {
        let mut rig = Rig::new("");
        let codes = rig.give_backup_codes(3);
        rig.lock_out();
        let expect = expect_code(&rig, 300);
        let until = START + 900;
        // Neither the sent code nor a wrong answer counts during a lockout.
        assert_eq!(judge(&mut rig, &expect, CODE), Verdict::Locked(until));
        assert_eq!(rig.state().lockout_backup_tries, 0);
        for tries in 1..limits::LOCKOUT_BACKUP_TRIES {
            assert_eq!(
                judge(&mut rig, &expect, "abcde-fghjk"),
                Verdict::Locked(until)
            );
            assert_eq!(rig.state().lockout_backup_tries, tries);
        }
        // The last try allowed: a right code lets the user in and ends the
        // lockout.
        assert_eq!(
            judge(&mut rig, &expect, &codes[0]),
            Verdict::Accepted(Factor::Backup { left: 2 })
        );
        let s = rig.state();
        assert_eq!((s.locked_until, s.lockout_backup_tries), (None, 0));

        // A new lockout with its tries used up: even a right code is refused.
        rig.lock_out();
        rig.set_state(|s| s.lockout_backup_tries = limits::LOCKOUT_BACKUP_TRIES);
        assert_eq!(judge(&mut rig, &expect, &codes[1]), Verdict::Locked(until));
        assert_eq!(rig.state().backup_codes.len(), 2, "not used up");
    }

    #[test]
    fn judge_refuses_the_sent_code_after_its_deadline() {
        let mut rig = Rig::new("");
        let expect = expect_code(&rig, 0);
        rig.clock.0.set(rig.clock.now() + Duration::from_secs(1));
        assert_eq!(judge(&mut rig, &expect, CODE), Verdict::Expired);
        assert_eq!(
            judge(&mut rig, &expect, "999999"),
            Verdict::Wrong {
                expired: true,
                replay: false,
                locked_until: None
            }
        );
    }

    #[test]
    fn judge_never_accepts_an_authenticator_step_twice() {
        let mut rig = Rig::new("").with_totp();
        let expect = Expect { code: None };
        let totp = TotpKey::from_base32(TOTP_B32).expect("key").code_at(START);
        assert_eq!(
            judge(&mut rig, &expect, &totp),
            Verdict::Accepted(Factor::Totp)
        );
        assert_eq!(
            judge(&mut rig, &expect, &totp),
            Verdict::Wrong {
                expired: false,
                replay: true,
                locked_until: None
            }
        );
    }

    #[test]
    fn judge_counts_wrong_answers_into_a_lockout() {
        let mut rig = Rig::new("[limits]\nfailures_before_lockout = 2\n");
        let expect = expect_code(&rig, 300);
        let wrong = |locked_until| Verdict::Wrong {
            expired: false,
            replay: false,
            locked_until,
        };
        assert_eq!(judge(&mut rig, &expect, "111111"), wrong(None));
        // An overlong answer is wrong without a look, even one that starts
        // with the code.
        let long = format!("{CODE}{}", " ".repeat(MAX_ANSWER_LEN));
        assert_eq!(judge(&mut rig, &expect, &long), wrong(Some(START + 900)));
        assert_eq!(judge(&mut rig, &expect, CODE), Verdict::Locked(START + 900));
    }
}
