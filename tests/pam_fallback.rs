//! Fallback between gateways through real libpam: pamtester loads the
//! built module from a private PAM dir (bwrap mount namespace); Telegram,
//! Signal, SMS and webhook are loopback fakes, the command gateway a script.

use pgw_test_support::fake_http;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::sync::Arc;
use std::time::Duration;

use fake_http::{FakeHttp, Reply, Request};
use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use pam_harness::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const ACCOUNT: &str = "+4915100000001";
const BOB_PHONE: &str = "+4915112345678";
const PLAYSMS_TOKEN: &str = "playsms-token-Hh38Xq";
const HOOK_SECRET: &str = "hook-secret-Zu29Lm";

/// signal-cli-rest-api that delivers to anyone.
fn signal_ok(req: &Request) -> fake_http::Answer {
    if req.path == "/v2/send" && req.json()["number"] == ACCOUNT {
        Reply::json(201, json!({"timestamp": "1700000000123"})).into()
    } else {
        Reply::json(400, json!({"error": "bad request"})).into()
    }
}

/// Waits for the Signal fake to receive a message and returns its code.
fn code_via_signal(fake: &Arc<FakeHttp>) -> Answers {
    let fake = Arc::clone(fake);
    Answers::CodeFrom(Box::new(move || {
        let req = fake.wait_for_request(WAIT)?;
        fake_http::find_code(req.json()["message"].as_str()?)
    }))
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

fn telegram_section(api_url: &str) -> String {
    format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{api_url}\"\ntimeout = 2\nconnect_timeout = 1\n"
    )
}

fn signal_section(url: &str) -> String {
    format!("[signal]\nurl = \"{url}\"\nnumber = \"{ACCOUNT}\"\ntimeout = 2\nconnect_timeout = 1\n")
}

fn assert_no_secrets(run: &PamRun) {
    for text in [&run.log, &run.stdout, &run.stderr] {
        for secret in [SECRET_HALF, PLAYSMS_TOKEN, HOOK_SECRET] {
            assert!(!text.contains(secret), "{secret} leaked\n{}", run.dump());
        }
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn telegram_down_code_arrives_over_signal() {
    let signal = Arc::new(FakeHttp::start(signal_ok));
    let env = PamEnv::with_files(
        &format!(
            "gateways = [\"telegram\", \"signal\"]\n{}{}",
            telegram_section(&closed_port_url()),
            signal_section(&signal.url())
        ),
        &format!("[users.bob]\ntelegram = \"{CHAT}\"\nsignal = \"{BOB_PHONE}\"\n"),
    );
    let run = env.authenticate("bob", code_via_signal(&signal), None);
    assert!(run.success, "{}", run.dump());
    assert!(
        run.stderr
            .contains("Code sent via Signal to ***678. Verification code:"),
        "the prompt names the gateway that delivered\n{}",
        run.dump()
    );
    assert!(
        run.log.contains("delivery failed: telegram: unreachable"),
        "{}",
        run.dump()
    );
    assert!(
        run.log.contains("gateway=signal result=success"),
        "{}",
        run.dump()
    );
    let sent = signal.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].json()["recipients"], json!([BOB_PHONE]));
    assert!(
        sent[0].json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("bob@")),
        "{:?}",
        sent[0].json()
    );
    assert_no_secrets(&run);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn telegram_refusing_also_falls_through_and_order_is_respected() {
    // Telegram answers, but the chat is unknown: rejected, next gateway.
    let telegram = FakeTelegram::start(FakeOptions {
        chats: vec![],
        ..FakeOptions::default()
    })
    .expect("fake telegram");
    let signal = Arc::new(FakeHttp::start(signal_ok));
    let env = PamEnv::with_files(
        &format!(
            "{}{}",
            telegram_section(&telegram.url()),
            signal_section(&signal.url())
        ),
        &format!("[users.bob]\nsignal = \"{BOB_PHONE}\"\ntelegram = \"{CHAT}\"\n"),
    );
    // Default order: telegram first, whatever the order in users.toml.
    let run = env.authenticate("bob", code_via_signal(&signal), None);
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log
            .contains("delivery failed: telegram: rejected: chat not found"),
        "{}",
        run.dump()
    );
    assert_eq!(telegram.requests().len(), 1, "telegram tried first");

    // With Signal first, Telegram is never contacted.
    let telegram = FakeTelegram::start(FakeOptions::default()).expect("fake telegram");
    let env = PamEnv::with_files(
        &format!(
            "gateways = [\"signal\", \"telegram\"]\n{}{}",
            telegram_section(&telegram.url()),
            signal_section(&signal.url())
        ),
        &format!("[users.bob]\ntelegram = \"{CHAT}\"\nsignal = \"{BOB_PHONE}\"\n"),
    );
    let run = env.authenticate("bob", code_via_signal(&signal), None);
    assert!(run.success, "{}", run.dump());
    assert!(telegram.requests().is_empty(), "{:?}", telegram.requests());
}

/// A config with all five gateways, each failing in its own way, and bob
/// enrolled on all of them.
struct AllFailing {
    env: PamEnv,
    _fakes: Vec<FakeHttp>,
    _telegram: FakeTelegram,
    _dir: TempDir,
}

