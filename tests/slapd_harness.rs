//! The slapd harness (test-support/src/slapd.rs) and pam_gateway's LDAP
//! schema (conf/ldap/) against a real OpenLDAP slapd on loopback: every
//! transport finds an entry, TLS refuses a CA that did not sign the server,
//! the reader cannot write, data survives a restart, a paused server and the
//! stall listener never answer, and the shipped schema loads (slapadd at
//! start, `ldapadd -Y EXTERNAL` into a running server, the classic .schema
//! through slaptest) and its attributes behave as documented.
//! Needs slapd and ldap-utils (scripts/deps.sh test); not root.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use pgw_test_support::slapd::{Slapd, StallListener, run_tool};

fn start() -> Slapd {
    match Slapd::start() {
        Ok(s) => s,
        Err(e) => panic!("slapd did not start: {e}"),
    }
}

/// `tool` (ldapsearch, ldapmodify) with a simple bind as the reader over
/// ldapi; the password is the caller's to give (`-y FILE`, `-w PW`).
fn as_reader_over_ldapi(slapd: &Slapd, tool: &str) -> Command {
    let mut cmd = slapd.ldap_command(tool);
    cmd.args(["-x", "-H", &slapd.ldapi_uri(), "-D", slapd.reader_dn()]);
    cmd
}

/// The LDIF change that sets alice's Telegram chat to `chat`.
fn alice_chat_change(chat: &str) -> String {
    format!(
        "dn: {}\nchangetype: modify\nreplace: pamGatewayTelegram\npamGatewayTelegram: {chat}\n",
        Slapd::user_dn("alice")
    )
}

/// [`start`], with alice added, her Telegram chat `chat`.
fn with_alice(chat: &str) -> Slapd {
    let slapd = start();
    slapd
        .add_user("alice", &[("pamGatewayTelegram", chat)])
        .expect("add");
    slapd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {}, stdout: {}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// ldapsearch as the reader for uid=`uid` under the base DN over `uri`
/// (`-ZZ` when `starttls`), returning the pamGatewayTelegram attribute.
fn reader_search(slapd: &Slapd, uri: &str, starttls: bool, ca: Option<&std::path::Path>) -> Output {
    let mut cmd = slapd.ldap_command("ldapsearch");
    if let Some(ca) = ca {
        cmd.env("LDAPTLS_CACERT", ca);
    }
    cmd.args(["-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=5", "-x"]);
    if starttls {
        cmd.arg("-ZZ");
    }
    cmd.args(["-H", uri, "-D", slapd.reader_dn(), "-y"])
        .arg(slapd.reader_password_file())
        .args([
            "-b",
            Slapd::BASE_DN,
            "(uid=alice)",
            "uid",
            "pamGatewayTelegram",
        ]);
    run_tool(cmd).expect("ldapsearch runs")
}

#[test]
fn every_transport_finds_an_added_user() {
    let slapd = start();
    slapd
        .add_user(
            "alice",
            &[
                ("pamGatewayTelegram", "123456977"),
                ("mobile", "+4915112345678"),
            ],
        )
        .expect("add alice");
    let cases = [
        ("ldap+StartTLS", slapd.ldap_uri(), true),
        ("ldaps", slapd.ldaps_uri(), false),
        ("ldapi", slapd.ldapi_uri(), false),
    ];
    for (what, uri, starttls) in cases {
        let out = reader_search(&slapd, &uri, starttls, None);
        assert!(out.status.success(), "{what} ({uri}): {}", describe(&out));
        let text = stdout(&out);
        assert!(
            text.contains("dn: uid=alice,ou=people,dc=example,dc=test")
                && text.contains("pamGatewayTelegram: 123456977"),
            "{what}: {text}"
        );
    }
    assert!(slapd.ldap_uri().starts_with("ldap://127.0.0.1:"));
    assert!(slapd.ldaps_uri().starts_with("ldaps://127.0.0.1:"));
    assert!(
        slapd.ldapi_uri().starts_with("ldapi://%2F"),
        "{}",
        slapd.ldapi_uri()
    );
    assert_eq!(
        slapd.ldap_uri_localhost(),
        format!("ldap://localhost:{}", slapd.ldap_port())
    );
    assert_eq!(
        slapd.attr("alice", "mobile").expect("mobile"),
        ["+4915112345678"]
    );
    assert_eq!(slapd.attr("alice", "uid").expect("uid"), ["alice"]);
    assert!(
        slapd
            .attr("alice", "pamGatewaySms")
            .expect("no sms")
            .is_empty()
    );
    assert_eq!(
        slapd.attr("nobody", "uid").expect_err("no entry").kind(),
        ErrorKind::NotFound
    );
}

/// The certificate carries the name localhost: StartTLS to localhost:PORT
/// verifies with that name (openssl, because libldap's clients replace
/// "localhost" by the machine's host name before checking the certificate).
#[test]
fn starttls_certificate_names_localhost() {
    let slapd = start();
    let verify = |name: &str, ca: &std::path::Path| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-starttls", "ldap", "-connect"])
            .arg(format!("localhost:{}", slapd.ldap_port()))
            .args(["-verify_hostname", name, "-verify_return_error", "-CAfile"])
            .arg(ca)
            .stdin(std::process::Stdio::null());
        run_tool(cmd).expect("openssl runs")
    };
    let out = verify("localhost", slapd.ca_file());
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("Verify return code: 0 (ok)"),
        "{}",
        describe(&out)
    );
    let out = verify("gateway.invalid", slapd.ca_file());
    assert!(
        !out.status.success(),
        "a name not in the certificate: {}",
        describe(&out)
    );
    let out = verify("localhost", slapd.other_ca_file());
    assert!(!out.status.success(), "the other CA: {}", describe(&out));
}

