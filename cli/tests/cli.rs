//! The `pam-gateway` admin CLI, run as a program against the loopback fake
//! Telegram: configure, enroll (deep link, code check, every failure case),
//! test, users, remove, status, concurrent and killed writers, root check.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;

use cli_harness::*;
use fake_telegram::{FakeOptions, FakeTelegram, Mode, find_code};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::gateway::telegram::TelegramConfig;
use pam_gateway_core::users::Users;
use pam_harness::{CHAT, SECRET_HALF, TOKEN, TempDir, write_file};

const WAIT: Duration = Duration::from_secs(20);
/// Chats the fake can deliver to.
const CHAT_B: i64 = 200_000_002;
const CHAT_C: i64 = 200_000_003;
const UNKNOWN_CHAT: i64 = 999_999_999;
const GROUP: i64 = -100_123_456;
const OTHER_TOKEN: &str = "987654321:BBEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3x";
const BOT: &str = "pam_gateway_test_bot";

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, CHAT_B, CHAT_C],
        ..FakeOptions::default()
    })
    .expect("fake")
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

fn users_of(setup: &Setup) -> Users {
    let text = setup.users_text().expect("users file");
    Users::parse(&setup.users, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn chat_of(users: &Users, user: &str) -> Option<String> {
    users
        .get(user)
        .and_then(|e| e.recipient(GatewayKind::Telegram))
        .map(str::to_string)
}

fn assert_no_token(out: &Out) {
    assert!(
        !out.all().contains(SECRET_HALF),
        "token leaked\n{}",
        out.dump()
    );
}

/// Plays the user's side of a deep-link enrolment: presses Start in a
/// private chat, reads the code the bot sent and types it.
fn press_start_and_type_code(run: &mut Running, fake: &FakeTelegram, chat: i64) {
    let nonce = run.nonce(WAIT);
    fake.push_update(chat, "private", &format!("/start {nonce}"));
    let msg = fake.wait_for_message(WAIT).expect("verification code sent");
    assert_eq!(msg.chat_id, chat.to_string());
    let code = find_code(&msg.text).expect("code in message");
    run.type_line(&code);
}

// ------------------------------------------------------------ configure ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_checks_the_token_keeps_the_file_and_never_prints_it() {
    let fake = fake();
    let s = Setup::empty();
    let before = format!(
        "# our settings\nusers_file = \"{}\" # where users live\n\n[code]\n# longer codes\ndigits = 8\n",
        s.users.display()
    );
    write_file(&s.config, &before, 0o600);
    let out = s.run(
        &["configure", "telegram", "--api-url", &fake.url()],
        &format!("{TOKEN}\n"),
    );
    out.expect_code(0)
        .expect_in_stdout("@pam_gateway_test_bot")
        .expect_in_stdout("Wrote");
    assert_no_token(&out);
    let text = fs::read_to_string(&s.config).expect("config");
    assert!(text.starts_with(&before), "comments and keys kept:\n{text}");
    let c = Config::parse(&s.config, &text).expect("valid config");
    let tg = c.section::<TelegramConfig>().cloned().expect("telegram");
    assert_eq!(tg.bot_token.expose(), TOKEN);
    assert_eq!(tg.api_url, fake.url());
    assert_eq!(c.code.digits, 8);
    let meta = fs::metadata(&s.config).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o600)
    );
    assert!(temp_files(&s.config).is_empty());

    // A new token for another bot replaces the old one in place; the
    // section's comments and other keys stay.
    let other = FakeTelegram::start(FakeOptions {
        token: OTHER_TOKEN.to_string(),
        bot_username: "second_bot".to_string(),
        ..FakeOptions::default()
    })
    .expect("fake");
    let with_comment = text.replace("[telegram]\n", "[telegram]\n# keep me\n");
    write_file(&s.config, &with_comment, 0o600);
    let out = s.run(
        &["configure", "telegram", "--api-url", &other.url()],
        &format!("{OTHER_TOKEN}\n"),
    );
    out.expect_code(0).expect_in_stdout("@second_bot");
    assert!(!out.all().contains(&OTHER_TOKEN[10..]), "{}", out.dump());
    let text = fs::read_to_string(&s.config).expect("config");
    assert!(text.contains("# keep me\n"), "{text}");
    assert!(
        text.contains(OTHER_TOKEN) && !text.contains(TOKEN),
        "{text}"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_repairs_a_missing_or_malformed_token_and_keeps_api_url() {
    let fake = fake();
    let s = Setup::empty();
    for section in [
        format!("[telegram]\napi_url = \"{}\"\ntimeout = 3\n", fake.url()),
        format!(
            "[telegram]\nbot_token = \"123:typo\"\napi_url = \"{}\"\ntimeout = 3\n",
            fake.url()
        ),
    ] {
        let before = format!("users_file = \"{}\"\n{section}", s.users.display());
        write_file(&s.config, &before, 0o600);
        // Without a valid token, the module cannot use the file at all.
        s.run(&["users"], "").expect_code(3);
        s.run(&["configure", "telegram"], &format!("{TOKEN}\n"))
            .expect_code(0)
            .expect_in_stdout("@pam_gateway_test_bot");
        let text = fs::read_to_string(&s.config).expect("config");
        let c = Config::parse(&s.config, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let tg = c.section::<TelegramConfig>().cloned().expect("telegram");
        assert_eq!(tg.api_url, fake.url(), "{text}");
        assert_eq!(tg.http.timeout, Duration::from_secs(3));
    }
    // Anything else wrong is for the admin to fix; nothing is written.
    let broken = "[telegram]\nbot_token = \"x\"\n[policy]\nfailmod = \"safe\"\n";
    write_file(&s.config, broken, 0o600);
    s.run(&["configure", "telegram"], &format!("{TOKEN}\n"))
        .expect_code(3)
        .expect_in_stderr("failmod")
        .expect_in_stderr("Fix that first");
    assert_eq!(fs::read_to_string(&s.config).expect("config"), broken);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_creates_the_directory_and_a_private_file() {
    let fake = fake();
    let s = Setup::empty();
    let dir = s.dir.path().join("new/pam_gateway");
    let config = dir.join("gateway.toml");
    let mut run = Running::start({
        let mut c = std::process::Command::new(bin());
        c.arg("--config")
            .arg(&config)
            .args(["configure", "telegram", "--api-url", &fake.url()]);
        c
    });
    run.type_line(TOKEN);
    let out = run.finish();
    out.expect_code(0).expect_in_stdout("Created");
    let dmeta = fs::metadata(&dir).expect("dir");
    assert_eq!(dmeta.mode() & 0o7777, 0o700);
    let fmeta = fs::metadata(&config).expect("file");
    assert_eq!((fmeta.uid(), fmeta.mode() & 0o7777), (0, 0o600));
    let text = fs::read_to_string(&config).expect("config");
    Config::parse(&config, &text).expect("valid");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_refuses_malformed_rejected_and_unreachable_tokens() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let before = fs::read_to_string(&s.config).expect("config");

    let out = s.run(&["configure", "telegram"], "not-a-token-secretvalue\n");
    out.expect_code(2).expect_in_stderr("not a bot token");
    assert!(!out.all().contains("secretvalue"), "{}", out.dump());

    let out = s.run(&["configure", "telegram"], &format!("{OTHER_TOKEN}\n"));
    out.expect_code(4)
        .expect_in_stderr("refused the bot token")
        .expect_in_stderr("Nothing was changed");
    assert!(!out.all().contains(&OTHER_TOKEN[10..]), "{}", out.dump());

    let out = s.run(
        &["configure", "telegram", "--api-url", &closed_port_url()],
        &format!("{TOKEN}\n"),
    );
    out.expect_code(4).expect_in_stderr("cannot be reached");

    let out = s.run(&["configure", "telegram"], "");
    out.expect_code(2).expect_in_stderr("no token given");

    let out = s.run(
        &[
            "configure",
            "telegram",
            "--api-url",
            "http://api.example.org",
        ],
        &format!("{TOKEN}\n"),
    );
    out.expect_code(2)
        .expect_in_stderr("only allowed to a loopback");

    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);
}

// --------------------------------------------------------------- enroll ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_by_deep_link_writes_the_chat_after_the_code() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let before = "# who gets codes where\n[users.alice]\n# alice's phone\ntelegram = \"555\"\n";
    s.write_users(before);
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30"]);
    let nonce = run.nonce(WAIT);
    let shown = run.wait_for("Waiting up to 30 s", WAIT);
    assert!(
        shown.contains(&format!("https://t.me/{BOT}?start={nonce}")),
        "{shown}"
    );
    assert!(
        shown.contains('█') || shown.contains('▀'),
        "QR code: {shown}"
    );
    assert_eq!(nonce.len(), 32);
    // Noise first: another chat's message, someone else's Start.
    fake.push_update(CHAT_C, "private", "hello bot");
    fake.push_update(CHAT_C, "private", "/start 0123456789abcdef");
    fake.push_update(CHAT, "private", &format!("/start {nonce}"));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    assert_eq!(msg.chat_id, CHAT.to_string());
    assert!(msg.text.contains("daemon@"), "{}", msg.text);
    let code = find_code(&msg.text).expect("code");
    // Nothing is written before the code is confirmed.
    assert_eq!(s.users_text().as_deref(), Some(before));
    run.type_line(&code);
    let out = run.finish();
    out.expect_code(0)
        .expect_in_stdout(&format!(
            "\n    user id   {CHAT}\n    username  no username\n"
        ))
        .expect_in_stdout("Code confirmed")
        .expect_in_stdout("Enrolled daemon");
    assert!(!out.all().contains(&code), "code echoed\n{}", out.dump());
    assert_no_token(&out);
    let text = s.users_text().expect("users");
    assert!(text.starts_with(before), "comments and alice kept:\n{text}");
    let users = users_of(&s);
    assert_eq!(chat_of(&users, "daemon"), Some(CHAT.to_string()));
    assert_eq!(chat_of(&users, "alice"), Some("555".to_string()));
    // Every update it read was confirmed with an offset.
    assert_eq!(fake.pending_updates(), 0);
    assert!(temp_files(&s.users).is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_creates_a_private_users_file() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let mut run = s.spawn(&["enroll", "bin", "--no-qr"]);
    press_start_and_type_code(&mut run, &fake, CHAT_B);
    let out = run.finish();
    out.expect_code(0);
    assert!(!out.stdout.contains('█'), "--no-qr\n{}", out.dump());
    assert_eq!(chat_of(&users_of(&s), "bin"), Some(CHAT_B.to_string()));
    let meta = fs::metadata(&s.users).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o600)
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_times_out_with_a_clear_message_and_writes_nothing() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let out = s.run(&["enroll", "daemon", "--timeout", "2", "--no-qr"], "");
    out.expect_code(1)
        .expect_in_stderr("timed out")
        .expect_in_stderr("press Start")
        .expect_in_stderr("--timeout");
    assert!(s.users_text().is_none());
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_refuses_a_group_chat_and_keeps_waiting() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let mut run = s.spawn(&["enroll", "daemon", "--timeout", "30", "--no-qr"]);
    let nonce = run.nonce(WAIT);
    fake.push_update(GROUP, "group", &format!("/start@{BOT} {nonce}"));
    run.wait_for("Refused: the Start came from a group chat", WAIT);
    assert!(fake.sent().is_empty(), "no code to a group");
    fake.push_update(CHAT, "private", &format!("/start {nonce}"));
    let msg = fake.wait_for_message(WAIT).expect("code");
    assert_eq!(msg.chat_id, CHAT.to_string());
    run.type_line(&find_code(&msg.text).expect("code"));
    run.finish().expect_code(0);
    assert_eq!(chat_of(&users_of(&s), "daemon"), Some(CHAT.to_string()));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_warns_when_the_chat_belongs_to_another_user() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    s.write_users(&format!("[users.alice]\ntelegram = \"{CHAT}\"\n"));
    let out = s.run(
        &[
            "enroll",
            "daemon",
            "--telegram",
            &CHAT.to_string(),
            "--no-verify",
        ],
        "",
    );
    out.expect_code(0)
        .expect_in_stdout("already enrolled for alice");
    let users = users_of(&s);
    assert_eq!(chat_of(&users, "alice"), Some(CHAT.to_string()));
    assert_eq!(chat_of(&users, "daemon"), Some(CHAT.to_string()));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_explains_a_webhook() {
    let fake = fake();
    fake.set_mode(Mode::Webhook);
    let s = Setup::with_fake(&fake, "");
    let out = s.run(&["enroll", "daemon", "--timeout", "10", "--no-qr"], "");
    out.expect_code(4)
        .expect_in_stderr("webhook")
        .expect_in_stderr("deleteWebhook")
        .expect_in_stderr("--telegram CHAT_ID");
    assert_no_token(&out);
    assert!(s.users_text().is_none());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_with_a_known_chat_still_checks_a_code() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let mut run = s.spawn(&["enroll", "daemon", "--telegram", &CHAT_B.to_string()]);
    let msg = fake.wait_for_message(WAIT).expect("code");
    assert_eq!(msg.chat_id, CHAT_B.to_string());
    run.type_line("000000000");
    run.type_line(&find_code(&msg.text).expect("code"));
    let out = run.finish();
    out.expect_code(0)
        .expect_in_stderr("2 tries left")
        .expect_in_stdout("Enrolled daemon");
    assert_eq!(chat_of(&users_of(&s), "daemon"), Some(CHAT_B.to_string()));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_fails_after_three_wrong_codes_or_none() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let chat = CHAT.to_string();
    let out = s.run(
        &["enroll", "daemon", "--telegram", &chat],
        "111111\n222222\n333333\n",
    );
    out.expect_code(1)
        .expect_in_stderr("1 tries left")
        .expect_in_stderr("wrong code 3 times");
    let out = s.run(&["enroll", "daemon", "--telegram", &chat], "");
    out.expect_code(1).expect_in_stderr("no code entered");
    assert!(s.users_text().is_none(), "nothing written");
    assert_eq!(fake.sent().len(), 2, "one code per run");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_explains_refused_chats_and_bad_users() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let out = s.run(
        &["enroll", "daemon", "--telegram", &UNKNOWN_CHAT.to_string()],
        "",
    );
    out.expect_code(1)
        .expect_in_stderr("chat not found: ask daemon to press Start in @pam_gateway_test_bot");
    let out = s.run(&["enroll", "daemon", "--telegram", &GROUP.to_string()], "");
    out.expect_code(2).expect_in_stderr("group or channel");
    let out = s.run(&["enroll", "daemon", "--telegram", "12ab"], "");
    out.expect_code(2)
        .expect_in_stderr("not a Telegram chat id");
    let out = s.run(&["enroll", "no-such-user-pgw", "--telegram", "1"], "");
    out.expect_code(2).expect_in_stderr("no account");
    let out = s.run(&["enroll", "daemon", "--no-verify"], "");
    out.expect_code(2);
    assert!(s.users_text().is_none());
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_without_telegram_config_says_what_to_do() {
    let s = Setup::empty();
    write_file(
        &s.config,
        &format!("users_file = \"{}\"\n", s.users.display()),
        0o600,
    );
    let out = s.run(&["enroll", "daemon", "--telegram", "1", "--no-verify"], "");
    out.expect_code(3)
        .expect_in_stderr("pam-gateway configure telegram");
    let s = Setup::empty();
    let out = s.run(&["enroll", "daemon"], "");
    out.expect_code(3).expect_in_stderr("no such file");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn two_deep_link_enrolments_at_once_both_land() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    s.write_users("# users\n");
    let a = s.spawn(&["enroll", "daemon", "--timeout", "40", "--no-qr"]);
    let b = s.spawn(&["enroll", "bin", "--timeout", "40", "--no-qr"]);
    // Only one may read the bot's updates; the other waits its turn, then
    // prints its own link.
    let deadline = std::time::Instant::now() + WAIT;
    let (first, first_chat, mut second, second_chat) = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no link printed\n{}\n{}\n{}\n{}",
            a.stdout(),
            a.stderr(),
            b.stdout(),
            b.stderr()
        );
        if a.stdout().contains("?start=") {
            break (a, CHAT, b, CHAT_B);
        }
        if b.stdout().contains("?start=") {
            break (b, CHAT_B, a, CHAT);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut first = first;
    second.wait_for("waiting for it to finish", WAIT);
    press_start_and_type_code(&mut first, &fake, first_chat);
    press_start_and_type_code(&mut second, &fake, second_chat);
    first.finish().expect_code(0);
    second.finish().expect_code(0);
    let users = users_of(&s);
    assert_eq!(chat_of(&users, "daemon"), Some(CHAT.to_string()));
    assert_eq!(chat_of(&users, "bin"), Some(CHAT_B.to_string()));
    assert!(s.users_text().expect("text").starts_with("# users\n"));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn parallel_enrolments_all_end_up_in_the_file() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    s.write_users("# many at once\n");
    let names = [
        "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    ];
    let runs: Vec<Running> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let chat = (300_000_000 + i).to_string();
            s.spawn(&["enroll", name, "--telegram", &chat, "--no-verify"])
        })
        .collect();
    for r in runs {
        r.finish().expect_code(0);
    }
    let users = users_of(&s);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            chat_of(&users, name),
            Some((300_000_000 + i).to_string()),
            "{name}"
        );
    }
    assert!(temp_files(&s.users).is_empty());
}

