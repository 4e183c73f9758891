//! `pam-gateway status`: a doctor. Every check a login depends on, said in
//! words, with exit status 1 when something would stop logins.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use super::finding::Level;
use super::gateway_check;
use super::{
    CliError, Exit, OWNER, StatusArgs, directory, pam_stacks, sshd, system, unlock, users,
};
use pam_gateway_core::config::{Config, FailMode, Unenrolled};
use pam_gateway_core::directory::DirectoryConfig;
use pam_gateway_core::gateway::{GatewayKind, Health};
use pam_gateway_core::limits::wait_text;
use pam_gateway_core::network::Direct;
use pam_gateway_core::setup::{self, SetupError};
use pam_gateway_core::state::FileStateStore;
use pam_gateway_core::users::{UserEntry, Users};

#[derive(Default)]
struct Report {
    fails: usize,
    warns: usize,
}

impl Report {
    fn section(&self, title: &str) {
        println!("\n{title}");
    }

    fn line(&mut self, level: Level, text: &str) {
        match level {
            Level::Fail => self.fails += 1,
            Level::Warn => self.warns += 1,
            _ => {}
        }
        println!("  {}  {text}", level.tag());
    }
}

fn describe_file(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("owner uid {}, mode {:04o}", m.uid(), m.mode() & 0o7777),
        Err(_) => String::new(),
    }
}

pub fn run(config_path: &Path, args: &StatusArgs) -> Result<(), CliError> {
    let mut r = Report::default();
    println!("pam-gateway status: {}", config_path.display());

    r.section("Files");
    let config = match setup::load_config(config_path, OWNER) {
        Ok(c) => {
            r.line(
                Level::Ok,
                &format!(
                    "{}: valid ({})",
                    config_path.display(),
                    describe_file(config_path)
                ),
            );
            Some(c)
        }
        Err(e) => {
            let hint = match &e {
                SetupError::File(pam_gateway_core::secure_file::FileError::NotFound(_)) => {
                    " (pam-gateway configure telegram creates it)"
                }
                _ => "",
            };
            r.line(
                Level::Fail,
                &format!("{e}{hint}: the module refuses every login"),
            );
            None
        }
    };
    let users = config
        .as_ref()
        .and_then(|c| match setup::load_users(c, OWNER) {
            Ok(u) => {
                r.line(
                    Level::Ok,
                    &format!(
                        "{}: valid, {} enrolled ({})",
                        c.users_file.display(),
                        u.users.len(),
                        describe_file(&c.users_file)
                    ),
                );
                Some(u)
            }
            Err(e) => {
                let hint = match &e {
                    SetupError::File(pam_gateway_core::secure_file::FileError::NotFound(_)) => {
                        " (pam-gateway enroll USER creates it)"
                    }
                    _ => "",
                };
                r.line(
                    Level::Fail,
                    &format!("{e}{hint}: the module refuses every login"),
                );
                None
            }
        });

    if let Some(c) = &config {
        check_state_dir(&mut r, c);
    }

    r.section("Gateways");
    match &config {
        None => r.line(Level::Info, "not checked: gateway.toml is unusable"),
        Some(c) => check_gateways(&mut r, c, users.as_ref()),
    }

    if let Some(dir) = config.as_ref().and_then(|c| c.directory.as_ref()) {
        r.section(&format!("Directory ({})", dir.uri));
        check_directory(&mut r, dir);
    }

    if let Some(c) = &config {
        r.section("Approval in the chat (pam-gatewayd)");
        check_daemon(&mut r, c);
    }

    r.section(&format!("PAM stacks ({})", args.pam_dir.display()));
    let stacks = match pam_stacks::inspect(&args.pam_dir, config_path) {
        Ok(s) => s,
        Err(m) => {
            r.line(Level::Warn, &m);
            Vec::new()
        }
    };
    if stacks.is_empty() {
        r.line(
            Level::Warn,
            &format!(
                "no stack in {} loads pam_gateway.so: nobody is asked for a code yet \
                 (README: Enabling it)",
                args.pam_dir.display()
            ),
        );
    }
    for stack in &stacks {
        for (level, text) in &stack.findings {
            r.line(*level, text);
        }
    }

    r.section("SSH (sshd -T)");
    match sshd::query() {
        Ok(None) => r.line(Level::Info, "sshd is not installed: nothing to check"),
        Err(m) => r.line(Level::Warn, &format!("{m}: SSH settings not checked")),
        Ok(Some(text)) => {
            let settings = sshd::parse(&text);
            let stack = stacks.iter().find(|s| s.service == "sshd");
            for (level, text) in sshd::check(&settings, stack) {
                r.line(level, &text);
            }
        }
    }

    r.section("Enrolled users");
    if let (Some(c), Some(u)) = (&config, &users) {
        check_users(&mut r, c, u, &stacks);
    } else {
        r.line(Level::Info, "not checked: a file above is unusable");
    }

    println!(
        "\n{} problem(s) that would stop logins, {} warning(s).",
        r.fails, r.warns
    );
    if r.fails > 0 {
        return Err(CliError::new(
            Exit::Failed,
            format!(
                "{} problem(s) would stop logins: see the FAIL lines above",
                r.fails
            ),
        ));
    }
    Ok(())
}

