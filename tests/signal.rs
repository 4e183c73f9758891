//! The Signal gateway against loopback stand-ins for signal-cli-rest-api
//! (`/v2/send`) and signal-cli's JSON-RPC HTTP daemon (`/api/v1/rpc`): the
//! exact request, success, each failure they answer, timeouts, and no
//! secret or full phone number in any error.

use pgw_test_support::fake_http;

use std::path::Path;
use std::time::{Duration, Instant};

use fake_http::{Answer, FakeHttp, Reply, Request};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::signal::{SignalConfig, SignalError, SignalGateway};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use serde_json::{Value, json};

const ACCOUNT: &str = "+4915100000001";
const BOB: &str = "+4915112345678";
const STRANGER: &str = "+4915199999999";
const PROXY_PASSWORD: &str = "proxy-pass-Xq81Zr";

fn config(extra: &str) -> SignalConfig {
    Config::parse(Path::new("/t/gateway.toml"), &format!("[signal]\n{extra}"))
        .expect("config")
        .section::<SignalConfig>()
        .cloned()
        .expect("signal")
}

fn rest(fake: &FakeHttp, extra: &str) -> SignalGateway {
    SignalGateway::new(&config(&format!(
        "url = \"{}\"\nnumber = \"{ACCOUNT}\"\ntimeout = 1\nconnect_timeout = 1\n{extra}",
        fake.url()
    )))
}

fn jsonrpc(fake: &FakeHttp, extra: &str) -> SignalGateway {
    SignalGateway::new(&config(&format!(
        "url = \"{}\"\nmode = \"jsonrpc\"\nnumber = \"{ACCOUNT}\"\ntimeout = 1\n\
         connect_timeout = 1\n{extra}",
        fake.url()
    )))
}

/// signal-cli-rest-api as it behaves: 201 with a timestamp for a
/// registered recipient, 400 with signal-cli's message otherwise.
fn rest_api(req: &Request) -> Answer {
    if req.method != "POST" || req.path != "/v2/send" {
        return Reply::text(404, "404 page not found").into();
    }
    let body = req.json();
    if body["number"] != ACCOUNT {
        return Reply::json(400, json!({"error": "Invalid account (phone number)"})).into();
    }
    let recipient = body["recipients"][0].as_str().unwrap_or("");
    if recipient != BOB {
        return Reply::json(
            400,
            json!({"error": format!("Failed to send message: Unregistered user \"{recipient}\"\n")}),
        )
        .into();
    }
    Reply::json(201, json!({"timestamp": "1700000000123"})).into()
}

/// signal-cli `daemon --http` as it behaves for `send`.
fn rpc_daemon(req: &Request) -> Answer {
    if req.method != "POST" || req.path != "/api/v1/rpc" {
        return Reply::text(404, "").into();
    }
    let body = req.json();
    let id = body["id"].clone();
    let recipient = body["params"]["recipient"][0].as_str().unwrap_or("");
    let result =
        |kind: &str| json!({"recipientAddress": {"uuid": null, "number": recipient}, "type": kind});
    if recipient == BOB {
        Reply::json(
            200,
            json!({"jsonrpc": "2.0", "result": {"timestamp": 1700000000123u64,
                   "results": [result("SUCCESS")]}, "id": id}),
        )
        .into()
    } else {
        Reply::json(
            200,
            json!({"jsonrpc": "2.0", "error": {"code": -1, "message": "Failed to send message",
                   "data": {"response": {"timestamp": 1700000000123u64,
                   "results": [result("UNREGISTERED_FAILURE")]}}}, "id": id}),
        )
        .into()
    }
}

fn assert_clean(err: &SignalError) {
    let delivery = DeliveryError::from(err.clone());
    for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
        assert!(!text.contains(PROXY_PASSWORD), "password leaked: {text}");
        assert!(!text.contains(STRANGER), "full number leaked: {text}");
        assert!(!text.contains(BOB), "full number leaked: {text}");
    }
}

#[test]
fn rest_sends_the_documented_request() {
    let fake = FakeHttp::start(rest_api);
    let gw = rest(&fake, "");
    assert_eq!(gw.id(), "signal");
    assert_eq!(gw.display_name(), "Signal");
    gw.send(BOB, "123456 is your code \"quoted\"\nline 2")
        .expect("delivered");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v2/send"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.json(),
        json!({"number": ACCOUNT, "recipients": [BOB],
               "message": "123456 is your code \"quoted\"\nline 2"})
    );
    assert!(r.header("authorization").is_none());
}

