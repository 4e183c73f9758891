//! Signal, through one of the two HTTP front ends of signal-cli:
//!
//! - `mode = "rest"` (default): bbernhard/signal-cli-rest-api,
//!   `POST {url}/v2/send` with `{"number", "recipients": [..], "message"}`;
//!   success is `201` with a `timestamp`; failures are `400`/`429` with
//!   `{"error": ".."}`.
//! - `mode = "jsonrpc"`: signal-cli's own daemon (`signal-cli daemon
//!   --http`), `POST {url}/api/v1/rpc` with a JSON-RPC 2.0 `send` request.
//!   Success is a `result` whose per-recipient `results` all have
//!   `"type": "SUCCESS"`; failures are a JSON-RPC `error` (whose
//!   `data.response.results` says why for each recipient).
//!
//! Neither has authentication of its own; `username`/`password` are for a
//! reverse proxy in front of it (HTTP Basic), and are redacted from errors.

use serde::Deserialize;
use serde_json::{Value, json};

use super::delivery::{DeliveryError, Gateway};
use super::health::Health;
use super::spec::{
    GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec, SectionCheck, read_section_as,
    section_as,
};
use crate::http::{self, HttpAnswer, HttpSettings, LazyClient, TransportError};
use crate::recipient::{PhoneNumber, check_phone, read_phone};
use crate::redact::{mask, mask_recipient};
use crate::secret::Secret;
use crate::section::{SectionError, check_service_url};
use crate::secure_file::Owner;
use crate::toml_errors::{ParseError, TomlItem, toml_enum, toml_struct};

/// Signal in the list of gateways: `[signal]`; its recipients are phone
/// numbers.
pub struct SignalSpec;

impl GatewaySpec for SignalSpec {
    fn id(&self) -> &'static str {
        "signal"
    }

    fn display_name(&self) -> &'static str {
        "Signal"
    }

    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError> {
        read_section_as(section, RawSignal::read, parse_section)
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        check_phone(recipient)
    }

    fn read_recipient(&self, value: TomlItem<'_>) -> Result<Result<String, String>, ParseError> {
        read_phone(value)
    }
}

impl GatewayAdmin for SignalSpec {
    fn recipient_noun(&self) -> &'static str {
        "number"
    }

    /// signal-cli's `/v1/about` or `version`.
    fn health(&self, section: &dyn GatewaySection, _owner: Owner) -> Option<Health> {
        let cfg = section_as::<SignalConfig>(section)?;
        Some(match SignalGateway::new(cfg).check() {
            Ok(found) => Health::Ok(found),
            Err(e) => Health::from_delivery(
                DeliveryError::from(e),
                &cfg.url,
                "Check that signal-cli-rest-api (or `signal-cli daemon --http`) runs and \
                 listens at [signal] url, and the network in between",
                "Fix with `pam-gateway configure signal`",
            ),
        })
    }
}

/// Which signal-cli front end answers at `url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignalMode {
    /// signal-cli-rest-api (`/v2/send`).
    #[default]
    Rest,
    /// signal-cli's JSON-RPC HTTP daemon (`/api/v1/rpc`).
    Jsonrpc,
}

toml_enum!(SignalMode { "rest" => Rest, "jsonrpc" => Jsonrpc });

toml_struct! {
    #[derive(Debug)]
    pub struct RawSignal {
        url: String,
        number: Option<String>,
        mode: Option<SignalMode>,
        username: Option<String>,
        password: Option<String>,
        timeout: Option<u64>,
        connect_timeout: Option<u64>,
        proxy: Option<String>,
    }
}

/// `[signal]` of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalConfig {
    /// Base URL of the front end, without a trailing slash.
    pub url: String,
    /// The sending account. Required for `rest`; for `jsonrpc` sent as
    /// `account` (needed when the daemon serves several accounts).
    pub number: Option<PhoneNumber>,
    pub mode: SignalMode,
    /// HTTP Basic credentials for a proxy in front of the API.
    pub basic_auth: Option<(String, Secret)>,
    pub http: HttpSettings,
}