/// `[approve]` and the daemon behind it, through its `Status` request.
fn check_daemon(r: &mut Report, c: &Config) {
    let socket = c.approve.socket.display();
    if !c.approve.enabled {
        r.line(
            Level::Info,
            "[approve] is off: users type the code (docs/approve.md turns on approval)",
        );
        return;
    }
    let status = match super::daemon::status(&c.approve.socket) {
        Ok(s) => s,
        Err(why) => {
            r.line(
                Level::Warn,
                &format!(
                    "[approve] is on but pam-gatewayd does not answer on {socket} ({why}): \
                     logins fall back to typed codes; start it with `systemctl enable --now \
                     pam-gatewayd`"
                ),
            );
            return;
        }
    };
    let now = unlock::now();
    r.line(
        Level::Ok,
        &format!(
            "{} is running on {socket} (for {}), {} approval(s) pending",
            status.daemon,
            wait_text(now.max(status.started.saturating_add(1)), status.started),
            status.pending
        ),
    );
    match status.last_update_at {
        Some(t) => r.line(
            Level::Info,
            &format!(
                "last update read from Telegram {} ago",
                wait_text(now.max(t.saturating_add(1)), t)
            ),
        ),
        None => r.line(Level::Info, "no update read from Telegram since it started"),
    }
    match status.webhook.as_deref() {
        Some("none") => r.line(Level::Ok, "the bot has no webhook: taps reach the daemon"),
        Some(host) => r.line(
            Level::Warn,
            &format!(
                "a webhook is set for the bot (to {host}): Telegram refuses getUpdates, so \
                 no tap arrives and users type codes; remove it (deleteWebhook) or use \
                 another bot"
            ),
        ),
        None => r.line(Level::Info, "the bot's webhook is not checked yet"),
    }
}

fn check_gateways(r: &mut Report, c: &Config, users: Option<&Users>) {
    if c.gateways.is_empty() {
        r.line(
            Level::Fail,
            "no gateway is configured, so no code can be sent: run `pam-gateway configure \
             telegram` (or signal, sms, webhook, command)",
        );
        return;
    }
    if c.gateways.len() > 1 {
        let ids: Vec<&str> = c.gateways.iter().map(|k| k.id()).collect();
        r.line(
            Level::Info,
            &format!(
                "a user's gateways are tried in this order: {}",
                ids.join(", ")
            ),
        );
    }
    let health: Vec<(GatewayKind, Health)> = c
        .gateways
        .iter()
        .map(|k| (*k, gateway_check::check(c, *k, OWNER)))
        .collect();
    for (kind, h) in &health {
        let label = gateway_check::label(c, *kind);
        match h {
            Health::Ok(found) | Health::Unchecked(found) => {
                r.line(Level::Ok, &format!("{label}: {found}"));
            }
            Health::Unreachable(p) | Health::Refused(p) => {
                let (level, consequence) = consequence(c, users, &health, *kind);
                r.line(
                    level,
                    &format!("{label}: {}: {consequence}. {}", p.what, p.fix),
                );
            }
        }
    }
}

