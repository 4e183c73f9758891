//! One-time codes: uniform digits from the OS CSPRNG, checked in constant time.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::random::{self, RandomError};

/// Longest answer we look at; anything longer is a wrong attempt without
/// further work (a 1 MB paste costs nothing).
pub const MAX_ANSWER_LEN: usize = 64;

/// A one-time code. Debug is redacted and the digits are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    /// The digits, for the message to the user. Never log them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps known digits (tests, fixed-code sources).
    pub fn from_digits(digits: &str) -> Code {
        Code(digits.to_string())
    }

    /// Compares a user's answer with this code in constant time (for a given
    /// length; the length of a code is not secret). Surrounding whitespace is
    /// ignored; anything that is not exactly the digits fails.
    pub fn matches(&self, answer: &[u8]) -> bool {
        if answer.len() > MAX_ANSWER_LEN {
            return false;
        }
        let trimmed = answer.trim_ascii();
        bool::from(trimmed.ct_eq(self.0.as_bytes()))
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code([redacted])")
    }
}

/// Why no code could be drawn. Both deny the login as a system error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// The length asked for is not 1 to 18 digits (config validation
    /// keeps `[code] digits` within that).
    Digits(u32),
    /// The OS random source failed.
    Random(RandomError),
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeError::Digits(n) => write!(f, "{n} digits is out of range"),
            CodeError::Random(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodeError::Digits(_) => None,
            CodeError::Random(e) => Some(e),
        }
    }
}

impl From<RandomError> for CodeError {
    fn from(e: RandomError) -> CodeError {
        CodeError::Random(e)
    }
}

/// Where codes come from: the OS in production, a script in tests.
pub trait CodeSource {
    fn generate(&mut self, digits: u32) -> Result<Code, CodeError>;
}

/// getrandom(2): the kernel's CSPRNG.
pub struct OsCodeSource;

impl CodeSource for OsCodeSource {
    fn generate(&mut self, digits: u32) -> Result<Code, CodeError> {
        generate(digits)
    }
}

/// Draws a uniformly distributed `digits`-digit code (leading zeros kept)
/// by rejection sampling: values at or above the largest multiple of
/// 10^digits below 2^64 are drawn again, so no value is favoured.
pub fn generate(digits: u32) -> Result<Code, CodeError> {
    if !(1..=18).contains(&digits) {
        return Err(CodeError::Digits(digits));
    }
    let modulus = 10u64.pow(digits);
    let limit = u64::MAX - (u64::MAX % modulus);
    // The chance of 64 rejections in a row is below 2^-64 for any modulus.
    for _ in 0..64 {
        let mut buf = [0u8; 8];
        random::fill(&mut buf)?;
        let value = u64::from_le_bytes(buf);
        buf.zeroize();
        if value < limit {
            let code = format!("{:0width$}", value % modulus, width = digits as usize);
            return Ok(Code(code));
        }
    }
    Err(RandomError::Skewed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_length_and_digits_only() {
        for digits in 6..=10 {
            let c = generate(digits).expect("code");
            assert_eq!(c.expose().len(), digits as usize);
            assert!(c.expose().bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn roughly_uniform_first_digit() {
        // 20000 draws; each leading digit should appear ~2000 times. The
        // bounds are > 8 standard deviations wide: a real bias fails, chance
        // does not.
        let mut counts = [0u32; 10];
        for _ in 0..20000 {
            let c = generate(6).expect("code");
            counts[(c.expose().as_bytes()[0] - b'0') as usize] += 1;
        }
        for (d, n) in counts.iter().enumerate() {
            assert!((1650..=2350).contains(n), "digit {d}: {n} of 20000");
        }
    }

    #[test]
    fn codes_differ() {
        let a = generate(10).expect("code");
        let b = generate(10).expect("code");
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn matching() {
        let c = Code::from_digits("012345");
        assert!(c.matches(b"012345"));
        assert!(c.matches(b"  012345\n"));
        assert!(!c.matches(b"12345"));
        assert!(!c.matches(b"0123456"));
        assert!(!c.matches(b"012345x"));
        assert!(!c.matches(b"012\x00345"));
        assert!(!c.matches(b""));
        assert!(!c.matches("012345".repeat(200_000).as_bytes()));
        let padded = format!("{}012345", " ".repeat(100));
        assert!(!c.matches(padded.as_bytes()));
    }

    #[test]
    fn debug_is_redacted() {
        let c = Code::from_digits("424242");
        assert!(!format!("{c:?}").contains("4242"));
    }

    #[test]
    fn out_of_range_digits() {
        assert_eq!(generate(0), Err(CodeError::Digits(0)));
        assert_eq!(
            generate(19).map_err(|e| e.to_string()),
            Err("19 digits is out of range".into())
        );
    }
}
