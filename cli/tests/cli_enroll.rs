//! `pam-gateway enroll USER` by deep link when the link was seen by someone
//! else: a second `/start NONCE` from another chat or another account, from
//! the first Start until the users file is written (in the same batch, while
//! the code is awaited, just before it is typed), ends the enrolment and
//! writes nothing; the same chat pressing Start again is harmless; the admin
//! sees the account's user id and @username, not only its chosen name.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;
use pgw_test_support::pty;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use cli_harness::*;
use fake_telegram::{FakeOptions, FakeTelegram, Incoming, TgUser, find_code};
use pam_harness::CHAT;

const WAIT: Duration = Duration::from_secs(20);
/// Someone else's account (and private chat) who saw the link.
const MALLORY: i64 = 200_000_002;
const GROUP: i64 = -100_123_456;
const USERS_BEFORE: &str = "# who gets codes where\n[users.alice]\n# alice's phone\ntelegram = \"555\"\n\n[users.daemon]\ntelegram = \"777\"\n";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, MALLORY],
        ..FakeOptions::default()
    })
    .expect("fake")
}

/// The user being enrolled, with a username and a last name.
fn daemon_user() -> TgUser {
    TgUser::new(CHAT, "Dee")
        .with_last_name("Mon")
        .with_username("dee_mon")
}

/// Someone else, who calls themselves the same.
fn mallory() -> TgUser {
    TgUser::new(MALLORY, "Dee")
        .with_last_name("Mon")
        .with_username("mallory_x")
}

fn start(nonce: &str) -> String {
    format!("/start {nonce}")
}

/// A config with an existing users file; returns it with the file's
/// bytes and inode.
fn setup(fake: &FakeTelegram) -> (Setup, Vec<u8>, u64) {
    let s = Setup::with_fake(fake, "");
    s.write_users(USERS_BEFORE);
    let bytes = fs::read(&s.users).expect("users");
    let ino = fs::metadata(&s.users).expect("meta").ino();
    (s, bytes, ino)
}

/// The users file is exactly as before (not even rewritten with the same
/// text) and no temp file is left beside it.
fn assert_untouched(s: &Setup, bytes: &[u8], ino: u64, out: &Out) {
    assert_eq!(
        fs::read(&s.users).expect("users"),
        bytes,
        "users.toml changed\n{}",
        out.dump()
    );
    assert_eq!(
        fs::metadata(&s.users).expect("meta").ino(),
        ino,
        "users.toml replaced\n{}",
        out.dump()
    );
    assert!(
        temp_files(&s.users).is_empty(),
        "{:?}",
        temp_files(&s.users)
    );
}

/// Waits for the process to exit on its own, standard input still open
/// (so a wait for a typed code cannot end it), then collects its output.
fn exit_by_itself(mut run: Running, timeout: Duration) -> Out {
    let deadline = Instant::now() + timeout;
    while run.child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let out = run.finish();
            panic!("still running after {timeout:?}\n{}", out.dump());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run.finish()
}