/// What a broken gateway means for logins: users with another working
/// gateway fall back to it; users with an authenticator or unused backup
/// codes are asked for one (whatever `failmode` says, as a login does); the
/// others are refused, or skip the code when `failmode = "safe"` and every
/// gateway of theirs is only unreachable.
fn consequence(
    c: &Config,
    users: Option<&Users>,
    health: &[(GatewayKind, Health)],
    kind: GatewayKind,
) -> (Level, String) {
    let of = |k: GatewayKind| health.iter().find(|(x, _)| *x == k).map(|(_, h)| h);
    let usable = |k: GatewayKind| of(k).is_some_and(Health::is_usable);
    let refused = |k: GatewayKind| matches!(of(k), Some(Health::Refused(_)));
    let safe = c.failmode == FailMode::Safe;
    let skip = "skip the code while this lasts (failmode = \"safe\")";
    let Some(users) = users else {
        return if safe && !refused(kind) {
            (Level::Warn, format!("logins {skip}"))
        } else {
            (Level::Fail, "every code sent through it fails".to_string())
        };
    };
    let (mut stopped, mut skipping, mut falling_back) = (Vec::new(), Vec::new(), Vec::new());
    let mut asked_for_fallback = Vec::new();
    for (name, entry) in &users.users {
        let theirs: Vec<GatewayKind> = c
            .gateways
            .iter()
            .copied()
            .filter(|k| entry.recipient(*k).is_some())
            .collect();
        if !theirs.contains(&kind) {
            continue;
        }
        if theirs.iter().any(|k| usable(*k)) {
            falling_back.push(name.as_str());
        } else if let Some(factor) = fallback_factor(c, name, entry) {
            asked_for_fallback.push(format!("{name} ({factor})"));
        } else if safe && !theirs.iter().any(|k| refused(*k)) {
            skipping.push(name.as_str());
        } else {
            stopped.push(name.as_str());
        }
    }
    // Every group of users gets its part of the line; any user whose
    // logins stop makes it a FAIL.
    let mut parts = Vec::new();
    if !stopped.is_empty() {
        parts.push(format!(
            "logins of {} are refused while this lasts (no other working gateway, no \
             authenticator, no backup codes)",
            names(&stopped)
        ));
    }
    if !skipping.is_empty() {
        parts.push(format!("logins of {} {skip}", names(&skipping)));
    }
    if !asked_for_fallback.is_empty() {
        let list: Vec<&str> = asked_for_fallback.iter().map(String::as_str).collect();
        parts.push(format!(
            "{} will be asked for their authenticator or backup code instead while this lasts",
            names(&list)
        ));
    }
    if !falling_back.is_empty() {
        parts.push(format!(
            "{} fall(s) back to their other gateways",
            names(&falling_back)
        ));
    }
    if parts.is_empty() {
        parts.push("nobody is enrolled with it yet, and enrolments through it fail".to_string());
    }
    let level = if stopped.is_empty() {
        Level::Warn
    } else {
        Level::Fail
    };
    (level, parts.join("; "))
}

/// The fallback factors a login of `name` would ask for when no code can
/// be delivered: `authenticator`, `3 backup codes`, or both. A state file
/// that cannot be read counts as no backup codes (the login is refused
/// then, and the Files section says why).
fn fallback_factor(c: &Config, name: &str, entry: &UserEntry) -> Option<String> {
    let backup = unlock::read_state(c, name).map_or(0, |s| s.backup_codes.len());
    let mut factors = Vec::new();
    if entry.totp_secret.is_some() {
        factors.push("authenticator".to_string());
    }
    match backup {
        0 => {}
        1 => factors.push("1 backup code".to_string()),
        n => factors.push(format!("{n} backup codes")),
    }
    (!factors.is_empty()).then(|| factors.join(", "))
}

/// `a, b, c and 4 more`.
fn names(list: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = list
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        text.push_str(&format!(" and {} more", list.len() - SHOWN));
    }
    text
}

fn check_users(r: &mut Report, c: &Config, u: &Users, stacks: &[pam_stacks::ServiceReport]) {
    let services: Vec<&str> = stacks.iter().map(|s| s.service.as_str()).collect();
    if u.users.is_empty() && c.directory.is_some() {
        r.line(
            Level::Info,
            "nobody in the users file: every user's recipients come from the directory",
        );
        return;
    }
    if u.users.is_empty() {
        match (c.unenrolled, services.is_empty()) {
            (Unenrolled::Deny, false) => r.line(
                Level::Fail,
                &format!(
                    "nobody is enrolled and unenrolled = \"deny\": every login through {} is \
                     refused. Enrol someone: pam-gateway enroll USER",
                    services.join(", ")
                ),
            ),
            _ => r.line(Level::Info, "nobody is enrolled: pam-gateway enroll USER"),
        }
        return;
    }
    for line in users::table(u) {
        r.line(Level::Info, &line);
    }
    let now = unlock::now();
    for (name, entry) in &u.users {
        if let Err(e) = setup::routes_for(&Direct, c, name, entry) {
            r.line(Level::Fail, &format!("{e}: {name}'s logins are refused"));
        }
        if entry.is_empty() && entry.totp_secret.is_some() {
            r.line(
                Level::Info,
                &format!("{name}  authenticator only (no gateway)"),
            );
        }
        // A broken state file is reported once, under Files.
        if let Ok(state) = unlock::read_state(c, name) {
            let standing = unlock::Standing::of(&state, &c.limits, now);
            if standing.locked_until == Some(pam_gateway_core::limits::UNTIL_UNLOCKED) {
                r.line(
                    Level::Warn,
                    &format!(
                        "{name} is locked: \"Not me\" was tapped under a login request; no \
                         code is sent or accepted until an admin runs pam-gateway unlock {name}"
                    ),
                );
            } else if let Some(until) = standing.locked_until {
                r.line(
                    Level::Warn,
                    &format!(
                        "{name} is locked out for another {} after wrong codes: no code is \
                         sent or accepted until then (pam-gateway unlock {name})",
                        wait_text(until, now)
                    ),
                );
            } else if let Some(until) = standing.window_full_until {
                r.line(
                    Level::Info,
                    &format!(
                        "{name} was sent {} codes in the last {} s: the next code goes in {}",
                        standing.sent,
                        c.limits.window,
                        wait_text(until, now)
                    ),
                );
            }
        }
        match system::user_exists(name) {
            Ok(true) => {}
            Ok(false) => r.line(
                Level::Warn,
                &format!(
                    "{name} has no account on this system: a leftover entry? \
                     (pam-gateway remove {name})"
                ),
            ),
            Err(m) => r.line(Level::Warn, &m),
        }
    }
    if c.directory.is_some() {
        r.line(
            Level::Info,
            "users not listed here are looked up in the directory (section Directory)",
        );
    } else if c.unenrolled == Unenrolled::Deny && !services.is_empty() {
        r.line(
            Level::Info,
            &format!(
                "users not listed here cannot log in through {} (unenrolled = \"deny\")",
                services.join(", ")
            ),
        );
    }
}

