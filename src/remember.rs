//! `[remember]`: after a second factor succeeds for user U from remote host
//! R through service S, later logins of U from R through S skip the code for
//! `duration` seconds.
//!
//! The sources live in U's state file ([`UserState::remembered`]), changed
//! only under U's lock like every other count. A source matches only when
//! R is present (an absent or empty PAM_RHOST never matches), S is one of
//! `services`, U is not locked out, and its time is not in the future (a
//! clock set back must not stretch the window). A wrong answer ends every
//! source of U, and so do `pam-gateway unlock` and `pam-gateway forget`.
//! The flow calls [`lookup`] after its policy, enrolment and wrong-password
//! checks, [`record`] after a success and [`end_all`] with a wrong answer.
//! This file imports neither the flow nor the config (both import it).

use crate::limits::{self, Limits};
use crate::state::{
    MAX_REMEMBERED, MAX_STORED_NAME, RememberedSource, StateError, StateStore, UserState,
    WallClock, update_with,
};
use crate::toml_errors::toml_struct;

/// The longest `duration`: 30 days.
pub const MAX_DURATION: u64 = 30 * 86_400;

/// `[remember]` in gateway.toml. Off unless `duration` is above 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remember {
    /// Seconds a verified source skips the code; 0: off.
    pub duration: u64,
    /// The PAM services it applies to.
    pub services: Vec<String>,
}

impl Default for Remember {
    fn default() -> Self {
        Remember {
            duration: 0,
            services: vec!["sshd".to_string()],
        }
    }
}

toml_struct! {
    /// `[remember]` as written; every key optional.
    #[derive(Debug, Default)]
    pub struct RawRemember {
        duration: Option<u64>,
        services: Option<Vec<String>>,
    }
}

/// Checks a list of PAM service names (`[remember]` and `[alert]`
/// `services`): each a plain name as in /etc/pam.d.
pub fn check_services(list: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in list {
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b));
        if !plain {
            return Err(format!(
                "{name:?} is not a PAM service name (a file name in /etc/pam.d, e.g. \"sshd\")"
            ));
        }
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Ok(out)
}

impl Remember {
    /// Validates `[remember]`; `err(key, message)` builds the error with
    /// the file and line.
    pub fn from_raw<E>(
        raw: Option<RawRemember>,
        err: &dyn Fn(&str, String) -> E,
    ) -> Result<Remember, E> {
        let raw = raw.unwrap_or_default();
        let d = Remember::default();
        let duration = raw.duration.unwrap_or(d.duration);
        if duration > MAX_DURATION {
            return Err(err(
                "duration",
                format!("{duration} is out of range 0..={MAX_DURATION} (30 days)"),
            ));
        }
        let services = match raw.services {
            None => d.services,
            Some(list) => check_services(&list).map_err(|m| err("services", m))?,
        };
        Ok(Remember { duration, services })
    }

    /// Whether logins through `service` may be remembered at all.
    pub fn applies_to(&self, service: &str) -> bool {
        self.duration > 0 && self.services.iter().any(|s| s == service)
    }
}

/// One login as `[remember]` sees it: who, through which service, from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub user: &'a str,
    pub service: &'a str,
    /// PAM_RHOST as the service gave it.
    pub rhost: Option<&'a str>,
}

/// The remote host of a login if it can be remembered: present, not
/// empty, short, without control characters. Anything else never matches
/// and is never stored.
pub fn source_host(rhost: Option<&str>) -> Option<&str> {
    rhost
        .filter(|r| !r.is_empty() && r.len() <= MAX_STORED_NAME && !r.chars().any(char::is_control))
}

/// A remembered source that matched this login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub source: RememberedSource,
    /// When it stops matching.
    pub until: u64,
}

impl Hit {
    /// The log line's reason: which earlier login, which factor, until when.
    pub fn reason(&self) -> String {
        format!(
            "code skipped: {} through {} proved the second factor ({}) at {}; remembered \
             until {} ([remember] duration)",
            self.source.rhost,
            self.source.service,
            self.source.factor,
            utc_text(self.source.since),
            utc_text(self.until)
        )
    }
}

