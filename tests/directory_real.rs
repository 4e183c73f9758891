//! `[directory]` through real libpam: pamtester loads the module in a
//! private mount namespace (test-support/src/pam_harness.rs), the
//! recipients come from a real slapd on loopback (test-support/src/slapd.rs)
//! and the codes go to the loopback fake Bot API; sudo run by an
//! unprivileged caller (test-support/src/sandbox.rs) for the hostile case.
//!
//! Where the module could let someone through, the stack is
//! `[success=done ignore=ignore default=die] pam_gateway` then
//! `pam_permit`: a PAM_IGNORE there would be a login.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;
use pgw_test_support::sandbox;
use pgw_test_support::slapd::{Slapd, StallListener};

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, find_code};
use pam_harness::*;

const WAIT: Duration = Duration::from_secs(20);
/// alice's chat in the directory (users.toml has CHAT when it has her).
const DIR_CHAT: &str = "555000111";
/// The chat of `dir0` in [`fifty_concurrent_logins`]; `dirN` has this + N.
const FIRST_CHAT: i64 = 600_000_000;

/// The fake knows users.toml's chat, the directory's, and the 50 of
/// [`fifty_concurrent_logins`].
fn fake() -> FakeTelegram {
    let mut chats = vec![CHAT, DIR_CHAT.parse().expect("chat")];
    chats.extend((0..50).map(|i| FIRST_CHAT + i));
    FakeTelegram::start(FakeOptions {
        chats,
        ..FakeOptions::default()
    })
    .expect("fake")
}

fn slapd() -> Slapd {
    let slapd = Slapd::start().unwrap_or_else(|e| panic!("slapd did not start: {e}"));
    slapd
        .add_user("alice", &[("pamGatewayTelegram", DIR_CHAT)])
        .expect("add alice");
    // bob is in the directory without any recipient; mallory is not there.
    slapd.add_user("bob", &[]).expect("add bob");
    slapd
}

/// The fake and the directory.
fn started() -> (FakeTelegram, Slapd) {
    (fake(), slapd())
}

/// The `[directory]` section for `uri` (reader bind, the test CA),
/// `extra` keys inside it.
fn directory_section(slapd: &Slapd, uri: &str, extra: &str) -> String {
    format!(
        "[directory]\nuri = \"{uri}\"\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
         bind_password = \"{}\"\nca_file = \"{}\"\ntimeout = 2\n{extra}\
         [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n",
        Slapd::BASE_DN,
        slapd.reader_dn(),
        slapd.reader_password(),
        slapd.ca_file().display()
    )
}

/// A world whose gateway.toml has the fake, `policy` (TOML, may be empty)
/// and `directory`; users.toml is `users`.
fn env(fake_url: &str, policy: &str, directory: &str, users: &str) -> PamEnv {
    PamEnv::with_files(
        &format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{fake_url}\"\n\
             timeout = 2\nconnect_timeout = 1\n{policy}{directory}"
        ),
        users,
    )
}

/// [`env`] with the `[directory]` section for `uri` (`extra` keys in it),
/// `policy`, and an empty users.toml.
fn directory_env(
    fake: &FakeTelegram,
    slapd: &Slapd,
    uri: &str,
    extra: &str,
    policy: &str,
) -> PamEnv {
    env(
        &fake.url(),
        policy,
        &directory_section(slapd, uri, extra),
        "",
    )
}

/// [`directory_env`] over ldaps with a cache of an hour.
fn cached_env(fake: &FakeTelegram, slapd: &Slapd, policy: &str) -> PamEnv {
    directory_env(
        fake,
        slapd,
        &slapd.ldaps_uri(),
        "cache_max_age = 3600\n",
        policy,
    )
}

/// `run` was denied as the directory's failure (PAM_AUTHINFO_UNAVAIL), its
/// log saying so and each of `why`; `context` heads the failure message.
fn assert_unavailable(run: &PamRun, why: &[&str], context: &str) {
    run.assert_failed_with(AUTHINFO_UNAVAIL);
    assert!(
        run.log.contains("result=denied-directory-unavailable")
            && why.iter().all(|w| run.log.contains(w)),
        "{context}\n{}",
        run.dump()
    );
}

