//! Tests of the fake Telegram Bot API itself, with raw HTTP over std TcpStream.

use pgw_test_support::fake_telegram;

use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHAT: i64 = 123_456_977;

fn start() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake Telegram starts")
}

fn connect(fake: &FakeTelegram) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", fake.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn raw_request(
    method: &str,
    target: &str,
    content_type: Option<&str>,
    body: &str,
    close: bool,
) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Splits a complete response into status, headers (lowercased names) and body.
fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, raw[end + 4..].to_vec())
}

/// Reads exactly one response (by Content-Length) from a kept-alive stream.
fn read_one_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Value) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed early");
        raw.push(byte[0]);
    }
    let (status, headers, _) = parse_response(&raw);
    let len: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).expect("JSON body"),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One request on its own connection (Connection: close); status and JSON body.
fn call(
    fake: &FakeTelegram,
    method: &str,
    target: &str,
    ct: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut s = connect(fake);
    s.write_all(raw_request(method, target, ct, body, true).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let (status, headers, body) = parse_response(&raw);
    assert_eq!(
        header(&headers, "content-length").unwrap(),
        body.len().to_string()
    );
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&body)));
    (status, value)
}

fn post_json(fake: &FakeTelegram, method: &str, body: &Value) -> (u16, Value) {
    let target = format!("/bot{}/{method}", fake.token());
    call(
        fake,
        "POST",
        &target,
        Some("application/json"),
        &body.to_string(),
    )
}

#[test]
fn send_message_success_is_recorded() {
    let fake = start();
    let text = "pam_gateway: your login code for alice@host is 482913";
    let (status, v) = post_json(
        &fake,
        "sendMessage",
        &json!({"chat_id": CHAT, "text": text}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["chat"]["id"], CHAT);
    assert_eq!(v["result"]["chat"]["type"], "private");
    assert_eq!(v["result"]["text"], text);
    assert!(v["result"]["message_id"].as_i64().unwrap() > 0);
    assert!(v["result"]["date"].as_u64().unwrap() > 1_600_000_000);

    // chat_id as a string, form-encoded; and as a query string.
    let token = fake.token().to_string();
    let (status, v) = call(
        &fake,
        "POST",
        &format!("/bot{token}/sendMessage"),
        Some("application/x-www-form-urlencoded"),
        "chat_id=123456977&text=second+code%3A+1234567",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["text"], "second code: 1234567");
    let (status, _) = call(
        &fake,
        "GET",
        &format!("/bot{token}/sendMessage?chat_id=123456977&text=third"),
        None,
        "",
    );
    assert_eq!(status, 200);

    let sent = fake.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].token, token);
    assert_eq!(sent[0].chat_id, "123456977");
    assert_eq!(sent[0].text, text);
    assert_eq!(sent[0].path, format!("/bot{token}/sendMessage"));
    assert_eq!(sent[0].content_type, "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&sent[0].raw_body).unwrap()["chat_id"],
        CHAT
    );
    assert_eq!(sent[1].chat_id, "123456977");
    assert_eq!(sent[1].content_type, "application/x-www-form-urlencoded");
    assert_eq!(fake.last_code(), None, "'third' has no code");

    // wait_for_message hands out each delivered message once, in order.
    let first = fake.wait_for_message(Duration::from_secs(1)).unwrap();
    assert_eq!(first.text, text);
    assert_eq!(
        fake.wait_for_message(Duration::from_secs(1)).unwrap().text,
        sent[1].text
    );
    assert_eq!(
        fake.wait_for_message(Duration::from_secs(1)).unwrap().text,
        "third"
    );
    let t = Instant::now();
    assert!(fake.wait_for_message(Duration::from_millis(200)).is_none());
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert_eq!(
        fake_telegram::find_code(&first.text),
        Some("482913".to_string())
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.requests()[2].0, "GET");
}

#[test]
fn last_code_and_wait_for_a_message_sent_later() {
    let fake = start();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            let (status, _) = post_json(
                &fake,
                "sendMessage",
                &json!({"chat_id": "123456977", "text": "Code 12345678901 is not one; 20250113 is."}),
            );
            assert_eq!(status, 200);
        });
        let m = fake
            .wait_for_message(Duration::from_secs(5))
            .expect("message arrives");
        assert_eq!(m.chat_id, "123456977");
    });
    assert_eq!(fake.last_code().as_deref(), Some("20250113"));
}