/// SIGKILL at random moments during enrolments: the users file is always
/// the old or the new version, never a torn one; temp files a kill leaves
/// are cleared by the next write.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn killed_writers_never_leave_a_torn_users_file() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    s.write_users("# survives every kill\n");
    let names = ["daemon", "bin", "sys", "sync", "games", "man", "lp", "mail"];
    let (mut kept_old, mut got_new, mut mid_write) = (0, 0, 0);
    // A run takes some 40-70 ms (debug build, loopback getMe) and writes at
    // its end: kills spread over 0-80 ms land before, during and after.
    let mut random = [0u8; 4 * 100];
    getrandom::fill(&mut random).expect("random");
    let delays: Vec<u64> = random
        .chunks(4)
        .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])) % 80_000)
        .collect();
    for (round, delay) in delays.iter().enumerate() {
        let name = names[round % names.len()];
        let chat = (400_000_000 + round).to_string();
        let before = s.users_text().expect("users");
        let temps_before = temp_files(&s.users).len();
        let expected_new = pam_gateway_cli::toml_edits::set_user_recipient(
            &s.users, &before, name, "telegram", &chat,
        )
        .expect("edit");
        let mut child = s
            .command(&["enroll", name, "--telegram", &chat, "--no-verify"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(*delay));
        let _ = child.kill();
        let _ = child.wait();
        let after = s.users_text().expect("users file still there");
        Users::parse(&s.users, &after).unwrap_or_else(|e| panic!("round {round}: {e}\n{after}"));
        if after == before {
            kept_old += 1;
        } else {
            assert_eq!(after, expected_new, "round {round}: neither old nor new");
            got_new += 1;
        }
        // A new temp file: killed between writing it and the rename.
        if temp_files(&s.users).len() > temps_before {
            mid_write += 1;
        }
    }
    eprintln!(
        "kill rounds: {kept_old} kept the old file, {got_new} had the new one, \
         {mid_write} were killed mid-write (temp file written, not renamed)"
    );
    // One complete run clears whatever temp files the kills left.
    s.run(
        &[
            "enroll",
            "daemon",
            "--telegram",
            &CHAT.to_string(),
            "--no-verify",
        ],
        "",
    )
    .expect_code(0);
    assert!(
        temp_files(&s.users).is_empty(),
        "{:?}",
        temp_files(&s.users)
    );
    assert_eq!(chat_of(&users_of(&s), "daemon"), Some(CHAT.to_string()));
}

