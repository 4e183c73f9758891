//! `[directory]` against a real OpenLDAP slapd on loopback
//! (test-support/src/slapd.rs), through the core's own client: every
//! transport with the test CA, a CA that did not sign the server refused,
//! `ldap://` never sends anything before StartTLS, a stalled or stopped
//! server fails within the deadline, names built to widen the filter find
//! nobody, and the client API the CLI uses (bind, search, modify).
//! Not root: slapd runs as the calling user.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use pam_gateway_core::config::Config;
use pam_gateway_core::directory::{self, Connection, DirectoryConfig, DirectoryError};
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::secure_file::Owner;
use pgw_test_support::pam_harness::{TOKEN, TempDir, write_file};
use pgw_test_support::slapd::{Slapd, StallListener};

const CHAT: &str = "123456977";
const MOBILE: &str = "+4915112345678";

fn start() -> Slapd {
    let slapd = Slapd::start().unwrap_or_else(|e| panic!("slapd did not start: {e}"));
    slapd
        .add_user("alice", &[("pamGatewayTelegram", CHAT), ("mobile", MOBILE)])
        .expect("add alice");
    slapd
        .add_user("bob", &[("pamGatewayTelegram", "555000111")])
        .expect("add bob");
    slapd.add_user("carol", &[]).expect("add carol");
    slapd
}

/// `[directory]` for `uri` with the reader's bind and the test CA, `extra`
/// keys added to the section.
fn config_text(slapd: &Slapd, uri: &str, extra: &str) -> String {
    format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\n\
         [signal]\nurl = \"http://127.0.0.1:9\"\nnumber = \"+4915100000001\"\n\
         [directory]\nuri = \"{uri}\"\nbase_dn = \"{}\"\nbind_dn = \"{}\"\n\
         bind_password = \"{}\"\nca_file = \"{}\"\ntimeout = 3\n{extra}\
         [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\nsignal = \"mobile\"\n",
        Slapd::BASE_DN,
        slapd.reader_dn(),
        slapd.reader_password(),
        slapd.ca_file().display(),
    )
}

fn parse(text: &str) -> DirectoryConfig {
    let config = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), text)
        .unwrap_or_else(|e| panic!("config: {e}\n{text}"));
    config.directory.expect("a [directory] section")
}

fn dir_for(slapd: &Slapd, uri: &str) -> DirectoryConfig {
    parse(&config_text(slapd, uri, ""))
}

fn alice() -> BTreeMap<GatewayKind, String> {
    BTreeMap::from([
        (GatewayKind::Telegram, CHAT.to_string()),
        (GatewayKind::Signal, MOBILE.to_string()),
    ])
}

#[test]
fn every_transport_finds_the_recipients_with_the_test_ca() {
    let slapd = start();
    for uri in [
        slapd.ldap_uri(),
        slapd.ldap_uri_localhost(),
        slapd.ldaps_uri(),
        slapd.ldapi_uri(),
    ] {
        let dir = dir_for(&slapd, &uri);
        let found = directory::lookup(&dir, "alice", Owner::current());
        assert_eq!(found, Ok(Some(alice())), "{uri}");
        let found = directory::lookup(&dir, "bob", Owner::current());
        assert_eq!(
            found,
            Ok(Some(BTreeMap::from([(
                GatewayKind::Telegram,
                "555000111".to_string()
            )]))),
            "{uri}"
        );
    }
}

#[test]
fn no_entry_and_an_entry_without_recipients_are_told_apart() {
    let slapd = start();
    let dir = dir_for(&slapd, &slapd.ldaps_uri());
    assert_eq!(directory::lookup(&dir, "dave", Owner::current()), Ok(None));
    assert_eq!(
        directory::lookup(&dir, "carol", Owner::current()),
        Ok(Some(BTreeMap::new()))
    );
}

