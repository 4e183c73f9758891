//! The Telegram client against the loopback fake Bot API: the exact
//! request, every error class, timeouts, and the token in no error text.

use pgw_test_support::fake_telegram;

use std::path::Path;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::telegram::{
    TelegramClient, TelegramConfig, TelegramError, TelegramGateway,
};
use pam_gateway_core::gateway::{DeliveryError, Gateway};

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
const SECRET_HALF: &str = "AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
const CHAT: &str = "123456977";

fn config(api_url: &str, token: &str, timeout: u64) -> TelegramConfig {
    let text = format!(
        "[telegram]\nbot_token = \"{token}\"\napi_url = \"{api_url}\"\ntimeout = {timeout}\nconnect_timeout = 2\n"
    );
    Config::parse(Path::new("/t/gateway.toml"), &text)
        .expect("config")
        .section::<TelegramConfig>()
        .cloned()
        .expect("telegram")
}

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        blocked: vec![555],
        ..FakeOptions::default()
    })
    .expect("fake")
}

fn client(fake: &FakeTelegram, timeout: u64) -> TelegramClient {
    TelegramClient::new(&config(&fake.url(), TOKEN, timeout)).expect("client")
}

/// Fails if the token or its secret half shows in any rendering of `err`.
fn assert_no_token(err: &TelegramError) {
    let delivery = DeliveryError::from(err.clone());
    for text in [
        err.to_string(),
        format!("{err:?}"),
        delivery.to_string(),
        format!("{delivery:?}"),
    ] {
        assert!(!text.contains(SECRET_HALF), "token leaked: {text}");
    }
}

#[test]
fn send_message_makes_the_documented_request() {
    let fake = fake();
    client(&fake, 5)
        .send_message(CHAT, "123456 is your code *not markdown*")
        .expect("sent");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(m.chat_id, CHAT);
    assert_eq!(m.text, "123456 is your code *not markdown*");
    assert!(
        m.content_type.starts_with("application/json"),
        "{}",
        m.content_type
    );
    let body: serde_json::Value = serde_json::from_str(&m.raw_body).expect("json body");
    assert_eq!(body["chat_id"], serde_json::json!(123456977));
    assert!(body.get("parse_mode").is_none(), "no parse_mode: {body}");
}

#[test]
fn gateway_trait_delivers() {
    let fake = fake();
    let gw = TelegramGateway::new(&config(&fake.url(), TOKEN, 5));
    assert_eq!(gw.id(), "telegram");
    gw.send(CHAT, "hello 654321").expect("sent");
    assert_eq!(fake.last_code().as_deref(), Some("654321"));
}

#[test]
fn chat_not_found_is_rejected_with_a_hint() {
    let fake = fake();
    let err = client(&fake, 5).send_message("42", "x").unwrap_err();
    assert_eq!(err, TelegramError::ChatNotFound);
    assert!(err.to_string().contains("press Start"), "{err}");
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Rejected { .. }
    ));
    assert_no_token(&err);
}

#[test]
fn bad_token_is_misconfigured() {
    let fake = fake();
    let other = "987654321:ZZEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
    let c = TelegramClient::new(&config(&fake.url(), other, 5)).expect("client");
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert_eq!(err, TelegramError::Unauthorized);
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Misconfigured(_)
    ));
    let text = format!("{err} {err:?}");
    assert!(!text.contains("ZZEhBP0av28"), "{text}");
}

#[test]
fn blocked_bot() {
    let fake = fake();
    let err = client(&fake, 5).send_message("555", "x").unwrap_err();
    assert!(matches!(err, TelegramError::Blocked(_)), "{err:?}");
    assert_no_token(&err);
}

#[test]
fn rate_limit_carries_retry_after() {
    let fake = fake();
    fake.set_mode(Mode::RateLimited { retry_after: 17 });
    let err = client(&fake, 5).send_message(CHAT, "x").unwrap_err();
    assert_eq!(
        err,
        TelegramError::RateLimited {
            retry_after: Some(17)
        }
    );
    assert_eq!(
        DeliveryError::from(err.clone()),
        DeliveryError::Rejected {
            reason: err.to_string(),
            retry_after: Some(17)
        }
    );
}

#[test]
fn server_errors_and_garbage_are_service_failures() {
    let fake = fake();
    let c = client(&fake, 5);
    fake.set_mode(Mode::Status {
        code: 502,
        body: "<html>Bad Gateway</html>".into(),
    });
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert_eq!(err, TelegramError::Server { status: 502 });
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::ServiceFailed(_)
    ));
    fake.set_mode(Mode::Garbage);
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert!(matches!(err, TelegramError::Malformed(_)), "{err:?}");
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::ServiceFailed(_)
    ));
    fake.set_mode(Mode::Status {
        code: 200,
        body: "{\"ok\":false}".into(),
    });
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert!(matches!(err, TelegramError::Malformed(_)), "{err:?}");
    fake.set_mode(Mode::CloseWithoutAnswer);
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert!(matches!(err, TelegramError::Transport(_)), "{err:?}");
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Unreachable(_)
    ));
    assert_no_token(&err);
    assert!(fake.sent().is_empty());
}

