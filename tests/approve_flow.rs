//! `[approve]` in the flow, without libpam or a daemon: a scripted user, a
//! fake gateway for direct sends and a fake `pam-gatewayd`
//! ([`FakeDaemon`]) whose answers the test scripts.

use std::path::Path;
use std::time::Duration;

use pam_gateway_core::approve::ApproveError;
use pam_gateway_core::approve::wire::{ApprovalState, ErrorKind, Final};
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{Enrolment, Flow, LoginContext, Outcome};
use pam_gateway_core::gateway::DeliveryError;
use pam_gateway_core::limits::Limits;
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::state::{UserState, WallClock};
use pgw_test_support::flow_fakes::{
    FakeClock, FakeDaemon, FakeWall, FixedCodes, NoGroups, Outbox, ScriptedConv, Step, WaitAnswer,
    typed,
};

use ApprovalState::*;

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
const CODE: &str = "024681";
const ON: &str = "[approve]\nenabled = true\nwait = 30\n";
const CODE_PROMPT: &str = "Code sent via Telegram to ***977. Verification code: ";

struct Run {
    outcome: Outcome,
    prompts: Vec<String>,
    errors: Vec<String>,
    /// Direct sends (not through the daemon).
    delivered: Vec<(String, String)>,
    log: String,
    state: Option<UserState>,
}

enum Who {
    Enrolled(&'static str),
    NotEnrolled,
    Unknown,
}

struct Case {
    config: String,
    who: Who,
    caller_is_root: bool,
    direct_fails: Option<DeliveryError>,
    password_was_wrong: bool,
    /// PAM_RUSER (su sets the caller's name there).
    ruser: Option<&'static str>,
    steps: Vec<Step>,
}

impl Case {
    fn new(steps: Vec<Step>) -> Case {
        Case {
            config: ON.to_string(),
            who: Who::Enrolled("123456977"),
            caller_is_root: true,
            direct_fails: None,
            password_was_wrong: false,
            ruser: None,
            steps,
        }
    }
}

/// The login's outcome when the code (or a tap) let alice in.
const TELEGRAM: Outcome = Outcome::Success {
    gateway: "telegram",
};

/// A running daemon on `clock` whose Approve fails with `error`.
fn daemon_failing(clock: &FakeClock, error: ApproveError) -> FakeDaemon {
    let daemon = FakeDaemon::running(clock);
    daemon.log.borrow_mut().approve_error = Some(error);
    daemon
}

fn enter() -> Step {
    Step::Type(Duration::from_secs(1), "\n".into())
}

fn run(case: Case, clock: &FakeClock, daemon: &FakeDaemon) -> Run {
    // Top-level keys first, then the sections.
    let (top, sections) = match case.config.find('[') {
        Some(i) => case.config.split_at(i),
        None => (case.config.as_str(), ""),
    };
    let text = format!("{top}[telegram]\nbot_token = \"{TOKEN}\"\n{sections}");
    let config = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config");
    let wall = FakeWall::following(clock);
    let outbox = Outbox::default();
    if let Some(e) = case.direct_fails {
        outbox.fail_delivery(e);
    }
    let mut conv = ScriptedConv::new(case.steps, clock, &wall, &outbox);
    let log = MemoryLog::default();
    let mut log_w = log.clone();
    let mut codes = FixedCodes(CODE);
    let enrolment = match case.who {
        Who::Enrolled(chat) => Enrolment::Enrolled(vec![outbox.route(chat)]),
        Who::NotEnrolled => Enrolment::NotEnrolled,
        Who::Unknown => Enrolment::UnknownUser,
    };
    let ctx = LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: Some("203.0.113.7".into()),
        tty: Some("ssh".into()),
        ruser: case.ruser.map(String::from),
        host: "pi".into(),
        password_was_wrong: case.password_was_wrong,
        caller_is_root: case.caller_is_root,
    };
    // The daemon counts its sends in the same state as the module.
    let store = daemon.store.clone();
    let mut approver = daemon.clone();
    let outcome = Flow {
        config: &config,
        conv: &mut conv,
        clock,
        codes: &mut codes,
        log: &mut log_w,
        debug: true,
        state: &*store,
        wall: &wall,
        groups: &NoGroups,
        totp: None,
        approver: Some(&mut approver),
    }
    .authenticate(&ctx, enrolment);
    let log_text = log.text();
    assert!(!log_text.contains(CODE), "the code leaked:\n{log_text}");
    let t = conv.finish();
    let delivered = outbox.delivered.borrow().clone();
    Run {
        outcome,
        prompts: t.prompts,
        errors: t.errors,
        delivered,
        log: log_text,
        state: store.get("alice"),
    }
}

