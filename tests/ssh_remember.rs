//! `[remember]` and `[alert]` with OpenSSH: Debian's sshd on 127.0.0.1 in a
//! private namespace (test-support/src/sandbox.rs), the real `ssh` client
//! (test-support/src/ssh.rs), codes and alerts through the loopback fake Bot
//! API. A second address is 127.0.0.2 (`BindAddress`): loopback only.

use pgw_test_support::fake_telegram;
use pgw_test_support::sandbox;
use pgw_test_support::ssh;

use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram, SentMessage, find_code};
use sandbox::{ALICE, PASSWORD, Sandbox};
use ssh::{Recipe, SshResult, Sshd};

const WAIT: Duration = Duration::from_secs(20);
const COMMAND: &str = "echo pgw-ssh-ok-$((6*7)) $(id -un)";
const REMEMBER: &str = "[remember]\nduration = 600\n";
/// ssh from the second loopback address.
const FROM_OTHER: &str = "BindAddress=127.0.0.2";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

fn next_message(fake: &FakeTelegram) -> SentMessage {
    fake.wait_for_message(WAIT)
        .expect("the fake received no message in time")
}

fn assert_logged_in(r: &SshResult, sshd: &Sshd, sandbox: &Sandbox) {
    assert!(
        r.status.success() && r.stdout.contains(&format!("pgw-ssh-ok-42 {ALICE}")),
        "login failed\n{}\n--- sshd\n{}\n--- syslog\n{}",
        r.dump(),
        sshd.log(),
        sandbox.log()
    );
}

/// A login with the key that is asked for a code and types it.
fn key_and_code(sshd: &Sshd, sandbox: &Sandbox, fake: &FakeTelegram, extra: &[&str]) {
    let mut login = sshd.login(ALICE, extra, COMMAND);
    login.expect_prompt("Verification code:", WAIT);
    let code = find_code(&next_message(fake).text).expect("a code");
    login.answer(&code);
    let r = login.finish(WAIT);
    assert_logged_in(&r, sshd, sandbox);
    assert_eq!(r.prompts.len(), 1, "{}", r.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn second_ssh_from_the_same_address_skips_the_code_another_address_is_asked() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), REMEMBER);
    let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
    key_and_code(&sshd, &sandbox, &fake, &[]);

    // Within the window, from 127.0.0.1 again: the key alone, no prompt.
    let r = sshd.login(ALICE, &[], COMMAND).finish(WAIT);
    assert_logged_in(&r, &sshd, &sandbox);
    assert!(r.prompts.is_empty(), "asked: {}", r.dump());
    assert_eq!(fake.sent().len(), 1, "a second code was sent");
    let log = sandbox.log();
    assert!(
        log.contains(&format!(
            "user={ALICE} service=sshd rhost=127.0.0.1 tty=ssh gateway=telegram result=remembered \
             reason=\"code skipped: 127.0.0.1 through sshd proved the second factor (telegram) at "
        )),
        "{log}"
    );
    assert!(
        sshd.log()
            .contains(&format!("Accepted keyboard-interactive/pam for {ALICE}")),
        "{}",
        sshd.log()
    );

    // From 127.0.0.2: asked.
    key_and_code(&sshd, &sandbox, &fake, &[FROM_OTHER]);
    assert!(
        sandbox.log().contains(&format!(
            "user={ALICE} service=sshd rhost=127.0.0.2 tty=ssh gateway=telegram result=success"
        )),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn with_a_password_the_password_is_still_asked_only_the_code_is_skipped() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), REMEMBER);
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    login.expect_prompt("Verification code:", WAIT);
    login.answer(&find_code(&next_message(&fake).text).expect("code"));
    assert_logged_in(&login.finish(WAIT), &sshd, &sandbox);

    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    let r = login.finish(WAIT);
    assert_logged_in(&r, &sshd, &sandbox);
    assert_eq!(r.prompts.len(), 1, "{}", r.dump());
    assert_eq!(fake.sent().len(), 1);

    // A wrong password from the remembered address: pam_unix stops the
    // stack before pam_gateway (common-auth's requisite pam_deny).
    let mut login = sshd.login(ALICE, &["NumberOfPasswordPrompts=1"], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer("wrong-horse");
    let r = login.finish(WAIT);
    assert!(!r.status.success(), "{}", r.dump());
    assert!(!r.stdout.contains("pgw-ssh-ok"), "{}", r.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sshd_notify_alerts_on_a_key_only_login() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "[alert]\n");
    let sshd = Sshd::start(&sandbox, Recipe::KeyOnlyNotify);
    let r = sshd.login(ALICE, &[], COMMAND).finish(WAIT);
    assert_logged_in(&r, &sshd, &sandbox);
    assert!(r.prompts.is_empty(), "{}", r.dump());
    let msg = next_message(&fake);
    assert!(
        msg.text.starts_with(&format!("Login: {ALICE}@"))
            && msg.text.contains(" from 127.0.0.1 (sshd) at ")
            && msg.text.contains(
                "no second factor by pam_gateway (public key only, or not through pam_gateway)"
            ),
        "{}",
        msg.text
    );
    assert!(
        sandbox.log().contains(&format!(
            "user={ALICE} service=sshd rhost=127.0.0.1 alert=sent how=none"
        )),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_session_alert_knows_how_the_sshd_auth_child_let_the_user_in() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), &format!("{REMEMBER}[alert]\n"));
    let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
    // pam.d/sshd-publickey with the session line of pam.d/sshd-notify.
    let stack = format!(
        "{}\nsession    optional     pam_gateway.so\n",
        sandbox::repo_file("pam.d/sshd-publickey")
    );
    pgw_test_support::pam_harness::write_file(&sandbox.path().join("pam.d/sshd"), &stack, 0o644);
    key_and_code(&sshd, &sandbox, &fake, &[]);
    let msg = next_message(&fake);
    assert!(
        msg.text.contains(" from 127.0.0.1 (sshd) at ")
            && msg.text.contains("with a code sent via Telegram."),
        "{}",
        msg.text
    );
    let r = sshd.login(ALICE, &[], COMMAND).finish(WAIT);
    assert_logged_in(&r, &sshd, &sandbox);
    let msg = next_message(&fake);
    assert!(
        msg.text
            .contains("without a code: this address proved a code (telegram) at "),
        "{}",
        msg.text
    );
}
