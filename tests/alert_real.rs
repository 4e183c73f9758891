//! `[alert]` through real libpam: pamtester runs `authenticate` and/or
//! `open_session` against the built module (`session optional
//! pam_gateway.so`); alerts and codes go to the loopback fake Bot API.
//! Authentication and session run in separate pamtester processes where it
//! matters, as under sshd, whose session never sees the auth process's data.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, Mode, SentMessage, find_code};
use pam_harness::*;

const WAIT: Duration = Duration::from_secs(10);
const HOME: &str = "203.0.113.7";
const ADMIN_A: i64 = 555_000_111;
const ADMIN_B: i64 = -1_001_234_567_890;
const ALERT: &str = "[alert]\nservices = [\"pgw\"]\n";

/// The code, then the session: both in pam_gateway.
const CODE_AND_ALERT: &str = "auth required {module} config={config}\n\
                              session optional {module} config={config}\n\
                              session required pam_permit.so\n";
/// PAM_IGNORE from the auth line lets pam_permit decide (exempt logins,
/// failmode = "safe").
const IGNORABLE_AND_ALERT: &str = "auth [success=done ignore=ignore default=die] {module} config={config}\n\
     auth required pam_permit.so\n\
     session optional {module} config={config}\n\
     session required pam_permit.so\n";
/// An SSH key alone: pam_gateway only in the session (pam.d/sshd-notify).
const SESSION_ONLY: &str = "auth required pam_permit.so\n\
                            session optional {module} config={config}\n\
                            session required pam_permit.so\n";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, ADMIN_A, ADMIN_B],
        ..FakeOptions::default()
    })
    .expect("fake")
}

fn env(fake: &FakeTelegram, extra: &str, stack: &str) -> PamEnv {
    let env = PamEnv::with_fake(fake, extra);
    env.set_stack(stack);
    env
}

/// `pamtester pgw USER OPS...` with `-I rhost=RHOST` when given.
fn pam(
    env: &PamEnv,
    ops: &[&str],
    user: &str,
    rhost: Option<&str>,
    answers: Answers,
    fake: Option<&FakeTelegram>,
) -> PamRun {
    let mut args: Vec<String> = rhost.map(|r| format!("-Irhost={r}")).into_iter().collect();
    args.extend(["pgw", user].iter().chain(ops).map(|a| a.to_string()));
    env.pamtester(&args, answers, fake)
}

fn opened(run: &PamRun) {
    assert!(run.success, "{}", run.dump());
    assert!(
        run.stdout.contains("successfully opened a session"),
        "{}",
        run.dump()
    );
}

/// The next message the fake delivered: the alert.
fn alert(fake: &FakeTelegram) -> SentMessage {
    fake.wait_for_message(WAIT).expect("an alert")
}