fn tap_prompt(daemon: &FakeDaemon) -> String {
    format!(
        "Tap {} in Telegram and press Enter, or type the code: ",
        daemon.request().answer
    )
}

fn finished(daemon: &FakeDaemon) -> Vec<Final> {
    daemon
        .log
        .borrow()
        .finished
        .iter()
        .map(|(_, f)| *f)
        .collect()
}

#[test]
fn tap_then_enter_gets_in_and_the_request_carries_the_context() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::now(Approved)]);
    let r = run(Case::new(vec![enter()]), &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    let req = daemon.request();
    assert_eq!(r.prompts, [tap_prompt(&daemon)]);
    // Number matching: three distinct two-digit numbers, the answer one
    // of them, and not in the message (only in the prompt).
    let n = req.numbers;
    assert!(n.iter().all(|x| (10..=99).contains(x)), "{n:?}");
    assert!(n[0] != n[1] && n[1] != n[2] && n[0] != n[2], "{n:?}");
    assert!(n.contains(&req.answer));
    assert_eq!((req.chat_id, req.user.as_str()), (123_456_977, "alice"));
    assert_eq!(req.expires_in_secs, 300, "the code's ttl");
    assert_eq!(req.nonce.len(), 32);
    assert!(req.nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    for part in ["alice@pi", "Service: sshd", "From: 203.0.113.7", CODE] {
        assert!(req.text.contains(part), "{part} not in {}", req.text);
    }
    assert!(!req.text.contains("Requested by"), "{}", req.text);
    assert!(r.delivered.is_empty(), "nothing sent directly");
    assert_eq!(finished(&daemon), [Final::Approved]);
    assert_eq!(daemon.log.borrow().finished[0].0, req.nonce);
    assert!(
        r.log.contains(
            "gateway=telegram result=success reason=\"approved in Telegram: the number shown \
             was tapped (method=approved)\""
        ),
        "{}",
        r.log
    );
}

/// Under su the login is the target account's, and PAM_RUSER names who
/// ran su: the message says so (one line, control characters replaced);
/// the same name as the login's user, or none, adds nothing.
#[test]
fn the_request_names_who_asks_when_it_is_another_account() {
    let text_for = |ruser: Option<&'static str>| {
        let clock = FakeClock::default();
        let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::now(Approved)]);
        let mut case = Case::new(vec![enter()]);
        case.ruser = ruser;
        let r = run(case, &clock, &daemon);
        assert_eq!(r.outcome, TELEGRAM);
        daemon.request().text
    };
    let text = text_for(Some("mallory"));
    assert!(
        text.contains("From: 203.0.113.7\nRequested by: mallory\n"),
        "{text}"
    );
    let text = text_for(Some("mallory\nFrom: 10.0.0.1"));
    assert!(
        text.contains("Requested by: mallory?From: 10.0.0.1\n"),
        "{text}"
    );
    assert!(!text.contains("\nFrom: 10.0.0.1"), "{text}");
    for same in [Some("alice"), Some(""), None] {
        let text = text_for(same);
        assert!(!text.contains("Requested by"), "{same:?}: {text}");
    }
}

#[test]
fn enter_then_tap_and_a_pending_wait_asks_again() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![
        WaitAnswer::after(Duration::from_secs(30), Pending),
        WaitAnswer::after(Duration::from_secs(4), Approved),
    ]);
    let r = run(Case::new(vec![enter(), enter()]), &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    let tap = tap_prompt(&daemon);
    assert_eq!(r.prompts, [tap.clone(), format!("No tap yet. {tap}")]);
    assert!(
        r.errors.is_empty(),
        "waiting used no attempt: {:?}",
        r.errors
    );
    let waits: Vec<Duration> = daemon.log.borrow().wait_calls.iter().map(|w| w.1).collect();
    assert_eq!(waits, [Duration::from_secs(30); 2], "[approve] wait");
}

