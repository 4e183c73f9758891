//! `[approve]` end to end: the real `pam-gatewayd` (built by cargo in this
//! target directory) on the host against the loopback fake Bot API, and
//! real clients in the sandbox (test-support/src/sandbox.rs): Debian's sshd
//! with the repo's stack and OpenSSH's `ssh` answering keyboard-interactive
//! prompts (test-support/src/ssh.rs), and sudo and su run by an
//! unprivileged user.
//!
//! The daemon and the sandboxed module share two paths in this test's
//! private directory: the daemon's socket (in a root-only directory) and
//! the state directory ("Not me" locks the user there). The test taps the
//! buttons of the message the fake received (`FakeTelegram::tap`).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgw_test_support::daemon::{self, DaemonProcess as Daemon};
use pgw_test_support::fake_telegram::{FakeOptions, FakeTelegram, Message, find_code};
use pgw_test_support::pam_harness::{CHAT, TOKEN, write_file};
use pgw_test_support::sandbox::{self, ALICE, PASSWORD, Sandbox};
use pgw_test_support::ssh::{Recipe, SshLogin, SshResult, Sshd};

const WAIT: Duration = Duration::from_secs(20);
const ADMIN: i64 = 700_000_001;
/// A Telegram account that is not the enrolled user's.
const STRANGER: i64 = 555_000_111;
const COMMAND: &str = "echo pgw-ssh-ok-$((6*7)) $(id -un)";
const CODE_PROMPT: &str = "Code sent via Telegram to ***977. Verification code: ";

/// `pam-gatewayd` as the package runs it (as root, `--config`), on the
/// host, with the config and socket `world` shares; killed on drop.
fn start_daemon(world: &World) -> Daemon {
    Daemon::start(
        daemon::binary(),
        world.shared.join("daemon.toml"),
        world.socket.clone(),
        world.shared.join("daemon.log"),
    )
}

/// The fake, the sandbox with `[approve]` on, and the paths the daemon
/// shares with it.
struct World {
    fake: FakeTelegram,
    sandbox: Sandbox,
    /// Root-only directory on the host, seen by the sandbox at the same path.
    shared: PathBuf,
    socket: PathBuf,
    state: PathBuf,
}

fn world(extra: &str) -> World {
    world_waiting(10, extra)
}

/// [`world`] with `[approve] wait` set.
fn world_waiting(wait: u64, extra: &str) -> World {
    pgw_test_support::root::require("approval end to end (pam-gatewayd and sshd run as root)");
    let fake = FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, ADMIN, STRANGER],
        ..FakeOptions::default()
    })
    .expect("fake");
    let sandbox = Sandbox::new(&fake.url(), "");
    let shared = sandbox.path().join("approve");
    for d in [&shared, &shared.join("run"), &shared.join("state")] {
        fs::create_dir(d).expect("mkdir");
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    }
    let socket = shared.join("run/d.sock");
    let state = shared.join("state");
    let common = format!(
        "state_dir = \"{state}\"\n\n[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{url}\"\n\
         timeout = 5\nconnect_timeout = 2\n\n[approve]\nenabled = true\nsocket = \"{socket}\"\n\
         admin_chats = [{ADMIN}]\nwait = {wait}\n{extra}",
        state = state.display(),
        socket = socket.display(),
        url = fake.url(),
    );
    // The module's, in the sandbox's /etc; the daemon's, on the host, with
    // a users file of its own (it needs none).
    write_file(
        &sandbox.stage_etc("pam_gateway/gateway.toml"),
        &common,
        0o600,
    );
    write_file(&shared.join("users.toml"), "", 0o600);
    write_file(
        &shared.join("daemon.toml"),
        &format!(
            "users_file = \"{}\"\n{common}",
            shared.join("users.toml").display()
        ),
        0o600,
    );
    World {
        fake,
        sandbox,
        shared,
        socket,
        state,
    }
}

/// The number in a prompt "… Tap 42 in Telegram and press Enter, …".
fn number_in(prompt: &str) -> u8 {
    prompt
        .split("Tap ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in the prompt {prompt:?}"))
}

/// The message with the buttons, as the fake holds it now.
fn approval_message(w: &World) -> Message {
    let sent = w
        .fake
        .wait_for_message(WAIT)
        .expect("the daemon sent no message");
    w.fake.message(sent.message_id).expect("message")
}

/// Taps `label` as `from` and waits until the daemon answered the tap.
fn tap(fake: &FakeTelegram, from: i64, m: &Message, label: &str) -> String {
    let id = fake.tap(from, m.message_id, &m.button_data(label));
    fake.wait_for_callback_answer(id, WAIT)
        .expect("the daemon did not answer the tap")
        .text
}

/// Another number than `n` among the buttons.
fn other_number(m: &Message, n: u8) -> String {
    m.buttons
        .iter()
        .flatten()
        .map(|(text, _)| text.clone())
        .find(|t| t.len() == 2 && *t != format!("{n:02}"))
        .expect("three numbers")
}

fn dump(w: &World, sshd: &Sshd, d: Option<&Daemon>, r: Option<&SshResult>) -> String {
    format!(
        "{}\n--- sshd\n{}\n--- syslog\n{}\n--- daemon\n{}",
        r.map(SshResult::dump).unwrap_or_default(),
        sshd.log(),
        w.sandbox.log(),
        d.map(Daemon::log_text).unwrap_or_default()
    )
}

fn assert_in(r: &SshResult, w: &World, sshd: &Sshd, d: Option<&Daemon>) {
    assert!(
        r.status.success() && r.stdout.contains(&format!("pgw-ssh-ok-42 {ALICE}")),
        "login failed\n{}",
        dump(w, sshd, d, Some(r))
    );
}

