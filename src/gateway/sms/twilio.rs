//! Twilio: `POST {url}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form fields `To`, `From` (or `MessagingServiceSid`) and `Body`, HTTP
//! Basic with the Account SID and the auth token. Success is `201` with the
//! new message's `sid`; errors are `{"code", "message", "status"}`.

use serde_json::Value;

use super::error::{SmsError, clean};
use crate::http::{self, HttpAnswer};
use crate::recipient::PhoneNumber;
use crate::secret::Secret;
use crate::uri::form_encode;

/// Who a Twilio message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    /// `From`: a Twilio number or an alphanumeric sender id.
    From(String),
    /// `MessagingServiceSid` (`MG…`).
    MessagingService(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioConfig {
    pub url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub sender: TwilioSender,
}

pub fn send(
    client: &http::Client,
    cfg: &TwilioConfig,
    to: &PhoneNumber,
    text: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    let sender = match &cfg.sender {
        TwilioSender::From(f) => ("From", f.as_str()),
        TwilioSender::MessagingService(s) => ("MessagingServiceSid", s.as_str()),
    };
    let form = [("To", to.as_str()), sender, ("Body", text)];
    let request = client
        .post(format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            cfg.url, cfg.account_sid
        ))
        .basic_auth(&cfg.account_sid, Some(cfg.auth_token.expose()))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form_encode(&form));
    let answer = client
        .exchange(request, secrets)
        .map_err(SmsError::Transport)?;
    interpret(&answer, to, text, secrets)
}

/// Looks the account up (`GET /2010-04-01/Accounts/{sid}.json`): proves
/// the SID and auth token without sending anything.
pub fn account(
    client: &http::Client,
    cfg: &TwilioConfig,
    secrets: &[&str],
) -> Result<String, SmsError> {
    let request = client
        .get(format!(
            "{}/2010-04-01/Accounts/{}.json",
            cfg.url, cfg.account_sid
        ))
        .basic_auth(&cfg.account_sid, Some(cfg.auth_token.expose()));
    let answer = client
        .exchange(request, secrets)
        .map_err(SmsError::Transport)?;
    interpret_account(&answer, secrets)
}

/// Reads the account lookup: only an `active` account can send.
pub fn interpret_account(answer: &HttpAnswer, secrets: &[&str]) -> Result<String, SmsError> {
    let parsed: Option<Value> = serde_json::from_str(&answer.body).ok();
    let text = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(|s| http::excerpt(s, 40, secrets))
            .unwrap_or_default()
    };
    if answer.status == 200 {
        if parsed.is_none() {
            return Err(SmsError::Malformed("a body that is not JSON".to_string()));
        }
        return match text("status").as_str() {
            "active" => Ok(format!(
                "Twilio accepts the account SID and auth token (account active{})",
                match text("type").as_str() {
                    "" => String::new(),
                    t => format!(", {t}"),
                }
            )),
            "" => Err(SmsError::Malformed(
                "the account lookup has no \"status\"".to_string(),
            )),
            other => Err(SmsError::Unauthorized(format!(
                "the Twilio account is {other}, not active: it cannot send"
            ))),
        };
    }
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64);
    let what = match code {
        Some(c) => format!("Twilio {c} ({})", text("message")),
        None => format!("HTTP {}", answer.status),
    };
    Err(match (answer.status, code) {
        (s, _) if s >= 500 => SmsError::Server(what),
        (401, _) | (403, _) | (_, Some(20003)) => {
            SmsError::Unauthorized(format!("{what}: check [sms] account_sid and auth_token"))
        }
        (404, _) | (_, Some(20404)) => {
            SmsError::BadRequest(format!("{what}: no such account or API at this URL"))
        }
        (429, _) => SmsError::RateLimited {
            retry_after: answer.retry_after,
        },
        _ => SmsError::Refused(what),
    })
}

/// Reads Twilio's answer.
/// `sent` is the message that was sent: kept out of every error text.
pub fn interpret(
    answer: &HttpAnswer,
    to: &PhoneNumber,
    sent: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    let parsed: Option<Value> = serde_json::from_str(&answer.body).ok();
    if answer.status == 201 || answer.status == 200 {
        let v = parsed.ok_or_else(|| SmsError::Malformed("a body that is not JSON".to_string()))?;
        let sid = v.get("sid").and_then(Value::as_str).unwrap_or("");
        if sid.is_empty() {
            return Err(SmsError::Malformed("no message \"sid\"".to_string()));
        }
        return match v.get("status").and_then(Value::as_str) {
            Some("failed") | Some("undelivered") | Some("canceled") => {
                Err(SmsError::Refused(format!(
                    "message status {:?}",
                    v.get("status").and_then(Value::as_str).unwrap_or("")
                )))
            }
            _ => Ok(()),
        };
    }
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64);
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(|m| clean(m, to, secrets, sent))
        .unwrap_or_default();
    let what = match code {
        Some(c) => format!("Twilio {c} ({message})"),
        None => format!("HTTP {}", answer.status),
    };
    Err(match (answer.status, code) {
        (s, _) if s >= 500 => SmsError::Server(what),
        (401, _) | (403, _) | (_, Some(20003)) => {
            SmsError::Unauthorized(format!("{what}: check [sms] account_sid and auth_token"))
        }
        (404, _) | (_, Some(20404)) => {
            SmsError::BadRequest(format!("{what}: no such account or API at this URL"))
        }
        (429, _) | (_, Some(20429)) => SmsError::RateLimited {
            retry_after: answer.retry_after,
        },
        // The sender is not a number of this account, or not SMS-capable.
        (_, Some(21606)) | (_, Some(21212)) | (_, Some(21659)) | (_, Some(21660)) => {
            SmsError::BadSender(what)
        }
        // Invalid, non-mobile, opted out (STOP), unverified on a trial
        // account, or a region the account may not send to.
        (_, Some(21211))
        | (_, Some(21614))
        | (_, Some(21610))
        | (_, Some(21608))
        | (_, Some(21408)) => SmsError::BadRecipient(what),
        (_, Some(21617)) => SmsError::TooLong(what),
        (_, Some(20003..=20099)) => SmsError::Unauthorized(what),
        (_, None) if parsed.is_none() => SmsError::Malformed(format!(
            "HTTP {} with a body that is not JSON",
            answer.status
        )),
        _ => SmsError::Refused(what),
    })
}
