//! Telegram Bot API: `sendMessage` for codes, `getMe` and `getUpdates` for
//! the admin CLI, inline keyboards, `answerCallbackQuery`,
//! `editMessageText` and `getWebhookInfo` for `pam-gatewayd`; the
//! `[telegram]` section and chat ids ([`TelegramSpec`]).
//!
//! The bot token sits in the URL path (`/bot<token>/<method>`), and reqwest
//! errors print their URL: every error leaves this file through
//! `TelegramClient::scrub` or [`http::Client::exchange`], which drop the
//! URL and redact the token. Each call is one [`http::Client::exchange`]:
//! connect to last byte within the client's timeout.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::delivery::{DeliveryError, Gateway};
use super::health::{Health, Problem};
use super::spec::{
    GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec, SectionCheck, read_section_as,
    section_as,
};
use crate::http::{self, HttpSettings, LazyClient};
use crate::redact::{mask, redact};
use crate::secret::Secret;
use crate::section::{SectionError, check_service_url};
use crate::secure_file::Owner;
use crate::toml_errors::{ParseError, TomlItem, toml_struct};

/// Telegram in the list of gateways: `[telegram]`; its recipients are chat
/// ids.
pub struct TelegramSpec;

impl GatewaySpec for TelegramSpec {
    fn id(&self) -> &'static str {
        "telegram"
    }

    fn display_name(&self) -> &'static str {
        "Telegram"
    }

    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError> {
        read_section_as(section, RawTelegram::read, parse_section)
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        ChatId::parse(recipient).map(|_| ())
    }

    /// A chat id may be written as a TOML integer too.
    fn read_recipient(&self, value: TomlItem<'_>) -> Result<Result<String, String>, ParseError> {
        let text = match value.deserialize::<RawChatId>()? {
            RawChatId::Int(i) => i.to_string(),
            RawChatId::Text(s) => s,
        };
        Ok(ChatId::parse(&text).map(|c| c.0))
    }
}

impl GatewayAdmin for TelegramSpec {
    fn recipient_noun(&self) -> &'static str {
        "chat"
    }

    fn show_recipient(&self, recipient: &str) -> String {
        format!("chat {}", mask(recipient))
    }

    /// `getMe`: the token is accepted and the bot named.
    fn health(&self, section: &dyn GatewaySection, _owner: Owner) -> Option<Health> {
        let cfg = section_as::<TelegramConfig>(section)?;
        Some(match TelegramClient::new(cfg).and_then(|c| c.get_me()) {
            Ok(bot) => Health::Ok(format!("bot @{} answers at {}", bot.username, cfg.api_url)),
            Err(TelegramError::Unauthorized) => Health::Refused(Problem {
                what: "the bot token is refused (401/404)".to_string(),
                fix: "Copy the current token from @BotFather and run `pam-gateway \
                      configure telegram`"
                    .to_string(),
            }),
            Err(e) => Health::Unreachable(Problem {
                what: format!("{} cannot be used ({e})", cfg.api_url),
                fix: "Check the network, DNS, firewall, or api_url and proxy in gateway.toml"
                    .to_string(),
            }),
        })
    }
}

pub const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";

/// A Telegram chat id, kept as its decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatId(String);