#[test]
fn a_wait_never_runs_past_the_code_and_an_expired_offer_asks_for_the_code() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let mut case = Case::new(vec![enter(), enter(), enter(), typed(CODE)]);
    case.config = "[code]\nttl = 40\n[approve]\nenabled = true\nwait = 30\n".into();
    let r = run(case, &clock, &daemon);
    // 1 s typing + 30 s wait, 1 s + 8 s (the rest of the 40 s), then the
    // offer is over: the code is asked for, and it is too late for it too.
    let waits: Vec<Duration> = daemon.log.borrow().wait_calls.iter().map(|w| w.1).collect();
    assert_eq!(waits, [Duration::from_secs(30), Duration::from_secs(8)]);
    let tap = tap_prompt(&daemon);
    assert_eq!(
        r.prompts,
        [
            tap.clone(),
            format!("No tap yet. {tap}"),
            format!("No tap yet. {tap}"),
            format!("Approval no longer available. {CODE_PROMPT}"),
        ]
    );
    assert_eq!(r.outcome, Outcome::Expired);
    assert_eq!(finished(&daemon), [Final::Expired]);
}

#[test]
fn a_wrong_number_counts_like_a_wrong_code() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::now(Wrong)]);
    let r = run(
        Case::new(vec![enter(), typed("111111"), typed("222222")]),
        &clock,
        &daemon,
    );
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(
        r.prompts,
        [tap_prompt(&daemon), CODE_PROMPT.into(), CODE_PROMPT.into()],
        "after a wrong number only the typed code"
    );
    assert_eq!(
        r.errors,
        [
            "Wrong number tapped. 2 attempts left.",
            "Wrong code. 1 attempt left."
        ]
    );
    assert_eq!(r.state.expect("state").failures, 3);
    assert_eq!(finished(&daemon), [Final::Denied]);
}

#[test]
fn a_wrong_number_can_start_the_lockout() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::now(Wrong)]);
    let mut case = Case::new(vec![enter()]);
    case.config = format!("{ON}[limits]\nfailures_before_lockout = 1\n");
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert!(r.state.expect("state").locked_until.is_some());
}

#[test]
fn not_me_denies_at_once() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::now(NotMe)]);
    let r = run(Case::new(vec![enter()]), &clock, &daemon);
    assert_eq!(r.outcome, Outcome::DeniedNotMe);
    assert_eq!(
        r.errors,
        ["Login denied: \"Not me\" was tapped in Telegram."]
    );
    assert!(r.log.contains("result=denied-not-me"), "{}", r.log);
    assert_eq!(finished(&daemon), [Final::Denied]);
}

#[test]
fn gone_or_a_failed_wait_asks_for_the_typed_code() {
    for (answer, note) in [
        (WaitAnswer::now(Gone), "approval: gone"),
        (
            WaitAnswer::fails(ApproveError::Timeout),
            "approval: pam-gatewayd did not answer in time; asking for the typed code",
        ),
        (
            WaitAnswer::fails(ApproveError::Absent("connection refused".into())),
            "approval: pam-gatewayd is not running (connection refused)",
        ),
    ] {
        let clock = FakeClock::default();
        let daemon = FakeDaemon::running(&clock).then(vec![answer]);
        let r = run(
            Case::new(vec![enter(), Step::TypeBytes(CODE.into())]),
            &clock,
            &daemon,
        );
        assert_eq!(r.outcome, TELEGRAM, "{note}");
        assert_eq!(
            r.prompts,
            [
                tap_prompt(&daemon),
                format!("Approval no longer available. {CODE_PROMPT}")
            ]
        );
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.log.contains(note), "{note}: {}", r.log);
        assert!(r.log.contains("reason=\"code accepted\""), "{}", r.log);
        assert_eq!(finished(&daemon), [Final::Used]);
    }
}

#[test]
fn the_typed_code_works_with_approval_offered() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let r = run(
        Case::new(vec![typed("999999"), Step::TypeBytes(CODE.into())]),
        &clock,
        &daemon,
    );
    assert_eq!(r.outcome, TELEGRAM);
    let tap = tap_prompt(&daemon);
    assert_eq!(r.prompts, [tap.clone(), tap]);
    assert_eq!(r.errors, ["Wrong code. 2 attempts left."]);
    assert!(daemon.log.borrow().wait_calls.is_empty());
    assert_eq!(finished(&daemon), [Final::Used]);
}

