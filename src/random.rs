//! The OS CSPRNG (getrandom(2)): every secret this crate makes — login
//! codes, backup codes and their salts, authenticator secrets — comes from
//! here, and its one way to fail is [`RandomError`].

use std::fmt;

/// This machine could not supply randomness: nothing secret can be made.
/// Never the user's or the admin's input; a login denies (system error),
/// the CLI exits as not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomError {
    /// getrandom(2) failed.
    Os(getrandom::Error),
    /// Rejection sampling drew out-of-range values again and again (for a
    /// working source the odds are below 2^-64).
    Skewed,
}

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RandomError::Os(e) => write!(f, "OS random source failed: {e}"),
            RandomError::Skewed => {
                f.write_str("OS random source returned too many out-of-range values")
            }
        }
    }
}

impl std::error::Error for RandomError {}

/// Fills `buf` from the kernel's CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError::Os)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_says_what_failed() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill(&mut a).expect("random");
        fill(&mut b).expect("random");
        assert_ne!(a, b);
        let e = RandomError::Os(getrandom::Error::UNSUPPORTED);
        assert!(
            e.to_string().starts_with("OS random source failed: "),
            "{e}"
        );
        assert_eq!(
            RandomError::Skewed.to_string(),
            "OS random source returned too many out-of-range values"
        );
    }
}
