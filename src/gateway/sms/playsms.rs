//! playSMS webservices: `GET {url}?app=ws&u=USER&h=TOKEN&op=pv&to=..&msg=..`.
//!
//! The answer is JSON by default: `{"data":[{"status":"OK","error":"0",..}]}`
//! on success, `{"status":"ERR","error":"100",..}` on failure; older
//! versions and other formats answer `OK ..` or `ERR nnn` as plain text.
//! The token travels in the query string, so every error is built without
//! the URL and with the token (plain and percent-encoded) redacted.

use serde_json::Value;

use super::error::{SmsError, clean};
use crate::http::{self, HttpAnswer};
use crate::recipient::PhoneNumber;
use crate::secret::Secret;
use crate::uri::form_encode;

/// playSMS: webservices URL (`.../index.php`), user, webservices token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaySmsConfig {
    pub url: String,
    pub username: String,
    pub token: Secret,
    /// Sender id (`from`), if the playSMS account may set one.
    pub from: Option<String>,
}

pub fn send(
    client: &http::Client,
    cfg: &PlaySmsConfig,
    to: &PhoneNumber,
    text: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    let mut query: Vec<(&str, &str)> = vec![
        ("app", "ws"),
        ("u", &cfg.username),
        ("h", cfg.token.expose()),
        ("op", "pv"),
        ("to", to.as_str()),
        ("msg", text),
    ];
    if let Some(from) = &cfg.from {
        query.push(("from", from));
    }
    if !text.is_ascii() {
        query.push(("unicode", "1"));
    }
    // The URL holds the token: wiped when dropped.
    let url = Secret::new(format!("{}?{}", cfg.url, form_encode(&query)));
    let answer = client
        .exchange(client.get(url.expose()), secrets)
        .map_err(SmsError::Transport)?;
    interpret(&answer, to, text, secrets)
}

/// The account's credit (`op=cr`): proves URL, user and token without
/// sending anything.
pub fn credit(
    client: &http::Client,
    cfg: &PlaySmsConfig,
    secrets: &[&str],
) -> Result<String, SmsError> {
    let query: Vec<(&str, &str)> = vec![
        ("app", "ws"),
        ("u", &cfg.username),
        ("h", cfg.token.expose()),
        ("op", "cr"),
    ];
    let url = Secret::new(format!("{}?{}", cfg.url, form_encode(&query)));
    let answer = client
        .exchange(client.get(url.expose()), secrets)
        .map_err(SmsError::Transport)?;
    interpret_credit(&answer)
}

/// Reads the answer to `op=cr`: `{"status":"OK","credit":".."}` or `OK 12.5`.
pub fn interpret_credit(answer: &HttpAnswer) -> Result<String, SmsError> {
    check_status(answer.status)?;
    let body = answer.body.trim();
    let (status, code, credit) = match serde_json::from_str::<Value>(body) {
        Ok(v) => (
            v.get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            match v.get("error") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            },
            match v.get("credit") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            },
        ),
        Err(_) => match body.strip_prefix("ERR") {
            Some(rest) => (
                "ERR".to_string(),
                rest.trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect(),
                String::new(),
            ),
            None => match body.strip_prefix("OK") {
                Some(rest) => ("OK".to_string(), String::new(), rest.trim().to_string()),
                None => (String::new(), String::new(), String::new()),
            },
        },
    };
    match status.as_str() {
        "OK" => {
            let credit: String = credit
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
                .take(20)
                .collect();
            Ok(if credit.is_empty() {
                "playSMS accepts the user and token".to_string()
            } else {
                format!("playSMS accepts the user and token (credit {credit})")
            })
        }
        "ERR" => Err(error_code(&code, "")),
        _ => Err(SmsError::Malformed(
            "the credit query got neither OK nor ERR: is [sms] url the webservices address \
             (…/index.php)?"
                .to_string(),
        )),
    }
}

/// The HTTP status of a playSMS answer, before its body is read.
fn check_status(status: u16) -> Result<(), SmsError> {
    match status {
        200 => Ok(()),
        401 | 403 => Err(SmsError::Unauthorized(format!(
            "HTTP {status} from the playSMS server"
        ))),
        404 | 405 => Err(SmsError::BadRequest(format!(
            "HTTP {status}: no playSMS webservices at this URL (it ends in /index.php)"
        ))),
        s if s >= 500 => Err(SmsError::Server(format!("HTTP {s}"))),
        s => Err(SmsError::Refused(format!("HTTP {s}"))),
    }
}

/// Reads playSMS's answer: success only with an `OK` status.
/// `sent` is the message that was sent: kept out of every error text.
pub fn interpret(
    answer: &HttpAnswer,
    to: &PhoneNumber,
    sent: &str,
    secrets: &[&str],
) -> Result<(), SmsError> {
    check_status(answer.status)?;
    let body = answer.body.trim();
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        // An error at top level, or the first (only) recipient's entry.
        let entry = match v.get("data").and_then(Value::as_array) {
            Some(list) if v.get("status").is_none() => list.first().cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        };
        let status = entry.get("status").and_then(Value::as_str).unwrap_or("");
        let code = match entry.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let detail = entry
            .get("error_string")
            .and_then(Value::as_str)
            .unwrap_or("");
        return match status {
            "OK" => Ok(()),
            "ERR" => Err(error_code(&code, &clean(detail, to, secrets, sent))),
            _ => Err(SmsError::Malformed(
                "JSON without an OK or ERR status".to_string(),
            )),
        };
    }
    if body == "OK" || body.starts_with("OK ") || body.starts_with("OK,") {
        return Ok(());
    }
    if let Some(rest) = body.strip_prefix("ERR") {
        let code: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return Err(error_code(&code, ""));
    }
    Err(SmsError::Malformed(
        "neither JSON nor an OK / ERR line".to_string(),
    ))
}

/// playSMS's documented codes: 1xx authentication or parameters, 2xx
/// sending.
fn error_code(code: &str, detail: &str) -> SmsError {
    let known = match code {
        "100" => "authentication failed",
        "101" => "type of action is invalid or unknown",
        "102" => "one or more field empty",
        "103" => "not enough credit for this operation",
        "104" => "webservice token is not available",
        "105" => "webservice token not enabled for this user",
        "106" => "webservice token not allowed from this IP address",
        "200" => "send message failed",
        "201" => "destination number or message is empty",
        _ => "",
    };
    let what = match (known, detail) {
        ("", "") => format!("playSMS ERR {code}"),
        ("", d) => format!("playSMS ERR {code} ({d})"),
        (k, _) => format!("playSMS ERR {code} ({k})"),
    };
    match code {
        "100" | "104" | "105" | "106" => SmsError::Unauthorized(format!(
            "{what}: check [sms] username and token, and that webservices are enabled for it"
        )),
        "103" => SmsError::NoCredit(what),
        "101" | "102" => SmsError::BadRequest(what),
        "201" => SmsError::BadRecipient(what),
        _ => SmsError::Refused(what),
    }
}
