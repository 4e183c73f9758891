//! What the CLI asks the system: who runs it, which accounts exist.

/// Is the effective uid root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Does the account `name` exist (passwd via NSS, as `getent passwd`)?
pub fn user_exists(name: &str) -> Result<bool, String> {
    pam_gateway_core::system::accounts::user_exists(name)
}
