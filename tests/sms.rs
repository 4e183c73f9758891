//! The SMS gateway against loopback stand-ins for playSMS, websms and
//! Twilio: the exact request each documents, success, each failure they
//! answer (playSMS's `ERR nnn`, websms's status codes, Twilio's error
//! codes), timeouts, and no secret or full phone number in any error.

use pgw_test_support::fake_http;

use std::path::Path;
use std::time::{Duration, Instant};

use fake_http::{Answer, FakeHttp, Reply, Request};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::sms::{SmsConfig, SmsError, SmsGateway};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use serde_json::json;

const BOB: &str = "+4915112345678";
// Characters that change under percent-encoding, to check both forms.
const PLAYSMS_TOKEN: &str = "tok+en/Secret=42abc";
const WEBSMS_TOKEN: &str = "websms-token-Vb7Qz2";
const WEBSMS_PASSWORD: &str = "websms-pass-Kd93Lw";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-token-Pq45Rt0123456789ab";
const TWILIO_FROM: &str = "+15005550006";
const SECRETS: &[&str] = &[
    PLAYSMS_TOKEN,
    "tok%2Ben%2FSecret%3D42abc",
    WEBSMS_TOKEN,
    WEBSMS_PASSWORD,
    TWILIO_TOKEN,
];

fn config(section: &str) -> SmsConfig {
    Config::parse(Path::new("/t/gateway.toml"), &format!("[sms]\n{section}"))
        .expect("config")
        .section::<SmsConfig>()
        .cloned()
        .expect("sms")
}

fn gateway(section: &str) -> SmsGateway {
    SmsGateway::new(&config(&format!(
        "{section}timeout = 1\nconnect_timeout = 1\n"
    )))
}

fn playsms(fake: &FakeHttp) -> SmsGateway {
    gateway(&format!(
        "provider = \"playsms\"\nurl = \"{}/index.php\"\nusername = \"pam\"\ntoken = \"{PLAYSMS_TOKEN}\"\n",
        fake.url()
    ))
}

fn websms_token(fake: &FakeHttp) -> SmsGateway {
    gateway(&format!(
        "provider = \"websms\"\nurl = \"{}\"\ntoken = \"{WEBSMS_TOKEN}\"\n",
        fake.url()
    ))
}

fn twilio(fake: &FakeHttp) -> SmsGateway {
    gateway(&format!(
        "provider = \"twilio\"\nurl = \"{}\"\naccount_sid = \"{TWILIO_SID}\"\n\
         auth_token = \"{TWILIO_TOKEN}\"\nfrom = \"{TWILIO_FROM}\"\n",
        fake.url()
    ))
}

fn assert_clean(err: &SmsError) {
    let delivery = DeliveryError::from(err.clone());
    for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
        for s in SECRETS {
            assert!(!text.contains(s), "secret leaked: {text}");
        }
        assert!(!text.contains("15112345678"), "full number leaked: {text}");
    }
}

/// playSMS webservices as documented: JSON by default.
fn playsms_server(req: &Request) -> Answer {
    if req.method != "GET"
        || req.path != "/index.php"
        || req.query_value("app").as_deref() != Some("ws")
    {
        return Reply::text(404, "Not Found").into();
    }
    if req.query_value("u").as_deref() != Some("pam")
        || req.query_value("h").as_deref() != Some(PLAYSMS_TOKEN)
    {
        return Reply::json(
            200,
            json!({"status": "ERR", "error": "100",
                                       "error_string": "authentication failed"}),
        )
        .into();
    }
    let to = req.query_value("to").unwrap_or_default();
    Reply::json(
        200,
        json!({"data": [{"status": "OK", "error": "0", "smslog_id": "30",
                         "queue": "afb5f34575e30ec4efe4471cf5d1bee4", "to": to}],
               "error_string": null}),
    )
    .into()
}

