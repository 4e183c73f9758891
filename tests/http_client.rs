//! `http::client`: the https path with a real TLS handshake on loopback (a
//! TLS front before the fake Bot API, the test certificates in
//! tests/data/tls). Certificates are verified fully -- untrusted CA, wrong
//! name and a trust file others could write are all refused, for the
//! Telegram client and for the gateways that go through `http::exchange`
//! alike; `SSL_CERT_FILE`/`SSL_CERT_DIR` change nothing; a plain-http client
//! never reads a certificate at all; and an answer is read up to
//! `MAX_BODY` only.

use pgw_test_support::fake_telegram;
use pgw_test_support::tls_front;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::telegram::{TelegramClient, TelegramConfig, TelegramError};
use pam_gateway_core::http::{self, HttpSettings, TransportError, TrustRoots};
use tls_front::TlsFront;

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

fn settings() -> HttpSettings {
    HttpSettings {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        proxy: None,
    }
}

/// A private temp dir holding copies of test CA files, owned by whoever
/// runs the tests (the checkout may belong to someone else).
struct TrustDir {
    dir: PathBuf,
}

impl TrustDir {
    fn new() -> TrustDir {
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).expect("random");
        let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("pgw-tls-{tag}"));
        fs::create_dir(&dir).expect("mkdir");
        TrustDir { dir }
    }

    /// Writes `contents` as `name` with `mode`; its path.
    fn file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// A copy of tests/data/tls/`name` with `mode`, as trust roots.
    fn copy(&self, name: &str, mode: u32) -> TrustRoots {
        let contents = fs::read(data(name)).expect("test data");
        TrustRoots::PemFile(self.file(name, &contents, mode))
    }
}

impl Drop for TrustDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn fake_behind_tls(leaf: &str) -> (FakeTelegram, TlsFront) {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let backend = format!("127.0.0.1:{}", fake.port()).parse().expect("addr");
    let front = TlsFront::start(
        &data(&format!("{leaf}.pem")),
        &data(&format!("{leaf}.key")),
        backend,
    )
    .expect("tls front");
    (fake, front)
}

fn client(roots: TrustRoots) -> http::Client {
    http::client_with_roots(&settings(), Duration::from_secs(5), roots).expect("client")
}

/// `getMe` through the blocking client: "STATUS BODY", or the error as the
/// gateways describe it.
fn get_me(client: &http::Client, base: &str) -> Result<String, String> {
    let response = client
        .post(format!("{base}/bot{TOKEN}/getMe"))
        .json(&serde_json::json!({}))
        .send()
        .map_err(|e| http::describe(&e.without_url()))?;
    let status = response.status().as_u16();
    let body = http::read_body(response)?;
    Ok(format!("{status} {body}"))
}

#[test]
fn a_certificate_from_a_trusted_ca_is_accepted() {
    let (fake, front) = fake_behind_tls("leaf");
    let dir = TrustDir::new();
    let answer = get_me(&client(dir.copy("ca.pem", 0o644)), &front.url()).expect("https request");
    assert!(answer.starts_with("200 "), "{answer}");
    assert!(answer.contains("\"ok\":true"), "{answer}");
    assert_eq!(fake.requests().len(), 1, "the request went through TLS");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let (fake, front) = fake_behind_tls("leaf");
    let dir = TrustDir::new();
    let err = get_me(&client(dir.copy("other-ca.pem", 0o644)), &front.url())
        .expect_err("untrusted CA must fail");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(fake.requests().is_empty(), "nothing may reach the server");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let (fake, front) = fake_behind_tls("wrong-name");
    let dir = TrustDir::new();
    let err =
        get_me(&client(dir.copy("ca.pem", 0o644)), &front.url()).expect_err("wrong name must fail");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(fake.requests().is_empty(), "nothing may reach the server");
}

