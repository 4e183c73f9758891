//! A console login end to end: Debian's `login` on a pseudo-terminal
//! (test-support/src/pty.rs) in a private mount namespace
//! (test-support/src/sandbox.rs) whose /etc/pam.d/login is the repo's
//! `pam.d/login`. The test types like a person: user name, password, the
//! code the fake received, then a command in the shell.

use pgw_test_support::fake_telegram;
use pgw_test_support::pty;
use pgw_test_support::sandbox;

use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram, find_code};
use pty::PtyChild;
use sandbox::{ALICE, PASSWORD, Sandbox};

const WAIT: Duration = Duration::from_secs(20);
const CODE_PROMPT: &str = "Code sent via Telegram to ***977. Verification code: ";

fn start() -> (FakeTelegram, Sandbox, PtyChild) {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let sandbox = Sandbox::new(&fake.url(), "");
    sandbox.install_service("login", "login");
    let mut cmd = sandbox.command("/bin/login");
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TERM", "dumb")
        .env("LANG", "C");
    let console = PtyChild::spawn(cmd);
    (fake, sandbox, console)
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn prompts_come_in_order_and_the_right_code_logs_in() {
    let (fake, sandbox, mut console) = start();
    console.expect("login: ", WAIT);
    console.send_line(ALICE);
    console.expect("Password: ", WAIT);
    console.send_line(PASSWORD);
    let between = console.expect(CODE_PROMPT, WAIT);
    assert_eq!(
        between.trim(),
        "",
        "nothing else asked between password and code"
    );
    let msg = fake.wait_for_message(WAIT).expect("a code");
    let code = find_code(&msg.text).expect("code");
    console.send_line(&code);
    // login flushes type-ahead: wait for the shell's prompt.
    console.expect("$ ", WAIT);
    // The shell computes 42: the typed line echoes as "$((6*7))".
    console.send_line("echo pgw-console-$((6*7)) $(id -un)");
    console.expect(&format!("pgw-console-42 {ALICE}"), WAIT);
    console.send_line("exit");
    let status = console.wait(WAIT);
    let transcript = console.transcript();
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(
        !transcript.contains(&code),
        "the code was echoed on the terminal:\n{transcript}"
    );
    assert!(
        msg.text.contains(&format!("for {ALICE}@")) && msg.text.contains("(login from local)"),
        "{}",
        msg.text
    );
    let log = sandbox.log();
    assert!(
        log.contains(&format!("user={ALICE} service=login")) && log.contains("result=success"),
        "{log}"
    );
    assert!(!log.contains(&code), "code in syslog: {log}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_codes_are_refused_and_no_shell_starts() {
    let (fake, sandbox, mut console) = start();
    console.expect("login: ", WAIT);
    console.send_line(ALICE);
    console.expect("Password: ", WAIT);
    console.send_line(PASSWORD);
    console.expect(CODE_PROMPT, WAIT);
    let code = find_code(&fake.wait_for_message(WAIT).expect("a code").text).expect("code");
    let wrong: String = code
        .chars()
        .map(|c| if c == '5' { '6' } else { '5' })
        .collect();
    for left in [
        "Wrong code. 2 attempts left.",
        "Wrong code. 1 attempt left.",
    ] {
        console.send_line(&wrong);
        console.expect(left, WAIT);
        console.expect(CODE_PROMPT, WAIT);
    }
    console.send_line(&wrong);
    // PAM_MAXTRIES: login gives up at once instead of asking again.
    console.expect("Maximum number of tries exceeded", WAIT);
    // (Debian's login then exits with status 0: the status proves nothing.)
    console.wait(WAIT);
    let transcript = console.transcript();
    assert!(!transcript.contains("$ "), "a shell started:\n{transcript}");
    assert_eq!(fake.sent().len(), 1);
    let log = sandbox.log();
    assert!(log.contains("result=denied-max-tries"), "{log}");
}
