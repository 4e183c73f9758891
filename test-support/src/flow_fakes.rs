//! The flow's world without libpam, written once for tests/flow.rs,
//! tests/abuse_flow.rs and the `prompt_answer` fuzz target: a scripted user
//! ([`ScriptedConv`]), a gateway that records what it was asked to send
//! ([`Outbox`], [`FakeGateway`]), clocks the script moves ([`FakeClock`],
//! [`FakeWall`]), group tables ([`NoGroups`], [`GroupTable`]) and a fixed
//! code source ([`FixedCodes`]), and `pam-gatewayd` as the flow sees it
//! ([`FakeDaemon`]).
//!
//! A script is exact by default: the flow prompting more often than
//! scripted fails the test, and so does a script with answers left over
//! (checked by [`ScriptedConv::finish`], or when the conversation is
//! dropped). [`ScriptedConv::until_hang_up`] is the other kind: answers
//! while they last, then hangs up; for inputs nobody wrote (a fuzzer's) and
//! logins racing each other.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use pam_gateway_core::approve::wire::{ApprovalState, ErrorKind, Final};
use pam_gateway_core::approve::{ApprovalRequest, ApproveError, Approved, Approver};
use pam_gateway_core::code::{Code, CodeError, CodeSource};
use pam_gateway_core::flow::{Answer, Clock, ConvError, Conversation, Route};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use pam_gateway_core::limits;
use pam_gateway_core::policy::{Groups, LookupError};
use pam_gateway_core::state::{MemoryStateStore, WallClock, update_with};
use pam_gateway_core::totp::TotpKey;

/// Wall time when a [`FakeWall`] starts (14 Nov 2023).
pub const START: u64 = 1_700_000_000;
/// The authenticator secret [`Step::TypeTotp`] computes its codes from.
pub const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Monotonic time the test (or its script) moves forward; clones share it.
#[derive(Clone, Default)]
pub struct FakeClock(Rc<Cell<Duration>>);

impl FakeClock {
    pub fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

/// Wall time: [`START`], plus the monotonic clock it follows, plus jumps of
/// its own ([`FakeWall::jump`]: time passing between logins). Clones share it.
#[derive(Clone, Default)]
pub struct FakeWall {
    mono: FakeClock,
    offset: Rc<Cell<u64>>,
}

impl FakeWall {
    /// Wall time that moves with `mono`.
    pub fn following(mono: &FakeClock) -> FakeWall {
        FakeWall {
            mono: mono.clone(),
            offset: Rc::default(),
        }
    }

    /// Wall time that stays at [`START`] until [`FakeWall::jump`]ed.
    pub fn fixed() -> FakeWall {
        FakeWall::default()
    }