#[test]
fn without_the_daemon_the_code_goes_directly_logged_once() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::absent(&clock);
    let r = run(
        Case::new(vec![enter(), Step::TypeDeliveredCode]),
        &clock,
        &daemon,
    );
    assert_eq!(r.outcome, TELEGRAM);
    assert_eq!(r.prompts, [CODE_PROMPT, CODE_PROMPT]);
    assert_eq!(
        r.errors,
        ["Wrong code. 2 attempts left."],
        "Enter is a wrong code"
    );
    assert_eq!(r.delivered.len(), 1);
    assert!(r.delivered[0].1.contains(CODE));
    assert_eq!(
        r.log.matches("pam-gatewayd is not running").count(),
        1,
        "{}",
        r.log
    );
    assert!(daemon.log.borrow().wait_calls.is_empty());
    assert!(daemon.log.borrow().finished.is_empty());
}

#[test]
fn an_unsafe_socket_is_not_used_and_said_loudly() {
    let clock = FakeClock::default();
    let daemon = daemon_failing(
        &clock,
        ApproveError::Unsafe(
            "/run/pam_gateway/pam-gatewayd.sock: owned by uid 1000, must be owned by uid 0".into(),
        ),
    );
    let r = run(Case::new(vec![Step::TypeDeliveredCode]), &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    assert_eq!(r.delivered.len(), 1);
    assert!(
        r.log
            .contains("approval: NOT using pam-gatewayd, its socket is not safe: "),
        "{}",
        r.log
    );
}

#[test]
fn not_knowing_whether_the_daemon_sent_sends_the_same_code_directly() {
    for e in [
        ApproveError::Timeout,
        ApproveError::Protocol("the daemon closed the connection".into()),
    ] {
        let clock = FakeClock::default();
        let daemon = daemon_failing(&clock, e.clone());
        let r = run(Case::new(vec![Step::TypeDeliveredCode]), &clock, &daemon);
        assert_eq!(r.outcome, TELEGRAM, "{e}");
        assert_eq!(r.prompts, [CODE_PROMPT]);
        assert_eq!(r.delivered.len(), 1);
        assert!(daemon.request().text.contains(CODE) && r.delivered[0].1.contains(CODE));
        // The daemon is told its message no longer waits for a tap.
        assert_eq!(finished(&daemon), [Final::Expired], "{e}");
    }
}

#[test]
fn a_send_the_daemon_tried_fails_like_a_direct_one() {
    // Refused by Telegram through the daemon: no direct send, and
    // failmode=safe decides as for a direct refusal.
    let clock = FakeClock::default();
    let daemon = daemon_failing(
        &clock,
        ApproveError::Failed {
            kind: ErrorKind::Refused,
            detail: "connection refused".into(),
        },
    );
    let mut case = Case::new(vec![]);
    case.config = format!("{ON}[policy]\nfailmode = \"safe\"\n");
    case.caller_is_root = false;
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::DeliveryFailedIgnored);
    assert!(r.delivered.is_empty());
    assert!(
        r.log.contains(
            "delivery failed: telegram: unreachable: via pam-gatewayd: connection refused"
        ),
        "{}",
        r.log
    );

    // Rejected: denied, never ignored.
    let clock = FakeClock::default();
    let daemon = daemon_failing(
        &clock,
        ApproveError::Failed {
            kind: ErrorKind::Rejected,
            detail: "Bad Request: chat not found".into(),
        },
    );
    let mut case = Case::new(vec![]);
    case.config = format!("{ON}[policy]\nfailmode = \"safe\"\n");
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::DeliveryFailedDenied);
    // Certainly delivered to nobody: the daemon gave its count back, and
    // so did the module for the routes it then had left (none).
    assert_eq!(r.state.expect("state").sent, Vec::<u64>::new());

    // Busy: the daemon tried nothing; the module sends itself.
    let clock = FakeClock::default();
    let daemon = daemon_failing(
        &clock,
        ApproveError::Failed {
            kind: ErrorKind::Busy,
            detail: "too many approvals".into(),
        },
    );
    let r = run(Case::new(vec![Step::TypeDeliveredCode]), &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    assert_eq!(r.delivered.len(), 1);
}

