//! The CLI with a `[directory]` against a real slapd on loopback
//! (test-support/src/slapd.rs) and the fake Bot API: `users` lists both
//! sources and says which is which, `status` checks the directory (bind,
//! search, latency, TLS) and fails when it is unusable, and `enroll
//! --directory-bind-dn` writes the verified chat id into the user's entry
//! -- after which a second "host" with the same [directory] and no local
//! enrolment lets the user in through real libpam.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;
use pgw_test_support::slapd::Slapd;

use std::time::Duration;

use cli_harness::*;
use fake_telegram::{FakeOptions, FakeTelegram, find_code};
use pam_harness::{Answers, CHAT, PamEnv, TOKEN};

const WAIT: Duration = Duration::from_secs(20);
/// alice's chat in the directory.
const DIR_CHAT: i64 = 555_000_111;
/// The chat `enroll` writes for carol.
const NEW_CHAT: i64 = 555_000_222;

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT, DIR_CHAT, NEW_CHAT],
        ..FakeOptions::default()
    })
    .expect("fake")
}

/// alice has a chat in the directory, bob one that users.toml overrides,
/// carol an entry without recipients, dave a plain entry without the class.
fn slapd() -> Slapd {
    let slapd = Slapd::start().unwrap_or_else(|e| panic!("slapd did not start: {e}"));
    slapd
        .add_user(
            "alice",
            &[
                ("pamGatewayTelegram", &DIR_CHAT.to_string()),
                ("mobile", "+4915112345678"),
            ],
        )
        .expect("alice");
    slapd
        .add_user("bob", &[("pamGatewayTelegram", "555000333")])
        .expect("bob");
    slapd.add_user("carol", &[]).expect("carol");
    slapd
        .modify(&format!(
            "dn: uid=dave,{}\nchangetype: add\nobjectClass: inetOrgPerson\n\
             objectClass: posixAccount\nuid: dave\ncn: dave\nsn: dave\nuidNumber: 3001\n\
             gidNumber: 3001\nhomeDirectory: /home/dave\n",
            Slapd::PEOPLE_DN
        ))
        .expect("dave");
    slapd
}

/// `[directory]` for `uri` with the reader's bind and the test CA (or `ca`).
fn directory_section(slapd: &Slapd, uri: &str, ca: &std::path::Path) -> String {
    format!(
        "\n[directory]\nuri = \"{uri}\"\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
         bind_password = \"{}\"\nca_file = \"{}\"\ntimeout = 3\n\
         [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n",
        Slapd::BASE_DN,
        slapd.reader_dn(),
        slapd.reader_password(),
        ca.display()
    )
}

fn setup(fake: &FakeTelegram, slapd: &Slapd) -> Setup {
    Setup::with_fake(
        fake,
        &directory_section(slapd, &slapd.ldap_uri(), slapd.ca_file()),
    )
}

/// The fake, the directory of [`slapd`], and a CLI set-up using both.
fn started() -> (FakeTelegram, Slapd, Setup) {
    let fake = fake();
    let slapd = slapd();
    let s = setup(&fake, &slapd);
    (fake, slapd, s)
}

/// `enroll USER --telegram CHAT --directory-bind-dn DN`, then `more`.
fn enroll_into<'a>(user: &'a str, chat: &'a str, dn: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "enroll",
        user,
        "--telegram",
        chat,
        "--directory-bind-dn",
        dn,
    ];
    args.extend_from_slice(more);
    args
}

/// Types the code `msg` carries into `run`; how the run ended.
fn type_code(mut run: Running, msg: &fake_telegram::SentMessage) -> Out {
    run.type_line(&find_code(&msg.text).expect("code"));
    run.finish()
}

fn no_secret_in(out: &Out, slapd: &Slapd) {
    for secret in [slapd.reader_password(), slapd.admin_password()] {
        assert!(
            !out.all().contains(secret),
            "a password leaked\n{}",
            out.dump()
        );
    }
}

