//! The `pam-gateway` CLI for the gateways other than Telegram, run as a
//! program against loopback fakes of signal-cli-rest-api, signal-cli's
//! JSON-RPC daemon, playSMS, websms, Twilio and ntfy, and a real local
//! program: `configure signal|sms|webhook|command` (checks, the `gateways`
//! list, comments kept, secrets never shown), `enroll --signal|--sms|
//! --webhook|--command` (the code the fake received; wrong codes write
//! nothing), `status` per gateway, and `test USER` per gateway.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_http;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;
use pgw_test_support::pty;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use cli_harness::*;
use fake_http::{FakeHttp, Reply, Request};
use fake_telegram::{FakeOptions, FakeTelegram};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::gateway::command::CommandConfig;
use pam_gateway_core::gateway::signal::SignalConfig;
use pam_gateway_core::gateway::sms::SmsConfig;
use pam_gateway_core::gateway::webhook::WebhookConfig;
use pam_gateway_core::users::Users;
use pam_harness::{CHAT, SECRET_HALF, TOKEN, write_file};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
/// The Signal account that sends.
const ACCOUNT: &str = "+4915100000001";
/// A number every fake delivers to.
const PHONE: &str = "+4915112345678";
/// A number every fake refuses.
const UNKNOWN: &str = "+4915199999999";
const PROXY_PASSWORD: &str = "proxy-pass-Xq81Zr7Lw";
const PLAYSMS_TOKEN: &str = "playsms-token-Zr81Qx4Mn";
const WEBSMS_TOKEN: &str = "websms-token-Vb7Qz2Hd9";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-token-Pq45Rt0123456789ab";
const NTFY_TOKEN: &str = "tk_ntfySecretToken1234567";
/// The secret part of the webhook URL.
const HOOK_PATH: &str = "hooks/secret-path-Kq7Zr9Wd";
const TOPIC: &str = "alice-logins-7f3k";
const BUSY_TOPIC: &str = "busy-topic-1";
const SECRETS: &[&str] = &[
    PROXY_PASSWORD,
    PLAYSMS_TOKEN,
    WEBSMS_TOKEN,
    TWILIO_TOKEN,
    NTFY_TOKEN,
    "secret-path-Kq7Zr9Wd",
    SECRET_HALF,
];

fn assert_no_secret(out: &Out) {
    for secret in SECRETS {
        assert!(
            !out.all().contains(secret),
            "secret {secret:?} shown\n{}",
            out.dump()
        );
    }
}