#[test]
fn rest_unregistered_recipient_is_rejected_and_masked() {
    let fake = FakeHttp::start(rest_api);
    let err = rest(&fake, "").send_rest(STRANGER, "x").unwrap_err();
    assert_eq!(err, SignalError::NotOnSignal);
    assert!(matches!(
        DeliveryError::from(err.clone()),
        DeliveryError::Rejected { .. }
    ));
    assert_clean(&err);
}

#[test]
fn rest_refusals_by_kind() {
    let fake = FakeHttp::start(rest_api);
    let gw = rest(&fake, "");
    let cases: Vec<(Reply, SignalError)> = vec![
        (
            Reply::json(
                400,
                json!({"error": "Failed to send message due to untrusted identities"}),
            ),
            SignalError::UntrustedIdentity,
        ),
        (
            Reply::json(
                429,
                json!({"error": "Failed to send message due to rate limiting",
                       "challenge_tokens": ["abc"], "account": ACCOUNT}),
            )
            .with_header("Retry-After", "30"),
            SignalError::RateLimited {
                retry_after: Some(30),
            },
        ),
        (
            Reply::json(400, json!({"error": "Invalid account (phone number)"})),
            SignalError::Refused {
                status: 400,
                message: "Invalid account (phone number)".into(),
            },
        ),
        (
            Reply::text(404, "404 page not found"),
            SignalError::WrongEndpoint(
                "no signal-cli-rest-api /v2/send at this URL (HTTP 404)".into(),
            ),
        ),
        (Reply::text(401, ""), SignalError::Unauthorized(401)),
        (
            Reply::text(502, "bad gateway"),
            SignalError::Server { status: 502 },
        ),
        (
            Reply::json(201, json!({})),
            SignalError::Malformed("HTTP 201 without a \"timestamp\"".into()),
        ),
        (
            Reply::text(201, "<html>"),
            SignalError::Malformed("HTTP 201 with a body that is not JSON".into()),
        ),
        // Per-recipient failures next to a timestamp: nothing delivered.
        (
            Reply::json(
                201,
                json!({"timestamp": "1", "results": [{"type": "IDENTITY_FAILURE"}]}),
            ),
            SignalError::UntrustedIdentity,
        ),
        (
            Reply::json(
                201,
                json!({"timestamp": "1", "errors": [format!("Unregistered user \"{BOB}\"")]}),
            ),
            SignalError::NotOnSignal,
        ),
    ];
    for (reply, want) in cases {
        fake.push(reply);
        let err = gw.send_rest(BOB, "x").unwrap_err();
        assert_eq!(err, want);
        assert_clean(&err);
    }
    let classes: Vec<&str> = [
        SignalError::UntrustedIdentity,
        SignalError::RateLimited { retry_after: None },
        SignalError::Unauthorized(401),
        SignalError::Server { status: 500 },
    ]
    .into_iter()
    .map(|e| DeliveryError::from(e).class())
    .collect();
    assert_eq!(
        classes,
        ["rejected", "rejected", "misconfigured", "unreachable"]
    );
}

#[test]
fn rest_proxy_credentials_are_sent_and_never_shown() {
    let fake = FakeHttp::start(rest_api);
    let gw = rest(
        &fake,
        &format!("username = \"pam\"\npassword = \"{PROXY_PASSWORD}\"\n"),
    );
    gw.send(BOB, "hello").expect("delivered");
    assert_eq!(
        fake.requests()[0].basic_auth(),
        Some(("pam".to_string(), PROXY_PASSWORD.to_string()))
    );
    // A proxy that echoes the credentials back in its error page.
    fake.push(Reply::text(
        403,
        &format!("denied for pam:{PROXY_PASSWORD}"),
    ));
    let err = gw.send_rest(BOB, "x").unwrap_err();
    assert_eq!(err, SignalError::Unauthorized(403));
    fake.push(Reply::json(
        400,
        json!({"error": format!("bad credentials pam:{PROXY_PASSWORD}")}),
    ));
    let err = gw.send_rest(BOB, "x").unwrap_err();
    assert!(err.to_string().contains("[redacted]"), "{err}");
    assert_clean(&err);
}

