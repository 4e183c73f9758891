//! One-time backup codes: `pam-gateway backup-codes USER` prints ten, the
//! user keeps them on paper, each works once.
//!
//! A code is ten characters from a 31-symbol alphabet without look-alikes
//! (no 0/o, 1/l/i), shown as `xxxxx-xxxxx`: about 49.5 bits. Only salted
//! hashes are stored, in the user's state file (not users.toml):
//! PBKDF2-HMAC-SHA256 with a 16-byte random salt per code and
//! [`ITERATIONS`] rounds. With ~2^49 candidates per code, even an attacker
//! holding the state file must spend ~2^49 × ITERATIONS hash compressions
//! per code; a memory-hard hash (argon2) would add little against that
//! entropy and would cost every login that types a backup code ten times its
//! memory. Answers that do not have the shape of a backup code are never
//! hashed, so ordinary codes cost nothing.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::random::{self, RandomError};
use crate::state::{StateError, StateStore, update_with};

/// Codes printed per set.
pub const COUNT: usize = 10;
/// Symbols in a code (the dash is not counted).
pub const LEN: usize = 10;
/// Lower-case letters and digits without 0 o 1 l i.
pub const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// PBKDF2 rounds for new hashes (stored with each hash, so it can change).
pub const ITERATIONS: u32 = 20_000;
/// Bounds accepted when reading a stored hash: a corrupt file must not make
/// a login spin for minutes.
pub const MIN_ITERATIONS: u32 = 1;
pub const MAX_ITERATIONS: u32 = 1_000_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const PREFIX: &str = "pbkdf2-sha256";

/// A code in clear, for printing once. Wiped on drop, Debug redacted.
pub struct BackupCode(String);

impl BackupCode {
    /// `xxxxx-xxxxx`, as printed for the user.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for BackupCode {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode([redacted])")
    }
}

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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            hex(&h.salt),
            hex(&h.hash)
        )
    }
}

/// The canonical form of an answer if it has a backup code's shape:
/// spaces and dashes dropped, lower-cased, exactly [`LEN`] alphabet symbols.
pub fn normalize(answer: &[u8]) -> Option<[u8; LEN]> {
    if answer.len() > 64 {
        return None;
    }
    let mut out = [0u8; LEN];
    let mut n = 0;
    for &b in answer {
        if b.is_ascii_whitespace() || b == b'-' {
            continue;
        }
        let b = b.to_ascii_lowercase();
        if n == LEN || !ALPHABET.contains(&b) {
            out.zeroize();
            return None;
        }
        out[n] = b;
        n += 1;
    }
    if n != LEN {
        out.zeroize();
        return None;
    }
    Some(out)
}

fn derive(code: &[u8; LEN], salt: &[u8; SALT_LEN], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(code, salt, iterations, &mut out);
    out
}

impl BackupHash {
    /// Hashes a normalized code with a fresh salt.
    fn new(code: &[u8; LEN], iterations: u32) -> Result<BackupHash, RandomError> {
        let mut salt = [0u8; SALT_LEN];
        random::fill(&mut salt)?;
        Ok(BackupHash {
            iterations,
            salt,
            hash: derive(code, &salt, iterations),
        })
    }

    fn matches(&self, code: &[u8; LEN]) -> bool {
        let mut derived = derive(code, &self.salt, self.iterations);
        let ok = bool::from(derived.ct_eq(&self.hash));
        derived.zeroize();
        ok
    }
}

/// The index of the stored hash `answer` matches, if any. Every hash is
/// computed (no early exit), so timing does not tell which one matched.
pub fn find_match(hashes: &[BackupHash], answer: &[u8]) -> Option<usize> {
    let mut code = normalize(answer)?;
    let mut found = None;
    for (i, h) in hashes.iter().enumerate() {
        if h.matches(&code) && found.is_none() {
            found = Some(i);
        }
    }
    code.zeroize();
    found
}

fn random_code() -> Result<[u8; LEN], RandomError> {
    let mut out = [0u8; LEN];
    let mut n = 0;
    // Rejection sampling keeps every symbol equally likely: bytes at or
    // above the largest multiple of the alphabet size are drawn again.
    let limit = 256 - (256 % ALPHABET.len());
    while n < LEN {
        let mut buf = [0u8; 32];
        random::fill(&mut buf)?;
        for &b in &buf {
            if n < LEN && (b as usize) < limit {
                out[n] = ALPHABET[b as usize % ALPHABET.len()];
                n += 1;
            }
        }
        buf.zeroize();
    }
    Ok(out)
}

/// `count` new codes and their hashes (with `iterations` rounds).
pub fn generate(
    count: usize,
    iterations: u32,
) -> Result<(Vec<BackupCode>, Vec<BackupHash>), RandomError> {
    let mut codes = Vec::with_capacity(count);
    let mut hashes = Vec::with_capacity(count);
    for _ in 0..count {
        let mut raw = random_code()?;
        hashes.push(BackupHash::new(&raw, iterations)?);
        let half = LEN / 2;
        let text = format!(
            "{}-{}",
            String::from_utf8_lossy(&raw[..half]),
            String::from_utf8_lossy(&raw[half..])
        );
        raw.zeroize();
        codes.push(BackupCode(text));
    }
    Ok((codes, hashes))
}