    /// Moves wall time (only) forward.
    pub fn jump(&self, secs: u64) {
        self.offset.set(self.offset.get() + secs);
    }
}

impl WallClock for FakeWall {
    fn unix_now(&self) -> u64 {
        START + self.offset.get() + self.mono.0.get().as_secs()
    }
}

/// No policy rules in these tests: a group lookup is an error.
pub struct NoGroups;

impl Groups for NoGroups {
    fn user_gids(&self, _: &str) -> Result<Option<Vec<u32>>, LookupError> {
        Err(LookupError("no group lookups expected".into()))
    }
    fn group_gid(&self, _: &str) -> Result<Option<u32>, LookupError> {
        Err(LookupError("no group lookups expected".into()))
    }
}

/// A group database: users with their gids, groups with theirs; any other
/// user is unknown to NSS, any other group does not exist.
pub struct GroupTable {
    pub users: Vec<(&'static str, Vec<u32>)>,
    pub groups: Vec<(&'static str, u32)>,
}

impl Groups for GroupTable {
    fn user_gids(&self, user: &str) -> Result<Option<Vec<u32>>, LookupError> {
        Ok(self
            .users
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, gids)| gids.clone()))
    }
    fn group_gid(&self, group: &str) -> Result<Option<u32>, LookupError> {
        Ok(self
            .groups
            .iter()
            .find(|(g, _)| *g == group)
            .map(|(_, gid)| *gid))
    }
}

/// Always the same code (its length must be the configured `digits`).
pub struct FixedCodes(pub &'static str);

impl CodeSource for FixedCodes {
    fn generate(&mut self, digits: u32) -> Result<Code, CodeError> {
        assert_eq!(digits as usize, self.0.len(), "configured digits");
        Ok(Code::from_digits(self.0))
    }
}

/// The gateway's side of the world, shared by the test, its gateways and
/// its script (clones share it).
#[derive(Clone, Default)]
pub struct Outbox {
    /// (recipient, text) of every message sent, in order.
    pub delivered: Rc<RefCell<Vec<(String, String)>>>,
    /// Calls of `send`, failed ones included.
    pub send_calls: Rc<Cell<u32>>,
    /// What `send` fails with; `None`: it delivers.
    pub result: Rc<RefCell<Option<DeliveryError>>>,
    /// Gateways alive (a real one holds an HTTP client and its thread).
    pub alive: Rc<Cell<u32>>,
}

impl Outbox {
    /// A Telegram gateway delivering here.
    pub fn gateway(&self) -> FakeGateway {
        self.alive.set(self.alive.get() + 1);
        FakeGateway {
            outbox: self.clone(),
        }
    }

    /// A route to `recipient` through [`Outbox::gateway`].
    pub fn route(&self, recipient: &str) -> Route {
        Route {
            gateway: Box::new(self.gateway()),
            recipient: recipient.to_string(),
        }
    }

    /// From now on `send` fails with `e`.
    pub fn fail_delivery(&self, e: DeliveryError) {
        *self.result.borrow_mut() = Some(e);
    }

    /// The code in the last message delivered.
    pub fn last_code(&self) -> String {
        let last = self.delivered.borrow().last().cloned();
        code_in(&last.expect("a delivered message").1)
    }
}

/// The first run of six or more digits in `text`: the code in a message.
pub fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() >= 6)
        .expect("a code in the message")
        .to_string()
}

/// Telegram, as far as the flow can tell; see [`Outbox`].
pub struct FakeGateway {
    outbox: Outbox,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        let alive = &self.outbox.alive;
        alive.set(alive.get() - 1);
    }
}

impl Gateway for FakeGateway {
    fn id(&self) -> &'static str {
        "telegram"
    }
    fn display_name(&self) -> &'static str {
        "Telegram"
    }
    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        let o = &self.outbox;
        o.send_calls.set(o.send_calls.get() + 1);
        if let Some(e) = o.result.borrow().clone() {
            return Err(e);
        }
        o.delivered
            .borrow_mut()
            .push((recipient.to_string(), text.to_string()));
        Ok(())
    }
}

/// The user's side of one prompt.
pub enum Step {
    /// Waits this long (the monotonic clock moves), then types this.
    Type(Duration, String),
    /// Types these bytes at once.
    TypeBytes(Vec<u8>),
    /// Waits this long, then types these bytes.
    TypeBytesAfter(Duration, Vec<u8>),
    /// Types the code in the last message delivered.
    TypeDeliveredCode,
    /// Waits this long, then types the code in the last message delivered.
    TypeDeliveredCodeAfter(Duration),
    /// The authenticator code for now, shifted by this many 30 s steps.
    TypeTotp(i64),
    /// Waits this long, then types the authenticator code for then.
    TypeTotpAfter(Duration),
    /// Something happens while the user reads the prompt (another login,
    /// say), then the user does the step.
    Meanwhile(Box<dyn FnOnce()>, Box<Step>),
    /// The application returns no answer (NULL response).
    NoAnswer,
    /// The conversation function fails (the client hung up).
    HangUp,
}

/// Waits a second, then types `text`.
pub fn typed(text: &str) -> Step {
    Step::Type(Duration::from_secs(1), text.to_string())
}

/// What the user saw and typed.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    pub prompts: Vec<String>,
    pub errors: Vec<String>,
    pub infos: Vec<String>,
    /// Each answer typed, in order.
    pub typed: Vec<Vec<u8>>,
    /// How many gateways were alive at each prompt.
    pub gateways_at_prompt: Vec<u32>,
}