fn assert_second_account_abort(out: &Out) {
    out.expect_code(1)
        .expect_in_stderr(&format!(
            "a second Telegram account (user id {MALLORY}, @mallory_x, in chat ***002) \
             pressed Start with this link after user id {CHAT}, @dee_mon did"
        ))
        .expect_in_stderr("it was seen by someone else")
        .expect_in_stderr("Nothing was written")
        .expect_in_stderr("pam-gateway enroll daemon")
        .expect_in_stderr("keep the link private");
    assert!(
        !out.stdout.contains("Enrolled daemon"),
        "enrolled anyway\n{}",
        out.dump()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_second_start_from_another_account_right_after_the_first_aborts_before_any_code() {
    let fake = fake();
    let (s, bytes, ino) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    // Both Starts in one getUpdates batch: pressed within the same instant.
    fake.push_together(&[
        Incoming::private(daemon_user(), &start(&nonce)),
        Incoming::private(mallory(), &start(&nonce)),
    ]);
    // Standard input closes at once: the abort must come before any code
    // is asked for.
    let out = run.finish();
    assert_second_account_abort(&out);
    assert!(fake.sent().is_empty(), "a code went out: {:?}", fake.sent());
    assert_untouched(&s, &bytes, ino, &out);
    assert_eq!(fake.pending_updates(), 0, "what was read is confirmed");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_second_start_while_the_code_is_awaited_aborts() {
    let fake = fake();
    let (s, bytes, ino) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    // Mallory's Start arrives the moment the code goes to daemon's chat.
    fake.push_on_next_send(Incoming::private(mallory(), &start(&nonce)));
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    assert_eq!(msg.chat_id, CHAT.to_string());
    // Nobody types the code: the enrolment ends by itself.
    let out = exit_by_itself(run, WAIT);
    assert_second_account_abort(&out);
    assert_eq!(fake.sent().len(), 1, "one code, to the first chat only");
    assert_untouched(&s, &bytes, ino, &out);
    assert_eq!(fake.pending_updates(), 0, "what was read is confirmed");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_second_start_just_before_the_code_is_typed_aborts() {
    let fake = fake();
    let (s, bytes, ino) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    let code = find_code(&msg.text).expect("code");
    // The right code is typed a moment after Mallory pressed Start: the
    // watch while the code is awaited, or the last look before writing,
    // sees the Start.
    fake.push(&Incoming::private(mallory(), &start(&nonce)));
    run.type_line(&code);
    let out = exit_by_itself(run, WAIT);
    assert_second_account_abort(&out);
    assert_untouched(&s, &bytes, ino, &out);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_same_account_pressing_start_in_a_group_too_aborts() {
    let fake = fake();
    let (s, bytes, ino) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    fake.wait_for_message(WAIT).expect("code sent");
    fake.push(&Incoming::in_chat(
        GROUP,
        "group",
        daemon_user(),
        &format!("/start@pam_gateway_test_bot {nonce}"),
    ));
    let out = exit_by_itself(run, WAIT);
    out.expect_code(1)
        .expect_in_stderr(&format!(
            "the same Telegram account (user id {CHAT}, @dee_mon) pressed Start with this \
             link again, in another chat (group chat ***456, the first was chat ***977)"
        ))
        .expect_in_stderr("Nothing was written");
    assert_untouched(&s, &bytes, ino, &out);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn start_pressed_again_in_the_same_chat_is_harmless() {
    let fake = fake();
    let (s, _, _) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    // Twice at once (a double tap), and once more while the code is awaited.
    fake.push_on_next_send(Incoming::private(daemon_user(), &start(&nonce)));
    fake.push_together(&[
        Incoming::private(daemon_user(), &start(&nonce)),
        Incoming::private(daemon_user(), &start(&nonce)),
    ]);
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    assert_eq!(msg.chat_id, CHAT.to_string());
    // Give the watch time to read the Start that came with the code.
    std::thread::sleep(Duration::from_millis(1500));
    run.type_line(&find_code(&msg.text).expect("code"));
    let out = run.finish();
    out.expect_code(0)
        .expect_in_stdout("Code confirmed")
        .expect_in_stdout("Enrolled daemon");
    assert_eq!(fake.sent().len(), 1, "one code");
    let text = s.users_text().expect("users");
    assert!(
        text.contains(&format!("[users.daemon]\ntelegram = \"{CHAT}\"")),
        "{text}"
    );
    assert!(text.starts_with("# who gets codes where\n[users.alice]\n# alice's phone\n"));
    // Every Start was read, the last one too, and confirmed.
    assert_eq!(fake.pending_updates(), 0);
    assert!(temp_files(&s.users).is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_admin_sees_the_user_id_and_username_of_who_pressed_start() {
    let fake = fake();
    let (s, _, _) = setup(&fake);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    // Shown before the code goes out.
    let shown = run.wait_for("Sent a", WAIT);
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    run.type_line(&find_code(&msg.text).expect("code"));
    let out = run.finish();
    out.expect_code(0);
    for line in [
        "Start was pressed with the link. Check with daemon that this is their Telegram \
         account before you type the code:\n",
        &format!("\n    user id   {CHAT}\n"),
        "\n    username  @dee_mon\n",
        "\n    name      Dee Mon (self-chosen: anyone can use any name)\n",
        "\n    chat      ***977 (private)\n",
        &format!("Sent a 6-digit code to chat ***977 (user id {CHAT}, @dee_mon)."),
    ] {
        assert!(shown.contains(line), "lacks {line:?}\n{}", out.dump());
    }
    // The chat id is masked as everywhere else.
    assert!(
        !out.stdout.contains(&format!("chat {CHAT}")),
        "{}",
        out.dump()
    );

    // An account without a username says so.
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    fake.push(&Incoming::private(
        TgUser::new(MALLORY, "Mal"),
        &start(&nonce),
    ));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    run.type_line(&find_code(&msg.text).expect("code"));
    let out = run.finish();
    out.expect_code(0)
        .expect_in_stdout(&format!("\n    user id   {MALLORY}\n"))
        .expect_in_stdout("\n    username  no username\n")
        .expect_in_stdout("\n    name      Mal (self-chosen");
}

#[test]
fn help_and_exit_codes_name_the_second_start() {
    let out = std::process::Command::new(bin())
        .args(["enroll", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    // In the text and among the reasons for exit status 1.
    assert!(help.contains("a second Start with the same"), "{help}");
    assert!(
        help.contains("refused chat, a second Start with the link)"),
        "{help}"
    );
    assert!(help.contains("@username"), "{help}");
}

/// The CLI on a terminal, in `sh` so that `stty` shows the terminal's
/// settings once it has exited.
fn on_terminal(s: &Setup) -> pty::PtyChild {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("\"$0\" \"$@\"; echo \"exit=$?\"; stty -a; echo stty-done")
        .arg(bin())
        .arg("--config")
        .arg(&s.config)
        .args(["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    pty::PtyChild::spawn(cmd)
}

/// The nonce of the link on the terminal.
fn nonce_on(term: &mut pty::PtyChild) -> String {
    term.expect("?start=", WAIT);
    term.expect("\r\n", WAIT).trim().to_string()
}

/// Is echo on, by `stty -a` after `exit=`?
fn echo_after_exit(term: &mut pty::PtyChild) -> bool {
    let settings = term.expect("stty-done", WAIT);
    let words: Vec<&str> = settings.split_whitespace().collect();
    assert!(
        words.contains(&"echo") || words.contains(&"-echo"),
        "no stty output:\n{}",
        term.transcript()
    );
    words.contains(&"echo")
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn on_a_terminal_the_code_is_hidden_and_an_abort_gives_echo_back() {
    let fake = fake();
    let (s, bytes, ino) = setup(&fake);

    // Aborted at the code prompt: echo, off for the code, is on again.
    let mut term = on_terminal(&s);
    let nonce = nonce_on(&mut term);
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    fake.wait_for_message(WAIT).expect("code sent");
    term.expect("Code: ", WAIT);
    term.wait_for_echo_off(WAIT);
    fake.push(&Incoming::private(mallory(), &start(&nonce)));
    term.expect("a second Telegram account", WAIT);
    term.expect("exit=1", WAIT);
    assert!(echo_after_exit(&mut term), "{}", term.transcript());
    term.wait(WAIT);
    let out = Out {
        code: Some(1),
        stdout: term.transcript(),
        stderr: String::new(),
    };
    assert_untouched(&s, &bytes, ino, &out);

    // Completed: the code typed is not on the screen.
    let mut term = on_terminal(&s);
    let nonce = nonce_on(&mut term);
    fake.push(&Incoming::private(daemon_user(), &start(&nonce)));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    term.expect("Code: ", WAIT);
    term.wait_for_echo_off(WAIT);
    let code = find_code(&msg.text).expect("code");
    term.send_line(&code);
    term.expect("Enrolled daemon", WAIT);
    term.expect("exit=0", WAIT);
    assert!(echo_after_exit(&mut term), "{}", term.transcript());
    term.wait(WAIT);
    assert!(
        !term.transcript().contains(&code),
        "code echoed:\n{}",
        term.transcript()
    );
    assert!(
        s.users_text()
            .expect("users")
            .contains(&format!("telegram = \"{CHAT}\""))
    );
}
