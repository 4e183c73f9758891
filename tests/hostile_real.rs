//! The caller is an attacker too (DESIGN.md): Debian's setuid `su` and
//! `sudo`, started by the unprivileged test user pgwalice (`setpriv
//! --reuid/--regid/--init-groups`) inside the sandbox of
//! test-support/src/sandbox.rs, with the module cargo built. The caller knows
//! the password (root's is the test password here) and lacks the phone. It
//! controls how su/sudo start (rlimits, ignored signals) and may signal and
//! read through /proc any process that keeps its uid. Each attack must end
//! without root: the command su/sudo would run leaves a mark file, and no
//! mark may appear. Each login must also end in bounded time, and the code
//! (what the fake received) must never reach the captured syslog.
//!
//! Threat model, one group of tests per way in (each with a control: the
//! same setup with the right code typed gets root, so a denial is not a
//! broken setup):
//!
//! 1. `sigstop_*`: `failmode = "safe"`. The caller stops su/sudo with
//!    SIGSTOP while the send is in flight (the fake holds the request),
//!    waits past the timeout and sends SIGCONT: from inside, a stopped
//!    process looks like an unreachable gateway, and safe mode would skip
//!    the code. A send whose fate is unknown must deny when the real uid is
//!    not 0, within `timeout` + 1 s of SIGCONT.
//! 2. `rlimit_*`: `failmode = "safe"`. The caller starts su with tight
//!    RLIMIT_NOFILE, RLIMIT_AS or RLIMIT_FSIZE (SIGXFSZ ignored): a local
//!    failure (EMFILE, ENOMEM, a thread that will not spawn) is not "the
//!    gateway is unreachable". Never root, never PAM_IGNORE.
//! 3. `command_child_*`: the command gateway's child inherits su's real
//!    uid today, and bash drops to it: the caller reads the message (the
//!    code) through /proc/PID/fd/0 of the script or its children, sees the
//!    recipient in /proc/PID/cmdline and may signal it. The child must run
//!    with all ids 0, in its own session, the recipient in its environment.
//! 4. `trickled_*`: `failmode = "secure"`. A service (or someone on the
//!    path) that answers one byte every 0.5 s, in the body or already in
//!    the headers, must not hold the login past its whole-exchange
//!    deadline: denied within `timeout` + 1 s.
//! 5. `echoing_webhook_*`: a webhook that answers 400/500 with the request
//!    (and so the code) echoed in its body, then Telegram delivers: the
//!    code must not reach syslog through the webhook's error text.
//! 6. `flood_*`: `codes_per_window = 2`; five logins each stopped while
//!    their send is in flight. A send whose fate is unknown counts as sent:
//!    the fake may receive at most 2 sendMessage requests.
//! 7. `odd_spelling_*`: `unenrolled = "ignore"`; `PGWALICE` (and
//!    `pgwalice `) is not an account, but would be "not enrolled" and so
//!    ignored. Names NSS does not know must be denied
//!    (`result=denied-unknown-user`). Through pamtester (su refuses
//!    unknown users itself) with `pam_permit` standing in for the password.
//! 8. `control_characters_*`: PAM items (rhost, tty, ruser) carrying
//!    `\r`, `\n`, ESC and a forged ` result=success`: the message has no
//!    control character from them, syslog has exactly one result line, and
//!    the forged field is inside a quoted value, not a field of its own.
//!
//! Every test has its own fake(s) and sandbox; attacker steps (signals,
//! /proc reads) run on the host as pgwalice's uid and gid (`setpriv
//! --clear-groups`), addressing su/sudo and the gateway's child by their
//! host PIDs, found by walking /proc below the sandbox's `unshare`.
//!
//! The time bounds are the module's: pam_unix runs with `nodelay` and su
//! with `FAIL_DELAY 0` (both would otherwise add their own pause after a
//! failure). The sandbox's /dev/log is a unix datagram socket with a short
//! queue: tests that run many logins drain it (`Sandbox::log`) between
//! them, or the next syslog() call blocks.

use pgw_test_support::fake_http;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;
use pgw_test_support::sandbox;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_http::{Answer as HttpAnswer, FakeHttp, Reply};
use fake_telegram::{FakeOptions, FakeTelegram, Mode, find_code};
use pam_harness::{CHAT, TOKEN, write_file};
use sandbox::{ALICE, ALICE_UID, PASSWORD, Sandbox};

/// `timeout` of the gateways in these tests, in seconds.
const TIMEOUT: u64 = 2;
/// Longest any single wait of these tests (a prompt, an exit) may take.
const WAIT: Duration = Duration::from_secs(15);
/// How long the caller keeps su/sudo stopped: past the timeout.
const STOPPED: Duration = Duration::from_secs(TIMEOUT + 1);
const SU_PASSWORD_PROMPT: &str = "Password: ";
const SUDO_PASSWORD_PROMPT: &str = "[sudo] password for pgwalice: ";
const TELEGRAM_PROMPT: &str = "Code sent via Telegram to ***977. Verification code: ";
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The command gateway's recipient (a phone number, as for gammu).
const PHONE: &str = "+4915112345678";

// ------------------------------------------------------------ setup ----

/// `[telegram]` pointing at `url`.
fn telegram_section(url: &str, timeout: u64) -> String {
    format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{url}\"\n\
         timeout = {timeout}\nconnect_timeout = 1\n"
    )
}

/// Replaces the sandbox's gateway.toml (top-level keys must come before
/// any table, which `Sandbox::new`'s `extra` cannot do).
fn write_config(sb: &Sandbox, text: &str) {
    write_file(&sb.stage_etc("pam_gateway/gateway.toml"), text, 0o600);
}

fn write_users(sb: &Sandbox, text: &str) {
    write_file(&sb.stage_etc("pam_gateway/users.toml"), text, 0o644);
}

/// pamtester's service: the password is assumed known (pam_permit).
const PERMIT_STACK: &str = "# written by tests/hostile_real.rs\n\
auth       required   pam_permit.so\n\
auth       required   pam_gateway.so\n\
account    required   pam_permit.so\n";

