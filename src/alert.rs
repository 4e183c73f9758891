//! `[alert]`: one short message per login, sent by `session optional
//! pam_gateway.so` (`pam_sm_open_session`) to the user and/or the admins'
//! Telegram chats: who, which host, from where, which service, and how they
//! got in.
//!
//! The authentication and the session can run in different processes
//! (sshd authenticates in a child that is gone when the session opens), so
//! the auth step writes the way in to the user's state file
//! ([`record_way_in`]) and the session hook takes the record of the same
//! service and remote host from the last [`RECORD_MAX_AGE`] seconds
//! ([`take_login`]). No record: the login did not go through pam_gateway's
//! auth (an SSH key alone, for one).
//!
//! An alert never changes a login: the hook returns PAM_IGNORE whatever
//! happens, failures are logged, and the time it may take is bounded
//! ([`deliver`]). A per-user limit ([`AlertConfig::per_hour`]) keeps a
//! script that logs in in a loop from flooding anyone. The message holds no
//! code and no token; values from PAM go through
//! [`crate::flow::message_field`].

use std::time::{Duration, Instant};

use crate::config::{AlertConfig, Config};
use crate::flow::{LoginContext, Outcome, clean, message_field};
use crate::gateway::{Gateway, GatewayKind};
use crate::log::{Level, Log};
use crate::network::Network;
use crate::policy::{Coverage, Groups};
use crate::redact::{mask, mask_recipient};
use crate::remember::{self, utc_text};
use crate::state::{
    LoginRecord, MAX_ALERT_TIMES, MAX_RECENT_LOGINS, MAX_STORED_NAME, StateError, StateStore,
    UserState, WallClock, update_with,
};
use crate::users::UserEntry;

/// How long after its authentication a session may take the record of it.
pub const RECORD_MAX_AGE: u64 = 300;
/// A recipient's next gateway is tried only when the ones before it failed
/// within this time: a fast failure (refused, rejected) moves on, a slow one
/// (a timeout) ends the attempt. So an alert takes at most the longest
/// gateway timeout plus this.
pub const NEXT_ROUTE_WITHIN: Duration = Duration::from_secs(1);

/// How a login got past (or around) the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WayIn {
    /// The code sent through this gateway (its id: `telegram`, ...).
    Code(String),
    Authenticator,
    BackupCode,
    /// `[remember]`: the detail says which earlier login, until when.
    Remembered(String),
    /// `[policy] exempt_networks`; the detail names address and network.
    ExemptNetwork(String),
    /// `[policy] exempt_groups` (or not in `require_groups`).
    ExemptGroup(String),
    /// No gateway could be reached and `failmode = "safe"`.
    FailmodeSafe,
    /// No entry in the users file and `unenrolled = "ignore"`.
    NotEnrolled,
}

impl WayIn {
    /// The way in of an authentication that ended with `outcome`; `None`
    /// for an outcome that lets nobody in. `policy_reason` is `[policy]`'s
    /// reason for an exempt login.
    pub fn of(outcome: &Outcome, policy_reason: Option<&str>) -> Option<WayIn> {
        Some(match outcome {
            Outcome::Success { gateway: "totp" } => WayIn::Authenticator,
            Outcome::Success {
                gateway: "backup-code",
            } => WayIn::BackupCode,
            Outcome::Success { gateway } => WayIn::Code(gateway.to_string()),
            Outcome::Remembered => WayIn::Remembered(String::new()),
            Outcome::PolicyIgnored => {
                let reason = policy_reason.unwrap_or("").to_string();
                if reason.contains("exempt network") {
                    WayIn::ExemptNetwork(reason)
                } else {
                    WayIn::ExemptGroup(reason)
                }
            }
            Outcome::DeliveryFailedIgnored => WayIn::FailmodeSafe,
            Outcome::NotEnrolledIgnored => WayIn::NotEnrolled,
            _ => return None,
        })
    }

