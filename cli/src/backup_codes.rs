//! `pam-gateway backup-codes USER`: ten new one-time codes on standard
//! output (nothing else there, so it can go to a file or a printer); what
//! happened to the previous set on standard error.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

use super::{CliError, Exit, OWNER, load_config, require_account};
use pam_gateway_core::backup_codes;
use pam_gateway_core::setup;
use pam_gateway_core::state::FileStateStore;

pub fn run(config_path: &Path, user: &str) -> Result<(), CliError> {
    require_account(user)?;
    let config = load_config(config_path)?;
    let users = setup::load_users_or_empty(&config, OWNER)?;
    if users.get(user).is_none() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{user} is not enrolled in {}: logins of {user} never get as far as a code, \
                 so backup codes would not be asked for. Enrol {user} first: pam-gateway \
                 enroll {user} (or pam-gateway totp {user})",
                config.users_file.display()
            ),
        ));
    }
    let store = FileStateStore::new(&config.state_dir, OWNER);
    let (codes, voided) = backup_codes::issue_replacing(&store, user)?;

    let mut text = Zeroizing::new(String::new());
    for code in &codes {
        text.push_str(code.expose());
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            CliError::new(
                Exit::Failed,
                format!(
                    "the new codes could not be printed ({e}); they are stored and the \
                     previous set no longer works, so run `pam-gateway backup-codes {user}` \
                     again to get a set you can read"
                ),
            )
        })?;
    let previous = match voided {
        0 => format!("{user} had no unused backup codes before."),
        1 => "The previous set no longer works (1 of its codes was still unused).".to_string(),
        n => format!("The previous set no longer works ({n} of its codes were still unused)."),
    };
    eprintln!(
        "{} new backup codes for {user}, each good for one login at any pam_gateway prompt. \
         {previous} Only their hashes are kept (in {}): give {user} this list now, it cannot \
         be shown again.",
        codes.len(),
        config.state_dir.display()
    );
    Ok(())
}