/// When `source` stops matching under `remember`.
pub fn until(source: &RememberedSource, remember: &Remember) -> u64 {
    source.since.saturating_add(remember.duration)
}

/// The source of `state` that lets this login skip the code, if any. Pure:
/// the caller holds the lock and has ruled out a lockout.
pub fn find(
    state: &UserState,
    remember: &Remember,
    service: &str,
    rhost: &str,
    now: u64,
) -> Option<Hit> {
    if !remember.applies_to(service) || rhost.is_empty() {
        return None;
    }
    state
        .remembered
        .iter()
        .filter(|s| s.rhost == rhost && s.service == service)
        // A time in the future: the clock went back. Not trusted.
        .filter(|s| s.since <= now && now < until(s, remember))
        .max_by_key(|s| s.since)
        .map(|s| Hit {
            source: s.clone(),
            until: until(s, remember),
        })
}

/// The remembered source for this login, read under the user's lock.
/// `None` when `[remember]` does not apply, the login has no remote host,
/// the user is locked out, or the state cannot be read (the flow then
/// meets the same error where it always did, and denies).
pub fn lookup(
    remember: &Remember,
    limits: &Limits,
    store: &dyn StateStore,
    wall: &dyn WallClock,
    login: Source<'_>,
) -> Option<Hit> {
    if !remember.applies_to(login.service) {
        return None;
    }
    let rhost = source_host(login.rhost)?;
    let now = wall.unix_now();
    update_with(store, login.user, |s| {
        // On a copy: an expired lockout is cleared by the reservation, as
        // always; this check writes nothing.
        if limits::locked_until(&mut s.clone(), limits, now).is_some() {
            return None;
        }
        find(s, remember, login.service, rhost, now)
    })
    .ok()
    .flatten()
}

/// Remembers this source in `state` from `now`: replaces an older entry of
/// the same source, drops expired ones and ones dated in the future, and
/// keeps at most [`MAX_REMEMBERED`] (the oldest go).
pub fn remember(
    state: &mut UserState,
    remember: &Remember,
    service: &str,
    rhost: &str,
    factor: &str,
    now: u64,
) {
    state.remembered.retain(|s| {
        !(s.rhost == rhost && s.service == service) && s.since <= now && now < until(s, remember)
    });
    state.remembered.push(RememberedSource {
        rhost: rhost.to_string(),
        service: service.to_string(),
        since: now,
        factor: factor.chars().take(MAX_STORED_NAME).collect(),
    });
    if state.remembered.len() > MAX_REMEMBERED {
        crate::small_sort::sort_by_key(&mut state.remembered, |s| s.since);
        let extra = state.remembered.len() - MAX_REMEMBERED;
        state.remembered.drain(..extra);
    }
}

/// After a second factor succeeded: remembers this source when
/// `[remember]` applies. `Ok(false)` when it does not.
pub fn record(
    settings: &Remember,
    store: &dyn StateStore,
    wall: &dyn WallClock,
    login: Source<'_>,
    factor: &str,
) -> Result<bool, StateError> {
    if !settings.applies_to(login.service) {
        return Ok(false);
    }
    let Some(rhost) = source_host(login.rhost) else {
        return Ok(false);
    };
    let now = wall.unix_now();
    update_with(store, login.user, |s| {
        remember(s, settings, login.service, rhost, factor, now)
    })?;
    Ok(true)
}

/// Ends every remembered source of the user (a wrong answer, `unlock`,
/// `forget`); returns how many there were.
pub fn end_all(state: &mut UserState) -> usize {
    std::mem::take(&mut state.remembered).len()
}