    /// As stored in [`LoginRecord::how`] and `detail`.
    fn stored(&self) -> (&'static str, Option<String>) {
        match self {
            WayIn::Code(g) => ("code", Some(g.clone())),
            WayIn::Authenticator => ("authenticator", None),
            WayIn::BackupCode => ("backup-code", None),
            WayIn::Remembered(d) => ("remembered", Some(d.clone())),
            WayIn::ExemptNetwork(d) => ("exempt-network", Some(d.clone())),
            WayIn::ExemptGroup(d) => ("exempt-group", Some(d.clone())),
            WayIn::FailmodeSafe => ("failmode-safe", None),
            WayIn::NotEnrolled => ("not-enrolled", None),
        }
    }

    fn from_stored(how: &str, detail: Option<&str>) -> Option<WayIn> {
        let d = || detail.unwrap_or("").to_string();
        Some(match how {
            "code" => WayIn::Code(d()),
            "authenticator" => WayIn::Authenticator,
            "backup-code" => WayIn::BackupCode,
            "remembered" => WayIn::Remembered(d()),
            "exempt-network" => WayIn::ExemptNetwork(d()),
            "exempt-group" => WayIn::ExemptGroup(d()),
            "failmode-safe" => WayIn::FailmodeSafe,
            "not-enrolled" => WayIn::NotEnrolled,
            _ => return None,
        })
    }

    /// The words for the message and the log: "with a code sent via Telegram".
    pub fn describe(&self, config: &Config) -> String {
        match self {
            WayIn::Code(g) => {
                let name = GatewayKind::from_id(g)
                    .filter(|k| config.has(*k))
                    .map_or(g.as_str(), |k| config.display_name(k));
                format!("with a code sent via {}", message_field(name))
            }
            WayIn::Authenticator => "with an authenticator code".to_string(),
            WayIn::BackupCode => "with a backup code".to_string(),
            WayIn::Remembered(d) => format!("without a code: {}", message_field(d)),
            WayIn::ExemptNetwork(d) | WayIn::ExemptGroup(d) => {
                format!("without a code: {}", message_field(d))
            }
            WayIn::FailmodeSafe => "without a code: no gateway could be reached and \
                                    failmode = \"safe\" let the first factor decide"
                .to_string(),
            WayIn::NotEnrolled => {
                "without a code: not enrolled, and unenrolled = \"ignore\"".to_string()
            }
        }
    }
}

/// What the message says when no authentication of this login was recorded.
pub const NO_WAY_IN_RECORDED: &str =
    "no second factor by pam_gateway (public key only, or not through pam_gateway)";

fn bounded(s: &str) -> String {
    s.chars().take(MAX_STORED_NAME).collect()
}

/// [`record_way_in`] at the end of a real login (the system's clock and
/// groups), a failure logged as a warning: it never changes the result.
/// The module and pam-gatewayd (for a login it runs) both end so.
pub fn record_way_in_logged(
    config: &Config,
    store: &dyn StateStore,
    ctx: &LoginContext,
    outcome: &Outcome,
    log: &mut dyn Log,
) {
    if let Err(e) = record_way_in(
        config,
        store,
        &crate::state::SystemWallClock,
        &crate::policy::SystemGroups,
        ctx,
        outcome,
    ) {
        log.log(
            Level::Warning,
            &format!(
                "user={} could not record the way in for [alert]: {e}",
                clean(&ctx.user)
            ),
        );
    }
}

