//! Fault injection through real libpam: pamtester loads the module, which
//! talks to the loopback fake gateway while it misbehaves. Every fault ends
//! with the outcome its fail mode promises, within `timeout` + 1 s, without
//! a panic; a user with an authenticator is asked for it instead. Also: 50
//! logins of one user at once, limits and policy through real libpam.
//!
//! Then every HTTP gateway (Telegram, Signal, the three SMS providers, the
//! webhook) on its own against a loopback service that misbehaves: an
//! answer trickled a byte at a time still ends by `timeout` + 1 s; refused,
//! failed, silent and starved (EMFILE, in a child process) sends each get
//! their own class; an error that echoes the request carries neither the
//! code nor the message; no error text carries a secret.

use pgw_test_support::fake_http;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use pam_gateway_core::gateway::DeliveryError;
use pam_gateway_core::state::UserState;
use pam_gateway_core::totp::TotpKey;
use pam_harness::*;
use serde_json::json;

/// `timeout = 2` in the harness config; the bound is timeout + 1 s.
const BOUND: Duration = Duration::from_secs(3);
const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

fn with_totp(env: &PamEnv) {
    write_file(
        &env.users,
        &format!("[users.alice]\ntelegram = \"{CHAT}\"\ntotp_secret = \"{TOTP_B32}\"\n"),
        0o600,
    );
}

fn totp_now() -> String {
    let key = TotpKey::from_base32(TOTP_B32).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    key.code_at(now)
}

fn assert_sane(what: &str, run: &PamRun) {
    for text in [&run.stdout, &run.stderr, &run.log] {
        assert!(!text.contains("panicked"), "{what}: panic\n{}", run.dump());
        assert!(
            !text.contains(SECRET_HALF),
            "{what}: token leaked\n{}",
            run.dump()
        );
    }
    assert!(
        !run.stderr.contains("Critical error"),
        "{what}: PAM_ABORT\n{}",
        run.dump()
    );
}

/// A fault, and whether failmode=safe may wave it through (only a service
/// that cannot be reached; a refusal such as 429 denies in both modes).
struct Fault {
    name: &'static str,
    /// Sets up the fake (None: nothing listens) and returns the API URL.
    setup: fn(&FakeTelegram) -> String,
    unreachable: bool,
}

