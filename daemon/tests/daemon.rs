//! The real `pam-gatewayd` binary against the loopback fake Bot API, with
//! its socket in a private temp dir, spoken to with raw frames of
//! `pam_gateway_core::approve::wire`.
//!
//! Root: the daemon trusts root-owned files only, serves root peers only,
//! and the peer tests switch to uid 65534 (setpriv).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pam_gateway_core::approve::wire::{
    ApprovalState, AskStyle, BlockKind, DaemonStatus, ErrorKind, Final, HostMsg, HostReply,
    MAX_FRAME, PamResult, Request, Reserve, Response, TextUpdate, VERSION, read_frame, write_frame,
};
use pam_gateway_core::approve::{Approver, Client};
use pgw_test_support::daemon::{DaemonProcess, WAIT};
use pgw_test_support::fake_telegram::{CallbackAnswer, FakeOptions, FakeTelegram, Message, Mode};
use pgw_test_support::pam_harness::{CHAT, TOKEN, TempDir, write_file};
use pgw_test_support::root;

const ADMIN: i64 = 700_000_001;
const OTHER: i64 = 555_000_111;

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, ADMIN, OTHER],
        ..FakeOptions::default()
    })
    .expect("fake Telegram")
}

/// A running daemon in a private directory; killed on drop (before the
/// directory goes).
struct Daemon {
    process: DaemonProcess,
    dir: TempDir,
}

impl std::ops::Deref for Daemon {
    type Target = DaemonProcess;
    fn deref(&self) -> &DaemonProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut DaemonProcess {
        &mut self.process
    }
}

impl Daemon {
    fn config_text(dir: &Path, fake: &FakeTelegram, extra: &str) -> String {
        format!(
            "users_file = \"{users}\"\nstate_dir = \"{state}\"\n\n[telegram]\nbot_token = \"{TOKEN}\"\n\
             api_url = \"{url}\"\ntimeout = 5\n\n{extra}",
            users = dir.join("users.toml").display(),
            state = dir.join("state").display(),
            url = fake.url(),
        )
    }

    fn approve_section(socket: &Path) -> String {
        format!(
            "[approve]\nenabled = true\nsocket = \"{}\"\nadmin_chats = [{ADMIN}]\n",
            socket.display()
        )
    }

    fn start(fake: &FakeTelegram) -> Daemon {
        root::require("the daemon tests (pam-gatewayd trusts root-owned files only)");
        let dir = TempDir::new("daemon");
        let socket = dir.0.join("run").join("pgd.sock");
        let text = Self::config_text(&dir.0, fake, &Self::approve_section(&socket));
        Self::start_with(dir, &text)
    }

    fn start_with(dir: TempDir, text: &str) -> Daemon {
        let config = dir.0.join("gateway.toml");
        write_file(&config, text, 0o600);
        write_file(&dir.0.join("users.toml"), "", 0o644);
        let socket = dir.0.join("run").join("pgd.sock");
        let log = dir.0.join("daemon.log");
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_pam-gatewayd"));
        Daemon {
            process: DaemonProcess::start(bin, config, socket, log),
            dir,
        }
    }

