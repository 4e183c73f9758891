//! The one way HTTP clients are built: bounded timeouts, no proxy from the
//! environment (a login's environment is not the admin's), rustls with the
//! ring provider and full certificate verification, capped response bodies.

use std::io::Read;
use std::time::Duration;

use crate::config::HttpSettings;

/// Largest response body read from a gateway.
pub const MAX_BODY: u64 = 256 * 1024;

/// Builds a blocking client for one gateway.
pub fn client(settings: &HttpSettings) -> Result<reqwest::blocking::Client, String> {
    client_with_timeout(settings, settings.timeout)
}

/// Like [`client`] with another overall timeout (long polls need more).
pub fn client_with_timeout(
    settings: &HttpSettings,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    // reqwest is built without a default provider; our copy of rustls is
    // private to this module, so installing its default affects only us.
    // An Err means it was already installed by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(settings.connect_timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pam_gateway/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(0);
    if let Some(proxy) = &settings.proxy {
        let proxy = reqwest::Proxy::all(proxy.as_str())
            .map_err(|_| "the configured proxy is not a valid URL".to_string())?;
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| {
        format!(
            "cannot set up the HTTP client: {}",
            describe(&e.without_url())
        )
    })
}

/// Reads at most [`MAX_BODY`] bytes of a response body as text. A read
/// error is a transport failure (the answer stalled past the timeout, or
/// the connection dropped) and is returned as a description without URL.
pub fn read_body(response: reqwest::blocking::Response) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut limited = response.take(MAX_BODY);
    if let Err(e) = limited.read_to_end(&mut buf) {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut
            || e.get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(|r| r.is_timeout());
        return Err(if timed_out {
            "timed out reading the answer".to_string()
        } else {
            "the connection broke while reading the answer".to_string()
        });
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// An error and its causes on one line, e.g. "error sending request: client
/// error (Connect): tcp connect error: Connection refused (os error 111)".
/// Callers strip the URL first (`without_url`) and redact secrets after.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

/// Why an HTTP exchange produced no usable answer, for the gateways that
/// share [`exchange`]. Texts are already stripped of URLs and secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing listens at the address.
    Refused(String),
    /// No answer (or no complete answer) within the timeout.
    Timeout,
    /// DNS, TLS, a reset connection, a client that cannot be built.
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Refused(d) => write!(f, "connection refused ({d})"),
            TransportError::Timeout => f.write_str("no answer within the timeout"),
            TransportError::Other(d) => write!(f, "transport error: {d}"),
        }
    }
}

/// A service's answer: status, `Retry-After` in seconds when it sent one,
/// and at most [`MAX_BODY`] bytes of body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
}

/// Sends `request` and reads the answer. Every error text has the URL
/// removed and each of `secrets` (and its percent-encoded form) redacted,
/// because URLs and reqwest's messages may carry tokens.
pub fn exchange(
    request: reqwest::blocking::RequestBuilder,
    secrets: &[&str],
) -> Result<HttpAnswer, TransportError> {
    let scrub = |text: &str| scrub(text, secrets);
    let response = request.send().map_err(|err| {
        let timed_out = err.is_timeout();
        let connect = err.is_connect();
        let text = scrub(&describe(&err.without_url()));
        if timed_out {
            TransportError::Timeout
        } else if connect && text.contains("refused") {
            TransportError::Refused(text)
        } else {
            TransportError::Other(text)
        }
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = read_body(response).map_err(|e| {
        if e.starts_with("timed out") {
            TransportError::Timeout
        } else {
            TransportError::Other(scrub(&e))
        }
    })?;
    Ok(HttpAnswer {
        status,
        retry_after,
        body,
    })
}

/// Redacts `secrets` and their percent-encoded forms (a token in a query
/// string is encoded) from `text`, and flattens control characters.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let encoded: Vec<String> = secrets
        .iter()
        .map(|s| percent_encode(s))
        .filter(|e| !secrets.contains(&e.as_str()))
        .collect();
    let mut all: Vec<&str> = secrets.to_vec();
    all.extend(encoded.iter().map(String::as_str));
    // Longest first, so a secret containing another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    crate::gateway::redact(text, &all)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a
/// path segment or a query value).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&k=v` with every key and value percent-encoded: a query string, or
/// an `application/x-www-form-urlencoded` body.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A short, printable piece of a service's answer for an error message:
/// at most `max` characters, secrets redacted.
pub fn excerpt(body: &str, max: usize, secrets: &[&str]) -> String {
    let flat = scrub(body.trim(), secrets);
    let mut out: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_catches_plain_and_encoded_secrets() {
        let text = "GET /x?h=ab%2Bc%2Fd&u=me failed: ab+c/d\nnext";
        assert_eq!(
            scrub(text, &["ab+c/d"]),
            "GET /x?h=[redacted]&u=me failed: [redacted] next"
        );
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("!room:ex.org"), "%21room%3Aex.org");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("To", "+4915112345678"), ("Body", "a b&c=d")]),
            "To=%2B4915112345678&Body=a%20b%26c%3Dd"
        );
    }

    #[test]
    fn excerpt_is_bounded() {
        assert_eq!(excerpt("  abcdef ", 3, &[]), "abc…");
        assert_eq!(excerpt("token=s3cr3t", 50, &["s3cr3t"]), "token=[redacted]");
    }
}
