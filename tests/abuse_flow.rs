//! Limits, lockouts, policy and the fallback factors (TOTP, backup codes),
//! driven through the flow without libpam: a scripted user, a fake gateway,
//! clocks the script moves, and state in memory or in real files.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pam_gateway_core::backup_codes;
use pam_gateway_core::code::OsCodeSource;
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{Enrolment, Flow, LoginContext, Outcome};
use pam_gateway_core::gateway::DeliveryError;
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::state::{
    FileStateStore, MemoryStateStore, StateStore, UserState, WallClock, update_with,
};
use pam_gateway_core::totp::TotpKey;
use pgw_test_support::flow_fakes::{
    FakeClock, FakeWall, GroupTable, Outbox, START, ScriptedConv, Step, TOTP_B32, code_in, typed,
};

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

/// A group table: alice is in staff (100), robot in robots (900), carol in
/// neither; any other user is unknown to NSS.
fn table() -> GroupTable {
    GroupTable {
        users: vec![
            ("alice", vec![100]),
            ("robot", vec![900]),
            ("carol", vec![500]),
        ],
        groups: vec![("staff", 100), ("robots", 900)],
    }
}

/// Another login locks the user out while this one waits at the prompt;
/// this one then types a code.
fn locked_elsewhere(w: &World) -> Step {
    let (store, wall) = (w.store.clone(), w.wall.clone());
    Step::Meanwhile(
        Box::new(move || {
            let until = wall.unix_now() + 900;
            update_with(store.as_ref(), "alice", |s| s.locked_until = Some(until)).expect("state");
        }),
        Box::new(Step::Type(Duration::ZERO, "000000".into())),
    )
}

struct World {
    config: Config,
    clock: FakeClock,
    wall: FakeWall,
    store: Rc<dyn StateStore>,
    memory: Option<Rc<MemoryStateStore>>,
    outbox: Outbox,
    totp: Option<TotpKey>,
    /// No gateway in the user's entry (an authenticator-only user).
    no_routes: Cell<bool>,
    /// The login's real uid is 0 (sshd); false: su/sudo run by a user.
    caller_is_root: Cell<bool>,
}

struct Run {
    outcome: Outcome,
    prompts: Vec<String>,
    errors: Vec<String>,
    infos: Vec<String>,
    log: String,
}

fn config(extra: &str) -> Config {
    let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n{extra}");
    Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config")
}

impl World {
    fn new(extra: &str) -> World {
        let memory = Rc::new(MemoryStateStore::default());
        let clock = FakeClock::default();
        World {
            config: config(extra),
            wall: FakeWall::following(&clock),
            clock,
            store: memory.clone(),
            memory: Some(memory),
            outbox: Outbox::default(),
            totp: None,
            no_routes: Cell::new(false),
            caller_is_root: Cell::new(true),
        }
    }

    fn with_totp(mut self) -> World {
        self.totp = Some(TotpKey::from_base32(TOTP_B32).expect("key"));
        self
    }

    fn state(&self) -> UserState {
        self.memory
            .as_ref()
            .and_then(|m| m.get("alice"))
            .unwrap_or_default()
    }

    fn sent(&self) -> usize {
        self.outbox.delivered.borrow().len()
    }

    fn wait(&self, secs: u64) {
        self.wall.jump(secs);
    }

    fn fail_delivery(&self, e: DeliveryError) {
        self.outbox.fail_delivery(e);
    }

    fn login(&self, steps: Vec<Step>) -> Run {
        self.login_as("alice", Some("203.0.113.7"), steps)
    }