/// `[directory]` as a login uses it: connect (with TLS), the module's bind,
/// the search for entries with recipients; how long that took.
fn check_directory(r: &mut Report, dir: &DirectoryConfig) {
    let refused = match dir.cache_max_age {
        Some(age) => format!(
            "logins of users without a users file entry are refused, except where a \
             cache younger than {age} s stands in (cache_max_age)"
        ),
        None => "logins of users without a users file entry are refused \
                 (no cache_max_age)"
            .to_string(),
    };
    let started = Instant::now();
    let (mut conn, connected) = match directory::connect_as_module(dir) {
        Ok(c) => c,
        Err(e) => {
            r.line(Level::Fail, &format!("{}: {refused}", e.message));
            return;
        }
    };
    r.line(
        Level::Ok,
        &format!("connected over {}", directory::transport(dir)),
    );
    let bound = match &dir.bind {
        Some((dn, _)) => format!("bound as {dn}"),
        None => "no bind_dn: searches anonymously".to_string(),
    };
    r.line(
        Level::Ok,
        &format!("{bound} ({} ms to connect and bind)", connected.as_millis()),
    );
    match conn.enrolled(dir, directory::LIST_LIMIT) {
        Ok(listing) => {
            let took = started.elapsed().as_millis();
            let more = if listing.truncated { " or more" } else { "" };
            let level = if listing.entries.is_empty() {
                Level::Warn
            } else {
                Level::Ok
            };
            r.line(
                level,
                &format!(
                    "search under {}: {}{more} entries with recipients ({took} ms in all, \
                     timeout {} s)",
                    dir.base_dn,
                    listing.entries.len(),
                    dir.timeout.as_secs()
                ),
            );
            if listing.entries.is_empty() {
                r.line(
                    Level::Info,
                    "no entry has a mapped attribute, or the bind may not read them: \
                     nobody is enrolled through the directory",
                );
            }
        }
        Err(e) => r.line(
            Level::Fail,
            &format!("search under {} fails: {e}: {refused}", dir.base_dn),
        ),
    }
    conn.close();
    match dir.cache_max_age {
        Some(age) => r.line(
            Level::Info,
            &format!("an outage is bridged for {age} s per user and host (cache_max_age)"),
        ),
        None => r.line(
            Level::Info,
            "no cache_max_age: while the directory is down, its users cannot log in",
        ),
    }
}

/// `state_dir` as a login will find it: missing (a login creates it), or
/// safe, and every enrolled user's file readable.
fn check_state_dir(r: &mut Report, c: &Config) {
    let dir = c.state_dir.display();
    if !unlock::state_dir_exists(c) {
        r.line(
            Level::Info,
            &format!("{dir}: not there yet; the first login creates it (root, 0700)"),
        );
        return;
    }
    let store = FileStateStore::new(&c.state_dir, OWNER);
    if let Err(e) = store.ensure_dir() {
        r.line(Level::Fail, &format!("{e}: the module refuses every login"));
        return;
    }
    let users = setup::load_users_or_empty(c, OWNER).unwrap_or_default();
    let mut broken = 0;
    for name in users.users.keys() {
        if let Err(e) = store.load(name) {
            broken += 1;
            r.line(Level::Fail, &format!("{e}: {name}'s logins are refused"));
        }
    }
    if broken == 0 {
        r.line(
            Level::Ok,
            &format!("{dir}: state directory ({})", describe_file(&c.state_dir)),
        );
    }
}
