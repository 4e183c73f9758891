//! A generic HTTP webhook: URL, method, headers and a body template. Enough
//! for ntfy, Gotify, Matrix (`m.room.message`) and the incoming webhooks of
//! Slack, Discord and Mattermost (recipes in `conf/webhook/`).
//!
//! Placeholders: `{recipient}` and `{txn}` (a fresh random id, for APIs such
//! as Matrix that want a transaction id) in the URL's path, percent-encoded;
//! `{message}`, `{recipient}` and `{txn}` in the body, escaped for its
//! content type (JSON string escapes for JSON, percent-encoding for a form,
//! as-is for anything else). Header values, the URL (incoming-webhook URLs
//! are themselves secrets) and its long path segments are redacted from
//! every error.

use std::collections::BTreeMap;

use serde_json::Value;

use super::delivery::{DeliveryError, Gateway};
use super::health::Health;
use super::spec::{
    GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec, SectionCheck, read_section_as,
    section_as,
};
use crate::http::{self, HttpAnswer, HttpSettings, LazyClient, TransportError};
use crate::recipient::check_address;
use crate::redact::mask_recipient;
use crate::secret::Secret;
use crate::section::{SectionError, check_service_url};
use crate::secure_file::Owner;
use crate::toml_errors::{ParseError, TomlItem, toml_struct};
use crate::uri::percent_encode;

/// The webhook in the list of gateways: `[webhook]`; its recipients are
/// whatever its URL and body put `{recipient}` in. Its section names it
/// (`name`, default "webhook").
pub struct WebhookSpec;

impl GatewaySpec for WebhookSpec {
    fn id(&self) -> &'static str {
        "webhook"
    }

    fn display_name(&self) -> &'static str {
        "webhook"
    }

    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError> {
        read_section_as(section, RawWebhook::read, parse_section)
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        check_address(recipient)
    }
}

impl GatewayAdmin for WebhookSpec {
    fn recipient_noun(&self) -> &'static str {
        "recipient"
    }

    /// Nothing to ask that sends nothing: the settings were checked when
    /// they were parsed.
    fn health(&self, section: &dyn GatewaySection, _owner: Owner) -> Option<Health> {
        let cfg = section_as::<WebhookConfig>(section)?;
        // The URL is a secret; its scheme and host are not.
        let origin = reqwest::Url::parse(cfg.url.expose())
            .ok()
            .map(|u| u.origin().ascii_serialization())
            .filter(|o| o != "null")
            .unwrap_or_else(|| "its URL".to_string());
        Some(Health::Unchecked(format!(
            "settings valid, posts to {origin} (rest of the URL not shown); a webhook \
             has no check that sends nothing (`pam-gateway test USER` sends a real \
             message)"
        )))
    }
}

/// Placeholders the URL may use (in its path).
pub const URL_PLACEHOLDERS: &[&str] = &["recipient", "txn"];
/// Placeholders the body may use; `{message}` is required.
pub const BODY_PLACEHOLDERS: &[&str] = &["message", "recipient", "txn"];
/// Headers the module sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

toml_struct! {
    #[derive(Debug)]
    pub struct RawWebhook {
        name: Option<String>,
        url: String,
        method: Option<String>,
        headers: Option<BTreeMap<String, String>>,
        content_type: Option<String>,
        body: String,
        timeout: Option<u64>,
        connect_timeout: Option<u64>,
        proxy: Option<String>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMethod {
    Post,
    Put,
}

/// How placeholder values are escaped in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// Inside a JSON string: `"` `\` and control characters escaped.
    Json,
    /// `application/x-www-form-urlencoded`: percent-encoded.
    Form,
    /// Anything else (text/plain): as-is.
    Raw,
}

/// `[webhook]` of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Shown in the prompt: "Code sent via {name} to ***xyz".
    pub name: String,
    /// URL template (a secret for incoming-webhook services).
    pub url: Secret,
    pub method: WebhookMethod,
    /// Header names and (secret) values.
    pub headers: Vec<(String, Secret)>,
    pub content_type: String,
    pub encoding: BodyEncoding,
    pub body: String,
    pub http: HttpSettings,
}