// ------------------------------------------------------------ test USER ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn test_message_is_delivered_or_explained() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    s.write_users(&format!(
        "[users.alice]\ntelegram = \"{CHAT}\"\n[users.bob]\ntelegram = \"{UNKNOWN_CHAT}\"\n"
    ));
    let out = s.run(&["test", "alice"], "");
    out.expect_code(0)
        .expect_in_stdout("Delivered")
        .expect_in_stdout("@pam_gateway_test_bot")
        .expect_in_stdout("***977");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, CHAT.to_string());
    assert!(
        sent[0].text.contains("test message for alice@"),
        "{}",
        sent[0].text
    );

    let out = s.run(&["test", "bob"], "");
    out.expect_code(1)
        .expect_in_stderr("chat not found: ask bob to press Start in @pam_gateway_test_bot");

    let out = s.run(&["test", "carol"], "");
    out.expect_code(2)
        .expect_in_stderr("carol is not enrolled")
        .expect_in_stderr("pam-gateway enroll carol");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn test_message_explains_an_unreachable_gateway_and_a_bad_token() {
    let s = Setup::with_api(&closed_port_url(), "");
    s.write_users(&format!("[users.alice]\ntelegram = \"{CHAT}\"\n"));
    let out = s.run(&["test", "alice"], "");
    out.expect_code(4).expect_in_stderr("cannot be reached");

    let other = FakeTelegram::start(FakeOptions {
        token: OTHER_TOKEN.to_string(),
        ..FakeOptions::default()
    })
    .expect("fake");
    let s = Setup::with_fake(&other, "");
    s.write_users(&format!("[users.alice]\ntelegram = \"{CHAT}\"\n"));
    let out = s.run(&["test", "alice"], "");
    out.expect_code(4)
        .expect_in_stderr("refused the bot token")
        .expect_in_stderr("configure telegram");
    assert_no_token(&out);
}

