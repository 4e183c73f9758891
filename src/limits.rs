//! Abuse limits over a user's [`UserState`]: how many codes may be sent in
//! a sliding window, and how many wrong answers lead to a lockout that grows
//! each time it repeats.
//!
//! Plain functions of (state, limits, wall-clock now): the flow calls them
//! inside [`crate::state::StateStore::update`], so concurrent logins of one
//! user are counted exactly.

use serde::Deserialize;

use crate::state::UserState;

/// `[limits]` in gateway.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Codes sent per user per `window` seconds.
    pub codes_per_window: u32,
    /// Seconds of the sliding window.
    pub window: u64,
    /// Wrong answers (over any number of logins) that start a lockout.
    pub failures_before_lockout: u32,
    /// Seconds of the first lockout; each further one doubles it.
    pub lockout: u64,
    /// The longest a lockout grows to.
    pub max_lockout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            codes_per_window: 5,
            window: 900,
            failures_before_lockout: 5,
            lockout: 900,
            max_lockout: 86_400,
        }
    }
}

/// `[limits]` as written; every key optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    codes_per_window: Option<u32>,
    window: Option<u64>,
    failures_before_lockout: Option<u32>,
    lockout: Option<u64>,
    max_lockout: Option<u64>,
}

const WEEK: u64 = 7 * 86_400;

impl Limits {
    /// Validates `[limits]`; `err(key, message)` builds the error with the
    /// file and line.
    pub fn from_raw<E>(
        raw: Option<RawLimits>,
        err: &dyn Fn(&str, String) -> E,
    ) -> Result<Limits, E> {
        let raw = raw.unwrap_or_default();
        let d = Limits::default();
        let range = |key: &str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(err(key, format!("{value} is out of range {min}..={max}")))
            } else {
                Ok(value)
            }
        };
        let codes_per_window = range(
            "codes_per_window",
            raw.codes_per_window.unwrap_or(d.codes_per_window).into(),
            1,
            1000,
        )? as u32;
        let window = range("window", raw.window.unwrap_or(d.window), 10, WEEK)?;
        let failures_before_lockout = range(
            "failures_before_lockout",
            raw.failures_before_lockout
                .unwrap_or(d.failures_before_lockout)
                .into(),
            1,
            100,
        )? as u32;
        let lockout = range("lockout", raw.lockout.unwrap_or(d.lockout), 1, WEEK)?;
        let max_lockout = range(
            "max_lockout",
            raw.max_lockout.unwrap_or(d.max_lockout.max(lockout)),
            1,
            WEEK,
        )?;
        if max_lockout < lockout {
            return Err(err(
                "max_lockout",
                format!("{max_lockout} is shorter than lockout ({lockout})"),
            ));
        }
        Ok(Limits {
            codes_per_window,
            window,
            failures_before_lockout,
            lockout,
            max_lockout,
        })
    }

    /// How long the lockout after `previous` earlier ones lasts: `lockout`
    /// doubled each time, at most `max_lockout`.
    pub fn lockout_for(&self, previous: u32) -> u64 {
        let factor = 1u64.checked_shl(previous.min(63)).unwrap_or(u64::MAX);
        self.lockout.saturating_mul(factor).min(self.max_lockout)
    }
}

/// Backup codes that may be tried during one lockout. Someone who has the
/// password can keep a user locked out for ever by typing wrong codes; a
/// backup code (about 49.5 bits, on the user's paper) still lets the user
/// in during a lockout, under this limit of its own.
pub const LOCKOUT_BACKUP_TRIES: u32 = 3;

/// Why no code may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Too many wrong answers: nothing is accepted until `until`.
    LockedOut { until: u64 },
    /// `codes_per_window` codes were sent in the window; the next may go at `until`.
    TooManyCodes { until: u64 },
}

impl Block {
    pub fn until(&self) -> u64 {
        match self {
            Block::LockedOut { until } | Block::TooManyCodes { until } => *until,
        }
    }
}

/// The lockout in force at `now`, if any. Clears an expired one, and pulls
/// back a lockout that lies further ahead than `max_lockout` (the wall clock
/// was set back): a clock change never locks a user out for longer.
pub fn locked_until(state: &mut UserState, limits: &Limits, now: u64) -> Option<u64> {
    if state.not_me.is_some() {
        return Some(UNTIL_UNLOCKED);
    }
    let until = state.locked_until?;
    if until <= now {
        state.locked_until = None;
        state.lockout_backup_tries = 0;
        return None;
    }
    let latest = now.saturating_add(limits.max_lockout);
    if until > latest {
        state.locked_until = Some(latest);
        return Some(latest);
    }
    Some(until)
}