/// After an authentication: writes how this login got in to the user's
/// state for the session hook, when `[alert]` reports this service and the
/// outcome lets the user in. `Ok(false)` when there was nothing to write.
pub fn record_way_in(
    config: &Config,
    store: &dyn StateStore,
    wall: &dyn WallClock,
    groups: &dyn Groups,
    ctx: &LoginContext,
    outcome: &Outcome,
) -> Result<bool, StateError> {
    if !config.alert.applies_to(&ctx.service) {
        return Ok(false);
    }
    let policy_reason = match outcome {
        // The same pure check the flow made a moment ago, for its words.
        Outcome::PolicyIgnored => {
            match config
                .access
                .coverage(&ctx.user, ctx.rhost.as_deref(), groups)
            {
                Ok(Coverage::Exempt(why)) => Some(why),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(way) = WayIn::of(outcome, policy_reason.as_deref()) else {
        return Ok(false);
    };
    let now = wall.unix_now();
    update_with(store, &ctx.user, |s| {
        let way = match way {
            WayIn::Remembered(_) => WayIn::Remembered(
                remember::source_host(ctx.rhost.as_deref())
                    .and_then(|rhost| remember::find(s, &config.remember, &ctx.service, rhost, now))
                    .map(|hit| {
                        format!(
                            "this address proved a code ({}) at {}, remembered until {}",
                            hit.source.factor,
                            utc_text(hit.source.since),
                            utc_text(hit.until)
                        )
                    })
                    .unwrap_or_else(|| "remembered from an earlier login".to_string()),
            ),
            other => other,
        };
        let (how, detail) = way.stored();
        push_login(
            s,
            LoginRecord {
                service: bounded(&ctx.service),
                rhost: ctx.rhost.as_deref().filter(|r| !r.is_empty()).map(bounded),
                time: now,
                how: how.to_string(),
                detail: detail.map(|d| bounded(&d)),
            },
        );
    })?;
    Ok(true)
}

/// Adds a record, keeping the newest [`MAX_RECENT_LOGINS`].
pub fn push_login(state: &mut UserState, record: LoginRecord) {
    state.recent_logins.push(record);
    if state.recent_logins.len() > MAX_RECENT_LOGINS {
        crate::small_sort::sort_by_key(&mut state.recent_logins, |r| r.time);
        let extra = state.recent_logins.len() - MAX_RECENT_LOGINS;
        state.recent_logins.drain(..extra);
    }
}

/// Takes (removes) the newest record of a login through `service` from
/// `rhost` in the last [`RECORD_MAX_AGE`] seconds; drops stale ones and
/// ones dated in the future (a clock set back).
pub fn take_login(
    state: &mut UserState,
    service: &str,
    rhost: Option<&str>,
    now: u64,
) -> Option<LoginRecord> {
    let rhost = rhost.filter(|r| !r.is_empty()).map(bounded);
    let service = bounded(service);
    state
        .recent_logins
        .retain(|r| r.time <= now && now - r.time <= RECORD_MAX_AGE);
    let i = state
        .recent_logins
        .iter()
        .enumerate()
        .filter(|(_, r)| r.service == service && r.rhost == rhost)
        .max_by_key(|(_, r)| r.time)
        .map(|(i, _)| i)?;
    Some(state.recent_logins.remove(i))
}

/// The per-user limit: `Ok` (and counts this alert) when fewer than
/// `per_hour` alerts went out in the last hour, else `Err(count)`.
pub fn rate_allows(state: &mut UserState, per_hour: u32, now: u64) -> Result<(), usize> {
    state.alerts_sent.retain(|t| *t <= now && now - *t < 3600);
    let count = state.alerts_sent.len();
    if count >= per_hour as usize || count >= MAX_ALERT_TIMES {
        return Err(count);
    }
    state.alerts_sent.push(now);
    Ok(())
}

/// The message: one line about the login, one about what to do.
pub fn compose(config: &Config, ctx: &LoginContext, way: Option<&WayIn>, now: u64) -> String {
    let from = ctx
        .rhost
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or("local");
    let how = way.map_or_else(|| NO_WAY_IN_RECORDED.to_string(), |w| w.describe(config));
    format!(
        "Login: {}@{} from {} ({}) at {}, {how}.\nIf this was not you, tell your admin now.",
        message_field(&ctx.user),
        message_field(&ctx.host),
        message_field(from),
        message_field(&ctx.service),
        utc_text(now),
    )
}

/// One recipient of an alert and the gateways to reach it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// For the log: "user", "admin chat ***789".
    pub label: String,
    pub routes: Vec<(GatewayKind, String)>,
}

/// How one slot ended: the gateway that delivered, or why none did.
pub type SlotResult = Result<&'static str, String>;

/// Builds a gateway; called inside each slot's thread (gateways hold
/// clients that stay on one thread).
pub type MakeGateway<'a> = &'a (dyn Fn(GatewayKind) -> Option<Box<dyn Gateway>> + Sync);

/// Sends `text` to every slot at once, each in its own thread, and waits
/// for all: the whole takes about as long as the slowest gateway's own
/// timeout (plus [`NEXT_ROUTE_WITHIN`]), whatever the number of slots. A
/// thread that cannot be started (a caller's RLIMIT_NPROC) sends inline.
pub fn deliver(slots: &[Slot], make: MakeGateway<'_>, text: &str) -> Vec<(String, SlotResult)> {
    std::thread::scope(|scope| {
        let mut pending = Vec::new();
        let mut done = Vec::new();
        for slot in slots {
            let spawned = std::thread::Builder::new()
                .name("pam_gateway-alert".to_string())
                .spawn_scoped(scope, move || send_slot(slot, make, text));
            match spawned {
                Ok(handle) => pending.push((slot.label.clone(), handle)),
                Err(_) => done.push((slot.label.clone(), send_slot(slot, make, text))),
            }
        }
        for (label, handle) in pending {
            let result = handle
                .join()
                .unwrap_or_else(|_| Err("the sending thread panicked".to_string()));
            done.push((label, result));
        }
        done
    })
}

fn send_slot(slot: &Slot, make: MakeGateway<'_>, text: &str) -> SlotResult {
    let start = Instant::now();
    let mut errors = Vec::new();
    for (i, (kind, recipient)) in slot.routes.iter().enumerate() {
        if i > 0 && start.elapsed() >= NEXT_ROUTE_WITHIN {
            errors.push(format!("{}: not tried, out of time", kind.id()));
            break;
        }
        let Some(gateway) = make(*kind) else {
            errors.push(format!("{}: not configured", kind.id()));
            continue;
        };
        match gateway.send(recipient, text) {
            Ok(()) => return Ok(gateway.id()),
            Err(e) => errors.push(mask_recipient(&format!("{}: {e}", gateway.id()), recipient)),
        }
    }
    if errors.is_empty() {
        errors.push("no gateway".to_string());
    }
    Err(errors.join("; "))
}

/// The slots `[alert] to` asks for: the user over their gateways (in the
/// order of `gateways`), each admin chat over Telegram.
pub fn slots(config: &Config, alert: &AlertConfig, entry: Option<&UserEntry>) -> Vec<Slot> {
    let mut out = Vec::new();
    if alert.to_user() {
        if let Some(entry) = entry {
            let routes: Vec<(GatewayKind, String)> = config
                .gateways
                .iter()
                .filter_map(|k| entry.recipient(*k).map(|r| (*k, r.to_string())))
                .collect();
            if !routes.is_empty() {
                out.push(Slot {
                    label: "user".to_string(),
                    routes,
                });
            }
        }
    }
    if alert.to_admins() {
        for chat in &alert.admin_chats {
            let chat = chat.to_string();
            out.push(Slot {
                label: format!("admin chat {}", mask(&chat)),
                routes: vec![(GatewayKind::Telegram, chat)],
            });
        }
    }
    out
}

/// The session hook's work: take this login's record, check the limit,
/// compose, send, log. Never fails; every problem is logged. `users` is
/// `None` when the users file could not be read (admins are still told).
pub fn on_session(
    config: &Config,
    net: &dyn Network,
    entry: Option<&UserEntry>,
    store: &dyn StateStore,
    wall: &dyn WallClock,
    ctx: &LoginContext,
    log: &mut dyn Log,
) {
    if !config.alert.applies_to(&ctx.service) {
        return;
    }
    let head = format!(
        "user={} service={} rhost={}",
        clean(&ctx.user),
        clean(&ctx.service),
        clean(
            ctx.rhost
                .as_deref()
                .filter(|r| !r.is_empty())
                .unwrap_or("local")
        )
    );
    let slots = slots(config, &config.alert, entry);
    let now = wall.unix_now();
    let per_hour = config.alert.per_hour;
    let taken = update_with(store, &ctx.user, |s| {
        let record = take_login(s, &ctx.service, ctx.rhost.as_deref(), now);
        let allowed = if slots.is_empty() {
            Ok(())
        } else {
            rate_allows(s, per_hour, now)
        };
        (record, allowed)
    });
    let (record, allowed) = match taken {
        Ok(t) => t,
        Err(e) => {
            log.log(
                Level::Error,
                &format!(
                    "{head} alert=failed reason=\"state: {}\"",
                    clean_text(&e.to_string())
                ),
            );
            return;
        }
    };
    let way = record
        .as_ref()
        .and_then(|r| WayIn::from_stored(&r.how, r.detail.as_deref()));
    let how = way.as_ref().map_or("none", |w| w.stored().0);
    if slots.is_empty() {
        log.log(
            Level::Warning,
            &format!(
                "{head} alert=not-sent how={how} reason=\"nobody to tell: the user has no \
                 gateway in the users file or the directory and [alert] to = \\\"user\\\"\""
            ),
        );
        return;
    }
    if let Err(count) = allowed {
        log.log(
            Level::Warning,
            &format!(
                "{head} alert=rate-limited how={how} reason=\"{count} alerts in the last hour, \
                 the [alert] per_hour\""
            ),
        );
        return;
    }
    let text = compose(config, ctx, way.as_ref(), now);
    let make = |kind| net.gateway(config, kind);
    let results = deliver(&slots, &make, &text);
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for (label, result) in results {
        match result {
            Ok(gateway) => sent.push(format!("{label} via {gateway}")),
            Err(e) => failed.push(format!("{label}: {e}")),
        }
    }
    if !sent.is_empty() {
        log.log(
            Level::Info,
            &format!(
                "{head} alert=sent how={how} to=\"{}\"",
                clean_text(&sent.join(", "))
            ),
        );
    }
    if !failed.is_empty() {
        log.log(
            Level::Warning,
            &format!(
                "{head} alert=failed how={how} reason=\"{}\"",
                clean_text(&failed.join("; "))
            ),
        );
    }
}

/// Our own text inside a quoted log field: no control characters or quotes.
fn clean_text(text: &str) -> String {
    text.chars()
        .take(1000)
        .map(|c| if c.is_control() || c == '"' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::DeliveryError;
    use crate::log::MemoryLog;
    use crate::network::Direct;
    use crate::state::MemoryStateStore;
    use crate::users::Users;
    use std::path::Path;
    use std::sync::Mutex;

    const NOW: u64 = 1_700_000_000;
    const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

    struct NoGroups;
    impl Groups for NoGroups {
        fn user_gids(&self, _: &str) -> Result<Option<Vec<u32>>, crate::policy::LookupError> {
            Ok(Some(Vec::new()))
        }
        fn group_gid(&self, _: &str) -> Result<Option<u32>, crate::policy::LookupError> {
            Ok(None)
        }
    }

    struct Fixed(u64);
    impl WallClock for Fixed {
        fn unix_now(&self) -> u64 {
            self.0
        }
    }

    fn config(extra: &str) -> Config {
        Config::parse(
            Path::new("/etc/pam_gateway/gateway.toml"),
            &format!("[telegram]\nbot_token = \"{TOKEN}\"\n{extra}"),
        )
        .expect("config")
    }

    fn ctx(rhost: Option<&str>) -> LoginContext {
        LoginContext {
            user: "alice".into(),
            service: "sshd".into(),
            rhost: rhost.map(String::from),
            host: "box".into(),
            ..LoginContext::default()
        }
    }

    #[test]
    fn each_outcome_has_its_way_in() {
        let ok = |g| Outcome::Success { gateway: g };
        assert_eq!(
            WayIn::of(&ok("telegram"), None),
            Some(WayIn::Code("telegram".into()))
        );
        assert_eq!(WayIn::of(&ok("totp"), None), Some(WayIn::Authenticator));
        assert_eq!(WayIn::of(&ok("backup-code"), None), Some(WayIn::BackupCode));
        assert!(matches!(
            WayIn::of(&Outcome::Remembered, None),
            Some(WayIn::Remembered(_))
        ));
        assert!(matches!(
            WayIn::of(
                &Outcome::PolicyIgnored,
                Some("remote host 10.0.0.5 is in exempt network 10.0.0.0/8")
            ),
            Some(WayIn::ExemptNetwork(_))
        ));
        assert!(matches!(
            WayIn::of(
                &Outcome::PolicyIgnored,
                Some("member of exempt group robots")
            ),
            Some(WayIn::ExemptGroup(_))
        ));
        assert_eq!(
            WayIn::of(&Outcome::DeliveryFailedIgnored, None),
            Some(WayIn::FailmodeSafe)
        );
        assert_eq!(
            WayIn::of(&Outcome::NotEnrolledIgnored, None),
            Some(WayIn::NotEnrolled)
        );
        for denied in [
            Outcome::MaxTries,
            Outcome::LockedOut,
            Outcome::WrongPassword,
            Outcome::StateFailed,
            Outcome::DeliveryFailedDenied,
        ] {
            assert_eq!(WayIn::of(&denied, None), None, "{denied:?}");
        }
        for way in [
            WayIn::Code("signal".into()),
            WayIn::Authenticator,
            WayIn::BackupCode,
            WayIn::Remembered("x".into()),
            WayIn::ExemptNetwork("n".into()),
            WayIn::ExemptGroup("g".into()),
            WayIn::FailmodeSafe,
            WayIn::NotEnrolled,
        ] {
            let (how, detail) = way.stored();
            assert_eq!(WayIn::from_stored(how, detail.as_deref()), Some(way));
        }
    }

    #[test]
    fn records_are_taken_once_by_service_and_host_and_age() {
        let c = config("[alert]\n");
        let store = MemoryStateStore::default();
        let groups = NoGroups;
        let login = ctx(Some("203.0.113.7"));
        let ok = Outcome::Success {
            gateway: "telegram",
        };
        assert!(record_way_in(&c, &store, &Fixed(NOW), &groups, &login, &ok).expect("record"));
        // Denied logins leave nothing.
        assert!(
            !record_way_in(&c, &store, &Fixed(NOW), &groups, &login, &Outcome::MaxTries)
                .expect("record")
        );
        let mut s = store.get("alice").expect("state");
        assert_eq!(s.recent_logins.len(), 1);
        let mut copy = s.clone();
        assert!(take_login(&mut copy, "sshd", Some("203.0.113.8"), NOW).is_none());
        assert!(take_login(&mut copy, "sudo", Some("203.0.113.7"), NOW).is_none());
        assert!(take_login(&mut copy, "sshd", None, NOW).is_none());
        let mut copy = s.clone();
        assert!(
            take_login(
                &mut copy,
                "sshd",
                Some("203.0.113.7"),
                NOW + RECORD_MAX_AGE + 1
            )
            .is_none()
        );
        assert!(copy.recent_logins.is_empty(), "stale records are dropped");
        let mut copy = s.clone();
        assert!(
            take_login(&mut copy, "sshd", Some("203.0.113.7"), NOW - 1).is_none(),
            "clock back"
        );
        let r = take_login(&mut s, "sshd", Some("203.0.113.7"), NOW + 5).expect("taken");
        assert_eq!(
            (r.how.as_str(), r.detail.as_deref()),
            ("code", Some("telegram"))
        );
        assert!(
            take_login(&mut s, "sshd", Some("203.0.113.7"), NOW + 5).is_none(),
            "once"
        );
        // Off for this service: nothing written.
        let store = MemoryStateStore::default();
        let sudo = LoginContext {
            service: "sudo".into(),
            ..login.clone()
        };
        assert!(!record_way_in(&c, &store, &Fixed(NOW), &groups, &sudo, &ok).expect("off"));
        assert!(store.get("alice").is_none());
        // Bounded.
        let mut s = UserState::new();
        for i in 0..20 {
            push_login(
                &mut s,
                LoginRecord {
                    service: "sshd".into(),
                    rhost: None,
                    time: NOW + i,
                    how: "code".into(),
                    detail: None,
                },
            );
        }
        assert_eq!(s.recent_logins.len(), MAX_RECENT_LOGINS);
        assert_eq!(s.recent_logins[0].time, NOW + 20 - MAX_RECENT_LOGINS as u64);
    }

    #[test]
    fn rate_limit_per_hour() {
        let mut s = UserState::new();
        for i in 0..3 {
            assert_eq!(rate_allows(&mut s, 3, NOW + i), Ok(()));
        }
        assert_eq!(rate_allows(&mut s, 3, NOW + 10), Err(3));
        assert_eq!(
            rate_allows(&mut s, 3, NOW + 3600),
            Ok(()),
            "the first left the hour"
        );
        // Times in the future (a clock set back) do not count against it.
        let mut s = UserState::new();
        s.alerts_sent = vec![NOW + 5000; 3];
        assert_eq!(rate_allows(&mut s, 3, NOW), Ok(()));
    }

    #[test]
    fn message_says_who_where_how_and_no_control_characters() {
        let c = config("[alert]\n");
        let text = compose(
            &c,
            &ctx(Some("203.0.113.7\nFAKE: all is well\u{1b}[2J")),
            Some(&WayIn::Code("telegram".into())),
            NOW,
        );
        assert_eq!(
            text,
            "Login: alice@box from 203.0.113.7?FAKE: all is well?[2J (sshd) at \
             2023-11-14 22:13:20 UTC, with a code sent via Telegram.\n\
             If this was not you, tell your admin now."
        );
        let text = compose(&c, &ctx(None), None, NOW);
        assert!(text.contains("from local (sshd)"), "{text}");
        assert!(text.contains(NO_WAY_IN_RECORDED), "{text}");
        for (way, words) in [
            (WayIn::Authenticator, "with an authenticator code"),
            (WayIn::BackupCode, "with a backup code"),
            (WayIn::FailmodeSafe, "failmode = \"safe\""),
            (WayIn::NotEnrolled, "not enrolled"),
            (
                WayIn::ExemptGroup("member of exempt group robots".into()),
                "without a code: member of exempt group robots",
            ),
        ] {
            let text = compose(&c, &ctx(Some("h")), Some(&way), NOW);
            assert!(text.contains(words), "{text}");
        }
    }

    /// Fake gateways: "ok" delivers, "slow" sleeps then fails, "refuse"
    /// fails at once. Records what was sent where.
    struct Fake {
        id: &'static str,
        sent: &'static Mutex<Vec<(String, String)>>,
    }
    impl Gateway for Fake {
        fn id(&self) -> &'static str {
            self.id
        }
        fn display_name(&self) -> &str {
            self.id
        }
        fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
            match self.id {
                "slow" => {
                    std::thread::sleep(Duration::from_millis(1200));
                    Err(DeliveryError::Unreachable("timed out".into()))
                }
                "refuse" => Err(DeliveryError::Refused(format!("no {recipient}"))),
                _ => {
                    self.sent
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((recipient.to_string(), text.to_string()));
                    Ok(())
                }
            }
        }
    }

    #[test]
    fn slots_run_at_once_and_a_slow_gateway_ends_its_slot() {
        static SENT: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
        // Telegram refuses at once, Signal is slow, SMS delivers.
        let make = |kind: GatewayKind| -> Option<Box<dyn Gateway>> {
            let id = match kind {
                GatewayKind::Telegram => "refuse",
                GatewayKind::Signal => "slow",
                GatewayKind::Sms => "ok",
                _ => return None,
            };
            Some(Box::new(Fake { id, sent: &SENT }))
        };
        let slot = |label: &str, routes: Vec<(GatewayKind, &str)>| Slot {
            label: label.into(),
            routes: routes
                .into_iter()
                .map(|(k, r)| (k, r.to_string()))
                .collect(),
        };
        let slots = vec![
            // A fast refusal moves on to the next gateway.
            slot(
                "a",
                vec![
                    (GatewayKind::Telegram, "111222"),
                    (GatewayKind::Sms, "+4915100000001"),
                ],
            ),
            // A slow failure ends the slot: SMS is not tried.
            slot(
                "b",
                vec![
                    (GatewayKind::Signal, "+4915100000002"),
                    (GatewayKind::Sms, "+4915100000003"),
                ],
            ),
            slot("c", vec![(GatewayKind::Signal, "+4915100000004")]),
            slot("d", vec![(GatewayKind::Webhook, "topic")]),
        ];
        let start = Instant::now();
        let results = deliver(&slots, &make, "hello");
        let took = start.elapsed();
        // Two slow sends in parallel: about 1.2 s, not 2.4 s.
        assert!(took < Duration::from_millis(2200), "{took:?}");
        let get = |l: &str| results.iter().find(|(x, _)| x == l).map(|(_, r)| r.clone());
        assert_eq!(get("a"), Some(Ok("ok")));
        let b = get("b").expect("b").unwrap_err();
        assert!(
            b.contains("slow: unreachable") && b.contains("sms: not tried, out of time"),
            "{b}"
        );
        assert!(get("c").expect("c").is_err());
        assert_eq!(get("d"), Some(Err("webhook: not configured".to_string())));
        let sent = SENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(sent, [("+4915100000001".to_string(), "hello".to_string())]);
        // Recipients are masked in the reasons.
        let refused = deliver(
            &slots[..1],
            &|_| {
                Some(Box::new(Fake {
                    id: "refuse",
                    sent: &SENT,
                }))
            },
            "x",
        );
        let reason = refused[0].1.clone().unwrap_err();
        assert!(!reason.contains("111222"), "{reason}");
    }

    #[test]
    fn session_without_anyone_to_tell_or_over_the_limit_only_logs() {
        let c = config("[alert]\nper_hour = 1\n");
        let store = MemoryStateStore::default();
        let log = MemoryLog::default();
        let mut sink = log.clone();
        // alice has no users-file entry: nobody to tell.
        on_session(
            &c,
            &Direct,
            None,
            &store,
            &Fixed(NOW),
            &ctx(Some("h")),
            &mut sink,
        );
        assert!(
            log.text().contains("alert=not-sent how=none"),
            "{}",
            log.text()
        );
        // The state is untouched by the limit when nothing could be sent.
        assert!(store.get("alice").is_none_or(|s| s.alerts_sent.is_empty()));
        let mut s = UserState::new();
        s.alerts_sent.push(NOW - 10);
        store.set("alice", s);
        let users = Users::parse(
            Path::new("/etc/pam_gateway/users.toml"),
            "[users.alice]\ntelegram = \"123456977\"\n",
        )
        .expect("users");
        on_session(
            &c,
            &Direct,
            users.get("alice"),
            &store,
            &Fixed(NOW),
            &ctx(Some("h")),
            &mut sink,
        );
        assert!(log.text().contains("alert=rate-limited"), "{}", log.text());
        // A broken state: logged, nothing sent, no panic.
        *store.broken.lock().expect("lock") = Some("disk on fire".into());
        on_session(
            &c,
            &Direct,
            users.get("alice"),
            &store,
            &Fixed(NOW),
            &ctx(Some("h")),
            &mut sink,
        );
        assert!(
            log.text().contains("alert=failed reason=\"state:"),
            "{}",
            log.text()
        );
        // Off for this service: not even a log line.
        let before = log.text();
        let sudo = LoginContext {
            service: "sudo".into(),
            ..ctx(None)
        };
        on_session(
            &c,
            &Direct,
            users.get("alice"),
            &store,
            &Fixed(NOW),
            &sudo,
            &mut sink,
        );
        assert_eq!(log.text(), before);
    }
}
