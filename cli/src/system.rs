//! What the CLI asks the system: who runs it, which accounts exist.

use pam_gateway_core::system::{accounts, effective_uid};

/// Is the effective uid root?
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// Does the account `name` exist (passwd via NSS, as `getent passwd`)?
pub fn user_exists(name: &str) -> Result<bool, String> {
    accounts::user_exists(name).map_err(|e| e.to_string())
}