#[test]
fn playsms_sends_the_documented_request() {
    let fake = FakeHttp::start(playsms_server);
    let gw = playsms(&fake);
    assert_eq!((gw.id(), gw.display_name()), ("sms", "SMS"));
    gw.send(BOB, "123456 is your code & more")
        .expect("delivered");
    let r = &fake.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/index.php"));
    let q: Vec<(&str, &str)> = r
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        q,
        [
            ("app", "ws"),
            ("u", "pam"),
            ("h", PLAYSMS_TOKEN),
            ("op", "pv"),
            ("to", BOB),
            ("msg", "123456 is your code & more")
        ]
    );
    // A non-ASCII message is flagged as unicode.
    gw.send(BOB, "123456 — Grüße").expect("delivered");
    assert_eq!(
        fake.requests()[1].query_value("unicode").as_deref(),
        Some("1")
    );
    assert_eq!(
        fake.requests()[1].query_value("msg").as_deref(),
        Some("123456 — Grüße")
    );
}

#[test]
fn playsms_err_answers() {
    let fake = FakeHttp::start(playsms_server);
    let gw = playsms(&fake);
    let cases: Vec<(Reply, &str, &str)> = vec![
        (
            Reply::json(
                200,
                json!({"status": "ERR", "error": "100", "error_string": "authentication failed"}),
            ),
            "misconfigured",
            "ERR 100",
        ),
        (
            Reply::text(200, "ERR 103"),
            "misconfigured",
            "not enough credit",
        ),
        (Reply::text(200, "ERR 106\n"), "misconfigured", "IP address"),
        (
            Reply::json(
                200,
                json!({"data": [{"status": "ERR", "error": "200", "to": BOB}]}),
            ),
            "rejected",
            "send message failed",
        ),
        (
            Reply::text(200, "ERR 201"),
            "rejected",
            "destination number or message is empty",
        ),
        (Reply::text(200, "ERR 999"), "rejected", "ERR 999"),
        (
            Reply::text(200, "ERR 102"),
            "misconfigured",
            "one or more field empty",
        ),
        (
            Reply::text(200, "<html>maintenance</html>"),
            "unreachable",
            "neither JSON",
        ),
        (
            Reply::json(200, json!({"data": []})),
            "unreachable",
            "JSON without",
        ),
        (Reply::text(404, "Not Found"), "misconfigured", "index.php"),
        (Reply::text(503, "down"), "unreachable", "HTTP 503"),
        // A server that echoes the request line, token and all.
        (
            Reply::text(
                200,
                "ERR 100 for /index.php?app=ws&u=pam&h=tok%2Ben%2FSecret%3D42abc&to=%2B4915112345678",
            ),
            "misconfigured",
            "ERR 100",
        ),
        (
            Reply::json(
                200,
                json!({"status": "ERR", "error": "200",
                                    "error_string": format!("failed for {BOB} with h={PLAYSMS_TOKEN}")}),
            ),
            "rejected",
            "ERR 200",
        ),
    ];
    for (reply, class, needle) in cases {
        fake.push(reply);
        let err = gw.send_sms(BOB, "x").unwrap_err();
        assert_eq!(DeliveryError::from(err.clone()).class(), class, "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
        assert_clean(&err);
    }
    // Plain OK from older versions.
    fake.push(Reply::text(200, "OK 30"));
    gw.send_sms(BOB, "x").expect("OK");
    // A wrong token, answered as playSMS does.
    let wrong = gateway(&format!(
        "provider = \"playsms\"\nurl = \"{}/index.php\"\nusername = \"pam\"\ntoken = \"other\"\n",
        fake.url()
    ));
    let err = wrong.send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Misconfigured(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("misconfigured: playSMS: credentials refused"),
        "{err}"
    );
}

#[test]
fn refused_and_failed_services_by_class() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let closed = format!("http://127.0.0.1:{port}");
    let fake = FakeHttp::start(|_| Reply::text(503, "<html>down</html>").into());
    for name in ["playsms", "websms", "twilio"] {
        let at = |url: &str| match name {
            "playsms" => gateway(&format!(
                "provider = \"playsms\"\nurl = \"{url}/index.php\"\nusername = \"pam\"\n\
                 token = \"{PLAYSMS_TOKEN}\"\n"
            )),
            "websms" => gateway(&format!(
                "provider = \"websms\"\nurl = \"{url}\"\ntoken = \"{WEBSMS_TOKEN}\"\n"
            )),
            _ => gateway(&format!(
                "provider = \"twilio\"\nurl = \"{url}\"\naccount_sid = \"{TWILIO_SID}\"\n\
                 auth_token = \"{TWILIO_TOKEN}\"\nfrom = \"{TWILIO_FROM}\"\n"
            )),
        };
        let err = at(&closed).send(BOB, "x").unwrap_err();
        assert!(matches!(err, DeliveryError::Refused(_)), "{name}: {err:?}");
        let err = at(&fake.url()).send(BOB, "x").unwrap_err();
        assert!(
            matches!(err, DeliveryError::ServiceFailed(_)),
            "{name}: {err:?}"
        );
        for s in SECRETS {
            assert!(!format!("{err:?}").contains(s), "{name}: {err:?}");
        }
    }
}

