//! `pam-gateway unlock USER` (it also ends the user's remembered sources),
//! and what the limits hold for a user, as `pam-gateway users` and `status`
//! show it.

use std::path::Path;

use super::{CliError, Exit, OWNER, load_config, system};
use pam_gateway_core::config::Config;
use pam_gateway_core::limits::{self, Limits, wait_text};
use pam_gateway_core::remember;
use pam_gateway_core::setup;
use pam_gateway_core::state::{
    FileStateStore, StateError, SystemWallClock, UserState, WallClock, update_with,
};

/// What the limits hold for one user at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Unix time the lockout in force ends.
    pub locked_until: Option<u64>,
    /// Wrong answers counted towards the next lockout.
    pub failures: u32,
    /// Lockouts since the last right answer (each makes the next longer).
    pub lockouts: u32,
    /// Codes sent in the current window.
    pub sent: usize,
    /// When the window lets the next code go, if it is full.
    pub window_full_until: Option<u64>,
    /// Unused backup codes.
    pub backup_codes: usize,
}

impl Standing {
    pub fn of(state: &UserState, limits: &Limits, now: u64) -> Standing {
        // locked_until() clears an expired lockout and pulls back one the
        // clock put too far ahead: work on a copy, as a login would see it.
        let mut copy = state.clone();
        let locked_until = limits::locked_until(&mut copy, limits, now);
        let in_window: Vec<u64> = state
            .sent
            .iter()
            .copied()
            .filter(|t| t.saturating_add(limits.window) > now)
            .collect();
        let window_full_until = (in_window.len() >= limits.codes_per_window as usize).then(|| {
            in_window
                .iter()
                .min()
                .map(|oldest| {
                    oldest
                        .saturating_add(limits.window)
                        .min(now.saturating_add(limits.window))
                })
                .unwrap_or(now)
        });
        Standing {
            locked_until,
            failures: state.failures,
            lockouts: state.lockouts,
            sent: in_window.len(),
            window_full_until,
            backup_codes: state.backup_codes.len(),
        }
    }

    /// Nothing that unlock would clear.
    pub fn is_clear(&self) -> bool {
        self.locked_until.is_none() && self.failures == 0 && self.lockouts == 0 && self.sent == 0
    }

    /// One cell of `pam-gateway users`: `ok`, or what is counted.
    pub fn describe(&self, user: &str, limits: &Limits, now: u64) -> String {
        let mut parts = Vec::new();
        if self.locked_until == Some(limits::UNTIL_UNLOCKED) {
            parts.push(format!(
                "LOCKED: \"Not me\" was tapped in Telegram (pam-gateway unlock {user})"
            ));
        } else if let Some(until) = self.locked_until {
            parts.push(format!(
                "LOCKED OUT for another {} (pam-gateway unlock {user})",
                wait_text(until, now)
            ));
        }
        if self.failures > 0 {
            parts.push(format!(
                "{} of {} wrong codes before a lockout",
                self.failures, limits.failures_before_lockout
            ));
        }
        if self.lockouts > 0 && self.locked_until.is_none() {
            parts.push(plural(
                self.lockouts as usize,
                "earlier lockout",
                "earlier lockouts",
            ));
        }
        if self.sent > 0 {
            let mut text = format!(
                "{} of {} codes sent in the window",
                self.sent, limits.codes_per_window
            );
            if let Some(until) = self.window_full_until {
                text.push_str(&format!(", next in {}", wait_text(until, now)));
            }
            parts.push(text);
        }
        if parts.is_empty() {
            "ok".to_string()
        } else {
            parts.join("; ")
        }
    }
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Does `config.state_dir` exist? Display commands do not create it (a
/// login does, on first use).
pub fn state_dir_exists(config: &Config) -> bool {
    std::fs::symlink_metadata(&config.state_dir).is_ok()
}

/// `user`'s state for display: read without the lock and without creating
/// anything; a user (or a state directory) without a file has a fresh one.
pub fn read_state(config: &Config, user: &str) -> Result<UserState, StateError> {
    if !state_dir_exists(config) {
        return Ok(UserState::new());
    }
    FileStateStore::new(&config.state_dir, OWNER).load(user)
}

pub fn now() -> u64 {
    SystemWallClock.unix_now()
}

/// Whether `user` has a state file. Without one, `user` must at least be
/// an account or enrolled: otherwise it is a typo (exit 2).
pub fn has_state_file(
    config: &Config,
    store: &FileStateStore,
    user: &str,
) -> Result<bool, CliError> {
    let path = store.path_for(user)?;
    if state_dir_exists(config) && std::fs::symlink_metadata(&path).is_ok() {
        return Ok(true);
    }
    let users = setup::load_users_or_empty(config, OWNER)?;
    let known = users.get(user).is_some()
        || system::user_exists(user).map_err(|m| CliError::new(Exit::Failed, m))?;
    if !known {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "there is no account {user:?} on this system, no entry for it in {} and \
                 no state for it in {}: check the spelling (pam-gateway users lists who \
                 is enrolled)",
                config.users_file.display(),
                config.state_dir.display()
            ),
        ));
    }
    Ok(false)
}

