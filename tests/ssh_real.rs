//! OpenSSH end to end: Debian's sshd on 127.0.0.1 with the repo's
//! `pam.d/sshd` (or `pam.d/sshd-publickey`) and `sshd_config.d/*.conf`,
//! each sshd in a private mount namespace (test-support/src/sandbox.rs), and
//! OpenSSH's `ssh` answering keyboard-interactive prompts through askpass
//! (test-support/src/ssh.rs says why). Codes come from the loopback fake Bot API.

use pgw_test_support::fake_telegram;
use pgw_test_support::sandbox;
use pgw_test_support::ssh;

use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram, find_code};
use sandbox::{ALICE, BOB, PASSWORD, Sandbox, closed_port_url};
use ssh::{Recipe, SshResult, Sshd};

/// Bound on every wait for a prompt, a message or an exit.
const WAIT: Duration = Duration::from_secs(20);
/// The remote command: the shell computes 42, so seeing it proves the
/// session ran (ssh does not echo the command back).
const COMMAND: &str = "echo pgw-ssh-ok-$((6*7)) $(id -un)";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

fn next_code(fake: &FakeTelegram) -> String {
    let msg = fake
        .wait_for_message(WAIT)
        .expect("the fake received no code in time");
    find_code(&msg.text).expect("a code in the message")
}

fn assert_logged_in(r: &SshResult, user: &str, sshd: &Sshd, sandbox: &Sandbox) {
    assert!(
        r.status.success() && r.stdout.contains(&format!("pgw-ssh-ok-42 {user}")),
        "login failed\n{}\n--- sshd\n{}\n--- syslog\n{}",
        r.dump(),
        sshd.log(),
        sandbox.log()
    );
}

fn assert_refused(r: &SshResult, sshd: &Sshd, sandbox: &Sandbox) {
    assert!(
        r.status.code() == Some(255)
            && r.stderr.contains("Permission denied")
            && !r.stdout.contains("pgw-ssh-ok"),
        "expected a refusal\n{}\n--- sshd\n{}\n--- syslog\n{}",
        r.dump(),
        sshd.log(),
        sandbox.log()
    );
}

fn count(prompts: &[String], needle: &str) -> usize {
    prompts.iter().filter(|p| p.contains(needle)).count()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn password_then_code_both_through_keyboard_interactive() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    let p = login.expect_prompt("Password:", WAIT);
    assert_eq!(p, format!("({ALICE}@127.0.0.1) Password: "));
    login.answer(PASSWORD);
    let p = login.expect_prompt("Verification code:", WAIT);
    assert_eq!(
        p,
        format!("({ALICE}@127.0.0.1) Code sent via Telegram to ***977. Verification code: ")
    );
    let code = next_code(&fake);
    login.answer(&code);
    let r = login.finish(WAIT);
    assert_logged_in(&r, ALICE, &sshd, &sandbox);
    assert_eq!(r.prompts.len(), 2, "{}", r.dump());

    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].text.contains(&format!("for {ALICE}@")),
        "{}",
        sent[0].text
    );
    assert!(
        sent[0].text.contains("(sshd from 127.0.0.1)"),
        "service and remote host named: {}",
        sent[0].text
    );
    assert!(
        sshd.log()
            .contains(&format!("Accepted keyboard-interactive/pam for {ALICE}")),
        "{}",
        sshd.log()
    );
    let log = sandbox.log();
    assert!(
        log.contains(&format!(
            "user={ALICE} service=sshd rhost=127.0.0.1 tty=ssh gateway=telegram result=success"
        )),
        "{log}"
    );
    assert!(!log.contains(&code), "code in syslog: {log}");
    assert!(!sshd.log().contains(&code), "code in sshd's log");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn key_then_code_asks_no_password() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "");
    let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Code sent via Telegram to ***977. Verification code:", WAIT);
    login.answer(&next_code(&fake));
    let r = login.finish(WAIT);
    assert_logged_in(&r, ALICE, &sshd, &sandbox);
    assert_eq!(count(&r.prompts, "Password"), 0, "{}", r.dump());
    assert_eq!(r.prompts.len(), 1, "{}", r.dump());
    assert!(
        sshd.log()
            .contains(&format!("Accepted keyboard-interactive/pam for {ALICE}")),
        "{}",
        sshd.log()
    );
    assert_eq!(fake.sent().len(), 1);

    // Without the key, no PAM round starts: nothing asked, nothing sent.
    let r = sshd
        .login(ALICE, &["PubkeyAuthentication=no"], COMMAND)
        .finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert!(
        r.stderr.contains("Permission denied (publickey)"),
        "{}",
        r.dump()
    );
    assert!(r.prompts.is_empty(), "{}", r.dump());
    assert_eq!(fake.sent().len(), 1);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn key_alone_is_not_enough() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "[code]\nattempts = 1\n");
    let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Verification code:", WAIT);
    let code = next_code(&fake);
    login.answer(&wrong(&code));
    let r = login.finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert!(
        sandbox.log().contains("result=denied-max-tries"),
        "{}",
        sandbox.log()
    );
}