#[test]
fn an_error_quoting_the_request_has_neither_code_nor_message() {
    let message = "493817 is your login code for alice@host.\nIf this was not you, act.";
    let fake = FakeHttp::start(|req| {
        let echo = format!("{} {}", req.target, req.body_text());
        if req.path == "/index.php" {
            Reply::json(
                200,
                json!({"status": "ERR", "error": "609", "error_string": echo}),
            )
        } else if req.path.ends_with("/Messages.json") {
            Reply::json(400, json!({"code": 21211, "message": echo, "status": 400}))
        } else {
            Reply::json(400, json!({"statusCode": 4000, "statusMessage": echo}))
        }
        .into()
    });
    for gw in [playsms(&fake), websms_token(&fake), twilio(&fake)] {
        let err = gw.send_sms(BOB, message).unwrap_err();
        let delivery = gw.send(BOB, message).unwrap_err();
        for text in [err.to_string(), format!("{err:?}"), delivery.to_string()] {
            assert!(!text.contains("493817"), "code in {text}");
            assert!(!text.contains("If this was not you"), "message in {text}");
            assert!(!text.contains("was%20not"), "message in {text}");
        }
        assert_clean(&err);
    }
}

#[test]
fn playsms_timeout_is_unreachable_in_time() {
    let fake = FakeHttp::start(|_| Answer::Hang);
    let start = Instant::now();
    let err = playsms(&fake).send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    for s in SECRETS {
        assert!(!err.to_string().contains(s), "{err}");
    }
}

/// websms REST as documented.
fn websms_server(req: &Request) -> Answer {
    if req.method != "POST" || req.path != "/rest/smsmessaging/text" {
        return Reply::text(404, "").into();
    }
    let authorized = req.bearer() == Some(WEBSMS_TOKEN)
        || req.basic_auth() == Some(("pam".into(), WEBSMS_PASSWORD.into()));
    if !authorized {
        return Reply::json(
            200,
            json!({"statusCode": 4001, "statusMessage": "Invalid credentials"}),
        )
        .into();
    }
    Reply::json(
        200,
        json!({"statusCode": 2000, "statusMessage": "OK", "transferId": "005f0d1e8e1b0000000c",
               "clientMessageId": null, "smsCount": 2}),
    )
    .into()
}