#[test]
fn refused_connection() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = TelegramClient::new(&config(&format!("http://127.0.0.1:{port}"), TOKEN, 5))
        .expect("client");
    let err = c.send_message(CHAT, "x").unwrap_err();
    assert!(
        matches!(err, TelegramError::ConnectionRefused(_)),
        "{err:?}"
    );
    assert_no_token(&err);
    assert!(matches!(
        DeliveryError::from(err),
        DeliveryError::Refused(_)
    ));
    // Through the gateway too, and the URL with the token is in no text.
    let gw = TelegramGateway::new(&config(&format!("http://127.0.0.1:{port}"), TOKEN, 5));
    let err = gw.send(CHAT, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Refused(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET_HALF), "{err:?}");
}

#[test]
fn a_server_that_never_answers_is_bounded_by_timeout() {
    let fake = fake();
    fake.set_mode(Mode::NeverAnswer);
    let start = Instant::now();
    let err = client(&fake, 1).send_message(CHAT, "x").unwrap_err();
    let took = start.elapsed();
    assert_eq!(err, TelegramError::Timeout);
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} with timeout = 1"
    );
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Unreachable(_)
    ));
    assert_no_token(&err);
}

#[test]
fn an_answer_quoting_the_message_is_redacted() {
    let fake = fake();
    let c = client(&fake, 5);
    let message = "493817 is your login code for alice@host.\nIf this was not you, act.";
    let echo = serde_json::json!({"chat_id": 123456977, "text": message}).to_string();
    for code in [400, 403] {
        fake.set_mode(Mode::Status {
            code,
            body: serde_json::json!({
                "ok": false,
                "error_code": code,
                "description": format!("Bad Request: cannot parse {echo} for bot{TOKEN}")
            })
            .to_string(),
        });
        let err = c.send_message(CHAT, message).unwrap_err();
        let delivery = DeliveryError::from(err.clone());
        for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
            assert!(!text.contains("493817"), "code in {text}");
            assert!(!text.contains("If this was not you"), "message in {text}");
            assert!(text.contains("[message]"), "{text}");
        }
        assert_no_token(&err);
    }
}

#[test]
fn a_trickling_answer_is_bounded_by_timeout() {
    let fake = fake();
    fake.set_mode(Mode::Trickle { delay_ms: 50 });
    let start = Instant::now();
    let err = client(&fake, 1).send_message(CHAT, "x").unwrap_err();
    assert_eq!(err, TelegramError::Timeout, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn tls_spoken_to_a_plain_port_fails_cleanly() {
    let fake = fake();
    let url = format!("https://127.0.0.1:{}", fake.port());
    let c = TelegramClient::new(&config(&url, TOKEN, 2)).expect("client");
    let start = Instant::now();
    let err = c.send_message(CHAT, "x").unwrap_err();
    // The fake waits for an HTTP header that a ClientHello never completes:
    // the handshake ends in the timeout (a real server would reset instead).
    assert!(
        matches!(err, TelegramError::Transport(_) | TelegramError::Timeout),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Unreachable(_)
    ));
    assert_no_token(&err);
}

#[test]
fn get_me_and_get_updates() {
    let fake = fake();
    let c = client(&fake, 10);
    let me = c.get_me().expect("getMe");
    assert_eq!(me.username, "pam_gateway_test_bot");
    assert_eq!(me.id, 123456789);
    let id = fake.push_update(123456977, "private", "/start abc");
    let updates = c.get_updates(None, 1).expect("updates");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].update_id, id);
    assert_eq!(updates[0].chat_id, Some(123456977));
    assert_eq!(updates[0].text.as_deref(), Some("/start abc"));
    assert_eq!(updates[0].chat_type.as_deref(), Some("private"));
    // Confirming with offset drops it.
    let updates = c.get_updates(Some(id + 1), 0).expect("updates");
    assert!(updates.is_empty());
    fake.set_mode(Mode::Webhook);
    assert_eq!(
        c.get_updates(None, 0).unwrap_err(),
        TelegramError::WebhookActive
    );
}

#[test]
fn confirm_updates_drops_what_was_read_and_keeps_the_rest() {
    let fake = fake();
    let c = client(&fake, 10);
    let a = fake.push_update(123456977, "private", "one");
    let b = fake.push_update(123456977, "private", "two");
    c.confirm_updates(a + 1).expect("confirm");
    assert_eq!(
        fake.pending_updates(),
        1,
        "only the one below the offset goes"
    );
    let left = c.get_updates(None, 0).expect("updates");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].update_id, b);
}

#[test]
fn a_competing_reader_is_a_poll_conflict_not_a_webhook() {
    let fake = fake();
    let c = client(&fake, 10);
    let err = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| c.get_updates(None, 20));
        std::thread::sleep(Duration::from_millis(300));
        let other = client(&fake, 10);
        other.get_updates(None, 0).expect("newer poll");
        waiting.join().expect("poller").unwrap_err()
    });
    assert_eq!(err, TelegramError::PollConflict);
    assert!(err.to_string().contains("another program"), "{err}");
    assert!(matches!(
        DeliveryError::from(err),
        DeliveryError::Misconfigured(_)
    ));
}