impl GatewayConnect for SignalSpec {
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>> {
        section_as::<SignalConfig>(section)
            .map(|c| Box::new(SignalGateway::new(c)) as Box<dyn Gateway>)
    }
}

impl GatewaySection for SignalConfig {}

/// Validates `[signal]`.
pub(crate) fn parse_section(raw: RawSignal, e: SectionError) -> Result<SignalConfig, ParseError> {
    let url = check_service_url(&raw.url).map_err(|m| e("url", m))?;
    let mode = raw.mode.unwrap_or_default();
    let number = raw
        .number
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .map_err(|m| e("number", m))?;
    if mode == SignalMode::Rest && number.is_none() {
        return Err(e(
            "number",
            "is required with mode = \"rest\": the registered account that sends the codes \
             (e.g. \"+4915112345678\")"
                .to_string(),
        ));
    }
    let basic_auth = match (raw.username, raw.password) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') && !p.is_empty() => {
            Some((u, Secret::new(p)))
        }
        (Some(_), Some(_)) => {
            return Err(e(
                "username",
                "username must be non-empty without `:`, and password non-empty".to_string(),
            ));
        }
        (Some(_), None) => return Err(e("username", "is set but password is not".to_string())),
        (None, Some(_)) => return Err(e("password", "is set but username is not".to_string())),
    };
    let http =
        HttpSettings::from_keys(raw.timeout, raw.connect_timeout, raw.proxy.as_ref(), 10, e)?;
    Ok(SignalConfig {
        url,
        number,
        mode,
        basic_auth,
        http,
    })
}

/// What went wrong sending through signal-cli.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalError {
    Transport(TransportError),
    /// The recipient has no Signal account.
    NotOnSignal,
    /// The recipient's safety number changed and is not trusted yet.
    UntrustedIdentity,
    /// Signal's rate limit (or a captcha challenge) for this account.
    RateLimited {
        retry_after: Option<u64>,
    },
    /// signal-cli could not reach the Signal servers.
    NetworkFailure,
    /// The front end refused the message for another reason.
    Refused {
        status: u16,
        message: String,
    },
    /// 401/403 from the front end or the proxy before it.
    Unauthorized(u16),
    /// Not a signal-cli front end at this URL (404, unknown method) or an
    /// account it does not know.
    WrongEndpoint(String),
    /// 5xx, or a JSON-RPC internal error.
    Server {
        status: u16,
    },
    /// An answer we cannot read as success or failure.
    Malformed(String),
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use SignalError::*;
        match self {
            Transport(t) => write!(f, "{t}"),
            NotOnSignal => f.write_str("the recipient is not registered with Signal"),
            UntrustedIdentity => f.write_str(
                "the recipient's safety number changed and is not trusted: check it with the \
                 user, then trust it (signal-cli trust, or the REST API's identities endpoint)",
            ),
            RateLimited {
                retry_after: Some(s),
            } => write!(f, "rate limited by Signal, retry after {s} s"),
            RateLimited { retry_after: None } => f.write_str(
                "rate limited by Signal (a captcha challenge may have to be solved for the \
                 sending account)",
            ),
            NetworkFailure => f.write_str("signal-cli could not reach the Signal servers"),
            Refused { status, message } => write!(f, "refused ({status}): {message}"),
            Unauthorized(status) => write!(
                f,
                "credentials refused ({status}): check [signal] username and password"
            ),
            WrongEndpoint(d) => write!(f, "{d}: check [signal] url, mode and number"),
            Server { status } => write!(f, "signal-cli server error {status}"),
            Malformed(d) => write!(f, "unreadable answer: {d}"),
        }
    }
}

impl std::error::Error for SignalError {}

