//! The authentication flow driven without libpam: a scripted conversation,
//! a fake gateway and a clock the script moves forward.

use std::path::Path;
use std::time::Duration;

use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{Enrolment, Flow, LoginContext, Outcome};
use pam_gateway_core::gateway::DeliveryError;
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::state::MemoryStateStore;
use pgw_test_support::flow_fakes::{
    FakeClock, FakeWall, FixedCodes, NoGroups, Outbox, ScriptedConv, Step,
};

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

struct Run {
    outcome: Outcome,
    gateways_at_prompt: Vec<u32>,
    prompts: Vec<String>,
    errors: Vec<String>,
    delivered: Vec<(String, String)>,
    sends: u32,
    log: String,
}

struct Case {
    config: &'static str,
    enrolled: bool,
    gateway_result: Result<(), DeliveryError>,
    password_was_wrong: bool,
    /// The account is unknown to NSS.
    unknown_user: bool,
    /// sshd (real uid 0) by default; false: su/sudo run by a user.
    caller_is_root: bool,
    rhost: Option<&'static str>,
    steps: Vec<Step>,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            config: "",
            enrolled: true,
            gateway_result: Ok(()),
            password_was_wrong: false,
            unknown_user: false,
            caller_is_root: true,
            rhost: Some("203.0.113.7"),
            steps: vec![],
        }
    }
}

