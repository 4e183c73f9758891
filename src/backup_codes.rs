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

use zeroize::Zeroize;

pub use crate::backup_hash::BackupHash;
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