fn no_password_leaks(run: &PamRun, slapd: &Slapd) {
    for text in [&run.log, &run.stdout, &run.stderr] {
        assert!(
            !text.contains(slapd.reader_password()),
            "bind password leaked\n{}",
            run.dump()
        );
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_recipient_from_the_directory_gets_the_code_over_every_transport() {
    let (fake, slapd) = started();
    for uri in [slapd.ldap_uri(), slapd.ldaps_uri(), slapd.ldapi_uri()] {
        let env = directory_env(&fake, &slapd, &uri, "", "");
        let before = fake.sent().len();
        let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
        assert!(run.success, "{uri}\n{}", run.dump());
        let sent = fake.sent();
        assert_eq!(sent.len(), before + 1, "{uri}");
        assert_eq!(sent[before].chat_id, DIR_CHAT, "{uri}");
        assert!(run.log.contains("result=success"), "{}", run.dump());
        no_password_leaks(&run, &slapd);
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_bind_password_file_is_used_and_checked() {
    let (fake, slapd) = started();
    let env = env(&fake.url(), "", "", "");
    let pw = env.etc.join("ldap.pw");
    write_file(&pw, &format!("{}\n", slapd.reader_password()), 0o600);
    let section = directory_section(&slapd, &slapd.ldaps_uri(), "").replace(
        &format!("bind_password = \"{}\"\n", slapd.reader_password()),
        &format!("bind_password_file = \"{}\"\n", pw.display()),
    );
    let text = fs::read_to_string(&env.config).expect("config") + &section;
    write_file(&env.config, &text, 0o600);
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());

    // Readable by others: denied as a directory failure, not "not enrolled".
    write_file(&pw, slapd.reader_password(), 0o644);
    let run = env.authenticate_where_ignore_permits("alice", Some(&fake));
    assert_unavailable(&run, &["bind_password_file"], "");
    no_password_leaks(&run, &slapd);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn users_toml_overrides_the_directory_wholly() {
    let (fake, slapd) = started();
    let section = directory_section(&slapd, &slapd.ldapi_uri(), "");
    let users = format!("[users.alice]\ntelegram = \"{CHAT}\"\n");
    let env = env(&fake.url(), "", &section, &users);
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, CHAT.to_string(), "users.toml's chat, only");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn no_entry_or_no_recipient_is_not_enrolled() {
    let (fake, slapd) = started();
    let section = directory_section(&slapd, &slapd.ldaps_uri(), "");
    let env_deny = env(&fake.url(), "", &section, "");
    for user in ["mallory", "bob"] {
        let run = env_deny.authenticate(user, Answers::Lines(vec!["123456".into(); 3]), None);
        run.assert_failed_with(AUTH_ERR);
        assert!(
            run.log.contains("result=denied-not-enrolled"),
            "{user}\n{}",
            run.dump()
        );
    }
    let env_ignore = env(
        &fake.url(),
        "[policy]\nunenrolled = \"ignore\"\n",
        &section,
        "",
    );
    let run = env_ignore.authenticate_where_ignore_permits("mallory", None);
    run.assert_succeeded_logging("result=ignored-not-enrolled");
    assert!(fake.sent().is_empty());
}

/// Accounts whose names would widen an unescaped filter: each must find
/// nobody (no code to alice's chat), and be "not enrolled".
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn names_built_to_widen_the_filter_find_nobody() {
    let (fake, slapd) = started();
    let env = directory_env(&fake, &slapd, &slapd.ldapi_uri(), "", "");
    let names: [&[u8]; 6] = [
        b"*",
        b"a*",
        b")(uid=*",
        b"alice)(uid=*",
        b"x\\2a",
        b"al\xffice",
    ];
    let mut passwd = fs::read(&env.passwd).expect("passwd");
    for (i, name) in names.iter().enumerate() {
        passwd.extend_from_slice(name);
        passwd.extend_from_slice(
            format!(":x:{0}:{0}:pgw:/nonexistent:/bin/false\n", 64500 + i).as_bytes(),
        );
    }
    fs::write(&env.passwd, passwd).expect("write passwd");
    for name in names {
        let shown = String::from_utf8_lossy(name).into_owned();
        let args = [
            "pgw".into(),
            std::ffi::OsString::from_vec(name.to_vec()),
            "authenticate".into(),
        ];
        let run = env.pamtester(&args, Answers::Lines(vec!["123456".into(); 3]), None);
        assert!(!run.success, "{shown:?}\n{}", run.dump());
        assert!(
            run.log.contains("result=denied-not-enrolled")
                || run.log.contains("result=denied-unknown-user")
                || run.log.contains("cannot get the user name"),
            "{shown:?}\n{}",
            run.dump()
        );
        assert!(
            !run.log.contains("result=denied-directory-unavailable"),
            "{shown:?}\n{}",
            run.dump()
        );
    }
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_stopped_directory_denies_in_both_fail_modes() {
    let (fake, mut slapd) = started();
    let section = directory_section(&slapd, &slapd.ldaps_uri(), "");
    slapd.stop();
    for policy in [
        "",
        "[policy]\nfailmode = \"safe\"\n",
        "[policy]\nfailmode = \"safe\"\nunenrolled = \"ignore\"\n",
    ] {
        let env = env(&fake.url(), policy, &section, "");
        let run = env.authenticate_where_ignore_permits("alice", Some(&fake));
        assert_unavailable(&run, &["directory unreachable", "no cache"], policy);
        no_password_leaks(&run, &slapd);
    }
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_cache_stands_in_while_fresh_and_never_when_stale() {
    let (fake, mut slapd) = started();
    let env = cached_env(&fake, &slapd, "[policy]\nfailmode = \"safe\"\n");
    // The directory answers: the recipients are kept.
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    let state_file = env.state.join("alice.json");
    let state = fs::read_to_string(&state_file).expect("state file");
    assert!(state.contains(DIR_CHAT), "{state}");
    // Root-owned, not readable by others (like every state file).
    let meta = fs::metadata(&state_file).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::mode(&meta) & 0o077, 0);

    slapd.stop();
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("directory unreachable")
            && run.log.contains("using the cached recipients seen"),
        "{}",
        run.dump()
    );
    assert_eq!(
        fake.sent().last().map(|m| m.chat_id.clone()).as_deref(),
        Some(DIR_CHAT)
    );

    // Two hours old: stale, denied.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&state_file).expect("state")).expect("json");
    json["directory"]["seen"] = serde_json::json!(now - 7200);
    write_file(&state_file, &json.to_string(), 0o600);
    let sent = fake.sent().len();
    let run = env.authenticate_where_ignore_permits("alice", Some(&fake));
    assert_unavailable(&run, &["stale"], "");
    assert_eq!(fake.sent().len(), sent, "nothing sent");

    // Back up and the user gone from the directory: the cache is dropped
    // with the answer, so a later outage cannot bring her back.
    slapd.restart().expect("restart");
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: delete\n",
            Slapd::user_dn("alice")
        ))
        .expect("delete alice");
    let lines = vec!["123456".to_string(); 3];
    let run = env.authenticate("alice", Answers::Lines(lines), Some(&fake));
    assert!(!run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=denied-not-enrolled"),
        "{}",
        run.dump()
    );
    let state = fs::read_to_string(&state_file).expect("state file");
    assert!(!state.contains(DIR_CHAT), "{state}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_stalled_directory_denies_within_its_timeout() {
    let fake = fake();
    let stall = StallListener::start().expect("stall listener");
    let slapd = slapd();
    for uri in [stall.uri(), stall.ldaps_uri()] {
        let env = directory_env(
            &fake,
            &slapd,
            &uri,
            "",
            "[policy]\nfailmode = \"safe\"\nunenrolled = \"ignore\"\n",
        );
        env.set_stack(IGNORE_THEN_PERMIT);
        let started = Instant::now();
        let run = env.authenticate("alice", Answers::Eof, Some(&fake));
        let took = started.elapsed();
        assert_unavailable(&run, &["did not answer within 2 s"], &uri);
        // timeout = 2: the whole login ended within timeout + 1 s.
        assert!(took < Duration::from_secs(3), "{uri}: took {took:?}");
    }
    assert!(fake.sent().is_empty());
}

/// `[policy]` comes before the directory: a login it exempts is not held
/// by a stalled directory (the lookup is never made), while a covered login
/// of the same user is still denied. `unenrolled = "ignore"` so that a
/// lookup wrongly made first could not hide behind the same PAM_IGNORE.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_login_policy_exempts_never_asks_the_directory() {
    let fake = fake();
    let stall = StallListener::start().expect("stall listener");
    let slapd = slapd();
    let env = directory_env(
        &fake,
        &slapd,
        &stall.uri(),
        "",
        "[policy]\nunenrolled = \"ignore\"\nexempt_networks = [\"203.0.113.0/24\"]\n",
    );
    env.set_stack(IGNORE_THEN_PERMIT);
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "203.0.113.9")],
        Answers::Eof,
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=ignored-policy") && !run.log.contains("directory="),
        "{}",
        run.dump()
    );
    assert_eq!(
        stall.accepted(),
        0,
        "the directory was asked\n{}",
        run.dump()
    );

    let run = env.authenticate_with(
        "alice",
        &[("rhost", "198.51.100.9")],
        Answers::Eof,
        Some(&fake),
    );
    assert_unavailable(&run, &[], "");
    assert!(stall.accepted() >= 1, "{}", run.dump());
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_ca_that_did_not_sign_the_server_is_refused() {
    let (fake, slapd) = started();
    for uri in [slapd.ldap_uri(), slapd.ldaps_uri()] {
        let section = directory_section(&slapd, &uri, "").replace(
            &slapd.ca_file().display().to_string(),
            &slapd.other_ca_file().display().to_string(),
        );
        let env = env(&fake.url(), "[policy]\nfailmode = \"safe\"\n", &section, "");
        let run = env.authenticate_where_ignore_permits("alice", Some(&fake));
        assert_unavailable(&run, &["certificate"], &uri);
    }
    assert!(fake.sent().is_empty());
}