impl From<SignalError> for DeliveryError {
    fn from(e: SignalError) -> DeliveryError {
        use SignalError::*;
        let text = e.to_string();
        match e {
            Transport(t) => t.delivery_error(text),
            // signal-cli answered: it (or Signal behind it) failed.
            NetworkFailure | Server { .. } | Malformed(_) => DeliveryError::ServiceFailed(text),
            NotOnSignal | UntrustedIdentity | Refused { .. } => DeliveryError::Rejected {
                reason: text,
                retry_after: None,
            },
            RateLimited { retry_after } => DeliveryError::Rejected {
                reason: text,
                retry_after,
            },
            Unauthorized(_) | WrongEndpoint(_) => DeliveryError::Misconfigured(text),
        }
    }
}

/// Signal as a [`Gateway`]: the recipient is an E.164 phone number.
pub struct SignalGateway {
    cfg: SignalConfig,
    client: LazyClient,
}

impl SignalGateway {
    pub fn new(cfg: &SignalConfig) -> SignalGateway {
        SignalGateway {
            cfg: cfg.clone(),
            client: LazyClient::new(),
        }
    }

    fn secrets(&self) -> Vec<&str> {
        match &self.cfg.basic_auth {
            Some((_, p)) => vec![p.expose()],
            None => vec![],
        }
    }

    /// The HTTP client, built on first use.
    fn client(&self) -> Result<&http::Client, SignalError> {
        self.client
            .get_or_build(|| http::client(&self.cfg.http))
            .map_err(SignalError::Transport)
    }

    fn post(&self, path: &str, body: &Value) -> Result<HttpAnswer, SignalError> {
        let client = self.client()?;
        let mut request = client.post(format!("{}{path}", self.cfg.url)).json(body);
        if let Some((user, password)) = &self.cfg.basic_auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        client
            .exchange(request, &self.secrets())
            .map_err(SignalError::Transport)
    }

    /// A service message, bounded, without secrets, the full recipient or
    /// the message that was sent.
    fn clean(&self, text: &str, recipient: &str, message: &str) -> String {
        mask_recipient(
            &http::excerpt_sent(text, 200, &self.secrets(), message),
            recipient,
        )
    }

