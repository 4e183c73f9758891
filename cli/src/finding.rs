//! A finding of `pam-gateway status` and the checks it runs (PAM stacks,
//! sshd): a line of text and how it bears on logins.

/// How a finding bears on logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Info,
    /// Works, but weaker or odder than it should be.
    Warn,
    /// Would stop logins.
    Fail,
}

impl Level {
    /// The tag that starts the finding's line (`FAIL`), four wide.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok  ",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}