/// The end of a lock that lasts until an admin unlocks the user: "Not me"
/// ([`UserState::not_me`]). [`wait_text`] says so.
pub const UNTIL_UNLOCKED: u64 = u64::MAX;

/// Locks `user`'s second factor until `pam-gateway unlock`: the user
/// tapped "Not me" at `now`. Kept under the state file's lock like any
/// lockout; an earlier "Not me" time is kept.
pub fn lock_not_me(state: &mut UserState, now: u64) {
    if state.not_me.is_none() {
        state.not_me = Some(now);
    }
    state.lockout_backup_tries = 0;
}

/// Drops send times that left the window.
fn prune(state: &mut UserState, limits: &Limits, now: u64) {
    state
        .sent
        .retain(|&t| t.saturating_add(limits.window) > now);
}

/// Checks the lockout and the send window; when both allow it, records a
/// send at `now` (a reservation made under the lock, so concurrent logins
/// cannot all slip through).
pub fn reserve_send(state: &mut UserState, limits: &Limits, now: u64) -> Result<(), Block> {
    if let Some(until) = locked_until(state, limits, now) {
        return Err(Block::LockedOut { until });
    }
    prune(state, limits, now);
    if state.sent.len() >= limits.codes_per_window as usize {
        let oldest = state.sent.iter().copied().min().unwrap_or(now);
        // A send time in the future (clock set back) waits one window at most.
        let until = oldest
            .saturating_add(limits.window)
            .min(now.saturating_add(limits.window));
        return Err(Block::TooManyCodes { until });
    }
    state.sent.push(now);
    Ok(())
}

/// Gives back a reservation whose message could not be delivered: no code
/// reached the user, so it does not count.
pub fn release_send(state: &mut UserState, reserved_at: u64) {
    if let Some(i) = state.sent.iter().rposition(|&t| t == reserved_at) {
        state.sent.remove(i);
    }
}

/// Counts a wrong answer. Returns the end of the lockout this failure
/// started, if it started one.
pub fn record_failure(state: &mut UserState, limits: &Limits, now: u64) -> Option<u64> {
    state.failures = state.failures.saturating_add(1);
    if state.failures < limits.failures_before_lockout {
        return None;
    }
    let until = now.saturating_add(limits.lockout_for(state.lockouts));
    state.lockouts = state.lockouts.saturating_add(1);
    state.failures = 0;
    state.locked_until = Some(until);
    state.lockout_backup_tries = 0;
    Some(until)
}

/// A right answer: wrong answers and the lockout history are forgiven.
pub fn record_success(state: &mut UserState) {
    state.failures = 0;
    state.lockouts = 0;
    state.locked_until = None;
    state.lockout_backup_tries = 0;
}