/// Finds `{name}` placeholders: `(start, end, name)` for each `{` followed
/// by lowercase letters or `_` and `}`; other braces (JSON) are text.
fn placeholders(template: &str) -> Vec<(usize, usize, &str)> {
    let mut found = Vec::new();
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_lowercase() || bytes[j] == b'_') {
                j += 1;
            }
            if j > i + 1 && j < bytes.len() && bytes[j] == b'}' {
                found.push((i, j + 1, &template[i + 1..j]));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Replaces the known placeholders of `template` by `value(name)`.
fn render(template: &str, value: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut last = 0;
    for (start, end, name) in placeholders(template) {
        if let Some(v) = value(name) {
            out.push_str(&template[last..start]);
            out.push_str(&v);
            last = end;
        }
    }
    out.push_str(&template[last..]);
    out
}

fn check_placeholders(template: &str, allowed: &[&str]) -> Result<(), String> {
    for (_, _, name) in placeholders(template) {
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; allowed here: {}",
                allowed
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    Ok(())
}

/// Escapes a value for the body's encoding.
fn escape(value: &str, encoding: BodyEncoding) -> String {
    match encoding {
        BodyEncoding::Json => {
            let quoted = Value::String(value.to_string()).to_string();
            quoted[1..quoted.len() - 1].to_string()
        }
        BodyEncoding::Form => percent_encode(value),
        BodyEncoding::Raw => value.to_string(),
    }
}

/// Checks the URL template: https (http only to loopback), no credentials
/// or fragment, placeholders only after the host.
fn check_url(url: &str) -> Result<(), String> {
    check_placeholders(url, URL_PLACEHOLDERS)?;
    let authority_end = url
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| url[i..].find('/').map(|j| i + j))
        .unwrap_or(url.len());
    if placeholders(url).iter().any(|(s, _, _)| *s < authority_end) {
        return Err("placeholders may only appear in the path, not in the host".to_string());
    }
    let sample = render(url, &|name| match name {
        "recipient" => Some("recipient".to_string()),
        "txn" => Some("0123456789abcdef".to_string()),
        _ => None,
    });
    if sample.contains('#') {
        return Err("must not have a fragment".to_string());
    }
    // A query is allowed here (some services want one), but the rest goes
    // through the same check as every other gateway URL. Its messages
    // never quote the path or query, which may hold a secret.
    let without_query = sample.split('?').next().unwrap_or("");
    check_service_url(without_query)?;
    Ok(())
}

impl GatewayConnect for WebhookSpec {
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>> {
        section_as::<WebhookConfig>(section)
            .map(|c| Box::new(WebhookGateway::new(c)) as Box<dyn Gateway>)
    }
}

impl GatewaySection for WebhookConfig {
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Validates `[webhook]`.
pub(crate) fn parse_section(raw: RawWebhook, e: SectionError) -> Result<WebhookConfig, ParseError> {
    let name = raw
        .name
        .unwrap_or_else(|| WebhookSpec.display_name().to_string());
    if name.is_empty() || name.chars().count() > 32 || name.chars().any(char::is_control) {
        return Err(e(
            "name",
            "must be 1 to 32 printable characters".to_string(),
        ));
    }
    check_url(&raw.url).map_err(|m| e("url", m))?;
    let method = match raw.method.as_deref().unwrap_or("POST") {
        m if m.eq_ignore_ascii_case("POST") => WebhookMethod::Post,
        m if m.eq_ignore_ascii_case("PUT") => WebhookMethod::Put,
        _ => return Err(e("method", "must be \"POST\" or \"PUT\"".to_string())),
    };
    let mut headers = Vec::new();
    for (k, v) in raw.headers.unwrap_or_default() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(e(
                "headers",
                format!(
                    "{:?} is not a valid header name",
                    k.chars().take(40).collect::<String>()
                ),
            ));
        }
        if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(e(
                "headers",
                format!("{k} is set by the module (use content_type for Content-Type)"),
            ));
        }
        if v.is_empty() || reqwest::header::HeaderValue::from_str(&v).is_err() {
            return Err(e(
                "headers",
                format!(
                    "the value of {k} is empty or has characters a header cannot carry (value not shown)"
                ),
            ));
        }
        headers.push((k, Secret::new(v)));
    }
    let content_type = raw
        .content_type
        .unwrap_or_else(|| "application/json".to_string());
    if content_type.is_empty() || reqwest::header::HeaderValue::from_str(&content_type).is_err() {
        return Err(e("content_type", "is not a valid Content-Type".to_string()));
    }
    let lower = content_type.to_ascii_lowercase();
    let encoding = if lower.contains("json") {
        BodyEncoding::Json
    } else if lower.starts_with("application/x-www-form-urlencoded") {
        BodyEncoding::Form
    } else {
        BodyEncoding::Raw
    };
    let body = raw.body;
    if body.len() > 8192 {
        return Err(e("body", "is longer than 8192 bytes".to_string()));
    }
    check_placeholders(&body, BODY_PLACEHOLDERS).map_err(|m| e("body", m))?;
    if !placeholders(&body).iter().any(|(_, _, n)| *n == "message") {
        return Err(e("body", "must contain {message}".to_string()));
    }
    if encoding == BodyEncoding::Json {
        let sample = render(&body, &|name| {
            let v = match name {
                "message" => "123456 is your \"code\"\\\n\tok",
                "recipient" => "!room:example.org",
                "txn" => "0123456789abcdef",
                _ => return None,
            };
            Some(escape(v, encoding))
        });
        serde_json::from_str::<Value>(&sample).map_err(|err| {
            e(
                "body",
                format!(
                    "is not valid JSON once the placeholders are filled in ({err}); \
                     put each placeholder inside a JSON string: \"{{message}}\""
                ),
            )
        })?;
    }
    let http =
        HttpSettings::from_keys(raw.timeout, raw.connect_timeout, raw.proxy.as_ref(), 10, e)?;
    Ok(WebhookConfig {
        name,
        url: Secret::new(raw.url),
        method,
        headers,
        content_type,
        encoding,
        body,
        http,
    })
}