#[test]
fn names_built_to_widen_the_filter_find_nobody() {
    let slapd = start();
    let dir = dir_for(&slapd, &slapd.ldapi_uri());
    // Unescaped, each of these would match alice, bob or everyone.
    let non_utf8 = String::from_utf8_lossy(b"al\xffice").into_owned();
    for name in [
        "*",
        "a*",
        ")(uid=*",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)(|(objectClass=*",
        "\\",
        "\\2a",
        "alice\0",
        "\0",
        "ali\\63e",
        non_utf8.as_str(),
    ] {
        let found = directory::lookup(&dir, name, Owner::current());
        assert_eq!(found, Ok(None), "{name:?}");
    }
    // The escaped filter still reaches the server as one filter: a real
    // name with the same characters around it is found.
    assert_eq!(
        directory::lookup(&dir, "alice", Owner::current()),
        Ok(Some(alice()))
    );
}

#[test]
fn a_ca_that_did_not_sign_the_server_is_refused() {
    let slapd = start();
    for uri in [slapd.ldap_uri(), slapd.ldaps_uri()] {
        let text = config_text(&slapd, &uri, "").replace(
            &slapd.ca_file().display().to_string(),
            &slapd.other_ca_file().display().to_string(),
        );
        let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
        assert!(
            matches!(&err, DirectoryError::Unavailable(m) if m.contains("certificate")),
            "{uri}: {err}"
        );
    }
    // The system bundle does not hold the test CA either.
    let text = config_text(&slapd, &slapd.ldaps_uri(), "").replace(
        &format!("ca_file = \"{}\"\n", slapd.ca_file().display()),
        "",
    );
    let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
}

/// A server that records what it is sent first and then hangs up: an
/// `ldap://` client must open with the StartTLS request, never the bind.
#[test]
fn ldap_sends_starttls_before_anything_else() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    });
    let text = format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\n[directory]\nuri = \"ldap://127.0.0.1:{port}\"\n\
         base_dn = \"dc=x\"\nbind_dn = \"cn=reader,dc=x\"\nbind_password = \"pw-not-sent\"\n\
         timeout = 3\n[directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n"
    );
    let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
    let first = server.join().expect("server");
    // The StartTLS extended request carries its OID; the bind carries the
    // DN and password, which must not be there.
    let as_text = String::from_utf8_lossy(&first);
    assert!(as_text.contains("1.3.6.1.4.1.1466.20037"), "{first:?}");
    assert!(!as_text.contains("pw-not-sent") && !as_text.contains("cn=reader"));
    // The server hung up; ldap3 notices it only at the deadline.
    assert!(
        matches!(
            err,
            DirectoryError::Unavailable(_) | DirectoryError::Timeout(_)
        ),
        "{err}"
    );
}

#[test]
fn a_stalled_server_fails_within_the_timeout() {
    let stall = StallListener::start().expect("stall listener");
    for uri in [stall.uri(), stall.ldaps_uri()] {
        let text = format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\n[directory]\nuri = \"{uri}\"\n\
             base_dn = \"dc=x\"\ntimeout = 1\n\
             [directory.attributes]\ntelegram = \"pamGatewayTelegram\"\n"
        );
        let started = Instant::now();
        let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            err,
            DirectoryError::Timeout(Duration::from_secs(1)),
            "{uri}"
        );
        assert!(took < Duration::from_secs(2), "{uri}: ended after {took:?}");
    }
    assert!(stall.accepted() >= 2, "the client never connected");
}

#[test]
fn a_paused_server_fails_within_the_timeout_and_a_stopped_one_at_once() {
    let mut slapd = start();
    let text = config_text(&slapd, &slapd.ldaps_uri(), "").replace("timeout = 3", "timeout = 1");
    let dir = parse(&text);
    slapd.pause();
    let started = Instant::now();
    let err = directory::lookup(&dir, "alice", Owner::current()).unwrap_err();
    let took = started.elapsed();
    slapd.resume();
    assert_eq!(err, DirectoryError::Timeout(Duration::from_secs(1)));
    assert!(took < Duration::from_secs(2), "ended after {took:?}");
    assert_eq!(
        directory::lookup(&dir, "alice", Owner::current()),
        Ok(Some(alice()))
    );
    slapd.stop();
    let err = directory::lookup(&dir, "alice", Owner::current()).unwrap_err();
    assert!(matches!(err, DirectoryError::Unavailable(_)), "{err}");
}