fn faults() -> Vec<Fault> {
    vec![
        Fault {
            name: "connection refused",
            setup: |_| closed_port_url(),
            unreachable: true,
        },
        Fault {
            name: "no answer",
            setup: |f| {
                f.set_mode(Mode::NeverAnswer);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "answer trickles in byte by byte",
            setup: |f| {
                f.set_mode(Mode::Trickle { delay_ms: 100 });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "500",
            setup: |f| {
                f.set_mode(Mode::Status {
                    code: 500,
                    body: "<html>Internal Server Error</html>".into(),
                });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "429 with retry_after",
            setup: |f| {
                f.set_mode(Mode::RateLimited { retry_after: 30 });
                f.url()
            },
            unreachable: false,
        },
        Fault {
            name: "malformed JSON",
            setup: |f| {
                f.set_mode(Mode::Status {
                    code: 200,
                    body: "{\"ok\":true,\"result\":{\"message_id\":".into(),
                });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "HTML instead of JSON",
            setup: |f| {
                f.set_mode(Mode::Garbage);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "connection closed without an answer",
            setup: |f| {
                f.set_mode(Mode::CloseWithoutAnswer);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "head at once, then the body a byte every 300 ms forever",
            setup: |f| {
                f.set_mode(Mode::TrickleBodyForever { delay_ms: 300 });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "TLS spoken to a plain port",
            setup: |f| format!("https://127.0.0.1:{}", f.port()),
            unreachable: true,
        },
    ]
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn every_fault_ends_as_the_fail_mode_promises_in_time() {
    for fault in faults() {
        for failmode in ["secure", "safe"] {
            let fake = fake();
            let url = (fault.setup)(&fake);
            let env = PamEnv::new(&url, &format!("[policy]\nfailmode = \"{failmode}\"\n"));
            env.set_stack(IGNORE_THEN_PERMIT);
            let what = format!("{} / failmode={failmode}", fault.name);
            let start = Instant::now();
            let run = env.authenticate("alice", Answers::Eof, None);
            let took = start.elapsed();
            assert_sane(&what, &run);
            eprintln!("{what}: {took:?}, success={}", run.success);
            assert!(took < BOUND, "{what}: took {took:?}\n{}", run.dump());
            if failmode == "safe" && fault.unreachable {
                assert!(run.success, "{what}: expected PAM_IGNORE\n{}", run.dump());
                assert!(
                    run.log.contains("result=ignored-delivery-failed"),
                    "{what}\n{}",
                    run.dump()
                );
            } else {
                assert!(!run.success, "{what}: let in\n{}", run.dump());
                assert!(
                    run.log.contains("result=denied-delivery-failed"),
                    "{what}\n{}",
                    run.dump()
                );
            }
            // With the plain stack the code is PAM_AUTHINFO_UNAVAIL when denied.
            if !(failmode == "safe" && fault.unreachable) {
                env.set_stack("auth required {module} config={config}\n");
                let run = env.authenticate("alice", Answers::Eof, None);
                run.assert_failed_with(AUTHINFO_UNAVAIL);
            }
        }
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn every_fault_falls_back_to_the_authenticator() {
    for fault in faults() {
        let fake = fake();
        let url = (fault.setup)(&fake);
        let env = PamEnv::new(&url, "");
        with_totp(&env);
        let what = fault.name;
        let start = Instant::now();
        let run = env.authenticate("alice", Answers::Computed(Box::new(totp_now)), None);
        let took = start.elapsed();
        assert_sane(what, &run);
        assert!(run.success, "{what}: authenticator refused\n{}", run.dump());
        assert!(
            run.stderr
                .contains("Could not send a code via Telegram. Authenticator code:"),
            "{what}\n{}",
            run.dump()
        );
        assert!(run.log.contains("gateway=totp"), "{what}\n{}", run.dump());
        assert!(took < BOUND, "{what}: took {took:?}");
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn authenticator_code_is_single_use_across_processes() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[code]\nattempts = 1\n");
    with_totp(&env);
    let code = totp_now();
    let c1 = code.clone();
    let run = env.authenticate("alice", Answers::Computed(Box::new(move || c1)), None);
    assert!(run.success, "{}", run.dump());
    let run = env.authenticate("alice", Answers::Computed(Box::new(move || code)), None);
    run.assert_failed_with(MAXTRIES);
    assert!(run.log.contains("used a second time"), "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn users_file_with_a_totp_secret_must_be_private() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    with_totp(&env);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(run.log.contains("chmod 600"), "{}", run.dump());
    assert!(!run.log.contains(TOTP_B32), "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn lockout_and_window_through_libpam_name_the_remote_host() {
    let fake = fake();
    let env = PamEnv::with_fake(
        &fake,
        "[code]\nattempts = 2\n[limits]\ncodes_per_window = 3\nfailures_before_lockout = 3\n",
    );
    let rhost = [("rhost", "203.0.113.9")];
    let wrong = || Answers::Lines(vec!["000000".into(), "000000".into()]);
    let run = env.authenticate_with("alice", &rhost, wrong(), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    let run = env.authenticate_with("alice", &rhost, wrong(), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert!(
        run.stderr
            .contains("Too many wrong codes: try again in 15 min."),
        "{}",
        run.dump()
    );
    assert!(run.log.contains("rhost=203.0.113.9"), "{}", run.dump());
    assert!(
        run.log.contains("result=denied-locked-out"),
        "{}",
        run.dump()
    );
    let sent = fake.sent().len();
    let run = env.authenticate_with("alice", &rhost, Answers::Eof, Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert_eq!(fake.sent().len(), sent, "nothing sent while locked out");
    assert!(run.stderr.contains("Try again in"), "{}", run.dump());
    let text = std::fs::read_to_string(env.state.join("alice.json")).expect("state");
    let state = UserState::parse(&text).expect("valid state");
    assert_eq!(state.lockouts, 1);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn policy_exempt_network_is_ignored_not_granted() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[policy]\nexempt_networks = [\"192.0.2.0/24\"]\n");
    env.set_stack(IGNORE_THEN_PERMIT);
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "192.0.2.44")],
        Answers::Eof,
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    assert!(run.log.contains("result=ignored-policy"), "{}", run.dump());
    assert!(fake.sent().is_empty());
    // PAM_IGNORE alone is not success.
    env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_deny.so\n",
    );
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "192.0.2.44")],
        Answers::Eof,
        Some(&fake),
    );
    assert!(!run.success, "{}", run.dump());
    // From elsewhere the code is required.
    env.set_stack("auth required {module} config={config}\n");
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "198.51.100.1")],
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    assert_eq!(fake.sent().len(), 1);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn corrupt_state_file_denies_and_is_kept() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[policy]\nfailmode = \"safe\"\n");
    std::fs::create_dir(&env.state).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let file = env.state.join("alice.json");
    write_file(&file, "{\"version\":1,\"failures\":", 0o600);
    env.set_stack(IGNORE_THEN_PERMIT);
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    assert!(!run.success, "{}", run.dump());
    env.set_stack("auth required {module} config={config}\n");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(run.log.contains("is corrupt"), "{}", run.dump());
    assert!(fake.sent().is_empty());
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "{\"version\":1,\"failures\":"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn fifty_logins_at_once_count_exactly() {
    let fake = Arc::new(fake());
    let env = Arc::new(PamEnv::with_fake(&fake, ""));
    let gate = Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (env, fake, gate) = (env.clone(), fake.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                // EOF at the prompt: no wrong answers, only sends counted.
                env.authenticate("alice", Answers::Eof, Some(&fake))
            })
        })
        .collect();
    let runs: Vec<PamRun> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    for run in &runs {
        assert!(!run.success, "{}", run.dump());
        assert_sane("concurrent", run);
    }
    assert_eq!(fake.sent().len(), 5, "codes_per_window = 5");
    let limited = runs
        .iter()
        .filter(|r| r.stderr.contains("Too many codes requested: no code sent."))
        .count();
    assert_eq!(limited, 45);
    let conv_errors = runs.iter().filter(|r| r.stderr.contains(CONV_ERR)).count();
    assert_eq!(conv_errors, 5);
    let text = std::fs::read_to_string(env.state.join("alice.json")).expect("state");
    let state = UserState::parse(&text).expect("the state file is intact");
    assert_eq!(state.sent.len(), 5);
    let leftovers: Vec<_> = std::fs::read_dir(&env.state)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ------------------------------------------- each HTTP gateway on its own ----

/// What the gateways below are built with: `timeout = 2`, so every send
/// must end within [`GW_BOUND`] = timeout + 1 s.
const GW_TIMEOUT: u64 = 2;
const GW_BOUND: Duration = Duration::from_secs(GW_TIMEOUT + 1);
const GW_TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
const GW_PLAYSMS_TOKEN: &str = "tok+en/Secret=42abc";
const GW_WEBSMS_TOKEN: &str = "websms-token-Vb7Qz2";
const GW_TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const GW_TWILIO_TOKEN: &str = "twilio-token-Pq45Rt0123456789ab";
const GW_HOOK_HEADER: &str = "hook-secret-Zt51Mw";
/// Every secret of every gateway below, plain and as a URL carries it.
const GW_SECRETS: &[&str] = &[
    GW_TOKEN,
    "AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c",
    GW_PLAYSMS_TOKEN,
    "tok%2Ben%2FSecret%3D42abc",
    GW_WEBSMS_TOKEN,
    GW_TWILIO_TOKEN,
    GW_HOOK_HEADER,
];
const GW_CODE: &str = "493817";
const GW_MESSAGE: &str = "493817 is your login code for alice@host (sshd from 203.0.113.7).\n\
                          If this was not you, your password is known to someone.";

/// A gateway of `kind` whose service is at `url`.
fn gw(kind: &str, url: &str) -> Box<dyn pam_gateway_core::gateway::Gateway> {
    use pam_gateway_core::gateway::{
        signal::{SignalConfig, SignalGateway},
        sms::{SmsConfig, SmsGateway},
        telegram::{TelegramConfig, TelegramGateway},
        webhook::{WebhookConfig, WebhookGateway},
    };
    let limits = format!("timeout = {GW_TIMEOUT}\nconnect_timeout = 1\n");
    let section = match kind {
        "telegram" => format!("[telegram]\nbot_token = \"{GW_TOKEN}\"\napi_url = \"{url}\"\n"),
        "signal" => format!("[signal]\nurl = \"{url}\"\nnumber = \"+4915100000001\"\n"),
        "playsms" => format!(
            "[sms]\nprovider = \"playsms\"\nurl = \"{url}/index.php\"\nusername = \"pam\"\n\
             token = \"{GW_PLAYSMS_TOKEN}\"\n"
        ),
        "websms" => format!(
            "[sms]\nprovider = \"websms\"\nurl = \"{url}\"\ntoken = \"{GW_WEBSMS_TOKEN}\"\n"
        ),
        "twilio" => format!(
            "[sms]\nprovider = \"twilio\"\nurl = \"{url}\"\naccount_sid = \"{GW_TWILIO_SID}\"\n\
             auth_token = \"{GW_TWILIO_TOKEN}\"\nfrom = \"+15005550006\"\n"
        ),
        "webhook" => format!(
            "[webhook]\nurl = \"{url}/hook/{{recipient}}\"\nbody = '{{\"text\":\"{{message}}\"}}'\n\
             headers = {{ X-Token = \"{GW_HOOK_HEADER}\" }}\n"
        ),
        other => panic!("no gateway {other}"),
    };
    let cfg = pam_gateway_core::config::Config::parse(
        std::path::Path::new("/t/gateway.toml"),
        &format!("{section}{limits}"),
    )
    .expect("config");
    match kind {
        "telegram" => Box::new(TelegramGateway::new(
            cfg.section::<TelegramConfig>().expect("telegram"),
        )),
        "signal" => Box::new(SignalGateway::new(
            cfg.section::<SignalConfig>().expect("signal"),
        )),
        "webhook" => Box::new(WebhookGateway::new(
            cfg.section::<WebhookConfig>().expect("webhook"),
        )),
        _ => Box::new(SmsGateway::new(cfg.section::<SmsConfig>().expect("sms"))),
    }
}

fn gw_recipient(kind: &str) -> &'static str {
    match kind {
        "telegram" => "123456977",
        "webhook" => "bob",
        _ => "+4915112345678",
    }
}

/// Sends [`GW_MESSAGE`] through a fresh `kind` gateway at `url` on a
/// thread, and waits for it no longer than a send may take plus 3 s (so
/// that a send without a deadline fails the test instead of hanging it).
/// The result, and how long the send took.
fn gw_send(kind: &str, url: &str) -> (Result<(), DeliveryError>, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (kind, url) = (kind.to_string(), url.to_string());
    std::thread::spawn(move || {
        let gateway = gw(&kind, &url);
        let start = Instant::now();
        let result = gateway.send(gw_recipient(&kind), GW_MESSAGE);
        let _ = tx.send((result, start.elapsed()));
    });
    rx.recv_timeout(GW_BOUND + Duration::from_secs(3))
        .expect("the send is still running: no deadline")
}

/// No secret, no code, no message, in any rendering of `err`.
fn gw_assert_clean(what: &str, err: &DeliveryError) {
    for text in [err.to_string(), format!("{err:?}")] {
        for s in GW_SECRETS {
            assert!(!text.contains(s), "{what}: secret {s:?} in {text}");
        }
        assert!(!text.contains(GW_CODE), "{what}: the code in {text}");
        assert!(
            !text.contains("your password is known"),
            "{what}: the message in {text}"
        );
        assert!(
            !text.contains("4915112345678"),
            "{what}: full number in {text}"
        );
    }
}

/// Each service's success answer, by path.
fn gw_service(req: &fake_http::Request) -> fake_http::Answer {
    use fake_http::Reply;
    let p = req.path.as_str();
    let reply = if p.starts_with("/bot") {
        Reply::json(200, json!({"ok": true, "result": {"message_id": 7}}))
    } else if p == "/v2/send" {
        Reply::json(201, json!({"timestamp": "1700000000000"}))
    } else if p == "/index.php" {
        Reply::json(
            200,
            json!({"data": [{"status": "OK", "error": "0", "smslog_id": "30"}]}),
        )
    } else if p == "/rest/smsmessaging/text" {
        Reply::json(200, json!({"statusCode": 2000, "statusMessage": "OK"}))
    } else if p.ends_with("/Messages.json") {
        Reply::json(
            201,
            json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}),
        )
    } else if p.starts_with("/hook/") {
        Reply::text(200, "ok")
    } else {
        Reply::text(404, "not found")
    };
    reply.into()
}

/// Each service's error answer with `status`, quoting the whole request
/// (target and body: query string, form or JSON) as services that echo
/// what they could not handle do.
fn gw_echo(req: &fake_http::Request, status: u16) -> fake_http::Answer {
    use fake_http::Reply;
    let echo = format!("{} {} {}", req.method, req.target, req.body_text());
    let p = req.path.as_str();
    let reply = if p.starts_with("/bot") {
        Reply::json(
            status,
            json!({"ok": false, "error_code": status, "description": format!("Bad Request: {echo}")}),
        )
    } else if p == "/v2/send" {
        Reply::json(
            status,
            json!({"error": format!("Failed to send message: {echo}")}),
        )
    } else if p == "/index.php" {
        // playSMS answers its errors with 200; an error code it does not
        // document, so that the gateway quotes the error string.
        Reply::json(
            if status >= 500 { status } else { 200 },
            json!({"status": "ERR", "error": "609", "error_string": echo}),
        )
    } else if p == "/rest/smsmessaging/text" {
        Reply::json(status, json!({"statusCode": 4000, "statusMessage": echo}))
    } else if p.ends_with("/Messages.json") {
        Reply::json(
            status,
            json!({"code": 21211, "message": echo, "status": status}),
        )
    } else {
        Reply::text(status, &echo)
    };
    reply.into()
}

fn gw_closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

/// A send that must end as Unreachable within `timeout` + 1 s.
fn gw_assert_bounded(kind: &str, what: &str, answer: fake_http::Answer) {
    let fake = fake_http::FakeHttp::start(move |_| answer.clone());
    let (result, took) = gw_send(kind, &fake.url());
    eprintln!("{kind}, {what}: {took:?}, {result:?}");
    let err = result.expect_err("nothing was answered");
    assert!(
        took < GW_BOUND,
        "{kind}, {what}: took {took:?} with timeout = {GW_TIMEOUT}"
    );
    assert!(
        matches!(err, DeliveryError::Unreachable(_)),
        "{kind}, {what}: {err:?}"
    );
    assert!(err.to_string().contains("timeout"), "{kind}, {what}: {err}");
    gw_assert_clean(what, &err);
}

fn gw_trickled_body(kind: &str) {
    gw_assert_bounded(
        kind,
        "head at once, then a body byte every 300 ms",
        fake_http::Answer::TrickleBody {
            status: 200,
            delay: Duration::from_millis(300),
        },
    );
}

fn gw_trickled_head(kind: &str) {
    gw_assert_bounded(
        kind,
        "a header byte every 300 ms",
        fake_http::Answer::TrickleHead {
            delay: Duration::from_millis(300),
        },
    );
}

fn gw_failures_by_class(kind: &str) {
    let (result, _) = gw_send(kind, &gw_closed_port_url());
    let err = result.expect_err("nothing listens");
    assert!(matches!(err, DeliveryError::Refused(_)), "{kind}: {err:?}");
    assert!(
        err.proven_remote() && err.nothing_delivered(),
        "{kind}: {err:?}"
    );
    gw_assert_clean("refused", &err);

    let fake = fake_http::FakeHttp::start(|_| {
        fake_http::Reply::text(503, "<html><body>503 Service Unavailable</body></html>").into()
    });
    let (result, _) = gw_send(kind, &fake.url());
    let err = result.expect_err("503");
    assert!(
        matches!(err, DeliveryError::ServiceFailed(_)),
        "{kind}: {err:?}"
    );
    gw_assert_clean("503", &err);

    // An answer that is not the service's: a captive portal's page. (The
    // webhook takes any 2xx as delivered: it knows no answer format.)
    if kind != "webhook" {
        fake.set_handler(|_| {
            fake_http::Reply::text(200, "<html><h1>Sign in to the guest network</h1></html>").into()
        });
        let (result, _) = gw_send(kind, &fake.url());
        let err = result.expect_err("garbage");
        assert!(
            matches!(err, DeliveryError::ServiceFailed(_)),
            "{kind}: {err:?}"
        );
        gw_assert_clean("garbage", &err);
    }

    fake.set_handler(|_| fake_http::Answer::Close);
    let (result, _) = gw_send(kind, &fake.url());
    let err = result.expect_err("closed");
    assert!(
        matches!(err, DeliveryError::Unreachable(_)),
        "{kind}: {err:?}"
    );
    gw_assert_clean("closed", &err);

    fake.set_handler(|_| fake_http::Answer::Hang);
    let (result, took) = gw_send(kind, &fake.url());
    let err = result.expect_err("no answer");
    assert!(
        matches!(err, DeliveryError::Unreachable(_)),
        "{kind}: {err:?}"
    );
    assert!(took < GW_BOUND, "{kind}: took {took:?}");
    gw_assert_clean("no answer", &err);

    // And the service as it should be: delivered.
    fake.set_handler(gw_service);
    let (result, _) = gw_send(kind, &fake.url());
    result.unwrap_or_else(|e| panic!("{kind}: {e:?}"));
}

fn gw_echoed_request(kind: &str) {
    for status in [400, 500] {
        let fake = fake_http::FakeHttp::start(move |req| gw_echo(req, status));
        let (result, _) = gw_send(kind, &fake.url());
        let err = result.expect_err("an error answer");
        eprintln!("{kind}, echo {status}: {err}");
        gw_assert_clean(&format!("{kind}, echo {status}"), &err);
        let sent = fake.requests();
        assert!(
            sent.iter()
                .any(|r| (r.target.clone() + &r.body_text()).contains(GW_CODE)),
            "{kind}: the code went out"
        );
    }
}

/// Set in the child that [`gw_out_of_descriptors`] starts: `KIND PHASE URL`.
const GW_CHILD: &str = "PGW_FAULTS_DESCRIPTOR_CHILD";

/// A caller can start su or sudo with any RLIMIT_NOFILE: with no
/// descriptor to spare, building the client (an event loop) or opening the
/// socket fails, and that is this machine's failure (Local), never
/// "unreachable". Run in a child process (this test binary, this test
/// alone) so this process's limits stay as they are.
fn gw_out_of_descriptors(kind: &str, test: &str) {
    if let Ok(spec) = std::env::var(GW_CHILD) {
        return gw_descriptor_child(&spec);
    }
    let fake = fake_http::FakeHttp::start(gw_service);
    for phase in ["before-the-client", "after-a-first-send"] {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(GW_CHILD, format!("{kind} {phase} {}", fake.url()))
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let result = stdout
            .lines()
            .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, r)| r))
            .unwrap_or_default()
            .to_string();
        eprintln!("{kind}, {phase}: {result}");
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{kind}, {phase}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            result.starts_with("local-error "),
            "{kind}, {phase}: {result}"
        );
        assert!(
            result.contains("(os error 24)"),
            "{kind}, {phase}: not EMFILE: {result}"
        );
        for s in GW_SECRETS {
            assert!(!result.contains(s), "{kind}, {phase}: secret in {result}");
        }
        assert!(
            !result.contains(GW_CODE),
            "{kind}, {phase}: code in {result}"
        );
    }
}

