//! Authenticator codes (TOTP, RFC 6238) as a fallback factor: SHA-1, six
//! digits, 30-second steps, one step of clock drift either way — what every
//! authenticator app speaks. The arithmetic is totp-rs'; this file adds the
//! secret's handling, the replay guard's step number, the otpauth URI and
//! the terminal QR code that `pam-gateway totp USER` shows.

use std::fmt;

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret as TotpRsSecret, TOTP};
use zeroize::Zeroize;

use crate::random::{self, RandomError};
use crate::uri::percent_encode;

pub const DIGITS: usize = 6;
pub const STEP_SECONDS: u64 = 30;
/// Steps of drift accepted either side of now.
pub const SKEW_STEPS: u64 = 1;
/// Shortest secret accepted: 80 bits, what Google Authenticator's PAM
/// module issues. New secrets are 160 bits (RFC 4226's recommendation).
pub const MIN_SECRET_BYTES: usize = 10;
pub const NEW_SECRET_BYTES: usize = 20;
const MAX_SECRET_BYTES: usize = 64;

/// A TOTP secret. Debug is redacted, the bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpKey(Vec<u8>);

impl Drop for TotpKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpKey([redacted])")
    }
}

impl TotpKey {
    /// Reads a base32 secret as authenticator apps show it: case, spaces
    /// and `=` padding do not matter. The error never quotes the secret.
    pub fn from_base32(text: &str) -> Result<TotpKey, String> {
        let mut clean: String = text
            .chars()
            .filter(|c| !c.is_ascii_whitespace() && *c != '=' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if clean.is_empty()
            || !clean
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        {
            clean.zeroize();
            return Err("is not base32 (letters A-Z and digits 2-7; value not shown)".to_string());
        }
        let decoded = TotpRsSecret::Encoded(clean.clone()).to_bytes();
        clean.zeroize();
        let bytes = decoded.map_err(|_| "is not valid base32 (value not shown)".to_string())?;
        let key = TotpKey(bytes);
        if key.0.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "is too short: {} bits, at least {} needed (`pam-gateway totp USER` makes a new one)",
                key.0.len() * 8,
                MIN_SECRET_BYTES * 8
            ));
        }
        if key.0.len() > MAX_SECRET_BYTES {
            return Err(format!("is longer than {} bits", MAX_SECRET_BYTES * 8));
        }
        Ok(key)
    }

    /// A new 160-bit secret from the OS CSPRNG.
    pub fn generate() -> Result<TotpKey, RandomError> {
        let mut bytes = vec![0u8; NEW_SECRET_BYTES];
        random::fill(&mut bytes)?;
        Ok(TotpKey(bytes))
    }

    /// The secret in base32 without padding, as users.toml stores it.
    pub fn to_base32(&self) -> String {
        match TotpRsSecret::Raw(self.0.clone()).to_encoded() {
            TotpRsSecret::Encoded(s) => s,
            TotpRsSecret::Raw(_) => String::new(),
        }
    }

    fn totp(&self) -> TOTP {
        // new_unchecked: totp-rs' checked constructor wants 128 bits, but
        // 80-bit secrets from other tools are still in use (checked above).
        TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 0, STEP_SECONDS, self.0.clone())
    }

    /// The code for the step holding `unix_time`.
    pub fn code_at(&self, unix_time: u64) -> String {
        self.totp().generate(unix_time)
    }

    /// The time step of `unix_time`.
    pub fn step_of(unix_time: u64) -> u64 {
        unix_time / STEP_SECONDS
    }

    /// If `answer` is the code of a step within the drift allowance of
    /// `unix_now`, that step (the caller refuses steps already used). Each
    /// candidate is compared in constant time.
    pub fn matching_step(&self, answer: &[u8], unix_now: u64) -> Option<u64> {
        let answer = answer.trim_ascii();
        if answer.len() != DIGITS || !answer.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let totp = self.totp();
        let now_step = Self::step_of(unix_now);
        let mut found = None;
        for step in now_step.saturating_sub(SKEW_STEPS)..=now_step.saturating_add(SKEW_STEPS) {
            let mut code = totp.generate(step.saturating_mul(STEP_SECONDS));
            if bool::from(code.as_bytes().ct_eq(answer)) {
                found = Some(step);
            }
            code.zeroize();
        }
        found
    }
}

/// The `otpauth://` URI authenticator apps scan:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
/// It holds the secret: show it only to the user it belongs to.
pub fn otpauth_uri(key: &TotpKey, account: &str, issuer: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        percent_encode(issuer),
        percent_encode(account),
        key.to_base32(),
        percent_encode(issuer),
    )
}

/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "pam_gateway";

