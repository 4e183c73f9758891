//! What pam_gateway's integration tests and examples share: loopback fakes of
//! the services (the Telegram Bot API, any HTTP service, a TLS front), the
//! real-libpam harness (pamtester in a private mount namespace), the
//! real-client sandbox (sshd, sudo, su, login in their own namespaces), a
//! pty, the CLI harness, a real OpenLDAP slapd ([`slapd`]), and the flow's fakes for the tests without libpam.
//! Tests that need root say so in one place: [`root`].

pub mod cli_harness;
pub mod daemon;
pub mod fake_http;
pub mod fake_telegram;
pub mod flow_fakes;
mod http_server;
pub mod libpam_ffi;
pub mod pam_harness;
pub mod pty;
pub mod root;
pub mod sandbox;
pub mod slapd;
pub mod ssh;
pub mod tls_front;

/// The repository's top directory (pam.d/, conf/, scripts/ are there).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from(".."))
}
