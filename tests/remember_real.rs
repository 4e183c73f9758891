//! `[remember]` through real libpam: pamtester (`-I rhost=...`) loads the
//! built module in a private mount namespace; codes come from the loopback
//! fake Bot API; `pam-gateway forget` and `unlock` are the built CLI.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram};
use pam_gateway_core::state::UserState;
use pam_harness::*;

const WAIT: Duration = Duration::from_secs(10);
const HOME: &str = "203.0.113.7";
/// Both services remember; `pgw3` (same stack) is not listed.
const REMEMBER: &str = "[remember]\nduration = 600\nservices = [\"pgw\", \"pgw2\"]\n\
                        [limits]\ncodes_per_window = 50\n";
const STACK: &str = "auth required {module} config={config} debug\n";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

/// alice and bob enrolled (same chat), [remember] on for pgw and pgw2.
fn env(fake: &FakeTelegram, extra: &str) -> PamEnv {
    let env = PamEnv::with_files(
        &format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 2\n\
             connect_timeout = 1\n{extra}",
            fake.url()
        ),
        &format!("[users.alice]\ntelegram = \"{CHAT}\"\n[users.bob]\ntelegram = \"{CHAT}\"\n"),
    );
    for service in ["pgw2", "pgw3"] {
        let text = STACK
            .replace("{module}", &module_path().display().to_string())
            .replace("{config}", &env.config.display().to_string());
        write_file(&env.pam_d.join(service), &text, 0o644);
    }
    env
}

/// `pamtester SERVICE USER authenticate` with `-I rhost=RHOST` when given.
fn login(
    env: &PamEnv,
    service: &str,
    user: &str,
    rhost: Option<&str>,
    answers: Answers,
    fake: Option<&FakeTelegram>,
) -> PamRun {
    let mut args: Vec<String> = rhost.map(|r| format!("-Irhost={r}")).into_iter().collect();
    args.extend([service, user, "authenticate"].map(String::from));
    env.pamtester(&args, answers, fake)
}

/// alice from HOME through pgw, typing the delivered code.
fn verify(env: &PamEnv, fake: &FakeTelegram) {
    let run = login(
        env,
        "pgw",
        "alice",
        Some(HOME),
        Answers::DeliveredCode(WAIT),
        Some(fake),
    );
    assert!(run.success, "{}", run.dump());
    assert!(run.log.contains("result=success"), "{}", run.dump());
}

/// Logged in without a prompt or a message.
fn assert_remembered(run: &PamRun, fake: &FakeTelegram, sent_before: usize) {
    assert!(run.success, "{}", run.dump());
    assert!(run.log.contains("result=remembered"), "{}", run.dump());
    assert!(
        !run.stderr.contains("Verification code"),
        "prompted\n{}",
        run.dump()
    );
    assert_eq!(fake.sent().len(), sent_before, "a code was sent");
}

/// Asked for a code (and a code was sent); EOF at the prompt.
fn assert_asked(run: &PamRun, fake: &FakeTelegram, sent_before: usize) {
    run.assert_failed_with(CONV_ERR);
    assert!(
        run.stderr.contains("Verification code"),
        "not prompted\n{}",
        run.dump()
    );
    assert!(!run.log.contains("result=remembered"), "{}", run.dump());
    assert_eq!(fake.sent().len(), sent_before + 1, "no code sent");
    fake.wait_for_message(WAIT).expect("that login's code");
}

fn state_path(env: &PamEnv, user: &str) -> std::path::PathBuf {
    env.state.join(format!("{user}.json"))
}

/// Rewrites `user`'s state file as root would (mode and owner kept).
fn edit_state(env: &PamEnv, user: &str, f: impl FnOnce(&mut UserState)) {
    let path = state_path(env, user);
    let mut state =
        UserState::parse(&std::fs::read_to_string(&path).expect("state")).expect("parse");
    f(&mut state);
    write_file(&path, &state.to_text(), 0o600);
}