fn config_of(s: &Setup) -> Config {
    let text = fs::read_to_string(&s.config).expect("config");
    Config::parse(&s.config, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn users_of(s: &Setup) -> Users {
    let text = s.users_text().expect("users file");
    Users::parse(&s.users, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn recipient_of(s: &Setup, user: &str, kind: GatewayKind) -> Option<String> {
    users_of(s)
        .get(user)
        .and_then(|e| e.recipient(kind))
        .map(str::to_string)
}

/// A config dir whose gateway.toml is `body` (after `users_file`).
fn setup_with(body: &str) -> Setup {
    let s = Setup::empty();
    write_file(
        &s.config,
        &format!("users_file = \"{}\"\n{body}", s.users.display()),
        0o600,
    );
    s
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

fn telegram_fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions {
        chats: vec![CHAT],
        ..FakeOptions::default()
    })
    .expect("fake")
}

fn telegram_section(fake: &FakeTelegram) -> String {
    format!(
        "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 2\n",
        fake.url()
    )
}

// ------------------------------------------------------------- fakes ----

/// signal-cli-rest-api: `/v1/about`, `/v1/accounts` (one account), and
/// `/v2/send` (201, or 400 for an unregistered recipient); HTTP Basic
/// `pam` / `password` in front when given.
fn signal_rest(password: Option<&'static str>) -> FakeHttp {
    FakeHttp::start(move |req: &Request| {
        if let Some(p) = password
            && req.basic_auth() != Some(("pam".to_string(), p.to_string()))
        {
            return Reply::text(401, "401 Authorization Required").into();
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/about") => Reply::json(
                200,
                json!({"versions": ["v1", "v2"], "build": 2, "mode": "json-rpc",
                       "version": "0.92"}),
            )
            .into(),
            ("GET", "/v1/accounts") => Reply::json(200, json!([ACCOUNT])).into(),
            ("POST", "/v2/send") => {
                let body = req.json();
                let to = body["recipients"][0].as_str().unwrap_or("").to_string();
                if body["number"] != ACCOUNT {
                    Reply::json(400, json!({"error": "Invalid account (phone number)"})).into()
                } else if to != PHONE {
                    Reply::json(
                        400,
                        json!({"error": format!("Failed to send message: Unregistered user \"{to}\"")}),
                    )
                    .into()
                } else {
                    Reply::json(201, json!({"timestamp": "1700000000123"})).into()
                }
            }
            _ => Reply::text(404, "404 page not found").into(),
        }
    })
}

/// signal-cli `daemon --http` in multi-account mode.
fn signal_rpc() -> FakeHttp {
    FakeHttp::start(|req: &Request| {
        if req.path != "/api/v1/rpc" {
            return Reply::text(404, "").into();
        }
        let body = req.json();
        let id = body["id"].clone();
        let result = match body["method"].as_str() {
            Some("version") => json!({"version": "0.13.4"}),
            Some("listAccounts") => json!([{"number": ACCOUNT}]),
            Some("send") => json!({"timestamp": 1700000000123u64,
                                   "results": [{"type": "SUCCESS"}]}),
            _ => {
                return Reply::json(
                    200,
                    json!({"jsonrpc": "2.0", "id": id,
                           "error": {"code": -32601, "message": "Method not implemented"}}),
                )
                .into();
            }
        };
        Reply::json(200, json!({"jsonrpc": "2.0", "result": result, "id": id})).into()
    })
}

/// playSMS webservices at `/index.php`: user `pam` with [`PLAYSMS_TOKEN`];
/// `op=cr` (credit) and `op=pv` (send; `ERR 201`-style refusal for
/// [`UNKNOWN`]).
fn playsms() -> FakeHttp {
    FakeHttp::start(|req: &Request| {
        if req.path != "/index.php" {
            return Reply::text(404, "").into();
        }
        if req.query_value("u").as_deref() != Some("pam")
            || req.query_value("h").as_deref() != Some(PLAYSMS_TOKEN)
        {
            return Reply::json(
                200,
                json!({"status": "ERR", "error": "100", "error_string": "authentication failed"}),
            )
            .into();
        }
        match req.query_value("op").as_deref() {
            Some("cr") => {
                Reply::json(200, json!({"status": "OK", "error": "0", "credit": "42.5"})).into()
            }
            Some("pv") if req.query_value("to").as_deref() == Some(PHONE) => Reply::json(
                200,
                json!({"data": [{"status": "OK", "error": "0", "smslog_id": "7", "to": PHONE}]}),
            )
            .into(),
            Some("pv") => Reply::json(
                200,
                json!({"status": "ERR", "error": "200", "error_string": "send message failed"}),
            )
            .into(),
            _ => Reply::json(200, json!({"status": "ERR", "error": "101"})).into(),
        }
    })
}

/// Twilio: the account lookup and `Messages.json` for [`TWILIO_SID`].
fn twilio() -> FakeHttp {
    FakeHttp::start(|req: &Request| {
        if req.basic_auth() != Some((TWILIO_SID.to_string(), TWILIO_TOKEN.to_string())) {
            return Reply::json(
                401,
                json!({"code": 20003, "message": "Authenticate", "status": 401}),
            )
            .into();
        }
        let account = format!("/2010-04-01/Accounts/{TWILIO_SID}");
        if req.method == "GET" && req.path == format!("{account}.json") {
            return Reply::json(
                200,
                json!({"sid": TWILIO_SID, "status": "active", "type": "Full"}),
            )
            .into();
        }
        if req.method == "POST" && req.path == format!("{account}/Messages.json") {
            let to = req.form_value("To").unwrap_or_default();
            if to != PHONE {
                return Reply::json(
                    400,
                    json!({"code": 21211, "status": 400,
                           "message": format!("The 'To' number {to} is not a valid phone number.")}),
                )
                .into();
            }
            return Reply::json(201, json!({"sid": "SM0123", "status": "queued"})).into();
        }
        Reply::json(404, json!({"code": 20404, "message": "not found"})).into()
    })
}

/// websms REST with a Bearer token.
fn websms() -> FakeHttp {
    FakeHttp::start(|req: &Request| {
        if req.bearer() != Some(WEBSMS_TOKEN) {
            return Reply::json(200, json!({"statusCode": 4014, "statusMessage": "auth"})).into();
        }
        let to = req.json()["recipientAddressList"][0].as_u64().unwrap_or(0);
        if to.to_string() != PHONE[1..] {
            return Reply::json(
                200,
                json!({"statusCode": 4002, "statusMessage": "recipient"}),
            )
            .into();
        }
        Reply::json(200, json!({"statusCode": 2000, "statusMessage": "OK"})).into()
    })
}

/// ntfy publishing JSON at `/hooks/secret-path-…` with a Bearer token;
/// [`BUSY_TOPIC`] is rate limited.
fn ntfy() -> FakeHttp {
    FakeHttp::start(|req: &Request| {
        if req.path != format!("/{HOOK_PATH}") {
            return Reply::json(404, json!({"error": "not found"})).into();
        }
        if req.header("authorization") != Some(&format!("Bearer {NTFY_TOKEN}")) {
            return Reply::json(403, json!({"error": "forbidden"})).into();
        }
        if req.json()["topic"] == BUSY_TOPIC {
            return Reply::json(429, json!({"error": "limit reached"}))
                .with_header("Retry-After", "30")
                .into();
        }
        Reply::json(200, json!({"id": "x1", "event": "message"})).into()
    })
}

/// A root-owned delivery program: writes its arguments, the recipient (from
/// $PAM_GATEWAY_RECIPIENT) and the message next to itself; exit 67 (no such
/// user) for `nobody@…`.
fn delivery_script(s: &Setup) -> PathBuf {
    let bin = s.dir.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = bin.join("deliver");
    write_file(
        &script,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {dir}/args\n\
             printf '%s\\n' \"$PAM_GATEWAY_RECIPIENT\" > {dir}/recipient\ncat > {dir}/message\n\
             case \"$PAM_GATEWAY_RECIPIENT\" in nobody@*) \
             echo \"unknown user $PAM_GATEWAY_RECIPIENT\" >&2; exit 67;; esac\nexit 0\n",
            dir = bin.display()
        ),
        0o755,
    );
    script
}

fn command_section(script: &std::path::Path) -> String {
    format!(
        "[command]\nname = \"SMS\"\npath = \"{}\"\nargs = [\"sendsms\", \"TEXT\"]\n",
        script.display()
    )
}

/// The last request to `path` the fake received.
fn last_to(fake: &FakeHttp, path: &str) -> Request {
    fake.requests()
        .into_iter()
        .rev()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no request to {path}: {:?}", fake.requests()))
}

// ------------------------------------------------------------ configure ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_signal_checks_the_api_joins_the_gateway_list_and_keeps_the_file() {
    let tg = telegram_fake();
    let api = signal_rest(Some(PROXY_PASSWORD));
    let s = setup_with(&format!(
        "# our order\ngateways = [\"telegram\"] # telegram first\n\n{}\n# codes\n[code]\ndigits = 8\n",
        telegram_section(&tg)
    ));
    let out = s.run(
        &[
            "configure",
            "signal",
            "--url",
            &api.url(),
            "--number",
            ACCOUNT,
            "--username",
            "pam",
            "--timeout",
            "7",
        ],
        &format!("{PROXY_PASSWORD}\n"),
    );
    out.expect_code(0)
        .expect_in_stdout("signal-cli-rest-api 0.92 (json-rpc mode) answers at")
        .expect_in_stdout("has the account ***001")
        .expect_in_stdout("[signal] url, number, username, password, timeout")
        .expect_in_stdout("Added signal to `gateways`")
        .expect_in_stdout("tried in this order: telegram, signal")
        .expect_in_stdout("pam-gateway enroll USER --signal");
    assert_no_secret(&out);
    let text = fs::read_to_string(&s.config).expect("config");
    for kept in ["# our order", "# telegram first", "# codes", "digits = 8"] {
        assert!(text.contains(kept), "{kept:?} kept:\n{text}");
    }
    let c = config_of(&s);
    assert_eq!(c.gateways, [GatewayKind::Telegram, GatewayKind::Signal]);
    let signal = c.section::<SignalConfig>().cloned().expect("signal");
    assert_eq!(signal.url, api.url());
    assert_eq!(
        signal
            .basic_auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.expose())),
        Some(("pam", PROXY_PASSWORD))
    );
    assert_eq!(signal.http.timeout, Duration::from_secs(7));
    // The new section sits with the gateways, before [code].
    assert!(
        text.find("[signal]") < text.find("[code]"),
        "placement:\n{text}"
    );
    let meta = fs::metadata(&s.config).expect("meta");
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
    assert!(temp_files(&s.config).is_empty());
    // Checked with harmless requests only, with the proxy password.
    let paths: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/about", "/v1/accounts"]);
    assert_eq!(
        api.requests()[0].basic_auth(),
        Some(("pam".to_string(), PROXY_PASSWORD.to_string()))
    );

    // Again without --username and --timeout: the proxy credentials go,
    // the timeout stays, the list is not extended twice.
    let open_api = signal_rest(None);
    let out = s.run(
        &[
            "configure",
            "signal",
            "--url",
            &open_api.url(),
            "--number",
            ACCOUNT,
        ],
        "",
    );
    out.expect_code(0);
    assert!(!out.stdout.contains("Added signal"), "{}", out.dump());
    let text = fs::read_to_string(&s.config).expect("config");
    assert!(
        !text.contains("username") && !text.contains("password"),
        "{text}"
    );
    assert_eq!(text.matches("\"signal\"").count(), 1, "{text}");
    let signal = config_of(&s)
        .section::<SignalConfig>()
        .cloned()
        .expect("signal");
    assert_eq!(signal.http.timeout, Duration::from_secs(7));
    assert!(signal.basic_auth.is_none());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_signal_jsonrpc_without_a_gateway_list() {
    let tg = telegram_fake();
    let daemon = signal_rpc();
    let s = setup_with(&telegram_section(&tg));
    let out = s.run(
        &[
            "configure",
            "signal",
            "--mode",
            "jsonrpc",
            "--url",
            &daemon.url(),
            "--number",
            ACCOUNT,
        ],
        "",
    );
    out.expect_code(0)
        .expect_in_stdout("signal-cli 0.13.4 (JSON-RPC daemon) answers at")
        .expect_in_stdout("has the account ***001");
    assert!(!out.stdout.contains("Added"), "{}", out.dump());
    let text = fs::read_to_string(&s.config).expect("config");
    assert!(!text.contains("gateways"), "no list is added:\n{text}");
    let c = config_of(&s);
    assert_eq!(c.gateways, [GatewayKind::Telegram, GatewayKind::Signal]);
    let methods: Vec<String> = daemon
        .requests()
        .iter()
        .map(|r| r.json()["method"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(methods, ["version", "listAccounts"], "nothing sent");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_signal_refuses_what_cannot_work_and_changes_nothing() {
    let api = signal_rest(None);
    let s = setup_with("# only this\n");
    let before = fs::read_to_string(&s.config).expect("config");
    let url = api.url();
    // An account the API does not have.
    s.run(
        &["configure", "signal", "--url", &url, "--number", UNKNOWN],
        "",
    )
    .expect_code(4)
    .expect_in_stderr("***999 is not registered or linked")
    .expect_in_stderr("Nothing was changed");
    // Nobody listening.
    s.run(
        &[
            "configure",
            "signal",
            "--url",
            &closed_port_url(),
            "--number",
            ACCOUNT,
        ],
        "",
    )
    .expect_code(4)
    .expect_in_stderr("connection refused")
    .expect_in_stderr("Check that signal-cli-rest-api");
    // Something else at the URL.
    let other = FakeHttp::start(|_: &Request| Reply::text(404, "no").into());
    s.run(
        &[
            "configure",
            "signal",
            "--url",
            &other.url(),
            "--number",
            ACCOUNT,
        ],
        "",
    )
    .expect_code(4)
    .expect_in_stderr("no signal-cli-rest-api at this URL");
    // The proxy refuses the password.
    let guarded = signal_rest(Some(PROXY_PASSWORD));
    let out = s.run(
        &[
            "configure",
            "signal",
            "--url",
            &guarded.url(),
            "--number",
            ACCOUNT,
            "--username",
            "pam",
        ],
        "wrong-password-Qz81\n",
    );
    out.expect_code(4)
        .expect_in_stderr("credentials refused (401)");
    assert!(!out.all().contains("wrong-password-Qz81"), "{}", out.dump());
    // Usage errors, named by option, before anything is asked.
    s.run(&["configure", "signal", "--url", &url], "")
        .expect_code(2)
        .expect_in_stderr("--number is required");
    s.run(
        &[
            "configure",
            "signal",
            "--url",
            "http://signal.example.org",
            "--number",
            ACCOUNT,
        ],
        "",
    )
    .expect_code(2)
    .expect_in_stderr("--url: plain http is only allowed to a loopback host");
    s.run(
        &[
            "configure",
            "signal",
            "--url",
            &url,
            "--number",
            "4915100000001",
        ],
        "",
    )
    .expect_code(2)
    .expect_in_stderr("--number: is not a phone number");
    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);
    assert!(api.requests().iter().all(|r| r.method == "GET"));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_sms_for_each_provider() {
    let play = playsms();
    let tw = twilio();
    let web = websms();
    let s = setup_with("gateways = []\n");
    // playSMS: checked with the credit query, nothing sent.
    let out = s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "playsms",
            "--url",
            &format!("{}/index.php", play.url()),
            "--username",
            "pam",
            "--from",
            "PAM",
        ],
        &format!("{PLAYSMS_TOKEN}\n"),
    );
    out.expect_code(0)
        .expect_in_stdout("playSMS accepts the user and token (credit 42.5)")
        .expect_in_stdout("Added sms to `gateways`")
        .expect_in_stderr("playSMS webservices token of pam (from standard input)");
    assert_no_secret(&out);
    let ops: Vec<String> = play
        .requests()
        .iter()
        .map(|r| r.query_value("op").unwrap_or_default())
        .collect();
    assert_eq!(ops, ["cr"]);
    let c = config_of(&s);
    assert_eq!(c.gateways, [GatewayKind::Sms]);
    assert!(format!("{:?}", c.section::<SmsConfig>()).contains("PlaySms"));

    // Twilio over it: playSMS's keys go (another provider's key would make
    // the section invalid).
    let out = s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "twilio",
            "--url",
            &tw.url(),
            "--account-sid",
            TWILIO_SID,
            "--from",
            "+15005550006",
        ],
        &format!("{TWILIO_TOKEN}\n"),
    );
    out.expect_code(0)
        .expect_in_stdout("Twilio accepts the account SID and auth token (account active, Full)");
    assert_no_secret(&out);
    let text = fs::read_to_string(&s.config).expect("config");
    assert!(
        !text.contains("username") && !text.contains(PLAYSMS_TOKEN) && !text.contains("index.php"),
        "{text}"
    );
    assert!(format!("{:?}", config_of(&s).section::<SmsConfig>()).contains("Twilio"));
    assert!(
        tw.requests().iter().all(|r| r.method == "GET"),
        "nothing sent"
    );

    // A wrong auth token: refused, the file stays.
    let before = fs::read_to_string(&s.config).expect("config");
    let out = s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "twilio",
            "--url",
            &tw.url(),
            "--account-sid",
            TWILIO_SID,
            "--from",
            "+15005550006",
        ],
        "twilio-wrong-token-77\n",
    );
    out.expect_code(4)
        .expect_in_stderr("credentials refused")
        .expect_in_stderr("Nothing was changed");
    assert!(!out.all().contains("twilio-wrong-token-77"));
    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);

    // websms: no check that sends nothing, so none is made.
    let out = s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "websms",
            "--url",
            &web.url(),
            "--max-parts",
            "2",
        ],
        &format!("{WEBSMS_TOKEN}\n"),
    );
    out.expect_code(0)
        .expect_in_stdout("websms offers no check that sends nothing");
    assert_no_secret(&out);
    assert!(web.requests().is_empty());
    assert!(format!("{:?}", config_of(&s).section::<SmsConfig>()).contains("max_parts: 2"));

    // Options of another provider, and missing ones, before any secret.
    s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "playsms",
            "--url",
            &play.url(),
            "--username",
            "pam",
            "--account-sid",
            TWILIO_SID,
        ],
        "",
    )
    .expect_code(2)
    .expect_in_stderr("--account-sid is not a setting of --provider playsms");
    s.run(&["configure", "sms", "--provider", "twilio"], "")
        .expect_code(2)
        .expect_in_stderr("--provider twilio needs --account-sid");
    s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "twilio",
            "--url",
            &tw.url(),
            "--account-sid",
            "AC12",
            "--from",
            "+15005550006",
        ],
        "",
    )
    .expect_code(2)
    .expect_in_stderr("--account-sid: is not a Twilio Account SID");
    s.run(
        &[
            "configure",
            "sms",
            "--provider",
            "websms",
            "--url",
            &web.url(),
        ],
        "",
    )
    .expect_code(2)
    .expect_in_stderr("no answer for \"websms API token\"");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_webhook_from_a_recipe_and_by_hand() {
    let hook = ntfy();
    let tg = telegram_fake();
    let s = setup_with(&format!(
        "gateways = [\"telegram\"]\n{}",
        telegram_section(&tg)
    ));
    let url = format!("{}/{HOOK_PATH}", hook.url());
    let out = s.run(
        &["configure", "webhook", "--recipe", "ntfy"],
        &format!("{url}\n{NTFY_TOKEN}\n"),
    );
    out.expect_code(0)
        .expect_in_stderr("ntfy URL, like https://ntfy.example.org/")
        .expect_in_stderr("ntfy access token for the Authorization header")
        .expect_in_stdout(&format!(
            "webhook (ntfy): settings valid, posts to {} (rest of the URL not shown)",
            hook.url()
        ))
        .expect_in_stdout("tried in this order: telegram, webhook");
    assert_no_secret(&out);
    assert!(hook.requests().is_empty(), "nothing sent");
    let c = config_of(&s);
    let w = c.section::<WebhookConfig>().cloned().expect("webhook");
    assert_eq!(w.name, "ntfy");
    assert_eq!(w.url.expose(), url);
    assert!(w.body.contains("\"topic\":\"{recipient}\""), "{}", w.body);
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    let bearer = format!("Bearer {NTFY_TOKEN}");
    assert_eq!(headers, [("Authorization", bearer.as_str())]);

    // By hand: body and a header of our own; a recipe header left empty
    // is left out.
    let out = s.run(
        &[
            "configure",
            "webhook",
            "--name",
            "Alerts",
            "--method",
            "put",
            "--body",
            "{\"text\":\"{message}\",\"to\":\"{recipient}\"}",
            "--header",
            "X-Api-Key",
        ],
        &format!("{url}\nkey-value-Zq81\n"),
    );
    out.expect_code(0).expect_in_stdout("webhook (Alerts):");
    assert!(!out.all().contains("key-value-Zq81"), "{}", out.dump());
    let w = config_of(&s)
        .section::<WebhookConfig>()
        .cloned()
        .expect("webhook");
    assert_eq!(w.name, "Alerts");
    assert_eq!(w.headers.len(), 1);
    assert_eq!(w.headers[0].0, "X-Api-Key");
    assert!(
        !fs::read_to_string(&s.config)
            .expect("config")
            .contains("Authorization")
    );
    let out = s.run(
        &["configure", "webhook", "--recipe", "ntfy"],
        &format!("{url}\n\n"),
    );
    out.expect_code(0);
    assert!(
        config_of(&s)
            .section::<WebhookConfig>()
            .cloned()
            .expect("webhook")
            .headers
            .is_empty()
    );

    // The body is checked before the URL is asked for; a header given
    // with --header needs a value.
    let before = fs::read_to_string(&s.config).expect("config");
    s.run(&["configure", "webhook", "--body", "{\"text\":\"hi\"}"], "")
        .expect_code(2)
        .expect_in_stderr("--body: must contain {message}");
    s.run(&["configure", "webhook"], "")
        .expect_code(2)
        .expect_in_stderr("--body TEMPLATE is required without --recipe");
    s.run(
        &[
            "configure",
            "webhook",
            "--recipe",
            "slack",
            "--header",
            "X-A",
        ],
        &format!("{url}\n\n"),
    )
    .expect_code(2)
    .expect_in_stderr("empty answer for \"Value of the X-A header\"");
    let out = s.run(
        &["configure", "webhook", "--recipe", "slack"],
        "http://hooks.example.org/secret-path-Kq7Zr9Wd\n",
    );
    out.expect_code(2)
        .expect_in_stderr("the webhook URL: plain http is only allowed");
    assert_no_secret(&out);
    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);
}

