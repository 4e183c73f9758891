//! `pam-gatewayd [--config PATH]`: the one reader of the Telegram bot's
//! updates, for approval in the chat (`[approve]` in `gateway.toml`).
//!
//! It runs in the foreground (systemd: packaging/pam-gatewayd.service),
//! logs to syslog (authpriv, ident `pam-gatewayd`) and stderr, and:
//! - long-polls `getUpdates` on one thread ([`bot`]): taps on the approval
//!   buttons, and the recent text messages for `pam-gateway enroll`;
//! - sends for the module over one warm HTTPS connection;
//! - answers root, and only root, on a Unix socket ([`socket`]) with the
//!   frames of `pam_gateway_core::approve::wire`;
//! - keeps the approvals in memory ([`approvals`]): after a restart an
//!   unknown nonce is `Gone`, and the module asks for the typed code.
//!
//! No `unsafe` here: the C library is reached through the core's `system`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod approvals;
mod bot;
mod host;
mod log;
mod socket;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pam_gateway_core::gateway::telegram::{TelegramClient, TelegramConfig};
use pam_gateway_core::log::Level;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::setup;

use crate::approvals::Daemon;
use crate::log::Logger;

/// The file the module reads, unless `--config` says otherwise.
const DEFAULT_CONFIG: &str = "/etc/pam_gateway/gateway.toml";

const USAGE: &str = "usage: pam-gatewayd [--config PATH]\n\
    Runs in the foreground: the one reader of the Telegram bot's updates for\n\
    approval in the chat ([approve] in gateway.toml). See pam-gatewayd(8).";

fn main() -> ExitCode {
    let log = Logger::open();
    let config_path = match parse_args(std::env::args().skip(1)) {
        Ok(Some(p)) => p,
        Ok(None) => return ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("pam-gatewayd: {m}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config_path, log.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            log.log(Level::Error, &format!("not started: {m}"));
            ExitCode::from(1)
        }
    }
}

/// `Ok(None)`: `--help` or `--version` was answered.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) if !p.is_empty() => config = PathBuf::from(p),
                _ => return Err("--config needs a path".to_string()),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--version" | "-V" => {
                println!("pam-gatewayd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => match other.strip_prefix("--config=") {
                Some(p) if !p.is_empty() => config = PathBuf::from(p),
                _ => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(Some(config))
}

/// Loads and checks the config, binds the socket, starts the threads and
/// serves until killed. Returns only when it cannot start.
fn run(config_path: &std::path::Path, log: Logger) -> Result<(), String> {
    // Anything this process creates is root's alone; the socket is born
    // 0600 under a mask of its own (socket::bind).
    pam_gateway_core::system::set_umask(0o077);
    if pam_gateway_core::system::effective_uid() != 0 {
        return Err(
            "pam-gatewayd must run as root (it answers the PAM module and writes \
                    the per-user state files)"
                .to_string(),
        );
    }
    let config = setup::load_config(config_path, Owner::ROOT).map_err(|e| e.to_string())?;
    if !config.approve.enabled {
        return Err(format!(
            "[approve] enabled is not true in {}: there is nothing to do (set \
             `enabled = true` under [approve] to offer approval in the chat)",
            config.path.display()
        ));
    }
    let Some(telegram) = config.section::<TelegramConfig>().cloned() else {
        return Err(format!(
            "{} has no [telegram] section: approval goes through its bot",
            config.path.display()
        ));
    };
    let sender = TelegramClient::warm(&telegram)
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let poller = TelegramClient::with_timeout(
        &telegram,
        std::time::Duration::from_secs(bot::POLL_SECS) + telegram.http.timeout,
    )
    .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let listener = socket::bind(&config.approve.socket)?;
    let daemon = Arc::new(Daemon::new(config, sender, log.clone()));
    log.log(
        Level::Info,
        &format!(
            "started: version {}, socket {}, api {}",
            env!("CARGO_PKG_VERSION"),
            daemon.config.approve.socket.display(),
            telegram.api_url
        ),
    );
    bot::start(Arc::clone(&daemon), poller)?;
    approvals::start_expiry(Arc::clone(&daemon))?;
    approvals::start_editor(Arc::clone(&daemon))?;
    socket::serve(listener, daemon);
    Err("the socket stopped accepting connections".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Option<PathBuf>, String> {
        parse_args(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn arguments() {
        assert_eq!(args(&[]), Ok(Some(PathBuf::from(DEFAULT_CONFIG))));
        assert_eq!(
            args(&["--config", "/x/g.toml"]),
            Ok(Some(PathBuf::from("/x/g.toml")))
        );
        assert_eq!(
            args(&["--config=/y.toml"]),
            Ok(Some(PathBuf::from("/y.toml")))
        );
        assert!(args(&["--config"]).is_err());
        assert!(args(&["--daemonize"]).is_err());
    }
}