// ------------------------------------------------------- users, remove ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn users_lists_masked_and_remove_keeps_the_rest() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    let out = s.run(&["users"], "");
    out.expect_code(0).expect_in_stdout("Nobody is enrolled");
    s.write_users(&format!(
        "# team\n\n[users.alice]\ntelegram = \"{CHAT}\"\n\n# bob's work phone\n[users.bob]\ntelegram = \"{CHAT_B}\"\n"
    ));
    let out = s.run(&["users"], "");
    out.expect_code(0)
        .expect_in_stdout("alice")
        .expect_in_stdout("***977")
        .expect_in_stdout("***002");
    assert!(!out.stdout.contains(&CHAT.to_string()), "{}", out.dump());

    s.run(&["remove", "alice"], "")
        .expect_code(0)
        .expect_in_stdout("Removed alice");
    let text = s.users_text().expect("users");
    assert!(
        text.contains("# team") && text.contains("# bob's work phone"),
        "{text}"
    );
    let users = users_of(&s);
    assert!(users.get("alice").is_none());
    assert_eq!(chat_of(&users, "bob"), Some(CHAT_B.to_string()));
    s.run(&["remove", "alice"], "")
        .expect_code(2)
        .expect_in_stderr("not enrolled");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unsafe_users_file_is_refused_with_the_fix() {
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    write_file(
        &s.users,
        &format!("[users.alice]\ntelegram = \"{CHAT}\"\n"),
        0o666,
    );
    s.run(&["users"], "")
        .expect_code(3)
        .expect_in_stderr("chmod go-w");
    s.run(
        &[
            "enroll",
            "daemon",
            "--telegram",
            &CHAT.to_string(),
            "--no-verify",
        ],
        "",
    )
    .expect_code(3)
    .expect_in_stderr("chmod go-w");
    fs::set_permissions(&s.users, fs::Permissions::from_mode(0o644)).expect("chmod");
    s.write_users("[users.alice]\ntelegram = \"12ab\"\n");
    s.run(&["users"], "")
        .expect_code(3)
        .expect_in_stderr("users.toml:2");
}