/// What went wrong calling the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    Transport(TransportError),
    /// 3xx: redirects are not followed (they could leak the body).
    Redirect(u16),
    /// 401/403: the token or URL is refused.
    Unauthorized {
        status: u16,
        detail: String,
    },
    /// 404/405/410: nothing to post to at this URL with this method.
    NotFound {
        status: u16,
        detail: String,
    },
    RateLimited {
        retry_after: Option<u64>,
    },
    /// Another 4xx: the service refused this message.
    Refused {
        status: u16,
        detail: String,
    },
    /// 5xx.
    Server {
        status: u16,
    },
    /// 1xx or another non-final answer.
    Malformed(String),
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use WebhookError::*;
        let with = |detail: &str| {
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        };
        match self {
            Transport(t) => write!(f, "{t}"),
            Redirect(s) => write!(
                f,
                "the service redirects (HTTP {s}), which is not followed: set [webhook] url to \
                 the final address"
            ),
            Unauthorized { status, detail } => write!(
                f,
                "refused as unauthorized (HTTP {status}){}: check [webhook] headers and url",
                with(detail)
            ),
            NotFound { status, detail } => write!(
                f,
                "nothing accepts this request (HTTP {status}){}: check [webhook] url and method",
                with(detail)
            ),
            RateLimited {
                retry_after: Some(s),
            } => write!(f, "rate limited, retry after {s} s"),
            RateLimited { retry_after: None } => f.write_str("rate limited"),
            Refused { status, detail } => write!(f, "refused (HTTP {status}){}", with(detail)),
            Server { status } => write!(f, "server error {status}"),
            Malformed(d) => write!(f, "unexpected answer: {d}"),
        }
    }
}

impl std::error::Error for WebhookError {}

impl From<WebhookError> for DeliveryError {
    fn from(e: WebhookError) -> DeliveryError {
        use WebhookError::*;
        let text = e.to_string();
        match e {
            Transport(t) => t.delivery_error(text),
            Server { .. } | Malformed(_) => DeliveryError::ServiceFailed(text),
            Refused { .. } => DeliveryError::Rejected {
                reason: text,
                retry_after: None,
            },
            RateLimited { retry_after } => DeliveryError::Rejected {
                reason: text,
                retry_after,
            },
            Redirect(_) | Unauthorized { .. } | NotFound { .. } => {
                DeliveryError::Misconfigured(text)
            }
        }
    }
}

/// The webhook as a [`Gateway`].
pub struct WebhookGateway {
    cfg: WebhookConfig,
    client: LazyClient,
}

impl WebhookGateway {
    pub fn new(cfg: &WebhookConfig) -> WebhookGateway {
        WebhookGateway {
            cfg: cfg.clone(),
            client: LazyClient::new(),
        }
    }

    /// The URL, its long path segments and query values, header values.
    fn secrets<'a>(&'a self, rendered_url: &'a str) -> Vec<&'a str> {
        let template = self.cfg.url.expose();
        let mut secrets = vec![rendered_url, template];
        let path_and_query = template
            .find("://")
            .map(|i| &template[i + 3..])
            .unwrap_or(template);
        secrets.extend(
            path_and_query
                .split(['/', '?', '&', '='])
                .filter(|s| s.len() >= 8 && !s.contains('{')),
        );
        for (_, value) in &self.cfg.headers {
            secrets.push(value.expose());
            // "Bearer TOKEN": a service may echo the token alone.
            secrets.extend(value.expose().split_whitespace().filter(|p| p.len() >= 8));
        }
        secrets
    }