/// On a terminal, the URL and the token are typed without echo: neither
/// is ever on the screen.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_on_a_terminal_reads_secrets_without_echo() {
    let hook = ntfy();
    let s = setup_with("");
    let url = format!("{}/{HOOK_PATH}", hook.url());
    let cmd = s.command(&["configure", "webhook", "--recipe", "ntfy"]);
    let mut term = pty::PtyChild::spawn(cmd);
    term.expect(
        "ntfy URL, like https://ntfy.example.org/ (input hidden): ",
        WAIT,
    );
    term.wait_for_echo_off(WAIT);
    term.send_line(&url);
    term.expect(
        "ntfy access token for the Authorization header (input hidden; empty: none): ",
        WAIT,
    );
    term.wait_for_echo_off(WAIT);
    term.send_line(NTFY_TOKEN);
    term.expect("Next: pam-gateway enroll USER --webhook", WAIT);
    assert!(term.wait(WAIT).success(), "{}", term.transcript());
    let screen = term.transcript();
    for secret in SECRETS {
        assert!(
            !screen.contains(secret),
            "{secret:?} on the screen:\n{screen}"
        );
    }
    let w = config_of(&s)
        .section::<WebhookConfig>()
        .cloned()
        .expect("webhook");
    assert_eq!(w.url.expose(), url);
    assert_eq!(w.headers[0].1.expose(), format!("Bearer {NTFY_TOKEN}"));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_command_checks_the_program_like_a_login() {
    let s = setup_with("");
    let script = delivery_script(&s);
    let out = s.run(
        &[
            "configure",
            "command",
            "--name",
            "SMS",
            "--path",
            &script.display().to_string(),
            "--arg",
            "sendsms",
            "--arg",
            "-t",
            "--timeout",
            "30",
        ],
        "",
    );
    out.expect_code(0)
        .expect_in_stdout("passes the checks a login makes")
        .expect_in_stdout("[command] name, path, args, timeout");
    let c = config_of(&s)
        .section::<CommandConfig>()
        .cloned()
        .expect("command");
    assert_eq!(c.path, script);
    assert_eq!(c.args, ["sendsms", "-t"]);
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert!(
        !s.dir.path().join("bin/args").exists(),
        "the program is not run"
    );

    let before = fs::read_to_string(&s.config).expect("config");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o775)).expect("chmod");
    s.run(
        &[
            "configure",
            "command",
            "--program",
            &script.display().to_string(),
        ],
        "",
    )
    .expect_code(4)
    .expect_in_stderr("is writable by group or others (chmod go-w")
    .expect_in_stderr("Nothing was changed");
    s.run(&["configure", "command", "--path", "deliver"], "")
        .expect_code(2)
        .expect_in_stderr("--path: must be an absolute path");
    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn configure_refuses_to_touch_a_file_that_is_wrong_elsewhere() {
    let s = setup_with("[policy]\nfailmod = \"safe\"\n");
    let before = fs::read_to_string(&s.config).expect("config");
    let script = delivery_script(&s);
    s.run(
        &[
            "configure",
            "command",
            "--path",
            &script.display().to_string(),
        ],
        "",
    )
    .expect_code(3)
    .expect_in_stderr("failmod")
    .expect_in_stderr("Fix that first");
    assert_eq!(fs::read_to_string(&s.config).expect("config"), before);
}