/// What `pam-gateway totp USER` shows and stores: a new secret (base32 goes
/// into the user's `totp_secret`) and its otpauth URI (the CLI draws it as a
/// QR code). The URI holds the secret.
pub struct TotpEnrolment {
    pub key: TotpKey,
    pub uri: String,
}

impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrolment([redacted])")
    }
}

/// A new authenticator enrolment for `user` on `host` (account `user@host`).
pub fn new_enrolment(user: &str, host: &str) -> Result<TotpEnrolment, RandomError> {
    let key = TotpKey::generate()?;
    let uri = otpauth_uri(&key, &format!("{user}@{host}"), ISSUER);
    Ok(TotpEnrolment { key, uri })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890").
    const RFC_SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_vectors() {
        let key = TotpKey::from_base32(RFC_SECRET_B32).expect("key");
        // The RFC lists 8-digit codes; ours are their last six digits.
        for (t, code8) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(key.code_at(t), code8[2..], "t={t}");
        }
    }

    #[test]
    fn matching_step_allows_one_step_of_drift() {
        let key = TotpKey::from_base32(RFC_SECRET_B32).expect("key");
        let now = 1_234_567_890;
        let step = TotpKey::step_of(now);
        let code = |s: u64| key.code_at(s * STEP_SECONDS);
        assert_eq!(key.matching_step(code(step).as_bytes(), now), Some(step));
        assert_eq!(
            key.matching_step(code(step - 1).as_bytes(), now),
            Some(step - 1)
        );
        assert_eq!(
            key.matching_step(code(step + 1).as_bytes(), now),
            Some(step + 1)
        );
        assert_eq!(key.matching_step(code(step - 2).as_bytes(), now), None);
        assert_eq!(key.matching_step(code(step + 2).as_bytes(), now), None);
        let spaced = format!(" {}\n", code(step));
        assert_eq!(key.matching_step(spaced.as_bytes(), now), Some(step));
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(key.matching_step(bad.as_bytes(), now), None, "{bad}");
        }
        assert_eq!(key.matching_step(code(0).as_bytes(), 0), Some(0));
    }

    #[test]
    fn base32_forms_and_errors() {
        let a = TotpKey::from_base32(RFC_SECRET_B32).expect("key");
        let b = TotpKey::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").expect("key");
        assert_eq!(a, b);
        assert_eq!(a.to_base32(), RFC_SECRET_B32);
        let e = TotpKey::from_base32("GEZDGNBV").unwrap_err();
        assert!(e.contains("too short"), "{e}");
        for bad in ["", "not base32!", "GEZDGNBVGY3TQOJQ1", "ÄÖÜ"] {
            let e = TotpKey::from_base32(bad).unwrap_err();
            assert!(bad.len() < 4 || !e.contains(bad), "{e}");
        }
        assert!(TotpKey::from_base32(&"A".repeat(200)).is_err());
        assert!(!format!("{a:?}").contains("GEZ"));
    }

    #[test]
    fn generated_secrets_round_trip() {
        let k = TotpKey::generate().expect("key");
        let text = k.to_base32();
        assert_eq!(text.len(), 32);
        assert_eq!(TotpKey::from_base32(&text).expect("key"), k);
        assert_ne!(TotpKey::generate().expect("key"), k);
    }

    #[test]
    fn uri_is_what_apps_expect() {
        let key = TotpKey::from_base32(RFC_SECRET_B32).expect("key");
        let uri = otpauth_uri(&key, "alice@pi host", "pam_gateway");
        assert_eq!(
            uri,
            "otpauth://totp/pam_gateway:alice%40pi%20host?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=pam_gateway&algorithm=SHA1&digits=6&period=30"
        );
        let parsed = reqwest::Url::parse(&uri).expect("a valid URL");
        assert_eq!(parsed.scheme(), "otpauth");
        assert!(
            parsed
                .query_pairs()
                .any(|(k, v)| k == "secret" && v == RFC_SECRET_B32)
        );
    }

    #[test]
    fn enrolment_bundles_a_fresh_secret() {
        let e = new_enrolment("alice", "pi").expect("enrolment");
        let b32 = e.key.to_base32();
        assert!(
            e.uri
                .starts_with("otpauth://totp/pam_gateway:alice%40pi?secret="),
            "{}",
            e.uri
        );
        assert!(e.uri.contains(&b32));
        assert!(!format!("{e:?}").contains(&b32));
        // What the app computes from the URI's secret is what the module accepts.
        let from_uri = TotpKey::from_base32(&b32).expect("key");
        let now = 1_800_000_000;
        assert_eq!(
            e.key.matching_step(from_uri.code_at(now).as_bytes(), now),
            Some(TotpKey::step_of(now))
        );
        assert_ne!(new_enrolment("alice", "pi").expect("enrolment").uri, e.uri);
    }
}
