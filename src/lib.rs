//! pam_gateway: a one-time code over a messaging gateway as a second login
//! factor.
//!
//! This crate is the core: everything that runs inside sshd or sudo except
//! the PAM glue, which is the module crate (`module/`, built into
//! `pam_gateway.so`); the `pam-gateway` CLI (`cli/`) is a second front end
//! over the same library. The file list is the architecture:
//! - [`module_args`]: the module's arguments, parsed once.
//! - [`flow`]: one authentication as plain Rust over small traits.
//! - [`gateway`]: one file per delivery service behind [`gateway::Gateway`];
//!   each owns its `gateway.toml` section and recipients, and is listed
//!   once, in `gateway/mod.rs`.
//! - [`network`]: what a login sends off the machine, behind one trait;
//!   [`direct`]: the PAM module's way to it, `pam_gateway_direct.so`,
//!   loaded only when the module sends itself.
//! - [`http`]: the one way HTTP clients are built; [`uri`]: percent-encoding.
//! - [`config`] and [`users`]: `gateway.toml` and `users.toml`, validated,
//!   with errors naming file, line and key ([`toml_errors`]; [`section`]:
//!   the checks sections share; [`recipient`]: phone numbers, addresses).
//! - [`secret`] and [`redact`]: secrets never printed, recipients masked.
//! - [`secure_file`]: the checks and atomic writes used by module and CLI.
//! - [`code`]: CSPRNG codes and constant-time comparison; [`random`]: the
//!   OS CSPRNG every secret comes from.
//! - [`log`]: syslog (authpriv) without codes or tokens.
//! - [`setup`]: loading both files the way a login does, shared with the CLI.
//! - [`state`]: per-user mutable state under `state_dir` (flock + atomic
//!   replace); [`limits`] over it (codes per window, lockouts).
//! - [`policy`]: who is covered (exempt networks and groups).
//! - [`totp`] and [`backup_codes`]: the fallback factors ([`backup_hash`]:
//!   a backup code as the state file stores it).
//! - [`system`]: every call into the C library (the dynamic loader
//!   included), behind safe functions; the only module allowed `unsafe`
//!   code.
//! - [`remember`]: verified sources that skip the code for a while.
//! - [`alert`]: one message per login from the session hook.
//! - [`approve`]: approval in the chat through `pam-gatewayd` (its
//!   socket protocol: [`approve::wire`]).
//! - [`directory`]: recipients from LDAP (`[directory]`), and the small
//!   client the CLI uses too.

#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod alert;
pub mod approve;
pub mod backup_codes;
pub mod backup_hash;
pub mod code;
pub mod config;
pub mod direct;
pub mod directory;
pub mod flow;
pub mod gateway;
pub mod hex;
pub mod http;
pub mod limits;
pub mod log;
pub mod module_args;
pub mod network;
pub mod policy;
pub mod random;
pub mod recipient;
pub mod redact;
pub mod remember;
pub mod secret;
pub mod section;
pub mod secure_file;
pub mod setup;
pub mod small_sort;
pub mod state;
// The one place for `unsafe`: each block says why it is sound.
#[allow(unsafe_code)]
pub mod system;
#[cfg(test)]
mod test_dir;
pub mod toml_errors;
pub mod totp;
pub mod uri;
pub mod users;