/// 50 logins at once, one per account (the harness's 24 and 26 more),
/// each typing the code its own message carries.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn fifty_concurrent_logins() {
    let fake = Arc::new(fake());
    let slapd = slapd();
    let section =
        directory_section(&slapd, &slapd.ldap_uri(), "timeout = 10\n").replace("timeout = 2\n", "");
    let env = env(&fake.url(), "", &section, "");
    let users: Vec<String> = (0..50).map(|i| format!("dir{i}")).collect();
    let mut passwd = fs::read_to_string(&env.passwd).expect("passwd");
    for (i, user) in users.iter().enumerate() {
        passwd.push_str(&format!(
            "{user}:x:{0}:{0}:pgw:/nonexistent:/usr/sbin/nologin\n",
            64600 + i
        ));
        slapd
            .add_user(
                user,
                &[("pamGatewayTelegram", &format!("{}", FIRST_CHAT + i as i64))],
            )
            .expect("add user");
    }
    write_file(&env.passwd, &passwd, 0o644);
    let env = Arc::new(env);
    // Fifty modules log at once: keep the log socket from filling up.
    let drain = env.drain_log();
    let mut logins = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let (user, chat) = (user.clone(), format!("{}", FIRST_CHAT + i as i64));
        let env = Arc::clone(&env);
        let fake = Arc::clone(&fake);
        logins.push(std::thread::spawn(move || {
            let f = Arc::clone(&fake);
            let wait = Box::new(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if let Some(m) = f.sent().iter().find(|m| m.chat_id == chat) {
                        return find_code(&m.text);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            });
            let run = env.authenticate(&user, Answers::CodeFrom(wait), Some(&fake));
            (user, run)
        }));
    }
    let failures: Vec<String> = logins
        .into_iter()
        .map(|l| l.join().expect("login thread"))
        .filter(|(_, run)| !run.success)
        .map(|(user, run)| format!("{user}: {}", run.dump()))
        .collect();
    assert!(
        failures.is_empty(),
        "{}\n--- log\n{}",
        failures.join("\n"),
        drain.text()
    );
    let sent = fake.sent();
    assert_eq!(sent.len(), 50, "one code per login");
    for (i, user) in users.iter().enumerate() {
        let chat = format!("{}", FIRST_CHAT + i as i64);
        let to_chat: Vec<_> = sent.iter().filter(|m| m.chat_id == chat).collect();
        assert_eq!(to_chat.len(), 1, "{user}");
        assert!(to_chat[0].text.contains(&format!("for {user}@")), "{user}");
    }
}

