//! `pam-gateway totp USER`: a new authenticator secret, shown once (URI,
//! QR code, key), proved with a code from the app, then stored in the
//! users file, which becomes owner-only.

use std::io::{IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::terminal::Input;
use super::{CliError, Exit, OWNER, TotpArgs, load_config, qr, require_account};
use crate::toml_edits;
use pam_gateway_core::limits::wait_text;
use pam_gateway_core::setup;
use pam_gateway_core::state::{FileStateStore, StateStore, SystemWallClock, WallClock};
use pam_gateway_core::system::hostname;
use pam_gateway_core::totp::{self, DIGITS, STEP_SECONDS, TotpKey};

/// Answers to the code prompt before giving up.
const TRIES: u32 = 3;
/// How far (in steps either way) a wrong answer is looked up to tell a
/// wrong clock from a wrong code: 20 steps, 10 minutes.
const CLOCK_SEARCH_STEPS: u64 = 20;

pub fn run(config_path: &Path, args: &TotpArgs) -> Result<(), CliError> {
    let user = args.user.as_str();
    require_account(user)?;
    let config = load_config(config_path)?;
    let users = setup::load_users_or_empty(&config, OWNER)?;
    let replacing = users.get(user).is_some_and(|e| e.totp_secret.is_some());
    if replacing && !args.replace {
        return Err(already_has_one(user, &config.users_file));
    }
    // The code typed below is recorded as used: check the state directory
    // before a secret is shown, not after.
    let store = FileStateStore::new(&config.state_dir, OWNER);
    if !args.no_verify {
        store.ensure_dir()?;
    }

    let host = hostname();
    let mut enrolment = totp::new_enrolment(user, &host)?;
    let uri = Zeroizing::new(std::mem::take(&mut enrolment.uri));
    let key = &enrolment.key;
    show(user, &host, &uri, key, args.no_qr);

    let verified_step = if args.no_verify {
        println!("Not checked with a code (--no-verify).");
        None
    } else {
        Some(confirm(user, key)?)
    };
    if let Some(step) = verified_step {
        // The code just typed is used: a login does not accept it again.
        store.update(user, &mut |s| {
            s.totp_last_step = Some(s.totp_last_step.map_or(step, |last| last.max(step)));
        })?;
    }

    let secret = Zeroizing::new(key.to_base32());
    let mode_before = std::fs::metadata(&config.users_file)
        .ok()
        .map(|m| m.mode() & 0o7777);
    setup::update_users(
        &config,
        OWNER,
        |users, text| -> Result<Option<String>, CliError> {
            // Another run may have stored one since the check above.
            if !args.replace && users.get(user).is_some_and(|e| e.totp_secret.is_some()) {
                return Err(already_has_one(user, &config.users_file));
            }
            Ok(Some(toml_edits::set_user_totp_secret(
                &config.users_file,
                text,
                user,
                &secret,
            )?))
        },
    )?;
    let mode_now = std::fs::metadata(&config.users_file)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(0);
    let mode_note = match mode_before {
        Some(before) if before != mode_now => {
            format!("mode {mode_now:04o}, was {before:04o}: it holds a secret now")
        }
        _ => format!("mode {mode_now:04o}"),
    };
    println!(
        "{} {user}'s authenticator secret in {} ({mode_note}).",
        if replacing { "Replaced" } else { "Stored" },
        config.users_file.display()
    );
    if replacing {
        println!("The old entry in {user}'s app no longer works: delete it there.");
    }
    let gateways = users.get(user).map(|e| !e.is_empty()).unwrap_or(false);
    if gateways {
        println!(
            "{user} can type an authenticator code at any pam_gateway prompt, and is asked \
             for one when no code can be delivered."
        );
    } else {
        println!(
            "{user} has no gateway: every login through pam_gateway asks for an \
             authenticator code."
        );
    }
    Ok(())
}

fn already_has_one(user: &str, users_file: &Path) -> CliError {
    CliError::new(
        Exit::Usage,
        format!(
            "{user} already has an authenticator secret in {}: the codes of {user}'s app \
             work now. To give {user} a new one (the old one stops working), add --replace",
            users_file.display()
        ),
    )
}

/// The key in groups of four, as apps ask for it to be typed.
fn grouped(base32: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(base32.len() * 5 / 4));
    for (i, c) in base32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn show(user: &str, host: &str, uri: &str, key: &TotpKey, no_qr: bool) {
    println!(
        "Scan this QR code with {user}'s authenticator app (Aegis, FreeOTP, Google \
         Authenticator, 1Password, ...), or open the link on the phone. It holds the \
         secret: show it to {user} only.\n\n    {uri}\n"
    );
    if !no_qr {
        // Black on white when this is a terminal (scans on dark and light
        // backgrounds alike), as `pam-gateway enroll` draws its link.
        let colour = std::io::stdout().is_terminal();
        match qr::render(uri, colour) {
            Ok(mut rows) => {
                for row in &rows {
                    println!("    {row}");
                }
                println!();
                for row in &mut rows {
                    row.zeroize();
                }
            }
            Err(m) => println!("({m}; use the link or the key)"),
        }
    }
    let b32 = Zeroizing::new(key.to_base32());
    println!(
        "Or add it by hand: account {user}@{host}, key {}, time-based, {DIGITS} digits, \
         every {STEP_SECONDS} s, SHA-1.\n",
        grouped(&b32).as_str()
    );
    let _ = std::io::stdout().flush();
}

/// Asks for the app's current code; returns the time step it matched.
fn confirm(user: &str, key: &TotpKey) -> Result<u64, CliError> {
    println!("Type the {DIGITS}-digit code {user}'s app shows now, to check that it works.");
    let mut input = Input::new();
    for attempt in 1..=TRIES {
        let answer = input
            .line("Code: ", true)
            .map_err(|m| CliError::new(Exit::Failed, m.to_string()))?;
        let Some(answer) = answer else {
            return Err(CliError::new(
                Exit::Failed,
                "no code entered: nothing was written; run the command again (a new secret \
                 is made; delete this one from the app)",
            ));
        };
        let now = SystemWallClock.unix_now();
        if let Some(step) = key.matching_step(answer.as_bytes(), now) {
            println!("Code confirmed.");
            return Ok(step);
        }
        let left = TRIES - attempt;
        let hint = match clock_offset(key, answer.as_bytes(), now) {
            Some(offset) => format!(
                "That code belongs to a time about {} {} this machine's clock: set the phone's \
                 time (and this machine's) automatically",
                wait_text(offset.unsigned_abs(), 0),
                if offset > 0 { "ahead of" } else { "behind" }
            ),
            None => format!("That is not the code {user}'s app shows for this secret"),
        };
        if left > 1 {
            eprintln!("{hint}; {left} tries left.");
        } else if left == 1 {
            eprintln!("{hint}; 1 try left.");
        } else {
            eprintln!("{hint}.");
        }
    }
    Err(CliError::new(
        Exit::Failed,
        format!(
            "wrong code {TRIES} times: nothing was written. Check that the app added \
             pam_gateway ({user}@{}) from the code above and that the phone's clock is right, \
             then run `pam-gateway totp {user}` again (it makes a new secret: delete this one \
             from the app)",
            hostname()
        ),
    ))
}

/// Seconds between this machine's clock and the step `answer` belongs to,
/// when it is a code of this key within [`CLOCK_SEARCH_STEPS`] steps.
fn clock_offset(key: &TotpKey, answer: &[u8], now: u64) -> Option<i64> {
    let span = CLOCK_SEARCH_STEPS * STEP_SECONDS;
    let mut t = now.saturating_sub(span);
    while t <= now.saturating_add(span) {
        // matching_step looks one step either side: every third step.
        if let Some(step) = key.matching_step(answer, t) {
            let at = (step * STEP_SECONDS) as i64;
            return Some(at - now as i64);
        }
        t += 3 * STEP_SECONDS;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups() {
        assert_eq!(grouped("ABCDEFGHIJ").as_str(), "ABCD EFGH IJ");
        assert_eq!(grouped("ABCD").as_str(), "ABCD");
    }

    #[test]
    fn clock_offsets_are_found_both_ways() {
        let key = TotpKey::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("key");
        let now = 1_800_000_015;
        let ahead = key.code_at(now + 300);
        let off = clock_offset(&key, ahead.as_bytes(), now).expect("found");
        assert!((270..=330).contains(&off), "{off}");
        let behind = key.code_at(now - 240);
        let off = clock_offset(&key, behind.as_bytes(), now).expect("found");
        assert!((-270..=-210).contains(&off), "{off}");
        assert_eq!(clock_offset(&key, b"abcdef", now), None);
        // Two hours off is outside the search: a wrong code, not a clock.
        let far = key.code_at(now + 7200);
        assert_eq!(clock_offset(&key, far.as_bytes(), now), None);
    }
}