#[test]
fn wrong_ca_is_refused() {
    let slapd = with_alice("1");
    for (what, uri, starttls) in [
        ("ldap -ZZ", slapd.ldap_uri(), true),
        ("ldaps", slapd.ldaps_uri(), false),
    ] {
        let ok = reader_search(&slapd, &uri, starttls, Some(slapd.ca_file()));
        assert!(
            ok.status.success(),
            "{what} with the right CA: {}",
            describe(&ok)
        );
        let refused = reader_search(&slapd, &uri, starttls, Some(slapd.other_ca_file()));
        assert!(
            !refused.status.success(),
            "{what} with the wrong CA: {}",
            describe(&refused)
        );
        assert!(
            !stdout(&refused).contains("uid=alice"),
            "{what}: {}",
            describe(&refused)
        );
    }
}

#[test]
fn reader_reads_but_cannot_write() {
    let slapd = with_alice("111");
    let mut cmd = as_reader_over_ldapi(&slapd, "ldapmodify");
    cmd.arg("-y").arg(slapd.reader_password_file());
    let ldif = alice_chat_change("666");
    let file = slapd.dir().join("reader-change.ldif");
    std::fs::write(&file, ldif).expect("write ldif");
    cmd.arg("-f").arg(&file);
    let out = run_tool(cmd).expect("ldapmodify runs");
    assert_eq!(
        out.status.code(),
        Some(50),
        "insufficient access: {}",
        describe(&out)
    );
    assert_eq!(
        slapd.attr("alice", "pamGatewayTelegram").expect("read"),
        ["111"]
    );
    // The admin can (the same change).
    slapd
        .modify(&alice_chat_change("222"))
        .expect("admin writes");
    assert_eq!(
        slapd.attr("alice", "pamGatewayTelegram").expect("read"),
        ["222"]
    );
    // A wrong reader password does not bind.
    let mut cmd = as_reader_over_ldapi(&slapd, "ldapsearch");
    cmd.args(["-w", "wrong", "-b", Slapd::BASE_DN, "(uid=alice)"]);
    let out = run_tool(cmd).expect("ldapsearch runs");
    assert_eq!(
        out.status.code(),
        Some(49),
        "invalid credentials: {}",
        describe(&out)
    );
}

#[test]
fn stop_and_restart_keep_data_and_ports() {
    let mut slapd = with_alice("123");
    let (ldap, ldaps, ldapi) = (slapd.ldap_uri(), slapd.ldaps_uri(), slapd.ldapi_uri());
    slapd.stop();
    let down = reader_search(&slapd, &ldap, true, None);
    assert!(!down.status.success(), "stopped: {}", describe(&down));
    assert!(
        TcpStream::connect(("127.0.0.1", slapd.ldap_port())).is_err(),
        "port closed"
    );
    slapd.restart().expect("restart");
    assert_eq!(
        (slapd.ldap_uri(), slapd.ldaps_uri(), slapd.ldapi_uri()),
        (ldap, ldaps, ldapi)
    );
    assert_eq!(
        slapd.attr("alice", "pamGatewayTelegram").expect("read"),
        ["123"]
    );
    let up = reader_search(&slapd, &slapd.ldap_uri(), true, None);
    assert!(up.status.success(), "restarted: {}", describe(&up));
}

