//! `pam-gateway users` (with the remembered sources in force) and
//! `pam-gateway remove USER`.

use std::path::Path;

use super::{CliError, Exit, OWNER, directory, forget, load_config, unlock};
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
    let local_source = config.users_file.display().to_string();
    // (user, gateway, masked recipient, source)
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for (name, entry) in &users.users {
        for (gateway, recipient) in entry.recipients() {
            rows.push((
                name.clone(),
                gateway.to_string(),
                mask(recipient),
                local_source.clone(),
            ));
        }
    }
    // The directory, as the module's bind sees it. A failure is reported
    // after what could be listed.
    let mut directory_failure: Option<CliError> = None;
    let mut directory_note = None;
    if let Some(dir) = &config.directory {
        match directory::list(dir) {
            Ok(listing) => {
                for entry in &listing.entries {
                    let name = directory::name_of(dir, entry);
                    let source = if users.get(&name).is_some() {
                        format!("directory (not used here: {local_source} has {name})")
                    } else {
                        "directory".to_string()
                    };
                    for (kind, masked) in directory::recipients(dir, entry) {
                        rows.push((name.clone(), kind.id().to_string(), masked, source.clone()));
                    }
                }
                if listing.truncated {
                    directory_note = Some(format!(
                        "The directory has more entries with recipients than the first {} \
                         listed here.",
                        directory::LIST_LIMIT
                    ));
                }
            }
            Err(e) => directory_failure = Some(e),
        }
    }
    if rows.is_empty() && directory_failure.is_none() {
        let also = if config.directory.is_some() {
            " or in the directory"
        } else {
            ""
        };
        println!(
            "Nobody is enrolled in {}{also}: pam-gateway enroll USER",
            config.users_file.display()
        );
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let rwidth = rows
        .iter()
        .map(|r| r.2.chars().count())
        .max()
        .unwrap_or(0)
        .max("RECIPIENT".len());
    println!(
        "{:<width$}  {:<9} {:<rwidth$}  SOURCE",
        "USER", "GATEWAY", "RECIPIENT"
    );
    for (name, gateway, recipient, source) in &rows {
        println!("{name:<width$}  {gateway:<9} {recipient:<rwidth$}  {source}");
    }
    if let Some(note) = &directory_note {
        println!("\n{note}");
    }
    if users.users.is_empty() {
        return directory_failure.map_or(Ok(()), Err);
    }
    let width = users
        .users
        .keys()
        .map(|u| u.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);

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
    directory_failure.map_or(Ok(()), Err)
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