impl ChatId {
    /// Accepts a plausible chat id: an optional minus sign (groups) and at
    /// most 16 digits, not zero.
    pub fn parse(s: &str) -> Result<ChatId, String> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty()
            || digits.len() > 16
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.bytes().all(|b| b == b'0')
        {
            return Err(
                "is not a Telegram chat id (digits, optionally with a leading minus; \
                 `pam-gateway enroll` finds it for you)"
                    .to_string(),
            );
        }
        Ok(ChatId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A chat id as users.toml writes it: read as `#[derive(Deserialize)]
/// #[serde(untagged, expecting = "...")]` over `Int(i64)` and
/// `Text(String)` reads it, same values and same message for anything
/// else, by a visitor of its own: the derive buffers the value in serde's
/// `Content` first, whose code costs module size (BENCHMARKS.md). A unit
/// test holds the two together.
#[derive(Debug, PartialEq, Eq)]
enum RawChatId {
    Int(i64),
    Text(String),
}

/// serde's untagged enums give their `expecting` text as the whole message.
const CHAT_ID_EXPECTED: &str = "a Telegram chat id, as a string or an integer";

impl<'de> Deserialize<'de> for RawChatId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawChatId, D::Error> {
        d.deserialize_any(ChatIdVisitor)
    }
}

struct ChatIdVisitor;

impl ChatIdVisitor {
    fn other<E: serde::de::Error>() -> Result<RawChatId, E> {
        Err(E::custom(CHAT_ID_EXPECTED))
    }
}

impl<'de> serde::de::Visitor<'de> for ChatIdVisitor {
    type Value = RawChatId;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(CHAT_ID_EXPECTED)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawChatId, E> {
        Ok(RawChatId::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawChatId, E> {
        i64::try_from(v)
            .map(RawChatId::Int)
            .or_else(|_| Self::other())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawChatId, E> {
        Ok(RawChatId::Text(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<RawChatId, E> {
        Ok(RawChatId::Text(v))
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawChatId, E> {
        match std::str::from_utf8(v) {
            Ok(text) => self.visit_str(text),
            Err(_) => Self::other(),
        }
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<RawChatId, E> {
        Self::other()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<RawChatId, E> {
        Self::other()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<RawChatId, E> {
        Self::other()
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<RawChatId, E> {
        Self::other()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, _: D) -> Result<RawChatId, D::Error> {
        Self::other()
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        _: D,
    ) -> Result<RawChatId, D::Error> {
        Self::other()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<RawChatId, A::Error> {
        Self::other()
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<RawChatId, A::Error> {
        Self::other()
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _: A) -> Result<RawChatId, A::Error> {
        Self::other()
    }
}

toml_struct! {
    #[derive(Debug)]
    pub struct RawTelegram {
        bot_token: String,
        api_url: Option<String>,
        timeout: Option<u64>,
        connect_timeout: Option<u64>,
        proxy: Option<String>,
    }
}

/// `[telegram]` of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    pub bot_token: Secret,
    pub api_url: String,
    pub http: HttpSettings,
}

/// Checks a Telegram bot token's shape: `<bot id>:<secret>`, the secret at
/// least 30 of `[A-Za-z0-9_-]`.
pub fn is_valid_bot_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.len() <= 20
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 30
        && secret.len() <= 200
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl GatewayConnect for TelegramSpec {
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>> {
        section_as::<TelegramConfig>(section)
            .map(|c| Box::new(TelegramGateway::new(c)) as Box<dyn Gateway>)
    }
}

impl GatewaySection for TelegramConfig {}

/// Validates `[telegram]`.
pub(crate) fn parse_section(
    raw: RawTelegram,
    e: SectionError,
) -> Result<TelegramConfig, ParseError> {
    if !is_valid_bot_token(&raw.bot_token) {
        return Err(e(
            "bot_token",
            "is not a bot token: expected the whole token BotFather gave, \
             digits, a colon, then at least 30 of [A-Za-z0-9_-] (value not shown)"
                .to_string(),
        ));
    }
    let api_url = check_service_url(raw.api_url.as_deref().unwrap_or(DEFAULT_TELEGRAM_API))
        .map_err(|m| e("api_url", m))?;
    let http =
        HttpSettings::from_keys(raw.timeout, raw.connect_timeout, raw.proxy.as_ref(), 10, e)?;
    Ok(TelegramConfig {
        bot_token: Secret::new(raw.bot_token.clone()),
        api_url,
        http,
    })
}

/// What went wrong talking to Telegram, one variant per case an admin
/// handles differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramError {
    /// Nothing listens at the API address.
    ConnectionRefused(String),
    /// No answer (or no complete answer) within the timeout.
    Timeout,
    /// Any other transport failure: DNS, TLS, reset connection.
    Transport(String),
    /// This machine could not send: no client, descriptor, memory or
    /// thread (see [`http::TransportError::Local`]).
    Local(String),
    /// 400 "chat not found": the user never pressed Start in the bot.
    ChatNotFound,
    /// 401 / 404: the token is wrong or revoked.
    Unauthorized,
    /// 403: the user blocked the bot.
    Blocked(String),
    /// 429: too many messages; Telegram says when to retry.
    RateLimited { retry_after: Option<u64> },
    /// 409 on getUpdates: a webhook is set for this bot.
    WebhookActive,
    /// 409 on getUpdates without a webhook: another getUpdates request for
    /// this bot (another program, or a second copy of this one) took over.
    PollConflict,
    /// Another 4xx with Telegram's description.
    BadRequest { status: u16, description: String },
    /// 5xx from Telegram (or from a proxy in front of it).
    Server { status: u16 },
    /// An answer that is not the Bot API's JSON, or `ok` missing/false
    /// without an error code.
    Malformed(String),
}

impl std::fmt::Display for TelegramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use TelegramError::*;
        match self {
            ConnectionRefused(d) => write!(f, "connection refused ({d})"),
            Timeout => f.write_str("no answer within the timeout"),
            Transport(d) => write!(f, "transport error: {d}"),
            Local(d) => write!(f, "this machine could not send: {d}"),
            ChatNotFound => f.write_str(
                "chat not found: the user must open the bot and press Start (or re-enroll)",
            ),
            Unauthorized => {
                f.write_str("the bot token was refused (401/404): check [telegram] bot_token")
            }
            Blocked(d) => write!(f, "the user blocked the bot ({d})"),
            RateLimited {
                retry_after: Some(s),
            } => write!(f, "rate limited by Telegram, retry after {s} s"),
            RateLimited { retry_after: None } => f.write_str("rate limited by Telegram"),
            WebhookActive => f.write_str(
                "a webhook is set for this bot, so getUpdates is refused (409): \
                 remove it with deleteWebhook or use another bot",
            ),
            PollConflict => f.write_str(
                "another program is reading this bot's updates (409: terminated by other \
                 getUpdates request): stop it, or wait until it is done, and try again",
            ),
            BadRequest {
                status,
                description,
            } => write!(f, "refused ({status}): {description}"),
            Server { status } => write!(f, "Telegram server error {status}"),
            Malformed(d) => write!(f, "unreadable answer: {d}"),
        }
    }
}

impl std::error::Error for TelegramError {}

impl From<TelegramError> for DeliveryError {
    fn from(e: TelegramError) -> DeliveryError {
        use TelegramError::*;
        let text = e.to_string();
        match e {
            ConnectionRefused(_) => DeliveryError::Refused(text),
            Timeout | Transport(_) => DeliveryError::Unreachable(text),
            Server { .. } | Malformed(_) => DeliveryError::ServiceFailed(text),
            Local(_) => DeliveryError::Local(text),
            ChatNotFound | Blocked(_) | BadRequest { .. } => DeliveryError::Rejected {
                reason: text,
                retry_after: None,
            },
            RateLimited { retry_after } => DeliveryError::Rejected {
                reason: text,
                retry_after,
            },
            Unauthorized | WebhookActive | PollConflict => DeliveryError::Misconfigured(text),
        }
    }
}

/// The bot as `getMe` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotInfo {
    pub id: i64,
    pub username: String,
    #[serde(default)]
    pub first_name: String,
}

/// One incoming message from `getUpdates`, reduced to what enrolment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub update_id: i64,
    pub chat_id: Option<i64>,
    pub chat_type: Option<String>,
    pub text: Option<String>,
    /// `message.from`: who sent it. The id and username identify the
    /// account; first and last name are whatever its owner chose.
    pub from_id: Option<i64>,
    pub from_username: Option<String>,
    pub from_name: Option<String>,
    pub from_last_name: Option<String>,
}

/// `text` without `token` and its secret half (what follows the `:`).
fn scrub_token(token: &str, text: &str) -> String {
    let secret_half = token.split_once(':').map(|(_, s)| s).unwrap_or("");
    redact(text, &[token, secret_half])
}

/// A Bot API client for one bot.
pub struct TelegramClient {
    api_url: String,
    token: Secret,
    client: http::Client,
}

impl TelegramClient {
    pub fn new(cfg: &TelegramConfig) -> Result<TelegramClient, TelegramError> {
        Self::with_timeout(cfg, cfg.http.timeout)
    }

    /// A client whose overall timeout is `timeout` (long polls need more
    /// than the configured delivery timeout): each call ends within it.
    pub fn with_timeout(
        cfg: &TelegramConfig,
        timeout: Duration,
    ) -> Result<TelegramClient, TelegramError> {
        Self::with_client(cfg, http::client_with_timeout(&cfg.http, timeout))
    }

    /// A client that keeps its connection to the API open between calls
    /// (`pam-gatewayd`'s sends): see [`http::warm_client`].
    pub fn warm(cfg: &TelegramConfig) -> Result<TelegramClient, TelegramError> {
        Self::with_client(cfg, http::warm_client(&cfg.http, cfg.http.timeout))
    }

    /// The client for `cfg` over `client` (a failure to build it is told
    /// without the token).
    fn with_client(
        cfg: &TelegramConfig,
        client: Result<http::Client, http::TransportError>,
    ) -> Result<TelegramClient, TelegramError> {
        let client =
            client.map_err(|e| transport_error(e, &|t| scrub_token(cfg.bot_token.expose(), t)))?;
        Ok(TelegramClient {
            api_url: cfg.api_url.clone(),
            token: cfg.bot_token.clone(),
            client,
        })
    }

    /// Removes the token (and its secret half) from any text.
    fn scrub(&self, text: &str) -> String {
        scrub_token(self.token.expose(), text)
    }

    /// Calls a Bot API method with a JSON body and returns `result`.
    pub fn call(&self, method: &str, body: &Value) -> Result<Value, TelegramError> {
        self.call_sending(method, body, None)
    }

    /// [`TelegramClient::call`] for a request that carries `message`:
    /// whatever the answer quotes of it stays out of the error.
    fn call_sending(
        &self,
        method: &str,
        body: &Value,
        message: Option<&str>,
    ) -> Result<Value, TelegramError> {
        let url = Secret::new(format!(
            "{}/bot{}/{}",
            self.api_url,
            self.token.expose(),
            method
        ));
        let token = self.token.expose();
        let secret_half = token.split_once(':').map(|(_, s)| s).unwrap_or("");
        let answer = self
            .client
            .exchange(
                self.client.post(url.expose()).json(body),
                &[token, secret_half],
            )
            .map_err(|e| transport_error(e, &|t| self.scrub(t)))?;
        self.interpret(answer.status, &answer.body, message)
    }

    /// Maps an HTTP status and body to the result or a typed error.
    fn interpret(
        &self,
        status: u16,
        body: &str,
        message: Option<&str>,
    ) -> Result<Value, TelegramError> {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let description = parsed
            .as_ref()
            .and_then(|v| v.get("description"))
            .and_then(Value::as_str)
            .map(|d| {
                let d = match message {
                    Some(m) => http::redact_message(d, m),
                    None => d.to_string(),
                };
                self.scrub(&d).chars().take(200).collect::<String>()
            })
            .unwrap_or_default();
        if let Some(v) = &parsed
            && v.get("ok") == Some(&Value::Bool(true))
            && (200..300).contains(&status)
        {
            return v
                .get("result")
                .cloned()
                .ok_or_else(|| TelegramError::Malformed("\"ok\":true without \"result\"".into()));
        }
        if status >= 500 {
            return Err(TelegramError::Server { status });
        }
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("error_code"))
            .and_then(Value::as_u64)
            .map(|c| c as u16)
            .unwrap_or(status);
        match code {
            400 if description.to_ascii_lowercase().contains("chat not found") => {
                Err(TelegramError::ChatNotFound)
            }
            401 | 404 => Err(TelegramError::Unauthorized),
            403 => Err(TelegramError::Blocked(description)),
            409 if description.to_ascii_lowercase().contains("webhook") => {
                Err(TelegramError::WebhookActive)
            }
            409 => Err(TelegramError::PollConflict),
            429 => Err(TelegramError::RateLimited {
                retry_after: parsed
                    .as_ref()
                    .and_then(|v| v.pointer("/parameters/retry_after"))
                    .and_then(Value::as_u64),
            }),
            400..=499 if parsed.is_some() => Err(TelegramError::BadRequest {
                status: code,
                description,
            }),
            _ if parsed.is_none() => Err(TelegramError::Malformed(format!(
                "HTTP {status} with a body that is not JSON"
            ))),
            _ => Err(TelegramError::Malformed(format!(
                "HTTP {status} without \"ok\": true"
            ))),
        }
    }

    /// Sends `text` to `chat_id` as plain text (no parse_mode: Markdown
    /// breaks on odd user or host names).
    pub fn send_message(&self, chat_id: &str, text: &str) -> Result<(), TelegramError> {
        // Numeric ids go as JSON numbers, as the API documents them.
        let chat: Value = match chat_id.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(chat_id),
        };
        let result = self.call_sending(
            "sendMessage",
            &json!({ "chat_id": chat, "text": text, "disable_web_page_preview": true }),
            Some(text),
        )?;
        if result.get("message_id").is_none() {
            return Err(TelegramError::Malformed(
                "sendMessage result has no message_id".into(),
            ));
        }
        Ok(())
    }

    /// `getMe`: checks the token and names the bot.
    pub fn get_me(&self) -> Result<BotInfo, TelegramError> {
        let result = self.call("getMe", &json!({}))?;
        serde_json::from_value(result)
            .map_err(|_| TelegramError::Malformed("getMe result is not a bot".into()))
    }

    /// `getUpdates` long poll: waits up to `timeout_secs` for updates with
    /// `update_id >= offset` (passing an offset confirms earlier ones).
    pub fn get_updates(
        &self,
        offset: Option<i64>,
        timeout_secs: u64,
    ) -> Result<Vec<Update>, TelegramError> {
        let mut body = json!({ "timeout": timeout_secs, "allowed_updates": ["message"] });
        if let Some(o) = offset {
            body["offset"] = json!(o);
        }
        let result = self.call("getUpdates", &body)?;
        let list = result
            .as_array()
            .ok_or_else(|| TelegramError::Malformed("getUpdates result is not a list".into()))?;
        Ok(list.iter().filter_map(parse_message_update).collect())
    }

    /// `getUpdates` long poll for a bot's one reader (`pam-gatewayd`):
    /// text messages and `callback_query` (a tap on an inline button).
    /// Every update comes back, those of other kinds as
    /// [`BotUpdate::Other`], so that the next offset confirms them too.
    pub fn poll_updates(
        &self,
        offset: Option<i64>,
        timeout_secs: u64,
    ) -> Result<Vec<BotUpdate>, TelegramError> {
        let mut body = json!({
            "timeout": timeout_secs,
            "allowed_updates": ["message", "callback_query"],
        });
        if let Some(o) = offset {
            body["offset"] = json!(o);
        }
        let result = self.call("getUpdates", &body)?;
        let list = result
            .as_array()
            .ok_or_else(|| TelegramError::Malformed("getUpdates result is not a list".into()))?;
        Ok(list
            .iter()
            .filter_map(|u| {
                let update_id = u.get("update_id")?.as_i64()?;
                Some(if let Some(q) = u.get("callback_query") {
                    match parse_callback_query(q) {
                        Some(query) => BotUpdate::Callback { update_id, query },
                        None => BotUpdate::Other { update_id },
                    }
                } else if u.get("message").is_some() {
                    match parse_message_update(u) {
                        Some(m) => BotUpdate::Message(m),
                        None => BotUpdate::Other { update_id },
                    }
                } else {
                    BotUpdate::Other { update_id }
                })
            })
            .collect())
    }

    /// Sends `text` to `chat_id` with `reply_markup` (an inline keyboard)
    /// and returns the message's id, which later edits name.
    pub fn send_with_markup(
        &self,
        chat_id: i64,
        text: &str,
        reply_markup: &Value,
    ) -> Result<i64, TelegramError> {
        self.send_for_id(
            &json!({
                "chat_id": chat_id,
                "text": text,
                "disable_web_page_preview": true,
                "reply_markup": reply_markup,
            }),
            text,
        )
    }

    /// Sends plain `text` to `chat_id` and returns the message's id.
    pub fn send_plain(&self, chat_id: i64, text: &str) -> Result<i64, TelegramError> {
        self.send_for_id(
            &json!({ "chat_id": chat_id, "text": text, "disable_web_page_preview": true }),
            text,
        )
    }

    /// `sendMessage` with `body` (whose text is `text`): the message's id.
    fn send_for_id(&self, body: &Value, text: &str) -> Result<i64, TelegramError> {
        let result = self.call_sending("sendMessage", body, Some(text))?;
        result
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| TelegramError::Malformed("sendMessage result has no message_id".into()))
    }

    /// `answerCallbackQuery`: ends the tap's spinner in the user's app and
    /// shows `text` (at most 200 characters) as a short notice.
    pub fn answer_callback_query(&self, id: &str, text: &str) -> Result<(), TelegramError> {
        let text: String = text.chars().take(200).collect();
        self.call(
            "answerCallbackQuery",
            &json!({ "callback_query_id": id, "text": text }),
        )
        .map(|_| ())
    }

    /// `editMessageText` with the inline keyboard removed: the message's
    /// final state.
    pub fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
    ) -> Result<(), TelegramError> {
        self.call_sending(
            "editMessageText",
            &json!({
                "chat_id": chat_id,
                "message_id": message_id,
                "text": text,
                "reply_markup": { "inline_keyboard": [] },
            }),
            Some(text),
        )
        .map(|_| ())
    }

    /// `getWebhookInfo`: the webhook's URL when one is set (it stops
    /// getUpdates), `None` when there is none.
    pub fn webhook_url(&self) -> Result<Option<String>, TelegramError> {
        let result = self.call("getWebhookInfo", &json!({}))?;
        Ok(result
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string))
    }

    /// Confirms every update below `offset` without waiting: a getUpdates
    /// with `limit` 1 and no long poll. The one update it may return stays
    /// unconfirmed, for whoever reads the updates next.
    pub fn confirm_updates(&self, offset: i64) -> Result<(), TelegramError> {
        self.call(
            "getUpdates",
            &json!({ "offset": offset, "limit": 1, "timeout": 0, "allowed_updates": ["message"] }),
        )
        .map(|_| ())
    }
}

/// One update of any kind, for the bot's one reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotUpdate {
    /// A message (text or not).
    Message(Update),
    /// A tap on an inline button.
    Callback {
        update_id: i64,
        query: CallbackQuery,
    },
    /// Anything else: only its id matters (to confirm it).
    Other { update_id: i64 },
}

impl BotUpdate {
    pub fn update_id(&self) -> i64 {
        match self {
            BotUpdate::Message(u) => u.update_id,
            BotUpdate::Callback { update_id, .. } | BotUpdate::Other { update_id } => *update_id,
        }
    }
}

/// Longest `callback_data` Telegram allows, in bytes.
pub const MAX_CALLBACK_DATA: usize = 64;

/// A `callback_query`: who tapped which button under which message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackQuery {
    /// For `answerCallbackQuery`.
    pub id: String,
    /// `from.id`: the account that tapped (on a forwarded message, not
    /// necessarily the chat's user).
    pub from_id: i64,
    /// The chat and message the button is under, when Telegram says.
    pub chat_id: Option<i64>,
    pub message_id: Option<i64>,
    /// The button's `callback_data` (at most [`MAX_CALLBACK_DATA`] bytes;
    /// longer is dropped).
    pub data: Option<String>,
}

fn parse_callback_query(q: &Value) -> Option<CallbackQuery> {
    let id = q.get("id")?.as_str()?;
    if id.is_empty() || id.len() > 256 {
        return None;
    }
    Some(CallbackQuery {
        id: id.to_string(),
        from_id: q.pointer("/from/id")?.as_i64()?,
        chat_id: q.pointer("/message/chat/id").and_then(Value::as_i64),
        message_id: q.pointer("/message/message_id").and_then(Value::as_i64),
        data: q
            .get("data")
            .and_then(Value::as_str)
            .filter(|d| d.len() <= MAX_CALLBACK_DATA)
            .map(str::to_string),
    })
}

fn parse_message_update(u: &Value) -> Option<Update> {
    let update_id = u.get("update_id")?.as_i64()?;
    let msg = u.get("message");
    let text_of = |m: Option<&Value>, p: &str| {
        m.and_then(|m| m.pointer(p))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(Update {
        update_id,
        chat_id: msg
            .and_then(|m| m.pointer("/chat/id"))
            .and_then(Value::as_i64),
        chat_type: text_of(msg, "/chat/type"),
        text: text_of(msg, "/text"),
        from_id: msg
            .and_then(|m| m.pointer("/from/id"))
            .and_then(Value::as_i64),
        from_username: text_of(msg, "/from/username"),
        from_name: text_of(msg, "/from/first_name"),
        from_last_name: text_of(msg, "/from/last_name"),
    })
}

/// Telegram as a [`Gateway`]: the recipient is a chat id. The HTTP client
/// is built on first use, so a login that sends nothing costs nothing.
pub struct TelegramGateway {
    cfg: TelegramConfig,
    client: LazyClient<TelegramClient>,
}

impl TelegramGateway {
    pub fn new(cfg: &TelegramConfig) -> TelegramGateway {
        TelegramGateway {
            cfg: cfg.clone(),
            client: LazyClient::new(),
        }
    }

    fn client(&self) -> Result<&TelegramClient, TelegramError> {
        self.client.get_or_build(|| TelegramClient::new(&self.cfg))
    }
}

impl Gateway for TelegramGateway {
    fn id(&self) -> &'static str {
        TelegramSpec.id()
    }

    fn display_name(&self) -> &'static str {
        TelegramSpec.display_name()
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        self.client()
            .and_then(|c| c.send_message(recipient, text))
            .map_err(|e| http::without_message(DeliveryError::from(e), text))
    }
}