/// CI once failed here: while slapd was stopped, some other test's client
/// took its port as an ephemeral port, and the restart exited with status 1
/// (EADDRINUSE, and slapd says nothing at `-d 0`). Ports now come from below
/// the kernel's ephemeral range, and a restart retries a port held a moment.
#[test]
fn ports_are_below_the_ephemeral_range_and_a_restart_outlasts_a_brief_holder() {
    let mut slapd = start();
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("ip_local_port_range")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a number");
    for port in [slapd.ldap_port(), slapd.ldaps_port()] {
        assert!(
            (10_000..low).contains(&port),
            "port {port}, range from {low}"
        );
    }
    slapd.stop();
    let holder = std::net::TcpListener::bind(("127.0.0.1", slapd.ldap_port())).expect("hold");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(holder);
    });
    let restarted = slapd.restart();
    release.join().expect("holder thread");
    restarted.expect("restart after the holder let go");
    let up = reader_search(&slapd, &slapd.ldap_uri(), true, None);
    assert!(up.status.success(), "restarted: {}", describe(&up));
}

#[test]
fn paused_server_does_not_answer_until_resumed() {
    let slapd = start();
    slapd.add_user("alice", &[]).expect("add");
    slapd.pause();
    let err = slapd
        .attr("alice", "uid")
        .expect_err("paused slapd answers nothing");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    slapd.resume();
    assert_eq!(slapd.attr("alice", "uid").expect("resumed"), ["alice"]);
}

#[test]
fn drop_stops_slapd_and_removes_its_directory() {
    let slapd = start();
    let (dir, port) = (slapd.dir().to_path_buf(), slapd.ldap_port());
    assert!(dir.join("slapd.d").is_dir());
    drop(slapd);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open"
    );
}

#[test]
fn stall_listener_accepts_and_never_answers() {
    let stall = StallListener::start().expect("listen");
    assert_eq!(stall.uri(), format!("ldap://127.0.0.1:{}", stall.port()));
    assert_eq!(
        stall.ldaps_uri(),
        format!("ldaps://127.0.0.1:{}", stall.port())
    );
    let mut conn = TcpStream::connect(("127.0.0.1", stall.port())).expect("accepts");
    // An anonymous LDAPv3 simple bind request.
    conn.write_all(&[
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ])
    .expect("send bind");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    match conn.read(&mut buf) {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "unexpected error: {e}"
        ),
        Ok(n) => panic!("the stall listener answered {n} bytes (0 = closed)"),
    }
    assert!(stall.accepted() >= 1);
    // A real client waits too: ldapsearch is still waiting after 2 s.
    let mut cmd = Command::new("ldapsearch");
    cmd.env("LDAPCONF", "/dev/null")
        .args(["-x", "-H", &stall.uri(), "-b", "", "-s", "base"]);
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ldapsearch");
    while started.elapsed() < Duration::from_secs(2) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ldapsearch got an answer"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// --- the schema: conf/ldap/pam-gateway.ldif and .schema ---

