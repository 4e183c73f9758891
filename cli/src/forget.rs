//! `pam-gateway forget USER`: ends every remembered source of USER
//! (`[remember]`), so that USER's next login from anywhere asks for a code.

use std::path::Path;

use super::unlock::{self, plural};
use super::{CliError, OWNER, load_config};
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::message_field;
use pam_gateway_core::remember::{self, utc_text};
use pam_gateway_core::state::{FileStateStore, RememberedSource, UserState, update_with};

pub fn run(config_path: &Path, user: &str) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let store = FileStateStore::new(&config.state_dir, OWNER);
    if !unlock::has_state_file(&config, &store, user)? {
        println!("Nothing to forget: {user} has no state file, so no remembered sources.");
        return Ok(());
    }
    let now = unlock::now();
    // Under the user's lock, like a login: one running now either saw the
    // sources before this or finds none.
    let ended = update_with(&store, user, |s| {
        let before = s.clone();
        remember::end_all(s);
        before
    })?;
    let still = remember::active(&ended, &config.remember, now);
    let stale = ended.remembered.len() - still.len();
    if ended.remembered.is_empty() {
        println!("Nothing to forget: {user} has no remembered sources.");
        return Ok(());
    }
    if still.is_empty() {
        println!(
            "{user} had no remembered source in force; removed {} that had run out.",
            plural(stale, "entry", "entries")
        );
        return Ok(());
    }
    println!(
        "Forgot {} of {user}:",
        plural(still.len(), "remembered source", "remembered sources")
    );
    for line in describe(&still) {
        println!("  {line}");
    }
    println!("The next login of {user} from each of them asks for a code again.");
    Ok(())
}

/// One line per source: host, service, until.
pub fn describe(sources: &[(RememberedSource, u64)]) -> Vec<String> {
    sources
        .iter()
        .map(|(s, until)| {
            format!(
                "{} through {}: verified at {} ({}), until {}",
                message_field(&s.rhost),
                message_field(&s.service),
                utc_text(s.since),
                message_field(&s.factor),
                utc_text(*until)
            )
        })
        .collect()
}

/// `user`'s remembered sources in force, for `pam-gateway users`.
pub fn in_force(state: &UserState, config: &Config) -> Vec<(RememberedSource, u64)> {
    remember::active(state, &config.remember, unlock::now())
}