#[test]
fn websms_sends_the_documented_request() {
    let fake = FakeHttp::start(websms_server);
    websms_token(&fake)
        .send(BOB, "123456 is your code")
        .expect("delivered");
    let r = &fake.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/rest/smsmessaging/text")
    );
    assert_eq!(r.bearer(), Some(WEBSMS_TOKEN));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(
        r.json(),
        json!({"messageContent": "123456 is your code",
               "recipientAddressList": [4915112345678u64], "maxSmsPerMessage": 3})
    );
    // Basic auth and another part limit.
    let gw = gateway(&format!(
        "provider = \"websms\"\nurl = \"{}\"\nusername = \"pam\"\npassword = \"{WEBSMS_PASSWORD}\"\n\
         max_parts = 2\n",
        fake.url()
    ));
    gw.send(BOB, "x").expect("delivered");
    let r = &fake.requests()[1];
    assert_eq!(r.basic_auth(), Some(("pam".into(), WEBSMS_PASSWORD.into())));
    assert_eq!(r.json()["maxSmsPerMessage"], 2);
}

#[test]
fn websms_status_codes() {
    let fake = FakeHttp::start(websms_server);
    let gw = websms_token(&fake);
    let status =
        |code: u32, msg: &str| Reply::json(200, json!({"statusCode": code, "statusMessage": msg}));
    let cases: Vec<(Reply, Option<&str>)> = vec![
        (status(2001, "OK_QUEUED"), None),
        (status(4001, "Invalid credentials"), Some("misconfigured")),
        (status(4014, "Unauthorized IP"), Some("misconfigured")),
        (
            status(4002, &format!("Invalid recipient {}", &BOB[1..])),
            Some("rejected"),
        ),
        (status(4003, "Invalid sender"), Some("misconfigured")),
        (
            status(4013, "Message limit exceeded"),
            Some("misconfigured"),
        ),
        (status(4023, "Throttling"), Some("rejected")),
        (
            status(4026, "Max sms per message exceeded"),
            Some("misconfigured"),
        ),
        (status(5003, "Service unavailable"), Some("unreachable")),
        (status(2002, "OK_TEST"), Some("rejected")),
        (
            Reply::json(401, json!({"error": "unauthorized"})),
            Some("misconfigured"),
        ),
        (Reply::text(502, "bad gateway"), Some("unreachable")),
        (Reply::text(200, "<html>"), Some("unreachable")),
        (
            Reply::text(429, "").with_header("Retry-After", "12"),
            Some("rejected"),
        ),
        (
            status(4001, &format!("Invalid token {WEBSMS_TOKEN}")),
            Some("misconfigured"),
        ),
    ];
    for (reply, class) in cases {
        fake.push(reply);
        match (gw.send_sms(BOB, "x"), class) {
            (Ok(()), None) => {}
            (Err(e), Some(class)) => {
                assert_eq!(DeliveryError::from(e.clone()).class(), class, "{e}");
                assert_clean(&e);
            }
            (r, c) => panic!("{r:?} but expected {c:?}"),
        }
    }
    fake.push(Reply::text(429, "").with_header("Retry-After", "12"));
    assert_eq!(
        gw.send_sms(BOB, "x").unwrap_err(),
        SmsError::RateLimited {
            retry_after: Some(12)
        }
    );
    fake.push(status(4026, "too long"));
    assert!(
        gw.send_sms(BOB, "x")
            .unwrap_err()
            .to_string()
            .contains("max_parts")
    );
}