    /// Fills in the templates and posts.
    pub fn call(&self, recipient: &str, text: &str) -> Result<(), WebhookError> {
        let mut txn_bytes = [0u8; 12];
        getrandom::fill(&mut txn_bytes).map_err(|e| {
            WebhookError::Transport(TransportError::local("no random transaction id", e))
        })?;
        let txn = crate::hex::encode(&txn_bytes);
        let url = render(self.cfg.url.expose(), &|name| match name {
            "recipient" => Some(percent_encode(recipient)),
            "txn" => Some(txn.clone()),
            _ => None,
        });
        let url = Secret::new(url);
        let secrets = self.secrets(url.expose());
        let encoding = self.cfg.encoding;
        let body = render(&self.cfg.body, &|name| match name {
            "message" => Some(escape(text, encoding)),
            "recipient" => Some(escape(recipient, encoding)),
            "txn" => Some(txn.clone()),
            _ => None,
        });
        let client = self
            .client
            .get_or_build(|| http::client(&self.cfg.http))
            .map_err(WebhookError::Transport)?;
        let mut request = match self.cfg.method {
            WebhookMethod::Post => client.post(url.expose()),
            WebhookMethod::Put => client.put(url.expose()),
        };
        request = request.header(reqwest::header::CONTENT_TYPE, &self.cfg.content_type);
        for (name, value) in &self.cfg.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let answer = client
            .exchange(request.body(body), &secrets)
            .map_err(WebhookError::Transport)?;
        interpret(&answer, &|t| {
            mask_recipient(&http::excerpt_sent(t, 200, &secrets, text), recipient)
        })
    }
}

/// 2xx is success; the rest by class.
fn interpret(answer: &HttpAnswer, clean: &dyn Fn(&str) -> String) -> Result<(), WebhookError> {
    let status = answer.status;
    let detail = || clean(&answer.body);
    match status {
        200..=299 => Ok(()),
        300..=399 => Err(WebhookError::Redirect(status)),
        401 | 403 => Err(WebhookError::Unauthorized {
            status,
            detail: detail(),
        }),
        404 | 405 | 410 => Err(WebhookError::NotFound {
            status,
            detail: detail(),
        }),
        429 => {
            // Retry-After, or Discord's `retry_after` (s) / Matrix's
            // `retry_after_ms` in the body.
            let body: Option<Value> = serde_json::from_str(&answer.body).ok();
            let from_body = body.as_ref().and_then(|v| {
                v.get("retry_after")
                    .and_then(Value::as_f64)
                    .or_else(|| {
                        v.get("retry_after_ms")
                            .and_then(Value::as_f64)
                            .map(|ms| ms / 1000.0)
                    })
                    .map(|s| s.ceil().max(0.0) as u64)
            });
            Err(WebhookError::RateLimited {
                retry_after: answer.retry_after.or(from_body),
            })
        }
        400..=499 => Err(WebhookError::Refused {
            status,
            detail: detail(),
        }),
        500..=599 => Err(WebhookError::Server { status }),
        _ => Err(WebhookError::Malformed(format!("HTTP {status}"))),
    }
}

impl Gateway for WebhookGateway {
    fn id(&self) -> &'static str {
        WebhookSpec.id()
    }

    fn display_name(&self) -> &str {
        &self.cfg.name
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        self.call(recipient, text)
            .map_err(|e| http::without_message(DeliveryError::from(e), text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders_but_not_json_braces() {
        let t = r#"{"a":{"b":"{message}"},"c":"{x_y}{}{ no}"}"#;
        let names: Vec<&str> = placeholders(t).into_iter().map(|(_, _, n)| n).collect();
        assert_eq!(names, ["message", "x_y"]);
    }

    #[test]
    fn renders_with_escaping() {
        let body = r#"{"text":"{message}","to":"{recipient}"}"#;
        let out = render(body, &|n| match n {
            "message" => Some(escape("a \"b\"\n\\", BodyEncoding::Json)),
            "recipient" => Some(escape("x", BodyEncoding::Json)),
            _ => None,
        });
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["text"], "a \"b\"\n\\");
        assert_eq!(escape("a b&c", BodyEncoding::Form), "a%20b%26c");
        assert_eq!(escape("a b", BodyEncoding::Raw), "a b");
    }

    #[test]
    fn url_checks() {
        assert!(check_url("https://ntfy.example.org/").is_ok());
        assert!(check_url("https://m.example.org/_matrix/client/v3/rooms/{recipient}/send/m.room.message/{txn}").is_ok());
        assert!(check_url("https://chat.example.org/v1/spaces/x/messages?key=a&token=b").is_ok());
        assert!(check_url("http://127.0.0.1:9/{recipient}").is_ok());
        assert!(check_url("http://ntfy.example.org/x").is_err());
        assert!(check_url("https://{recipient}.example.org/").is_err());
        assert!(check_url("https://example.org/{message}").is_err());
        assert!(check_url("https://example.org/#frag").is_err());
        assert!(check_url("https://u:p@example.org/").is_err());
    }
}
