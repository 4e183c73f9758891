//! Answers typed by the admin: from the terminal (secrets without echo), or
//! from standard input when that is not a terminal, so scripts and tests
//! drive every command the same way.

use std::fmt;
use std::io::{BufRead, IsTerminal, Read, Write};

use pam_gateway_core::system::terminal;
use zeroize::Zeroizing;

/// Longest line read; a token or a code is far shorter.
const MAX_LINE: u64 = 4096;

/// Why a line could not be taken from standard input.
#[derive(Debug)]
pub enum InputError {
    /// Reading failed: this machine's problem, not the answer's.
    Read(std::io::Error),
    /// The line is longer than [`MAX_LINE`] bytes.
    TooLong,
    /// The line is not UTF-8.
    NotUtf8,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read(e) => write!(f, "cannot read standard input: {e}"),
            InputError::TooLong => write!(f, "input line longer than {MAX_LINE} bytes"),
            InputError::NotUtf8 => f.write_str("input is not UTF-8"),
        }
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InputError::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// Standard input, line by line.
pub struct Input {
    tty: bool,
    stdin: std::io::StdinLock<'static>,
}

/// Turns terminal echo off until dropped.
pub(super) struct EchoOff {
    _off: terminal::EchoOff,
}

impl EchoOff {
    /// `None` when standard input is not a terminal (or its settings cannot
    /// be changed): then there is no echo to turn off.
    pub(super) fn new() -> Option<EchoOff> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        let off = terminal::EchoOff::stdin().ok()?;
        Some(EchoOff { _off: off })
    }
}

impl Input {
    pub fn new() -> Input {
        let stdin = std::io::stdin();
        Input {
            tty: stdin.is_terminal(),
            stdin: stdin.lock(),
        }
    }

    /// Is standard input a terminal (a person typing)?
    pub fn is_terminal(&self) -> bool {
        self.tty
    }

    /// Shows `prompt` on stderr and reads one line, without its line end
    /// and surrounding blanks; on a terminal with `hidden`, without echo.
    /// `Ok(None)` at end of input.
    pub fn line(
        &mut self,
        prompt: &str,
        hidden: bool,
    ) -> Result<Option<Zeroizing<String>>, InputError> {
        let mut err = std::io::stderr();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let _echo = if self.tty && hidden {
            EchoOff::new()
        } else {
            None
        };
        let mut raw = Zeroizing::new(Vec::new());
        let n = (&mut self.stdin)
            .take(MAX_LINE)
            .read_until(b'\n', &mut raw)
            .map_err(InputError::Read)?;
        if !self.tty {
            // The answer came from a pipe: end the prompt's line.
            let _ = writeln!(err);
        }
        if n == 0 {
            return Ok(None);
        }
        if raw.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            return Err(InputError::TooLong);
        }
        let text = std::str::from_utf8(&raw).map_err(|_| InputError::NotUtf8)?;
        Ok(Some(Zeroizing::new(text.trim().to_string())))
    }
}