#[test]
fn under_sudo_a_stalled_daemon_and_network_never_let_anyone_in() {
    // The hostile caller stops the process: the daemon request times out,
    // the direct send times out too. failmode=safe does not excuse it.
    let clock = FakeClock::default();
    let daemon = daemon_failing(&clock, ApproveError::Timeout);
    let mut case = Case::new(vec![]);
    case.config = format!("{ON}[policy]\nfailmode = \"safe\"\n");
    case.caller_is_root = false;
    case.direct_fails = Some(DeliveryError::Unreachable("timed out".into()));
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::DeliveryFailedDenied);

    // A wait that times out under sudo: asked for the code, nothing else.
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock).then(vec![WaitAnswer::fails(ApproveError::Timeout)]);
    let mut case = Case::new(vec![enter(), typed("\n"), typed("\n"), typed("\n")]);
    case.caller_is_root = false;
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::MaxTries);
}

#[test]
fn group_chats_keep_the_typed_code() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let mut case = Case::new(vec![Step::TypeDeliveredCode]);
    case.who = Who::Enrolled("-1001234567");
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    assert!(daemon.log.borrow().requests.is_empty());
    assert_eq!(r.delivered.len(), 1);
}

#[test]
fn approval_off_asks_no_daemon() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let mut case = Case::new(vec![Step::TypeDeliveredCode]);
    case.config = String::new();
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    assert!(daemon.log.borrow().requests.is_empty());
    assert_eq!(daemon.log.borrow().status_calls, 0);
}

#[test]
fn decoys_look_like_a_login_offered_a_tap_when_one_would_be() {
    for who in [Who::NotEnrolled, Who::Unknown] {
        let clock = FakeClock::default();
        let daemon = FakeDaemon::running(&clock);
        let mut case = Case::new(vec![
            enter(),
            typed("123456"),
            enter(),
            typed("1"),
            typed("2"),
        ]);
        case.config = format!("[policy]\nunenrolled = \"deny\"\n{ON}");
        case.who = who;
        let start = std::time::Instant::now();
        let r = run(case, &clock, &daemon);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the fake clock waits"
        );
        assert!(daemon.log.borrow().requests.is_empty(), "nothing sent");
        let first = &r.prompts[0];
        let n: u8 = first
            .strip_prefix("Tap ")
            .and_then(|p| p.split(' ').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{first}"));
        assert!((10..=99).contains(&n));
        let tap = format!("Tap {n} in Telegram and press Enter, or type the code: ");
        // Enter waits like a real login with no tap, then asks again.
        let again = format!("No tap yet. {tap}");
        assert_eq!(
            r.prompts,
            [&tap, &again, &tap, &again, &tap].map(String::clone)
        );
        assert_eq!(clock_secs(&clock), 1 + 30 + 1 + 1 + 30 + 1 + 1);
        assert_eq!(
            r.errors,
            [
                "Wrong code. 2 attempts left.",
                "Wrong code. 1 attempt left."
            ]
        );
        assert!(matches!(
            r.outcome,
            Outcome::NotEnrolledDenied | Outcome::UnknownUser
        ));
    }

    // The daemon down: a real login gets the code-only prompt; so does the decoy.
    let clock = FakeClock::default();
    let daemon = FakeDaemon::absent(&clock);
    let mut case = Case::new(vec![typed("1"), typed("2"), typed("3")]);
    case.config = format!("[policy]\nunenrolled = \"deny\"\n{ON}");
    case.who = Who::NotEnrolled;
    let r = run(case, &clock, &daemon);
    assert!(
        r.prompts[0].starts_with("Code sent via Telegram to ***"),
        "{:?}",
        r.prompts
    );
}

#[test]
fn the_wrong_password_decoy_offers_a_tap_too() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let mut case = Case::new(vec![typed("1"), typed("2"), typed("3")]);
    case.password_was_wrong = true;
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, Outcome::WrongPassword);
    assert!(r.prompts[0].starts_with("Tap "), "{:?}", r.prompts);
    assert!(daemon.log.borrow().requests.is_empty());
}