/// The sources that still match at `now`, oldest first, each with its end.
pub fn active(state: &UserState, remember: &Remember, now: u64) -> Vec<(RememberedSource, u64)> {
    let mut list: Vec<(RememberedSource, u64)> = state
        .remembered
        .iter()
        .filter(|s| remember.duration > 0 && s.since <= now && now < until(s, remember))
        .map(|s| (s.clone(), until(s, remember)))
        .collect();
    crate::small_sort::sort_by_key(&mut list, |(s, _)| s.since);
    list
}

/// A Unix time as `2025-03-01 14:05:09 UTC`.
pub fn utc_text(unix: u64) -> String {
    let (year, month, day) = civil_from_days(unix / 86_400);
    let secs = unix % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01
/// (Howard Hinnant's civil_from_days).
pub fn civil_from_days(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStateStore;

    const NOW: u64 = 1_700_000_000;

    fn on(duration: u64) -> Remember {
        Remember {
            duration,
            services: vec!["sshd".to_string()],
        }
    }

    fn state_with(sources: &[(&str, &str, u64)]) -> UserState {
        let mut s = UserState::new();
        for (rhost, service, since) in sources {
            s.remembered.push(RememberedSource {
                rhost: rhost.to_string(),
                service: service.to_string(),
                since: *since,
                factor: "telegram".to_string(),
            });
        }
        s
    }

    #[test]
    fn matches_same_host_and_service_within_the_window_only() {
        let r = on(600);
        let s = state_with(&[("203.0.113.7", "sshd", NOW - 100)]);
        let hit = find(&s, &r, "sshd", "203.0.113.7", NOW).expect("hit");
        assert_eq!(hit.until, NOW + 500);
        assert_eq!(hit.source.factor, "telegram");
        assert!(
            find(&s, &r, "sshd", "203.0.113.8", NOW).is_none(),
            "other host"
        );
        assert!(
            find(&s, &r, "sudo", "203.0.113.7", NOW).is_none(),
            "other service"
        );
        assert!(find(&s, &r, "sshd", "", NOW).is_none(), "empty host");
        // Expired at since + duration exactly.
        assert!(find(&s, &r, "sshd", "203.0.113.7", NOW + 500).is_none());
        assert!(find(&s, &r, "sshd", "203.0.113.7", NOW + 499).is_some());
        // Off, or the service not listed.
        assert!(find(&s, &on(0), "sshd", "203.0.113.7", NOW).is_none());
        let sudo_only = Remember {
            duration: 600,
            services: vec!["sudo".to_string()],
        };
        assert!(find(&s, &sudo_only, "sshd", "203.0.113.7", NOW).is_none());
        // A shorter duration applies at once to what is stored.
        assert!(find(&s, &on(100), "sshd", "203.0.113.7", NOW).is_none());
    }

    #[test]
    fn a_source_dated_in_the_future_never_matches() {
        // The clock went back after the source was recorded.
        let r = on(36_000);
        let s = state_with(&[("203.0.113.7", "sshd", NOW + 3600)]);
        assert!(find(&s, &r, "sshd", "203.0.113.7", NOW).is_none());
        assert!(active(&s, &r, NOW).is_empty());
        // Recording anew drops it and starts from now.
        let mut s = s;
        remember(&mut s, &r, "sshd", "203.0.113.8", "telegram", NOW);
        assert_eq!(s.remembered.len(), 1);
        assert_eq!(s.remembered[0].rhost, "203.0.113.8");
    }

    #[test]
    fn recording_replaces_prunes_and_bounds() {
        let r = on(600);
        let mut s = state_with(&[
            ("203.0.113.7", "sshd", NOW - 100),
            ("203.0.113.9", "sshd", NOW - 700), // expired
        ]);
        remember(&mut s, &r, "sshd", "203.0.113.7", "totp", NOW);
        assert_eq!(s.remembered.len(), 1);
        assert_eq!(s.remembered[0].since, NOW);
        assert_eq!(s.remembered[0].factor, "totp");
        for i in 0..40u64 {
            remember(
                &mut s,
                &r,
                "sshd",
                &format!("10.0.0.{i}"),
                "telegram",
                NOW + i,
            );
        }
        assert_eq!(s.remembered.len(), MAX_REMEMBERED);
        // The oldest went first.
        assert!(s.remembered.iter().all(|x| x.since >= NOW + 8));
        assert!(s.remembered.iter().any(|x| x.rhost == "10.0.0.39"));
        assert!(UserState::parse(&s.to_text()).is_ok());
        assert_eq!(end_all(&mut s), MAX_REMEMBERED);
        assert!(s.remembered.is_empty());
    }

    #[test]
    fn odd_remote_hosts_are_never_remembered() {
        assert_eq!(source_host(None), None);
        for bad in ["", "1.2.3.4\nforged", "a\u{7f}b", &"h".repeat(256)] {
            assert_eq!(source_host(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(
            source_host(Some("host.example.org")),
            Some("host.example.org")
        );
    }

    #[test]
    fn lookup_and_record_over_a_store() {
        struct Fixed(u64);
        impl WallClock for Fixed {
            fn unix_now(&self) -> u64 {
                self.0
            }
        }
        let r = on(600);
        let l = Limits::default();
        let store = MemoryStateStore::default();
        let login = Source {
            user: "alice",
            service: "sshd",
            rhost: Some("203.0.113.7"),
        };
        assert!(lookup(&r, &l, &store, &Fixed(NOW), login).is_none());
        assert!(record(&r, &store, &Fixed(NOW), login, "telegram").expect("record"));
        let hit = lookup(&r, &l, &store, &Fixed(NOW + 10), login).expect("hit");
        assert!(hit.reason().contains("(telegram)"), "{}", hit.reason());
        let bob = Source {
            user: "bob",
            ..login
        };
        assert!(
            lookup(&r, &l, &store, &Fixed(NOW + 10), bob).is_none(),
            "other user"
        );
        // The clock went back before the recorded login.
        assert!(lookup(&r, &l, &store, &Fixed(NOW - 1), login).is_none());
        // A lockout in force: never.
        let mut st = store.get("alice").expect("state");
        st.locked_until = Some(NOW + 900);
        store.set("alice", st);
        assert!(lookup(&r, &l, &store, &Fixed(NOW + 10), login).is_none());
        // A broken state: no hit (the flow then denies where it always did).
        *store.broken.lock().expect("lock") = Some("corrupt".into());
        assert!(lookup(&r, &l, &store, &Fixed(NOW + 10), login).is_none());
        // Off: nothing read or written.
        assert!(!record(&on(0), &store, &Fixed(NOW), login, "telegram").expect("off"));
    }

    #[test]
    fn utc_texts() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_text(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn section_checks() {
        let err = |k: &str, m: String| format!("{k}: {m}");
        assert_eq!(Remember::from_raw(None, &err), Ok(Remember::default()));
        assert!(!Remember::default().applies_to("sshd"), "off by default");
        let raw = |d: Option<u64>, s: Option<Vec<&str>>| RawRemember {
            duration: d,
            services: s.map(|v| v.into_iter().map(String::from).collect()),
        };
        let r = Remember::from_raw(Some(raw(Some(36_000), None)), &err).expect("ok");
        assert!(r.applies_to("sshd") && !r.applies_to("sudo"));
        assert!(
            Remember::from_raw(Some(raw(Some(MAX_DURATION + 1), None)), &err)
                .unwrap_err()
                .starts_with("duration:")
        );
        for bad in ["", "ss hd", "../sshd", "a\nb"] {
            assert!(
                Remember::from_raw(Some(raw(Some(60), Some(vec![bad]))), &err)
                    .unwrap_err()
                    .starts_with("services:"),
                "{bad:?}"
            );
        }
        let r = Remember::from_raw(
            Some(raw(Some(60), Some(vec!["sshd", "sudo", "sshd"]))),
            &err,
        )
        .expect("ok");
        assert_eq!(r.services, ["sshd", "sudo"]);
    }
}
