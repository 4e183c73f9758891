//! What the sections of `gateway.toml` check alike: key errors inside a
//! `[section]`, number ranges, service URLs. Each section's own keys are
//! parsed where they are used (a gateway's in its file).

use std::fmt;

use crate::toml_errors::ParseError;

/// Builds a key error inside one `[section]`: `(key, message)`.
pub type SectionError<'a> = &'a dyn Fn(&str, String) -> ParseError;

/// `value` if it lies in `min..=max`; else the error `err` builds, saying
/// so.
pub fn check_range<T: PartialOrd + fmt::Display + Copy>(
    value: T,
    min: T,
    max: T,
    err: &dyn Fn(String) -> ParseError,
) -> Result<T, ParseError> {
    if value < min || value > max {
        return Err(err(format!("{value} is out of range {min}..={max}")));
    }
    Ok(value)
}

/// Is `host` a loopback name or address (plain http is allowed only there)?
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Checks a gateway base URL: https anywhere, http only to loopback, no
/// credentials or query in it. Returns it without a trailing slash.
pub fn check_service_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        if url.is_ascii() {
            format!("not a valid URL: {e}")
        } else {
            // url's IDNA back end is the ASCII-only one (Cargo.toml).
            format!(
                "not a valid URL: {e} (host names must be ASCII: write an \
                 internationalised one in its xn-- form)"
            )
        }
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            if !is_loopback_host(host) {
                return Err(format!(
                    "plain http is only allowed to a loopback host, not {host:?}: use https"
                ));
            }
        }
        other => return Err(format!("scheme {other:?} is not supported: use https")),
    }
    if parsed.host_str().unwrap_or("").is_empty() {
        return Err("has no host".to_string());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".to_string());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must not have a query or fragment".to_string());
    }
    Ok(url.trim_end_matches('/').to_string())
}