/// A transport failure as a [`TelegramError`], its text through `scrub`.
fn transport_error(e: http::TransportError, scrub: &dyn Fn(&str) -> String) -> TelegramError {
    match e {
        http::TransportError::Refused(t) => TelegramError::ConnectionRefused(scrub(&t)),
        http::TransportError::Timeout => TelegramError::Timeout,
        http::TransportError::Local(t) => TelegramError::Local(scrub(&t)),
        http::TransportError::Other(t) => TelegramError::Transport(scrub(&t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `RawChatId` was: serde's untagged derive.
    #[derive(Debug, Deserialize)]
    #[serde(untagged, expecting = "a Telegram chat id, as a string or an integer")]
    enum DerivedChatId {
        Int(i64),
        Text(String),
    }

    #[test]
    fn chat_ids_read_as_the_untagged_derive_read_them() {
        let file = std::path::Path::new("/users.toml");
        for value in [
            "123456977",
            "-1001234567890",
            "0x1f",
            "+5",
            "9223372036854775807",
            "\"123\"",
            "'-42'",
            "\"\"",
            "\"\"\"multi\nline\"\"\"",
            "1.5",
            "1e3",
            "inf",
            "true",
            "[1]",
            "[]",
            "{ id = 1 }",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
        ] {
            let text = format!("\n\nchat = {value}\n");
            let read = |n: usize| {
                crate::toml_errors::parse_entries(file, &text)
                    .expect("toml")
                    .into_iter()
                    .nth(n)
                    .expect("entry")
                    .value
            };
            let ours = read(0).deserialize::<RawChatId>();
            let derived = read(0).deserialize::<DerivedChatId>().map(|d| match d {
                DerivedChatId::Int(i) => RawChatId::Int(i),
                DerivedChatId::Text(t) => RawChatId::Text(t),
            });
            assert_eq!(ours, derived, "{value}");
        }
    }

    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

    #[test]
    fn token_shapes() {
        assert!(is_valid_bot_token(TOKEN));
        assert!(!is_valid_bot_token("AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c"));
        assert!(!is_valid_bot_token(
            "abc:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c"
        ));
        assert!(!is_valid_bot_token(
            "123:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9w/3c"
        ));
        assert!(!is_valid_bot_token("123:short"));
    }
}