#[test]
fn schema_attributes_work() {
    let slapd = start();
    slapd
        .add_user(
            "carol",
            &[
                ("pamGatewayTelegram", "-1001234567890"),
                ("pamGatewaySignal", "+4915112345678"),
                ("pamGatewaySms", "+4915187654321"),
                ("pamGatewayWebhook", "!qporfwt:example.org"),
                ("pamGatewayCommand", "carol@example.org"),
            ],
        )
        .expect("add carol with every attribute");
    for (attr, want) in [
        ("pamGatewayTelegram", "-1001234567890"),
        ("pamGatewaySignal", "+4915112345678"),
        ("pamGatewaySms", "+4915187654321"),
        ("pamGatewayWebhook", "!qporfwt:example.org"),
        ("pamGatewayCommand", "carol@example.org"),
    ] {
        assert_eq!(slapd.attr("carol", attr).expect(attr), [want], "{attr}");
    }
    // Names are case-insensitive, and the reader can filter on them.
    let mut cmd = as_reader_over_ldapi(&slapd, "ldapsearch");
    cmd.args(["-LLL", "-y"])
        .arg(slapd.reader_password_file())
        .args([
            "-b",
            Slapd::BASE_DN,
            "(&(objectClass=PAMGATEWAYUSER)(pamgatewaysms=+4915187654321))",
            "dn",
        ]);
    let out = run_tool(cmd).expect("ldapsearch");
    assert!(
        stdout(&out).contains("dn: uid=carol,ou=people,dc=example,dc=test"),
        "{}",
        describe(&out)
    );
    // Single-valued: a second Telegram chat id is refused.
    let err = slapd
        .add_user(
            "dave",
            &[("pamGatewayTelegram", "1"), ("pamGatewayTelegram", "2")],
        )
        .expect_err("two chat ids");
    assert!(
        err.to_string().contains("single-value") || err.to_string().contains("(19)"),
        "{err}"
    );
    // Telephone-number syntax (a PrintableString): no "@", no "_".
    let err = slapd
        .add_user("erin", &[("pamGatewaySms", "erin@example.org")])
        .expect_err("not a phone number");
    assert!(err.to_string().contains("(21)"), "invalid syntax: {err}");
    // Several values of a multi-valued attribute (mobile) are kept.
    slapd
        .add_user("frank", &[("mobile", "+491"), ("mobile", "+492")])
        .expect("two mobiles");
    let mut mobiles = slapd.attr("frank", "mobile").expect("mobile");
    mobiles.sort();
    assert_eq!(mobiles, ["+491", "+492"]);
}

/// The LDIF change record for `rdn` under ou=people: `changetype: CHANGE`.
fn people_change(rdn: &str, change: &str) -> String {
    format!("dn: {rdn},{}\nchangetype: {change}", Slapd::PEOPLE_DN)
}

/// `ldif` is refused as an object class violation (LDAP result 65).
fn refused_as_class_violation(slapd: &Slapd, ldif: &str, what: &str) {
    let err = slapd.modify(ldif).expect_err(what);
    assert!(
        err.to_string().contains("(65)"),
        "object class violation: {err}"
    );
}

/// pamGatewayUser is auxiliary: it can be added to an existing entry, and
/// it cannot make an entry on its own.
#[test]
fn schema_class_is_auxiliary() {
    let slapd = start();
    // An entry from before pam_gateway: no pamGatewayUser.
    slapd
        .modify(&people_change(
            "uid=old",
            "add\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
             uid: old\ncn: old\nsn: old\nuidNumber: 3000\ngidNumber: 3000\nhomeDirectory: /home/old\n",
        ))
        .expect("plain entry");
    // The attribute without the class is refused ...
    refused_as_class_violation(
        &slapd,
        &people_change(
            "uid=old",
            "modify\nadd: pamGatewayTelegram\npamGatewayTelegram: 5\n",
        ),
        "attribute without its class",
    );
    // ... and accepted together with it (what `pam-gateway enroll` does).
    slapd
        .modify(&people_change(
            "uid=old",
            "modify\nadd: objectClass\nobjectClass: pamGatewayUser\n-\n\
             add: pamGatewayTelegram\npamGatewayTelegram: 5\n",
        ))
        .expect("class and attribute");
    assert_eq!(
        slapd.attr("old", "pamGatewayTelegram").expect("read"),
        ["5"]
    );
    refused_as_class_violation(
        &slapd,
        &people_change(
            "cn=lonely",
            "add\nobjectClass: pamGatewayUser\ncn: lonely\n",
        ),
        "no structural class",
    );
}