fn all_failing(policy: &str, sms_reply: Reply) -> AllFailing {
    let telegram = FakeTelegram::start(FakeOptions::default()).expect("fake telegram");
    telegram.set_mode(Mode::Status {
        code: 502,
        body: "<html>bad gateway</html>".into(),
    });
    let signal = FakeHttp::start(|_| Reply::text(503, "unavailable").into());
    let sms = FakeHttp::start(move |_| sms_reply.clone().into());
    let hook = FakeHttp::start(|req| {
        // Echoes its secret header back: must not reach the log.
        Reply::text(503, &format!("down {:?}", req.header("x-hook-key"))).into()
    });
    let dir = TempDir::new("cmd");
    let prog = dir.path().join("send-sms");
    write_file(
        &prog,
        "#!/bin/sh\necho 'modem not found:' >&2\ncat >&2\nexit 75\n",
        0o755,
    );
    let env = PamEnv::with_files(
        &format!(
            "{}{}[sms]\nprovider = \"playsms\"\nurl = \"{}/index.php\"\nusername = \"pam\"\n\
             token = \"{PLAYSMS_TOKEN}\"\ntimeout = 2\n\
             [webhook]\nurl = \"{}/hook\"\nheaders = {{ X-Hook-Key = \"{HOOK_SECRET}\" }}\n\
             body = '{{\"text\":\"{{message}}\"}}'\ntimeout = 2\n\
             [command]\nname = \"GSM modem\"\npath = \"{}\"\ntimeout = 5\n{policy}",
            telegram_section(&telegram.url()),
            signal_section(&signal.url()),
            sms.url(),
            hook.url(),
            prog.display()
        ),
        &format!(
            "[users.bob]\ntelegram = \"{CHAT}\"\nsignal = \"{BOB_PHONE}\"\nsms = \"{BOB_PHONE}\"\n\
             webhook = \"bob\"\ncommand = \"{BOB_PHONE}\"\n"
        ),
    );
    AllFailing {
        env,
        _fakes: vec![signal, sms, hook],
        _telegram: telegram,
        _dir: dir,
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn every_gateway_failing_denies_under_secure() {
    let world = all_failing("", Reply::text(200, "ERR 200"));
    let run = world
        .env
        .authenticate("bob", Answers::Lines(vec!["123456".into()]), None);
    run.assert_failed_with(AUTHINFO_UNAVAIL);
    assert!(
        run.log.contains("result=denied-delivery-failed"),
        "{}",
        run.dump()
    );
    for line in [
        "delivery failed: telegram: unreachable: Telegram server error 502",
        "delivery failed: signal: unreachable: signal-cli server error 503",
        "delivery failed: sms: rejected: playSMS: refused: playSMS ERR 200",
        "delivery failed: webhook: unreachable: server error 503",
        "delivery failed: command: unreachable:",
    ] {
        assert!(run.log.contains(line), "{line:?}\n{}", run.dump());
    }
    // The command echoed the message (and so the code) to stderr: the log
    // shows the excerpt with the code cut out.
    assert!(
        run.log
            .contains("modem not found: [digits] is your login code for bob@"),
        "{}",
        run.dump()
    );
    assert!(!run.stdout.contains("successfully"), "{}", run.dump());
    assert_no_secrets(&run);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn failmode_safe_only_when_every_failure_is_unreachable() {
    // Every gateway unreachable: safe mode lets the stack decide.
    let world = all_failing("[policy]\nfailmode = \"safe\"\n", Reply::text(503, "down"));
    world.env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_permit.so\n",
    );
    let run = world.env.authenticate("bob", Answers::Eof, None);
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=ignored-delivery-failed"),
        "{}",
        run.dump()
    );
    // One refusal among them (playSMS ERR 200) and safe mode denies.
    let world = all_failing(
        "[policy]\nfailmode = \"safe\"\n",
        Reply::text(200, "ERR 200"),
    );
    world.env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_permit.so\n",
    );
    let run = world.env.authenticate("bob", Answers::Eof, None);
    assert!(!run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=denied-delivery-failed"),
        "{}",
        run.dump()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_recipient_without_its_gateway_section_denies() {
    let signal = Arc::new(FakeHttp::start(signal_ok));
    let env = PamEnv::with_files(
        &signal_section(&signal.url()),
        &format!("[users.bob]\nsignal = \"{BOB_PHONE}\"\nsms = \"{BOB_PHONE}\"\n"),
    );
    let run = env.authenticate("bob", Answers::Eof, None);
    run.assert_failed_with(SERVICE_ERR);
    assert!(
        run.log
            .contains("user bob has a sms recipient but gateway.toml has no [sms] section"),
        "{}",
        run.dump()
    );
    assert!(signal.requests().is_empty(), "nothing sent");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn command_gateway_delivers_through_pam() {
    let dir = TempDir::new("cmd");
    let out = dir.path().join("sent");
    let prog = dir.path().join("notify");
    write_file(
        &prog,
        &format!(
            "#!/bin/sh\n{{ printf '%s\\n' \"$PAM_GATEWAY_RECIPIENT\"; cat; }} > {}.tmp\nmv {}.tmp {}\n",
            out.display(),
            out.display(),
            out.display()
        ),
        0o755,
    );
    let env = PamEnv::with_files(
        &format!(
            "[command]\nname = \"e-mail\"\npath = \"{}\"\n",
            prog.display()
        ),
        "[users.bob]\ncommand = \"bob@example.org\"\n",
    );
    let out2 = out.clone();
    let run = env.authenticate(
        "bob",
        Answers::CodeFrom(Box::new(move || {
            let deadline = std::time::Instant::now() + WAIT;
            while std::time::Instant::now() < deadline {
                if let Ok(text) = std::fs::read_to_string(&out2) {
                    return fake_http::find_code(&text);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })),
        None,
    );
    assert!(run.success, "{}", run.dump());
    assert!(
        run.stderr.contains("Code sent via e-mail to ***org"),
        "{}",
        run.dump()
    );
    let sent = std::fs::read_to_string(&out).expect("sent");
    assert!(sent.starts_with("bob@example.org\n"), "{sent}");
}