/// Twilio's Messages resource as documented.
fn twilio_server(req: &Request) -> Answer {
    let path = format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
    if req.basic_auth() != Some((TWILIO_SID.into(), TWILIO_TOKEN.into())) {
        return Reply::json(
            401,
            json!({"code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
        )
        .into();
    }
    if req.method != "POST" || req.path != path {
        return Reply::json(
            404,
            json!({"code": 20404, "message": "The requested resource was not found",
            "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}),
        )
        .into();
    }
    if req.form_value("To").as_deref() != Some(BOB) {
        return Reply::json(
            400,
            json!({"code": 21211,
            "message": format!("The 'To' number {} is not a valid phone number.",
                               req.form_value("To").unwrap_or_default()),
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
        )
        .into();
    }
    Reply::json(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued",
        "to": BOB, "from": TWILIO_FROM, "body": req.form_value("Body")}),
    )
    .into()
}

#[test]
fn twilio_sends_the_documented_request() {
    let fake = FakeHttp::start(twilio_server);
    twilio(&fake)
        .send(BOB, "123456 is your code & more")
        .expect("delivered");
    let r = &fake.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        r.basic_auth(),
        Some((TWILIO_SID.into(), TWILIO_TOKEN.into()))
    );
    let form: Vec<(String, String)> = r.form();
    assert_eq!(
        form,
        [
            ("To".to_string(), BOB.to_string()),
            ("From".to_string(), TWILIO_FROM.to_string()),
            ("Body".to_string(), "123456 is your code & more".to_string()),
        ]
    );
    // A Messaging Service instead of a number.
    let gw = gateway(&format!(
        "provider = \"twilio\"\nurl = \"{}\"\naccount_sid = \"{TWILIO_SID}\"\n\
         auth_token = \"{TWILIO_TOKEN}\"\nfrom = \"MG0123456789abcdef0123456789abcdef\"\n",
        fake.url()
    ));
    gw.send(BOB, "x").expect("delivered");
    assert_eq!(
        fake.requests()[1]
            .form_value("MessagingServiceSid")
            .as_deref(),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert!(fake.requests()[1].form_value("From").is_none());
}

#[test]
fn twilio_errors() {
    let fake = FakeHttp::start(twilio_server);
    let gw = twilio(&fake);
    let err = gw.send_sms("+4915199999999", "x").unwrap_err();
    assert!(matches!(err, SmsError::BadRecipient(_)), "{err}");
    assert!(err.to_string().contains("21211"), "{err}");
    assert!(!err.to_string().contains("15199999999"), "{err}");
    let twilio_error = |status: u16, code: u32, msg: &str| {
        Reply::json(
            status,
            json!({"code": code, "message": msg,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
        )
    };
    let cases: Vec<(Reply, &str)> = vec![
        (twilio_error(401, 20003, "Authenticate"), "misconfigured"),
        (
            twilio_error(404, 20404, "The requested resource was not found"),
            "misconfigured",
        ),
        (
            twilio_error(
                400,
                21606,
                "The 'From' phone number provided is not a valid message-capable Twilio phone number",
            ),
            "misconfigured",
        ),
        (
            twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"),
            "rejected",
        ),
        (
            twilio_error(
                400,
                21608,
                "The number is unverified. Trial accounts cannot send messages to unverified numbers",
            ),
            "rejected",
        ),
        (twilio_error(429, 20429, "Too Many Requests"), "rejected"),
        (
            twilio_error(500, 20500, "Internal Server Error"),
            "unreachable",
        ),
        (Reply::text(503, "unavailable"), "unreachable"),
        (Reply::json(201, json!({"status": "queued"})), "unreachable"),
        (
            Reply::json(201, json!({"sid": "SMx", "status": "failed"})),
            "rejected",
        ),
        (
            twilio_error(401, 20003, &format!("Authenticate {TWILIO_TOKEN}")),
            "misconfigured",
        ),
    ];
    for (reply, class) in cases {
        fake.push(reply);
        let err = gw.send_sms(BOB, "x").unwrap_err();
        assert_eq!(DeliveryError::from(err.clone()).class(), class, "{err}");
        assert_clean(&err);
    }
    // Wrong credentials against the fake's own check.
    let wrong = gateway(&format!(
        "provider = \"twilio\"\nurl = \"{}\"\naccount_sid = \"{TWILIO_SID}\"\n\
         auth_token = \"nope\"\nfrom = \"{TWILIO_FROM}\"\n",
        fake.url()
    ));
    assert!(matches!(
        wrong.send_sms(BOB, "x").unwrap_err(),
        SmsError::Unauthorized(_)
    ));
}

#[test]
fn twilio_timeout() {
    let fake = FakeHttp::start(|_| Answer::Hang);
    let start = Instant::now();
    let err = twilio(&fake).send(BOB, "x").unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn section_checks() {
    let parse =
        |text: &str| Config::parse(Path::new("/t/gateway.toml"), &format!("[sms]\n{text}\n"));
    let ok = [
        "provider = \"playsms\"\nurl = \"https://sms.example.org/index.php\"\nusername = \"u\"\ntoken = \"t\""
            .to_string(),
        "provider = \"websms\"\ntoken = \"t\"".to_string(),
        format!(
            "provider = \"twilio\"\naccount_sid = \"{TWILIO_SID}\"\nauth_token = \"t\"\nfrom = \"ACME\""
        ),
    ];
    for text in &ok {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    let c = parse(&ok[1])
        .expect("websms")
        .section::<SmsConfig>()
        .cloned()
        .expect("sms");
    assert!(format!("{c:?}").contains("api.websms.com"), "default URL");
    let c = parse(&ok[2])
        .expect("twilio")
        .section::<SmsConfig>()
        .cloned()
        .expect("sms");
    assert!(format!("{c:?}").contains("api.twilio.com"), "default URL");
    assert!(
        !format!("{c:?}").contains("auth_token: \"t\""),
        "secret in Debug"
    );

    for (text, key, hint) in [
        (
            "provider = \"nexmo\"",
            "sms.provider",
            "playsms, websms, twilio",
        ),
        (
            "provider = \"playsms\"\nusername = \"u\"\ntoken = \"t\"",
            "sms.url",
            "index.php",
        ),
        (
            "provider = \"playsms\"\nurl = \"https://s.example.org/index.php\"\ntoken = \"t\"",
            "sms.username",
            "required",
        ),
        (
            "provider = \"playsms\"\nurl = \"https://s.example.org/index.php\"\nusername = \"u\"\ntoken = \"t\"\nauth_token = \"x\"",
            "sms.auth_token",
            "twilio",
        ),
        (
            "provider = \"playsms\"\nurl = \"http://s.example.org/index.php\"\nusername = \"u\"\ntoken = \"t\"",
            "sms.url",
            "https",
        ),
        (
            "provider = \"playsms\"\nurl = \"https://s.example.org/index.php?app=ws\"\nusername = \"u\"\ntoken = \"t\"",
            "sms.url",
            "query",
        ),
        ("provider = \"websms\"", "sms.provider", "token"),
        (
            "provider = \"websms\"\ntoken = \"t\"\nusername = \"u\"\npassword = \"p\"",
            "sms.token",
            "not both",
        ),
        (
            "provider = \"websms\"\nusername = \"u\"",
            "sms.username",
            "password",
        ),
        (
            "provider = \"websms\"\ntoken = \"t\"\nmax_parts = 0",
            "sms.max_parts",
            "range",
        ),
        (
            "provider = \"websms\"\ntoken = \"t\"\nfrom = \"x\"",
            "sms.from",
            "playsms, twilio",
        ),
        (
            "provider = \"twilio\"\naccount_sid = \"AC12\"\nauth_token = \"t\"\nfrom = \"+15005550006\"",
            "sms.account_sid",
            "32 hex",
        ),
        (
            "provider = \"twilio\"\nauth_token = \"t\"\nfrom = \"+15005550006\"",
            "sms.account_sid",
            "required",
        ),
        (
            "provider = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\nfrom = \"15005550006\"",
            "sms.from",
            "E.164",
        ),
        (
            "provider = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"",
            "sms.from",
            "required",
        ),
        (
            "provider = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\nfrom = \"+15005550006\"\nsender = \"x\"",
            "sender",
            "unknown field",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            err.key.as_deref().is_some_and(|k| k.ends_with(key)),
            "{text}: {err}"
        );
        assert!(err.line.is_some(), "{text}: {err}");
        assert!(err.message.contains(hint), "{hint:?} not in {err}");
    }
    // A secret with a type error is never quoted.
    for key in ["token", "password", "auth_token"] {
        let err = parse(&format!(
            "provider = \"websms\"\n{key} = [\"{WEBSMS_TOKEN}\"]"
        ))
        .unwrap_err();
        assert!(!err.to_string().contains(WEBSMS_TOKEN), "{err}");
    }
    let err = parse(&format!("provider = \"playsms\"\nurl = \"https://s.example.org/i.php\"\nusername = \"u\"\ntoken = \"a {PLAYSMS_TOKEN}\"")).unwrap_err();
    assert!(!err.to_string().contains(PLAYSMS_TOKEN), "{err}");
}

// The harmless checks `pam-gateway configure sms` and `status` make.

#[test]
fn checks_send_nothing_and_read_the_answers() {
    // playSMS: the credit query with the user's token, JSON or plain text.
    let fake = FakeHttp::start(|req: &Request| {
        assert_eq!(req.query_value("op").as_deref(), Some("cr"), "only op=cr");
        Reply::json(200, json!({"status": "OK", "error": "0", "credit": "42.5"})).into()
    });
    let found = playsms(&fake).check().expect("check");
    assert_eq!(
        found.as_deref(),
        Some("playSMS accepts the user and token (credit 42.5)")
    );
    let req = fake
        .wait_for_request(Duration::from_secs(5))
        .expect("request");
    assert_eq!(req.query_value("h").as_deref(), Some(PLAYSMS_TOKEN));
    assert_eq!(req.query_value("u").as_deref(), Some("pam"));
    fake.push(Reply::text(200, "OK 12"));
    assert_eq!(
        playsms(&fake).check().expect("plain").as_deref(),
        Some("playSMS accepts the user and token (credit 12)")
    );
    for (answer, expected) in [
        (Reply::text(200, "ERR 100"), "credentials refused"),
        (
            Reply::json(200, json!({"status": "ERR", "error": "106"})),
            "not allowed from this IP",
        ),
        (Reply::text(404, "no"), "no playSMS webservices at this URL"),
        (Reply::text(200, "<html>login</html>"), "neither OK nor ERR"),
    ] {
        fake.push(answer);
        let err = playsms(&fake).check().unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert_clean(&err);
    }

    // Twilio: the account lookup; only an active account passes.
    let fake = FakeHttp::start(|req: &Request| {
        assert_eq!(req.method, "GET", "nothing is posted");
        Reply::json(
            200,
            json!({"sid": TWILIO_SID, "status": "active", "type": "Trial"}),
        )
        .into()
    });
    assert_eq!(
        twilio(&fake).check().expect("check").as_deref(),
        Some("Twilio accepts the account SID and auth token (account active, Trial)")
    );
    let req = fake
        .wait_for_request(Duration::from_secs(5))
        .expect("request");
    assert_eq!(req.path, format!("/2010-04-01/Accounts/{TWILIO_SID}.json"));
    assert_eq!(
        req.basic_auth(),
        Some((TWILIO_SID.to_string(), TWILIO_TOKEN.to_string()))
    );
    for (answer, expected) in [
        (
            Reply::json(200, json!({"sid": TWILIO_SID, "status": "suspended"})),
            "the Twilio account is suspended, not active",
        ),
        (
            Reply::json(401, json!({"code": 20003, "message": "Authenticate"})),
            "check [sms] account_sid and auth_token",
        ),
        (
            Reply::json(404, json!({"code": 20404, "message": "not found"})),
            "no such account",
        ),
        (Reply::text(200, "not json"), "not JSON"),
        (Reply::text(503, ""), "server error"),
    ] {
        fake.push(answer);
        let err = twilio(&fake).check().unwrap_err();
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert_clean(&err);
    }

    // websms has no request that sends nothing: none is made.
    let fake = FakeHttp::start(|_: &Request| Reply::text(500, "").into());
    assert_eq!(websms_token(&fake).check().expect("check"), None);
    assert!(fake.requests().is_empty());
}