/// What an admin does on a running OpenLDAP: `ldapadd -Y EXTERNAL -H
/// ldapi:/// -f pam-gateway.ldif`, then uses the class.
#[test]
fn schema_ldif_loads_into_running_slapd_with_ldapadd_external() {
    let slapd = Slapd::start_without_schema().expect("slapd without our schema");
    let err = slapd
        .add_user("alice", &[])
        .expect_err("no pamGatewayUser yet");
    assert!(
        err.to_string().contains("objectClass: value #2 invalid"),
        "{err}"
    );
    let ldif = pgw_test_support::repo_root().join("conf/ldap/pam-gateway.ldif");
    let mut cmd = slapd.ldap_command("ldapadd");
    cmd.args(["-Y", "EXTERNAL", "-H", &slapd.ldapi_uri(), "-f"])
        .arg(&ldif);
    let out = run_tool(cmd).expect("ldapadd");
    assert!(
        out.status.success(),
        "ldapadd -Y EXTERNAL: {}",
        describe(&out)
    );
    slapd
        .add_user("alice", &[("pamGatewayTelegram", "42")])
        .expect("add after loading the schema");
    assert_eq!(
        slapd.attr("alice", "pamGatewayTelegram").expect("read"),
        ["42"]
    );
}

/// The classic .schema is accepted by slaptest, and it and the 389 Directory
/// Server file define exactly what the .ldif defines.
#[test]
fn classic_schema_matches_ldif_and_loads() {
    let root = pgw_test_support::repo_root().join("conf/ldap");
    let ldif = std::fs::read_to_string(root.join("pam-gateway.ldif")).expect("ldif");
    let schema = std::fs::read_to_string(root.join("pam-gateway.schema")).expect("schema");
    let defs_ldif = definitions(&ldif, "olcAttributeTypes:", "olcObjectClasses:");
    let defs_schema = definitions(&schema, "attributetype", "objectclass");
    assert_eq!(defs_ldif.len(), 6, "{defs_ldif:#?}");
    assert_eq!(defs_ldif, defs_schema);
    // 389 Directory Server / FreeIPA: the same, each marked X-ORIGIN.
    let ds = std::fs::read_to_string(root.join("pam-gateway-389ds.ldif")).expect("389ds");
    assert!(ds.contains("\ndn: cn=schema\n"), "one cn=schema entry");
    let defs_ds = definitions(&ds, "attributeTypes:", "objectClasses:");
    let origin = " X-ORIGIN 'pam_gateway' )";
    assert!(defs_ds.iter().all(|d| d.ends_with(origin)), "{defs_ds:#?}");
    let defs_ds: Vec<String> = defs_ds.iter().map(|d| d.replace(origin, " )")).collect();
    assert_eq!(defs_ldif, defs_ds);
    for name in [
        "pamGatewayUser",
        "pamGatewayTelegram",
        "pamGatewaySignal",
        "pamGatewaySms",
        "pamGatewayWebhook",
        "pamGatewayCommand",
    ] {
        assert!(
            defs_ldif
                .iter()
                .any(|d| d.contains(&format!("NAME '{name}'"))),
            "{name}"
        );
    }
    let arc = "( 2.25.205178288937636493602558461580308651326.";
    assert!(
        defs_ldif.iter().all(|d| d[2..].starts_with(arc)),
        "{defs_ldif:#?}"
    );

    let dir = std::env::temp_dir().join(format!("pgw-slaptest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("mkdir");
    let conf = dir.join("slapd.conf");
    let includes: String = ["core", "cosine", "nis", "inetorgperson"]
        .iter()
        .map(|s| format!("include /etc/ldap/schema/{s}.schema\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "{includes}include {}\nmoduleload back_mdb\nmodulepath /usr/lib/ldap\n",
            root.join("pam-gateway.schema").display()
        ),
    )
    .expect("write slapd.conf");
    let out = run_tool({
        let mut c = Command::new("/usr/sbin/slaptest");
        c.arg("-u").arg("-f").arg(&conf);
        c
    })
    .expect("slaptest");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "slaptest: {}", describe(&out));
}

/// The definitions after `attr_kw`/`class_kw`, whitespace collapsed and
/// the keyword replaced by its kind.
fn definitions(text: &str, attr_kw: &str, class_kw: &str) -> Vec<String> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if (line.starts_with(' ') || line.starts_with('\t')) && !unfolded.is_empty() {
            let last = unfolded.len() - 1;
            unfolded[last].push(' ');
            unfolded[last].push_str(line.trim());
        } else {
            unfolded.push(line.to_string());
        }
    }
    unfolded
        .iter()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix(attr_kw)
                .map(|r| ("A", r))
                .or_else(|| l.strip_prefix(class_kw).map(|r| ("C", r)))?;
            let body = rest.1.split_whitespace().collect::<Vec<_>>().join(" ");
            Some(format!("{} {body}", rest.0))
        })
        .collect()
}