    /// A new connection to the daemon, its reads bounded by [`WAIT`].
    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        s
    }

    fn ask(&self, request: &Request) -> Response {
        let mut s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        write_frame(&mut s, request).expect("write");
        read_frame(&mut s).expect("read")
    }

    /// A fresh nonce, approved for alice (expiring in `expires` s): the
    /// nonce, the message id and the message as the fake holds it.
    fn approval(&self, fake: &FakeTelegram, expires: u64) -> (String, i64, Message) {
        let n = nonce();
        let id = self.approve(&n, expires);
        (n, id, message(fake, id))
    }

    fn status(&self) -> DaemonStatus {
        match self.ask(&Request::Status { version: VERSION }) {
            Response::Status { status } => status,
            other => panic!("{other:?}"),
        }
    }

    fn updates(&self, after: i64, wait_ms: u64) -> Vec<TextUpdate> {
        match self.ask(&Request::Updates {
            version: VERSION,
            after,
            wait_ms,
        }) {
            Response::Updates { updates } => updates,
            other => panic!("{other:?}"),
        }
    }

    fn send(&self, chat_id: i64, text: &str) -> Response {
        self.ask(&Request::Send {
            version: VERSION,
            chat_id,
            text: text.into(),
        })
    }

    /// `pam-gateway --config <the daemon's config> args...`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(pgw_test_support::cli_harness::bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("pam-gateway")
    }

    fn approve(&self, nonce: &str, expires: u64) -> i64 {
        self.approve_with(nonce, expires, None)
    }

    /// [`Daemon::approve`], counting the send first with `reserve`.
    fn approve_with(&self, nonce: &str, expires: u64, reserve: Option<Reserve>) -> i64 {
        let mut request = approve_request(nonce, "alice", CHAT, expires);
        if let Request::Approve { reserve: field, .. } = &mut request {
            *field = reserve;
        }
        match self.ask(&request) {
            Response::Sent { message_id } => message_id,
            other => panic!("Approve: {other:?}\n{}", self.log_text()),
        }
    }

    fn wait(&self, nonce: &str, ms: u64) -> ApprovalState {
        match self.ask(&Request::Wait {
            version: VERSION,
            nonce: nonce.to_string(),
            wait_ms: ms,
        }) {
            Response::State { state } => state,
            other => panic!("Wait: {other:?}"),
        }
    }

    /// Waits until the approval leaves Pending (several Waits).
    fn settled(&self, nonce: &str) -> ApprovalState {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.wait(nonce, 2000);
            if s != ApprovalState::Pending || Instant::now() > deadline {
                return s;
            }
        }
    }

    fn finish(&self, nonce: &str, result: Final) {
        assert_eq!(
            self.ask(&Request::Finish {
                version: VERSION,
                nonce: nonce.to_string(),
                result,
            }),
            Response::Done
        );
    }

    fn state_file(&self, user: &str) -> serde_json::Value {
        let text = fs::read_to_string(self.dir.0.join("state").join(format!("{user}.json")))
            .expect("state file");
        serde_json::from_str(&text).expect("state JSON")
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_fill(b: &mut [u8]) {
    // Unique enough for tests: time, pid and a counter.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::SeqCst);
    let mixed = t ^ (u128::from(std::process::id()) << 64) ^ (u128::from(c) << 96);
    b.copy_from_slice(&mixed.to_be_bytes());
}

fn approve_request(nonce: &str, user: &str, chat_id: i64, expires: u64) -> Request {
    Request::Approve {
        version: VERSION,
        nonce: nonce.to_string(),
        user: user.to_string(),
        chat_id,
        text: format!("Login of {user}@testhost by sshd from 192.0.2.7. Code: 482913"),
        numbers: [17, 42, 88],
        answer: 42,
        expires_in_secs: expires,
        reserve: None,
    }
}

/// A fake Bot API and a daemon on it.
fn started() -> (FakeTelegram, Daemon) {
    let fake = fake();
    let d = Daemon::start(&fake);
    (fake, d)
}

/// `from` taps `label` under message `id` (as `m` shows it); the answer
/// the daemon gave the tap.
fn tap_answer(fake: &FakeTelegram, from: i64, id: i64, m: &Message, label: &str) -> CallbackAnswer {
    let up = fake.tap(from, id, &m.button_data(label));
    fake.wait_for_callback_answer(up, WAIT).expect("answered")
}

/// The detail of `response`, an error of kind `want` (else panics).
fn error_detail(response: Response, want: ErrorKind) -> String {
    match response {
        Response::Error { kind, detail } if kind == want => detail,
        other => panic!("{other:?}"),
    }
}

fn message(fake: &FakeTelegram, id: i64) -> Message {
    fake.message(id).expect("the message was delivered")
}

fn buttons(m: &Message) -> Vec<Vec<String>> {
    m.buttons
        .iter()
        .map(|r| r.iter().map(|(t, _)| t.clone()).collect())
        .collect()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn right_number_approves_and_finish_edits_the_message() {
    let (fake, d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    assert_eq!(m.chat_id, CHAT);
    assert!(m.text.contains("Login of alice@testhost"), "{m:?}");
    assert_eq!(
        buttons(&m),
        vec![vec!["17", "42", "88"], vec!["Not me"]],
        "three numbers and Not me"
    );
    for (t, data) in m.buttons.iter().flatten() {
        assert!(data.len() <= 64 && data.contains(&n), "{t}: {data}");
    }
    assert_eq!(d.wait(&n, 0), ApprovalState::Pending);
    let up = fake.tap(CHAT, id, &m.button_data("42"));
    assert_eq!(d.settled(&n), ApprovalState::Approved);
    let answer = fake
        .wait_for_callback_answer(up, WAIT)
        .expect("tap answered");
    assert!(answer.text.contains("Approved"), "{answer:?}");
    d.finish(&n, Final::Approved);
    let e = fake.wait_for_edit(id, WAIT).expect("edited");
    assert!(e.after.text.contains("approved"), "{e:?}");
    assert!(!e.after.text.contains("482913"), "the code leaves the chat");
    assert!(e.after.buttons.is_empty(), "keyboard removed");
    // Forgotten: a Wait now is Gone.
    assert_eq!(d.wait(&n, 0), ApprovalState::Gone);
    let log = d.log_text();
    assert!(!log.contains("482913") && !log.contains(TOKEN), "{log}");
    let secret = TOKEN.split_once(':').map(|(_, s)| s).unwrap_or(TOKEN);
    assert!(!log.contains(secret), "{log}");
}

/// `Approve` with `reserve`: the daemon counts the send in the user's
/// state file (root's, 0600) before it sends, as the module would; with
/// the window full it sends nothing and says until when; a send that
/// certainly reached nobody is given back; a relative state dir is
/// refused.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn approve_counts_the_send_first_when_asked_to() {
    let (fake, d) = started();
    let mut reserve = Reserve {
        state_dir: d.dir.0.join("state").display().to_string(),
        codes_per_window: 2,
        window: 900,
        failures_before_lockout: 5,
        lockout: 900,
        max_lockout: 86_400,
    };
    let ask = |user: &str, chat: i64, reserve: &Reserve| {
        let mut r = approve_request(&nonce(), user, chat, 120);
        if let Request::Approve { reserve: field, .. } = &mut r {
            *field = Some(reserve.clone());
        }
        d.ask(&r)
    };
    let sent = |user: &str| d.state_file(user)["sent"].as_array().map_or(0, |a| a.len());
    for i in 1..=2 {
        let r = ask("alice", CHAT, &reserve);
        assert!(matches!(r, Response::Sent { .. }), "{r:?}");
        assert_eq!(sent("alice"), i);
    }
    let meta = fs::metadata(d.dir.0.join("state").join("alice.json")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let messages = fake.sent().len();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    match ask("alice", CHAT, &reserve) {
        Response::Blocked {
            block: BlockKind::TooManyCodes,
            until,
            backup_codes: 0,
        } => assert!(until > now && until <= now + 901, "{until} vs {now}"),
        other => panic!("expected blocked, got {other:?}"),
    }
    assert_eq!(fake.sent().len(), messages, "nothing sent once blocked");
    assert_eq!(sent("alice"), 2);
    assert!(
        d.log_text()
            .contains("approval for user=alice not sent: codes_per_window reached"),
        "{}",
        d.log_text()
    );

    // A chat Telegram does not know: refused, nothing delivered, the
    // reservation given back.
    let r = ask("bob", 999_999_999, &reserve);
    assert!(
        matches!(
            r,
            Response::Error {
                kind: ErrorKind::Rejected,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(
        d.dir.0.join("state").join("bob.json").exists(),
        "counted before the send"
    );
    assert_eq!(sent("bob"), 0, "and given back");

    reserve.state_dir = "state".into();
    let detail = error_detail(ask("carol", CHAT, &reserve), ErrorKind::BadRequest);
    assert!(detail.contains("absolute"), "{detail}");
}

/// `Finish` answers without waiting for Telegram to take the final edit
/// (the editor thread does it): a Bot API that hangs does not hold the
/// login that has already ended. The config's HTTP timeout is 5 s, which
/// is what a `Finish` that edited first would have waited.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn finish_answers_at_once_while_the_edit_hangs() {
    let (fake, d) = started();
    let n = nonce();
    let id = d.approve(&n, 120);
    fake.set_mode(Mode::NeverAnswer);
    let started = Instant::now();
    d.finish(&n, Final::Used);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "Finish took {took:?}");
    // The edit was tried (and hangs until the client's timeout): logged.
    let log = d.wait_log("cannot edit the request");
    assert!(log.contains("cannot edit the request"), "{log}");
    fake.set_mode(Mode::Normal);
    // The daemon goes on: the next login's message and edit go through.
    let n2 = nonce();
    let id2 = d.approve(&n2, 120);
    assert_ne!(id, id2);
    d.finish(&n2, Final::Used);
    let e = fake.wait_for_edit(id2, WAIT).expect("edited");
    assert!(e.after.text.contains("used"), "{e:?}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_number_is_wrong_and_a_second_tap_changes_nothing() {
    let (fake, d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    let up = fake.tap(CHAT, id, &m.button_data("17"));
    assert_eq!(d.settled(&n), ApprovalState::Wrong);
    let a = fake.wait_for_callback_answer(up, WAIT).expect("answered");
    assert!(a.text.contains("not the number"), "{a:?}");
    let a2 = tap_answer(&fake, CHAT, id, &m, "42");
    assert!(a2.text.contains("already answered"), "{a2:?}");
    assert_eq!(d.wait(&n, 0), ApprovalState::Wrong);
    d.finish(&n, Final::Denied);
    let e = fake.wait_for_edit(id, WAIT).expect("edited");
    assert!(e.after.text.contains("denied"), "{e:?}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_tap_by_another_account_changes_nothing_and_is_answered() {
    let (fake, d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    // A forwarded request, tapped by someone else: both buttons.
    for label in ["42", "Not me"] {
        let a = tap_answer(&fake, OTHER, id, &m, label);
        assert!(a.text.contains("Only the account"), "{a:?}");
    }
    assert_eq!(d.wait(&n, 500), ApprovalState::Pending);
    assert!(
        !d.dir.0.join("state").join("alice.json").exists(),
        "no lock from a foreign Not me"
    );
    assert!(fake.edits().is_empty());
    d.wait_log("by another Telegram account");
    // The owner's tap still counts.
    fake.tap(CHAT, id, &m.button_data("42"));
    assert_eq!(d.settled(&n), ApprovalState::Approved);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn not_me_locks_alerts_the_admins_and_edits_denied_until_unlock() {
    let (fake, d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    let up = fake.tap(CHAT, id, &m.button_data("Not me"));
    assert_eq!(d.settled(&n), ApprovalState::NotMe);
    // The lock is on disk by the time Wait says NotMe.
    let st = d.state_file("alice");
    assert!(st["not_me"].as_u64().is_some(), "{st}");
    let meta = fs::metadata(d.dir.0.join("state").join("alice.json")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let a = fake.wait_for_callback_answer(up, WAIT).expect("answered");
    assert!(a.text.contains("locked"), "{a:?}");
    let e = fake.wait_for_edit(id, WAIT).expect("edited");
    assert!(
        e.after.text.contains("denied") && e.after.buttons.is_empty(),
        "{e:?}"
    );
    // The admins' alert.
    let alert = fake
        .wait_for_sent_to(ADMIN, WAIT)
        .unwrap_or_else(|| panic!("no alert: {:?}", fake.sent()));
    assert!(
        alert.text.contains("alice") && alert.text.contains("Not me"),
        "{}",
        alert.text
    );
    assert!(
        alert.text.contains("pam-gateway unlock alice"),
        "{}",
        alert.text
    );
    assert!(!alert.text.contains("482913"), "no code in the alert");
    // Finish after Not me does not edit again.
    d.finish(&n, Final::Denied);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.edits().len(), 1, "{:?}", fake.edits());

    // `pam-gateway unlock` ends it, like any lockout.
    let out = d.cli(&["unlock", "alice"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Not me"), "{stdout}");
    let st = d.state_file("alice");
    assert!(st.get("not_me").is_none(), "{st}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn an_unanswered_request_expires_and_says_so() {
    let (fake, d) = started();
    let n = nonce();
    let id = d.approve(&n, 1);
    let e = fake
        .wait_for_edit(id, WAIT)
        .expect("edited by the daemon's timer");
    assert!(e.after.text.contains("expired"), "{e:?}");
    assert!(e.after.buttons.is_empty());
    assert_eq!(d.wait(&n, 0), ApprovalState::Gone);
    // A late tap is answered, and the message stays as it is.
    let m = e.before;
    let a = tap_answer(&fake, CHAT, id, &m, "42");
    assert!(a.text.contains("expired"), "{a:?}");
    assert_eq!(fake.edits().len(), 1);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_stale_tap_after_finish_is_answered_and_changes_nothing() {
    let (fake, d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    d.finish(&n, Final::Used);
    let e = fake.wait_for_edit(id, WAIT).expect("edited");
    assert!(e.after.text.contains("used"), "{e:?}");
    for label in ["42", "Not me"] {
        let a = tap_answer(&fake, CHAT, id, &m, label);
        assert!(a.text.contains("code was typed"), "{a:?}");
    }
    assert_eq!(d.wait(&n, 0), ApprovalState::Gone);
    assert_eq!(fake.edits().len(), 1);
    assert!(!d.dir.0.join("state").join("alice.json").exists());
    // A nonce is single-use.
    error_detail(
        d.ask(&approve_request(&n, "alice", CHAT, 60)),
        ErrorKind::BadRequest,
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn after_a_restart_the_nonce_is_gone_and_its_tap_expires_the_message() {
    let (fake, mut d) = started();
    let (n, id, m) = d.approval(&fake, 120);
    d.kill();
    // The socket file stays behind; the new daemon removes it (a root
    // socket nobody listens on) and binds again.
    assert!(d.socket.exists());
    d.spawn();
    assert_eq!(d.wait(&n, 0), ApprovalState::Gone);
    let a = tap_answer(&fake, CHAT, id, &m, "42");
    assert!(a.text.contains("expired"), "{a:?}");
    let e = fake.wait_for_edit(id, WAIT).expect("edited");
    assert!(
        e.after.text.contains("expired") && e.after.buttons.is_empty(),
        "{e:?}"
    );
    assert_eq!(d.wait(&n, 0), ApprovalState::Gone);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn updates_returns_a_start_message_and_status_tells_the_state() {
    let (fake, d) = started();
    let up = fake.push_update(CHAT, "private", "/start");
    let updates = d.updates(0, 10_000);
    let u = updates
        .iter()
        .find(|u| u.update_id == up)
        .unwrap_or_else(|| panic!("{updates:?}"));
    assert_eq!((u.chat_id, u.text.as_str()), (CHAT, "/start"));
    assert_eq!(u.chat_type, "private");
    assert_eq!(u.from_id, Some(CHAT));
    // Nothing newer: an empty list after the wait.
    let updates = d.updates(up, 100);
    assert!(updates.is_empty(), "{updates:?}");
    let n = nonce();
    d.approve(&n, 120);
    let status = d.status();
    assert_eq!(status.pending, 1);
    assert_eq!(status.webhook.as_deref(), Some("none"));
    assert!(status.last_update_at.is_some());
    assert!(status.daemon.starts_with("pam-gatewayd "));
    // Another protocol version is told so.
    error_detail(d.ask(&Request::Status { version: 99 }), ErrorKind::Version);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_webhook_is_reported_in_the_log_and_status() {
    let fake = fake();
    fake.set_webhook(Some("https://hooks.example.net/bot/x"));
    let d = Daemon::start(&fake);
    d.wait_log("a webhook is set for this bot");
    assert_eq!(d.status().webhook.as_deref(), Some("hooks.example.net"));
    d.wait_log("getUpdates failed: a webhook is set");
    // The admin removes the webhook: the next poll works and says so.
    fake.set_webhook(None);
    let deadline = Instant::now() + Duration::from_secs(40);
    while d.status().webhook.as_deref() != Some("none") {
        assert!(Instant::now() < deadline, "webhook still reported");
        std::thread::sleep(Duration::from_millis(200));
    }
    d.wait_log("getUpdates works again");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_socket_is_roots_0600_in_a_0700_dir() {
    let (_fake, d) = started();
    let dir = fs::symlink_metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o700));
    let s = fs::symlink_metadata(&d.socket).unwrap();
    assert_eq!((s.uid(), s.mode() & 0o7777), (0, 0o600));
}

/// Runs a small client as uid 65534 (with `caps`, e.g. DAC override to
/// reach the 0600 socket at all); returns what it printed.
fn client_as_nobody(socket: &Path, caps: bool) -> String {
    let script = r#"
        use IO::Socket::UNIX;
        $SIG{PIPE} = 'IGNORE';
        $| = 1;
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0])
            or do { print "connect failed: $!\n"; exit 0 };
        print "connected\n";
        my $body = '{"op":"status","version":1}';
        my $w = syswrite($s, pack("N", length $body) . $body);
        print defined $w ? "wrote $w\n" : "write failed: $!\n";
        my $n = sysread($s, my $buf, 4);
        print defined $n ? "read $n\n" : "read error: $!\n";
    "#;
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if caps {
        cmd.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    }
    let out = cmd
        .args(["perl", "-e", script])
        .arg(socket)
        .output()
        .expect("setpriv perl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_non_root_peer_is_refused() {
    let (_fake, d) = started();
    // The file system alone keeps uid 65534 out...
    let out = client_as_nobody(&d.socket, false);
    assert!(out.contains("connect failed: Permission denied"), "{out}");
    // ...and with DAC override it reaches the daemon, which closes at once.
    let out = client_as_nobody(&d.socket, true);
    assert!(out.contains("connected"), "{out}");
    assert!(
        out.contains("read 0") || out.contains("read error") || out.contains("write failed"),
        "closed without an answer: {out}"
    );
    assert!(!out.contains("read 4"), "{out}");
    d.wait_log("refused a connection from uid 65534");
    // Root is still served.
    d.status();
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn oversized_and_malformed_frames_are_refused() {
    let (fake, d) = started();
    let mut s = d.connect();
    s.write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
        .unwrap();
    let detail = error_detail(read_frame(&mut s).expect("a frame"), ErrorKind::BadRequest);
    assert!(detail.contains("limit"), "{detail}");
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "closed after it");

    let mut s = d.connect();
    let body = br#"{"op":"grant_root","version":1}"#;
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    error_detail(read_frame(&mut s).expect("a frame"), ErrorKind::BadRequest);
    // Bad values in a well-formed Approve.
    let mut bad = approve_request(&nonce(), "alice", CHAT, 60);
    if let Request::Approve { answer, .. } = &mut bad {
        *answer = 99;
    }
    error_detail(d.ask(&bad), ErrorKind::BadRequest);
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_stopped_client_does_not_block_others() {
    let (fake, d) = started();
    // A client that sends half a frame header, then is stopped (as su's
    // caller may stop su).
    let script = r#"
        use IO::Socket::UNIX;
        $| = 1;
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!";
        print $s "\x00\x00";
        print "sent\n";
        sleep 60;
    "#;
    let mut child = Command::new("perl")
        .args(["-e", script])
        .arg(&d.socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl client");
    let mut buf = [0u8; 5];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut buf)
        .expect("client says it sent");
    let stopped = Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    // Another login goes through meanwhile, start to finish.
    let (n, id, m) = d.approval(&fake, 120);
    fake.tap(CHAT, id, &m.button_data("42"));
    assert_eq!(d.settled(&n), ApprovalState::Approved);
    // And the stopped one is dropped once its request is overdue.
    d.wait_log("was not complete within");
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn connections_over_the_cap_are_told_busy() {
    let (_fake, d) = started();
    // 256 idle connections (socket.rs MAX_CONNECTIONS) hold every thread
    // (each checked in first).
    let held: Vec<UnixStream> = (0..256)
        .map(|_| {
            let mut s = d.connect();
            write_frame(&mut s, &Request::Status { version: VERSION }).unwrap();
            assert!(matches!(
                read_frame::<Response>(&mut s),
                Ok(Response::Status { .. })
            ));
            s
        })
        .collect();
    let mut s = d.connect();
    error_detail(read_frame(&mut s).expect("a frame"), ErrorKind::Busy);
    drop(held);
    // Served again once they are gone.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut s = d.connect();
        let _ = write_frame(&mut s, &Request::Status { version: VERSION });
        if matches!(read_frame::<Response>(&mut s), Ok(Response::Status { .. })) {
            break;
        }
        assert!(Instant::now() < deadline, "still busy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_fails(text: &str) -> String {
    root::require("the daemon tests (pam-gatewayd trusts root-owned files only)");
    let dir = TempDir::new("daemon-bad");
    let config = dir.0.join("gateway.toml");
    write_file(&config, text, 0o600);
    start_fails_with(&config)
}

/// The daemon with `config` exits 1 at once; what it said.
fn start_fails_with(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pam-gatewayd"))
        .arg("--config")
        .arg(config)
        .output()
        .expect("run pam-gatewayd");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn it_refuses_to_start_without_approval_or_with_unsafe_files() {
    let fake = fake();
    let dir = TempDir::new("daemon-cfg");
    let socket = dir.0.join("run").join("x.sock");
    let err = start_fails(&Daemon::config_text(&dir.0, &fake, ""));
    assert!(err.contains("[approve] enabled is not true"), "{err}");
    let err = start_fails(&Daemon::config_text(
        &dir.0,
        &fake,
        "[approve]\nenabled = false\n",
    ));
    assert!(err.contains("[approve] enabled is not true"), "{err}");
    // No [telegram]: the config itself is refused (approval needs the bot).
    let err = start_fails(&format!(
        "users_file = \"/nonexistent/users.toml\"\n\n{}",
        Daemon::approve_section(&socket)
    ));
    assert!(err.contains("[telegram]"), "{err}");

    // The config must be root's and private, as for the module.
    let text = Daemon::config_text(&dir.0, &fake, &Daemon::approve_section(&socket));
    let bad = dir.0.join("open.toml");
    write_file(&bad, &text, 0o644);
    start_fails_with(&bad);

    // A socket directory others may write to is refused.
    let open_dir = dir.0.join("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = start_fails(&Daemon::config_text(
        &dir.0,
        &fake,
        &Daemon::approve_section(&open_dir.join("s.sock")),
    ));
    assert!(err.contains("writable by root only"), "{err}");

    // A file where the socket goes is left alone.
    let run = dir.0.join("run2");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    write_file(&run.join("s.sock"), "precious", 0o600);
    let err = start_fails(&Daemon::config_text(
        &dir.0,
        &fake,
        &Daemon::approve_section(&run.join("s.sock")),
    ));
    assert!(err.contains("not a socket owned by root"), "{err}");
    assert_eq!(fs::read_to_string(run.join("s.sock")).unwrap(), "precious");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_second_bot_reader_is_logged_and_the_daemon_reads_again_after_it() {
    let (fake, d) = started();
    // Let the daemon's first long poll begin, then poll the bot ourselves:
    // Telegram (and the fake) end the daemon's poll with 409.
    fake.wait_for_received("/getUpdates", 1, WAIT);
    let target = format!("{}/bot{}/getUpdates", fake.url(), TOKEN);
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-d", "timeout=0", &target])
        .output();
    if out.is_err() {
        // Without curl: the same request over a raw socket.
        let addr = fake.url().trim_start_matches("http://").to_string();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = "timeout=0";
        write!(
            s,
            "POST /bot{TOKEN}/getUpdates HTTP/1.1\r\nHost: x\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: \
             close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let log = d.wait_log("another program is reading this bot's updates");
    assert!(!log.contains(TOKEN), "{log}");
    // It backs off and reads again: a tap still arrives.
    let (n, id, m) = d.approval(&fake, 120);
    fake.tap(CHAT, id, &m.button_data("42"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while d.wait(&n, 2000) == ApprovalState::Pending {
        assert!(Instant::now() < deadline, "no tap after the conflict");
    }
    assert_eq!(d.wait(&n, 0), ApprovalState::Approved);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_reads_the_bot_through_the_daemon_and_status_shows_it() {
    use pgw_test_support::cli_harness::{Running, bin};
    use pgw_test_support::fake_telegram::{Incoming, TgUser, find_code};
    let (fake, d) = started();

    let status = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("Approval in the chat (pam-gatewayd)"),
        "{text}"
    );
    assert!(text.contains("is running on"), "{text}");
    assert!(text.contains("0 approval(s) pending"), "{text}");
    assert!(text.contains("the bot has no webhook"), "{text}");

    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(&d.config)
        .args(["enroll", "daemon", "--no-qr", "--timeout", "60"]);
    let mut run = Running::start(cmd);
    run.wait_for("through pam-gatewayd", WAIT);
    let nonce = run.nonce(WAIT);
    fake.push(&Incoming::private(
        TgUser::alice(CHAT),
        &format!("/start {nonce}"),
    ));
    let msg = fake.wait_for_message(WAIT).expect("the code went out");
    let code = find_code(&msg.text).expect("a code");
    run.type_line(&code);
    run.close_stdin();
    let out = run.finish();
    out.expect_code(0);
    let users = fs::read_to_string(d.dir.0.join("users.toml")).unwrap();
    assert!(users.contains(&CHAT.to_string()), "{users}");
    // One reader all along: the daemon never lost its poll to the CLI.
    let log = d.log_text();
    assert!(!log.contains("getUpdates failed"), "{log}");

    // Daemon gone: status says so (a warning, not a failure of logins).
    let mut d = d;
    d.kill();
    let status = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("pam-gatewayd does not answer"), "{text}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn twenty_concurrent_approvals_are_each_decided_by_their_own_tap_only() {
    let chats: Vec<i64> = (0..20).map(|i| 800_000_000 + i).collect();
    let fake = FakeTelegram::start(FakeOptions {
        chats: chats.clone(),
        ..FakeOptions::default()
    })
    .expect("fake");
    let d = Daemon::start(&fake);
    // Twenty logins at once, each on its own connection.
    let sent: Vec<(String, i64, i64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chats
            .iter()
            .enumerate()
            .map(|(i, chat)| {
                let d = &d;
                scope.spawn(move || {
                    let n = nonce();
                    let user = format!("user{i}");
                    match d.ask(&approve_request(&n, &user, *chat, 120)) {
                        Response::Sent { message_id } => (n, *chat, message_id),
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Everyone first taps the right number under the NEXT user's message
    // (a forwarded request): nothing may change.
    for (i, (_, chat, _)) in sent.iter().enumerate() {
        let (_, _, next_id) = &sent[(i + 1) % sent.len()];
        let m = message(&fake, *next_id);
        tap_answer(&fake, *chat, *next_id, &m, "42");
    }
    for (n, _, _) in &sent {
        assert_eq!(d.wait(n, 0), ApprovalState::Pending);
    }
    // Then the even ones approve their own, the odd ones tap a wrong number,
    // all at once; each Wait sees its own tap only.
    std::thread::scope(|scope| {
        for (i, (n, chat, id)) in sent.iter().enumerate() {
            let (d, fake) = (&d, &fake);
            scope.spawn(move || {
                let m = message(fake, *id);
                let label = if i % 2 == 0 { "42" } else { "88" };
                fake.tap(*chat, *id, &m.button_data(label));
                let want = if i % 2 == 0 {
                    ApprovalState::Approved
                } else {
                    ApprovalState::Wrong
                };
                assert_eq!(d.settled(n), want, "login {i}");
            });
        }
    });
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sends_go_over_one_warm_connection() {
    let (fake, d) = started();
    for _ in 0..5 {
        d.approve(&nonce(), 120);
    }
    match d.send(CHAT, "Your code is 482913") {
        Response::Sent { .. } => {}
        other => panic!("{other:?}"),
    }
    let sent = fake.sent();
    assert_eq!(sent.len(), 6);
    let first = sent[0].connection;
    assert!(
        sent.iter().all(|s| s.connection == first),
        "one connection for every send: {:?}",
        sent.iter().map(|s| s.connection).collect::<Vec<_>>()
    );
    // A send that fails says why, without the text.
    let detail = error_detail(d.send(42_4242, "Your code is 482913"), ErrorKind::Rejected);
    assert!(detail.contains("chat not found"), "{detail}");
    assert!(!detail.contains("482913"), "{detail}");
}

/// (open descriptors, threads, RSS in KiB) of a process.
/// A login's message sent while the last login's final edit is still on
/// its way finds the edit's connection busy and opens a second one; both
/// stay warm, so the next such overlap opens none (with room for one idle
/// connection only, one of the two was closed and every overlap paid a
/// new handshake). The fake trickles its answers, so each exchange takes
/// a while and the edit and the send overlap.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn an_edit_in_flight_and_a_send_keep_two_warm_connections() {
    let (fake, d) = started();
    let first = nonce();
    d.approve(&first, 120);
    fake.set_mode(Mode::Trickle { delay_ms: 1 });
    let mut ids = vec![first];
    for _ in 0..3 {
        // Finish answers at once; its edit goes out on the editor thread
        // while the next login's message is sent.
        let last = ids.last().cloned().unwrap_or_default();
        d.finish(&last, Final::Used);
        let next = nonce();
        d.approve(&next, 120);
        ids.push(next);
        let edits = ids.len() - 1;
        let deadline = Instant::now() + WAIT;
        while fake.edits().len() < edits && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(fake.edits().len(), edits, "the edit went out");
    }
    let mut used: Vec<u64> = fake.sent().iter().map(|m| m.connection).collect();
    used.extend(fake.edits().iter().map(|e| e.connection));
    used.sort_unstable();
    used.dedup();
    assert_eq!(
        used.len(),
        2,
        "four sends and three edits, two of them at a time, over two connections: {:?} {:?}",
        fake.sent().iter().map(|m| m.connection).collect::<Vec<_>>(),
        fake.edits()
            .iter()
            .map(|e| e.connection)
            .collect::<Vec<_>>()
    );
}

fn resources(pid: u32) -> (usize, usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (fds, field("Threads:") as usize, field("VmRSS:"))
}

/// Approve → tap → Wait → Finish, `PGW_DAEMON_SOAK` times (default 300;
/// every fourth Wait and Finish through the module's own client):
/// descriptors and threads do not grow. Prints the figures (`make soak`
/// style: `--nocapture`); RSS is printed, not judged.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn many_approvals_leave_no_descriptors_or_threads_behind() {
    let cycles: usize = std::env::var("PGW_DAEMON_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (fake, d) = started();
    let pid = d.child.as_ref().unwrap().id();
    // Every other approval is counted in alice's state file first (a
    // window no send fills): its lock, temp file and rename each time.
    let reserve = Reserve {
        state_dir: d.dir.0.join("state").display().to_string(),
        codes_per_window: u32::MAX,
        window: 1,
        failures_before_lockout: 5,
        lockout: 900,
        max_lockout: 86_400,
    };
    let cycle = |i: usize| {
        let (n, id, m) = if i % 2 == 1 {
            let n = nonce();
            let id = d.approve_with(&n, 120, Some(reserve.clone()));
            let m = message(&fake, id);
            (n, id, m)
        } else {
            d.approval(&fake, 120)
        };
        let label = if i % 3 == 0 { "17" } else { "42" };
        let up = fake.tap(CHAT, id, &m.button_data(label));
        let want = if i % 3 == 0 {
            ApprovalState::Wrong
        } else {
            ApprovalState::Approved
        };
        if i % 4 == 0 {
            // As the module asks: pam_gateway_core's client, whose Wait
            // leaves its connection open for the Finish, which it writes
            // and closes without reading the answer.
            let mut client = Client::new(&d.process.socket);
            assert_eq!(client.wait(&n, WAIT), Ok(want));
            fake.wait_for_callback_answer(up, WAIT).expect("answered");
            assert_eq!(client.finish(&n, Final::Approved), Ok(()));
        } else {
            assert_eq!(d.settled(&n), want);
            fake.wait_for_callback_answer(up, WAIT).expect("answered");
            d.finish(&n, Final::Approved);
        }
    };
    for i in 0..20 {
        cycle(i);
    }
    // Let the tap threads of the warm-up end.
    std::thread::sleep(Duration::from_millis(500));
    let before = resources(pid);
    let step = (cycles / 10).max(1);
    for i in 0..cycles {
        cycle(i);
        if (i + 1) % step == 0 {
            let (fds, threads, rss) = resources(pid);
            println!(
                "after {:>6} approvals: fds {fds}, threads {threads}, rss {rss} KiB",
                i + 1
            );
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = resources(pid);
    println!("before {before:?} after {after:?} (fds, threads, rss KiB)");
    assert!(
        after.0 <= before.0 + 2,
        "descriptors grew: {before:?} → {after:?}"
    );
    assert!(
        after.1 <= before.1 + 2,
        "threads grew: {before:?} → {after:?}"
    );
    assert_eq!(d.status().pending, 0);
    assert!(
        d.state_file("alice")["sent"].as_array().is_some(),
        "the reserving approvals wrote alice's state"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn it_needs_no_capability() {
    // What the unit's empty CapabilityBoundingSet= leaves it: uid 0 and no
    // capability at all (no DAC override: it reaches only root's own files).
    let (fake, mut d) = started();
    d.kill();
    fs::remove_file(&d.socket).unwrap();
    d.prefix = [
        "setpriv",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--no-new-privs",
    ]
    .map(String::from)
    .to_vec();
    d.spawn();
    let pid = d.child.as_ref().unwrap().id();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("?")
            .to_string()
    };
    assert_eq!(cap("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(cap("CapBnd:"), "0000000000000000", "{status}");
    assert_eq!(cap("Uid:").split_whitespace().next(), Some("0"));
    // The whole of it still works: send, tap, the "Not me" lock in the
    // state files, the alert, the edit, a stale socket replaced.
    let (n, id, m) = d.approval(&fake, 120);
    fake.tap(CHAT, id, &m.button_data("Not me"));
    assert_eq!(d.settled(&n), ApprovalState::NotMe);
    assert!(d.state_file("alice")["not_me"].as_u64().is_some());
    fake.wait_for_edit(id, WAIT).expect("edited");
    d.kill();
    d.spawn();
    d.status();
}

/// System accounts every Debian machine has: the logins the daemon runs
/// need names NSS knows.
const ACCOUNTS: [&str; 10] = [
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
];

/// A daemon whose users file enrols [`ACCOUNTS`] at CHAT, with limits no
/// soak fills (ten accounts, each 1,000 codes in 10 s).
fn hosting() -> (FakeTelegram, Daemon) {
    root::require("the daemon tests (pam-gatewayd trusts root-owned files only)");
    let fake = fake();
    let dir = TempDir::new("daemon");
    let socket = dir.0.join("run").join("pgd.sock");
    let text = Daemon::config_text(
        &dir.0,
        &fake,
        &format!(
            "[limits]\ncodes_per_window = 1000\nwindow = 10\n\n{}",
            Daemon::approve_section(&socket)
        ),
    );
    let d = Daemon::start_with(dir, &text);
    let users: String = ACCOUNTS
        .iter()
        .map(|a| format!("[users.{a}]\ntelegram = \"{CHAT}\"\n"))
        .collect();
    write_file(&d.dir.0.join("users.toml"), &users, 0o644);
    (fake, d)
}

/// One login the daemon runs, asked as the module asks (`config=` the
/// daemon's own file): every hidden prompt answered with `typed`, or with
/// the code of the handover. Returns the frames' kinds and the result.
fn hosted_login(
    d: &Daemon,
    user: &str,
    config: &Path,
    typed: Option<&str>,
) -> (Vec<String>, PamResult) {
    let s = d.connect();
    let login = Request::Login {
        version: VERSION,
        args: vec![format!("config={}", config.display())],
        user: user.into(),
        service: "soak".into(),
        rhost: Some("192.0.2.1".into()),
        tty: None,
        ruser: None,
        password_was_wrong: false,
        caller_is_root: true,
    };
    write_frame(&mut &s, &login).expect("login");
    let mut seen = Vec::new();
    let mut code = None;
    loop {
        match read_frame::<HostMsg>(&mut &s).expect("frame") {
            HostMsg::Handover { handover } => {
                seen.push("handover".to_string());
                code = Some(handover.code.clone());
            }
            HostMsg::Ask { style, text, .. } => {
                seen.push(format!("{style:?}: {text}"));
                let answer = match style {
                    AskStyle::Hidden => Some(
                        typed
                            .map(String::from)
                            .or(code.clone())
                            .expect("a code")
                            .into_bytes(),
                    ),
                    _ => None,
                };
                write_frame(&mut &s, &HostReply::Reply { answer }).expect("reply");
            }
            HostMsg::Outcome { verdict } => return (seen, verdict),
            other => panic!("{other:?}"),
        }
    }
}

/// The daemon runs a login for a module of its own config: the code goes
/// out, the dialogue is handed over first, the right code gets in, a wrong
/// one is refused; a module of another config is declined.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn it_runs_the_logins_of_its_own_config_and_declines_others() {
    let (fake, d) = hosting();
    let (seen, result) = hosted_login(&d, "root", &d.config, None);
    assert_eq!(result, PamResult::Success, "{seen:?}\n{}", d.log_text());
    assert_eq!(seen[0], "handover", "{seen:?}");
    assert!(seen[1].starts_with("Hidden: Tap "), "{seen:?}");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].chat_id, CHAT.to_string());

    let (seen, result) = hosted_login(&d, "root", &d.config, Some("000000"));
    assert_eq!(result, PamResult::MaxTries, "{seen:?}");
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("Error: Wrong code"))
            .count(),
        2,
        "{seen:?}"
    );
    let (seen, result) = hosted_login(&d, "no-such-user-pgw", &d.config, Some("123456"));
    assert_eq!(result, PamResult::UserUnknown, "{seen:?}");
    assert!(
        !seen.contains(&"handover".to_string()),
        "a decoy hands nothing over"
    );

    let s = d.connect();
    let login = Request::Login {
        version: VERSION,
        args: vec!["config=/etc/pam_gateway/other.toml".into()],
        user: "root".into(),
        service: "sshd".into(),
        rhost: None,
        tty: None,
        ruser: None,
        password_was_wrong: false,
        caller_is_root: true,
    };
    write_frame(&mut &s, &login).expect("login");
    match read_frame::<HostMsg>(&mut &s).expect("frame") {
        HostMsg::Decline { why } => assert!(why.contains("it serves"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.sent().len(), 2, "the declined login sent nothing");
    let code = fake.sent()[0].text.clone();
    assert!(
        !d.log_text().contains(&code),
        "a message text in the daemon's log"
    );
}

/// `PGW_DAEMON_SOAK` logins the daemon runs (default 300), each the whole
/// flow (config, users file, state file, send, judging): descriptors and
/// threads do not grow. Prints the figures; RSS is printed, not judged.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn many_hosted_logins_leave_no_descriptors_or_threads_behind() {
    let cycles: usize = std::env::var("PGW_DAEMON_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (_fake, d) = hosting();
    let pid = d.child.as_ref().unwrap().id();
    let login = |i: usize| {
        let user = ACCOUNTS[i % ACCOUNTS.len()];
        let (seen, result) = hosted_login(&d, user, &d.config, None);
        assert_eq!(
            result,
            PamResult::Success,
            "login {i}: {seen:?}\n{}",
            d.log_text()
        );
    };
    for i in 0..20 {
        login(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = resources(pid);
    let step = (cycles / 10).max(1);
    let start = Instant::now();
    for i in 0..cycles {
        login(i);
        if (i + 1) % step == 0 {
            let (fds, threads, rss) = resources(pid);
            println!(
                "after {:>6} logins: fds {fds}, threads {threads}, rss {rss} KiB",
                i + 1
            );
        }
    }
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = resources(pid);
    println!(
        "{cycles} hosted logins in {:.1} s; before {before:?} after {after:?} (fds, threads, rss KiB)",
        took.as_secs_f64()
    );
    assert!(
        after.0 <= before.0 + 2,
        "descriptors grew: {before:?} → {after:?}"
    );
    assert!(
        after.1 <= before.1 + 2,
        "threads grew: {before:?} → {after:?}"
    );
    assert_eq!(d.status().pending, 0);
}