/// A user following a script; see the module docs.
pub struct ScriptedConv {
    steps: VecDeque<Step>,
    /// Out of steps: hang up (true) or fail the test (false); leftover
    /// steps are fine (true) or fail the test (false).
    until_hang_up: bool,
    finished: bool,
    clock: FakeClock,
    wall: FakeWall,
    outbox: Outbox,
    pub transcript: Transcript,
}

impl ScriptedConv {
    /// An exact script: every step answers one prompt, and every step is
    /// used.
    pub fn new(steps: Vec<Step>, clock: &FakeClock, wall: &FakeWall, outbox: &Outbox) -> Self {
        ScriptedConv {
            steps: steps.into(),
            until_hang_up: false,
            finished: false,
            clock: clock.clone(),
            wall: wall.clone(),
            outbox: outbox.clone(),
            transcript: Transcript::default(),
        }
    }

    /// Answers while the steps last, then hangs up; steps may be left over.
    pub fn until_hang_up(mut self) -> Self {
        self.until_hang_up = true;
        self
    }

    /// Steps not used yet.
    pub fn left(&self) -> usize {
        self.steps.len()
    }

    /// The transcript; fails the test if an exact script has steps left.
    pub fn finish(mut self) -> Transcript {
        self.finished = true;
        self.check_all_used();
        std::mem::take(&mut self.transcript)
    }

    fn check_all_used(&self) {
        assert!(
            self.until_hang_up || self.steps.is_empty(),
            "the flow ended with {} scripted answer(s) unused (prompts: {:?})",
            self.steps.len(),
            self.transcript.prompts
        );
    }

    fn totp_at(&self, shift: i64) -> String {
        let key = TotpKey::from_base32(TOTP_B32).expect("key");
        let t = self.wall.unix_now() as i64 + shift * 30;
        key.code_at(t as u64)
    }

    fn answer(&mut self, step: Step) -> Result<Option<Answer>, ConvError> {
        let bytes = match step {
            Step::Type(wait, text) => {
                self.clock.advance(wait);
                text.into_bytes()
            }
            Step::TypeBytes(b) => b,
            Step::TypeBytesAfter(wait, b) => {
                self.clock.advance(wait);
                b
            }
            Step::TypeDeliveredCode => self.outbox.last_code().into_bytes(),
            Step::TypeDeliveredCodeAfter(wait) => {
                self.clock.advance(wait);
                self.outbox.last_code().into_bytes()
            }
            Step::TypeTotp(shift) => self.totp_at(shift).into_bytes(),
            Step::TypeTotpAfter(wait) => {
                self.clock.advance(wait);
                self.totp_at(0).into_bytes()
            }
            Step::Meanwhile(happens, then) => {
                happens();
                return self.answer(*then);
            }
            Step::NoAnswer => return Ok(None),
            Step::HangUp => return Err(ConvError("PAM_CONV_ERR".into())),
        };
        self.transcript.typed.push(bytes.clone());
        Ok(Some(Answer::new(bytes)))
    }
}

impl Conversation for ScriptedConv {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Option<Answer>, ConvError> {
        self.transcript.prompts.push(prompt.to_string());
        self.transcript
            .gateways_at_prompt
            .push(self.outbox.alive.get());
        match self.steps.pop_front() {
            Some(step) => self.answer(step),
            None if self.until_hang_up => Err(ConvError("out of answers".into())),
            None => panic!("the flow prompted more often than scripted: {prompt}"),
        }
    }

    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.transcript.errors.push(text.to_string());
        Ok(())
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.transcript.infos.push(text.to_string());
        Ok(())
    }
}

impl Drop for ScriptedConv {
    /// A script nobody [`finish`](ScriptedConv::finish)ed is checked here.
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            self.check_all_used();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(steps: Vec<Step>) -> ScriptedConv {
        let clock = FakeClock::default();
        ScriptedConv::new(
            steps,
            &clock,
            &FakeWall::following(&clock),
            &Outbox::default(),
        )
    }