fn assert_refused(r: &SshResult, w: &World, sshd: &Sshd, d: Option<&Daemon>) {
    assert!(
        r.status.code() == Some(255) && !r.stdout.contains("pgw-ssh-ok"),
        "expected a refusal\n{}",
        dump(w, sshd, d, Some(r))
    );
}

/// [`world`] or [`world_waiting`]'s `w`, the daemon, and sshd with `recipe`.
fn with_daemon_and_sshd(w: World, recipe: Recipe) -> (World, Daemon, Sshd) {
    let d = start_daemon(&w);
    let sshd = Sshd::start(&w.sandbox, recipe);
    (w, d, sshd)
}

/// Starts ALICE's key login; returns it at the tap prompt, with the prompt
/// and the message with the buttons.
fn login_to_tap(w: &World, sshd: &Sshd) -> (SshLogin, String, Message) {
    let mut login = sshd.login(ALICE, &[], COMMAND);
    let p = login.next_prompt(WAIT).expect("prompt");
    (login, p, approval_message(w))
}

/// [`SshLogin::finish`] while the sandbox's syslog socket is drained: it
/// queues 10 datagrams (net.unix.max_dgram_qlen), and with a daemon in the
/// sandbox logging there too, sshd's PAM process would wait on a full one.
fn finish_draining(login: SshLogin, w: &World) -> SshResult {
    std::thread::scope(|s| {
        let finished = s.spawn(move || login.finish(WAIT));
        while !finished.is_finished() {
            w.sandbox.log();
            std::thread::sleep(Duration::from_millis(20));
        }
        finished.join().expect("finish")
    })
}

/// Types the code `m` carries: the login gets in.
fn type_code_and_get_in(mut login: SshLogin, m: &Message, w: &World, sshd: &Sshd, d: &Daemon) {
    login.answer(&find_code(&m.text).expect("code"));
    let r = finish_draining(login, w);
    assert_in(&r, w, sshd, Some(d));
}

/// Approval went away mid-login: the next prompt `p2` says so and asks for
/// the code, and the code `m` carries lets the login in.
fn typed_code_after_approval_gone(
    login: SshLogin,
    p2: &str,
    m: &Message,
    w: &World,
    sshd: &Sshd,
    d: &Daemon,
) {
    assert_eq!(
        p2,
        format!("({ALICE}@127.0.0.1) Approval no longer available. {CODE_PROMPT}")
    );
    type_code_and_get_in(login, m, w, sshd, d);
}

/// `kill -SIG pid`, which must succeed.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Starts an ssh login with the password given; returns it at the
/// second-factor prompt.
fn login_to_prompt(sshd: &Sshd) -> (SshLogin, String) {
    let mut login = sshd.login(ALICE, &[], COMMAND);
    login.expect_prompt("Password:", WAIT);
    login.answer(PASSWORD);
    let p = login.next_prompt(WAIT).expect("a second-factor prompt");
    (login, p)
}

/// The module's result line for ALICE, waited for.
fn wait_syslog(w: &World, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = w.sandbox.log();
        if log.contains(needle) {
            return log;
        }
        assert!(Instant::now() < deadline, "syslog lacks {needle:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_of(w: &World, user: &str) -> serde_json::Value {
    let path = fs::read_dir(&w.state)
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(user) && n.ends_with(".json"))
        })
        .unwrap_or_else(|| panic!("no state file for {user} in {}", w.state.display()));
    serde_json::from_str(&fs::read_to_string(path).expect("read state")).expect("json")
}

