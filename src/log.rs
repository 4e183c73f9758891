//! Log lines: syslog (facility authpriv, ident `pam_gateway`) in
//! production, a list in tests. Callers never pass a code or a token.

use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

/// Where log lines go.
pub trait Log {
    fn log(&mut self, level: Level, line: &str);
}

/// Syslog through `/dev/log`. If syslog cannot be reached, lines are
/// dropped: a missing log daemon must not change whether logins work.
pub struct SyslogLog {
    logger: Option<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>,
}

impl SyslogLog {
    pub fn open() -> SyslogLog {
        SyslogLog::open_as("pam_gateway")
    }

    /// Syslog under another ident (`pam-gatewayd`), same facility.
    pub fn open_as(ident: &str) -> SyslogLog {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_AUTHPRIV,
            hostname: None,
            process: ident.into(),
            pid: std::process::id(),
        };
        SyslogLog {
            logger: syslog::unix(formatter).ok(),
        }
    }
}

impl Log for SyslogLog {
    fn log(&mut self, level: Level, line: &str) {
        let Some(logger) = self.logger.as_mut() else {
            return;
        };
        let _ = match level {
            Level::Error => logger.err(line),
            Level::Warning => logger.warning(line),
            Level::Info => logger.info(line),
            Level::Debug => logger.debug(line),
        };
    }
}

/// Collects lines in memory (tests, and the CLI's own reporting).
#[derive(Clone, Default)]
pub struct MemoryLog {
    pub lines: Rc<RefCell<Vec<(Level, String)>>>,
}

impl MemoryLog {
    pub fn text(&self) -> String {
        self.lines
            .borrow()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Log for MemoryLog {
    fn log(&mut self, level: Level, line: &str) {
        self.lines.borrow_mut().push((level, line.to_string()));
    }
}

/// Longest value of a log field, in characters.
pub const MAX_FIELD: usize = 128;

/// A value from outside (PAM items, a user name) as a log field: bare when
/// it is plain (`user=alice`), otherwise in double quotes with `"`, `\` and
/// every control character escaped (`rhost="1.2.3.4\nuser=root"`), so no
/// value can start a line or pose as another field. At most [`MAX_FIELD`]
/// characters of the value are kept; an empty value is `""`.
pub fn field(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '"' | '\\' | '='));
    let kept = value.chars().take(MAX_FIELD);
    if plain {
        return kept.collect();
    }
    let mut out = String::with_capacity(value.len().min(MAX_FIELD) + 2);
    out.push('"');
    for c in kept {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn plain_values_stay_bare() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("192.0.2.7"), "192.0.2.7");
        assert_eq!(field("/dev/pts/3"), "/dev/pts/3");
    }

    #[test]
    fn odd_values_are_quoted_and_escaped() {
        assert_eq!(
            field("1.2.3.4\nuser=root result=success"),
            "\"1.2.3.4\\nuser=root result=success\""
        );
        assert_eq!(field("a\"b\\c\r\u{1b}"), "\"a\\\"b\\\\c\\r\\u{1b}\"");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("x y"), "\"x y\"");
        assert_eq!(field(&"a".repeat(500)).len(), super::MAX_FIELD);
    }
}