// --------------------------------------------------------------- status ----

/// A fake `sshd` printing `settings` for `sshd -T`.
fn fake_sshd(s: &mut Setup, settings: &str) {
    let bin = s.dir.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    write_file(
        &bin.join("sshd"),
        &format!("#!/bin/sh\n[ \"$1\" = -T ] || exit 9\ncat <<'EOF'\n{settings}EOF\n"),
        0o755,
    );
    s.path_prefix = Some(bin);
}

/// A pam.d in the temp dir with Debian's common-auth; `module` is a file
/// standing in for the installed pam_gateway.so.
fn pam_dir(s: &Setup, stacks: &[(&str, &str)]) -> (String, String) {
    let dir = s.dir.path().join("pam.d");
    fs::create_dir_all(&dir).expect("mkdir");
    let module = s.dir.path().join("lib/pam_gateway.so");
    fs::create_dir_all(module.parent().expect("dir")).expect("mkdir");
    write_file(&module, "", 0o644);
    // And its direct library, beside it (src/direct.rs).
    write_file(&module.with_file_name("pam_gateway_direct.so"), "", 0o644);
    write_file(
        &dir.join("common-auth"),
        "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
        0o644,
    );
    for (name, text) in stacks {
        let text = text
            .replace("{module}", &module.display().to_string())
            .replace("{config}", &s.config.display().to_string());
        write_file(&dir.join(name), &text, 0o644);
    }
    (dir.display().to_string(), module.display().to_string())
}