fn assert_alert(msg: &SentMessage, how: &str) {
    assert_eq!(msg.chat_id, CHAT.to_string());
    assert!(
        msg.text.starts_with("Login: alice@")
            && msg.text.contains(&format!(" from {HOME} (pgw) at "))
            && msg.text.contains(how)
            && msg
                .text
                .ends_with("If this was not you, tell your admin now."),
        "expected {how:?} in\n{}",
        msg.text
    );
    assert!(
        find_code(&msg.text).is_none(),
        "a code-like number: {}",
        msg.text
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn alert_after_a_code() {
    let fake = fake();
    let env = env(&fake, ALERT, CODE_AND_ALERT);
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    opened(&run);
    let code = find_code(&fake.sent()[0].text).expect("code");
    let msg = alert(&fake);
    assert_alert(&msg, "with a code sent via Telegram.");
    assert!(!msg.text.contains(&code));
    assert!(
        run.log.contains(&format!(
            "user=alice service=pgw rhost={HOME} alert=sent how=code to=\"user via telegram\""
        )),
        "{}",
        run.dump()
    );
    assert!(!run.log.contains(&code) && !run.log.contains(SECRET_HALF));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn alert_for_a_remembered_login_in_another_process() {
    let fake = fake();
    let env = env(
        &fake,
        &format!("{ALERT}[remember]\nduration = 600\nservices = [\"pgw\"]\n"),
        CODE_AND_ALERT,
    );
    let run = pam(
        &env,
        &["authenticate"],
        "alice",
        Some(HOME),
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    // The session in a process of its own, as sshd does it.
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert_alert(&alert(&fake), "with a code sent via Telegram.");
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert!(run.log.contains("result=remembered"), "{}", run.dump());
    assert_alert(
        &alert(&fake),
        "without a code: this address proved a code (telegram) at ",
    );
    assert_eq!(fake.sent().len(), 3, "one code, two alerts");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn alert_for_an_exempt_network_and_an_exempt_group() {
    let fake = fake();
    let env = env(
        &fake,
        &format!("{ALERT}[policy]\nexempt_networks = [\"203.0.113.0/24\"]\n"),
        IGNORABLE_AND_ALERT,
    );
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert!(run.log.contains("result=ignored-policy"), "{}", run.dump());
    assert_alert(
        &alert(&fake),
        "without a code: remote host 203.0.113.7 is in exempt network 203.0.113.0/24.",
    );
    assert!(
        run.log.contains("alert=sent how=exempt-network"),
        "{}",
        run.dump()
    );

    let env = self::env(
        &fake,
        &format!("{ALERT}[policy]\nexempt_groups = [\"alice\"]\n"),
        IGNORABLE_AND_ALERT,
    );
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert_alert(
        &alert(&fake),
        "without a code: member of exempt group alice.",
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn alert_for_failmode_safe() {
    let fake = fake();
    let env = env(
        &fake,
        &format!("{ALERT}[policy]\nfailmode = \"safe\"\n"),
        IGNORABLE_AND_ALERT,
    );
    // The Bot API fails (503) during the authentication...
    fake.set_mode(Mode::Status {
        code: 503,
        body: "{\"ok\":false,\"error_code\":503,\"description\":\"down\"}".into(),
    });
    let run = pam(
        &env,
        &["authenticate"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=ignored-delivery-failed"),
        "{}",
        run.dump()
    );
    // ...and is back when the session opens.
    fake.set_mode(Mode::Normal);
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert_alert(
        &alert(&fake),
        "without a code: no gateway could be reached and failmode = \"safe\" let the first \
         factor decide.",
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn alert_for_a_login_that_never_passed_pam_gateway() {
    let fake = fake();
    let env = env(&fake, ALERT, SESSION_ONLY);
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert_alert(
        &alert(&fake),
        "no second factor by pam_gateway (public key only, or not through pam_gateway).",
    );
    assert!(run.log.contains("alert=sent how=none"), "{}", run.dump());
    // A recorded code login is taken once: the next session without an
    // authentication is "public key only" again.
    env.set_stack(CODE_AND_ALERT);
    let run = pam(
        &env,
        &["authenticate", "open_session"],
        "alice",
        Some(HOME),
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    opened(&run);
    assert_alert(&alert(&fake), "with a code sent via Telegram.");
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert_alert(&alert(&fake), "no second factor by pam_gateway");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn admins_get_it_too_and_the_rate_limit_holds() {
    let fake = fake();
    let env = env(
        &fake,
        &format!(
            "[alert]\nservices = [\"pgw\"]\nto = \"both\"\nadmin_chats = [{ADMIN_A}, {ADMIN_B}]\n\
             per_hour = 2\n"
        ),
        SESSION_ONLY,
    );
    for _ in 0..2 {
        let run = pam(
            &env,
            &["open_session"],
            "alice",
            Some(HOME),
            Answers::Eof,
            None,
        );
        opened(&run);
    }
    let sent = fake.sent();
    assert_eq!(sent.len(), 6, "two alerts, three chats each");
    let mut chats: Vec<String> = sent.iter().map(|m| m.chat_id.clone()).collect();
    chats.sort();
    chats.dedup();
    assert_eq!(chats.len(), 3, "{chats:?}");
    // The third within the hour is logged, not sent.
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert!(
        run.log
            .contains("alert=rate-limited how=none reason=\"2 alerts in the last hour"),
        "{}",
        run.dump()
    );
    assert_eq!(fake.sent().len(), 6);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_hanging_gateway_delays_the_session_by_its_timeout_at_most() {
    let fake = fake();
    // timeout = 2 (the harness's config); the user and two admin chats all
    // hang: they are sent at once, so the whole waits about 2 s, not 6.
    let env = env(
        &fake,
        &format!(
            "[alert]\nservices = [\"pgw\"]\nto = \"both\"\nadmin_chats = [{ADMIN_A}, {ADMIN_B}]\n"
        ),
        SESSION_ONLY,
    );
    fake.set_mode(Mode::NeverAnswer);
    let start = Instant::now();
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    let took = start.elapsed();
    eprintln!("open_session with every gateway hanging took {took:?}");
    opened(&run);
    assert!(
        took < Duration::from_secs(3),
        "the session waited {took:?} (timeout 2 s + 1 s)\n{}",
        run.dump()
    );
    assert!(
        took >= Duration::from_millis(1900),
        "{took:?}: did it wait at all?"
    );
    assert!(run.log.contains("alert=failed how=none"), "{}", run.dump());
    assert!(!run.log.contains(SECRET_HALF), "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn control_characters_in_the_remote_host_never_reach_the_message() {
    let fake = fake();
    let env = env(&fake, ALERT, SESSION_ONLY);
    let odd = "203.0.113.7\nLogin: all is well\u{1b}[2J";
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(odd),
        Answers::Eof,
        None,
    );
    opened(&run);
    let msg = alert(&fake);
    assert!(
        msg.text
            .contains(" from 203.0.113.7?Login: all is well?[2J (pgw) at "),
        "{}",
        msg.text
    );
    assert_eq!(msg.text.matches('\n').count(), 1, "{:?}", msg.text);
    assert!(!msg.text.contains('\u{1b}'));
    // The log line is escaped too.
    assert!(
        run.log
            .contains("rhost=\"203.0.113.7\\nLogin: all is well\\u{1b}[2J\""),
        "{}",
        run.dump()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn absent_remote_host_says_local() {
    let fake = fake();
    let env = env(&fake, ALERT, SESSION_ONLY);
    let run = pam(&env, &["open_session"], "alice", None, Answers::Eof, None);
    opened(&run);
    let msg = alert(&fake);
    assert!(msg.text.contains(" from local (pgw) at "), "{}", msg.text);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn without_the_section_the_session_hook_does_nothing() {
    let fake = fake();
    let env = env(&fake, "", SESSION_ONLY);
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert!(fake.sent().is_empty());
    assert!(!env.state.exists(), "no state written");
    // A broken config: the session still opens (the hook only logs).
    write_file(&env.config, "[nonsense\n", 0o600);
    let run = pam(
        &env,
        &["open_session"],
        "alice",
        Some(HOME),
        Answers::Eof,
        None,
    );
    opened(&run);
    assert!(
        run.log.contains("session: no alert: config:"),
        "{}",
        run.dump()
    );
}