#[test]
fn send_message_errors() {
    let fake = FakeTelegram::start(FakeOptions {
        blocked: vec![555_000_111],
        ..FakeOptions::default()
    })
    .unwrap();
    let (status, v) = post_json(&fake, "sendMessage", &json!({"chat_id": 42, "text": "hi"}));
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})
    );
    let (status, v) = post_json(
        &fake,
        "sendMessage",
        &json!({"chat_id": 555_000_111, "text": "hi"}),
    );
    assert_eq!(status, 403);
    assert_eq!(v["description"], "Forbidden: bot was blocked by the user");
    let (status, v) = post_json(&fake, "sendMessage", &json!({"chat_id": CHAT, "text": ""}));
    assert_eq!(status, 400);
    assert_eq!(v["description"], "Bad Request: message text is empty");
    let (status, v) = post_json(&fake, "sendMessage", &json!({"chat_id": CHAT}));
    assert_eq!(status, 400);
    assert_eq!(v["description"], "Bad Request: message text is empty");
    assert!(fake.sent().is_empty());
    assert!(fake.wait_for_message(Duration::from_millis(50)).is_none());
    assert_eq!(fake.last_code(), None);
}

#[test]
fn bad_token_is_401_and_unknown_method_404() {
    let fake = start();
    let (status, v) = call(
        &fake,
        "POST",
        "/bot123456789:wrongwrongwrong/sendMessage",
        Some("application/json"),
        &json!({"chat_id": CHAT, "text": "x"}).to_string(),
    );
    assert_eq!(status, 401);
    assert_eq!(
        v,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    // Byte for byte as Telegram writes it, "ok" first.
    let mut s = connect(&fake);
    s.write_all(raw_request("GET", "/botnope/getMe", None, "", true).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (_, _, body) = parse_response(&raw);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
    );
    let (status, v) = post_json(&fake, "sendMessagez", &json!({}));
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"ok": false, "error_code": 404, "description": "Not Found"})
    );
    assert!(fake.sent().is_empty());
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0],
        (
            "POST".to_string(),
            "/bot123456789:wrongwrongwrong/sendMessage".to_string()
        )
    );
}

#[test]
fn get_me_describes_the_bot() {
    let fake = start();
    let (status, v) = call(
        &fake,
        "GET",
        &format!("/bot{}/getMe", fake.token()),
        None,
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["id"], 123_456_789);
    assert_eq!(v["result"]["is_bot"], true);
    assert_eq!(v["result"]["first_name"], "pam_gateway test");
    assert_eq!(v["result"]["username"], "pam_gateway_test_bot");
}

#[test]
fn get_updates_long_poll_returns_pushed_update_and_offset_confirms_it() {
    let fake = start();
    let (v, elapsed) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            fake.push_update(CHAT, "private", "/start");
        });
        let t = Instant::now();
        let (status, v) = post_json(&fake, "getUpdates", &json!({"timeout": 10}));
        assert_eq!(status, 200, "{v}");
        (v, t.elapsed())
    });
    assert!(
        elapsed >= Duration::from_millis(250),
        "{elapsed:?}: answered before the push"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "{elapsed:?}: the push did not end the poll"
    );
    let updates = v["result"].as_array().unwrap();
    assert_eq!(updates.len(), 1, "{v}");
    let u = &updates[0];
    let id = u["update_id"].as_i64().unwrap();
    assert_eq!(u["message"]["text"], "/start");
    assert_eq!(u["message"]["chat"]["id"], CHAT);
    assert_eq!(u["message"]["chat"]["type"], "private");
    assert_eq!(u["message"]["chat"]["first_name"], "Alice");
    assert_eq!(u["message"]["from"]["id"], CHAT);
    assert_eq!(u["message"]["from"]["is_bot"], false);

    // Not confirmed yet: asking again without an offset returns it again.
    let (_, again) = post_json(&fake, "getUpdates", &json!({}));
    assert_eq!(again["result"][0]["update_id"], id);

    // offset = id + 1 (query string this time) confirms it; a short poll
    // then times out empty.
    let t = Instant::now();
    let (status, v) = call(
        &fake,
        "GET",
        &format!(
            "/bot{}/getUpdates?offset={}&timeout=1",
            fake.token(),
            id + 1
        ),
        None,
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(v, json!({"ok": true, "result": []}));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.pending_updates(), 0);
    let (_, v) = post_json(&fake, "getUpdates", &json!({}));
    assert_eq!(v["result"], json!([]));

    // A group message; limit caps the answer.
    let g1 = fake.push_update(-100_200_300, "group", "one");
    fake.push_update(-100_200_300, "group", "two");
    assert!(g1 > id);
    let (_, v) = post_json(&fake, "getUpdates", &json!({"offset": g1, "limit": 1}));
    let updates = v["result"].as_array().unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["message"]["chat"]["type"], "group");
    assert_eq!(updates[0]["message"]["text"], "one");
}