/// "15 min" or "40 s": how long until `until`, for people.
pub fn wait_text(until: u64, now: u64) -> String {
    if until == UNTIL_UNLOCKED {
        return "until an admin unlocks it (\"Not me\" was tapped)".to_string();
    }
    let secs = until.saturating_sub(now).max(1);
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn window_allows_n_then_blocks_until_the_oldest_leaves() {
        let l = limits();
        let mut s = UserState::new();
        for i in 0..5 {
            assert_eq!(reserve_send(&mut s, &l, 1000 + i * 10), Ok(()));
        }
        assert_eq!(
            reserve_send(&mut s, &l, 1100),
            Err(Block::TooManyCodes { until: 1900 })
        );
        // Still blocked one second before the oldest leaves, free at it.
        assert!(reserve_send(&mut s, &l, 1899).is_err());
        assert_eq!(reserve_send(&mut s, &l, 1900), Ok(()));
        assert!(reserve_send(&mut s, &l, 1901).is_err());
        assert_eq!(s.sent.len(), 5, "old entries are pruned");
    }

    #[test]
    fn release_gives_the_slot_back() {
        let l = Limits {
            codes_per_window: 1,
            ..limits()
        };
        let mut s = UserState::new();
        assert_eq!(reserve_send(&mut s, &l, 50), Ok(()));
        assert!(reserve_send(&mut s, &l, 51).is_err());
        release_send(&mut s, 50);
        assert_eq!(reserve_send(&mut s, &l, 52), Ok(()));
        release_send(&mut s, 4242);
        assert_eq!(s.sent, vec![52]);
    }

    #[test]
    fn lockout_after_n_failures_and_it_grows() {
        let l = limits();
        let mut s = UserState::new();
        for _ in 0..4 {
            assert_eq!(record_failure(&mut s, &l, 100), None);
        }
        assert_eq!(record_failure(&mut s, &l, 100), Some(1000));
        assert_eq!(s.failures, 0);
        assert_eq!(
            reserve_send(&mut s, &l, 999),
            Err(Block::LockedOut { until: 1000 })
        );
        assert!(s.sent.is_empty(), "a blocked login reserves nothing");
        assert_eq!(reserve_send(&mut s, &l, 1000), Ok(()));
        assert_eq!(s.locked_until, None, "an expired lockout is cleared");
        for _ in 0..4 {
            record_failure(&mut s, &l, 2000);
        }
        assert_eq!(record_failure(&mut s, &l, 2000), Some(2000 + 1800));
        for _ in 0..5 {
            record_failure(&mut s, &l, 5000);
        }
        assert_eq!(s.locked_until, Some(5000 + 3600));
        record_success(&mut s);
        assert_eq!((s.failures, s.lockouts, s.locked_until), (0, 0, None));
    }

    #[test]
    fn lockout_growth_is_capped() {
        let l = limits();
        assert_eq!(l.lockout_for(0), 900);
        assert_eq!(l.lockout_for(1), 1800);
        assert_eq!(l.lockout_for(6), 57_600);
        assert_eq!(l.lockout_for(7), 86_400);
        assert_eq!(l.lockout_for(200), 86_400);
        assert_eq!(l.lockout_for(u32::MAX), 86_400);
    }

    #[test]
    fn clock_set_back_never_lengthens_a_block() {
        let l = limits();
        let mut s = UserState::new();
        s.locked_until = Some(1_000_000);
        // The clock now reads far earlier: the lockout is at most max_lockout.
        assert_eq!(locked_until(&mut s, &l, 10), Some(10 + 86_400));
        let mut s = UserState::new();
        s.sent = vec![1_000_000; 5];
        assert_eq!(
            reserve_send(&mut s, &l, 10),
            Err(Block::TooManyCodes { until: 910 })
        );
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let l = Limits {
            lockout: WEEK,
            max_lockout: WEEK,
            ..limits()
        };
        let mut s = UserState::new();
        s.failures = u32::MAX;
        s.lockouts = u32::MAX;
        assert_eq!(record_failure(&mut s, &l, u64::MAX - 5), Some(u64::MAX));
        s.sent = vec![u64::MAX; 3];
        let _ = reserve_send(&mut s, &l, u64::MAX);
        assert!(s.sent.len() <= 5);
    }

    #[test]
    fn not_me_locks_until_unlocked_whatever_the_clock() {
        let l = limits();
        let mut s = UserState::new();
        lock_not_me(&mut s, 100);
        lock_not_me(&mut s, 200);
        assert_eq!(s.not_me, Some(100), "the first tap is kept");
        for now in [0, 100, 10_000_000, u64::MAX - 1] {
            assert_eq!(locked_until(&mut s, &l, now), Some(UNTIL_UNLOCKED));
            assert_eq!(
                reserve_send(&mut s, &l, now),
                Err(Block::LockedOut {
                    until: UNTIL_UNLOCKED
                })
            );
        }
        record_failure(&mut s, &l, 5);
        assert_eq!(s.not_me, Some(100), "nothing but unlock ends it");
        assert!(wait_text(UNTIL_UNLOCKED, 5).contains("admin unlocks"));
        s.not_me = None;
        assert_eq!(reserve_send(&mut s, &l, 5), Ok(()));
    }

    #[test]
    fn wait_texts() {
        assert_eq!(wait_text(100, 100), "1 s");
        assert_eq!(wait_text(140, 100), "40 s");
        assert_eq!(wait_text(1000, 100), "15 min");
        assert_eq!(wait_text(50, 100), "1 s");
    }

    #[test]
    fn config_ranges() {
        let err = |k: &str, m: String| format!("{k}: {m}");
        assert_eq!(Limits::from_raw(None, &err), Ok(Limits::default()));
        let raw = |text: &str| -> RawLimits { toml::from_str(text).expect("toml") };
        for bad in [
            "codes_per_window = 0",
            "window = 5",
            "failures_before_lockout = 0",
            "lockout = 0",
            "lockout = 900\nmax_lockout = 60",
        ] {
            assert!(Limits::from_raw(Some(raw(bad)), &err).is_err(), "{bad}");
        }
        let l = Limits::from_raw(Some(raw("lockout = 172800")), &err).expect("limits");
        assert_eq!(
            l.max_lockout, 172_800,
            "max_lockout follows a longer lockout"
        );
    }
}
