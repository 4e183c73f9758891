//! The webhook gateway: each recipe in conf/webhook/ against a loopback
//! stand-in of its service (the request that service documents, its
//! success answer), then the error classes, escaping, timeouts, and the
//! secrets (URL, header values) in no error.

use pgw_test_support::fake_http;

use std::path::Path;
use std::time::{Duration, Instant};

use fake_http::{Answer, FakeHttp, Reply, Request};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::webhook::{WebhookConfig, WebhookError, WebhookGateway};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use serde_json::json;

const MESSAGE: &str = "123456 is your login code for alice@host (sshd from 203.0.113.7).\nIt expires in 5 min. \"Quotes\" \\ and <html> & stuff";

fn parse(section: &str) -> Result<WebhookConfig, pam_gateway_core::toml_errors::ParseError> {
    Config::parse(Path::new("/t/gateway.toml"), section)
        .map(|c| c.section::<WebhookConfig>().cloned().expect("webhook"))
}

/// A recipe from conf/webhook/, its https://HOST pointed at the fake.
fn recipe(name: &str, fake: &FakeHttp) -> (WebhookGateway, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/webhook")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).expect("recipe");
    // The recipe as written must be valid.
    parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("url = \"https://") {
            let path_start = rest.find('/').expect("url path");
            out.push_str(&format!("url = \"{}{}", fake.url(), &rest[path_start..]));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str("timeout = 2\nconnect_timeout = 1\n");
    let cfg = parse(&out).expect("recipe at loopback");
    (WebhookGateway::new(&cfg), text)
}

fn only_request(fake: &FakeHttp) -> Request {
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    reqs[0].clone()
}

#[test]
fn ntfy_recipe() {
    let fake = FakeHttp::start(|req| {
        let ok = req.method == "POST"
            && req.path == "/"
            && req.bearer() == Some("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2")
            && req.json()["topic"].is_string();
        if ok {
            Reply::json(200, json!({"id": "sPs71M8A2T", "time": 1700000000, "event": "message",
                                    "topic": req.json()["topic"], "message": req.json()["message"]}))
            .into()
        } else {
            Reply::json(
                403,
                json!({"code": 40301, "http": 403, "error": "forbidden"}),
            )
            .into()
        }
    });
    let (gw, _) = recipe("ntfy", &fake);
    assert_eq!(gw.display_name(), "ntfy");
    gw.send("alice-logins-7f3k", MESSAGE).expect("delivered");
    let r = only_request(&fake);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"topic": "alice-logins-7f3k", "title": "Login code", "message": MESSAGE,
               "priority": 5, "tags": ["key"]})
    );
}

#[test]
fn gotify_recipe() {
    let fake = FakeHttp::start(|req| {
        if req.method == "POST"
            && req.path == "/message"
            && req.header("x-gotify-key") == Some("AqHsM0wVfkhtzZ3")
        {
            Reply::json(
                200,
                json!({"id": 25, "appid": 5, "message": req.json()["message"],
                                    "title": "Login code", "priority": 8,
                                    "date": "2018-02-27T19:36:10.5045044+01:00"}),
            )
            .into()
        } else {
            Reply::json(401, json!({"error": "Unauthorized", "errorCode": 401,
                                    "errorDescription": "you need to provide a valid access token"}))
            .into()
        }
    });
    let (gw, _) = recipe("gotify", &fake);
    gw.send("alice", MESSAGE).expect("delivered");
    let r = only_request(&fake);
    assert_eq!(
        r.json(),
        json!({"title": "Login code", "message": MESSAGE, "priority": 8})
    );
}

#[test]
fn matrix_recipe() {
    let fake = FakeHttp::start(|req| {
        let prefix = "/_matrix/client/v3/rooms/%21qporfwt%3Aexample.org/send/m.room.message/";
        if req.method == "PUT"
            && req.path.starts_with(prefix)
            && req.header("authorization")
                == Some("Bearer syt_cGFtX2dhdGV3YXk_yPzKfOqWbXrTsUvBnMaLd_0a1b2c")
        {
            Reply::json(200, json!({"event_id": "$YUwRidLecu:example.com"})).into()
        } else {
            Reply::json(
                403,
                json!({"errcode": "M_FORBIDDEN", "error": "not in room"}),
            )
            .into()
        }
    });
    let (gw, _) = recipe("matrix", &fake);
    gw.send("!qporfwt:example.org", MESSAGE).expect("delivered");
    gw.send("!qporfwt:example.org", MESSAGE).expect("delivered");
    let reqs = fake.requests();
    assert_eq!(
        reqs[0].json(),
        json!({"msgtype": "m.text", "body": MESSAGE})
    );
    let txn = |r: &Request| r.path.rsplit('/').next().unwrap_or("").to_string();
    assert_eq!(txn(&reqs[0]).len(), 24);
    assert_ne!(
        txn(&reqs[0]),
        txn(&reqs[1]),
        "a fresh transaction id per message"
    );
}