#[test]
fn a_second_get_updates_ends_the_first_long_poll_with_409() {
    let fake = start();
    let (first, elapsed) = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let t = Instant::now();
            let r = post_json(&fake, "getUpdates", &json!({"timeout": 20}));
            (r, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        let (status, v) = post_json(&fake, "getUpdates", &json!({"timeout": 0}));
        assert_eq!(status, 200, "the newer request is served: {v}");
        waiting.join().expect("poller")
    });
    let (status, v) = first;
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        v["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn webhook_mode_answers_get_updates_with_409() {
    let fake = start();
    fake.set_mode(Mode::Webhook);
    fake.push_update(CHAT, "private", "hello");
    let (status, v) = post_json(&fake, "getUpdates", &json!({"timeout": 5}));
    assert_eq!(status, 409);
    assert_eq!(
        v,
        json!({
            "ok": false,
            "error_code": 409,
            "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
        })
    );
    // Sending still works while a webhook is set.
    let (status, _) = post_json(&fake, "sendMessage", &json!({"chat_id": CHAT, "text": "x"}));
    assert_eq!(status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let fake = start();
    let mut s = connect(&fake);
    let target = format!("/bot{}/sendMessage", fake.token());
    for i in 0..3 {
        let body = json!({"chat_id": CHAT, "text": format!("code {i}00000")}).to_string();
        s.write_all(
            raw_request("POST", &target, Some("application/json"), &body, false).as_bytes(),
        )
        .unwrap();
        let (status, headers, v) = read_one_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "connection"), Some("keep-alive"));
        assert_eq!(v["result"]["text"], format!("code {i}00000"));
    }
    assert_eq!(fake.sent().len(), 3);
    assert_eq!(fake.last_code().as_deref(), Some("200000"));
}