    /// Sends through signal-cli-rest-api.
    pub fn send_rest(&self, recipient: &str, text: &str) -> Result<(), SignalError> {
        let number = self.cfg.number.as_ref().map(PhoneNumber::as_str);
        let answer = self.post(
            "/v2/send",
            &json!({ "number": number, "recipients": [recipient], "message": text }),
        )?;
        let parsed: Option<Value> = serde_json::from_str(&answer.body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(|m| self.clean(m, recipient, text))
            .unwrap_or_default();
        match answer.status {
            201 | 200 => {
                let v = parsed.ok_or_else(|| {
                    SignalError::Malformed(format!(
                        "HTTP {} with a body that is not JSON",
                        answer.status
                    ))
                })?;
                // Some versions list per-recipient failures next to the
                // timestamp; any of them means this recipient got nothing.
                check_results(&v)?;
                if let Some(errors) = v.get("errors").and_then(Value::as_array)
                    && !errors.is_empty()
                {
                    let first = errors
                        .first()
                        .map(|e| match e.as_str() {
                            Some(s) => s.to_string(),
                            None => e.to_string(),
                        })
                        .unwrap_or_default();
                    return Err(classify_message(
                        answer.status,
                        &self.clean(&first, recipient, text),
                    ));
                }
                let has_timestamp = match v.get("timestamp") {
                    Some(Value::String(s)) => !s.is_empty(),
                    Some(Value::Number(_)) => true,
                    _ => false,
                };
                if !has_timestamp {
                    return Err(SignalError::Malformed(format!(
                        "HTTP {} without a \"timestamp\"",
                        answer.status
                    )));
                }
                Ok(())
            }
            401 | 403 => Err(SignalError::Unauthorized(answer.status)),
            404 | 405 => Err(SignalError::WrongEndpoint(format!(
                "no signal-cli-rest-api /v2/send at this URL (HTTP {})",
                answer.status
            ))),
            429 => Err(SignalError::RateLimited {
                retry_after: answer.retry_after,
            }),
            s if s >= 500 => Err(SignalError::Server { status: s }),
            s if parsed.is_some() => Err(classify_message(s, &message)),
            s => Err(SignalError::Malformed(format!(
                "HTTP {s} with a body that is not JSON"
            ))),
        }
    }

    /// Sends through signal-cli's JSON-RPC HTTP daemon.
    pub fn send_jsonrpc(&self, recipient: &str, text: &str) -> Result<(), SignalError> {
        let id = new_rpc_id()?;
        let mut params = json!({ "recipient": [recipient], "message": text });
        if let Some(n) = &self.cfg.number {
            params["account"] = json!(n.as_str());
        }
        let answer = self.post(
            "/api/v1/rpc",
            &json!({ "jsonrpc": "2.0", "method": "send", "params": params, "id": id }),
        )?;
        jsonrpc_status(answer.status, "")?;
        let v: Value = serde_json::from_str(&answer.body).map_err(|_| {
            SignalError::Malformed(format!(
                "HTTP {} with a body that is not JSON",
                answer.status
            ))
        })?;
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = self.clean(
                error.get("message").and_then(Value::as_str).unwrap_or(""),
                recipient,
                text,
            );
            // The per-recipient results, when signal-cli attached them,
            // say more than the summary message.
            if let Some(response) = error.pointer("/data/response") {
                check_results(response)?;
            }
            return Err(match code {
                -5 => SignalError::RateLimited { retry_after: None },
                -4 => SignalError::UntrustedIdentity,
                -3 => SignalError::NetworkFailure,
                -32602 => SignalError::WrongEndpoint(format!(
                    "signal-cli refused the parameters ({message}); is [signal] number an \
                     account of this daemon?"
                )),
                -32601 | -32600 | -32700 => SignalError::WrongEndpoint(format!(
                    "signal-cli did not accept the request ({code}: {message})"
                )),
                -32603 => SignalError::Server { status: 500 },
                _ => classify_message(answer.status, &message),
            });
        }
        if answer.status != 200 {
            return Err(SignalError::Malformed(format!(
                "HTTP {} without a JSON-RPC error",
                answer.status
            )));
        }
        if v.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(SignalError::Malformed(
                "the JSON-RPC answer has another id than the request".to_string(),
            ));
        }
        let result = v
            .get("result")
            .ok_or_else(|| SignalError::Malformed("no \"result\" and no \"error\"".to_string()))?;
        check_results(result)?;
        if result.get("timestamp").and_then(Value::as_u64).is_none() {
            return Err(SignalError::Malformed(
                "the send result has no \"timestamp\"".to_string(),
            ));
        }
        Ok(())
    }
}

impl SignalGateway {
    fn get(&self, path: &str) -> Result<HttpAnswer, SignalError> {
        let client = self.client()?;
        let mut request = client.get(format!("{}{path}", self.cfg.url));
        if let Some((user, password)) = &self.cfg.basic_auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        client
            .exchange(request, &self.secrets())
            .map_err(SignalError::Transport)
    }

    /// Asks the front end who it is, and whether it has the sending
    /// account, without sending anything: signal-cli-rest-api's
    /// `GET /v1/about` and `GET /v1/accounts`; the JSON-RPC daemon's
    /// `version` and (multi-account daemons only) `listAccounts`. Returns
    /// what it found, in words.
    pub fn check(&self) -> Result<String, SignalError> {
        match self.cfg.mode {
            SignalMode::Rest => self.check_rest(),
            SignalMode::Jsonrpc => self.check_jsonrpc(),
        }
    }