#[test]
fn the_system_store_does_not_trust_the_test_ca() {
    // What the module does: TelegramClient over http::client, system roots.
    let (fake, front) = fake_behind_tls("leaf");
    let text = format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 5\n",
        front.url()
    );
    let cfg = Config::parse(Path::new("/t/gateway.toml"), &text)
        .expect("config")
        .section::<TelegramConfig>()
        .cloned()
        .expect("telegram");
    let err = TelegramClient::new(&cfg)
        .expect("client")
        .send_message("123456977", "code 123456")
        .expect_err("the test CA is not a system root");
    match &err {
        TelegramError::Transport(d) => {
            assert!(d.contains("UnknownIssuer"), "{d}");
            assert!(!d.contains(TOKEN), "{d}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(fake.sent().is_empty());

    // And the path the Signal, SMS and webhook gateways take.
    let c = http::client(&settings()).expect("client");
    let request = c
        .post(format!("{}/bot{TOKEN}/getMe", front.url()))
        .body("{}");
    match c.exchange(request, &[TOKEN]) {
        Err(TransportError::Other(d)) => {
            assert!(d.contains("UnknownIssuer"), "{d}");
            assert!(!d.contains(TOKEN), "{d}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(fake.requests().is_empty(), "nothing may reach the server");
}

#[test]
fn ssl_cert_file_and_dir_from_the_environment_are_ignored() {
    // The previous test again, in a child process whose environment points
    // OpenSSL-style variables at the test CA: it must still refuse. (A
    // child, because changing this process's environment races with the
    // other tests' threads.)
    let dir = TrustDir::new();
    let TrustRoots::PemFile(ca) = dir.copy("ca.pem", 0o644) else {
        unreachable!()
    };
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "the_system_store_does_not_trust_the_test_ca",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SSL_CERT_FILE", &ca)
        .env("SSL_CERT_DIR", &dir.dir)
        .output()
        .expect("run the test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "with SSL_CERT_FILE set:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_http_reads_no_certificate_and_https_then_fails_closed() {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let missing = PathBuf::from("/nonexistent/pam_gateway-test/ca.pem");
    let c = http::client_with_roots(
        &settings(),
        Duration::from_secs(5),
        TrustRoots::PemFile(missing.clone()),
    )
    .expect("building a client reads no certificate");
    let answer = get_me(&c, &fake.url()).expect("plain http needs no roots");
    assert!(answer.starts_with("200 "), "{answer}");

    let (fake2, front) = fake_behind_tls("leaf");
    let err = get_me(&c, &front.url()).expect_err("no roots, no https");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("cannot open"), "{err}");
    assert!(fake2.requests().is_empty());
}

#[test]
fn a_trust_file_others_can_write_is_refused() {
    let dir = TrustDir::new();
    let roots = dir.copy("ca.pem", 0o666);
    let err = http::load_roots(&roots).expect_err("group/other-writable");
    assert!(err.contains("not writable by group or others"), "{err}");
    let (fake, front) = fake_behind_tls("leaf");
    let err = get_me(&client(roots), &front.url()).expect_err("must fail closed");
    assert!(err.contains("not writable by group or others"), "{err}");
    assert!(fake.requests().is_empty());
}

#[test]
fn a_symlink_to_the_bundle_is_followed() {
    // Fedora's /etc/pki/tls/certs/ca-bundle.crt is a symbolic link.
    let dir = TrustDir::new();
    let TrustRoots::PemFile(ca) = dir.copy("ca.pem", 0o644) else {
        unreachable!()
    };
    let link = dir.dir.join("bundle.crt");
    std::os::unix::fs::symlink(&ca, &link).expect("symlink");
    let store = http::load_roots(&TrustRoots::PemFile(link)).expect("a link to a good bundle");
    assert_eq!(store.len(), 1);
}

#[test]
fn a_file_without_certificates_is_refused() {
    let dir = TrustDir::new();
    let err = http::load_roots(&dir.copy("leaf.key", 0o600)).expect_err("a key is no CA");
    assert!(err.contains("no usable CA certificate"), "{err}");
    let empty = dir.file("empty.pem", b"", 0o644);
    let err = http::load_roots(&TrustRoots::PemFile(empty)).expect_err("empty");
    assert!(err.contains("no usable CA certificate"), "{err}");
}

#[test]
fn the_bundle_parser_takes_certificates_and_skips_the_rest() {
    let ca = fs::read_to_string(data("ca.pem")).expect("ca");
    let other = fs::read_to_string(data("other-ca.pem")).expect("other ca");
    let key = fs::read_to_string(data("leaf.key")).expect("key");
    let dir = TrustDir::new();
    let load = |name: &str, text: &str| {
        http::load_roots(&TrustRoots::PemFile(dir.file(name, text.as_bytes(), 0o644)))
    };
    // CRLF line ends, comments, a private key and text between blocks.
    let mixed = format!(
        "# Issuer: test\n{}\n{key}\nsome text\n{other}",
        ca.replace('\n', "\r\n")
    );
    assert_eq!(load("mixed.pem", &mixed).expect("two CAs").len(), 2);
    // A block whose base64 is broken, then a good one: only the good one.
    let broken = "-----BEGIN CERTIFICATE-----\nMII*not base64*\n-----END CERTIFICATE-----\n";
    assert_eq!(
        load("broken.pem", &format!("{broken}{ca}"))
            .expect("one CA")
            .len(),
        1
    );
    // Half a certificate (BEGIN without END) is nothing.
    let err = load("cut.pem", &ca[..ca.len() / 2]).expect_err("cut");
    assert!(err.contains("no usable CA certificate"), "{err}");
    // OpenSSL's "TRUSTED CERTIFICATE" blocks carry trust settings rustls
    // cannot honour: not taken as plain certificates.
    let trusted = ca.replace("CERTIFICATE", "TRUSTED CERTIFICATE");
    assert!(load("trusted.pem", &trusted).is_err());
    // Base64 that decodes, but not to a certificate: skipped.
    let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    assert_eq!(
        load("junk.pem", &format!("{junk}{other}"))
            .expect("one CA")
            .len(),
        1
    );
}

#[test]
fn the_system_bundle_loads() {
    let store = http::load_roots(&TrustRoots::System)
        .expect("the system CA bundle (package ca-certificates) must load");
    assert!(
        store.len() > 10,
        "only {} roots in the system bundle",
        store.len()
    );
}

#[test]
fn a_fifo_in_place_of_the_bundle_is_refused_without_hanging() {
    let dir = TrustDir::new();
    let fifo = dir.dir.join("fifo.pem");
    let c = std::ffi::CString::new(fifo.display().to_string()).expect("path");
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    // Without O_NONBLOCK, open() would wait for a writer forever: run it on
    // a thread and give up waiting (a hang, not slowness) after a minute.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http::load_roots(&TrustRoots::PemFile(fifo)));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("load_roots hangs on a FIFO");
    let err = result.expect_err("a FIFO is no bundle");
    assert!(err.contains("not a regular file"), "{err}");
}

/// Serves one connection: reads the request head, answers with a body of
/// `len` bytes of 'x'.
fn big_answer_server(len: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if s.write_all(&chunk[..n]).is_err() {
                break; // the client stopped reading: that is the point
            }
            left -= n;
        }
    });
    (url, handle)
}

#[test]
fn an_answer_is_read_up_to_max_body_only() {
    let (url, server) = big_answer_server(4 * http::MAX_BODY as usize);
    let c = client(TrustRoots::PemFile(PathBuf::from("/nonexistent")));
    let response = c.post(&url).send().expect("response head");
    assert_eq!(response.status().as_u16(), 200);
    let body = http::read_body(response).expect("body");
    assert_eq!(body.len(), http::MAX_BODY as usize);
    assert!(body.bytes().all(|b| b == b'x'));
    drop(c);
    let _ = server.join();
}

/// Set in the child of the test below: the https URL to call.
const EMFILE_CHILD: &str = "PGW_HTTP_CLIENT_EMFILE_CHILD";

/// The CA bundle is read at the first handshake. A caller who starts su
/// with just enough descriptors for the socket makes that read fail with
/// EMFILE: the exchange fails as this machine's failure (Local), not as an
/// unreachable server, and says why. In a child process, whose limits the
/// test may change.
#[test]
fn a_bundle_that_cannot_be_opened_for_want_of_descriptors_is_local() {
    if let Ok(url) = std::env::var(EMFILE_CHILD) {
        let c = http::client(&settings()).expect("client");
        // SAFETY: dup, close and the rlimit calls only touch this child's
        // descriptor table and limits, with valid arguments.
        unsafe {
            let free = libc::dup(0);
            assert!(free > 0, "dup");
            libc::close(free);
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
            // One descriptor: the socket, and nothing for the bundle.
            lim.rlim_cur = (free + 1) as libc::rlim_t;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        let request = c.post(format!("{url}/bot{TOKEN}/getMe")).body("{}");
        let err = c
            .exchange(request, &[TOKEN])
            .expect_err("no descriptor for the bundle");
        println!("\nCHILD-RESULT {err:?}");
        match &err {
            TransportError::Local(d) => {
                assert!(d.contains("(os error 24)"), "{d}");
                assert!(d.contains("cannot open"), "{d}");
            }
            other => panic!("expected a local failure, got {other:?}"),
        }
        assert!(!format!("{err:?}").contains(TOKEN));
        return;
    }
    let (fake, front) = fake_behind_tls("leaf");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_bundle_that_cannot_be_opened_for_want_of_descriptors_is_local",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, front.url())
        .output()
        .expect("run the test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fake.requests().is_empty(), "nothing may reach the server");
}
