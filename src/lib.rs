//! pam_gateway: a one-time code over a messaging gateway as a second login
//! factor.
//!
//! The file list is the architecture:
//! - [`pam_module`]: the only code that knows PAM (arguments, items,
//!   conversation, return codes); built into `pam_gateway.so`.
//! - [`flow`]: one authentication as plain Rust over small traits.
//! - [`gateway`]: one file per delivery service behind [`gateway::Gateway`].
//! - [`config`] and [`users`]: `gateway.toml` and `users.toml`, validated,
//!   with errors naming file, line and key ([`toml_errors`]).
//! - [`secure_file`]: the checks and atomic writes used by module and CLI.
//! - [`code`]: CSPRNG codes and constant-time comparison.
//! - [`log`]: syslog (authpriv) without codes or tokens.
//! - [`setup`]: loading both files the way a login does, shared with the CLI.
//! - [`toml_edits`]: comment-preserving edits of both files (CLI).
//! - [`cli`]: the `pam-gateway` admin CLI, a second front end over the above.
//! - [`state`]: per-user mutable state under `state_dir` (flock + atomic
//!   replace); [`limits`] over it (codes per window, lockouts).
//! - [`policy`]: who is covered (exempt networks and groups).
//! - [`totp`] and [`backup_codes`]: the fallback factors.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backup_codes;
pub mod cli;
pub mod code;
pub mod config;
pub mod flow;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod log;
pub mod nss;
pub mod pam_module;
pub mod policy;
pub mod secure_file;
pub mod setup;
pub mod state;
#[cfg(test)]
mod test_dir;
pub mod toml_edits;
pub mod toml_errors;
pub mod totp;
pub mod users;