    fn check_rest(&self) -> Result<String, SignalError> {
        let answer = self.get("/v1/about")?;
        match answer.status {
            200 => {}
            401 | 403 => return Err(SignalError::Unauthorized(answer.status)),
            404 | 405 => {
                return Err(SignalError::WrongEndpoint(format!(
                    "no signal-cli-rest-api at this URL (GET /v1/about: HTTP {}; with \
                     `signal-cli daemon --http` use mode = \"jsonrpc\")",
                    answer.status
                )));
            }
            s if s >= 500 => return Err(SignalError::Server { status: s }),
            s => {
                return Err(SignalError::Malformed(format!(
                    "GET /v1/about answered HTTP {s}"
                )));
            }
        }
        let about: Value = serde_json::from_str(&answer.body).map_err(|_| {
            SignalError::WrongEndpoint(
                "GET /v1/about did not answer JSON: not signal-cli-rest-api".to_string(),
            )
        })?;
        if !about.get("versions").is_some_and(Value::is_array) {
            return Err(SignalError::WrongEndpoint(
                "GET /v1/about has no \"versions\": not signal-cli-rest-api".to_string(),
            ));
        }
        let short = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(|s| http::excerpt(s, 20, &[]))
                .filter(|s| !s.is_empty())
        };
        let mut found = match (short(about.get("version")), short(about.get("mode"))) {
            (Some(v), Some(m)) => format!("signal-cli-rest-api {v} ({m} mode)"),
            (Some(v), None) => format!("signal-cli-rest-api {v}"),
            (None, _) => "signal-cli-rest-api".to_string(),
        };
        found.push_str(&format!(" answers at {}", self.cfg.url));
        let Some(number) = &self.cfg.number else {
            return Ok(found);
        };
        let masked = mask(number.as_str());
        let answer = self.get("/v1/accounts")?;
        let accounts: Option<Vec<String>> = (answer.status == 200)
            .then(|| serde_json::from_str(&answer.body).ok())
            .flatten();
        match accounts {
            Some(list) if list.iter().any(|a| a == number.as_str()) => {
                found.push_str(&format!(" and has the account {masked}"));
                Ok(found)
            }
            Some(list) => Err(SignalError::WrongEndpoint(format!(
                "the account {masked} is not registered or linked in this \
                 signal-cli-rest-api (it has {} other account(s)): register or link it there \
                 first, or correct the number",
                list.len()
            ))),
            // Older versions have no account list: the send will tell.
            None => {
                found.push_str(&format!(
                    " (its accounts could not be listed, HTTP {}: the account {masked} is not \
                     checked)",
                    answer.status
                ));
                Ok(found)
            }
        }
    }

    /// One JSON-RPC call: the `result`, or the error's code and message.
    fn rpc(&self, method: &str, params: Option<Value>) -> Result<RpcAnswer, SignalError> {
        let id = new_rpc_id()?;
        let mut request = json!({ "jsonrpc": "2.0", "method": method, "id": id });
        if let Some(p) = params {
            request["params"] = p;
        }
        let answer = self.post("/api/v1/rpc", &request)?;
        jsonrpc_status(answer.status, " signal-cli-rest-api needs mode = \"rest\"")?;
        let v: Value = serde_json::from_str(&answer.body).map_err(|_| {
            SignalError::WrongEndpoint(format!(
                "HTTP {} with a body that is not JSON: not a signal-cli JSON-RPC daemon",
                answer.status
            ))
        })?;
        if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
            return Ok(RpcAnswer::Error(
                error.get("code").and_then(Value::as_i64).unwrap_or(0),
            ));
        }
        if v.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(SignalError::Malformed(
                "the JSON-RPC answer has another id than the request".to_string(),
            ));
        }
        Ok(RpcAnswer::Result(
            v.get("result").cloned().unwrap_or(Value::Null),
        ))
    }

    fn check_jsonrpc(&self) -> Result<String, SignalError> {
        let mut found = match self.rpc("version", None)? {
            RpcAnswer::Result(r) => match r.get("version").and_then(Value::as_str) {
                Some(v) => format!("signal-cli {} (JSON-RPC daemon)", http::excerpt(v, 20, &[])),
                None => "a signal-cli JSON-RPC daemon".to_string(),
            },
            // Versions before the `version` command still answer JSON-RPC.
            RpcAnswer::Error(-32601) => "a signal-cli JSON-RPC daemon".to_string(),
            RpcAnswer::Error(code) => {
                return Err(SignalError::WrongEndpoint(format!(
                    "the JSON-RPC `version` call failed with error {code}"
                )));
            }
        };
        found.push_str(&format!(" answers at {}", self.cfg.url));
        let Some(number) = &self.cfg.number else {
            return Ok(found);
        };
        let masked = mask(number.as_str());
        match self.rpc("listAccounts", None)? {
            RpcAnswer::Result(Value::Array(list)) => {
                let has = list
                    .iter()
                    .any(|a| a.get("number").and_then(Value::as_str) == Some(number.as_str()));
                if !has {
                    return Err(SignalError::WrongEndpoint(format!(
                        "the account {masked} is not one of this daemon's {} account(s): \
                         register or link it in signal-cli first, or correct the number",
                        list.len()
                    )));
                }
                found.push_str(&format!(" and has the account {masked}"));
            }
            // A single-account daemon has no account list: it sends as
            // the account it was started with (`-a`).
            _ => found.push_str(&format!(
                " (a single-account daemon: it sends as the account it was started with, so \
                 {masked} is not checked)"
            )),
        }
        Ok(found)
    }
}

