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
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "pam_gateway".into(),
            // SAFETY: getpid has no preconditions and cannot fail.
            pid: unsafe { libc::getpid() } as u32,
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