// --------------------------------------------------------------- enroll ----

/// A config with every gateway but Telegram, each at its fake.
struct World {
    s: Setup,
    signal: FakeHttp,
    sms: FakeHttp,
    hook: FakeHttp,
    tg: FakeTelegram,
}

fn world() -> World {
    let signal = signal_rest(None);
    let sms = playsms();
    let hook = ntfy();
    let tg = telegram_fake();
    let s = Setup::empty();
    let script = delivery_script(&s);
    write_file(
        &s.config,
        &format!(
            "users_file = \"{}\"\ngateways = [\"telegram\", \"signal\", \"sms\", \"webhook\", \
             \"command\"]\n{}\n[signal]\nurl = \"{}\"\nnumber = \"{ACCOUNT}\"\ntimeout = 2\n\n\
             [sms]\nprovider = \"playsms\"\nurl = \"{}/index.php\"\nusername = \"pam\"\n\
             token = \"{PLAYSMS_TOKEN}\"\ntimeout = 2\n\n[webhook]\nname = \"ntfy\"\n\
             url = \"{}/{HOOK_PATH}\"\nheaders = {{ Authorization = \"Bearer {NTFY_TOKEN}\" }}\n\
             body = '{{\"topic\":\"{{recipient}}\",\"message\":\"{{message}}\"}}'\ntimeout = 2\n\n{}",
            s.users.display(),
            telegram_section(&tg),
            signal.url(),
            sms.url(),
            hook.url(),
            command_section(&script)
        ),
        0o600,
    );
    World {
        s,
        signal,
        sms,
        hook,
        tg,
    }
}