/// A fresh JSON-RPC request id.
fn new_rpc_id() -> Result<String, SignalError> {
    let mut id_bytes = [0u8; 8];
    getrandom::fill(&mut id_bytes)
        .map_err(|e| SignalError::Transport(TransportError::local("no random request id", e)))?;
    Ok(crate::hex::encode(&id_bytes))
}

/// The HTTP statuses that mean the JSON-RPC call never reached signal-cli;
/// `hint` is appended to the "wrong endpoint" advice.
fn jsonrpc_status(status: u16, hint: &str) -> Result<(), SignalError> {
    match status {
        401 | 403 => Err(SignalError::Unauthorized(status)),
        404 | 405 => Err(SignalError::WrongEndpoint(format!(
            "no signal-cli JSON-RPC daemon at this URL (HTTP {status}; started with \
             `daemon --http`?{hint})"
        ))),
        s if s >= 500 => Err(SignalError::Server { status: s }),
        _ => Ok(()),
    }
}

enum RpcAnswer {
    Result(Value),
    Error(i64),
}

/// Fails on the first per-recipient result that is not `SUCCESS`
/// (signal-cli's `results: [{"type": .., "retryAfterSeconds": ..}]`).
fn check_results(v: &Value) -> Result<(), SignalError> {
    let Some(results) = v.get("results").and_then(Value::as_array) else {
        return Ok(());
    };
    for r in results {
        let kind = r.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "SUCCESS" => {}
            "UNREGISTERED_FAILURE" => return Err(SignalError::NotOnSignal),
            "IDENTITY_FAILURE" => return Err(SignalError::UntrustedIdentity),
            "RATE_LIMIT_FAILURE" | "PROOF_REQUIRED_FAILURE" => {
                return Err(SignalError::RateLimited {
                    retry_after: r.get("retryAfterSeconds").and_then(Value::as_u64),
                });
            }
            "NETWORK_FAILURE" => return Err(SignalError::NetworkFailure),
            other => {
                return Err(SignalError::Refused {
                    status: 200,
                    message: format!(
                        "recipient result {:?}",
                        other.chars().take(40).collect::<String>()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Maps signal-cli's error text (the REST API passes it through) to a case.
fn classify_message(status: u16, message: &str) -> SignalError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("unregistered user") || lower.contains("not registered with signal") {
        SignalError::NotOnSignal
    } else if lower.contains("untrusted") {
        SignalError::UntrustedIdentity
    } else if lower.contains("rate limit") || lower.contains("proof required") {
        SignalError::RateLimited { retry_after: None }
    } else {
        SignalError::Refused {
            status,
            message: message.to_string(),
        }
    }
}

impl Gateway for SignalGateway {
    fn id(&self) -> &'static str {
        SignalSpec.id()
    }

    fn display_name(&self) -> &str {
        SignalSpec.display_name()
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        match self.cfg.mode {
            SignalMode::Rest => self.send_rest(recipient, text),
            SignalMode::Jsonrpc => self.send_jsonrpc(recipient, text),
        }
        .map_err(|e| http::without_message(DeliveryError::from(e), text))
    }
}