/// With a private chat first, the daemon counts the send (in the same
/// state, with the module's state_dir and limits) and sends it in one
/// request: the window holds one send, not two, and the typed code works.
#[test]
fn the_daemon_counts_the_send_and_the_module_does_not_count_it_again() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let mut case = Case::new(vec![Step::TypeBytes(CODE.into())]);
    case.config = format!("state_dir = \"/srv/pgw\"\n{ON}[limits]\ncodes_per_window = 2\n");
    let r = run(case, &clock, &daemon);
    assert_eq!(r.outcome, TELEGRAM);
    let reserve = daemon
        .request()
        .reserve
        .expect("the daemon was asked to count");
    assert_eq!(reserve.state_dir, "/srv/pgw");
    let limits = Limits {
        codes_per_window: 2,
        ..Limits::default()
    };
    assert_eq!(reserve.limits(), limits);
    assert_eq!(r.state.expect("state").sent.len(), 1, "counted once");
    assert!(r.delivered.is_empty(), "nothing sent directly");
}

fn state_with(f: impl FnOnce(&mut UserState)) -> UserState {
    let mut s = UserState::new();
    f(&mut s);
    s
}

/// A full window, as the daemon counted it: nothing goes out (neither
/// through the daemon nor directly) and the login is refused as without
/// the daemon.
#[test]
fn a_full_window_the_daemon_sees_sends_nothing() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let now = FakeWall::following(&clock).unix_now();
    let full = state_with(|s| s.sent = vec![now; 5]);
    daemon.store.set("alice", full);
    let r = run(Case::new(vec![]), &clock, &daemon);
    assert_eq!(r.outcome, Outcome::RateLimited);
    assert!(r.delivered.is_empty());
    assert_eq!(
        r.errors,
        ["Too many codes requested: no code sent. Try again in 15 min."]
    );
    assert_eq!(r.state.expect("state").sent.len(), 5, "nothing counted");
    assert!(
        daemon.log.borrow().finished.is_empty(),
        "no message to finish"
    );
}

/// "Not me" (or a lockout) seen by the daemon: nothing goes out, and the
/// module says why as it does when it counts itself.
#[test]
fn a_lock_the_daemon_sees_sends_nothing() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let now = FakeWall::following(&clock).unix_now();
    daemon
        .store
        .set("alice", state_with(|s| s.not_me = Some(now)));
    let r = run(Case::new(vec![]), &clock, &daemon);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert!(r.delivered.is_empty());
    assert_eq!(daemon.log.borrow().requests.len(), 1);
    assert!(r.log.contains("locked: Not me was tapped"), "{}", r.log);
}

/// A daemon that cannot use the state file takes nothing: the module
/// counts (here it cannot either, and refuses) and would send directly.
#[test]
fn a_state_file_the_daemon_cannot_use_is_left_to_the_module() {
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    *daemon.store.broken.lock().expect("lock") = Some("disk on fire".into());
    let r = run(Case::new(vec![]), &clock, &daemon);
    assert_eq!(r.outcome, Outcome::StateFailed);
    assert!(r.delivered.is_empty());
    assert!(
        r.log
            .contains("approval: pam-gatewayd did not take it (State: "),
        "{}",
        r.log
    );
    assert_eq!(
        r.errors,
        ["Login refused: the login state cannot be read. Tell your admin."]
    );
}

fn clock_secs(clock: &FakeClock) -> u64 {
    use pam_gateway_core::flow::Clock;
    clock.now().as_secs()
}

