//! websms (LINK Mobility) REST: `POST {url}/rest/smsmessaging/text` with
//! `{"messageContent", "recipientAddressList": [number as integer],
//! "maxSmsPerMessage"}`, HTTP Basic or a Bearer token. Success is
//! `statusCode` 2000 (sent) or 2001 (queued); everything else is an error
//! whose code says which.

use serde_json::{Value, json};

use super::error::{SmsError, clean};
use crate::http::{self, HttpAnswer};
use crate::recipient::PhoneNumber;
use crate::secret::Secret;

/// How websms is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSmsAuth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSmsConfig {
    pub url: String,
    pub auth: WebSmsAuth,
    /// `maxSmsPerMessage`: how many SMS one code may take.
    pub max_parts: u32,
}

pub fn send(
    client: &http::Client,
    cfg: &WebSmsConfig,
    to: &PhoneNumber,
    text: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    let number: u64 = to
        .digits()
        .parse()
        .map_err(|_| SmsError::BadRecipient("not a number".to_string()))?;
    let body = json!({
        "messageContent": text,
        "recipientAddressList": [number],
        "maxSmsPerMessage": cfg.max_parts,
    });
    let mut request = client
        .post(format!("{}/rest/smsmessaging/text", cfg.url))
        .json(&body);
    request = match &cfg.auth {
        WebSmsAuth::Basic { username, password } => {
            request.basic_auth(username, Some(password.expose()))
        }
        WebSmsAuth::Bearer(token) => request.bearer_auth(token.expose()),
    };
    let answer = client
        .exchange(request, secrets)
        .map_err(SmsError::Transport)?;
    interpret(&answer, to, text, secrets)
}

/// Reads websms's answer: `statusCode` decides when present.
/// `sent` is the message that was sent: kept out of every error text.
pub fn interpret(
    answer: &HttpAnswer,
    to: &PhoneNumber,
    sent: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    let parsed: Option<Value> = serde_json::from_str(&answer.body).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("statusCode"))
        .and_then(Value::as_u64);
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("statusMessage"))
        .and_then(Value::as_str)
        .map(|m| clean(m, to, secrets, sent))
        .unwrap_or_default();
    let Some(code) = code else {
        return Err(match answer.status {
            401 | 403 => SmsError::Unauthorized(format!(
                "HTTP {}: check [sms] token or username and password",
                answer.status
            )),
            404 | 405 => SmsError::BadRequest(format!(
                "HTTP {}: no websms REST API at this URL",
                answer.status
            )),
            429 => SmsError::RateLimited {
                retry_after: answer.retry_after,
            },
            s if s >= 500 => SmsError::Server(format!("HTTP {s}")),
            s => SmsError::Malformed(format!("HTTP {s} without a statusCode")),
        });
    };
    let what = if message.is_empty() {
        format!("websms {code}")
    } else {
        format!("websms {code} ({message})")
    };
    if code == 2000 || code == 2001 {
        return Ok(());
    }
    Err(match code {
        4001 | 4014 | 4018 | 4020 | 4021 | 4022 => SmsError::Unauthorized(format!(
            "{what}: check [sms] token or username and password, and the account's IP allow-list"
        )),
        4002 => SmsError::BadRecipient(what),
        4003 => SmsError::BadSender(what),
        4013 => SmsError::NoCredit(what),
        4012 | 4023 | 4024 | 4025 => SmsError::RateLimited {
            retry_after: answer.retry_after,
        },
        4017 | 4026 => SmsError::TooLong(what),
        4000 | 4019 => SmsError::BadRequest(what),
        5000..=5999 => SmsError::Server(what),
        // 2002 is "test OK": nothing was sent, and we never ask for a test.
        _ => SmsError::Refused(what),
    })
}