/// Why no new set of codes was issued; the earlier set, if any, still
/// works.
#[derive(Debug)]
pub enum IssueError {
    /// The OS random source failed: no codes or salts could be made.
    Random(RandomError),
    /// The user's state could not be read or written.
    State(StateError),
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueError::Random(e) => e.fmt(f),
            IssueError::State(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for IssueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IssueError::Random(e) => Some(e),
            IssueError::State(e) => Some(e),
        }
    }
}

/// Makes a new set of [`COUNT`] codes for `user`, replacing any earlier
/// set in the user's state, and returns them for printing (once).
pub fn issue(store: &dyn StateStore, user: &str) -> Result<Vec<BackupCode>, IssueError> {
    issue_replacing(store, user).map(|(codes, _)| codes)
}

/// [`issue`], also saying how many unused codes of the earlier set it
/// voided (counted under the same lock as the replacement).
pub fn issue_replacing(
    store: &dyn StateStore,
    user: &str,
) -> Result<(Vec<BackupCode>, usize), IssueError> {
    let (codes, hashes) = generate(COUNT, ITERATIONS).map_err(IssueError::Random)?;
    let voided = update_with(store, user, move |state| {
        std::mem::replace(&mut state.backup_codes, hashes).len()
    })
    .map_err(IssueError::State)?;
    Ok((codes, voided))
}

/// How many unused codes `user` has.
pub fn remaining(store: &dyn StateStore, user: &str) -> Result<usize, StateError> {
    update_with(store, user, |state| state.backup_codes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStateStore;

    #[test]
    fn codes_have_the_documented_shape_and_differ() {
        let (codes, hashes) = generate(COUNT, 10).expect("codes");
        assert_eq!(codes.len(), COUNT);
        assert_eq!(hashes.len(), COUNT);
        for c in &codes {
            let t = c.expose();
            assert_eq!(t.len(), LEN + 1, "{t}");
            assert_eq!(t.as_bytes()[5], b'-');
            assert!(
                t.bytes()
                    .filter(|&b| b != b'-')
                    .all(|b| ALPHABET.contains(&b))
            );
        }
        let mut texts: Vec<&str> = codes.iter().map(|c| c.expose()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), COUNT);
        assert!(!format!("{:?}", codes[0]).contains(codes[0].expose()));
    }

    #[test]
    fn alphabet_has_no_lookalikes() {
        assert_eq!(ALPHABET.len(), 31);
        for b in b"01oil" {
            assert!(!ALPHABET.contains(b));
        }
    }

    #[test]
    fn each_code_matches_its_own_hash_only() {
        let (codes, hashes) = generate(4, 10).expect("codes");
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(find_match(&hashes, c.expose().as_bytes()), Some(i));
            let sloppy = format!("  {} \n", c.expose().to_uppercase().replace('-', " "));
            assert_eq!(find_match(&hashes, sloppy.as_bytes()), Some(i));
        }
        assert_eq!(find_match(&hashes, b"abcde-fghjk"), None);
        assert_eq!(find_match(&[], codes[0].expose().as_bytes()), None);
    }

    #[test]
    fn normalize_rejects_other_shapes() {
        assert!(normalize(b"abcde-fghjk").is_some());
        assert!(normalize(b"ABCDEFGHJK").is_some());
        for bad in [
            &b"abcde-fghj"[..],
            b"abcde-fghjkm",
            b"abcde-fghj0",
            b"abcde-fghjl",
            b"123456",
            b"",
            b"abcde\x00fghjk",
            "abcde-fghjé".as_bytes(),
        ] {
            assert!(normalize(bad).is_none(), "{bad:?}");
        }
        assert!(normalize(&[b'a'; 1 << 16]).is_none());
    }

    #[test]
    fn stored_form_round_trips_and_is_validated() {
        let (_, hashes) = generate(1, 10).expect("codes");
        let text: String = hashes[0].clone().into();
        assert!(text.starts_with("pbkdf2-sha256$10$"), "{text}");
        assert_eq!(
            BackupHash::try_from(text.clone()).expect("parse"),
            hashes[0]
        );
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
        let code = normalize(b"abcde-fghjk").expect("shape");
        let a = BackupHash::new(&code, 10).expect("hash");
        let b = BackupHash::new(&code, 10).expect("hash");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
        assert!(a.matches(&code) && b.matches(&code));
    }

    #[test]
    fn pbkdf2_sha256_known_answer() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64):
        // the first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn issue_replaces_the_set_in_state() {
        let store = MemoryStateStore::default();
        let first = issue(&store, "alice").expect("issue");
        assert_eq!(remaining(&store, "alice").expect("count"), COUNT);
        let (second, voided) = issue_replacing(&store, "alice").expect("issue");
        assert_eq!(voided, COUNT);
        let state = store.get("alice").expect("state");
        assert_eq!(state.backup_codes.len(), COUNT);
        assert_eq!(
            find_match(&state.backup_codes, first[0].expose().as_bytes()),
            None
        );
        assert!(find_match(&state.backup_codes, second[3].expose().as_bytes()).is_some());
        let text = state.to_text();
        for c in &second {
            assert!(
                !text.contains(c.expose()),
                "a code in clear in the state file"
            );
        }
    }
}
