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