/// The code the gateway `kind` delivered last, from its fake.
fn delivered_code(w: &World, kind: GatewayKind) -> String {
    let text = match kind {
        GatewayKind::Signal => last_to(&w.signal, "/v2/send").json()["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        GatewayKind::Sms => last_to(&w.sms, "/index.php")
            .query_value("msg")
            .unwrap_or_default(),
        GatewayKind::Webhook => last_to(&w.hook, &format!("/{HOOK_PATH}")).json()["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        GatewayKind::Command => {
            fs::read_to_string(w.s.dir.path().join("bin/message")).unwrap_or_default()
        }
        GatewayKind::Telegram => {
            w.tg.sent()
                .last()
                .map(|m| m.text.clone())
                .unwrap_or_default()
        }
    };
    assert!(text.contains("enrolment code for"), "{kind:?}: {text}");
    fake_http::find_code(&text).unwrap_or_else(|| panic!("{kind:?}: no code in {text:?}"))
}

const OTHERS: [(GatewayKind, &str, &str); 4] = [
    (GatewayKind::Signal, "--signal", PHONE),
    (GatewayKind::Sms, "--sms", PHONE),
    (GatewayKind::Webhook, "--webhook", TOPIC),
    (GatewayKind::Command, "--command", "daemon@example.org"),
];

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_with_each_gateway_checks_the_code_and_keeps_the_other_keys() {
    let w = world();
    let before = format!("# team\n[users.daemon]\n# the phone\ntelegram = \"{CHAT}\"\n");
    w.s.write_users(&before);
    for (kind, flag, recipient) in OTHERS {
        let mut run = w.s.spawn(&["enroll", "daemon", flag, recipient]);
        run.wait_for("Type it here to confirm", WAIT);
        let code = delivered_code(&w, kind);
        assert_eq!(
            recipient_of(&w.s, "daemon", kind),
            None,
            "{flag}: nothing written before the code"
        );
        run.type_line(&code);
        let out = run.finish();
        out.expect_code(0)
            .expect_in_stdout("Code confirmed")
            .expect_in_stdout(&format!(
                "Enrolled daemon: login codes go via {}",
                match kind {
                    GatewayKind::Signal => "Signal",
                    GatewayKind::Sms | GatewayKind::Command => "SMS",
                    _ => "ntfy",
                }
            ))
            .expect_in_stdout(
                "daemon's gateways, in the order a login tries them: telegram ***977",
            );
        assert!(!out.all().contains(&code), "code echoed\n{}", out.dump());
        assert_no_secret(&out);
        assert_eq!(
            recipient_of(&w.s, "daemon", kind).as_deref(),
            Some(recipient),
            "{flag}"
        );
        assert_eq!(
            recipient_of(&w.s, "daemon", GatewayKind::Telegram),
            Some(CHAT.to_string()),
            "{flag}: telegram kept"
        );
    }
    let text = w.s.users_text().expect("users");
    assert!(
        text.starts_with("# team\n[users.daemon]\n# the phone\n"),
        "{text}"
    );
    let entry = users_of(&w.s);
    let entry = entry.get("daemon").expect("daemon");
    assert_eq!(entry.recipients().len(), 5, "{text}");
    // The command got the recipient in its environment, not its arguments.
    let args = fs::read_to_string(w.s.dir.path().join("bin/args")).expect("args");
    assert_eq!(args, "sendsms\nTEXT\n");
    let recipient = fs::read_to_string(w.s.dir.path().join("bin/recipient")).expect("recipient");
    assert_eq!(recipient, "daemon@example.org\n");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_with_wrong_codes_or_a_refused_recipient_writes_nothing() {
    let w = world();
    for (kind, flag, recipient) in OTHERS {
        let out = w.s.run(
            &["enroll", "daemon", flag, recipient],
            "111111\n222222\n333333\n",
        );
        out.expect_code(1)
            .expect_in_stderr("That is not the code sent to the")
            .expect_in_stderr("wrong code 3 times: nothing was written");
        // A code went out through that gateway all the same.
        let _ = delivered_code(&w, kind);
    }
    assert!(w.s.users_text().is_none(), "nothing written");

    // Refusals, in words, before anything is written.
    w.s.run(&["enroll", "daemon", "--signal", UNKNOWN], "")
        .expect_code(1)
        .expect_in_stderr(
            "Signal refused the message to daemon: the recipient is not registered with Signal",
        );
    w.s.run(&["enroll", "daemon", "--sms", UNKNOWN], "")
        .expect_code(1)
        .expect_in_stderr("SMS refused the message to daemon: playSMS: refused: playSMS ERR 200");
    w.s.run(&["enroll", "daemon", "--webhook", BUSY_TOPIC], "")
        .expect_code(1)
        .expect_in_stderr("ntfy refused the message to daemon: rate limited, retry after 30 s");
    w.s.run(&["enroll", "daemon", "--command", "nobody@example.org"], "")
        .expect_code(1)
        .expect_in_stderr("exit status 67 (no such recipient): unknown user ***org");
    // Usage: a malformed recipient, two gateways at once.
    w.s.run(&["enroll", "daemon", "--signal", "015112345678"], "")
        .expect_code(2)
        .expect_in_stderr("--signal 015112345678: is not a phone number");
    w.s.run(&["enroll", "daemon", "--command", "-rf"], "")
        .expect_code(2)
        .expect_in_stderr("must not start with `-`");
    w.s.run(&["enroll", "daemon", "--signal", PHONE, "--sms", PHONE], "")
        .expect_code(2);
    assert!(w.s.users_text().is_none(), "nothing written");

    // --no-verify writes without a code.
    let before = w.signal.requests().len();
    w.s.run(&["enroll", "bin", "--signal", PHONE, "--no-verify"], "")
        .expect_code(0)
        .expect_in_stdout("Not checked with a code");
    assert_eq!(w.signal.requests().len(), before, "nothing sent");
    assert_eq!(
        recipient_of(&w.s, "bin", GatewayKind::Signal).as_deref(),
        Some(PHONE)
    );
    // The same number for a second user: allowed, with a warning.
    w.s.run(&["enroll", "sys", "--signal", PHONE, "--no-verify"], "")
        .expect_code(0)
        .expect_in_stdout("number ***678 is already enrolled for bin on signal");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn enroll_with_a_gateway_that_is_not_configured_says_what_to_do() {
    let s = setup_with("");
    s.run(&["enroll", "daemon", "--signal", PHONE], "")
        .expect_code(3)
        .expect_in_stderr("has no [signal] section: run `pam-gateway configure signal` first");
    // Without Telegram, the deep link is not on offer.
    let daemon = signal_rpc();
    let s = setup_with(&format!(
        "[signal]\nmode = \"jsonrpc\"\nurl = \"{}\"\n",
        daemon.url()
    ));
    s.run(&["enroll", "daemon"], "")
        .expect_code(2)
        .expect_in_stderr("no [telegram] section")
        .expect_in_stderr("pam-gateway enroll daemon --signal RECIPIENT");
}

// --------------------------------------------------------------- status ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_checks_every_gateway_in_order() {
    let w = world();
    w.s.write_users(&format!(
        "[users.daemon]\ntelegram = \"{CHAT}\"\nsignal = \"{PHONE}\"\n\
         [users.bin]\nsms = \"{PHONE}\"\nwebhook = \"{TOPIC}\"\ncommand = \"bin@example.org\"\n"
    ));
    let pam_dir = w.s.dir.path().join("pam.d");
    fs::create_dir_all(&pam_dir).expect("mkdir");
    let pam_dir = pam_dir.display().to_string();
    let out = w.s.run(&["status", "--pam-dir", &pam_dir], "");
    out.expect_code(0)
        .expect_in_stdout("info  a user's gateways are tried in this order: telegram, signal, sms, webhook, command")
        .expect_in_stdout("ok    telegram: bot @pam_gateway_test_bot answers")
        .expect_in_stdout("ok    signal: signal-cli-rest-api 0.92 (json-rpc mode) answers at")
        .expect_in_stdout("ok    sms: playSMS accepts the user and token (credit 42.5)")
        .expect_in_stdout("ok    webhook (ntfy): settings valid, posts to http://127.0.0.1:")
        .expect_in_stdout("ok    command (SMS): ")
        .expect_in_stdout("passes the checks a login makes");
    assert_no_secret(&out);
    // Harmless requests only.
    assert!(w.signal.requests().iter().all(|r| r.method == "GET"));
    assert!(
        w.sms
            .requests()
            .iter()
            .all(|r| r.query_value("op").as_deref() == Some("cr"))
    );
    assert!(w.hook.requests().is_empty());
    assert!(w.tg.sent().is_empty());
    assert!(!w.s.dir.path().join("bin/message").exists());

    // Signal down: daemon falls back to Telegram (a warning); with bin
    // on Signal alone, that stops bin's logins (a FAIL).
    let text = fs::read_to_string(&w.s.config).expect("config");
    write_file(
        &w.s.config,
        &text.replace(&w.signal.url(), &closed_port_url()),
        0o600,
    );
    let out = w.s.run(&["status", "--pam-dir", &pam_dir], "");
    out.expect_code(0)
        .expect_in_stdout("warn  signal: ")
        .expect_in_stdout("connection refused")
        .expect_in_stdout("daemon fall(s) back to their other gateways");
    w.s.write_users(&format!(
        "[users.daemon]\ntelegram = \"{CHAT}\"\nsignal = \"{PHONE}\"\n[users.bin]\nsignal = \"{PHONE}\"\n"
    ));
    let out = w.s.run(&["status", "--pam-dir", &pam_dir], "");
    out.expect_code(1)
        .expect_in_stdout("FAIL  signal: ")
        .expect_in_stdout("logins of bin are refused while this lasts")
        .expect_in_stdout("Check that signal-cli-rest-api");

    // A program that fails its checks stops its users' logins.
    let script = w.s.dir.path().join("bin/deliver");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o777)).expect("chmod");
    w.s.write_users("[users.bin]\ncommand = \"bin@example.org\"\n");
    let out = w.s.run(&["status", "--pam-dir", &pam_dir], "");
    out.expect_code(1)
        .expect_in_stdout("FAIL  command (SMS): ")
        .expect_in_stdout("is writable by group or others");
}