/// A code that is surely not `code`.
fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_codes_use_up_the_attempts_then_the_connection_is_refused() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    // The client keeps its default NumberOfPasswordPrompts (3): it would
    // try keyboard-interactive again; the server must not let it.
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    login.expect_prompt("Verification code:", WAIT);
    let code = next_code(&fake);
    login.answer(&wrong(&code));
    let p = login.expect_prompt("Verification code:", WAIT);
    assert!(p.contains("Wrong code. 2 attempts left.\n"), "{p:?}");
    login.answer(&wrong(&code));
    let p = login.expect_prompt("Verification code:", WAIT);
    assert!(p.contains("Wrong code. 1 attempt left.\n"), "{p:?}");
    login.answer(&wrong(&code));
    // PAM_MAXTRIES: sshd turns keyboard-interactive off for this
    // connection, so no new round (no second "Password:") is offered.
    let next = login.next_prompt(WAIT);
    assert_eq!(next, None, "a new round was offered");
    let r = login.finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert_eq!(count(&r.prompts, "Password:"), 1, "{}", r.dump());
    assert_eq!(fake.sent().len(), 1, "one code per login");
    assert!(
        sshd.log()
            .contains("Have exhausted maximum number of retries for service"),
        "{}",
        sshd.log()
    );
    assert!(
        sandbox.log().contains("result=denied-max-tries"),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_password_sends_no_code() {
    let fake = fake();
    let sandbox = Sandbox::new(&fake.url(), "");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    // One round is enough to see it; the client stops after it.
    let mut login = sshd.login(ALICE, &["NumberOfPasswordPrompts=1"], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer("not-the-password");
    assert_eq!(login.next_prompt(WAIT), None);
    let r = login.finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert!(
        fake.sent().is_empty(),
        "a code was sent without the password"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_down_secure_refuses_after_the_password() {
    let sandbox = Sandbox::new(&closed_port_url(), "[policy]\nfailmode = \"secure\"\n");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(ALICE, &["NumberOfPasswordPrompts=1"], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    assert_eq!(
        login.next_prompt(WAIT),
        None,
        "no code prompt without a code"
    );
    let r = login.finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert!(
        sandbox.log().contains("result=denied-delivery-failed"),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_down_safe_lets_the_password_through() {
    let sandbox = Sandbox::new(&closed_port_url(), "[policy]\nfailmode = \"safe\"\n");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    let r = login.finish(WAIT);
    assert_logged_in(&r, ALICE, &sshd, &sandbox);
    assert_eq!(r.prompts.len(), 1, "only the password: {}", r.dump());
    assert!(
        sandbox.log().contains("result=ignored-delivery-failed"),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_down_with_a_key_secure_refuses_safe_lets_the_key_through() {
    for (failmode, lets_in) in [("secure", false), ("safe", true)] {
        let sandbox = Sandbox::new(
            &closed_port_url(),
            &format!("[policy]\nfailmode = \"{failmode}\"\n"),
        );
        let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
        let r = sshd
            .login(ALICE, &["NumberOfPasswordPrompts=1"], COMMAND)
            .finish(WAIT);
        assert!(r.prompts.is_empty(), "{failmode}: {}", r.dump());
        if lets_in {
            assert_logged_in(&r, ALICE, &sshd, &sandbox);
        } else {
            assert_refused(&r, &sshd, &sandbox);
        }
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unenrolled_deny_prompts_sends_nothing_and_refuses() {
    let fake = fake();
    let sandbox = Sandbox::new(
        &fake.url(),
        "[policy]\nunenrolled = \"deny\"\n[code]\nattempts = 2\n",
    );
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(BOB, &["NumberOfPasswordPrompts=1"], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    login.expect_prompt("Verification code:", WAIT);
    login.answer("123456");
    login.expect_prompt("Verification code:", WAIT);
    login.answer("654321");
    assert_eq!(login.next_prompt(WAIT), None);
    let r = login.finish(WAIT);
    assert_refused(&r, &sshd, &sandbox);
    assert!(fake.sent().is_empty(), "sent to an unenrolled user");
    assert!(
        sandbox.log().contains("result=denied-not-enrolled"),
        "{}",
        sandbox.log()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unenrolled_ignore_leaves_it_to_the_rest_of_the_stack() {
    let fake = fake();
    let config = "[policy]\nunenrolled = \"ignore\"\n";

    // Password recipe: common-auth decides, the password alone logs in.
    let sandbox = Sandbox::new(&fake.url(), config);
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);
    let mut login = sshd.login(BOB, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    let r = login.finish(WAIT);
    assert_logged_in(&r, BOB, &sshd, &sandbox);
    assert_eq!(r.prompts.len(), 1, "{}", r.dump());
    assert!(
        sandbox.log().contains("result=ignored-not-enrolled"),
        "{}",
        sandbox.log()
    );
    // The enrolled user is still asked for her code.
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    login.expect_prompt("Verification code:", WAIT);
    login.answer(&next_code(&fake));
    assert_logged_in(&login.finish(WAIT), ALICE, &sshd, &sandbox);
    assert_eq!(fake.sent().len(), 1);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unenrolled_with_a_key_deny_refuses_ignore_lets_the_key_through() {
    let fake = fake();
    for (policy, lets_in) in [("deny", false), ("ignore", true)] {
        let sandbox = Sandbox::new(
            &fake.url(),
            &format!("[policy]\nunenrolled = \"{policy}\"\n[code]\nattempts = 1\n"),
        );
        let sshd = Sshd::start(&sandbox, Recipe::KeyAndCode);
        let mut login = sshd.login(BOB, &["NumberOfPasswordPrompts=1"], COMMAND);
        if lets_in {
            let r = login.finish(WAIT);
            assert!(r.prompts.is_empty(), "{}", r.dump());
            assert_logged_in(&r, BOB, &sshd, &sandbox);
        } else {
            // Asked like an enrolled user, but no code can be right.
            login.expect_prompt("Verification code:", WAIT);
            login.answer("123456");
            let r = login.finish(WAIT);
            assert_refused(&r, &sshd, &sandbox);
        }
    }
    assert!(fake.sent().is_empty(), "sent to an unenrolled user");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn two_logins_at_once_each_code_only_for_its_own_session() {
    let fake = fake();
    // 8 digits: two codes colliding by chance is out of the picture.
    let sandbox = Sandbox::new(&fake.url(), "[code]\ndigits = 8\n");
    let sshd = Sshd::start(&sandbox, Recipe::PasswordAndCode);

    let mut a = sshd.login(ALICE, &[], COMMAND);
    a.expect_prompt("Password:", WAIT);
    a.answer(PASSWORD);
    a.expect_prompt("Verification code:", WAIT);
    let code_a = next_code(&fake);

    let mut b = sshd.login(ALICE, &[], COMMAND);
    b.expect_prompt("Password:", WAIT);
    b.answer(PASSWORD);
    b.expect_prompt("Verification code:", WAIT);
    let code_b = next_code(&fake);
    assert_ne!(code_a, code_b);

    // Both sessions wait at their code prompt; each gets the other's code.
    a.answer(&code_b);
    b.answer(&code_a);
    let p = a.expect_prompt("Verification code:", WAIT);
    assert!(p.contains("Wrong code. 2 attempts left."), "{p:?}");
    let p = b.expect_prompt("Verification code:", WAIT);
    assert!(p.contains("Wrong code. 2 attempts left."), "{p:?}");
    a.answer(&code_a);
    b.answer(&code_b);
    let ra = a.finish(WAIT);
    let rb = b.finish(WAIT);
    assert_logged_in(&ra, ALICE, &sshd, &sandbox);
    assert_logged_in(&rb, ALICE, &sshd, &sandbox);
    assert_eq!(fake.sent().len(), 2);
    assert_eq!(
        sshd.log()
            .matches(&format!("Accepted keyboard-interactive/pam for {ALICE}"))
            .count(),
        2,
        "{}",
        sshd.log()
    );
}

#[test]
fn readme_quotes_the_tested_sshd_config_lines() {
    let readme = sandbox::repo_file("README.md");
    for recipe in [Recipe::PasswordAndCode, Recipe::KeyAndCode] {
        let lines: Vec<String> = ssh::recipe_text(recipe)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let block = lines.join("\n");
        assert!(
            readme.contains(&block),
            "README.md does not quote {}'s lines:\n{block}",
            recipe.sshd_conf()
        );
    }
}