/// pam-gatewayd runs the flow with `authenticate_handing_over`: the code's
/// dialogue is handed over before the first prompt. A flow resumed from it
/// (the module's, once the daemon went away after a wrong code) judges the
/// same code, counts on in the same state and sends nothing again; the tap
/// is still asked of the daemon by the nonce.
#[test]
fn a_handed_over_dialogue_is_finished_with_the_same_code() {
    use pam_gateway_core::approve::wire::Handover;
    let clock = FakeClock::default();
    let daemon = FakeDaemon::running(&clock);
    let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n{ON}");
    let config = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config");
    let wall = FakeWall::following(&clock);
    let outbox = Outbox::default();
    let ctx = LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: Some("203.0.113.7".into()),
        tty: Some("ssh".into()),
        ruser: None,
        host: "pi".into(),
        password_was_wrong: false,
        caller_is_root: true,
    };
    let store = daemon.store.clone();
    let log = MemoryLog::default();
    let mut handed: Vec<Handover> = Vec::new();

    // The daemon's flow: a wrong code, then the module is gone.
    let mut conv = ScriptedConv::new(vec![typed("999999")], &clock, &wall, &outbox).until_hang_up();
    let mut approver = daemon.clone();
    let outcome = Flow {
        config: &config,
        conv: &mut conv,
        clock: &clock,
        codes: &mut FixedCodes(CODE),
        log: &mut log.clone(),
        debug: true,
        state: &*store,
        wall: &wall,
        groups: &NoGroups,
        totp: None,
        approver: Some(&mut approver),
    }
    .authenticate_handing_over(
        &ctx,
        Enrolment::Enrolled(vec![outbox.route("123456977")]),
        &mut |h| handed.push(h.clone()),
    );
    assert_eq!(outcome, Outcome::ConversationFailed);
    assert_eq!(handed.len(), 1, "one handover, before the first prompt");
    let h = &handed[0];
    assert_eq!(h.code, CODE);
    assert_eq!(h.gateway, "telegram");
    assert_eq!(h.prompt, tap_prompt(&daemon));
    assert!(!format!("{h:?}").contains(CODE), "Debug shows the code");
    let a = h.approval.as_ref().expect("a tap offered");
    assert_eq!(a.nonce, daemon.request().nonce);
    assert_eq!(a.answer, daemon.request().answer);
    assert!(a.offered);
    assert_eq!(h.ttl_left_ms, 300_000);
    assert_eq!(store.get("alice").expect("state").failures, 1);

    // The module's flow, resumed: Enter (the daemon's nonce is asked for
    // the tap, none came), then the code.
    clock.advance(Duration::from_secs(5));
    let mut conv = ScriptedConv::new(
        vec![enter(), Step::TypeBytes(CODE.into())],
        &clock,
        &wall,
        &outbox,
    );
    let mut approver = daemon.clone();
    let outcome = Flow {
        config: &config,
        conv: &mut conv,
        clock: &clock,
        codes: &mut FixedCodes("999999"),
        log: &mut log.clone(),
        debug: true,
        state: &*store,
        wall: &wall,
        groups: &NoGroups,
        totp: None,
        approver: Some(&mut approver),
    }
    .resume(&ctx, h);
    assert_eq!(outcome, TELEGRAM);
    assert!(
        outbox.delivered.borrow().is_empty(),
        "nothing sent directly"
    );
    assert_eq!(daemon.log.borrow().requests.len(), 1, "no second Approve");
    let waits = daemon.log.borrow().wait_calls.clone();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert_eq!(waits[0].0, a.nonce);
    let state = store.get("alice").expect("state");
    assert_eq!(state.failures, 0, "the right code clears the count");
    let t = conv.finish();
    assert_eq!(t.prompts.len(), 2, "{:?}", t.prompts);
    assert!(!log.text().contains(CODE), "the code leaked");
}

/// A resumed login whose code expired meanwhile is refused.
#[test]
fn a_handed_over_code_expires_as_it_would_have() {
    use pam_gateway_core::approve::wire::Handover;
    let clock = FakeClock::default();
    let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n");
    let config = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config");
    let wall = FakeWall::following(&clock);
    let outbox = Outbox::default();
    let store = FakeDaemon::running(&clock).store.clone();
    let ctx = LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: None,
        tty: None,
        ruser: None,
        host: "pi".into(),
        password_was_wrong: false,
        caller_is_root: true,
    };
    let h = Handover {
        code: CODE.into(),
        ttl_left_ms: 2_000,
        gateway: "telegram".into(),
        prompt: CODE_PROMPT.into(),
        approval: None,
    };
    let mut unknown = h.clone();
    unknown.gateway = "carrier-pigeon".into();
    let typed_late = vec![Step::Type(Duration::from_secs(3), CODE.into())];
    for (h, steps, want) in [
        (h, typed_late, Outcome::Expired),
        (unknown, vec![], Outcome::SystemError),
    ] {
        let outcome = Flow {
            config: &config,
            conv: &mut ScriptedConv::new(steps, &clock, &wall, &outbox),
            clock: &clock,
            codes: &mut FixedCodes("999999"),
            log: &mut MemoryLog::default(),
            debug: false,
            state: &*store,
            wall: &wall,
            groups: &NoGroups,
            totp: None,
            approver: None,
        }
        .resume(&ctx, &h);
        assert_eq!(outcome, want);
    }
}
