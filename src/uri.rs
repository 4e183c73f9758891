//! Percent-encoding (RFC 3986) for what goes into a URL or a form body:
//! path segments, query values, `otpauth://` URIs.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