/// The hostile caller: pgwalice runs sudo with the password known and the
/// directory stalled; `failmode = "safe"` and `unenrolled = "ignore"`
/// would both wave a PAM_IGNORE through pam.d/sudo's `required` line.
/// The command must not run.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn sudo_with_a_stalled_directory_is_denied() {
    let fake = fake();
    let stall = StallListener::start().expect("stall listener");
    let sb = sandbox::Sandbox::new(
        &fake.url(),
        &format!(
            "[policy]\nfailmode = \"safe\"\nunenrolled = \"ignore\"\n\
             [directory]\nuri = \"{}\"\nbase_dn = \"dc=example,dc=test\"\ntimeout = 2\n\
             [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n",
            stall.uri()
        ),
    );
    // pgwalice only in the directory (which does not answer).
    write_file(&sb.stage_etc("pam_gateway/users.toml"), "", 0o644);
    sb.install_service("sudo", "sudo");
    let mark = sb.path().join("out/ran");
    let mut child = sb.spawn_sudo_as_alice(&mark);
    {
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = writeln!(stdin, "{}", sandbox::PASSWORD);
    }
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ended = child.try_wait().expect("wait").is_some();
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let log = sb.log();
    assert!(ended, "sudo did not end\n{log}");
    assert!(
        !out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!mark.exists(), "the command ran as root\n{log}");
    assert!(
        log.contains("result=denied-directory-unavailable") && !log.contains("result=ignored"),
        "{log}"
    );
    assert!(
        stall.accepted() >= 1,
        "the module never asked the directory"
    );
}