    #[test]
    fn an_exact_script_used_up_finishes() {
        let mut c = conv(vec![typed("1"), Step::NoAnswer]);
        assert!(c.prompt_hidden("a").expect("answer").is_some());
        assert!(c.prompt_hidden("b").expect("answer").is_none());
        let t = c.finish();
        assert_eq!(t.prompts, ["a", "b"]);
        assert_eq!(t.typed, [b"1".to_vec()]);
    }

    #[test]
    #[should_panic(expected = "1 scripted answer(s) unused")]
    fn leftover_answers_fail_at_finish() {
        let mut c = conv(vec![typed("1"), typed("2")]);
        let _ = c.prompt_hidden("a");
        c.finish();
    }

    #[test]
    #[should_panic(expected = "2 scripted answer(s) unused")]
    fn leftover_answers_fail_when_dropped() {
        drop(conv(vec![typed("1"), typed("2")]));
    }

    #[test]
    #[should_panic(expected = "prompted more often than scripted")]
    fn one_prompt_too_many_fails() {
        let mut c = conv(vec![]);
        let _ = c.prompt_hidden("a");
    }

    #[test]
    fn until_hang_up_hangs_up_and_may_leave_answers() {
        let mut c = conv(vec![]).until_hang_up();
        assert!(c.prompt_hidden("a").is_err());
        drop(conv(vec![typed("1")]).until_hang_up());
    }
}

/// One answer of a [`FakeDaemon`] to `Wait`: after `after` (the clock
/// moves), this result.
pub struct WaitAnswer {
    pub after: Duration,
    pub result: Result<ApprovalState, ApproveError>,
}

impl WaitAnswer {
    /// The tap (or its absence) is already there: answered at once.
    pub fn now(state: ApprovalState) -> WaitAnswer {
        WaitAnswer {
            after: Duration::ZERO,
            result: Ok(state),
        }
    }
    /// The user taps `after` into the wait.
    pub fn after(after: Duration, state: ApprovalState) -> WaitAnswer {
        WaitAnswer {
            after,
            result: Ok(state),
        }
    }
    /// The request fails (the daemon died, stalled, answered nonsense).
    pub fn fails(e: ApproveError) -> WaitAnswer {
        WaitAnswer {
            after: Duration::ZERO,
            result: Err(e),
        }
    }
}

/// What a [`FakeDaemon`] was asked and will answer; shared by its clones.
#[derive(Default)]
pub struct DaemonLog {
    /// Every `Approve` received.
    pub requests: Vec<ApprovalRequest>,
    /// What `Approve` fails with; `None`: the message went out.
    pub approve_error: Option<ApproveError>,
    /// Answers to successive `Wait`s; when none is left, a wait runs its
    /// whole length and answers `Pending`.
    pub waits: VecDeque<WaitAnswer>,
    /// (nonce, wait) of every `Wait`.
    pub wait_calls: Vec<(String, Duration)>,
    /// (nonce, result) of every `Finish`.
    pub finished: Vec<(String, Final)>,
    /// `Status` answers (the daemon runs).
    pub running: bool,
    pub status_calls: u32,
}

/// `pam-gatewayd` as the flow sees it ([`Approver`]): scripted answers, a
/// record of the requests. A wait moves the shared clock as a real one
/// takes time. An `Approve` that asks for the reservation is counted in
/// [`FakeDaemon::store`] as the daemon counts it in the state file: the
/// flow under test should use the same store.
#[derive(Clone)]
pub struct FakeDaemon {
    pub log: Rc<RefCell<DaemonLog>>,
    /// The users' state as the daemon sees it (the same files as the
    /// module in production).
    pub store: Rc<MemoryStateStore>,
    clock: FakeClock,
}

impl FakeDaemon {
    /// A running daemon whose clock is `clock`.
    pub fn running(clock: &FakeClock) -> FakeDaemon {
        FakeDaemon {
            log: Rc::new(RefCell::new(DaemonLog {
                running: true,
                ..DaemonLog::default()
            })),
            store: Rc::default(),
            clock: clock.clone(),
        }
    }