fn cli(env: &PamEnv, args: &[&str]) -> (bool, String) {
    let out = Command::new(cli_harness::bin())
        .arg("--config")
        .arg(&env.config)
        .args(args)
        .output()
        .expect("pam-gateway");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_second_login_from_the_same_host_and_service_skips_the_code() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_remembered(&run, &fake, 1);
    assert!(
        run.log.contains(&format!(
            "rhost={HOME} tty=- gateway=telegram result=remembered reason=\"code skipped: \
             {HOME} through pgw proved the second factor (telegram) at "
        )) && run.log.contains("; remembered until "),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("successfully authenticated"),
        "{}",
        run.dump()
    );
    // The state file keeps its mode; the source is in it.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(state_path(&env, "alice")).expect("state");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let state =
        UserState::parse(&std::fs::read_to_string(state_path(&env, "alice")).expect("read"))
            .expect("parse");
    assert_eq!(state.remembered.len(), 1);
    assert_eq!(state.remembered[0].rhost, HOME);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn another_host_service_or_user_or_no_host_is_asked() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    let mut sent = 1;
    for (service, user, rhost) in [
        ("pgw", "alice", Some("203.0.113.8")),
        ("pgw2", "alice", Some(HOME)),
        ("pgw3", "alice", Some(HOME)),
        ("pgw", "bob", Some(HOME)),
        ("pgw", "alice", None),
        ("pgw", "alice", Some("")),
    ] {
        let run = login(&env, service, user, rhost, Answers::Eof, Some(&fake));
        assert_asked(&run, &fake, sent);
        sent += 1;
    }
    // None of that ended the source: the same host still skips the code.
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_remembered(&run, &fake, sent);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn expired_or_future_dated_or_locked_out_is_asked() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    let since =
        UserState::parse(&std::fs::read_to_string(state_path(&env, "alice")).expect("read"))
            .expect("parse")
            .remembered[0]
            .since;
    // Ran out: the login was 601 s ago.
    edit_state(&env, "alice", |s| s.remembered[0].since = since - 601);
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 1);
    // 590 s ago: still in force (a few seconds of slack for this test).
    edit_state(&env, "alice", |s| s.remembered[0].since = since - 590);
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_remembered(&run, &fake, 2);
    // The clock went back an hour after it was recorded.
    edit_state(&env, "alice", |s| s.remembered[0].since = since + 3600);
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 2);
    // A lockout in force (someone else's wrong codes, say): never.
    edit_state(&env, "alice", |s| {
        s.remembered[0].since = since;
        s.locked_until = Some(since + 3600);
    });
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert!(
        run.log.contains("result=denied-locked-out"),
        "{}",
        run.dump()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_wrong_code_ends_it() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    // A wrong code from elsewhere, then the right one.
    let run = login(
        &env,
        "pgw",
        "alice",
        Some("192.0.2.66"),
        Answers::LinesThenCode(vec!["000000".into()], WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 2);
    // The host that typed the right code last is remembered.
    let run = login(
        &env,
        "pgw",
        "alice",
        Some("192.0.2.66"),
        Answers::Eof,
        Some(&fake),
    );
    assert_remembered(&run, &fake, 3);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn forget_and_unlock_end_it() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    let (ok, out) = cli(&env, &["users"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("REMEMBERED ([remember] duration = 600 s")
            && out.contains(&format!("alice  {HOME} through pgw: verified at "))
            && out.contains(" UTC (telegram), until "),
        "{out}"
    );
    let (ok, out) = cli(&env, &["forget", "alice"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Forgot 1 remembered source of alice:") && out.contains(HOME),
        "{out}"
    );
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 1);
    let (ok, out) = cli(&env, &["forget", "alice"]);
    assert!(ok && out.contains("Nothing to forget"), "{out}");
    let (ok, out) = cli(&env, &["forget", "no-such-user-pgw"]);
    assert!(!ok && out.contains("check the spelling"), "{out}");

    verify(&env, &fake);
    let (ok, out) = cli(&env, &["unlock", "alice"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 remembered source"), "{out}");
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 3);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn control_characters_in_the_remote_host_are_never_remembered() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    let odd = "203.0.113.7\nuser=root result=success";
    let run = login(
        &env,
        "pgw",
        "alice",
        Some(odd),
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    // Logged escaped, on one line.
    assert!(
        run.log
            .contains("rhost=\"203.0.113.7\\nuser=root result=success\""),
        "{}",
        run.dump()
    );
    let run = login(&env, "pgw", "alice", Some(odd), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 1);
    let state = std::fs::read_to_string(state_path(&env, "alice")).expect("state");
    assert!(!state.contains("remembered"), "{state}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_corrupt_state_file_denies_as_before() {
    let fake = fake();
    let env = env(&fake, REMEMBER);
    verify(&env, &fake);
    let path = state_path(&env, "alice");
    let text = std::fs::read_to_string(&path).expect("state");
    write_file(
        &path,
        &text.replace("\"remembered\"", "\"remembred\""),
        0o600,
    );
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(
        run.log.contains("result=denied-state-error"),
        "{}",
        run.dump()
    );
    assert!(!run.log.contains("result=remembered"), "{}", run.dump());
    assert_eq!(fake.sent().len(), 1, "nothing sent");
    assert!(Path::new(&path).exists());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn without_the_section_nothing_is_remembered_or_stored() {
    let fake = fake();
    let env = env(&fake, "");
    verify(&env, &fake);
    let run = login(&env, "pgw", "alice", Some(HOME), Answers::Eof, Some(&fake));
    assert_asked(&run, &fake, 1);
    let state = std::fs::read_to_string(state_path(&env, "alice")).expect("state");
    assert!(
        !state.contains("remembered") && !state.contains("recent_logins"),
        "{state}"
    );
}