/// `pamtester pgw USER open_session` in the env's namespace: a session in
/// a process of its own, as sshd opens it.
fn open_session(env: &PamEnv, user: &str) -> PamRun {
    env.pamtester(&["pgw", user, "open_session"], Answers::Eof, None)
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_directory_user_gets_the_session_alert_and_the_cache_stands_in() {
    let (fake, mut slapd) = started();
    let env = cached_env(&fake, &slapd, "[alert]\nservices = [\"pgw\"]\n");
    env.set_stack(
        "auth required {module} config={config}\n\
         session optional {module} config={config}\n\
         session required pam_permit.so\n",
    );
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    let run = open_session(&env, "alice");
    assert!(run.success, "{}", run.dump());
    let alert = fake.wait_for_message(WAIT).expect("an alert");
    assert_eq!(alert.chat_id, DIR_CHAT, "{}", run.dump());
    assert!(alert.text.starts_with("Login: alice@"), "{}", alert.text);
    assert!(run.log.contains("alert=sent"), "{}", run.dump());
    no_password_leaks(&run, &slapd);

    // The directory down: the recipients the login cached are told.
    slapd.stop();
    let run = open_session(&env, "alice");
    assert!(run.success, "{}", run.dump());
    let alert = fake
        .wait_for_message(WAIT)
        .expect("an alert from the cache");
    assert_eq!(alert.chat_id, DIR_CHAT);
    assert!(
        run.log.contains("session: alert: directory=")
            && run.log.contains("using the cached recipients")
            && run.log.contains("alert=sent"),
        "{}",
        run.dump()
    );

    // bob is in the directory without a recipient: nobody to tell.
    slapd.restart().expect("restart");
    let run = open_session(&env, "bob");
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("user=bob") && run.log.contains("alert=not-sent"),
        "{}",
        run.dump()
    );
}
