//! The daemon's log: syslog (authpriv, ident `pam-gatewayd`, like the
//! module's) and stderr (the journal under systemd, the tests' capture).
//! No line holds a code, a message text or the bot token: callers pass
//! only names, ids and errors the core already redacted.

use std::sync::{Arc, Mutex};

use pam_gateway_core::log::{Level, Log, SyslogLog};

#[derive(Clone)]
pub struct Logger {
    syslog: Arc<Mutex<SyslogLog>>,
}

impl Logger {
    pub fn open() -> Logger {
        Logger {
            syslog: Arc::new(Mutex::new(SyslogLog::open_as("pam-gatewayd"))),
        }
    }

    pub fn log(&self, level: Level, line: &str) {
        let word = match level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        eprintln!("pam-gatewayd: {word}: {line}");
        self.syslog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log(level, line);
    }
}