    fn login_as(&self, user: &str, rhost: Option<&str>, steps: Vec<Step>) -> Run {
        let mut conv = ScriptedConv::new(steps, &self.clock, &self.wall, &self.outbox);
        let log = MemoryLog::default();
        let mut log_w = log.clone();
        let routes = if self.no_routes.get() {
            vec![]
        } else {
            vec![self.outbox.route("123456977")]
        };
        let ctx = LoginContext {
            user: user.into(),
            service: "sshd".into(),
            rhost: rhost.map(str::to_string),
            tty: Some("ssh".into()),
            ruser: None,
            host: "pi".into(),
            password_was_wrong: false,
            caller_is_root: self.caller_is_root.get(),
        };
        let outcome = Flow {
            config: &self.config,
            conv: &mut conv,
            clock: &self.clock,
            codes: &mut OsCodeSource,
            log: &mut log_w,
            debug: true,
            state: self.store.as_ref(),
            wall: &self.wall,
            groups: &table(),
            totp: self.totp.as_ref(),
            approver: None,
        }
        .authenticate(&ctx, Enrolment::Enrolled(routes));
        let transcript = conv.finish();
        let log = log.text();
        for (_, msg) in self.outbox.delivered.borrow().iter() {
            assert!(
                !log.contains(&code_in(msg)),
                "a code leaked into the log:\n{log}"
            );
        }
        assert!(!log.contains(TOTP_B32), "the TOTP secret leaked:\n{log}");
        Run {
            outcome,
            prompts: transcript.prompts,
            errors: transcript.errors,
            infos: transcript.infos,
            log,
        }
    }
}

fn success(gateway: &'static str) -> Outcome {
    Outcome::Success { gateway }
}

// ---- codes per window ------------------------------------------------------

#[test]
fn sixth_code_in_the_window_is_not_sent_and_the_user_is_told_when() {
    let w = World::new("");
    for _ in 0..5 {
        let r = w.login(vec![Step::TypeDeliveredCode]);
        assert_eq!(r.outcome, success("telegram"));
        w.wait(60);
    }
    assert_eq!(w.sent(), 5);
    let r = w.login(vec![]);
    assert_eq!(r.outcome, Outcome::RateLimited);
    assert_eq!(w.sent(), 5, "no message while the limit holds");
    assert!(r.prompts.is_empty());
    // The first code went out at START; the window is 900 s; 300 s passed.
    assert_eq!(
        r.errors,
        ["Too many codes requested: no code sent. Try again in 10 min."]
    );
    assert!(r.log.contains("result=denied-rate-limited"), "{}", r.log);
    assert!(r.log.contains("rhost=203.0.113.7"), "{}", r.log);
    // Once the oldest send leaves the window, one more may go.
    w.wait(600);
    let r = w.login(vec![Step::TypeDeliveredCode]);
    assert_eq!(r.outcome, success("telegram"));
    assert_eq!(w.sent(), 6);
    assert_eq!(w.login(vec![]).outcome, Outcome::RateLimited);
}

#[test]
fn failed_deliveries_do_not_use_up_the_window() {
    let w = World::new("[limits]\ncodes_per_window = 2\n");
    w.fail_delivery(DeliveryError::Refused("connection refused".into()));
    for _ in 0..4 {
        assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedDenied);
    }
    assert!(w.state().sent.is_empty(), "{:?}", w.state());
    *w.outbox.result.borrow_mut() = None;
    assert_eq!(
        w.login(vec![Step::TypeDeliveredCode]).outcome,
        success("telegram")
    );
}

#[test]
fn sends_whose_fate_is_unknown_use_up_the_window() {
    // A timeout (the caller may have stopped the process while the request
    // was out) or a service's own failure may still have delivered the
    // code: each counts, so SIGSTOP cannot buy more than codes_per_window.
    for e in [
        DeliveryError::Unreachable("no answer within the timeout".into()),
        DeliveryError::ServiceFailed("HTTP 502".into()),
    ] {
        let w = World::new("[limits]\ncodes_per_window = 2\n");
        w.fail_delivery(e.clone());
        for _ in 0..2 {
            let r = w.login(vec![]);
            assert_eq!(r.outcome, Outcome::DeliveryFailedDenied);
            assert!(
                r.log.contains("counted against codes_per_window"),
                "{}",
                r.log
            );
        }
        assert_eq!(w.state().sent.len(), 2, "{e}");
        let r = w.login(vec![]);
        assert_eq!(r.outcome, Outcome::RateLimited, "{e}");
    }
    // Nothing left this machine, or the service refused the message: given back.
    for e in [
        DeliveryError::Refused("connection refused".into()),
        DeliveryError::Local("Too many open files".into()),
        DeliveryError::Rejected {
            reason: "chat not found".into(),
            retry_after: None,
        },
    ] {
        let w = World::new("[limits]\ncodes_per_window = 2\n");
        w.fail_delivery(e.clone());
        for _ in 0..3 {
            assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedDenied);
        }
        assert!(w.state().sent.is_empty(), "{e}");
    }
}

