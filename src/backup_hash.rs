//! The stored form of a backup code: a salted PBKDF2-HMAC-SHA256 hash, as
//! the user's state file keeps it (`pbkdf2-sha256$ROUNDS$SALT_HEX$HASH_HEX`).
//! Making and checking the codes themselves is [`crate::backup_codes`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::random::{self, RandomError};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Bounds accepted when reading a stored hash: a corrupt file must not make
/// a login spin for minutes.
pub const MIN_ITERATIONS: u32 = 1;
pub const MAX_ITERATIONS: u32 = 1_000_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const PREFIX: &str = "pbkdf2-sha256";

/// A stored hash: `pbkdf2-sha256$ROUNDS$SALT_HEX$HASH_HEX`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupHash {
    iterations: u32,
    salt: [u8; SALT_LEN],
    hash: [u8; HASH_LEN],
}

impl fmt::Debug for BackupHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackupHash({PREFIX}, {} rounds)", self.iterations)
    }
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl TryFrom<String> for BackupHash {
    type Error = String;
    fn try_from(text: String) -> Result<BackupHash, String> {
        let bad = || "a backup code entry is not a pbkdf2-sha256 hash".to_string();
        let mut parts = text.split('$');
        if parts.next() != Some(PREFIX) {
            return Err(bad());
        }
        let iterations: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "a backup code hash has {iterations} rounds, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
            ));
        }
        let salt = parts.next().and_then(unhex::<SALT_LEN>).ok_or_else(bad)?;
        let hash = parts.next().and_then(unhex::<HASH_LEN>).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(BackupHash {
            iterations,
            salt,
            hash,
        })
    }
}

impl From<BackupHash> for String {
    fn from(h: BackupHash) -> String {
        format!(
            "{PREFIX}${}${}${}",
            h.iterations,
            crate::hex::encode(&h.salt),
            crate::hex::encode(&h.hash)
        )
    }
}

fn derive(code: &[u8], salt: &[u8; SALT_LEN], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(code, salt, iterations, &mut out);
    out
}

impl BackupHash {
    /// Hashes a normalized code with a fresh salt.
    pub(crate) fn new(code: &[u8], iterations: u32) -> Result<BackupHash, RandomError> {
        let mut salt = [0u8; SALT_LEN];
        random::fill(&mut salt)?;
        Ok(BackupHash {
            iterations,
            salt,
            hash: derive(code, &salt, iterations),
        })
    }

    /// Whether `code` (normalized) is the code this hash was made from.
    pub(crate) fn matches(&self, code: &[u8]) -> bool {
        let mut derived = derive(code, &self.salt, self.iterations);
        let ok = bool::from(derived.ct_eq(&self.hash));
        derived.zeroize();
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_is_validated() {
        let stored = BackupHash::new(b"abcdefghjk", 10).expect("hash");
        let text: String = stored.clone().into();
        assert!(text.starts_with("pbkdf2-sha256$10$"), "{text}");
        assert_eq!(BackupHash::try_from(text.clone()).expect("parse"), stored);
        let salt = "00".repeat(SALT_LEN);
        let hash = "11".repeat(HASH_LEN);
        for bad in [
            format!("sha1$10${salt}${hash}"),
            format!("pbkdf2-sha256$0${salt}${hash}"),
            format!("pbkdf2-sha256$4000000000${salt}${hash}"),
            format!("pbkdf2-sha256$10$00${hash}"),
            format!("pbkdf2-sha256$10${salt}${hash}$x"),
            format!("pbkdf2-sha256$10${salt}$zz{}", &hash[2..]),
            "abcde-fghjk".to_string(),
        ] {
            assert!(BackupHash::try_from(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_salted() {
        let code = b"abcdefghjk";
        let a = BackupHash::new(code, 10).expect("hash");
        let b = BackupHash::new(code, 10).expect("hash");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
        assert!(a.matches(code) && b.matches(code));
    }

    #[test]
    fn pbkdf2_sha256_known_answer() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64):
        // the first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            crate::hex::encode(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }
}