    /// No daemon: every request is [`ApproveError::Absent`].
    pub fn absent(clock: &FakeClock) -> FakeDaemon {
        let d = FakeDaemon::running(clock);
        {
            let mut log = d.log.borrow_mut();
            log.running = false;
            log.approve_error = Some(ApproveError::Absent(
                "/run/pam_gateway/pam-gatewayd.sock: no such socket".into(),
            ));
        }
        d
    }

    /// Queues the answers to the next `Wait`s.
    pub fn then(self, answers: Vec<WaitAnswer>) -> FakeDaemon {
        self.log.borrow_mut().waits.extend(answers);
        self
    }

    /// The one `Approve` received.
    pub fn request(&self) -> ApprovalRequest {
        let log = self.log.borrow();
        assert_eq!(log.requests.len(), 1, "one Approve per login");
        log.requests[0].clone()
    }
}

impl Approver for FakeDaemon {
    fn approve(&mut self, request: &ApprovalRequest) -> Result<Approved, ApproveError> {
        let mut log = self.log.borrow_mut();
        log.requests.push(request.clone());
        if !log.running {
            return Err(log
                .approve_error
                .clone()
                .unwrap_or_else(|| ApproveError::Absent("no daemon".into())));
        }
        // Requests that never reach the daemon, or that it refuses before
        // it counts (busy, malformed, another version), count nothing.
        if let Some(
            e @ (ApproveError::Absent(_)
            | ApproveError::Unsafe(_)
            | ApproveError::Failed {
                kind: ErrorKind::Busy | ErrorKind::BadRequest | ErrorKind::Version,
                ..
            }),
        ) = &log.approve_error
        {
            return Err(e.clone());
        }
        // As pam-gatewayd: count first; give it back when the send
        // certainly reached nobody (here: a scripted error the module
        // would read as such).
        let now = FakeWall::following(&self.clock).unix_now();
        let mut reserved = false;
        if let Some(r) = &request.reserve {
            let limits = r.limits();
            let counted = update_with(&*self.store, &request.user, |s| {
                (limits::reserve_send(s, &limits, now), s.backup_codes.len())
            });
            match counted {
                Ok((Ok(()), _)) => reserved = true,
                Ok((Err(block), backup_codes)) => {
                    return Ok(Approved::Blocked {
                        block,
                        backup_codes,
                    });
                }
                Err(e) => {
                    return Err(ApproveError::Failed {
                        kind: ErrorKind::State,
                        detail: e.to_string(),
                    });
                }
            }
        }
        match log.approve_error.clone() {
            Some(e) => {
                let nothing_went = matches!(
                    &e,
                    ApproveError::Failed {
                        kind: ErrorKind::Refused
                            | ErrorKind::Rejected
                            | ErrorKind::Misconfigured
                            | ErrorKind::Local,
                        ..
                    }
                );
                if reserved && nothing_went {
                    let _ = update_with(&*self.store, &request.user, |s| {
                        limits::release_send(s, now)
                    });
                }
                Err(e)
            }
            None => Ok(Approved::Sent),
        }
    }

    fn wait(&mut self, nonce: &str, wait: Duration) -> Result<ApprovalState, ApproveError> {
        let mut log = self.log.borrow_mut();
        log.wait_calls.push((nonce.to_string(), wait));
        if !log.running {
            return Err(ApproveError::Absent("no daemon".into()));
        }
        match log.waits.pop_front() {
            Some(a) => {
                assert!(a.after <= wait, "a tap scripted after the wait ended");
                self.clock.advance(a.after);
                a.result
            }
            None => {
                self.clock.advance(wait);
                Ok(ApprovalState::Pending)
            }
        }
    }

    fn finish(&mut self, nonce: &str, result: Final) -> Result<(), ApproveError> {
        let mut log = self.log.borrow_mut();
        log.finished.push((nonce.to_string(), result));
        if log.running {
            Ok(())
        } else {
            Err(ApproveError::Absent("no daemon".into()))
        }
    }

    fn available(&mut self) -> bool {
        let mut log = self.log.borrow_mut();
        log.status_calls += 1;
        log.running
    }
}