fn gw_descriptor_child(spec: &str) {
    let mut parts = spec.splitn(3, ' ');
    let (kind, phase, url) = (
        parts.next().expect("kind"),
        parts.next().expect("phase"),
        parts.next().expect("url"),
    );
    let gateway = gw(kind, url);
    if phase == "after-a-first-send" {
        let sockets = open_sockets();
        gateway
            .send(gw_recipient(kind), GW_MESSAGE)
            .expect("a first send, with descriptors to spare");
        // The client closes that connection on its runtime thread: wait
        // for it, or its descriptor would be free for the next socket.
        let until = Instant::now() + Duration::from_secs(10);
        while open_sockets() > sockets {
            assert!(Instant::now() < until, "the first connection stays open");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // The lowest free descriptor becomes the limit: every new one fails.
    // SAFETY: dup, close and the rlimit calls only touch this (child)
    // process's descriptor table and limits, with valid arguments.
    unsafe {
        let free = libc::dup(0);
        assert!(free > 0, "dup");
        libc::close(free);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = free as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
    }
    let err = gateway
        .send(gw_recipient(kind), GW_MESSAGE)
        .expect_err("no descriptor left: the send cannot succeed");
    println!("\nCHILD-RESULT {} {err}", err.class());
    assert!(matches!(err, DeliveryError::Local(_)), "{err:?}");
    assert!(!err.proven_remote() && err.nothing_delivered(), "{err:?}");
}

/// How many sockets this process has open.
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

macro_rules! http_gateway_faults {
    ($($kind:ident),*) => {$(
        mod $kind {
            #[test]
            fn a_trickled_body_ends_by_the_timeout() {
                super::gw_trickled_body(stringify!($kind));
            }

            #[test]
            fn a_trickled_head_ends_by_the_timeout() {
                super::gw_trickled_head(stringify!($kind));
            }

            #[test]
            fn refused_failed_closed_and_silent_sends_by_class() {
                super::gw_failures_by_class(stringify!($kind));
            }

            #[test]
            fn an_error_echoing_the_request_has_no_code_or_message() {
                super::gw_echoed_request(stringify!($kind));
            }

            #[test]
            fn out_of_descriptors_is_a_local_failure() {
                super::gw_out_of_descriptors(
                    stringify!($kind),
                    concat!(stringify!($kind), "::out_of_descriptors_is_a_local_failure"),
                );
            }
        }
    )*};
}

http_gateway_faults!(telegram, signal, playsms, websms, twilio, webhook);