// ------------------------------------------------------------ test USER ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn test_message_through_each_gateway_delivered_or_explained() {
    let w = world();
    let tw = twilio();
    w.s.write_users(&format!(
        "[users.daemon]\nsignal = \"{PHONE}\"\nsms = \"{PHONE}\"\nwebhook = \"{TOPIC}\"\n\
         command = \"daemon@example.org\"\n\
         [users.bin]\nsignal = \"{UNKNOWN}\"\nsms = \"{UNKNOWN}\"\nwebhook = \"{BUSY_TOPIC}\"\n\
         command = \"nobody@example.org\"\n"
    ));
    let out = w.s.run(&["test", "daemon"], "");
    out.expect_code(0)
        .expect_in_stdout("Delivered: a test message went via Signal to daemon's ***678")
        .expect_in_stdout("Delivered: a test message went via SMS to daemon's ***678")
        .expect_in_stdout("Delivered: a test message went via ntfy to daemon's ***f3k")
        .expect_in_stdout("Delivered: a test message went via SMS to daemon's ***org");
    assert_no_secret(&out);
    for text in [
        last_to(&w.signal, "/v2/send").json()["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        last_to(&w.sms, "/index.php")
            .query_value("msg")
            .unwrap_or_default(),
        last_to(&w.hook, &format!("/{HOOK_PATH}")).json()["message"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        fs::read_to_string(w.s.dir.path().join("bin/message")).expect("message"),
    ] {
        assert!(text.contains("test message for daemon@"), "{text}");
    }

    let out = w.s.run(&["test", "bin"], "");
    out.expect_code(1)
        .expect_in_stdout("Not delivered via Signal to bin's ***999: Signal refused the message to bin: the recipient is not registered with Signal")
        .expect_in_stdout("Not delivered via SMS to bin's ***999: SMS refused the message to bin: playSMS: refused")
        .expect_in_stdout("Not delivered via ntfy to bin's ***c-1: ntfy refused the message to bin: rate limited, retry after 30 s")
        .expect_in_stdout("Not delivered via SMS to bin's ***org: SMS refused the message to bin:")
        .expect_in_stdout("exit status 67 (no such recipient)")
        .expect_in_stderr("not delivered via Signal, SMS, ntfy, SMS (4 of bin's 4 gateways): see above");
    assert!(
        !out.all().contains(UNKNOWN),
        "full number shown\n{}",
        out.dump()
    );

    // One gateway alone: its reason on stderr, the exit status its own.
    let s = setup_with(&format!(
        "[sms]\nprovider = \"twilio\"\nurl = \"{}\"\naccount_sid = \"{TWILIO_SID}\"\n\
         auth_token = \"{TWILIO_TOKEN}\"\nfrom = \"+15005550006\"\n",
        tw.url()
    ));
    s.write_users(&format!(
        "[users.daemon]\nsms = \"{PHONE}\"\n[users.bin]\nsms = \"{UNKNOWN}\"\n"
    ));
    s.run(&["test", "daemon"], "")
        .expect_code(0)
        .expect_in_stdout("Delivered: a test message went via SMS to daemon's ***678");
    let sent = last_to(
        &tw,
        &format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"),
    );
    assert_eq!(sent.form_value("To").as_deref(), Some(PHONE));
    s.run(&["test", "bin"], "")
        .expect_code(1)
        .expect_in_stdout("Not delivered via SMS to bin's ***999.")
        .expect_in_stderr(
            "SMS refused the message to bin: Twilio: recipient refused: Twilio 21211",
        );
    // Unreachable and misconfigured: exit 4, with what to check.
    let s = setup_with(&format!(
        "[signal]\nurl = \"{}\"\nnumber = \"{ACCOUNT}\"\n",
        closed_port_url()
    ));
    s.write_users(&format!("[users.daemon]\nsignal = \"{PHONE}\"\n"));
    s.run(&["test", "daemon"], "")
        .expect_code(4)
        .expect_in_stderr("Signal cannot be reached from this host: connection refused");
    let s = setup_with(&format!(
        "[sms]\nprovider = \"playsms\"\nurl = \"{}/index.php\"\nusername = \"pam\"\n\
         token = \"wrong-token-Qx\"\n",
        w.sms.url()
    ));
    s.write_users(&format!("[users.daemon]\nsms = \"{PHONE}\"\n"));
    s.run(&["test", "daemon"], "")
        .expect_code(4)
        .expect_in_stderr("SMS is not set up right: playSMS: credentials refused: playSMS ERR 100")
        .expect_in_stderr("pam-gateway configure sms");
}

#[test]
fn help_documents_the_gateway_commands() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .output()
            .expect("help");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let configure = help(&["configure", "--help"]);
    for word in ["telegram", "signal", "sms", "webhook", "command"] {
        assert!(configure.contains(word), "{word}\n{configure}");
    }
    for (gateway, options) in [
        (
            "signal",
            &["--url", "--number", "--mode", "--username", "GET /v1/about"][..],
        ),
        (
            "sms",
            &["--provider", "--account-sid", "--max-parts", "op=cr"][..],
        ),
        ("webhook", &["--recipe", "--body", "--header", "ntfy"][..]),
        (
            "command",
            &["--path", "--arg", "--program", "owned by root"][..],
        ),
    ] {
        let text = help(&["configure", gateway, "--help"]);
        for option in options.iter().chain(&["Exit status:", "without echo"]) {
            assert!(text.contains(option), "{gateway}: {option}\n{text}");
        }
    }
    let enroll = help(&["enroll", "--help"]);
    for option in ["--signal", "--sms", "--webhook", "--command", "--no-verify"] {
        assert!(enroll.contains(option), "{option}\n{enroll}");
    }
}
