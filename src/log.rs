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
    logger: Option<syslog::Logger<syslog::LoggerBackend, Rfc3164>>,
}

impl SyslogLog {
    pub fn open() -> SyslogLog {
        SyslogLog::open_as(IDENT)
    }

    /// Syslog under another ident (`pam-gatewayd`), same facility.
    pub fn open_as(ident: &'static str) -> SyslogLog {
        SyslogLog::open_for(ident, std::process::id())
    }

    /// Lines tagged with another process's pid: pam-gatewayd logs a login
    /// it runs as the module would, `pam_gateway[PID]` with the PAM
    /// process's pid.
    pub fn open_for(ident: &'static str, pid: u32) -> SyslogLog {
        SyslogLog {
            logger: syslog::unix(Rfc3164 { ident, pid }).ok(),
        }
    }
}

/// The module's ident.
pub const IDENT: &str = "pam_gateway";

/// Writes the line `syslog::Formatter3164` would (facility authpriv, no
/// host name, ident `pam_gateway`): `<84>Dec 04 18:30:20 pam_gateway[PID]:
/// text`, the time in UTC as that formatter gives it on Unix. Its own
/// `format` parses a `time` format description at every line, which put
/// the `time` crate's parser and formatter into the module (BENCHMARKS.md);
/// this writes the same bytes (a test compares the two).
#[derive(Clone)]
pub struct Rfc3164 {
    ident: &'static str,
    pid: u32,
}

impl Rfc3164 {
    /// `Mmm dd hh:mm:ss` of a Unix time, in UTC.
    fn timestamp(unix: u64) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let (_, month, day) = crate::remember::civil_from_days(unix / 86_400);
        let secs = unix % 86_400;
        format!(
            "{} {day:02} {:02}:{:02}:{:02}",
            MONTHS[(month - 1) as usize % 12],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

impl<T: std::fmt::Display> syslog::LogFormat<T> for Rfc3164 {
    fn format<W: std::io::Write>(
        &self,
        w: &mut W,
        severity: syslog::Severity,
        message: T,
    ) -> syslog::Result<()> {
        let priority = syslog::Facility::LOG_AUTHPRIV as u8 | severity as u8;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write!(
            w,
            "<{priority}>{} {}[{}]: {message}",
            Rfc3164::timestamp(now),
            self.ident,
            self.pid
        )
        .map_err(syslog::Error::Write)
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
    use super::{Rfc3164, field};
    use syslog::{Facility, Formatter3164, LogFormat, Severity};

    #[test]
    fn syslog_lines_are_formatter3164s() {
        let theirs = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "pam_gateway".into(),
            pid: 4242,
        };
        let ours = Rfc3164 {
            ident: "pam_gateway",
            pid: 4242,
        };
        for severity in [
            Severity::LOG_ERR,
            Severity::LOG_WARNING,
            Severity::LOG_INFO,
            Severity::LOG_DEBUG,
        ] {
            // Both read the clock: retry if a second ticked in between.
            let lines = (0..5)
                .map(|_| {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    theirs
                        .format(&mut a, severity, "user=alice result=\"x y\"")
                        .expect("format");
                    ours.format(&mut b, severity, "user=alice result=\"x y\"")
                        .expect("format");
                    (String::from_utf8(a), String::from_utf8(b))
                })
                .find(|(a, b)| a == b);
            assert!(
                lines.is_some(),
                "our syslog line differs from Formatter3164's"
            );
        }
    }

    #[test]
    fn syslog_timestamps() {
        assert_eq!(Rfc3164::timestamp(0), "Jan 01 00:00:00");
        assert_eq!(Rfc3164::timestamp(951_782_400), "Feb 29 00:00:00");
        assert_eq!(Rfc3164::timestamp(1_700_000_000), "Nov 14 22:13:20");
        assert_eq!(Rfc3164::timestamp(4_102_444_799), "Dec 31 23:59:59");
    }

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