#[test]
fn a_wrong_bind_password_is_refused_without_showing_it() {
    let slapd = start();
    let text = config_text(&slapd, &slapd.ldaps_uri(), "")
        .replace(slapd.reader_password(), "wrong-pw-7731");
    let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
    assert!(
        matches!(&err, DirectoryError::Refused(m) if m.contains("49")),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("wrong-pw-7731"));
}

#[test]
fn the_bind_password_file_is_read_and_checked() {
    let slapd = start();
    let tmp = TempDir::new("dir-pw");
    let pw = tmp.path().join("ldap.pw");
    write_file(&pw, &format!("{}\n", slapd.reader_password()), 0o600);
    let text = config_text(&slapd, &slapd.ldaps_uri(), "").replace(
        &format!("bind_password = \"{}\"", slapd.reader_password()),
        &format!("bind_password_file = \"{}\"", pw.display()),
    );
    let dir = parse(&text);
    assert_eq!(
        directory::lookup(&dir, "alice", Owner::current()),
        Ok(Some(alice()))
    );
    // Readable by others: refused before anything is sent.
    write_file(&pw, slapd.reader_password(), 0o644);
    let err = directory::lookup(&dir, "alice", Owner::current()).unwrap_err();
    assert!(
        matches!(&err, DirectoryError::Local(m) if m.contains("bind_password_file")),
        "{err}"
    );
}

#[test]
fn several_entries_or_a_value_no_gateway_takes_are_errors() {
    let slapd = start();
    let text = config_text(
        &slapd,
        &slapd.ldapi_uri(),
        "user_filter = \"(|(uid={user})(objectClass=pamGatewayUser))\"\n",
    );
    let err = directory::lookup(&parse(&text), "alice", Owner::current()).unwrap_err();
    assert!(matches!(err, DirectoryError::BadAnswer(_)), "{err}");

    slapd
        .add_user("erin", &[("mobile", "call me maybe")])
        .expect("add erin");
    let err = directory::lookup(
        &dir_for(&slapd, &slapd.ldapi_uri()),
        "erin",
        Owner::current(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, DirectoryError::BadAnswer(m) if m.contains("mobile")),
        "{err}"
    );
}

/// The API the CLI builds on: bind as someone else, find, change.
#[test]
fn the_client_binds_searches_and_modifies() {
    let slapd = start();
    let dir = dir_for(&slapd, &slapd.ldap_uri());
    let mut conn = Connection::open(&dir).expect("connect");
    conn.bind(slapd.admin_dn(), slapd.admin_password())
        .expect("bind as admin");
    let entry = conn
        .find_user_with(&dir, "carol", &["objectClass"])
        .expect("search")
        .expect("carol");
    assert_eq!(entry.dn, Slapd::user_dn("carol"));
    let classes = &entry
        .attributes
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectClass"))
        .expect("objectClass read")
        .1;
    assert!(classes.iter().any(|c| c == "pamGatewayUser"), "{classes:?}");
    // Adding a value that is there already is the server's error.
    let err = conn
        .add_values(&entry.dn, "objectClass", &["pamGatewayUser"])
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Refused(_)), "{err}");
    conn.add_values(&entry.dn, "mobile", &["+4915100000009"])
        .expect("add a value");
    conn.replace_attribute(&entry.dn, "pamGatewayTelegram", &["777000111"])
        .expect("modify");
    conn.close();
    assert_eq!(
        slapd.attr("carol", "pamGatewayTelegram").expect("read"),
        ["777000111"]
    );
    assert_eq!(
        directory::lookup(&dir, "carol", Owner::current()),
        Ok(Some(BTreeMap::from([
            (GatewayKind::Telegram, "777000111".to_string()),
            (GatewayKind::Signal, "+4915100000009".to_string()),
        ])))
    );

    // The reader may not write.
    let mut conn = Connection::open(&dir).expect("connect");
    conn.bind_configured(&dir, Owner::current()).expect("bind");
    let err = conn
        .replace_attribute(&Slapd::user_dn("carol"), "pamGatewayTelegram", &[])
        .unwrap_err();
    assert!(matches!(err, DirectoryError::Refused(_)), "{err}");
    assert_eq!(
        slapd.attr("carol", "pamGatewayTelegram").expect("read"),
        ["777000111"]
    );
}