// ---- lockout ---------------------------------------------------------------

#[test]
fn wrong_codes_across_logins_lock_out_and_the_lockout_grows() {
    let w = World::new("[limits]\ncodes_per_window = 100\n");
    let r = w.login(vec![typed("111111"), typed("222222"), typed("333333")]);
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(w.state().failures, 3);
    // Failures 4 and 5: the fifth starts a lockout mid-login.
    let r = w.login(vec![typed("444444"), typed("555555")]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert_eq!(
        r.errors.last().map(String::as_str),
        Some("Wrong code. Too many wrong codes: try again in 15 min.")
    );
    assert!(
        r.log.contains("5 wrong codes in a row: locked out"),
        "{}",
        r.log
    );
    assert!(r.log.contains("rhost=203.0.113.7"), "{}", r.log);
    let sent = w.sent();
    // Locked: nothing is sent, nothing is asked.
    let r = w.login(vec![]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert_eq!(w.sent(), sent);
    assert!(r.prompts.is_empty());
    assert!(
        r.errors[0].starts_with("Too many wrong codes. Try again in"),
        "{:?}",
        r.errors
    );
    // After 900 s: open again; five more wrong codes lock for twice as long.
    w.wait(900);
    let r = w.login(vec![typed("1"), typed("2"), typed("3")]);
    assert_eq!(r.outcome, Outcome::MaxTries);
    let r = w.login(vec![typed("4"), typed("5")]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert_eq!(
        r.errors.last().map(String::as_str),
        Some("Wrong code. Too many wrong codes: try again in 30 min.")
    );
    assert_eq!(w.state().lockouts, 2);
    // A success forgives the history.
    w.wait(1800);
    assert_eq!(
        w.login(vec![Step::TypeDeliveredCode]).outcome,
        success("telegram")
    );
    let st = w.state();
    assert_eq!((st.failures, st.lockouts, st.locked_until), (0, 0, None));
}

#[test]
fn a_lockout_from_another_login_refuses_even_the_right_code() {
    let w = World::new("");
    let r = w.login(vec![locked_elsewhere(&w)]);
    // The answer meets the lockout; nothing more is asked.
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert_eq!(r.prompts.len(), 1);
    assert_eq!(
        w.state().failures,
        0,
        "answers during a lockout are not counted"
    );
    assert!(r.log.contains("by another login"), "{}", r.log);
}

#[test]
fn hostile_answers_count_as_failures_without_work() {
    let w = World::new("[code]\nattempts = 3\n");
    let r = w.login(vec![
        Step::Type(Duration::ZERO, "9".repeat(1 << 20)),
        Step::Type(Duration::ZERO, "abcde-fghjk\0".into()),
        Step::Type(Duration::ZERO, String::new()),
    ]);
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(w.state().failures, 3);
}

#[test]
fn expired_answers() {
    let w = World::new("[code]\nttl = 60\nattempts = 1\n");
    // A wrong answer after the deadline: expired, and it counts as a failure.
    let r = w.login(vec![Step::Type(Duration::from_secs(61), "12345678".into())]);
    assert_eq!(r.outcome, Outcome::Expired);
    assert_eq!(r.errors, ["The code has expired."]);
    assert_eq!(w.state().failures, 1);
    // The right code after the deadline: expired, but not a failure.
    let r = w.login(vec![Step::TypeDeliveredCodeAfter(Duration::from_secs(61))]);
    assert_eq!(r.outcome, Outcome::Expired);
    assert_eq!(w.state().failures, 1);
    // An authenticator code is not bound to the sent code's expiry.
    let w = World::new("[code]\nttl = 60\nattempts = 1\n").with_totp();
    let r = w.login(vec![Step::TypeTotpAfter(Duration::from_secs(61))]);
    assert_eq!(r.outcome, success("totp"));
}

// ---- TOTP ------------------------------------------------------------------

#[test]
fn unreachable_gateway_asks_for_an_authenticator_code() {
    for failmode in ["secure", "safe"] {
        let w = World::new(&format!("[policy]\nfailmode = \"{failmode}\"\n")).with_totp();
        w.fail_delivery(DeliveryError::Refused("connection refused".into()));
        let r = w.login(vec![Step::TypeTotp(0)]);
        assert_eq!(r.outcome, success("totp"), "{failmode}");
        assert_eq!(
            r.prompts,
            ["Could not send a code via Telegram. Authenticator code: "]
        );
        assert!(r.log.contains("asking for a fallback factor"), "{}", r.log);
        assert!(
            r.log.contains("result=success") && r.log.contains("gateway=totp"),
            "{}",
            r.log
        );
        assert!(
            w.state().sent.is_empty(),
            "the failed send gave its slot back"
        );
    }
}

#[test]
fn refused_delivery_also_falls_back_and_wrong_totp_counts() {
    let w = World::new("").with_totp();
    w.fail_delivery(DeliveryError::Rejected {
        reason: "rate limited".into(),
        retry_after: Some(30),
    });
    let r = w.login(vec![typed("000000"), Step::TypeTotp(-3), Step::TypeTotp(3)]);
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(w.state().failures, 3);
}

#[test]
fn authenticator_code_works_at_the_normal_prompt_and_only_once() {
    let w = World::new("").with_totp();
    let r = w.login(vec![Step::TypeTotp(0)]);
    assert_eq!(r.outcome, success("totp"));
    assert_eq!(w.sent(), 1, "the code was still sent");
    let step = w.wall.unix_now() / 30;
    assert_eq!(w.state().totp_last_step, Some(step));
    // The same code again (same step) is refused as a replay.
    let r = w.login(vec![Step::TypeTotp(0), Step::TypeDeliveredCode]);
    assert_eq!(r.outcome, success("telegram"));
    assert_eq!(r.errors, ["Wrong code. 2 attempts left."]);
    assert!(r.log.contains("used a second time"), "{}", r.log);
    // An earlier step (drift allowance) is refused too once a later one was used.
    let r = w.login(vec![Step::TypeTotp(-1), Step::TypeDeliveredCode]);
    assert_eq!(r.outcome, success("telegram"));
    assert_eq!(r.errors.len(), 1);
    // The next step is fine.
    let r = w.login(vec![Step::TypeTotp(1)]);
    assert_eq!(r.outcome, success("totp"));
}

#[test]
fn authenticator_only_user_is_asked_directly() {
    let w = World::new("").with_totp();
    w.no_routes.set(true);
    let r = w.login(vec![Step::TypeTotp(0)]);
    assert_eq!(r.outcome, success("totp"));
    assert_eq!(r.prompts, ["Authenticator code: "]);
    assert_eq!(w.outbox.send_calls.get(), 0);
}

#[test]
fn window_full_with_totp_asks_for_it_instead() {
    let w = World::new("[limits]\ncodes_per_window = 1\n").with_totp();
    assert_eq!(
        w.login(vec![Step::TypeDeliveredCode]).outcome,
        success("telegram")
    );
    w.wait(60);
    let r = w.login(vec![Step::TypeTotp(0)]);
    assert_eq!(r.outcome, success("totp"));
    assert_eq!(
        r.prompts,
        ["No new code sent (limit reached; next in 14 min). Authenticator code: "]
    );
    assert_eq!(w.sent(), 1);
    assert!(r.log.contains("limit:"), "{}", r.log);
}

#[test]
fn lockout_holds_against_authenticator_codes_too() {
    let w = World::new("[limits]\nfailures_before_lockout = 2\n").with_totp();
    let r = w.login(vec![typed("1"), typed("2")]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    let r = w.login(vec![]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    assert!(r.prompts.is_empty(), "no fallback prompt during a lockout");
}

// ---- backup codes ----------------------------------------------------------

fn give_backup_codes(w: &World, n: usize) -> Vec<String> {
    // Few rounds: the hashing itself is tested in the library.
    let (codes, hashes) = backup_codes::generate(n, 10).expect("codes");
    update_with(w.store.as_ref(), "alice", |s| s.backup_codes = hashes).expect("state");
    codes.iter().map(|c| c.expose().to_string()).collect()
}

#[test]
fn backup_code_works_once_and_says_how_many_are_left() {
    let w = World::new("");
    let codes = give_backup_codes(&w, 3);
    let r = w.login(vec![typed(&codes[1])]);
    assert_eq!(r.outcome, success("backup-code"));
    assert_eq!(r.infos, ["Backup code accepted. 2 backup codes left."]);
    assert_eq!(w.state().backup_codes.len(), 2);
    let r = w.login(vec![typed(&codes[1]), Step::TypeDeliveredCode]);
    assert_eq!(r.outcome, success("telegram"), "a used code is wrong");
    assert_eq!(r.errors, ["Wrong code. 2 attempts left."]);
    let r = w.login(vec![typed(&codes[0].to_uppercase().replace('-', " "))]);
    assert_eq!(r.outcome, success("backup-code"));
    assert_eq!(r.infos, ["Backup code accepted. 1 backup code left."]);
    let r = w.login(vec![typed(&codes[2])]);
    assert_eq!(
        r.infos,
        ["Backup code accepted. That was your last one: ask your admin for new backup codes."]
    );
}

#[test]
fn delivery_failure_with_only_backup_codes_asks_for_one() {
    let w = World::new("");
    let codes = give_backup_codes(&w, 2);
    w.fail_delivery(DeliveryError::Unreachable("timeout".into()));
    let r = w.login(vec![typed(&codes[0])]);
    assert_eq!(r.outcome, success("backup-code"));
    assert_eq!(
        r.prompts,
        ["Could not send a code via Telegram. Backup code: "]
    );
    let w = World::new("").with_totp();
    give_backup_codes(&w, 1);
    w.fail_delivery(DeliveryError::Unreachable("timeout".into()));
    let r = w.login(vec![Step::HangUp]);
    assert_eq!(r.outcome, Outcome::ConversationFailed);
    assert_eq!(
        r.prompts,
        ["Could not send a code via Telegram. Authenticator or backup code: "]
    );
}

#[test]
fn safe_mode_under_a_non_root_caller_needs_proof_from_the_service() {
    let w = World::new("[policy]\nfailmode = \"safe\"\n");
    w.caller_is_root.set(false);
    // What su's caller can bring about (a stop past the timeout, EMFILE)
    // never skips the code.
    for e in [
        DeliveryError::Unreachable("no answer within the timeout".into()),
        DeliveryError::Local("Too many open files".into()),
    ] {
        w.fail_delivery(e.clone());
        let r = w.login(vec![]);
        assert_eq!(r.outcome, Outcome::DeliveryFailedDenied, "{e}");
        assert!(r.log.contains("failmode=safe not applied"), "{}", r.log);
    }
    // What only the remote side can do still counts as down.
    for e in [
        DeliveryError::Refused("connection refused".into()),
        DeliveryError::ServiceFailed("HTTP 503".into()),
    ] {
        w.fail_delivery(e.clone());
        assert_eq!(
            w.login(vec![]).outcome,
            Outcome::DeliveryFailedIgnored,
            "{e}"
        );
    }
    // Under sshd (real uid 0) a timeout is the service's; a local error
    // never is.
    w.caller_is_root.set(true);
    w.fail_delivery(DeliveryError::Unreachable("timeout".into()));
    assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedIgnored);
    w.fail_delivery(DeliveryError::Local("cannot spawn a thread".into()));
    assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedDenied);
}

#[test]
fn a_backup_code_still_works_during_a_lockout_under_its_own_limit() {
    // Someone with the password keeps the user locked out with wrong codes.
    let w = World::new("[limits]\nfailures_before_lockout = 2\ncodes_per_window = 100\n");
    let codes = give_backup_codes(&w, 3);
    let r = w.login(vec![typed("111111"), typed("222222")]);
    assert_eq!(r.outcome, Outcome::LockedOut);
    // The user: no code is sent, the backup code is asked for and works.
    let before = w.sent();
    let r = w.login(vec![typed(&codes[0])]);
    assert_eq!(r.outcome, success("backup-code"), "{}", r.log);
    assert_eq!(w.sent(), before, "nothing sent during the lockout");
    assert!(r.prompts[0].contains("Backup code: "), "{:?}", r.prompts);
    assert_eq!(
        w.state().locked_until,
        None,
        "a backup code ends the lockout"
    );
    // Locked again; the code that was sent earlier and TOTP-like answers
    // are not checked during a lockout, and only three backup-shaped
    // answers are, across logins.
    w.login(vec![typed("111111"), typed("222222")]);
    for _ in 0..3 {
        let r = w.login(vec![typed("aaaaa-aaaaa")]);
        assert_eq!(r.outcome, Outcome::LockedOut);
    }
    assert_eq!(w.state().lockout_backup_tries, 3);
    let r = w.login(vec![typed(&codes[1])]);
    assert_eq!(
        r.outcome,
        Outcome::LockedOut,
        "the fourth try is not checked"
    );
    assert_eq!(w.state().backup_codes.len(), 2, "codes[1] was not used");
    // The next lockout gives the user fresh tries.
    w.wait(3600);
    let r = w.login(vec![typed(&codes[1])]);
    assert_eq!(r.outcome, success("backup-code"));
}

#[test]
fn without_fallback_the_fail_mode_still_decides() {
    let w = World::new("[policy]\nfailmode = \"safe\"\n");
    w.fail_delivery(DeliveryError::Unreachable("timeout".into()));
    assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedIgnored);
    let w = World::new("");
    w.fail_delivery(DeliveryError::Unreachable("timeout".into()));
    assert_eq!(w.login(vec![]).outcome, Outcome::DeliveryFailedDenied);
}

// ---- policy ----------------------------------------------------------------

#[test]
fn policy_exemptions_ignore_and_send_nothing() {
    let w = World::new(
        "[policy]\nexempt_networks = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n\
         require_groups = [\"staff\", \"robots\"]\nexempt_groups = [\"robots\"]\n",
    );
    for (user, rhost, exempt) in [
        ("alice", Some("192.0.2.200"), true),
        ("alice", Some("::ffff:192.0.2.1"), true),
        ("alice", Some("2001:db8::5"), true),
        ("robot", Some("203.0.113.7"), true),
        ("carol", Some("203.0.113.7"), true),
        ("alice", Some("203.0.113.7"), false),
        ("alice", None, false),
        ("alice", Some("gw.example.org"), false),
    ] {
        let steps = if exempt {
            vec![]
        } else {
            vec![Step::TypeDeliveredCode]
        };
        let r = w.login_as(user, rhost, steps);
        if exempt {
            assert_eq!(r.outcome, Outcome::PolicyIgnored, "{user} {rhost:?}");
            assert!(r.prompts.is_empty());
            assert!(r.log.contains("result=ignored-policy"), "{}", r.log);
        } else {
            assert_eq!(r.outcome, success("telegram"), "{user} {rhost:?}");
        }
    }
    assert_eq!(w.sent(), 3);
    // A user NSS does not know is in no group we can see: denied, not
    // waved through as "not in a required group".
    let r = w.login_as("dave", Some("203.0.113.7"), vec![]);
    assert_eq!(r.outcome, Outcome::SystemError);
    assert!(r.log.contains("unknown to NSS"), "{}", r.log);
    assert_eq!(w.sent(), 3);
}

#[test]
fn a_policy_naming_a_missing_group_denies() {
    let w = World::new("[policy]\nrequire_groups = [\"staf\"]\n");
    let r = w.login(vec![]);
    assert_eq!(r.outcome, Outcome::SystemError);
    assert!(
        r.log.contains("group ?staf?, which does not exist"),
        "{}",
        r.log
    );
    assert_eq!(w.outbox.send_calls.get(), 0);
}

// ---- state failures --------------------------------------------------------

#[test]
fn broken_state_denies_before_anything_is_sent() {
    let w = World::new("[policy]\nfailmode = \"safe\"\n");
    let memory = w.memory.clone().expect("memory");
    *memory.broken.lock().expect("lock") = Some("unexpected end of file".into());
    let r = w.login(vec![]);
    assert_eq!(r.outcome, Outcome::StateFailed);
    assert_eq!(w.outbox.send_calls.get(), 0);
    assert!(r.log.contains("is corrupt"), "{}", r.log);
    assert_eq!(
        r.errors,
        ["Login refused: the login state cannot be read. Tell your admin."]
    );
}

// ---- concurrency (real files, real threads) --------------------------------

fn temp_dir(tag: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut nonce = [0u8; 6];
    getrandom::fill(&mut nonce).expect("random");
    let name: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("pgw-{tag}-{name}"));
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// One login on its own thread, sharing only the state directory. Returns
/// the outcome and whether a message went out.
fn threaded_login(
    config: Arc<Config>,
    state_dir: PathBuf,
    answer: Option<&'static str>,
    gate: Arc<std::sync::Barrier>,
) -> (Outcome, bool) {
    // Fakes of its own on each thread; the wall stays at START.
    let clock = FakeClock::default();
    let wall = FakeWall::fixed();
    let outbox = Outbox::default();
    // Types `answer` (if any) at the first prompt, then hangs up; a login
    // refused before its prompt leaves the answer unused.
    let steps = answer
        .map(|a| Step::Type(Duration::ZERO, a.into()))
        .into_iter()
        .collect();
    let mut conv = ScriptedConv::new(steps, &clock, &wall, &outbox).until_hang_up();
    let store = FileStateStore::new(state_dir, Owner::current());
    let mut log = MemoryLog::default();
    gate.wait();
    let outcome = Flow {
        config: &config,
        conv: &mut conv,
        clock: &clock,
        codes: &mut OsCodeSource,
        log: &mut log,
        debug: false,
        state: &store,
        wall: &wall,
        groups: &table(),
        totp: None,
        approver: None,
    }
    .authenticate(
        &LoginContext {
            user: "alice".into(),
            ..LoginContext::default()
        },
        Enrolment::Enrolled(vec![outbox.route("1")]),
    );
    let sent = outbox.send_calls.get() > 0;
    (outcome, sent)
}

fn run_concurrently(
    config: Config,
    answer: Option<&'static str>,
    n: usize,
) -> (Vec<(Outcome, bool)>, UserState) {
    let dir = temp_dir("conc");
    let state_dir = dir.join("state");
    let config = Arc::new(config);
    let gate = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, d, g) = (config.clone(), state_dir.clone(), gate.clone());
            std::thread::spawn(move || threaded_login(c, d, answer, g))
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let state = FileStateStore::new(&state_dir, Owner::current())
        .load("alice")
        .expect("the state file parses");
    let _ = std::fs::remove_dir_all(&dir);
    (results, state)
}

#[test]
fn fifty_logins_at_once_send_exactly_codes_per_window() {
    // Every user hangs up at the prompt: no wrong answers, only sends.
    let (results, state) = run_concurrently(config(""), None, 50);
    let sent = results.iter().filter(|(_, s)| *s).count();
    assert_eq!(sent, 5, "{results:?}");
    let limited = results
        .iter()
        .filter(|(o, _)| *o == Outcome::RateLimited)
        .count();
    assert_eq!(limited, 45, "{results:?}");
    assert_eq!(state.sent.len(), 5);
}

#[test]
fn fifty_wrong_answers_at_once_count_exactly_one_lockout() {
    let (results, state) = run_concurrently(
        config("[code]\nattempts = 1\n[limits]\ncodes_per_window = 50\n"),
        Some("000000"),
        50,
    );
    let judged_wrong = results
        .iter()
        .filter(|(o, _)| *o == Outcome::MaxTries)
        .count();
    let locked = results
        .iter()
        .filter(|(o, _)| *o == Outcome::LockedOut)
        .count();
    // Exactly four plain failures, then the fifth locks; every other login
    // meets the lockout, before sending or at its answer.
    assert_eq!(judged_wrong, 4, "{results:?}");
    assert_eq!(locked, 46, "{results:?}");
    assert_eq!(state.lockouts, 1);
    assert_eq!(state.failures, 0);
    assert_eq!(state.locked_until, Some(START + 900));
}
