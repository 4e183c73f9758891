//! `[remember]` through the flow, without libpam: one shared state store,
//! a wall clock the test sets, a gateway that records what it sent, and a
//! user who types the delivered code (or a wrong one).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use pam_gateway_core::code::{Code, CodeSource};
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{
    Answer, Clock, ConvError, Conversation, Enrolment, Flow, LoginContext, Outcome, Route,
};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::policy::Groups;
use pam_gateway_core::state::{MemoryStateStore, UserState, WallClock};

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
const T0: u64 = 1_700_000_000;
const HOME: &str = "203.0.113.7";

struct NoGroups;
impl Groups for NoGroups {
    fn user_gids(
        &self,
        _: &str,
    ) -> Result<Option<Vec<u32>>, pam_gateway_core::policy::LookupError> {
        Ok(Some(Vec::new()))
    }
    fn group_gid(&self, _: &str) -> Result<Option<u32>, pam_gateway_core::policy::LookupError> {
        Ok(None)
    }
}

struct Wall(Rc<Cell<u64>>);
impl WallClock for Wall {
    fn unix_now(&self) -> u64 {
        self.0.get()
    }
}

struct Still;
impl Clock for Still {
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

struct Codes;
impl CodeSource for Codes {
    fn generate(&mut self, _: u32) -> Result<Code, pam_gateway_core::code::CodeError> {
        Ok(Code::from_digits("024681"))
    }
}

struct Sent(Rc<RefCell<Vec<String>>>);
impl Gateway for Sent {
    fn id(&self) -> &'static str {
        "telegram"
    }
    fn display_name(&self) -> &str {
        "Telegram"
    }
    fn send(&self, _: &str, text: &str) -> Result<(), DeliveryError> {
        self.0.borrow_mut().push(text.to_string());
        Ok(())
    }
}

/// Types these answers in order; counts the prompts.
struct Typist {
    answers: Vec<&'static str>,
    prompts: usize,
}
impl Conversation for Typist {
    fn prompt_hidden(&mut self, _: &str) -> Result<Option<Answer>, ConvError> {
        self.prompts += 1;
        if self.answers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Answer::new(
            self.answers.remove(0).as_bytes().to_vec(),
        )))
    }
    fn error(&mut self, _: &str) -> Result<(), ConvError> {
        Ok(())
    }
}

/// One machine: its config, its users' state, its clock.
struct World {
    config: Config,
    store: MemoryStateStore,
    now: Rc<Cell<u64>>,
    sent: Rc<RefCell<Vec<String>>>,
}

/// How a login went.
struct Login {
    outcome: Outcome,
    prompts: usize,
    log: String,
}

impl World {
    fn new(extra: &str) -> World {
        let text = format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\n[limits]\ncodes_per_window = 100\n{extra}"
        );
        World {
            config: Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text)
                .expect("config"),
            store: MemoryStateStore::default(),
            now: Rc::new(Cell::new(T0)),
            sent: Rc::new(RefCell::new(Vec::new())),
        }
    }

    fn login_as(
        &self,
        user: &str,
        service: &str,
        rhost: Option<&str>,
        password_was_wrong: bool,
        answers: Vec<&'static str>,
    ) -> Login {
        let mut conv = Typist {
            answers,
            prompts: 0,
        };
        let log = MemoryLog::default();
        let mut sink = log.clone();
        let ctx = LoginContext {
            user: user.into(),
            service: service.into(),
            rhost: rhost.map(String::from),
            tty: Some("ssh".into()),
            ruser: None,
            host: "pi".into(),
            password_was_wrong,
            caller_is_root: true,
        };
        let routes = vec![Route {
            gateway: Box::new(Sent(self.sent.clone())),
            recipient: "123456977".into(),
        }];
        let outcome = Flow {
            config: &self.config,
            conv: &mut conv,
            clock: &Still,
            codes: &mut Codes,
            log: &mut sink,
            debug: false,
            state: &self.store,
            wall: &Wall(self.now.clone()),
            groups: &NoGroups,
            totp: None,
            approver: None,
        }
        .authenticate(&ctx, Enrolment::Enrolled(routes));
        Login {
            outcome,
            prompts: conv.prompts,
            log: log.text(),
        }
    }

    /// alice through sshd from `rhost`, typing `answers`.
    fn login(&self, rhost: Option<&str>, answers: Vec<&'static str>) -> Login {
        self.login_as("alice", "sshd", rhost, false, answers)
    }

    fn state(&self) -> UserState {
        self.store.get("alice").unwrap_or_default()
    }

    fn advance(&self, secs: u64) {
        self.now.set(self.now.get() + secs);
    }
}

const RIGHT: &str = "024681";
const WRONG: &str = "111111";
const ON: &str = "[remember]\nduration = 600\n";

fn assert_remembered(l: &Login) {
    assert_eq!(l.outcome, Outcome::Remembered, "{}", l.log);
    assert_eq!(l.prompts, 0, "no prompt for a remembered source");
}

fn assert_asked(l: &Login) {
    assert!(
        l.prompts > 0,
        "expected a prompt: {:?}\n{}",
        l.outcome,
        l.log
    );
    assert_ne!(l.outcome, Outcome::Remembered, "{}", l.log);
}