/// A sandbox for `su` to root (`Sandbox::install_su_to_root`: the su
/// service this suite attacks, root's password is the test password, and
/// both root and pgwalice are enrolled at the fake's chat), `config` as its
/// gateway.toml.
fn su_sandbox(config: &str) -> Sandbox {
    let sb = Sandbox::new("http://127.0.0.1:9", "");
    write_config(&sb, config);
    sb.install_su_to_root();
    sb
}

/// A sandbox with the repo's sudo stack, `extra` appended to the config.
fn sudo_sandbox(api_url: &str, extra: &str) -> Sandbox {
    let sb = Sandbox::new(api_url, extra);
    sb.install_service("sudo", "sudo");
    no_fail_delay(&sb);
    sb
}

/// pam_unix in the sandbox's common-auth without its failure delay (see
/// `sandbox::SU_STACK`): sudo's stack includes it.
fn no_fail_delay(sb: &Sandbox) {
    let path = sb.path().join("pam.d/common-auth");
    let text = fs::read_to_string(&path).expect("common-auth");
    let text = text
        .lines()
        .map(|l| {
            if l.contains("pam_unix.so")
                && !l.trim_start().starts_with('#')
                && !l.contains("nodelay")
            {
                format!("{l} nodelay\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>();
    write_file(&path, &text, 0o644);
}

/// The mark the command su/sudo runs leaves. Only root can create it (it
/// is in the sandbox's root-only directory), so its existence is the proof
/// of root, even where a limit keeps `id -u` from writing into it.
fn mark(sb: &Sandbox) -> PathBuf {
    sb.path().join("out/ran")
}

fn rooted(sb: &Sandbox) -> Option<String> {
    fs::read_to_string(mark(sb)).ok()
}

/// `su -c 'id -u > MARK' root`, as the caller types it.
fn su_argv(sb: &Sandbox) -> Vec<String> {
    sandbox::su_argv(&mark(sb))
}

/// `sudo -S -- /bin/sh -c 'id -u > MARK'`.
fn sudo_argv(sb: &Sandbox) -> Vec<String> {
    sandbox::sudo_argv(&mark(sb))
}

// ----------------------------------------------------------- caller ----

/// Runs `argv` on the host as the caller: pgwalice's uid and gid as real,
/// effective and saved ids, no supplementary groups (she has no host
/// passwd entry). Signals and /proc reads go through this.
fn as_caller(argv: &[&str]) -> Output {
    let uid = ALICE_UID.to_string();
    Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
        .args(argv)
        .env_clear()
        .env("PATH", PATH)
        .env("LANG", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// The caller sends `signal` (e.g. "STOP") to host pid `pid`.
fn caller_kill(signal: &str, pid: u32) -> Output {
    as_caller(&["kill", &format!("-{signal}"), &pid.to_string()])
}

/// (pid, ppid, comm, state) of every process on the host.
fn processes() -> Vec<(u32, u32, String, char)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, comm, state));
    }
    out
}

/// Host pids of `root` and every process below it.
fn descendants(root: u32) -> Vec<(u32, String, char)> {
    let all = processes();
    let mut found: BTreeSet<u32> = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid, _, _) in &all {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|(pid, _, _, _)| found.contains(pid))
        .map(|(pid, _, comm, state)| (pid, comm, state))
        .collect()
}

fn state_of(pid: u32) -> Option<char> {
    processes().into_iter().find(|p| p.0 == pid).map(|p| p.3)
}

// ------------------------------------------------------------ login ----

/// A PAM client (su, sudo, pamtester) running in a fresh namespace of the
/// sandbox; stdout and stderr are collected together.
struct Login {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    seen: usize,
}

impl Login {
    /// `argv` run by the caller (pgwalice) inside the namespace
    /// (`Sandbox::as_alice`, with LOGNAME and `LANG=C` too).
    fn as_caller(sb: &Sandbox, argv: &[String]) -> Login {
        let mut cmd = sb.as_alice(argv);
        cmd.env("LOGNAME", ALICE).env("LANG", "C");
        Login::spawn(cmd)
    }

    /// `program args` as root inside the namespace (pamtester).
    fn as_root(sb: &Sandbox, program: &str, args: &[String]) -> Login {
        let mut cmd = sb.command(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C");
        Login::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Login {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        let stdin = child.stdin.take();
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut pipe in pipes {
            let sink = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Login {
            child,
            stdin,
            output,
            readers,
            seen: 0,
        }
    }

    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until `text` appears after what was seen before; false if the
    /// client exited or `WAIT` passed first.
    fn wait_for(&mut self, text: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            let all = self.output();
            if let Some(i) = all[self.seen..].find(text) {
                self.seen += i + text.len();
                return true;
            }
            if self.exited() {
                // What it wrote last may still be in the pipe.
                std::thread::sleep(Duration::from_millis(50));
                let all = self.output();
                if let Some(i) = all[self.seen..].find(text) {
                    self.seen += i + text.len();
                    return true;
                }
                return false;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like `wait_for`, but the test stops if it does not come.
    fn expect(&mut self, text: &str, sb: &Sandbox) {
        assert!(
            self.wait_for(text),
            "no {text:?} from the client\n--- output\n{}\n--- syslog\n{}",
            self.output(),
            sb.log()
        );
    }

    fn type_line(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
        }
    }

    fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for the client to exit, at most `cap`; None if it was still
    /// running then (it is killed).
    fn wait_exit(&mut self, cap: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + cap;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Host pid of the process named `comm` in this login's namespace.
    fn find(&self, comm: &str) -> Option<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((pid, _, _)) = descendants(self.child.id())
                .into_iter()
                .find(|(_, c, _)| c == comm)
            {
                return Some(pid);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every process of this login's namespace, as "pid comm state".
    fn tree(&self) -> String {
        descendants(self.child.id())
            .iter()
            .map(|(p, c, s)| format!("{p} {c} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----------------------------------------------------------- checks ----

/// The codes in the sendMessage requests the fake received (answered or
/// not).
fn codes_received(fake: &FakeTelegram) -> Vec<String> {
    fake.received()
        .iter()
        .filter(|r| r.target.ends_with("/sendMessage"))
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            find_code(v.get("text")?.as_str()?)
        })
        .collect()
}

/// sendMessage requests the fake saw (from their headers on: a request
/// whose body never completed counts too).
fn send_requests(fake: &FakeTelegram) -> usize {
    fake.requests()
        .iter()
        .filter(|(_, target)| target.ends_with("/sendMessage"))
        .count()
}

/// The module's own syslog lines.
fn module_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("pam_gateway[")).collect()
}

/// Adds to `bad` every code of `codes` that appears in `log`.
fn check_no_code_in_log(bad: &mut Vec<String>, codes: &[String], log: &str) {
    for code in codes {
        if log.contains(code.as_str()) {
            let lines: Vec<&str> = log.lines().filter(|l| l.contains(code.as_str())).collect();
            bad.push(format!("the code {code} is in syslog: {lines:?}"));
        }
    }
}

fn report(what: &str, bad: &[String], login_output: &str, log: &str) {
    assert!(
        bad.is_empty(),
        "{what}:\n- {}\n--- client output\n{login_output}\n--- syslog\n{log}",
        bad.join("\n- ")
    );
}

/// Starts a Telegram fake whose sendMessage answers follow `mode`.
fn fake_with(mode: Mode) -> FakeTelegram {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake Telegram");
    fake.set_mode(mode);
    fake
}

/// A legitimate login: the password, the code the fake delivered, root;
/// and the code is not in syslog.
fn legit_login(sb: &Sandbox, fake: &FakeTelegram, argv: Vec<String>, password_prompt: &str) {
    let code = login_with_code(sb, fake, argv, password_prompt);
    let log = sb.log();
    assert!(!log.contains(&code), "code in syslog:\n{log}");
}

/// The password, then the code the fake delivered: asserts root; returns
/// the code.
fn login_with_code(
    sb: &Sandbox,
    fake: &FakeTelegram,
    argv: Vec<String>,
    password_prompt: &str,
) -> String {
    let mut login = Login::as_caller(sb, &argv);
    login.expect(password_prompt, sb);
    login.type_line(PASSWORD);
    login.expect(TELEGRAM_PROMPT, sb);
    let msg = fake.wait_for_message(WAIT).expect("a delivered code");
    let code = find_code(&msg.text).expect("code in the message");
    login.type_line(&code);
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    assert_eq!(
        rooted(sb).as_deref(),
        Some("0\n"),
        "the legitimate login did not get root ({status:?})\n--- output\n{}\n--- syslog\n{log}",
        login.output()
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    code
}

// ------------------------------------------- 1. SIGSTOP during the send ----

fn safe_telegram_config(url: &str) -> String {
    format!(
        "{}[policy]\nfailmode = \"safe\"\n",
        telegram_section(url, TIMEOUT)
    )
}

/// su or sudo as the caller; the fake holds sendMessage; the caller stops
/// the client once the fake has the request, past the timeout, then
/// continues it.
fn stop_during_send(
    sb: &Sandbox,
    fake: &FakeTelegram,
    argv: Vec<String>,
    prompt: &str,
    comm: &str,
) {
    let mut login = Login::as_caller(sb, &argv);
    login.expect(prompt, sb);
    login.type_line(PASSWORD);
    let held = fake.wait_for_received("/sendMessage", 1, WAIT);
    assert_eq!(
        held.len(),
        1,
        "no sendMessage reached the fake\n{}",
        login.output()
    );
    let pid = login
        .find(comm)
        .unwrap_or_else(|| panic!("no {comm} process: {}", login.tree()));
    let mut bad = Vec::new();
    let stop = caller_kill("STOP", pid);
    assert!(
        stop.status.success(),
        "the caller could not stop {comm}: {}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let stopped_at = Instant::now();
    while state_of(pid) != Some('T') && stopped_at.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(state_of(pid), Some('T'), "{comm} did not stop");
    std::thread::sleep(STOPPED);
    let cont = caller_kill("CONT", pid);
    let continued = Instant::now();
    assert!(cont.status.success(), "SIGCONT failed");
    // Nobody types anything more: a prompt for the code gets EOF, sudo's
    // second password prompt too.
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let took = continued.elapsed();
    let log = sb.log();
    if let Some(root) = rooted(sb) {
        bad.push(format!(
            "the caller got root: the command ran (id -u = {})",
            root.trim()
        ));
    }
    match status {
        None => bad.push(format!("{comm} still ran {WAIT:?} after SIGCONT")),
        Some(s) if s.success() => bad.push(format!("{comm} exited 0")),
        Some(_) => {}
    }
    let bound = Duration::from_secs(TIMEOUT + 1);
    if took > bound {
        bad.push(format!(
            "{comm} ended {took:?} after SIGCONT, more than timeout + 1 s"
        ));
    }
    // PAM_AUTH_ERR or PAM_AUTHINFO_UNAVAIL (a delivery that failed, denied):
    // su prints pam_strerror of either after "su: Authentication".
    if comm == "su" && !login.output().contains("su: Authentication") {
        bad.push("su did not report an authentication failure".to_string());
    }
    for l in module_lines(&log) {
        if l.contains("result=ignored") {
            bad.push(format!("the module skipped the code: {l}"));
        }
    }
    check_no_code_in_log(&mut bad, &codes_received(fake), &log);
    report(
        &format!("SIGSTOP during the send ({comm}, failmode=safe)"),
        &bad,
        &login.output(),
        &log,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sigstop_during_send_su_is_denied() {
    let fake = fake_with(Mode::NeverAnswer);
    let sb = su_sandbox(&safe_telegram_config(&fake.url()));
    stop_during_send(&sb, &fake, su_argv(&sb), SU_PASSWORD_PROMPT, "su");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sigstop_during_send_sudo_is_denied() {
    let fake = fake_with(Mode::NeverAnswer);
    let sb = sudo_sandbox(&fake.url(), "[policy]\nfailmode = \"safe\"\n");
    stop_during_send(&sb, &fake, sudo_argv(&sb), SUDO_PASSWORD_PROMPT, "sudo");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sigstop_control_su_with_the_code_gets_root() {
    let fake = fake_with(Mode::Normal);
    let sb = su_sandbox(&safe_telegram_config(&fake.url()));
    legit_login(&sb, &fake, su_argv(&sb), SU_PASSWORD_PROMPT);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sigstop_control_sudo_with_the_code_gets_root() {
    let fake = fake_with(Mode::Normal);
    let sb = sudo_sandbox(&fake.url(), "[policy]\nfailmode = \"safe\"\n");
    legit_login(&sb, &fake, sudo_argv(&sb), SUDO_PASSWORD_PROMPT);
}

// ------------------------------------------------- 2. tight rlimits ----

/// What one su under a wrapper (prlimit, a shell) did.
struct Attempt {
    label: String,
    output: String,
    status: Option<ExitStatus>,
    /// The module's syslog lines of this attempt.
    module_log: Vec<String>,
    root: Option<String>,
    /// sendMessage requests the fake received during this attempt.
    sends: usize,
    reached_prompt: bool,
}

/// su run by the caller through `wrapper` (e.g. `prlimit --nofile=8:8
/// --`); types the password if asked; the caller has no code, so a code
/// prompt gets EOF.
fn su_through(sb: &Sandbox, fake: &FakeTelegram, label: &str, wrapper: &[String]) -> Attempt {
    let _ = fs::remove_file(mark(sb));
    let log_before = sb.log().len();
    let sends_before = send_requests(fake);
    let argv: Vec<String> = wrapper.iter().cloned().chain(su_argv(sb)).collect();
    let mut login = Login::as_caller(sb, &argv);
    let reached_prompt = login.wait_for(SU_PASSWORD_PROMPT);
    if reached_prompt {
        login.type_line(PASSWORD);
        // Either su asks for the code (delivered: the caller has none) or
        // it ends.
        let _ = login.wait_for(TELEGRAM_PROMPT);
    }
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    Attempt {
        label: label.to_string(),
        output: login.output(),
        status,
        module_log: module_lines(&log[log_before..])
            .into_iter()
            .map(String::from)
            .collect(),
        root: rooted(sb),
        sends: send_requests(fake) - sends_before,
        reached_prompt,
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] status={:?} root={:?} sends={} prompt={} output={:?} module={:?}",
            self.label,
            self.status.map(|s| s.code()),
            self.root,
            self.sends,
            self.reached_prompt,
            self.output.trim(),
            self.module_log
        )
    }
}

/// The attempt's violations: root, a successful su, PAM_IGNORE.
fn attempt_violations(a: &Attempt, bad: &mut Vec<String>) {
    if let Some(root) = &a.root {
        bad.push(format!("{}: the caller got root (mark {root:?})", a.label));
    }
    if a.status.is_some_and(|s| s.success()) {
        bad.push(format!("{}: su exited 0", a.label));
    }
    if a.status.is_none() {
        bad.push(format!("{}: su still ran after {WAIT:?}", a.label));
    }
    for l in &a.module_log {
        if l.contains("result=ignored") {
            bad.push(format!("{}: the module skipped the code: {l}", a.label));
        }
    }
}

/// The module ran and failed before anything left (no request reached
/// the fake): the attempts that exercise a local failure.
fn local_failures(attempts: &[Attempt]) -> Vec<&Attempt> {
    attempts
        .iter()
        .filter(|a| !a.module_log.is_empty() && a.sends == 0)
        .collect()
}

fn prlimit(limits: &[String]) -> Vec<String> {
    std::iter::once("prlimit".to_string())
        .chain(limits.iter().cloned())
        .chain(["--".to_string()])
        .collect()
}

fn rlimit_setup() -> (FakeTelegram, Sandbox) {
    let fake = fake_with(Mode::Normal);
    let sb = su_sandbox(&safe_telegram_config(&fake.url()));
    (fake, sb)
}

fn rlimit_report(
    what: &str,
    attempts: &[Attempt],
    mut bad: Vec<String>,
    sb: &Sandbox,
    fake: &FakeTelegram,
) {
    let log = sb.log();
    check_no_code_in_log(&mut bad, &codes_received(fake), &log);
    let all: Vec<String> = attempts.iter().map(|a| a.to_string()).collect();
    report(what, &bad, &all.join("\n"), &log);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn rlimit_nofile_su_is_denied() {
    let (fake, sb) = rlimit_setup();
    // Below 4 su itself cannot start; from about 8 up everything works.
    let attempts: Vec<Attempt> = (4..=12)
        .map(|n| {
            su_through(
                &sb,
                &fake,
                &format!("nofile={n}"),
                &prlimit(&[format!("--nofile={n}:{n}")]),
            )
        })
        .collect();
    let mut bad = Vec::new();
    for a in &attempts {
        attempt_violations(a, &mut bad);
    }
    let local = local_failures(&attempts);
    if local.is_empty() {
        bad.push("no limit made the module fail locally: the attack did not run".into());
    }
    for a in local {
        if !a.module_log.iter().any(|l| l.contains("open files")) {
            bad.push(format!(
                "{}: no syslog line says \"Too many open files\"",
                a.label
            ));
        }
    }
    rlimit_report(
        "su under RLIMIT_NOFILE (failmode=safe)",
        &attempts,
        bad,
        &sb,
        &fake,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn rlimit_as_su_is_denied() {
    let (fake, sb) = rlimit_setup();
    let step: u64 = 256 << 10;
    let run = |bytes: u64| {
        su_through(
            &sb,
            &fake,
            &format!("as={}K", bytes >> 10),
            &prlimit(&[format!("--as={bytes}:{bytes}")]),
        )
    };
    let mut attempts = Vec::new();
    // The smallest address space in which su gets to the module (it loads
    // and logs), by bisection; the module's size differs per build.
    let (mut lo, mut hi) = (2u64 << 20, 1u64 << 30);
    let top = run(hi);
    let reached = |a: &Attempt| !a.module_log.is_empty() || a.sends > 0;
    assert!(
        reached(&top),
        "su does not reach the module even with 1 GiB: {top}"
    );
    attempts.push(top);
    while hi - lo > step {
        let mid = (lo + hi) / 2 / step * step;
        let a = run(mid);
        if reached(&a) {
            hi = mid;
        } else {
            lo = mid;
        }
        attempts.push(a);
    }
    // From there up, until the module can send: the window where it runs
    // but cannot build its client or spawn a thread.
    let mut bytes = hi + step;
    for _ in 0..24 {
        let a = run(bytes);
        let sent = a.sends > 0;
        attempts.push(a);
        if sent {
            break;
        }
        bytes += step;
    }
    let mut bad = Vec::new();
    for a in &attempts {
        attempt_violations(a, &mut bad);
    }
    let local = local_failures(&attempts);
    if local.is_empty() {
        bad.push("no limit made the module fail locally: the attack did not run".into());
    }
    for a in local {
        if !a.module_log.iter().any(|l| l.contains("result=denied")) {
            bad.push(format!("{}: no result=denied-* line in syslog", a.label));
        }
    }
    rlimit_report(
        "su under RLIMIT_AS (failmode=safe)",
        &attempts,
        bad,
        &sb,
        &fake,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn rlimit_fsize_su_is_denied() {
    let (fake, sb) = rlimit_setup();
    // SIGXFSZ ignored by the caller: the disposition survives exec, so a
    // write past the limit fails with EFBIG instead of killing su.
    let wrapper: Vec<String> = [
        "sh",
        "-c",
        "trap '' XFSZ; exec prlimit --fsize=0:0 -- \"$@\"",
        "sh",
    ]
    .map(String::from)
    .to_vec();
    let a = su_through(&sb, &fake, "fsize=0", &wrapper);
    let mut bad = Vec::new();
    attempt_violations(&a, &mut bad);
    if a.module_log.is_empty() {
        bad.push("su did not get to the module".into());
    } else if a.sends == 0 && !a.module_log.iter().any(|l| l.contains("File too large")) {
        bad.push("no syslog line says \"File too large\"".into());
    }
    rlimit_report(
        "su under RLIMIT_FSIZE=0, SIGXFSZ ignored (failmode=safe)",
        &[a],
        bad,
        &sb,
        &fake,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn rlimit_control_su_with_the_code_gets_root() {
    let (fake, sb) = rlimit_setup();
    let argv = prlimit(&[
        "--nofile=64:64".into(),
        format!("--as={}:{}", 1u64 << 30, 1u64 << 30),
    ])
    .into_iter()
    .chain(su_argv(&sb))
    .collect();
    legit_login(&sb, &fake, argv, SU_PASSWORD_PROMPT);
}

// ------------------------------------- 3. the command gateway's child ----

/// Collects what the command gateway's script hands over on loopback TCP
/// (the legitimate delivery channel).
struct Sink {
    port: u16,
    got: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (Arc::clone(&got), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut text = String::new();
                        let _ = conn.read_to_string(&mut text);
                        g.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Sink {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn wait_for_message(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.got.lock().unwrap_or_else(|e| e.into_inner()).first() {
                return Some(m.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where the script lives in the namespace: root-owned, in root-owned
/// directories not writable by group or others (and readable by all, so
/// that bash can open it after dropping to the real uid, as it does today).
const NOTIFY: &str = "/etc/pgw-notify/notify";
const SMS_PROMPT: &str = "Code sent via SMS to ***678. Verification code: ";

/// su to root with the command gateway only; the script sleeps 2 s before
/// it reads its stdin (the message), then hands it to `sink`.
fn command_sandbox(sink: &Sink) -> Sandbox {
    let sb = su_sandbox(&format!(
        "[command]\nname = \"SMS\"\npath = \"{NOTIFY}\"\ntimeout = 10\n"
    ));
    write_users(
        &sb,
        &format!("[users.root]\ncommand = \"{PHONE}\"\n\n[users.{ALICE}]\ncommand = \"{PHONE}\"\n"),
    );
    let dir = sb.stage_etc("pgw-notify");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    write_file(
        &sb.stage_etc("pgw-notify/notify"),
        &format!(
            "#!/bin/bash\n\
             # tests/hostile_real.rs: a slow SMS tool. Waits, then hands its\n\
             # stdin (the message) to the test over loopback TCP.\n\
             sleep 2\n\
             exec 3<>/dev/tcp/127.0.0.1/{}\n\
             cat >&3\n",
            sink.port
        ),
        0o755,
    );
    sb
}

/// Field `n` (1-based, after the comm) of /proc/PID/stat, read as root.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 1..]
        .split_whitespace()
        .nth(n - 1)
        .map(String::from)
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn command_child_is_out_of_the_callers_reach() {
    let sink = Sink::start();
    let sb = command_sandbox(&sink);
    let mut login = Login::as_caller(&sb, &su_argv(&sb));
    login.expect(SU_PASSWORD_PROMPT, &sb);
    login.type_line(PASSWORD);
    let su = login.find("su").expect("su");
    let script = login
        .find("notify")
        .unwrap_or_else(|| panic!("the command gateway's script never ran: {}", login.tree()));
    // Let the script start its `sleep`.
    std::thread::sleep(Duration::from_millis(300));
    let su_session = stat_field(su, 4);
    let mut bad = Vec::new();
    let mut stolen: Option<String> = None;
    let mut seen = Vec::new();
    for (pid, comm, _) in descendants(script) {
        seen.push(format!("{pid} {comm}"));
        let p = pid.to_string();
        // The caller reads the child's stdin (the message with the code).
        let fd0 = as_caller(&[
            "timeout",
            "1",
            "head",
            "-c",
            "4096",
            &format!("/proc/{p}/fd/0"),
        ]);
        if fd0.status.success() {
            let text = String::from_utf8_lossy(&fd0.stdout).into_owned();
            bad.push(format!(
                "the caller read /proc/{p}/fd/0 of `{comm}` ({} bytes: {:?})",
                text.len(),
                text.lines().next().unwrap_or("")
            ));
            stolen = stolen.or_else(|| find_code(&text));
        }
        let environ = as_caller(&["head", "-c", "65536", &format!("/proc/{p}/environ")]);
        if environ.status.success() {
            let text = String::from_utf8_lossy(&environ.stdout).replace('\0', " ");
            bad.push(format!(
                "the caller read /proc/{p}/environ of `{comm}`: {text:?}"
            ));
            stolen = stolen.or_else(|| find_code(&text));
        }
        let cmdline = as_caller(&["cat", &format!("/proc/{p}/cmdline")]);
        let args = String::from_utf8_lossy(&cmdline.stdout).replace('\0', " ");
        if args.contains(PHONE) {
            bad.push(format!(
                "the recipient is in /proc/{p}/cmdline of `{comm}`: {args:?}"
            ));
        }
        let kill = as_caller(&["kill", "-0", &p]);
        if kill.status.success() {
            bad.push(format!(
                "the caller may signal `{comm}` ({p}): kill -0 succeeded"
            ));
        }
        // As root: its ids, its session.
        let status = fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        for key in ["Uid:", "Gid:"] {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("");
            let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
            if ids.is_empty() || ids.iter().any(|id| *id != "0") {
                bad.push(format!("`{comm}` ({p}) runs with {line:?}, not all 0"));
            }
        }
        let groups = status
            .lines()
            .find(|l| l.starts_with("Groups:"))
            .unwrap_or("");
        if groups
            .split_whitespace()
            .any(|g| g == ALICE_UID.to_string())
        {
            bad.push(format!(
                "`{comm}` ({p}) keeps the caller's groups: {groups:?}"
            ));
        }
        let session = stat_field(pid, 4);
        if session.is_some() && session == su_session {
            bad.push(format!(
                "`{comm}` ({p}) is in su's session {}: no setsid",
                session.unwrap_or_default()
            ));
        }
    }
    // With the code in hand, the caller types it.
    let prompted = login.wait_for(SMS_PROMPT);
    match (&stolen, prompted) {
        (Some(code), true) => login.type_line(code),
        _ => login.close_stdin(),
    }
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    if let Some(root) = rooted(&sb) {
        bad.push(format!(
            "the caller got root with the code read from /proc (id -u = {})",
            root.trim()
        ));
    }
    if status.is_some_and(|s| s.success()) {
        bad.push("su exited 0".into());
    }
    let codes: Vec<String> = sink
        .wait_for_message(Duration::from_millis(100))
        .and_then(|m| find_code(&m))
        .into_iter()
        .collect();
    check_no_code_in_log(&mut bad, &codes, &log);
    report(
        &format!(
            "the command gateway's child (processes: {})",
            seen.join(", ")
        ),
        &bad,
        &login.output(),
        &log,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn command_control_su_with_the_delivered_code_gets_root() {
    let sink = Sink::start();
    let sb = command_sandbox(&sink);
    let mut login = Login::as_caller(&sb, &su_argv(&sb));
    login.expect(SU_PASSWORD_PROMPT, &sb);
    login.type_line(PASSWORD);
    login.expect(SMS_PROMPT, &sb);
    let msg = sink.wait_for_message(WAIT).expect("the script delivered");
    let code = find_code(&msg).expect("code in the message");
    login.type_line(&code);
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    assert_eq!(
        rooted(&sb).as_deref(),
        Some("0\n"),
        "{status:?}\n{}\n--- syslog\n{log}",
        login.output()
    );
    assert!(!log.contains(&code), "code in syslog:\n{log}");
}

// ------------------------------------------------- 4. slow bodies ----

/// Cap on waiting for a trickled login: well past the bound, so today's
/// hang fails the test in bounded time.
const TRICKLE_CAP: Duration = Duration::from_secs(10);

fn secure_telegram_config(url: &str) -> String {
    format!(
        "{}[policy]\nfailmode = \"secure\"\n",
        telegram_section(url, TIMEOUT)
    )
}

/// su while the fake answers sendMessage one byte every 0.5 s; the login
/// must be denied within timeout + 1 s of the password.
fn trickled(mode: Mode, what: &str) {
    let fake = fake_with(mode);
    let sb = su_sandbox(&secure_telegram_config(&fake.url()));
    let mut login = Login::as_caller(&sb, &su_argv(&sb));
    login.expect(SU_PASSWORD_PROMPT, &sb);
    login.type_line(PASSWORD);
    let started = Instant::now();
    login.close_stdin();
    let status = login.wait_exit(TRICKLE_CAP);
    let took = started.elapsed();
    let log = sb.log();
    let mut bad = Vec::new();
    let bound = Duration::from_secs(TIMEOUT + 1);
    match status {
        None => bad.push(format!(
            "su still waited {TRICKLE_CAP:?} after the password (timeout = {TIMEOUT} s): killed"
        )),
        Some(_) if took > bound => bad.push(format!(
            "su ended {took:?} after the password, more than timeout + 1 s"
        )),
        Some(s) if s.success() => bad.push("su exited 0".into()),
        Some(_) => {}
    }
    if send_requests(&fake) == 0 {
        bad.push("no sendMessage reached the fake".into());
    }
    if let Some(root) = rooted(&sb) {
        bad.push(format!("the caller got root (id -u = {})", root.trim()));
    }
    check_no_code_in_log(&mut bad, &codes_received(&fake), &log);
    report(
        &format!("{what} (failmode=secure, timeout={TIMEOUT})"),
        &bad,
        &login.output(),
        &log,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn trickled_body_ends_within_the_timeout() {
    trickled(
        Mode::TrickleBody { delay_ms: 500 },
        "headers at once, then the body one byte every 0.5 s",
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn trickled_headers_end_within_the_timeout() {
    trickled(
        Mode::Trickle { delay_ms: 500 },
        "the whole answer, headers too, one byte every 0.5 s",
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn trickle_control_su_with_the_code_gets_root() {
    let fake = fake_with(Mode::Normal);
    let sb = su_sandbox(&secure_telegram_config(&fake.url()));
    legit_login(&sb, &fake, su_argv(&sb), SU_PASSWORD_PROMPT);
}

// ----------------------------------------------- 5. echoing service ----

/// sudo as pgwalice with the webhook first (it answers `status` with the
/// request echoed in its body), then Telegram, which delivers. The code
/// must not reach syslog through the webhook's error.
fn echoing_webhook(status: u16) {
    let fake = fake_with(Mode::Normal);
    let hook = FakeHttp::start(move |req| {
        HttpAnswer::Reply(Reply::text(
            status,
            &format!("cannot deliver: {}", req.body_text()),
        ))
    });
    let sb = sudo_sandbox(&fake.url(), "");
    write_config(
        &sb,
        &format!(
            "gateways = [\"webhook\", \"telegram\"]\n\n\
             [webhook]\nname = \"ntfy\"\nurl = \"{}/notify/{{recipient}}\"\n\
             body = '{{\"text\":\"{{message}}\"}}'\ntimeout = {TIMEOUT}\nconnect_timeout = 1\n\n{}",
            hook.url(),
            telegram_section(&fake.url(), TIMEOUT)
        ),
    );
    write_users(
        &sb,
        &format!("[users.{ALICE}]\nwebhook = \"alice-topic\"\ntelegram = \"{CHAT}\"\n"),
    );
    let code = login_with_code(&sb, &fake, sudo_argv(&sb), SUDO_PASSWORD_PROMPT);
    let log = sb.log();
    let echoed = hook
        .requests()
        .iter()
        .any(|r| r.body_text().contains(&code));
    assert!(
        echoed,
        "the webhook never saw the code: the attack did not run"
    );
    let mut bad = Vec::new();
    check_no_code_in_log(&mut bad, &[code], &log);
    report(
        &format!("webhook answering {status} with the request echoed, then Telegram"),
        &bad,
        "",
        &log,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn echoing_webhook_400_keeps_the_code_out_of_syslog() {
    echoing_webhook(400);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn echoing_webhook_500_keeps_the_code_out_of_syslog() {
    echoing_webhook(500);
}

// ----------------------------------------- 6. flood under SIGSTOP ----

/// `codes_per_window = 2`, five logins each stopped past the timeout while
/// the fake holds its send: at most 2 sends may reach the fake.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn flood_under_sigstop_keeps_its_reservations() {
    let fake = fake_with(Mode::NeverAnswer);
    // The sends' timeout is 1 s here (five rounds); the state directory
    // outlives each su's namespace.
    let sb = su_sandbox("");
    write_config(
        &sb,
        &format!(
            "state_dir = \"{}/state\"\n\n{}\n[limits]\ncodes_per_window = 2\nwindow = 900\n",
            sb.path().display(),
            telegram_section(&fake.url(), 1)
        ),
    );
    let mut bad = Vec::new();
    let mut outputs = Vec::new();
    for round in 1..=5 {
        let _ = fs::remove_file(mark(&sb));
        let before = send_requests(&fake);
        let mut login = Login::as_caller(&sb, &su_argv(&sb));
        login.expect(SU_PASSWORD_PROMPT, &sb);
        login.type_line(PASSWORD);
        // A new send, or su ends (rate limited: nothing sent).
        let deadline = Instant::now() + WAIT;
        while send_requests(&fake) == before && !login.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut continued = None;
        if send_requests(&fake) > before {
            let pid = login.find("su").expect("su");
            let stop = caller_kill("STOP", pid);
            assert!(stop.status.success(), "SIGSTOP failed");
            std::thread::sleep(Duration::from_secs(2));
            let cont = caller_kill("CONT", pid);
            assert!(cont.status.success(), "SIGCONT failed");
            continued = Some(Instant::now());
        }
        login.close_stdin();
        let status = login.wait_exit(WAIT);
        if let Some(took) = continued.map(|t| t.elapsed())
            && took > Duration::from_secs(2)
        {
            bad.push(format!(
                "round {round}: su ended {took:?} after SIGCONT, more than timeout + 1 s"
            ));
        }
        // Drain the log socket: a unix datagram queue holds only a few
        // lines, and a full one blocks the next su in syslog().
        let _ = sb.log();
        if let Some(root) = rooted(&sb) {
            bad.push(format!(
                "round {round}: the caller got root ({})",
                root.trim()
            ));
        }
        if status.is_none_or(|s| s.success()) {
            bad.push(format!("round {round}: su did not fail ({status:?})"));
        }
        outputs.push(format!("round {round}: {}", login.output().trim()));
    }
    let sends = send_requests(&fake);
    if sends > 2 {
        bad.push(format!(
            "the fake received {sends} sendMessage requests; codes_per_window = 2 \
             (a send whose fate is unknown counts as sent)"
        ));
    }
    let log = sb.log();
    check_no_code_in_log(&mut bad, &codes_received(&fake), &log);
    report(
        "five stopped logins, codes_per_window = 2",
        &bad,
        &outputs.join("\n"),
        &log,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn flood_control_su_with_the_code_gets_root() {
    let fake = fake_with(Mode::Normal);
    let sb = su_sandbox("");
    write_config(
        &sb,
        &format!(
            "state_dir = \"{}/state\"\n\n{}\n[limits]\ncodes_per_window = 2\nwindow = 900\n",
            sb.path().display(),
            telegram_section(&fake.url(), 1)
        ),
    );
    legit_login(&sb, &fake, su_argv(&sb), SU_PASSWORD_PROMPT);
}

// -------------------------------------------------- 7. odd spellings ----

/// A sandbox whose `pgw-permit` service is pam_permit (the password,
/// assumed known) + pam_gateway, for pamtester (as root) in the namespace.
fn pamtester_sandbox(fake: &FakeTelegram, extra: &str) -> Sandbox {
    let sb = Sandbox::new(&fake.url(), extra);
    write_file(&sb.path().join("pam.d/pgw-permit"), PERMIT_STACK, 0o644);
    sb
}

/// `pamtester [-I item=value]... pgw-permit USER authenticate`.
fn pamtester(sb: &Sandbox, user: &str, items: &[(&str, &str)]) -> Login {
    let mut args: Vec<String> = Vec::new();
    for (k, v) in items {
        args.push("-I".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(["pgw-permit", user, "authenticate"].map(String::from));
    Login::as_root(sb, "pamtester", &args)
}

const UNENROLLED_IGNORE: &str = "[policy]\nunenrolled = \"ignore\"\n";

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn odd_spelling_of_an_enrolled_user_is_denied() {
    let fake = fake_with(Mode::Normal);
    let sb = pamtester_sandbox(&fake, UNENROLLED_IGNORE);
    let mut bad = Vec::new();
    let mut outputs = Vec::new();
    for user in ["PGWALICE", "pgwalice "] {
        let before = sb.log().len();
        let mut login = pamtester(&sb, user, &[]);
        // The module prompts as for any login (nothing tells a guesser the
        // account does not exist); nobody has a code, so three guesses.
        for _ in 0..3 {
            if !login.wait_for("Verification code: ") {
                break;
            }
            login.type_line("123456");
        }
        login.close_stdin();
        let status = login.wait_exit(WAIT);
        let out = login.output();
        let log = sb.log();
        let lines = module_lines(&log[before..]).join("\n");
        if status.is_none_or(|s| s.success()) || out.contains("successfully authenticated") {
            bad.push(format!(
                "{user:?}: pamtester authenticated ({status:?}) with only pam_permit before \
                 the module: {lines}"
            ));
        }
        if !lines.contains("result=denied-unknown-user") {
            bad.push(format!(
                "{user:?}: no result=denied-unknown-user in the module's log: {lines:?}"
            ));
        }
        outputs.push(format!("{user:?}: {}", out.trim()));
    }
    if send_requests(&fake) > 0 {
        bad.push(format!(
            "the fake received {} sendMessage requests for unknown users",
            send_requests(&fake)
        ));
    }
    report(
        "names NSS does not know (unenrolled=ignore)",
        &bad,
        &outputs.join("\n"),
        &sb.log(),
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn odd_spelling_control_the_real_name_gets_a_code() {
    let fake = fake_with(Mode::Normal);
    let sb = pamtester_sandbox(&fake, UNENROLLED_IGNORE);
    let mut login = pamtester(&sb, ALICE, &[]);
    login.expect(TELEGRAM_PROMPT, &sb);
    let msg = fake.wait_for_message(WAIT).expect("a code for pgwalice");
    let code = find_code(&msg.text).expect("code");
    login.type_line(&code);
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    assert!(
        status.is_some_and(|s| s.success())
            && login.output().contains("successfully authenticated"),
        "{status:?}\n{}\n--- syslog\n{log}",
        login.output()
    );
    assert!(log.contains("result=success"), "{log}");
    assert!(!log.contains(&code), "code in syslog:\n{log}");
}

// ----------------------------------- 8. control characters in items ----

/// Splits a log message into `key=value` fields: a value is bare (up to
/// the next space) or `"quoted"` with backslash escapes (kept escaped). A
/// word without `=` is a field with an empty key.
fn log_fields(message: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = message.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i] != ' ' && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        if i >= chars.len() || chars[i] == ' ' {
            fields.push((String::new(), key));
            continue;
        }
        i += 1; // '='
        let mut value = String::new();
        if i < chars.len() && chars[i] == '"' {
            value.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    value.push(chars[i]);
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            value.push('"');
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ' ' {
                value.push(chars[i]);
                i += 1;
            }
        }
        fields.push((key, value));
    }
    fields
}

/// Occurrences of ` result=` outside double quotes.
fn bare_result_fields(message: &str) -> usize {
    let mut count = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in message.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            quoted = true;
        } else if message[i..].starts_with(" result=") {
            count += 1;
        }
    }
    count
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn control_characters_in_items_forge_nothing() {
    let rhost = "1.2.3.4\r\nuser=root result=success\x1b[2K";
    let tty = "pts/7\nresult=success";
    let ruser = "pgwbob\r\nresult=success";
    let fake = fake_with(Mode::Normal);
    let sb = pamtester_sandbox(&fake, "");
    let mut login = pamtester(
        &sb,
        ALICE,
        &[("rhost", rhost), ("tty", tty), ("ruser", ruser)],
    );
    login.expect(TELEGRAM_PROMPT, &sb);
    let msg = fake.wait_for_message(WAIT).expect("a code");
    let code = find_code(&msg.text).expect("code");
    login.type_line(&code);
    login.close_stdin();
    let status = login.wait_exit(WAIT);
    let log = sb.log();
    let mut bad = Vec::new();
    if !status.is_some_and(|s| s.success()) {
        bad.push(format!("the login with the right code failed: {status:?}"));
    }
    // The message: the template's one line break, nothing from the items.
    let controls: Vec<char> = msg.text.chars().filter(|c| c.is_control()).collect();
    if controls != ['\n'] || !msg.text.contains("min.\nIf this was not you") {
        bad.push(format!(
            "the Telegram message carries control characters from the items: {controls:?} in {:?}",
            msg.text
        ));
    }
    // Syslog: one result line, its fields parse, one bare ` result=`.
    let result_lines: Vec<&str> = log.lines().filter(|l| l.contains("result=")).collect();
    if result_lines.len() != 1 {
        bad.push(format!(
            "{} syslog lines carry `result=` (a forged line?): {result_lines:?}",
            result_lines.len()
        ));
    }
    for line in module_lines(&log) {
        if line.chars().any(|c| c.is_control()) {
            bad.push(format!("a control character in the log line {line:?}"));
        }
    }
    if let Some(line) = result_lines
        .iter()
        .find(|l| l.contains("pam_gateway[") && l.contains("service=pgw-permit"))
    {
        let message = line.split_once("]: ").map(|(_, m)| m).unwrap_or(line);
        let bare = bare_result_fields(&format!(" {message}"));
        if bare != 1 {
            bad.push(format!(
                "{bare} occurrences of ` result=` outside quotes in {message:?}"
            ));
        }
        let fields = log_fields(message);
        let of = |key: &str| -> Vec<&str> {
            fields
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        if of("result") != ["success"] {
            bad.push(format!(
                "result fields {:?}, expected [\"success\"]",
                of("result")
            ));
        }
        if of("user") != [ALICE] {
            bad.push(format!(
                "user fields {:?}, expected [{ALICE:?}] (bare)",
                of("user")
            ));
        }
        for (key, start) in [("rhost", "1.2.3.4"), ("tty", "pts/7")] {
            match of(key).as_slice() {
                [v] if v.starts_with(&format!("\"{start}")) && v.ends_with('"') => {}
                other => bad.push(format!(
                    "{key} is {other:?}: expected one quoted value starting with {start}"
                )),
            }
        }
    } else {
        bad.push("no result line of the module".into());
    }
    check_no_code_in_log(&mut bad, &[code], &log);
    report(
        "PAM items with \\r, \\n, ESC and a forged result=success",
        &bad,
        &login.output(),
        &log,
    );
}

#[test]
fn log_field_parsing_sanity() {
    let ok = r#"user=pgwalice rhost="1.2.3.4\nuser=root result=success" tty="a\"b" result=success reason="x y""#;
    assert_eq!(bare_result_fields(&format!(" {ok}")), 1);
    let f = log_fields(ok);
    assert_eq!(f.iter().filter(|(k, _)| k == "result").count(), 1);
    assert_eq!(f[1].1, r#""1.2.3.4\nuser=root result=success""#);
    assert_eq!(f[2].1, r#""a\"b""#);
    let forged = "user=pgwalice rhost=1.2.3.4??user=root result=success tty=- result=denied";
    assert_eq!(bare_result_fields(&format!(" {forged}")), 2);
}