#[test]
fn slack_discord_mattermost_recipes() {
    // Slack: 200 "ok" for the hook's path.
    let fake = FakeHttp::start(|req| {
        if req.path == "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX" {
            Reply::text(200, "ok").into()
        } else {
            Reply::text(404, "no_service").into()
        }
    });
    let (gw, _) = recipe("slack", &fake);
    gw.send("U024BE7LH", MESSAGE).expect("slack");
    assert_eq!(
        only_request(&fake).json(),
        json!({"text": format!("<@U024BE7LH> {MESSAGE}")})
    );

    // Discord: 204 No Content.
    let fake = FakeHttp::start(|req| {
        if req.path.starts_with("/api/webhooks/1234567890123456789/") {
            Answer::Reply(Reply {
                status: 204,
                headers: vec![],
                body: vec![],
            })
        } else {
            Reply::json(
                401,
                json!({"message": "Invalid Webhook Token", "code": 50027}),
            )
            .into()
        }
    });
    let (gw, _) = recipe("discord", &fake);
    gw.send("80351110224678912", MESSAGE).expect("discord");
    assert_eq!(
        only_request(&fake).json(),
        json!({"content": format!("<@80351110224678912> {MESSAGE}"),
               "allowed_mentions": {"users": ["80351110224678912"]}})
    );

    // Mattermost: 200 "ok", DM through "channel": "@user".
    let fake = FakeHttp::start(|req| {
        if req.path == "/hooks/xxxgenerated0hook0keyxxx" {
            Reply::text(200, "ok").into()
        } else {
            Reply::json(400, json!({"id": "web.incoming_webhook.invalid.app_error"})).into()
        }
    });
    let (gw, _) = recipe("mattermost", &fake);
    gw.send("alice", MESSAGE).expect("mattermost");
    assert_eq!(
        only_request(&fake).json(),
        json!({"channel": "@alice", "username": "pam_gateway", "text": MESSAGE})
    );
}

/// Every recipe's secrets stay out of its errors, even when the service
/// echoes the request back.
#[test]
fn recipe_secrets_never_in_errors() {
    let fake = FakeHttp::start(|req| {
        let token = req
            .header("authorization")
            .and_then(|a| a.split_once(' '))
            .map(|(_, t)| t);
        let echo = format!(
            "{} {} auth={:?} token={:?} gotify={:?}",
            req.method,
            req.target,
            req.header("authorization"),
            token,
            req.header("x-gotify-key")
        );
        Reply::text(401, &echo).into()
    });
    for (name, secrets) in [
        ("ntfy", vec!["tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"]),
        ("gotify", vec!["AqHsM0wVfkhtzZ3"]),
        (
            "matrix",
            vec!["syt_cGFtX2dhdGV3YXk_yPzKfOqWbXrTsUvBnMaLd_0a1b2c"],
        ),
        ("slack", vec!["XXXXXXXXXXXXXXXXXXXXXXXX", "B00000000/XXXX"]),
        (
            "discord",
            vec!["aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789_-aBcDeFgHiJkLmNoPqRsTuVwXyZ01"],
        ),
        ("mattermost", vec!["xxxgenerated0hook0keyxxx"]),
    ] {
        let (gw, _) = recipe(name, &fake);
        let err = gw.send("!qporfwt:example.org", MESSAGE).unwrap_err();
        assert!(
            matches!(err, DeliveryError::Misconfigured(_)),
            "{name}: {err}"
        );
        for s in secrets {
            assert!(!err.to_string().contains(s), "{name}: {s} in {err}");
            assert!(!format!("{err:?}").contains(s), "{name}: {s} in {err:?}");
        }
        assert!(!err.to_string().contains("123456"), "{name}: code in {err}");
    }
}

fn simple(fake: &FakeHttp, extra: &str) -> WebhookGateway {
    WebhookGateway::new(
        &parse(&format!(
            "[webhook]\nurl = \"{}/hook/{{recipient}}\"\nbody = '{{\"text\":\"{{message}}\"}}'\n\
             timeout = 1\nconnect_timeout = 1\n{extra}",
            fake.url()
        ))
        .expect("config"),
    )
}

