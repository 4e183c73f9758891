//! `pam-gateway users` (with the remembered sources in force) and
//! `pam-gateway remove USER`.

use std::path::Path;

use super::{CliError, Exit, OWNER, forget, load_config, unlock};
use crate::toml_edits;
use pam_gateway_core::config::Unenrolled;
use pam_gateway_core::redact::mask;
use pam_gateway_core::setup;
use pam_gateway_core::users::Users;

/// One line per recipient: user, gateway, masked recipient.
pub fn table(users: &Users) -> Vec<String> {
    let width = users
        .users
        .keys()
        .map(|u| u.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut lines = Vec::new();
    for (name, entry) in &users.users {
        for (gateway, recipient) in entry.recipients() {
            lines.push(format!("{name:<width$}  {gateway:<9} {}", mask(recipient)));
        }
    }
    lines
}

pub fn list(config_path: &Path) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let users = setup::load_users_or_empty(&config, OWNER)?;
    if users.users.is_empty() {
        println!(
            "Nobody is enrolled in {}: pam-gateway enroll USER",
            config.users_file.display()
        );
        return Ok(());
    }
    let width = users
        .users
        .keys()
        .map(|u| u.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$}  {:<9} RECIPIENT", "USER", "GATEWAY");
    for line in table(&users) {
        println!("{line}");
    }

    // Fallback factors and what the limits hold, from state_dir.
    let now = unlock::now();
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut remembered = Vec::new();
    for (name, entry) in &users.users {
        let state = unlock::read_state(&config, name);
        if let Ok(st) = &state {
            for line in forget::describe(&forget::in_force(st, &config)) {
                remembered.push((name, line));
            }
        }
        let mut fallback = Vec::new();
        if entry.totp_secret.is_some() {
            fallback.push("authenticator".to_string());
        }
        let limits = match &state {
            Ok(st) => {
                let standing = unlock::Standing::of(st, &config.limits, now);
                match standing.backup_codes {
                    0 => {}
                    1 => fallback.push("1 backup code".to_string()),
                    n => fallback.push(format!("{n} backup codes")),
                }
                standing.describe(name, &config.limits, now)
            }
            Err(e) => {
                problems.push(e.to_string());
                "state unreadable: logins are refused (below)".to_string()
            }
        };
        let fallback = if fallback.is_empty() {
            "-".to_string()
        } else {
            fallback.join(", ")
        };
        rows.push((name, fallback, limits));
    }
    let fb_width = rows
        .iter()
        .map(|(_, f, _)| f.chars().count())
        .max()
        .unwrap_or(0)
        .max("FALLBACK".len());
    println!("\n{:<width$}  {:<fb_width$}  LIMITS", "USER", "FALLBACK");
    for (name, fallback, limits) in rows {
        println!("{name:<width$}  {fallback:<fb_width$}  {limits}");
    }
    if !remembered.is_empty() {
        println!(
            "\nREMEMBERED ([remember] duration = {} s; pam-gateway forget USER ends them)",
            config.remember.duration
        );
        for (name, line) in remembered {
            println!("{name:<width$}  {line}");
        }
    }
    problems.dedup();
    for p in problems {
        println!("\n{p}");
    }
    Ok(())
}

pub fn remove(config_path: &Path, user: &str) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let mut removed = false;
    setup::update_users(
        &config,
        OWNER,
        |users, text| -> Result<Option<String>, CliError> {
            if users.get(user).is_none() {
                return Ok(None);
            }
            let new = toml_edits::remove_user(&config.users_file, text, user)?;
            removed = new.is_some();
            Ok(new)
        },
    )?;
    if !removed {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{user} is not enrolled in {}: nothing to remove (pam-gateway users lists who is)",
                config.users_file.display()
            ),
        ));
    }
    let consequence = match config.unenrolled {
        Unenrolled::Deny => format!(
            "{user} can no longer log in through a stack that uses pam_gateway \
             (unenrolled = \"deny\")"
        ),
        Unenrolled::Ignore => {
            format!("logins of {user} skip the code now (unenrolled = \"ignore\")")
        }
    };
    println!(
        "Removed {user} from {}: {consequence}.",
        config.users_file.display()
    );
    Ok(())
}