#[test]
fn a_verified_source_skips_the_code_and_the_log_says_from_which_login() {
    let w = World::new(ON);
    let first = w.login(Some(HOME), vec![RIGHT]);
    assert_eq!(
        first.outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
    assert_eq!(w.sent.borrow().len(), 1);
    w.advance(60);
    let again = w.login(Some(HOME), vec![]);
    assert_remembered(&again);
    assert_eq!(w.sent.borrow().len(), 1, "nothing sent");
    assert!(
        again.log.contains(
            "user=alice service=sshd rhost=203.0.113.7 tty=ssh gateway=telegram result=remembered \
             reason=\"code skipped: 203.0.113.7 through sshd proved the second factor (telegram) \
             at 2023-11-14 22:13:20 UTC; remembered until 2023-11-14 22:23:20 UTC"
        ),
        "{}",
        again.log
    );
    // Nothing counted: no send reserved, no failure.
    let s = w.state();
    assert_eq!((s.sent.len(), s.failures), (1, 0));
}

#[test]
fn off_by_default_and_for_unlisted_services() {
    let w = World::new("");
    assert_eq!(
        w.login(Some(HOME), vec![RIGHT]).outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
    assert!(w.state().remembered.is_empty(), "nothing stored when off");

    let w = World::new("[remember]\nduration = 0\n");
    w.login(Some(HOME), vec![RIGHT]);
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));

    let w = World::new(ON);
    // sudo is not in the default services.
    w.login_as("alice", "sudo", Some(HOME), false, vec![RIGHT]);
    assert_asked(&w.login_as("alice", "sudo", Some(HOME), false, vec![RIGHT]));
    assert!(w.state().remembered.is_empty());
}

#[test]
fn another_host_service_or_user_is_asked() {
    let w = World::new("[remember]\nduration = 600\nservices = [\"sshd\", \"login\"]\n");
    w.login(Some(HOME), vec![RIGHT]);
    assert_asked(&w.login(Some("203.0.113.8"), vec![RIGHT]));
    assert_asked(&w.login_as("alice", "login", Some(HOME), false, vec![RIGHT]));
    assert_asked(&w.login_as("bob", "sshd", Some(HOME), false, vec![RIGHT]));
    // The first source is still there.
    assert_remembered(&w.login(Some(HOME), vec![]));
}

#[test]
fn absent_or_odd_remote_hosts_never_match() {
    let w = World::new(ON);
    for rhost in [
        None,
        Some(""),
        Some("203.0.113.7\nforged"),
        Some("a\u{1b}[2J"),
    ] {
        assert_eq!(
            w.login(rhost, vec![RIGHT]).outcome,
            Outcome::Success {
                gateway: "telegram"
            }
        );
        assert_asked(&w.login(rhost, vec![RIGHT]));
    }
    assert!(
        w.state().remembered.is_empty(),
        "{:?}",
        w.state().remembered
    );
}

#[test]
fn expires_after_duration() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    w.advance(599);
    assert_remembered(&w.login(Some(HOME), vec![]));
    w.advance(1);
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
    // That login proved the code again: a new window from now.
    w.advance(300);
    assert_remembered(&w.login(Some(HOME), vec![]));
}

#[test]
fn clock_going_backwards_does_not_match() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    // Set back by an hour: the recorded login is in the future now.
    w.now.set(T0 - 3600);
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
    // That login replaced the future-dated source with one from now.
    let s = w.state();
    assert_eq!(s.remembered.len(), 1);
    assert_eq!(s.remembered[0].since, T0 - 3600);
    // And a remembered source never outlives duration, whatever the clock.
    w.now.set(T0 - 3600 + 600);
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
}

#[test]
fn a_wrong_answer_from_anywhere_ends_every_source() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    w.login(Some("198.51.100.1"), vec![RIGHT]);
    assert_eq!(w.state().remembered.len(), 2);
    // Someone with the password, elsewhere, guesses once, then gives up.
    let guess = w.login(Some("192.0.2.66"), vec![WRONG]);
    assert_ne!(guess.outcome, Outcome::Remembered);
    assert!(w.state().remembered.is_empty());
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
    // A wrong code then the right one: the right one remembers anew.
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    let l = w.login(Some("198.51.100.1"), vec![WRONG, RIGHT]);
    assert_eq!(
        l.outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
    let hosts: Vec<String> = w.state().remembered.into_iter().map(|s| s.rhost).collect();
    assert_eq!(hosts, ["198.51.100.1"]);
}

#[test]
fn never_during_a_lockout_and_a_lockout_ends_the_sources() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    let mut s = w.state();
    s.locked_until = Some(T0 + 60);
    w.store.set("alice", s);
    let l = w.login(Some(HOME), vec![]);
    assert_eq!(l.outcome, Outcome::LockedOut, "{}", l.log);
    // The lockout came from wrong answers, which end the sources: after it,
    // the code is asked.
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    w.login(Some("192.0.2.66"), vec![WRONG, WRONG, WRONG]);
    w.login(Some("192.0.2.66"), vec![WRONG, WRONG, WRONG]);
    assert!(w.state().locked_until.is_some(), "locked out");
    assert!(w.state().remembered.is_empty());
    w.advance(24 * 3600);
    assert_asked(&w.login(Some(HOME), vec![RIGHT]));
}

#[test]
fn never_when_the_first_factor_failed() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    let l = w.login_as("alice", "sshd", Some(HOME), true, vec![WRONG, WRONG, WRONG]);
    assert_eq!(l.outcome, Outcome::WrongPassword, "{}", l.log);
    assert_eq!(w.sent.borrow().len(), 1, "nothing sent");
}

#[test]
fn a_corrupt_state_is_denied_as_before_never_remembered() {
    let w = World::new(ON);
    w.login(Some(HOME), vec![RIGHT]);
    *w.store.broken.lock().expect("lock") = Some("not a valid state file".into());
    let l = w.login(Some(HOME), vec![]);
    assert_eq!(l.outcome, Outcome::StateFailed, "{}", l.log);
    assert!(l.log.contains("result=denied-state-error"), "{}", l.log);
}