#[test]
fn answers_by_class() {
    let fake = FakeHttp::start(|_| Reply::text(200, "ok").into());
    let gw = simple(&fake, "headers = { X-Token = \"hdr-secret-9Qw\" }\n");
    assert_eq!(gw.display_name(), "webhook");
    let cases: Vec<(Reply, Result<(), WebhookError>)> = vec![
        (Reply::text(200, "ok"), Ok(())),
        (Reply::text(202, ""), Ok(())),
        (
            Reply::text(302, "").with_header("Location", "https://elsewhere.example.org/"),
            Err(WebhookError::Redirect(302)),
        ),
        (
            Reply::text(403, "invalid_token hdr-secret-9Qw"),
            Err(WebhookError::Unauthorized {
                status: 403,
                detail: "invalid_token [redacted]".into(),
            }),
        ),
        (
            Reply::text(404, "no_service"),
            Err(WebhookError::NotFound {
                status: 404,
                detail: "no_service".into(),
            }),
        ),
        (
            Reply::text(400, "invalid_payload"),
            Err(WebhookError::Refused {
                status: 400,
                detail: "invalid_payload".into(),
            }),
        ),
        (
            Reply::text(429, "slow down").with_header("Retry-After", "7"),
            Err(WebhookError::RateLimited {
                retry_after: Some(7),
            }),
        ),
        (
            Reply::json(
                429,
                json!({"message": "You are being rate limited.", "retry_after": 0.35, "global": false}),
            ),
            Err(WebhookError::RateLimited {
                retry_after: Some(1),
            }),
        ),
        (
            Reply::json(
                429,
                json!({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 2500}),
            ),
            Err(WebhookError::RateLimited {
                retry_after: Some(3),
            }),
        ),
        (
            Reply::text(503, ""),
            Err(WebhookError::Server { status: 503 }),
        ),
    ];
    for (reply, want) in cases {
        fake.push(reply);
        assert_eq!(gw.call("bob", "x"), want);
    }
    let class = |e: WebhookError| DeliveryError::from(e).class();
    assert_eq!(class(WebhookError::Redirect(301)), "misconfigured");
    assert_eq!(class(WebhookError::Server { status: 500 }), "unreachable");
    assert!(matches!(
        DeliveryError::from(WebhookError::Server { status: 500 }),
        DeliveryError::ServiceFailed(_)
    ));
    assert_eq!(
        class(WebhookError::Refused {
            status: 400,
            detail: String::new()
        }),
        "rejected"
    );
    let sent = fake.requests();
    assert_eq!(sent[0].path, "/hook/bob");
    assert_eq!(sent[0].header("x-token"), Some("hdr-secret-9Qw"));
}

#[test]
fn encodings_methods_and_recipient_escaping() {
    let fake = FakeHttp::start(|_| Reply::text(200, "ok").into());
    // Plain text (ntfy's simplest form): the body as-is.
    let gw = WebhookGateway::new(
        &parse(&format!(
            "[webhook]\nurl = \"{}/{{recipient}}\"\ncontent_type = \"text/plain\"\nbody = \"{{message}}\"\n",
            fake.url()
        ))
        .expect("config"),
    );
    gw.send("a topic/../x", MESSAGE).expect("sent");
    // A form, with PUT.
    let gw = WebhookGateway::new(
        &parse(&format!(
            "[webhook]\nurl = \"{}/form\"\nmethod = \"put\"\n\
             content_type = \"application/x-www-form-urlencoded\"\nbody = \"to={{recipient}}&msg={{message}}\"\n",
            fake.url()
        ))
        .expect("config"),
    );
    gw.send("bob&x=1", MESSAGE).expect("sent");
    // JSON with a recipient that would break out of its string.
    let gw = simple(&fake, "");
    gw.send("\"},\"x\":{\"", MESSAGE).expect("sent");
    let reqs = fake.requests();
    assert_eq!(reqs[0].path, "/a%20topic%2F..%2Fx");
    assert_eq!(reqs[0].body_text(), MESSAGE);
    assert_eq!(reqs[0].header("content-type"), Some("text/plain"));
    assert_eq!(reqs[1].method, "PUT");
    assert_eq!(reqs[1].form_value("to").as_deref(), Some("bob&x=1"));
    assert_eq!(reqs[1].form_value("msg").as_deref(), Some(MESSAGE));
    assert_eq!(reqs[1].form().len(), 2);
    assert_eq!(reqs[2].json(), json!({"text": MESSAGE}));
    assert!(
        reqs[2].path.starts_with("/hook/%22%7D%2C"),
        "{}",
        reqs[2].path
    );
}