fn tap_prompt_of(p: &str) -> String {
    format!(
        "({ALICE}@127.0.0.1) Tap {} in Telegram and press Enter, or type the code: ",
        number_in(p)
    )
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn tap_then_enter_gets_in() {
    let (w, d, sshd) = with_daemon_and_sshd(world(""), Recipe::PasswordAndCode);
    let (mut login, p) = login_to_prompt(&sshd);
    assert_eq!(p, tap_prompt_of(&p), "{}", dump(&w, &sshd, Some(&d), None));
    let n = number_in(&p);
    let m = approval_message(&w);
    assert_eq!(m.chat_id, CHAT);
    for part in [
        &format!("{ALICE}@"),
        "Service: sshd",
        "From: 127.0.0.1",
        "Tap the number your login prompt shows",
    ] {
        assert!(m.text.contains(part), "{part:?} not in {:?}", m.text);
    }
    assert!(
        find_code(&m.text).is_some(),
        "the code is in the message too"
    );
    let labels: Vec<&str> = m
        .buttons
        .iter()
        .flatten()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels.contains(&format!("{n:02}").as_str()) && labels.contains(&"Not me"));

    tap(&w.fake, CHAT, &m, &format!("{n:02}"));
    login.answer("");
    let r = login.finish(WAIT);
    assert_in(&r, &w, &sshd, Some(&d));
    assert_eq!(r.prompts.len(), 2, "{}", r.dump());
    let log = wait_syslog(&w, "result=success");
    assert!(
        log.contains("gateway=telegram result=success reason=\"approved in Telegram")
            && log.contains("method=approved"),
        "{log}"
    );
    let code = find_code(&m.text).expect("code");
    assert!(!log.contains(&code), "code in syslog");
    assert!(!d.log_text().contains(&code), "code in the daemon's log");
    let edit = w.fake.wait_for_edit(m.message_id, WAIT).expect("edited");
    assert!(edit.after.buttons.is_empty(), "buttons gone: {edit:?}");
    assert!(
        edit.after.text.to_lowercase().contains("approved"),
        "{:?}",
        edit.after.text
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enter_then_tap_gets_in_and_a_strangers_tap_does_nothing() {
    let (w, d, sshd) = with_daemon_and_sshd(world(""), Recipe::KeyAndCode);
    let (mut login, p, m) = login_to_tap(&w, &sshd);
    let n = number_in(&p);
    login.answer("");
    // The module waits (up to [approve] wait = 10 s). A forwarded message
    // tapped by someone else approves nothing; then the user taps.
    std::thread::sleep(Duration::from_millis(500));
    tap(&w.fake, STRANGER, &m, &format!("{n:02}"));
    tap(&w.fake, CHAT, &m, &format!("{n:02}"));
    let r = login.finish(WAIT);
    assert_in(&r, &w, &sshd, Some(&d));
    assert_eq!(r.prompts.len(), 1, "no second prompt: {}", r.dump());
    wait_syslog(&w, "method=approved");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_wrong_number_is_refused_and_counted() {
    let (w, d, sshd) = with_daemon_and_sshd(world("\n[code]\nattempts = 2\n"), Recipe::KeyAndCode);
    let (mut login, p, m) = login_to_tap(&w, &sshd);
    tap(&w.fake, CHAT, &m, &other_number(&m, number_in(&p)));
    login.answer("");
    // The offer is over: only the typed code now (OpenSSH shows the error
    // message with the next prompt).
    let p2 = login.next_prompt(WAIT).expect("a second prompt");
    assert_eq!(
        p2,
        format!("({ALICE}@127.0.0.1) Wrong number tapped. 1 attempt left.\n{CODE_PROMPT}")
    );
    login.answer("000000");
    let r = login.finish(WAIT);
    assert_refused(&r, &w, &sshd, Some(&d));
    wait_syslog(&w, "result=denied-max-tries reason=\"2 wrong code(s)\"");
    let s = state_of(&w, ALICE);
    assert_eq!(s["failures"], 2, "the wrong number counted: {s}");
    let edit = w.fake.wait_for_edit(m.message_id, WAIT).expect("edited");
    assert!(edit.after.buttons.is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn not_me_refuses_locks_and_alerts_the_admins() {
    let (w, d, sshd) = with_daemon_and_sshd(world(""), Recipe::KeyAndCode);
    not_me_refuses_locks_and_alerts(&w, &d, &sshd);
}

/// "Not me" under ALICE's message: refused, locked in her state file, the
/// admin alerted; her next login sends nothing and is refused.
fn not_me_refuses_locks_and_alerts(w: &World, d: &Daemon, sshd: &Sshd) {
    let (mut login, _, m) = login_to_tap(w, sshd);
    tap(&w.fake, CHAT, &m, "Not me");
    login.answer("");
    let r = finish_draining(login, w);
    assert_refused(&r, w, sshd, Some(d));
    wait_syslog(w, "result=denied-not-me");
    let s = state_of(w, ALICE);
    assert!(s["not_me"].is_u64(), "locked: {s}");
    w.fake
        .wait_for_sent_to(ADMIN, WAIT)
        .unwrap_or_else(|| panic!("no alert to {ADMIN}: {:?}", w.fake.sent()));
    // The next login sends nothing and is refused.
    let before = w.fake.sent().len();
    let r = finish_draining(sshd.login(ALICE, &[], COMMAND), w);
    assert_refused(&r, w, sshd, Some(d));
    wait_syslog(w, "result=denied-locked-out");
    let to_user = w.fake.sent()[before..]
        .iter()
        .filter(|s| s.chat_id == CHAT.to_string())
        .count();
    assert_eq!(to_user, 0, "nothing sent during the lock");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_typed_code_still_works_with_approval_on() {
    let (w, d, sshd) = with_daemon_and_sshd(world(""), Recipe::KeyAndCode);
    let (login, p, m) = login_to_tap(&w, &sshd);
    assert!(p.contains("Tap "), "{p}");
    type_code_and_get_in(login, &m, &w, &sshd, &d);
    wait_syslog(&w, "reason=\"code accepted\"");
    let edit = w.fake.wait_for_edit(m.message_id, WAIT).expect("edited");
    assert!(edit.after.buttons.is_empty());
    // A stale tap now does nothing but say why.
    let why = tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
    assert!(!why.is_empty(), "a stale button says why");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn without_the_daemon_the_code_is_sent_directly() {
    let w = world("");
    let sshd = Sshd::start(&w.sandbox, Recipe::KeyAndCode);
    let mut login = sshd.login(ALICE, &[], COMMAND);
    let p = login.next_prompt(WAIT).expect("prompt");
    assert_eq!(p, format!("({ALICE}@127.0.0.1) {CODE_PROMPT}"));
    let sent = w.fake.wait_for_message(WAIT).expect("sent directly");
    assert!(sent.reply_markup.is_none(), "no buttons");
    login.answer(&find_code(&sent.text).expect("code"));
    let r = login.finish(WAIT);
    assert_in(&r, &w, &sshd, None);
    let log = wait_syslog(&w, "result=success");
    assert_eq!(
        log.matches("approval: pam-gatewayd is not running").count(),
        1,
        "once per login: {log}"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_daemon_killed_mid_login_leaves_the_typed_code() {
    let (w, mut d, sshd) = with_daemon_and_sshd(world(""), Recipe::KeyAndCode);
    let (mut login, _, m) = login_to_tap(&w, &sshd);
    d.kill();
    login.answer("");
    let p2 = login.next_prompt(WAIT).expect("asked again");
    typed_code_after_approval_gone(login, &p2, &m, &w, &sshd, &d);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_daemon_restarted_between_send_and_tap_leaves_the_typed_code() {
    let (w, mut d, sshd) = with_daemon_and_sshd(world(""), Recipe::KeyAndCode);
    let (mut login, p, m) = login_to_tap(&w, &sshd);
    d.kill();
    d.spawn();
    // The new daemon does not know the nonce: the tap approves nothing.
    tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
    login.answer("");
    let p2 = login.next_prompt(WAIT).expect("asked again");
    typed_code_after_approval_gone(login, &p2, &m, &w, &sshd, &d);
    let log = w.sandbox.log();
    assert!(!log.contains("method=approved"), "{log}");
}

/// Appends what `pipe` gives to `sink` (on a thread of its own) until it
/// closes.
fn drain_into(
    mut pipe: impl std::io::Read + Send + 'static,
    sink: std::sync::Arc<std::sync::Mutex<String>>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

/// What [`drain_into`] gathered so far.
fn text_of(out: &std::sync::Mutex<String>) -> String {
    out.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Waits up to 60 s for `child` to exit; if it does not, panics with what
/// `hangs` says.
fn wait_exit(child: &mut Child, hangs: impl Fn() -> String) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        assert!(Instant::now() < deadline, "{}", hangs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// sudo or su run by ALICE (real uid hers: the hostile caller), its
/// prompts read from stdout and stderr as they come.
struct CallerRun {
    /// "sudo" or "su": the process the module runs in, the PAM service.
    client: &'static str,
    password_prompt: &'static str,
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
    /// Holds 0 once the command ran as root.
    mark: PathBuf,
}

impl CallerRun {
    /// `sudo -S -- /bin/sh -c 'id -u > MARK'` through the repo's
    /// pam.d/sudo.
    fn sudo(w: &World) -> CallerRun {
        w.sandbox.install_service("sudo", "sudo");
        let mark = w.sandbox.path().join("out/ran");
        let mut cmd = w.sandbox.sudo_as_alice(&mark);
        // What a hostile caller could set: never read.
        cmd.env("SUDO_COMMAND", "/bin/true harmless");
        CallerRun::spawn("sudo", "password for", cmd, mark)
    }

    /// `su -c 'id -u > MARK' root` through the su service of
    /// `Sandbox::install_su_to_root` (root's password, then the module;
    /// root enrolled at CHAT).
    fn su(w: &World) -> CallerRun {
        w.sandbox.install_su_to_root();
        let mark = w.sandbox.path().join("out/ran");
        let cmd = w.sandbox.as_alice(&sandbox::su_argv(&mark));
        CallerRun::spawn("su", "Password: ", cmd, mark)
    }

    fn spawn(
        client: &'static str,
        password_prompt: &'static str,
        mut cmd: Command,
        mark: PathBuf,
    ) -> CallerRun {
        let mut child = cmd
            .env("LANG", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect(client);
        let stdin = child.stdin.take();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        drain_into(child.stdout.take().expect("stdout"), seen.clone());
        drain_into(child.stderr.take().expect("stderr"), seen.clone());
        CallerRun {
            client,
            password_prompt,
            child,
            stdin,
            seen,
            mark,
        }
    }

    /// The password typed: at the tap prompt (the output from there on).
    fn at_tap(mut self) -> (CallerRun, String) {
        self.wait_for(self.password_prompt);
        self.type_line(PASSWORD);
        let p = self.wait_for("Tap ");
        (self, p)
    }

    fn output(&self) -> String {
        text_of(&self.seen)
    }

    /// Waits until `text` was printed; returns the output from there on.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.output();
            if let Some(i) = s.rfind(text) {
                return s[i..].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} from {}:\n{s}",
                self.client
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("type");
    }

    /// The host pid of the sudo or su process (the module runs in it).
    fn client_pid(&self) -> u32 {
        let comm = format!("({})", self.client);
        let mut family = vec![self.child.id()];
        for _ in 0..8 {
            for entry in fs::read_dir("/proc").expect("proc").flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(close) = stat.rfind(')') else {
                    continue;
                };
                let ppid = stat[close + 1..]
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid.is_some_and(|pp| family.contains(&pp)) && !family.contains(&pid) {
                    if stat.contains(&comm) {
                        return pid;
                    }
                    family.push(pid);
                }
            }
        }
        panic!("no {} process under {}", self.client, self.child.id());
    }

    /// Closes stdin, waits for the exit; whether the command ran as root.
    fn finish(mut self) -> (bool, String) {
        drop(self.stdin.take());
        let status = wait_exit(&mut self.child, || {
            format!("{} did not exit:\n{}", self.client, text_of(&self.seen))
        });
        let ran = fs::read_to_string(&self.mark).is_ok_and(|t| t.trim() == "0");
        (status.success() && ran, self.output())
    }
}

/// `run` to its tap prompt; the number it shows tapped in the message by
/// the enrolled user, then Enter: asserts the command ran (else the
/// output, syslog and the daemon's log) and that the module logged the
/// approval for the service. Returns the message.
fn approved_by_a_tap(w: &World, d: &Daemon, run: CallerRun) -> Message {
    let (mut run, p) = run.at_tap();
    let m = approval_message(w);
    assert_eq!(m.chat_id, CHAT);
    tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
    run.type_line("");
    let client = run.client;
    let (ran, out) = run.finish();
    assert!(
        ran,
        "{client} did not run the command:\n{out}\n--- syslog\n{}\n--- daemon\n{}",
        w.sandbox.log(),
        d.log_text()
    );
    let log = wait_syslog(w, &format!("service={client} "));
    assert!(log.contains("method=approved"), "{log}");
    m
}

/// sudo has no command for PAM modules: the message names the service and
/// the user, never a command the caller could have made up.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sudo_by_an_unprivileged_user_is_approved_by_a_tap() {
    let w = world("");
    let d = start_daemon(&w);
    let m = approved_by_a_tap(&w, &d, CallerRun::sudo(&w));
    assert!(m.text.contains("Service: sudo"), "{}", m.text);
    assert!(m.text.contains(&format!("{ALICE}@")), "{}", m.text);
    assert!(!m.text.contains("harmless"), "{}", m.text);
}

/// Under su the login is the target's (root, enrolled) and PAM_RUSER the
/// caller (util-linux su names it by the real uid, not by getlogin()): the
/// message names both, so that the user can tell who asks (and say "Not
/// me").
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn su_by_an_unprivileged_user_is_approved_by_a_tap() {
    let w = world("");
    let d = start_daemon(&w);
    let m = approved_by_a_tap(&w, &d, CallerRun::su(&w));
    for part in [
        "Login request: root@",
        "\nService: su\n",
        "\nFrom: local\n",
        &format!("\nRequested by: {ALICE}\n"),
    ] {
        assert!(m.text.contains(part), "{part:?} not in {:?}", m.text);
    }
}

/// The caller stops sudo (and with it the module) while it waits for a
/// tap that never comes, far past the wait and its margin, then lets it
/// go on: it is asked again, and without the code nobody gets in.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn under_sudo_a_stopped_wait_lets_nobody_in() {
    let w = world_waiting(2, "");
    let d = start_daemon(&w);
    let (mut sudo, _) = CallerRun::sudo(&w).at_tap();
    approval_message(&w);
    sudo.type_line("");
    let pid = sudo.client_pid();
    signal(pid, "STOP");
    std::thread::sleep(Duration::from_secs(8));
    signal(pid, "CONT");
    // Asked again (no tap came); nobody types the code.
    sudo.wait_for("No tap yet. Tap ");
    let (ran, out) = sudo.finish();
    let log = w.sandbox.log();
    assert!(!ran, "the caller got root:\n{out}\n{log}");
    assert!(!log.contains("result=success"), "{log}");
    assert!(!log.contains("result=ignored"), "{log}");
    drop(d);
}

/// A daemon that stops answering (SIGSTOP) while the module waits: the
/// wait times out and the typed code lets the user in.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_stalled_daemon_times_out_into_the_typed_code() {
    let (w, d, sshd) = with_daemon_and_sshd(world_waiting(2, ""), Recipe::KeyAndCode);
    let (mut login, _, m) = login_to_tap(&w, &sshd);
    let pid = d.child.as_ref().expect("running").id();
    signal(pid, "STOP");
    login.answer("");
    let p2 = login.next_prompt(WAIT).expect("asked again");
    signal(pid, "CONT");
    typed_code_after_approval_gone(login, &p2, &m, &w, &sshd, &d);
    wait_syslog(&w, "approval: pam-gatewayd did not answer in time");
}

/// pamtester logins next to one daemon: the harness's namespace
/// (pam_harness::PamEnv) sees the host's paths, so the daemon's socket and
/// the state directory are simply the env's.
mod many {
    use super::*;
    use pgw_test_support::pam_harness::{NUMBERED_ACCOUNTS, PamEnv, pamtester_command};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    /// user{i}'s private chat.
    fn chat_of(i: usize) -> i64 {
        900_000_000 + i as i64
    }

    struct Env {
        pam: PamEnv,
        fake: FakeTelegram,
        daemon: Daemon,
        _run: pgw_test_support::pam_harness::TempDir,
        /// What the module logged so far, drained by a thread as the
        /// logins run: a full log socket (max_dgram_qlen is 10) would
        /// block them.
        log: Arc<Mutex<String>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Env {
        fn log(&self) -> String {
            std::thread::sleep(Duration::from_millis(100));
            self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
    }

    impl Drop for Env {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn env(wait: u64, extra: &str) -> Env {
        env_with(wait, extra, false)
    }

    /// `hosted`: the daemon runs the logins (`approve::hosted`): it runs in
    /// the env's namespace (its accounts, its /dev/log) and the stack line
    /// names its socket.
    fn env_with(wait: u64, extra: &str, hosted: bool) -> Env {
        pgw_test_support::pam_harness::require_root_tools();
        let mut chats: Vec<i64> = (0..NUMBERED_ACCOUNTS).map(chat_of).collect();
        chats.push(ADMIN);
        let fake = FakeTelegram::start(FakeOptions {
            chats,
            ..FakeOptions::default()
        })
        .expect("fake");
        let users: String = (0..NUMBERED_ACCOUNTS)
            .map(|i| format!("[users.user{i}]\ntelegram = \"{}\"\n", chat_of(i)))
            .collect();
        // The socket's directory: root's, 0700, next to the env's files.
        let run = pgw_test_support::pam_harness::TempDir::new("approve-run");
        let socket = run.path().join("d.sock");
        let body = format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 5\n\
             connect_timeout = 2\n\n[approve]\nenabled = true\nsocket = \"{}\"\n\
             admin_chats = [{ADMIN}]\nwait = {wait}\n{extra}",
            fake.url(),
            socket.display()
        );
        let pam = PamEnv::with_files(&body, &users);
        let mut daemon = Daemon::new(
            daemon::binary(),
            pam.config.clone(),
            socket.clone(),
            pam.dir.path().join("daemon.log"),
        );
        if hosted {
            pam.set_stack(&format!(
                "auth required {{module}} config={{config}} debug socket={}\n",
                socket.display()
            ));
            let cmd = pam.bwrap();
            daemon.prefix = std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|s| s.to_string_lossy().into_owned())
                .chain(["--bind".into(), pam.log_path.display().to_string()])
                .chain(["/dev/log".into(), "--die-with-parent".into()])
                .collect();
        }
        daemon.spawn();
        let log = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sock = pam.log_sock.try_clone().expect("log socket");
        let (sink, stopped) = (Arc::clone(&log), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                    l.push('\n');
                }
            }
        });
        Env {
            pam,
            fake,
            daemon,
            _run: run,
            log,
            stop,
        }
    }

    /// One pamtester login whose output the test reads as it comes.
    struct Login {
        child: Child,
        stdin: Option<std::process::ChildStdin>,
        out: Arc<Mutex<String>>,
    }

    impl Login {
        fn start(env: &Env, user: &str) -> Login {
            Login::start_with(env, user, &[])
        }

        /// [`Login::start`] with PAM items set through pamtester's `-I`.
        fn start_with(env: &Env, user: &str, items: &[(&str, &str)]) -> Login {
            let mut cmd = env.pam.bwrap();
            cmd.arg("--bind")
                .arg(&env.pam.log_path)
                .arg("/dev/log")
                .arg("--die-with-parent")
                .args(pamtester_command())
                .arg("-v")
                .args(items.iter().map(|(k, v)| format!("-I{k}={v}")))
                .args(["pgw", user, "authenticate"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("pamtester");
            let out = Arc::new(Mutex::new(String::new()));
            for pipe in [
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                Box::new(child.stderr.take().expect("stderr")),
            ] {
                drain_into(pipe, Arc::clone(&out));
            }
            let stdin = child.stdin.take();
            Login { child, stdin, out }
        }

        fn output(&self) -> String {
            text_of(&self.out)
        }

        /// Waits for the prompt; returns its number.
        fn number(&self, env: &Env) -> u8 {
            let deadline = Instant::now() + WAIT;
            loop {
                let out = self.output();
                if out.contains("Tap ") && out.contains("or type the code: ") {
                    return number_in(&out);
                }
                assert!(
                    Instant::now() < deadline,
                    "no tap prompt:\n{out}\n--- syslog\n{}\n--- daemon\n{}",
                    env.log(),
                    env.daemon.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn running(&mut self) -> bool {
            matches!(self.child.try_wait(), Ok(None))
        }

        fn enter(&mut self) {
            let stdin = self.stdin.as_mut().expect("stdin");
            writeln!(stdin).expect("Enter");
        }

        /// Closes stdin, waits for the exit; true when authenticated.
        fn finish(mut self, env: &Env) -> (bool, String) {
            drop(self.stdin.take());
            let status = wait_exit(&mut self.child, || {
                format!(
                    "pamtester hangs:\n{}\n--- syslog\n{}\n--- daemon\n{}",
                    text_of(&self.out),
                    env.log(),
                    env.daemon.log_text()
                )
            });
            std::thread::sleep(Duration::from_millis(50));
            (status.success(), self.output())
        }
    }

    /// The message the fake delivered to `chat`, waited for.
    fn message_to(fake: &FakeTelegram, chat: i64) -> Message {
        let s = fake
            .wait_for_sent_to(chat, WAIT)
            .unwrap_or_else(|| panic!("nothing sent to {chat}"));
        fake.message(s.message_id).expect("message")
    }

    /// PAM_RUSER (which su sets to the account running it) reaches the
    /// message through real libpam and the daemon; the tap still decides.
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn the_message_names_pam_ruser_when_another_account_asks() {
        let env = env(10, "");
        let mut login = Login::start_with(&env, "user0", &[("ruser", "user1")]);
        let n = login.number(&env);
        let m = message_to(&env.fake, chat_of(0));
        assert!(
            m.text.contains("Login request: user0@") && m.text.contains("\nRequested by: user1\n"),
            "{}",
            m.text
        );
        login.enter();
        tap(&env.fake, chat_of(0), &m, &format!("{n:02}"));
        let (ok, out) = login.finish(&env);
        assert!(ok, "{out}\n--- syslog\n{}", env.log());
    }

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn twenty_users_at_once_each_approved_by_their_own_tap_only() {
        twenty_users_at_once(false);
    }

    /// The same, each login run by the daemon.
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn twenty_users_at_once_run_by_the_daemon_each_approved_by_their_own_tap_only() {
        twenty_users_at_once(true);
    }

    fn twenty_users_at_once(hosted: bool) {
        let env = env_with(10, "", hosted);
        let mut logins: Vec<Login> = (0..NUMBERED_ACCOUNTS)
            .map(|i| Login::start(&env, &format!("user{i}")))
            .collect();
        let numbers: Vec<u8> = logins.iter().map(|l| l.number(&env)).collect();
        let messages: Vec<Message> = (0..NUMBERED_ACCOUNTS)
            .map(|i| message_to(&env.fake, chat_of(i)))
            .collect();
        // Everyone presses Enter; then each user first taps the right
        // number under the next user's message (it is not theirs: nothing
        // happens), then their own.
        for l in &mut logins {
            l.enter();
        }
        for i in 0..NUMBERED_ACCOUNTS {
            let j = (i + 1) % NUMBERED_ACCOUNTS;
            tap(
                &env.fake,
                chat_of(i),
                &messages[j],
                &format!("{:02}", numbers[j]),
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        for (i, l) in logins.iter_mut().enumerate() {
            assert!(
                l.running(),
                "user{i}'s login ended on someone else's tap:\n{}",
                l.output()
            );
        }
        for i in 0..NUMBERED_ACCOUNTS {
            tap(
                &env.fake,
                chat_of(i),
                &messages[i],
                &format!("{:02}", numbers[i]),
            );
        }
        let results: Vec<(bool, String)> = logins.into_iter().map(|l| l.finish(&env)).collect();
        let log = env.log();
        for (i, (ok, out)) in results.iter().enumerate() {
            assert!(
                ok,
                "user{i} not let in:\n{out}\n--- syslog\n{log}\n--- daemon\n{}",
                env.daemon.log_text()
            );
            let line = format!("user=user{i} service=pgw");
            assert!(
                log.lines().any(|l| l.contains(&line)
                    && l.contains("result=success")
                    && l.contains("method=approved")),
                "user{i}: {log}"
            );
        }
        assert_eq!(log.matches("method=approved").count(), NUMBERED_ACCOUNTS);
        let run_by = "the login was run by pam-gatewayd: Success";
        assert_eq!(
            log.matches(run_by).count(),
            if hosted { NUMBERED_ACCOUNTS } else { 0 },
            "{log}"
        );
        // Each message ended "approved", once.
        for m in &messages {
            let e = env.fake.wait_for_edit(m.message_id, WAIT).expect("edited");
            assert!(e.after.buttons.is_empty(), "{e:?}");
            assert!(e.after.text.to_lowercase().contains("approved"), "{e:?}");
        }
    }

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn twenty_logins_of_one_user_keep_the_limits() {
        twenty_logins_of_one_user(false);
    }

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn twenty_logins_of_one_user_run_by_the_daemon_keep_the_limits() {
        twenty_logins_of_one_user(true);
    }

    fn twenty_logins_of_one_user(hosted: bool) {
        let env = env_with(1, "[limits]\ncodes_per_window = 5\nwindow = 900\n", hosted);
        // Twenty logins at once, each pressing Enter and then giving up.
        let mut logins: Vec<Login> = (0..20).map(|_| Login::start(&env, "user0")).collect();
        for l in &mut logins {
            let _ = writeln!(l.stdin.as_mut().expect("stdin"));
        }
        let results: Vec<(bool, String)> = logins.into_iter().map(|l| l.finish(&env)).collect();
        assert!(results.iter().all(|(ok, _)| !ok), "nobody gets in");
        let to_user = env
            .fake
            .sent()
            .iter()
            .filter(|s| s.chat_id == chat_of(0).to_string())
            .count();
        assert_eq!(to_user, 5, "codes_per_window holds with approval on");
        let log = env.log();
        assert_eq!(
            log.matches("result=denied-rate-limited").count(),
            15,
            "{log}"
        );
        if hosted {
            assert_eq!(
                log.matches("the login was run by pam-gatewayd").count(),
                20,
                "{log}"
            );
        }
    }
}

/// Logins pam-gatewayd runs (`approve::hosted`): the daemon in a namespace
/// of the sandbox (its /etc, accounts and /dev/log) with the module's own
/// gateway.toml, and the module's stack lines naming the daemon's socket
/// (`socket=`, and `debug`: the module says who ran the login). The PAM
/// process then holds only the conversation.
mod hosted {
    use super::*;
    use pgw_test_support::pam_harness::CHAT;

    /// pam-gatewayd in the sandbox with /etc/pam_gateway/gateway.toml.
    fn start_hosting(w: &World) -> Daemon {
        let cmd = w.sandbox.command("pam-gatewayd");
        let mut prefix: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(prefix.pop().as_deref(), Some("pam-gatewayd"));
        let mut d = Daemon::new(
            daemon::binary(),
            PathBuf::from("/etc/pam_gateway/gateway.toml"),
            w.socket.clone(),
            w.shared.join("daemon.log"),
        );
        d.prefix = prefix;
        d.spawn();
        d
    }

    /// The sandbox's stack for `service`, the module's lines naming the
    /// daemon's socket.
    fn name_the_socket(w: &World, service: &str) {
        let path = w.sandbox.path().join("pam.d").join(service);
        let text = fs::read_to_string(&path).expect("stack");
        assert!(text.contains("pam_gateway.so"), "{text}");
        let arg = format!("pam_gateway.so debug socket={}", w.socket.display());
        write_file(&path, &text.replace("pam_gateway.so", &arg), 0o644);
    }

    fn sshd_hosted(w: &World) -> Sshd {
        let sshd = Sshd::start(&w.sandbox, Recipe::KeyAndCode);
        name_the_socket(w, "sshd");
        sshd
    }

    const RUN_BY: &str = "the login was run by pam-gatewayd";

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn tap_then_enter_gets_in() {
        let w = world("");
        let d = start_hosting(&w);
        let sshd = sshd_hosted(&w);
        let (mut login, p, m) = login_to_tap(&w, &sshd);
        assert_eq!(p, tap_prompt_of(&p), "{}", dump(&w, &sshd, Some(&d), None));
        assert!(m.text.contains("Service: sshd"), "{}", m.text);
        tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
        login.answer("");
        let r = finish_draining(login, &w);
        assert_in(&r, &w, &sshd, Some(&d));
        let log = wait_syslog(&w, RUN_BY);
        assert!(log.contains(&format!("{RUN_BY}: Success")), "{log}");
        assert!(
            log.contains("result=success") && log.contains("method=approved"),
            "{log}"
        );
        let code = find_code(&m.text).expect("code");
        assert!(!log.contains(&code), "code in syslog");
        assert!(!d.log_text().contains(&code), "code in the daemon's log");
        let edit = w.fake.wait_for_edit(m.message_id, WAIT).expect("edited");
        assert!(edit.after.buttons.is_empty(), "buttons gone: {edit:?}");
    }

    /// A wrong code counts in the state file as without the daemon; the
    /// right one then gets in.
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn a_wrong_code_counts_and_the_right_one_gets_in() {
        let w = world("");
        let d = start_hosting(&w);
        let sshd = sshd_hosted(&w);
        let (mut login, p, m) = login_to_tap(&w, &sshd);
        login.answer("000000");
        let p2 = login.next_prompt(WAIT).expect("asked again");
        assert_eq!(
            p2,
            format!(
                "({ALICE}@127.0.0.1) Wrong code. 2 attempts left.\n{}",
                &p[p.find("Tap").unwrap_or(0)..]
            ),
            "{}",
            dump(&w, &sshd, Some(&d), None)
        );
        assert_eq!(state_of(&w, ALICE)["failures"], 1);
        type_code_and_get_in(login, &m, &w, &sshd, &d);
        let log = wait_syslog(&w, RUN_BY);
        assert!(log.contains("result=success"), "{log}");
    }

    /// The daemon killed at the prompt: the module finishes the login
    /// itself with the code that went out (the Enter it was sent first).
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn the_daemon_killed_mid_login_leaves_the_typed_code() {
        let w = world("");
        let mut d = start_hosting(&w);
        let sshd = sshd_hosted(&w);
        let (mut login, _, m) = login_to_tap(&w, &sshd);
        d.kill();
        login.answer("");
        let p2 = login.next_prompt(WAIT).expect("asked again");
        typed_code_after_approval_gone(login, &p2, &m, &w, &sshd, &d);
        let log = wait_syslog(&w, "result=success");
        assert!(
            log.contains("the module finishes the login with the code that went out"),
            "{log}"
        );
        assert!(!log.contains(RUN_BY), "{log}");
    }

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn not_me_refuses_locks_and_alerts_the_admins() {
        let w = world("");
        let d = start_hosting(&w);
        let sshd = sshd_hosted(&w);
        not_me_refuses_locks_and_alerts(&w, &d, &sshd);
        let log = wait_syslog(&w, &format!("{RUN_BY}: MaxTries"));
        assert!(log.contains(&format!("{RUN_BY}: AuthErr")), "{log}");
    }

    /// Restarted between the send and the tap: the login is the module's
    /// now, the new daemon does not know the nonce, the code still works.
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn the_daemon_restarted_between_send_and_tap_leaves_the_typed_code() {
        let w = world("");
        let mut d = start_hosting(&w);
        let sshd = sshd_hosted(&w);
        let (mut login, p, m) = login_to_tap(&w, &sshd);
        d.kill();
        d.spawn();
        tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
        login.answer("");
        let p2 = login.next_prompt(WAIT).expect("asked again");
        typed_code_after_approval_gone(login, &p2, &m, &w, &sshd, &d);
        let log = wait_syslog(&w, "result=success");
        assert!(!log.contains("method=approved"), "{log}");
        assert!(
            log.contains("the module finishes the login with the code that went out"),
            "{log}"
        );
    }

    /// A daemon started with another file declines: the module runs the
    /// login itself (and still asks that daemon for the tap).
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn a_daemon_of_another_config_declines_and_the_module_runs_the_login() {
        let w = world("");
        let d = start_daemon(&w);
        let sshd = sshd_hosted(&w);
        let (mut login, p, m) = login_to_tap(&w, &sshd);
        tap(&w.fake, CHAT, &m, &format!("{:02}", number_in(&p)));
        login.answer("");
        let r = finish_draining(login, &w);
        assert_in(&r, &w, &sshd, Some(&d));
        let log = wait_syslog(&w, "method=approved");
        assert!(
            log.contains("pam-gatewayd does not run this login: it serves"),
            "{log}"
        );
        assert!(!log.contains(RUN_BY), "{log}");
    }

    fn caller(w: &World, service: &str) -> CallerRun {
        let mark = w.sandbox.path().join("out/ran");
        if service == "sudo" {
            w.sandbox.install_service("sudo", "sudo");
            name_the_socket(w, "sudo");
            CallerRun::spawn("sudo", "password for", w.sandbox.sudo_as_alice(&mark), mark)
        } else {
            // su_world installed the service (the daemon's /etc is a copy
            // made when it started).
            name_the_socket(w, "su");
            let cmd = w.sandbox.as_alice(&sandbox::su_argv(&mark));
            CallerRun::spawn("su", "Password: ", cmd, mark)
        }
    }

    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn sudo_by_an_unprivileged_user_is_approved_by_a_tap() {
        let w = world("");
        let d = start_hosting(&w);
        let m = approved_by_a_tap(&w, &d, caller(&w, "sudo"));
        assert!(m.text.contains("Service: sudo"), "{}", m.text);
        wait_syslog(&w, RUN_BY);
    }

    /// The caller of su stops it (and the module) at the prompt past the
    /// code's lifetime and the daemon's patience, then types the right
    /// code: the daemon has ended the login, and the module says so
    /// instead of judging the code itself. Nobody gets in.
    #[test]
    #[ignore = "needs root; run as root with --include-ignored (make test does)"]
    fn under_su_a_stopped_module_gets_nobody_in() {
        let w = world("\n[code]\nttl = 30\n");
        w.sandbox.install_su_to_root();
        let d = start_hosting(&w);
        let (mut su, _) = caller(&w, "su").at_tap();
        let m = approval_message(&w);
        let pid = su.client_pid();
        signal(pid, "STOP");
        // ttl (30 s) and the daemon's 10 s, and a margin.
        std::thread::sleep(Duration::from_secs(45));
        signal(pid, "CONT");
        su.type_line(&find_code(&m.text).expect("code"));
        let (ran, out) = su.finish();
        let log = w.sandbox.log();
        assert!(!ran, "the caller got root:\n{out}\n{log}\n{}", d.log_text());
        assert!(!log.contains("result=success"), "{log}");
        assert!(log.contains("result=conversation-error"), "{log}");
        assert!(log.contains(&format!("{RUN_BY}: ConvErr")), "{log}");
    }
}