#[test]
fn rest_timeouts_and_dead_services_are_unreachable_in_time() {
    let fake = FakeHttp::start(|_| Answer::Hang);
    let gw = rest(&fake, "");
    let start = Instant::now();
    let err = gw.send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    fake.set_handler(|_| Answer::Close);
    let err = gw.send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gw = SignalGateway::new(&config(&format!(
        "url = \"http://127.0.0.1:{port}\"\nnumber = \"{ACCOUNT}\"\n"
    )));
    let err = gw.send_rest(BOB, "x").unwrap_err();
    assert!(
        matches!(&err, SignalError::Transport(t) if t.to_string().contains("refused")),
        "{err}"
    );
    assert!(matches!(
        DeliveryError::from(err),
        DeliveryError::Refused(_)
    ));
    let err = gw.send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Refused(_)), "{err:?}");
}

#[test]
fn server_failures_and_unreadable_answers_are_service_failures() {
    let fake = FakeHttp::start(|_| Reply::text(502, "<html>Bad Gateway</html>").into());
    for gw in [rest(&fake, ""), jsonrpc(&fake, "")] {
        let err = gw.send(BOB, "x").unwrap_err();
        assert!(matches!(err, DeliveryError::ServiceFailed(_)), "{err:?}");
    }
    fake.set_handler(|_| Reply::text(201, "<html>Welcome</html>").into());
    let err = rest(&fake, "").send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::ServiceFailed(_)), "{err:?}");
    // signal-cli itself could not reach Signal: it answered, and failed.
    let err = DeliveryError::from(SignalError::NetworkFailure);
    assert!(matches!(err, DeliveryError::ServiceFailed(_)), "{err:?}");
}

#[test]
fn an_error_quoting_the_request_has_neither_code_nor_message() {
    let message = "493817 is your login code for alice@host.\nIf this was not you, act.";
    let fake = FakeHttp::start(|req| {
        Reply::json(
            400,
            json!({"error": format!("cannot send {}", req.body_text())}),
        )
        .into()
    });
    let gw = rest(&fake, "");
    let err = gw.send_rest(BOB, message).unwrap_err();
    let delivery = gw.send(BOB, message).unwrap_err();
    for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
        assert!(!text.contains("493817"), "code in {text}");
        assert!(!text.contains("If this was not you"), "message in {text}");
    }
    assert!(err.to_string().contains("[message]"), "{err}");
    assert_clean(&err);
}

#[test]
fn jsonrpc_sends_the_documented_request() {
    let fake = FakeHttp::start(rpc_daemon);
    jsonrpc(&fake, "")
        .send(BOB, "654321 is your code")
        .expect("delivered");
    let r = &fake.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v1/rpc")
    );
    let body = r.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["method"], "send");
    assert_eq!(
        body["params"],
        json!({"recipient": [BOB], "message": "654321 is your code", "account": ACCOUNT})
    );
    assert!(
        body["id"].as_str().is_some_and(|id| id.len() == 16),
        "{body}"
    );
    // Without `number` (single-account daemon) no account is sent.
    let gw = SignalGateway::new(&config(&format!(
        "url = \"{}\"\nmode = \"jsonrpc\"\n",
        fake.url()
    )));
    gw.send(BOB, "x").expect("delivered");
    assert!(fake.requests()[1].json()["params"].get("account").is_none());
}