/// The line of `stdout` that starts with `user` and names `source`.
fn row<'a>(out: &'a Out, user: &str, source: &str) -> Option<&'a str> {
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{user} ")) && l.contains(source))
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn users_lists_both_sources_and_says_which() {
    let (_fake, slapd, s) = started();
    s.write_users(&format!(
        "[users.bob]\ntelegram = \"{CHAT}\"\n[users.daemon]\ntelegram = \"777000777\"\n"
    ));
    let out = s.run(&["users"], "");
    out.expect_code(0).expect_in_stdout("SOURCE");
    let users_file = s.users.display().to_string();
    let alice = row(&out, "alice", "directory").unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(
        alice.contains("telegram") && alice.contains("***111"),
        "{alice}"
    );
    let daemon = row(&out, "daemon", &users_file).unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(daemon.contains("***777"), "{daemon}");
    // bob is in both: users.toml is used here, the directory's is not.
    assert!(row(&out, "bob", &users_file).is_some(), "{}", out.dump());
    let bob_dir = row(&out, "bob", "directory").unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(bob_dir.contains("not used here"), "{bob_dir}");
    // carol and dave have no recipient: not listed.
    assert!(
        !out.stdout.contains("carol") && !out.stdout.contains("dave"),
        "{}",
        out.dump()
    );
    assert!(
        !out.stdout.contains(&DIR_CHAT.to_string()),
        "masked\n{}",
        out.dump()
    );
    no_secret_in(&out, &slapd);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn users_lists_the_local_file_and_fails_when_the_directory_is_down() {
    let (_fake, mut slapd, s) = started();
    s.write_users("[users.daemon]\ntelegram = \"777000777\"\n");
    slapd.stop();
    let out = s.run(&["users"], "");
    out.expect_code(4).expect_in_stderr("cannot connect");
    assert!(
        row(&out, "daemon", &s.users.display().to_string()).is_some(),
        "{}",
        out.dump()
    );
    no_secret_in(&out, &slapd);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_checks_bind_search_latency_and_tls() {
    let (fake, slapd, s) = started();
    s.write_users("");
    let pam_dir = s.dir.path().join("pam.d");
    std::fs::create_dir(&pam_dir).expect("pam.d");
    let pam_dir = pam_dir.display().to_string();
    let out = s.run(&["status", "--pam-dir", &pam_dir], "");
    let dump = out.dump();
    out.expect_in_stdout(&format!("Directory ({})", slapd.ldap_uri()))
        .expect_in_stdout(
            "connected over StartTLS (required), certificate verified against the CA in",
        )
        .expect_in_stdout(&format!("bound as {}", slapd.reader_dn()))
        .expect_in_stdout("2 entries with recipients")
        .expect_in_stdout("ms in all")
        .expect_in_stdout("every user's recipients come from the directory");
    assert!(!out.stdout.contains("nobody is enrolled and"), "{dump}");
    let directory_part = out.stdout.split("Directory (").nth(1).unwrap_or_default();
    let directory_part = directory_part.split("\n\n").next().unwrap_or_default();
    assert!(!directory_part.contains("FAIL"), "{dump}");
    no_secret_in(&out, &slapd);

    // ldaps and ldapi say what they use.
    for (uri, words) in [
        (slapd.ldaps_uri(), "connected over TLS (ldaps)"),
        (slapd.ldapi_uri(), "connected over a local socket (ldapi)"),
    ] {
        let s = Setup::with_fake(&fake, &directory_section(&slapd, &uri, slapd.ca_file()));
        s.write_users("");
        let out = s.run(&["status", "--pam-dir", &pam_dir], "");
        out.expect_in_stdout(words)
            .expect_in_stdout("2 entries with recipients");
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_fails_on_a_wrong_ca_a_stopped_server_and_a_bad_bind() {
    let fake = fake();
    let mut slapd = slapd();
    let pam_dir = std::env::temp_dir().join(format!("pgw-cli-dir-pam-{}", std::process::id()));
    let _ = std::fs::create_dir(&pam_dir);
    let pam_dir_s = pam_dir.display().to_string();
    let secrets = [
        slapd.reader_password().to_string(),
        slapd.admin_password().to_string(),
    ];
    let fails = |s: &Setup, needle: &str| {
        s.write_users("");
        let out = s.run(&["status", "--pam-dir", &pam_dir_s], "");
        out.expect_code(1);
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains("FAIL") && l.contains(needle))
            .unwrap_or_else(|| panic!("no FAIL line with {needle:?}\n{}", out.dump()))
            .to_string();
        assert!(line.contains("refused"), "{line}");
        for secret in &secrets {
            assert!(
                !out.all().contains(secret.as_str()),
                "a password leaked\n{}",
                out.dump()
            );
        }
    };
    let wrong_ca = Setup::with_fake(
        &fake,
        &directory_section(&slapd, &slapd.ldap_uri(), slapd.other_ca_file()),
    );
    fails(&wrong_ca, "cannot connect");
    let bad_bind = Setup::with_fake(
        &fake,
        &directory_section(&slapd, &slapd.ldap_uri(), slapd.ca_file())
            .replace(slapd.reader_password(), "not-the-password"),
    );
    fails(&bad_bind, "the module's bind fails");
    let s = setup(&fake, &slapd);
    slapd.stop();
    fails(&s, "cannot connect");
    let _ = std::fs::remove_dir_all(&pam_dir);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_writes_the_verified_chat_into_the_directory() {
    let (fake, slapd, s) = started();
    // dave's entry has no pamGatewayUser: enroll adds it with the chat.
    let chat = NEW_CHAT.to_string();
    let admin_pw = slapd.admin_password_file().display().to_string();
    let run = s.spawn(&enroll_into(
        "dave",
        &chat,
        slapd.admin_dn(),
        &["--directory-bind-password-file", &admin_pw],
    ));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    assert_eq!(msg.chat_id, NEW_CHAT.to_string());
    assert!(
        slapd
            .attr("dave", "pamGatewayTelegram")
            .expect("read")
            .is_empty(),
        "nothing written before the code"
    );
    let out = type_code(run, &msg);
    out.expect_code(0)
        .expect_in_stdout("Enrolled dave in the directory")
        .expect_in_stdout("added objectClass pamGatewayUser")
        .expect_in_stdout("uid=dave,ou=people,dc=example,dc=test");
    assert_eq!(
        slapd.attr("dave", "pamGatewayTelegram").expect("read"),
        [NEW_CHAT.to_string()]
    );
    assert!(
        slapd
            .attr("dave", "objectClass")
            .expect("classes")
            .iter()
            .any(|c| c == "pamGatewayUser")
    );
    assert!(s.users_text().is_none(), "the users file is not written");
    no_secret_in(&out, &slapd);

    // Again for alice, who has the class and a chat: replaced, class kept.
    let out = s.run(
        &enroll_into("alice", &chat, slapd.admin_dn(), &["--no-verify"]),
        &format!("{}\n", slapd.admin_password()),
    );
    out.expect_code(0)
        .expect_in_stderr(&format!("Password for {}", slapd.admin_dn()));
    assert!(!out.stdout.contains("added objectClass"), "{}", out.dump());
    assert_eq!(
        slapd.attr("alice", "pamGatewayTelegram").expect("read"),
        [NEW_CHAT.to_string()]
    );
    assert_eq!(
        slapd.attr("alice", "mobile").expect("read"),
        ["+4915112345678"],
        "other attributes stay"
    );
    no_secret_in(&out, &slapd);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_into_the_directory_refuses_before_asking_anything() {
    let (fake, slapd, s) = started();
    let chat = NEW_CHAT.to_string();
    let admin_pw = slapd.admin_password_file().display().to_string();
    // A wrong password: refused before any code is sent.
    let out = s.run(
        &enroll_into("carol", &chat, slapd.admin_dn(), &[]),
        "wrong-password\n",
    );
    out.expect_code(4).expect_in_stderr("cannot bind as");
    assert!(!out.all().contains("wrong-password"), "{}", out.dump());
    // No entry for the user.
    let out = s.run(
        &enroll_into(
            "nobody-here",
            &chat,
            slapd.admin_dn(),
            &["--directory-bind-password-file", &admin_pw],
        ),
        "",
    );
    out.expect_code(2)
        .expect_in_stderr("the directory has no entry for nobody-here");
    // The read-only DN cannot write: the code is checked, nothing written.
    let reader_pw = slapd.reader_password_file().display().to_string();
    let run = s.spawn(&enroll_into(
        "carol",
        &chat,
        slapd.reader_dn(),
        &["--directory-bind-password-file", &reader_pw],
    ));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    let out = type_code(run, &msg);
    out.expect_code(4)
        .expect_in_stderr("cannot write pamGatewayTelegram");
    assert!(
        slapd
            .attr("carol", "pamGatewayTelegram")
            .expect("read")
            .is_empty()
    );
    assert_eq!(fake.sent().len(), 1, "only the reader's run sent a code");
    // No [directory] in gateway.toml.
    let plain = Setup::with_fake(&fake, "");
    plain
        .run(
            &enroll_into("carol", &chat, "cn=x", &["--no-verify"]),
            "pw\n",
        )
        .expect_code(3)
        .expect_in_stderr("has no [directory] section");
    // Only for Telegram; the password file needs the DN.
    s.run(
        &[
            "enroll",
            "carol",
            "--sms",
            "+4915112345678",
            "--directory-bind-dn",
            "cn=x",
        ],
        "",
    )
    .expect_code(2);
    s.run(
        &[
            "enroll",
            "carol",
            "--directory-bind-password-file",
            &admin_pw,
        ],
        "",
    )
    .expect_code(2);
}

/// The fleet: the CLI on one host writes carol's chat into the directory;
/// another host, with the same [directory] and an empty users.toml, sends
/// her login code there through real libpam.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_chat_enrolled_into_the_directory_lets_carol_in_on_another_host() {
    let (fake, slapd, s) = started();
    let host_b = PamEnv::with_files(
        &format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 2\n\
             connect_timeout = 1\n{}",
            fake.url(),
            directory_section(&slapd, &slapd.ldaps_uri(), slapd.ca_file())
        ),
        "",
    );
    // Before: carol's entry has no chat, so host B refuses her.
    let sent_before = fake.sent().len();
    let before = host_b.authenticate(
        "carol",
        Answers::Lines(vec!["000000".to_string(); 3]),
        Some(&fake),
    );
    assert!(!before.success, "{}", before.dump());
    assert!(
        before.log.contains("result=denied-not-enrolled"),
        "{}",
        before.dump()
    );
    assert_eq!(
        fake.sent().len(),
        sent_before,
        "nothing sent to the unenrolled"
    );

    let run = s.spawn(&enroll_into(
        "carol",
        &NEW_CHAT.to_string(),
        slapd.admin_dn(),
        &[
            "--directory-bind-password-file",
            &slapd.admin_password_file().display().to_string(),
        ],
    ));
    let msg = fake.wait_for_message(WAIT).expect("enrolment code");
    type_code(run, &msg).expect_code(0);
    assert!(s.users_text().is_none());

    let after = host_b.authenticate("carol", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(after.success, "{}", after.dump());
    let sent = fake.sent();
    assert_eq!(
        sent.len(),
        sent_before + 2,
        "enrolment code, then the login code"
    );
    assert_eq!(sent[sent.len() - 1].chat_id, NEW_CHAT.to_string());
    assert!(after.log.contains("result=success"), "{}", after.dump());
    assert_eq!(std::fs::read_to_string(&host_b.users).expect("users"), "");
}

/// The usual enrolment -- a deep link, Start, the code -- with the bind
/// password typed first on the same standard input.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_by_deep_link_into_the_directory() {
    let (fake, slapd, s) = started();
    let mut run = s.spawn(&[
        "enroll",
        "carol",
        "--no-qr",
        "--timeout",
        "20",
        "--directory-bind-dn",
        slapd.admin_dn(),
    ]);
    run.type_line(slapd.admin_password());
    let nonce = run.nonce(WAIT);
    fake.push_update(NEW_CHAT, "private", &format!("/start {nonce}"));
    let msg = fake.wait_for_message(WAIT).expect("code sent");
    assert_eq!(msg.chat_id, NEW_CHAT.to_string());
    let out = type_code(run, &msg);
    out.expect_code(0)
        .expect_in_stderr(&format!("Password for {}", slapd.admin_dn()))
        .expect_in_stdout("Enrolled carol in the directory");
    assert_eq!(
        slapd.attr("carol", "pamGatewayTelegram").expect("read"),
        [NEW_CHAT.to_string()]
    );
    assert!(s.users_text().is_none(), "the users file is not written");
    no_secret_in(&out, &slapd);
}
