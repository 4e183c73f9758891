//! Keeping secrets and addresses out of what is logged or shown: secrets
//! become `[redacted]`, recipients `***977`.

/// Replaces the recipient's address in a service's message by its masked
/// form (`***678`): error texts end up in syslog.
pub fn mask_recipient(text: &str, recipient: &str) -> String {
    if recipient.len() < 4 {
        return text.to_string();
    }
    text.replace(recipient, &mask(recipient))
}

/// Removes every secret from `text` (replaced by `[redacted]`) and control
/// characters that could forge extra log lines.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "[redacted]");
    }
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Masks a recipient for display: `***977`.
pub fn mask(recipient: &str) -> String {
    let tail: String = recipient
        .chars()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_and_controls() {
        let t = redact("GET /bot1:abc/x failed\nforged line", &["1:abc", ""]);
        assert_eq!(t, "GET /bot[redacted]/x failed forged line");
    }

    #[test]
    fn recipients_are_masked() {
        assert_eq!(
            mask_recipient("Unregistered user \"+4915112345678\"", "+4915112345678"),
            "Unregistered user \"***678\""
        );
    }

    #[test]
    fn masking() {
        assert_eq!(mask("123456977"), "***977");
        assert_eq!(mask("12"), "***12");
    }
}
