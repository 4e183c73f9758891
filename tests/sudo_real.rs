//! sudo end to end: Debian's sudo, run by an unprivileged test user in a
//! private mount namespace (test-support/src/sandbox.rs) whose
//! /etc/pam.d/sudo is the repo's `pam.d/sudo`. `sudo -S` reads the password
//! and the code from stdin and prints its prompts on stderr; the test types
//! each answer only once its prompt is there.

use pgw_test_support::fake_telegram;
use pgw_test_support::sandbox;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, find_code};
use sandbox::{ALICE, PASSWORD, Sandbox};

const WAIT: Duration = Duration::from_secs(20);
const PASSWORD_PROMPT: &str = "[sudo] password for pgwalice: ";
const CODE_PROMPT: &str = "Code sent via Telegram to ***977. Verification code: ";

/// `sudo -S` as ALICE, running a command that leaves a mark if it runs.
struct Sudo {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// Seen up to here by `wait_for`.
    seen: usize,
}

impl Sudo {
    fn start(sandbox: &Sandbox) -> Sudo {
        let mark = sandbox.path().join("out/ran");
        let mut child = sandbox.spawn_sudo_as_alice(&mark);
        let stdin = child.stdin.take();
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Sudo {
            child,
            stdin,
            stderr,
            reader: Some(reader),
            seen: 0,
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `text` appears after what was seen before.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let all = self.stderr();
            if let Some(i) = all[self.seen..].find(text) {
                self.seen += i + text.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} from sudo; stderr so far:\n{all}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to sudo");
    }

    /// Closes stdin and waits for sudo to exit.
    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "sudo did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr())
    }
}

impl Drop for Sudo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> (FakeTelegram, Sandbox) {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let sandbox = Sandbox::new(&fake.url(), "");
    sandbox.install_service("sudo", "sudo");
    (fake, sandbox)
}

fn command_ran(sandbox: &Sandbox) -> Option<String> {
    std::fs::read_to_string(sandbox.path().join("out/ran")).ok()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn password_then_code_runs_the_command_as_root() {
    let (fake, sandbox) = setup();
    let mut sudo = Sudo::start(&sandbox);
    sudo.wait_for(PASSWORD_PROMPT);
    sudo.type_line(PASSWORD);
    sudo.wait_for(CODE_PROMPT);
    let msg = fake.wait_for_message(WAIT).expect("a code");
    let code = find_code(&msg.text).expect("code");
    sudo.type_line(&code);
    let (status, stderr) = sudo.finish();
    let log = sandbox.log();
    assert!(status.success(), "{status:?}\n{stderr}\n--- syslog\n{log}");
    assert_eq!(command_ran(&sandbox).as_deref(), Some("0\n"), "{stderr}");
    assert!(
        msg.text.contains(&format!("for {ALICE}@")) && msg.text.contains("(sudo from local)"),
        "{}",
        msg.text
    );
    assert!(
        log.contains(&format!("user={ALICE} service=sudo")) && log.contains("result=success"),
        "{log}"
    );
    assert!(
        !log.contains(&code) && !stderr.contains(&code),
        "code leaked"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_code_refuses_and_the_command_does_not_run() {
    let (fake, sandbox) = setup();
    let mut sudo = Sudo::start(&sandbox);
    sudo.wait_for(PASSWORD_PROMPT);
    sudo.type_line(PASSWORD);
    sudo.wait_for(CODE_PROMPT);
    let code = find_code(&fake.wait_for_message(WAIT).expect("a code").text).expect("code");
    let wrong: String = code
        .chars()
        .map(|c| if c == '9' { '0' } else { '9' })
        .collect();
    for left in [
        "Wrong code. 2 attempts left.",
        "Wrong code. 1 attempt left.",
    ] {
        sudo.type_line(&wrong);
        sudo.wait_for(left);
        sudo.wait_for(CODE_PROMPT);
    }
    sudo.type_line(&wrong);
    // sudo counts it as a failed try and starts over with the password.
    sudo.wait_for("Sorry, try again.");
    sudo.wait_for(PASSWORD_PROMPT);
    let (status, stderr) = sudo.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(command_ran(&sandbox), None, "the command ran\n{stderr}");
    assert_eq!(fake.sent().len(), 1);
    let log = sandbox.log();
    assert!(log.contains("result=denied-max-tries"), "{log}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_password_sends_no_code_and_the_command_does_not_run() {
    let (fake, sandbox) = setup();
    let mut sudo = Sudo::start(&sandbox);
    sudo.wait_for(PASSWORD_PROMPT);
    sudo.type_line("not-the-password");
    sudo.wait_for("Sorry, try again.");
    sudo.wait_for(PASSWORD_PROMPT);
    let (status, stderr) = sudo.finish();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("Verification code"), "{stderr}");
    assert_eq!(command_ran(&sandbox), None);
    assert!(fake.sent().is_empty());
}