#[test]
fn jsonrpc_per_recipient_and_error_answers() {
    let fake = FakeHttp::start(rpc_daemon);
    let gw = jsonrpc(&fake, "");
    let err = gw.send_jsonrpc(STRANGER, "x").unwrap_err();
    assert_eq!(err, SignalError::NotOnSignal);
    assert_clean(&err);

    type Script = Box<dyn Fn(&Request) -> Answer + Send + Sync>;
    let error = |code: i64, results: Value| -> Script {
        Box::new(move |req: &Request| {
            Reply::json(
                200,
                json!({"jsonrpc": "2.0", "error": {"code": code, "message": "Failed",
                       "data": {"response": {"timestamp": 1, "results": results}}},
                       "id": req.json()["id"]}),
            )
            .into()
        })
    };
    let cases: Vec<(Script, SignalError, &str)> = vec![
        (
            error(-4, json!([{"type": "IDENTITY_FAILURE"}])),
            SignalError::UntrustedIdentity,
            "rejected",
        ),
        (
            error(
                -5,
                json!([{"type": "RATE_LIMIT_FAILURE", "retryAfterSeconds": 120}]),
            ),
            SignalError::RateLimited {
                retry_after: Some(120),
            },
            "rejected",
        ),
        (
            error(-1, json!([{"type": "NETWORK_FAILURE"}])),
            SignalError::NetworkFailure,
            "unreachable",
        ),
        (
            error(-3, json!([])),
            SignalError::NetworkFailure,
            "unreachable",
        ),
        (
            error(-1, json!([{"type": "PROOF_REQUIRED_FAILURE"}])),
            SignalError::RateLimited { retry_after: None },
            "rejected",
        ),
        (
            Box::new(|req: &Request| {
                Reply::json(
                    200,
                    json!({"jsonrpc": "2.0", "error": {"code": -32602,
                           "message": "Specified account does not exist", "data": null},
                           "id": req.json()["id"]}),
                )
                .into()
            }),
            SignalError::WrongEndpoint(
                "signal-cli refused the parameters (Specified account does not exist); is \
                 [signal] number an account of this daemon?"
                    .into(),
            ),
            "misconfigured",
        ),
        // A result whose only recipient failed (no error object).
        (
            Box::new(|req: &Request| {
                Reply::json(
                    200,
                    json!({"jsonrpc": "2.0", "result": {"timestamp": 1,
                           "results": [{"type": "UNREGISTERED_FAILURE"}]},
                           "id": req.json()["id"]}),
                )
                .into()
            }),
            SignalError::NotOnSignal,
            "rejected",
        ),
        (
            Box::new(|_: &Request| {
                Reply::json(
                    200,
                    json!({"jsonrpc": "2.0", "result": {"timestamp": 1},
                                        "id": "someone-else"}),
                )
                .into()
            }),
            SignalError::Malformed("the JSON-RPC answer has another id than the request".into()),
            "unreachable",
        ),
        (
            Box::new(|_: &Request| Reply::text(404, "").into()),
            SignalError::WrongEndpoint(
                "no signal-cli JSON-RPC daemon at this URL (HTTP 404; started with \
                 `daemon --http`?)"
                    .into(),
            ),
            "misconfigured",
        ),
    ];
    for (handler, want, class) in cases {
        fake.set_handler(handler);
        let err = gw.send_jsonrpc(BOB, "x").unwrap_err();
        assert_eq!(err, want);
        assert_eq!(DeliveryError::from(err.clone()).class(), class, "{err}");
        assert_clean(&err);
    }
}

#[test]
fn jsonrpc_timeout() {
    let fake = FakeHttp::start(|_| Answer::Hang);
    let start = Instant::now();
    let err = jsonrpc(&fake, "").send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn section_checks() {
    let parse = |text: &str| Config::parse(Path::new("/t/gateway.toml"), text);
    let err = parse("[signal]\nurl = \"https://signal.example.org\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("signal.number"));
    assert!(err.message.contains("required"), "{err}");
    assert!(parse("[signal]\nurl = \"https://signal.example.org\"\nmode = \"jsonrpc\"\n").is_ok());
    for (bad, key) in [
        (
            "url = \"http://signal.example.org\"\nnumber = \"+4915100000001\"",
            "signal.url",
        ),
        (
            "url = \"https://s.example.org\"\nnumber = \"015100000001\"",
            "signal.number",
        ),
        (
            "url = \"https://s.example.org\"\nnumber = \"+4915100000001\"\nmode = \"dbus\"",
            "signal.mode",
        ),
        (
            "url = \"https://s.example.org\"\nnumber = \"+4915100000001\"\nusername = \"u\"",
            "signal.username",
        ),
        (
            "url = \"https://s.example.org\"\nnumber = \"+4915100000001\"\ntimeout = 0",
            "signal.timeout",
        ),
        (
            "url = \"https://s.example.org\"\nnumber = \"+4915100000001\"\nnumbr = \"x\"",
            "signal.numbr",
        ),
    ] {
        let err = parse(&format!("[signal]\n{bad}\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{bad}: {err}");
        assert!(err.line.is_some(), "{bad}: {err}");
    }
    let err = parse(&format!(
        "[signal]\nurl = \"https://s.example.org\"\nnumber = \"+4915100000001\"\n\
         password = \"{PROXY_PASSWORD}\"\n"
    ))
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("signal.password"));
    let err = parse(&format!(
        "[signal]\nurl = \"https://s.example.org\"\nnumber = \"+4915100000001\"\n\
         username = \"u\"\npassword = 12{PROXY_PASSWORD}\n"
    ))
    .unwrap_err();
    assert!(!err.to_string().contains(PROXY_PASSWORD), "{err}");
}

// The harmless checks `pam-gateway configure signal` and `status` make.

#[test]
fn rest_check_asks_about_and_accounts_and_sends_nothing() {
    let fake = FakeHttp::start(|req: &Request| match req.path.as_str() {
        "/v1/about" => Reply::json(200, json!({"versions": ["v1", "v2"], "build": 2})).into(),
        "/v1/accounts" => Reply::json(200, json!(["+4915100000009", ACCOUNT])).into(),
        _ => Reply::text(500, "unexpected").into(),
    });
    let found = rest(&fake, "").check().expect("check");
    assert_eq!(
        found,
        format!(
            "signal-cli-rest-api answers at {} and has the account ***001",
            fake.url()
        )
    );
    let methods: Vec<(String, String)> = fake
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET".to_string(), "/v1/about".to_string()),
            ("GET".to_string(), "/v1/accounts".to_string())
        ]
    );
    // An older API without the account list: not checked, not refused.
    fake.push(Reply::json(200, json!({"versions": ["v1"], "build": 1})));
    fake.push(Reply::text(404, "404 page not found"));
    let found = rest(&fake, "").check().expect("check");
    assert!(found.contains("could not be listed, HTTP 404"), "{found}");
    for (about, expected) in [
        (Reply::json(401, json!({})), "credentials refused (401)"),
        (Reply::text(404, ""), "no signal-cli-rest-api at this URL"),
        (
            Reply::json(200, json!({"name": "other"})),
            "has no \"versions\"",
        ),
        (Reply::text(200, "<html>"), "did not answer JSON"),
        (Reply::text(502, ""), "server error 502"),
    ] {
        fake.push(about);
        let err = rest(&fake, "").check().unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert_clean(&err);
    }
    // An account the API does not have, masked.
    fake.push(Reply::json(200, json!({"versions": ["v1", "v2"]})));
    fake.push(Reply::json(200, json!(["+4915100000009"])));
    let err = rest(&fake, "").check().unwrap_err();
    assert!(
        err.to_string()
            .contains("the account ***001 is not registered or linked"),
        "{err}"
    );
    assert!(!err.to_string().contains(ACCOUNT), "{err}");
    assert!(matches!(
        DeliveryError::from(err),
        DeliveryError::Misconfigured(_)
    ));
}