#[test]
fn timeout_and_dead_service() {
    let fake = FakeHttp::start(|_| Answer::Hang);
    let gw = simple(&fake, "");
    let start = Instant::now();
    let err = gw.send("bob", "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    fake.set_handler(|_| Answer::Close);
    assert!(matches!(
        gw.send("bob", "x").unwrap_err(),
        DeliveryError::Unreachable(_)
    ));
    fake.set_handler(|_| Reply::text(502, "<html>Bad Gateway</html>").into());
    let err = gw.send("bob", "x").unwrap_err();
    assert!(matches!(err, DeliveryError::ServiceFailed(_)), "{err:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gw = WebhookGateway::new(
        &parse(&format!(
            "[webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\nbody = '{{\"text\":\"{{message}}\"}}'\n"
        ))
        .expect("config"),
    );
    let err = gw.send("bob", "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Refused(_)), "{err:?}");
}

#[test]
fn an_error_quoting_the_request_has_neither_code_nor_message() {
    let fake = FakeHttp::start(|req| {
        Reply::text(400, &format!("invalid payload: {}", req.body_text())).into()
    });
    // JSON, and a form (percent-encoded).
    let form = WebhookGateway::new(
        &parse(&format!(
            "[webhook]\nurl = \"{}/form\"\ncontent_type = \"application/x-www-form-urlencoded\"\n\
             body = \"msg={{message}}\"\n",
            fake.url()
        ))
        .expect("config"),
    );
    for gw in [simple(&fake, ""), form] {
        let err = gw.call("bob", MESSAGE).unwrap_err();
        let delivery = gw.send("bob", MESSAGE).unwrap_err();
        for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
            assert!(!text.contains("123456"), "code in {text}");
            assert!(!text.contains("It expires in"), "message in {text}");
            assert!(!text.contains("expires%20in"), "message in {text}");
            assert!(text.contains("[message]"), "{text}");
        }
    }
}

#[test]
fn section_checks() {
    let base = "url = \"https://hooks.example.org/services/SECRETPATH123456\"\n";
    assert!(
        parse(&format!(
            "[webhook]\n{base}body = '{{\"t\":\"{{message}}\"}}'\n"
        ))
        .is_ok()
    );
    for (extra, key, hint) in [
        ("body = '{\"t\":\"x\"}'", "webhook.body", "{message}"),
        (
            "body = '{\"t\":\"{message}\",\"u\":\"{user}\"}'",
            "webhook.body",
            "unknown placeholder {user}",
        ),
        (
            "body = '{\"t\":{message}}'",
            "webhook.body",
            "not valid JSON",
        ),
        (
            "body = '{\"t\":\"{message}\"'",
            "webhook.body",
            "not valid JSON",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nmethod = \"GET\"",
            "webhook.method",
            "POST",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nheaders = { Content-Type = \"text/plain\" }",
            "webhook.headers",
            "content_type",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nheaders = { \"Bad Name\" = \"x\" }",
            "webhook.headers",
            "header name",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nheaders = { X-A = \"line\\nbreak\" }",
            "webhook.headers",
            "value not shown",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nname = \"\"",
            "webhook.name",
            "1 to 32",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\ncontent_type = \"\"",
            "webhook.content_type",
            "Content-Type",
        ),
        (
            "body = '{\"t\":\"{message}\"}'\nbodyy = \"x\"",
            "webhook.bodyy",
            "unknown field",
        ),
    ] {
        let err = parse(&format!("[webhook]\n{base}{extra}\n")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{extra}: {err}");
        assert!(err.line.is_some(), "{extra}: {err}");
        assert!(err.message.contains(hint), "{hint:?} not in {err}");
        assert!(!err.to_string().contains("SECRETPATH"), "{err}");
    }
    for url in [
        "http://hooks.example.org/services/SECRETPATH123456",
        "https://{recipient}.example.org/SECRETPATH123456",
        "https://hooks.example.org/{message}/SECRETPATH123456",
        "https://user:SECRETPATH123456@hooks.example.org/",
        "ftp://hooks.example.org/SECRETPATH123456",
    ] {
        let err = parse(&format!(
            "[webhook]\nurl = \"{url}\"\nbody = '{{\"t\":\"{{message}}\"}}'\n"
        ))
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("webhook.url"), "{url}: {err}");
        assert!(!err.to_string().contains("SECRETPATH"), "{err}");
    }
    // Header values are never quoted, even in a type error.
    let err = parse(&format!(
        "[webhook]\n{base}body = '{{\"t\":\"{{message}}\"}}'\n[webhook.headers]\nAuthorization = [\"Bearer SECRETHEADER\"]\n"
    ))
    .unwrap_err();
    assert!(!err.to_string().contains("SECRETHEADER"), "{err}");
    let err = parse(
        "[webhook]\nurl = [\"https://hooks.example.org/SECRETPATH123456\"]\nbody = \"{message}\"\n",
    )
    .unwrap_err();
    assert!(!err.to_string().contains("SECRETPATH"), "{err}");
    // The Debug form of the config shows no secret either.
    let cfg = parse(&format!(
        "[webhook]\n{base}body = '{{\"t\":\"{{message}}\"}}'\nheaders = {{ Authorization = \"Bearer SECRETHEADER\" }}\n"
    ))
    .expect("config");
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("SECRETHEADER") && !debug.contains("SECRETPATH"),
        "{debug}"
    );
}