#[test]
fn fault_modes() {
    let fake = start();
    let send = json!({"chat_id": CHAT, "text": "code 123456"});

    fake.set_mode(Mode::RateLimited { retry_after: 7 });
    let (status, v) = post_json(&fake, "sendMessage", &send);
    assert_eq!(status, 429);
    assert_eq!(v["error_code"], 429);
    assert_eq!(v["description"], "Too Many Requests: retry after 7");
    assert_eq!(v["parameters"]["retry_after"], 7);

    fake.set_mode(Mode::Status {
        code: 502,
        body: r#"{"ok":false,"error_code":502,"description":"Bad Gateway"}"#.to_string(),
    });
    let (status, v) = post_json(&fake, "getMe", &json!({}));
    assert_eq!(status, 502);
    assert_eq!(v["description"], "Bad Gateway");

    // Garbage: 200, but the body is not JSON.
    fake.set_mode(Mode::Garbage);
    let mut s = connect(&fake);
    let target = format!("/bot{}/sendMessage", fake.token());
    s.write_all(
        raw_request(
            "POST",
            &target,
            Some("application/json"),
            &send.to_string(),
            true,
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, _, body) = parse_response(&raw);
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    // CloseWithoutAnswer: EOF without a byte.
    fake.set_mode(Mode::CloseWithoutAnswer);
    let mut s = connect(&fake);
    s.write_all(
        raw_request(
            "POST",
            &target,
            Some("application/json"),
            &send.to_string(),
            false,
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(raw.is_empty());

    // Trickle: a valid answer, slowly; the message is delivered.
    fake.set_mode(Mode::Trickle { delay_ms: 1 });
    let t = Instant::now();
    let (status, v) = post_json(&fake, "sendMessage", &send);
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true);
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(fake.sent().len(), 1, "only the trickled call delivered");
    assert_eq!(fake.requests().len(), 5);

    // NeverAnswer: nothing comes back until the fake is dropped.
    fake.set_mode(Mode::NeverAnswer);
    let mut s = connect(&fake);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s.write_all(
        raw_request(
            "POST",
            &target,
            Some("application/json"),
            &send.to_string(),
            false,
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let err = s.read(&mut buf).expect_err("no answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    let t = Instant::now();
    drop(fake);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        t.elapsed()
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed once dropped");
}

#[test]
fn oversized_request_is_413() {
    let fake = start();
    let mut s = connect(&fake);
    let target = format!("/bot{}/sendMessage", fake.token());
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, _, body) = parse_response(&raw);
    assert_eq!(status, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error_code"],
        413
    );
}

#[test]
fn drop_frees_the_port() {
    let fake = start();
    let port = fake.port();
    assert_eq!(fake.url(), format!("http://127.0.0.1:{port}"));
    drop(fake);
    let again = FakeTelegram::start(FakeOptions {
        port,
        ..FakeOptions::default()
    })
    .expect("port reusable after drop");
    assert_eq!(again.port(), port);
}

fn keyboard() -> Value {
    json!({"inline_keyboard": [
        [{"text": "17", "callback_data": "a:n1:17"}, {"text": "42", "callback_data": "a:n1:42"}],
        [{"text": "Not me", "callback_data": "n:n1"}]
    ]})
}

#[test]
fn inline_keyboards_are_kept_and_a_tap_is_a_callback_query_update() {
    let fake = start();
    let (status, v) = post_json(
        &fake,
        "sendMessage",
        &json!({"chat_id": CHAT, "text": "Login of alice", "reply_markup": keyboard()}),
    );
    assert_eq!(status, 200, "{v}");
    let id = v["result"]["message_id"].as_i64().unwrap();
    let sent = fake.sent();
    assert_eq!(sent[0].message_id, id);
    assert_eq!(sent[0].reply_markup, Some(keyboard()));
    let m = fake.message(id).unwrap();
    assert_eq!(m.text, "Login of alice");
    assert_eq!(
        m.buttons,
        vec![
            vec![
                ("17".to_string(), "a:n1:17".to_string()),
                ("42".to_string(), "a:n1:42".to_string())
            ],
            vec![("Not me".to_string(), "n:n1".to_string())]
        ]
    );
    // A form body carries the markup serialized, as the real API takes it.
    let target = format!("/bot{}/sendMessage", fake.token());
    let form = format!(
        "chat_id={CHAT}&text=x&reply_markup={}",
        pgw_test_support_percent(&keyboard().to_string())
    );
    let (status, v) = call(
        &fake,
        "POST",
        &target,
        Some("application/x-www-form-urlencoded"),
        &form,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(fake.sent()[1].reply_markup, Some(keyboard()));

    // Someone else's tap under Alice's message: from.id is theirs, the
    // message (and chat) Alice's.
    let up = fake.tap(555, id, "a:n1:42");
    let (status, v) = post_json(&fake, "getUpdates", &json!({"timeout": 5}));
    assert_eq!(status, 200);
    let q = &v["result"][0];
    assert_eq!(q["update_id"], up);
    assert_eq!(q["callback_query"]["id"], format!("q{up}"));
    assert_eq!(q["callback_query"]["from"]["id"], 555);
    assert_eq!(q["callback_query"]["message"]["message_id"], id);
    assert_eq!(q["callback_query"]["message"]["chat"]["id"], CHAT);
    assert_eq!(q["callback_query"]["data"], "a:n1:42");
    assert!(q.get("message").is_none());
}

#[test]
fn bad_keyboards_are_refused() {
    let fake = start();
    for markup in [
        json!({"inline_keyboard": [[{"text": "x", "callback_data": "d".repeat(65)}]]}),
        json!({"inline_keyboard": [[{"text": "", "callback_data": "a"}]]}),
        json!({"inline_keyboard": "no"}),
        json!("not an object"),
    ] {
        let (status, v) = post_json(
            &fake,
            "sendMessage",
            &json!({"chat_id": CHAT, "text": "x", "reply_markup": markup}),
        );
        assert_eq!(status, 400, "{markup}: {v}");
    }
    assert!(fake.sent().is_empty());
}

#[test]
fn answer_callback_query_is_recorded_once_per_tap() {
    let fake = start();
    let (_, v) = post_json(
        &fake,
        "sendMessage",
        &json!({"chat_id": CHAT, "text": "Login", "reply_markup": keyboard()}),
    );
    let id = v["result"]["message_id"].as_i64().unwrap();
    let up = fake.tap(CHAT, id, "n:n1");
    assert_eq!(fake.wait_for_callback_answer(up, Duration::ZERO), None);
    let (status, v) = post_json(
        &fake,
        "answerCallbackQuery",
        &json!({"callback_query_id": format!("q{up}"), "text": "Refused."}),
    );
    assert_eq!((status, &v["result"]), (200, &json!(true)));
    let a = fake
        .wait_for_callback_answer(up, Duration::from_secs(1))
        .unwrap();
    assert_eq!(a.text, "Refused.");
    assert_eq!(a.callback_query_id, format!("q{up}"));
    // A second answer, or an id the fake never issued: refused like Telegram.
    for id in [format!("q{up}"), "q1".to_string(), String::new()] {
        let (status, _) = post_json(
            &fake,
            "answerCallbackQuery",
            &json!({"callback_query_id": id}),
        );
        assert_eq!(status, 400, "{id}");
    }
    assert_eq!(fake.callback_answers().len(), 1);
}

#[test]
fn edit_message_text_changes_the_message_and_removes_the_keyboard() {
    let fake = start();
    let (_, v) = post_json(
        &fake,
        "sendMessage",
        &json!({"chat_id": CHAT, "text": "Login 123456", "reply_markup": keyboard()}),
    );
    let id = v["result"]["message_id"].as_i64().unwrap();
    let (status, v) = post_json(
        &fake,
        "editMessageText",
        &json!({"chat_id": CHAT, "message_id": id, "text": "approved"}),
    );
    assert_eq!(status, 200, "{v}");
    let e = fake.wait_for_edit(id, Duration::from_secs(1)).unwrap();
    assert_eq!(e.before.text, "Login 123456");
    assert_eq!(e.before.buttons.len(), 2);
    assert_eq!(e.after.text, "approved");
    assert!(e.after.buttons.is_empty());
    assert_eq!(fake.message(id).unwrap().text, "approved");
    // The same again is "not modified"; another chat's or an unknown
    // message is "not found"; nothing is recorded for them.
    let (status, v) = post_json(
        &fake,
        "editMessageText",
        &json!({"chat_id": CHAT, "message_id": id, "text": "approved",
                "reply_markup": {"inline_keyboard": []}}),
    );
    assert_eq!(status, 400);
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("message is not modified")
    );
    for (chat, msg) in [(CHAT + 1, id), (CHAT, id + 100)] {
        let (status, v) = post_json(
            &fake,
            "editMessageText",
            &json!({"chat_id": chat, "message_id": msg, "text": "x"}),
        );
        assert_eq!(status, 400);
        assert_eq!(v["description"], "Bad Request: message to edit not found");
    }
    assert_eq!(fake.edits().len(), 1);
}

#[test]
fn get_webhook_info_reports_the_webhook() {
    let fake = start();
    let (status, v) = post_json(&fake, "getWebhookInfo", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(v["result"]["url"], "");
    fake.set_webhook(Some("https://hook.example.org/x"));
    let (_, v) = post_json(&fake, "getWebhookInfo", &json!({}));
    assert_eq!(v["result"]["url"], "https://hook.example.org/x");
    let (status, _) = post_json(&fake, "getUpdates", &json!({"timeout": 0}));
    assert_eq!(status, 409, "a webhook excludes getUpdates");
    fake.set_webhook(None);
    fake.set_mode(Mode::Webhook);
    let (_, v) = post_json(&fake, "getWebhookInfo", &json!({}));
    assert!(v["result"]["url"].as_str().unwrap().starts_with("https://"));
}

fn pgw_test_support_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