fn run(case: Case) -> Run {
    let text = format!("[telegram]\nbot_token = \"{TOKEN}\"\n{}", case.config);
    let config = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &text).expect("config");
    let clock = FakeClock::default();
    let wall = FakeWall::following(&clock);
    let outbox = Outbox::default();
    if let Err(e) = case.gateway_result {
        outbox.fail_delivery(e);
    }
    let mut conv = ScriptedConv::new(case.steps, &clock, &wall, &outbox);
    let log = MemoryLog::default();
    let mut log_w = log.clone();
    let mut codes = FixedCodes("024681");
    let enrolment = if case.unknown_user {
        Enrolment::UnknownUser
    } else if case.enrolled {
        Enrolment::Enrolled(vec![outbox.route("123456977")])
    } else {
        Enrolment::NotEnrolled
    };
    let ctx = LoginContext {
        user: "alice".into(),
        service: "sshd".into(),
        rhost: case.rhost.map(str::to_string),
        tty: Some("ssh".into()),
        ruser: None,
        host: "pi".into(),
        password_was_wrong: case.password_was_wrong,
        caller_is_root: case.caller_is_root,
    };
    let store = MemoryStateStore::default();
    let outcome = Flow {
        config: &config,
        conv: &mut conv,
        clock: &clock,
        codes: &mut codes,
        log: &mut log_w,
        debug: true,
        state: &store,
        wall: &wall,
        groups: &NoGroups,
        totp: None,
        approver: None,
    }
    .authenticate(&ctx, enrolment);
    let log_text = log.text();
    assert!(
        !log_text.contains("024681"),
        "the code leaked into the log:\n{log_text}"
    );
    assert!(
        !log_text.contains("AAEhBP0av28"),
        "the token leaked into the log:\n{log_text}"
    );
    let transcript = conv.finish();
    let delivered = outbox.delivered.borrow().clone();
    Run {
        outcome,
        gateways_at_prompt: transcript.gateways_at_prompt,
        prompts: transcript.prompts,
        errors: transcript.errors,
        delivered,
        sends: outbox.send_calls.get(),
        log: log_text,
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn gateways_are_released_before_the_user_is_asked() {
    // Sent, then asked three times: no gateway (HTTP client, runtime
    // thread) is held while the user reads and types.
    let r = run(Case {
        steps: vec![
            Step::Type(SECOND, "111111\n".into()),
            Step::Type(SECOND, "222222\n".into()),
            Step::TypeDeliveredCode,
        ],
        ..Case::default()
    });
    assert!(
        matches!(r.outcome, Outcome::Success { .. }),
        "{:?}",
        r.outcome
    );
    assert_eq!(r.sends, 1);
    assert_eq!(r.gateways_at_prompt, vec![0, 0, 0]);
}

#[test]
fn right_code_succeeds_and_message_says_who_where() {
    let r = run(Case {
        steps: vec![Step::Type(5 * SECOND, "024681\n".into())],
        ..Case::default()
    });
    assert_eq!(
        r.outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
    assert_eq!(
        r.prompts,
        ["Code sent via Telegram to ***977. Verification code: "]
    );
    let (to, text) = &r.delivered[0];
    assert_eq!(to, "123456977");
    for part in [
        "024681",
        "alice@pi",
        "sshd",
        "203.0.113.7",
        "5 min",
        "not you",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    assert!(r.log.contains("result=success"), "{}", r.log);
    assert!(r.log.contains("rhost=203.0.113.7"), "{}", r.log);
}

#[test]
fn wrong_then_right() {
    let r = run(Case {
        steps: vec![Step::Type(SECOND, "111111".into()), Step::TypeDeliveredCode],
        ..Case::default()
    });
    assert_eq!(
        r.outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
    assert_eq!(r.prompts.len(), 2);
    assert_eq!(r.errors, ["Wrong code. 2 attempts left."]);
    assert_eq!(r.sends, 1, "a retry must not send a second code");
}

#[test]
fn attempts_used_up() {
    let r = run(Case {
        steps: vec![
            Step::Type(SECOND, "111111".into()),
            Step::Type(SECOND, "222222".into()),
            Step::Type(SECOND, "333333".into()),
        ],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(r.prompts.len(), 3);
    assert!(r.log.contains("result=denied-max-tries"), "{}", r.log);
}

#[test]
fn attempts_setting_is_honoured() {
    let r = run(Case {
        config: "[code]\nattempts = 1\n",
        steps: vec![Step::Type(SECOND, "111111".into())],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::MaxTries);
    assert_eq!(r.prompts.len(), 1);
    assert!(r.errors.is_empty());
}

#[test]
fn expired_code_is_refused_even_when_right() {
    let r = run(Case {
        config: "[code]\nttl = 60\n",
        steps: vec![Step::Type(61 * SECOND, "024681".into())],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::Expired);
    assert_eq!(r.errors, ["The code has expired."]);
}

#[test]
fn answer_just_in_time_is_accepted() {
    let r = run(Case {
        config: "[code]\nttl = 60\n",
        steps: vec![Step::Type(60 * SECOND, "024681".into())],
        ..Case::default()
    });
    assert_eq!(
        r.outcome,
        Outcome::Success {
            gateway: "telegram"
        }
    );
}

#[test]
fn unenrolled_deny_prompts_sends_nothing_and_fails() {
    let r = run(Case {
        enrolled: false,
        steps: vec![
            Step::Type(SECOND, "024681".into()),
            Step::Type(SECOND, "024681".into()),
            Step::Type(SECOND, "024681".into()),
        ],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::NotEnrolledDenied);
    assert_eq!(r.prompts.len(), 3, "same number of prompts as a real login");
    assert_eq!(r.sends, 0);
    // The prompt has an enrolled user's shape: enrolment does not leak.
    let p = &r.prompts[0];
    assert!(p.starts_with("Code sent via Telegram to ***"), "{p}");
    assert!(p.ends_with(". Verification code: "), "{p}");
    let digits = &p["Code sent via Telegram to ***".len()..][..3];
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{p}");
    assert!(r.prompts.iter().all(|q| q == p), "stable within a login");
}

#[test]
fn decoy_prompt_is_stable_per_user_and_keyed_on_the_config() {
    let parse = |extra: &str| {
        Config::parse(
            Path::new("/etc/pam_gateway/gateway.toml"),
            &format!("[telegram]\nbot_token = \"{TOKEN}\"\n{extra}"),
        )
        .expect("config")
    };
    let a = parse("");
    let b = parse("# another install\n");
    let decoy = pam_gateway_core::flow::decoy_prompt;
    assert_eq!(decoy(&a, "mallory"), decoy(&a, "mallory"));
    // 50 names, 1000 possible tails: different keys or names give different
    // tails almost always (a collision of all 50 cannot happen by chance).
    let names: Vec<String> = (0..50).map(|i| format!("user{i}")).collect();
    let tails = |c: &Config| names.iter().map(|n| decoy(c, n)).collect::<Vec<_>>();
    assert_ne!(tails(&a), tails(&b), "keyed on the config");
    let distinct: std::collections::BTreeSet<_> = tails(&a).into_iter().collect();
    assert!(distinct.len() > 30, "{} distinct of 50", distinct.len());
}

#[test]
fn unenrolled_ignore() {
    let r = run(Case {
        enrolled: false,
        config: "[policy]\nunenrolled = \"ignore\"\n",
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::NotEnrolledIgnored);
    assert!(r.prompts.is_empty());
    assert_eq!(r.sends, 0);
}

#[test]
fn wrong_password_marker_sends_nothing_but_looks_the_same() {
    let r = run(Case {
        password_was_wrong: true,
        steps: vec![
            Step::Type(SECOND, "024681".into()),
            Step::Type(SECOND, "1".into()),
            Step::Type(SECOND, "2".into()),
        ],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::WrongPassword);
    assert_eq!(r.sends, 0);
    assert_eq!(
        r.prompts[0],
        "Code sent via Telegram to ***977. Verification code: "
    );
    assert_eq!(r.prompts.len(), 3);
}

#[test]
fn unreachable_gateway_secure_denies() {
    let r = run(Case {
        gateway_result: Err(DeliveryError::Refused("connection refused".into())),
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::DeliveryFailedDenied);
    assert!(
        r.prompts.is_empty(),
        "no prompt for a code that was never sent"
    );
    assert!(r.log.contains("connection refused"), "{}", r.log);
}

#[test]
fn unreachable_gateway_safe_ignores() {
    let r = run(Case {
        config: "[policy]\nfailmode = \"safe\"\n",
        gateway_result: Err(DeliveryError::Unreachable("timeout".into())),
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::DeliveryFailedIgnored);
}

#[test]
fn safe_mode_still_denies_refusals_and_misconfiguration() {
    for err in [
        DeliveryError::Rejected {
            reason: "rate limited".into(),
            retry_after: Some(30),
        },
        DeliveryError::Misconfigured("bad token".into()),
    ] {
        let r = run(Case {
            config: "[policy]\nfailmode = \"safe\"\n",
            gateway_result: Err(err.clone()),
            ..Case::default()
        });
        assert_eq!(r.outcome, Outcome::DeliveryFailedDenied, "{err}");
    }
}

#[test]
fn conversation_errors() {
    for step in [Step::HangUp, Step::NoAnswer] {
        let r = run(Case {
            steps: vec![step],
            ..Case::default()
        });
        assert_eq!(r.outcome, Outcome::ConversationFailed);
    }
}

#[test]
fn hostile_answers_are_wrong_attempts_not_crashes() {
    let r = run(Case {
        steps: vec![
            Step::TypeBytes(vec![b'0'; 1 << 20]),
            Step::TypeBytes(b"02468\x001".to_vec()),
            Step::TypeBytes(vec![]),
        ],
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::MaxTries);
}

#[test]
fn template_placeholders() {
    let r = run(Case {
        config: "[message]\ntemplate = \"{code}|{user}|{host}|{service}|{rhost}|{minutes}\"\n",
        steps: vec![Step::TypeDeliveredCode],
        ..Case::default()
    });
    assert_eq!(r.delivered[0].1, "024681|alice|pi|sshd|203.0.113.7|5");
}

#[test]
fn safe_mode_under_su_skips_only_what_the_service_proved() {
    let safe = "[policy]\nfailmode = \"safe\"\n";
    for (err, outcome) in [
        (
            DeliveryError::Unreachable("no answer within the timeout".into()),
            Outcome::DeliveryFailedDenied,
        ),
        (
            DeliveryError::Local("Too many open files".into()),
            Outcome::DeliveryFailedDenied,
        ),
        (
            DeliveryError::Refused("connection refused".into()),
            Outcome::DeliveryFailedIgnored,
        ),
        (
            DeliveryError::ServiceFailed("HTTP 503".into()),
            Outcome::DeliveryFailedIgnored,
        ),
    ] {
        let r = run(Case {
            config: safe,
            caller_is_root: false,
            gateway_result: Err(err.clone()),
            ..Case::default()
        });
        assert_eq!(r.outcome, outcome, "{err}");
    }
}

#[test]
fn unknown_users_are_denied_after_the_usual_prompts_whatever_unenrolled_says() {
    for config in [
        "[policy]\nunenrolled = \"deny\"\n",
        "[policy]\nunenrolled = \"ignore\"\n",
    ] {
        let r = run(Case {
            config,
            unknown_user: true,
            steps: vec![
                Step::Type(Duration::ZERO, "111111".into()),
                Step::Type(Duration::ZERO, "222222".into()),
                Step::Type(Duration::ZERO, "333333".into()),
            ],
            ..Case::default()
        });
        assert_eq!(r.outcome, Outcome::UnknownUser, "{config}");
        assert_eq!(r.sends, 0);
        assert_eq!(r.prompts.len(), 3, "the same prompts as a real login");
        assert!(r.prompts[0].starts_with("Code sent via Telegram to ***"));
        assert!(r.log.contains("result=denied-unknown-user"), "{}", r.log);
    }
}

#[test]
fn an_echoed_code_never_reaches_the_log() {
    // A service that echoes the request in its error (the flow's own
    // scrubbing; run() asserts the code is nowhere in the log).
    let r = run(Case {
        gateway_result: Err(DeliveryError::ServiceFailed(
            "HTTP 500: {\"echo\":\"Your code is 024681\"}".into(),
        )),
        ..Case::default()
    });
    assert_eq!(r.outcome, Outcome::DeliveryFailedDenied);
    assert!(r.log.contains("Your code is [code]"), "{}", r.log);
}

#[test]
fn control_characters_in_pam_items_forge_nothing() {
    let r = run(Case {
        rhost: Some("1.2.3.4\nuser=root result=success\r"),
        steps: vec![Step::TypeDeliveredCode],
        ..Case::default()
    });
    let (_, message) = &r.delivered[0];
    assert!(
        message.contains("1.2.3.4?user=root result=success?"),
        "{message}"
    );
    assert!(!message.contains("1.2.3.4\n"), "{message}");
    let result = r
        .log
        .lines()
        .find(|l| l.contains(" result=success"))
        .expect("result line");
    assert!(
        result.contains("rhost=\"1.2.3.4\\nuser=root result=success\\r\""),
        "{result}"
    );
    // One line, one real result field: the forged one is inside quotes.
    assert_eq!(r.log.lines().filter(|l| l.contains("result=")).count(), 1);
}