#[test]
fn jsonrpc_check_asks_version_and_accounts() {
    let answer = |req: &Request, result: Value| {
        Answer::from(Reply::json(
            200,
            json!({"jsonrpc": "2.0", "result": result, "id": req.json()["id"]}),
        ))
    };
    let fake = FakeHttp::start(move |req: &Request| match req.json()["method"].as_str() {
        Some("version") => answer(req, json!({"version": "0.13.4"})),
        Some("listAccounts") => answer(req, json!([{"number": ACCOUNT}])),
        _ => Reply::text(500, "unexpected").into(),
    });
    let found = jsonrpc(&fake, "").check().expect("check");
    assert!(
        found.starts_with("signal-cli 0.13.4 (JSON-RPC daemon) answers at")
            && found.ends_with("and has the account ***001"),
        "{found}"
    );
    // A single-account daemon knows no `listAccounts`; an old one no
    // `version`: both still pass.
    let error = |req: &Request, code: i64| {
        Answer::from(Reply::json(
            200,
            json!({"jsonrpc": "2.0", "id": req.json()["id"],
                   "error": {"code": code, "message": "Method not implemented"}}),
        ))
    };
    fake.set_handler(move |req: &Request| error(req, -32601));
    let found = jsonrpc(&fake, "").check().expect("check");
    assert!(
        found.starts_with("a signal-cli JSON-RPC daemon answers at")
            && found.contains("single-account daemon"),
        "{found}"
    );
    // Not the account, another id, not JSON-RPC at all.
    fake.set_handler(move |req: &Request| match req.json()["method"].as_str() {
        Some("version") => answer(req, json!({"version": "0.13.4"})),
        _ => answer(req, json!([{"number": "+4915100000009"}])),
    });
    let err = jsonrpc(&fake, "").check().unwrap_err();
    assert!(err.to_string().contains("***001 is not one of"), "{err}");
    fake.set_handler(|_: &Request| {
        Reply::json(200, json!({"jsonrpc": "2.0", "result": {}, "id": "other"})).into()
    });
    let err = jsonrpc(&fake, "").check().unwrap_err();
    assert!(err.to_string().contains("another id"), "{err}");
    fake.set_handler(|_: &Request| Reply::text(404, "").into());
    let err = jsonrpc(&fake, "").check().unwrap_err();
    assert!(
        err.to_string().contains("no signal-cli JSON-RPC daemon"),
        "{err}"
    );
    assert!(
        fake.requests().iter().all(|r| r.json()["method"] != "send"),
        "nothing sent"
    );
}