const GOOD_SSHD: &str = "usepam yes\nkbdinteractiveauthentication yes\npasswordauthentication no\n\
pubkeyauthentication yes\nauthenticationmethods publickey,keyboard-interactive:pam\n";

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_is_clean_for_a_good_setup() {
    let fake = fake();
    let mut s = Setup::with_fake(&fake, "");
    s.write_users(&format!("[users.daemon]\ntelegram = \"{CHAT}\"\n"));
    fake_sshd(&mut s, GOOD_SSHD);
    let (dir, _) = pam_dir(
        &s,
        &[
            (
                "sshd",
                "# key, then code\nauth [success=done ignore=ignore default=die] {module} config={config}\nauth required pam_permit.so\n",
            ),
            (
                "sudo",
                "@include common-auth\nauth required {module} config={config}\n",
            ),
            ("cron", "@include common-auth\n"),
        ],
    );
    let out = s.run(&["status", "--pam-dir", &dir], "");
    out.expect_code(0)
        .expect_in_stdout("telegram: bot @pam_gateway_test_bot answers")
        .expect_in_stdout("sudo: pam_gateway runs after the password check (pam_unix.so, common-auth:1)")
        .expect_in_stdout("AuthenticationMethods publickey,keyboard-interactive:pam: every way in asks pam_gateway")
        .expect_in_stdout("daemon")
        .expect_in_stdout("0 problem(s) that would stop logins");
    assert!(!out.stdout.contains("FAIL"), "{}", out.dump());
    assert!(
        !out.stdout.contains("cron"),
        "cron does not load it\n{}",
        out.dump()
    );
    assert_no_token(&out);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_fails_on_what_would_stop_logins() {
    let other = FakeTelegram::start(FakeOptions {
        token: OTHER_TOKEN.to_string(),
        ..FakeOptions::default()
    })
    .expect("fake");
    let mut s = Setup::with_fake(&other, "");
    s.write_users(&format!("[users.ghost-pgw]\ntelegram = \"{CHAT}\"\n"));
    fake_sshd(
        &mut s,
        "usepam yes\nkbdinteractiveauthentication no\npasswordauthentication yes\nauthenticationmethods any\n",
    );
    let (dir, module) = pam_dir(
        &s,
        &[
            (
                "sshd",
                "@include common-auth\nauth required {module} config={config}\n",
            ),
            (
                "sudo",
                "auth required {module} config={config} debgu\n@include common-auth\n",
            ),
            (
                "login",
                "@include common-auth\nauth required /nonexistent/pam_gateway.so\n",
            ),
        ],
    );
    let direct = Path::new(&module).with_file_name("pam_gateway_direct.so");
    fs::set_permissions(&direct, fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = s.run(&["status", "--pam-dir", &dir], "");
    out.expect_code(1)
        .expect_in_stdout("sshd: the module's direct library cannot be loaded")
        .expect_in_stdout("pam_gateway_direct.so: mode 0666 is writable by group or others")
        .expect_in_stdout("FAIL  telegram: the bot token is refused")
        .expect_in_stdout("unknown module argument \"debgu\"")
        .expect_in_stdout("sudo: pam_gateway (sudo:1) runs before the password check")
        .expect_in_stdout("/nonexistent/pam_gateway.so is not installed")
        .expect_in_stdout("login: uses config=/etc/pam_gateway/gateway.toml")
        .expect_in_stdout("FAIL  KbdInteractiveAuthentication no")
        .expect_in_stdout("warn  AuthenticationMethods any")
        .expect_in_stdout("ghost-pgw has no account on this system")
        .expect_in_stderr("would stop logins");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_reports_missing_and_unsafe_files() {
    let s = Setup::empty();
    let out = s.run(&["status", "--pam-dir", "/nonexistent-pam.d"], "");
    out.expect_code(1)
        .expect_in_stdout("no such file")
        .expect_in_stdout("pam-gateway configure telegram creates it");
    let fake = fake();
    let s = Setup::with_fake(&fake, "");
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = s.run(&["status", "--pam-dir", "/nonexistent-pam.d"], "");
    out.expect_code(1).expect_in_stdout("chmod 600");
    fs::set_permissions(&s.config, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = s.run(&["status", "--pam-dir", "/nonexistent-pam.d"], "");
    out.expect_code(1)
        .expect_in_stdout("pam-gateway enroll USER creates it");
}

// ---------------------------------------------------------- real libpam ----

/// The whole job: the CLI enrols a user by deep link, then a real libpam
/// login of that user (pamtester, private mount namespace) succeeds with
/// the code the fake delivered, reading the users file the CLI wrote.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn login_after_enrolment_succeeds_with_the_delivered_code() {
    let fake = fake();
    let env = pam_harness::PamEnv::with_fake(&fake, "");
    let mut run = Running::start({
        let mut c = std::process::Command::new(bin());
        c.arg("--config")
            .arg(&env.config)
            .args(["enroll", "daemon", "--timeout", "30", "--no-qr"]);
        c
    });
    press_start_and_type_code(&mut run, &fake, CHAT_B);
    run.finish().expect_code(0);
    let text = fs::read_to_string(&env.users).expect("users");
    assert!(
        text.contains("[users.alice]"),
        "harness entry kept:\n{text}"
    );
    assert!(
        text.contains(&format!("[users.daemon]\ntelegram = \"{CHAT_B}\"")),
        "{text}"
    );

    let login = env.authenticate(
        "daemon",
        pam_harness::Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    assert!(login.success, "{}", login.dump());
    let sent = fake.sent();
    let last = sent.last().expect("login code");
    assert_eq!(last.chat_id, CHAT_B.to_string());
    assert!(last.text.contains("daemon@"), "{}", last.text);
    assert!(
        login.stderr.contains("Code sent via Telegram to ***002"),
        "{}",
        login.dump()
    );
}

// ----------------------------------------------------------------- root ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn every_command_refuses_to_run_without_root() {
    require_root();
    // A copy nobody may execute wherever the checkout lives.
    let dir = TempDir::new("cli-nobody");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.path().join("pam-gateway");
    fs::copy(bin(), &copy).expect("copy");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    // Every command, with arguments that would get past clap's parsing.
    let commands: Vec<Vec<&str>> = vec![
        vec!["configure", "telegram"],
        vec![
            "configure",
            "signal",
            "--url",
            "http://127.0.0.1:9",
            "--number",
            "+4915100000001",
        ],
        vec!["configure", "sms", "--provider", "websms"],
        vec!["configure", "webhook", "--recipe", "ntfy"],
        vec!["configure", "command", "--path", "/bin/true"],
        vec!["enroll", "daemon"],
        vec!["test", "daemon"],
        vec!["status"],
        vec!["users"],
        vec!["remove", "daemon"],
        vec!["totp", "daemon"],
        vec!["backup-codes", "daemon"],
        vec!["unlock", "daemon"],
        vec!["forget", "daemon"],
    ];
    // The list above is every command the CLI has: one added later without
    // being added here fails this test. (Hidden ones, `generate`, read
    // nothing and need no root.)
    let mut leaves = Vec::new();
    let cli = pam_gateway_cli::Cli::command();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let nested: Vec<_> = sub.get_subcommands().collect();
        if nested.is_empty() {
            leaves.push(sub.get_name().to_string());
        }
        for leaf in nested {
            leaves.push(format!("{} {}", sub.get_name(), leaf.get_name()));
        }
    }
    let listed: Vec<String> = commands
        .iter()
        .map(|args| {
            let words: Vec<&str> = args
                .iter()
                .take_while(|a| !a.starts_with('-'))
                .copied()
                .collect();
            // `configure X` names a command; `enroll daemon` names one and a user.
            let n = if words.first() == Some(&"configure") {
                2
            } else {
                1
            };
            words[..n.min(words.len())].join(" ")
        })
        .collect();
    for leaf in &leaves {
        assert!(
            listed.contains(leaf),
            "`pam-gateway {leaf}` is missing from this test"
        );
    }
    for (args, name) in commands.iter().zip(&listed) {
        let out = std::process::Command::new(&copy)
            .args(args.iter())
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("`pam-gateway {name}` needs root")) && stderr.contains("sudo"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Help works for anyone.
    let out = std::process::Command::new(&copy)
        .arg("--help")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("help");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit status:"));
}

#[test]
fn relative_config_and_bad_arguments_are_usage_errors() {
    let out = std::process::Command::new(bin())
        .args(["--config", "gateway.toml", "users"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absolute path"));
    let out = std::process::Command::new(bin())
        .args(["enroll", "daemon", "--timeout", "0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(bin())
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_every_command() {
    let out = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "configure",
        "enroll",
        "test",
        "status",
        "users",
        "remove",
        "--config",
    ] {
        assert!(help.contains(word), "{word}\n{help}");
    }
    for code in 0..=5 {
        assert!(
            help.contains(&format!("\n  {code}  ")),
            "exit {code}\n{help}"
        );
    }
}