pub fn run(config_path: &Path, user: &str) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let store = FileStateStore::new(&config.state_dir, OWNER);
    let path = store.path_for(user)?;
    if !has_state_file(&config, &store, user)? {
        println!(
            "Nothing to unlock: {user} has no state file ({} does not exist), so no wrong \
             codes, lockout or sent codes are counted.",
            path.display()
        );
        return Ok(());
    }
    let now = now();
    let before = update_with(&store, user, |s| {
        let before = s.clone();
        s.sent.clear();
        s.failures = 0;
        s.lockouts = 0;
        s.locked_until = None;
        // [approve]: a "Not me" lock ends only here.
        s.not_me = None;
        // [remember]: an unlock also ends every remembered source.
        remember::end_all(s);
        before
    })?;
    let was = Standing::of(&before, &config.limits, now);
    let remembered = remember::active(&before, &config.remember, now).len();
    if was.is_clear() && remembered == 0 {
        println!(
            "Nothing to unlock: {user} is not locked out and has no wrong codes or sent codes \
             counted."
        );
    } else {
        let mut cleared = Vec::new();
        if was.locked_until == Some(limits::UNTIL_UNLOCKED) {
            cleared.push("the \"Not me\" lock".to_string());
        } else if let Some(until) = was.locked_until {
            cleared.push(format!("the lockout (another {})", wait_text(until, now)));
        }
        if was.failures > 0 {
            cleared.push(plural(was.failures as usize, "wrong code", "wrong codes"));
        }
        if was.lockouts > 0 {
            cleared.push(plural(
                was.lockouts as usize,
                "lockout on record",
                "lockouts on record",
            ));
        }
        if was.sent > 0 {
            cleared.push(format!(
                "{} sent in the window",
                plural(was.sent, "code", "codes")
            ));
        }
        if remembered > 0 {
            cleared.push(plural(
                remembered,
                "remembered source",
                "remembered sources",
            ));
        }
        println!("Unlocked {user}: cleared {}.", cleared.join(", "));
        if was.locked_until.is_some() || was.window_full_until.is_some() {
            println!("The next login of {user} gets a code again.");
        }
    }
    let mut kept = vec![plural(
        was.backup_codes,
        "unused backup code",
        "unused backup codes",
    )];
    if before.totp_last_step.is_some() {
        kept.push("the authenticator's replay guard".to_string());
    }
    println!("Kept: {}.", kept.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_reads_a_lockout_and_a_full_window() {
        let l = Limits::default();
        let mut s = UserState::new();
        assert!(Standing::of(&s, &l, 1000).is_clear());
        assert_eq!(Standing::of(&s, &l, 1000).describe("a", &l, 1000), "ok");
        s.sent = vec![100, 900, 950, 960, 970, 980];
        s.failures = 2;
        let st = Standing::of(&s, &l, 1000);
        // 100 left the 900 s window; the other five fill it until 900+900.
        assert_eq!(st.sent, 5);
        assert_eq!(st.window_full_until, Some(1800));
        assert_eq!(
            st.describe("a", &l, 1000),
            "2 of 5 wrong codes before a lockout; 5 of 5 codes sent in the window, next in 14 min"
        );
        s.locked_until = Some(1600);
        s.lockouts = 1;
        s.failures = 0;
        s.sent.clear();
        let st = Standing::of(&s, &l, 1000);
        assert_eq!(
            st.describe("alice", &l, 1000),
            "LOCKED OUT for another 10 min (pam-gateway unlock alice)"
        );
        assert!(!st.is_clear());
        // Over: no longer locked, but the record of it stays until a login succeeds.
        let st = Standing::of(&s, &l, 1600);
        assert_eq!(st.locked_until, None);
        assert_eq!(st.describe("alice", &l, 1600), "1 earlier lockout");
    }
}
