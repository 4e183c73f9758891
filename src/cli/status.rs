//! `pam-gateway status`: a doctor. Every check a login depends on, said in
//! words, with exit status 1 when something would stop logins.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{CliError, Exit, OWNER, StatusArgs, pam_stacks, sshd, system, users};
use crate::config::{Config, FailMode, Unenrolled};
use crate::gateway::telegram::{TelegramClient, TelegramError};
use crate::setup::{self, SetupError};
use crate::users::Users;

/// How a finding bears on logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Info,
    /// Works, but weaker or odder than it should be.
    Warn,
    /// Would stop logins.
    Fail,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok  ",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

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
                SetupError::File(crate::secure_file::FileError::NotFound(_)) => {
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
                    SetupError::File(crate::secure_file::FileError::NotFound(_)) => {
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

    r.section("Gateways");
    match &config {
        None => r.line(Level::Info, "not checked: gateway.toml is unusable"),
        Some(c) => check_gateways(&mut r, c),
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

fn check_gateways(r: &mut Report, c: &Config) {
    let Some(tg) = &c.telegram else {
        r.line(
            Level::Fail,
            "no gateway is configured, so no code can be sent: run `pam-gateway configure \
             telegram`",
        );
        return;
    };
    let result = TelegramClient::new(tg).and_then(|client| client.get_me());
    match result {
        Ok(bot) => r.line(
            Level::Ok,
            &format!("telegram: bot @{} answers at {}", bot.username, tg.api_url),
        ),
        Err(TelegramError::Unauthorized) => r.line(
            Level::Fail,
            "telegram: the bot token is refused (401/404): every code fails to send. Copy the \
             current token from @BotFather and run `pam-gateway configure telegram`",
        ),
        Err(e) => {
            let (level, consequence) = match c.failmode {
                FailMode::Secure => (
                    Level::Fail,
                    "logins are refused while this lasts (failmode = \"secure\")",
                ),
                FailMode::Safe => (
                    Level::Warn,
                    "logins skip the code while this lasts (failmode = \"safe\")",
                ),
            };
            r.line(
                level,
                &format!(
                    "telegram: {} cannot be used ({e}): {consequence}. Check the network, \
                     DNS, firewall, or api_url and proxy in gateway.toml",
                    tg.api_url
                ),
            );
        }
    }
}

fn check_users(r: &mut Report, c: &Config, u: &Users, stacks: &[pam_stacks::ServiceReport]) {
    let services: Vec<&str> = stacks.iter().map(|s| s.service.as_str()).collect();
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
    for (name, entry) in &u.users {
        if let Err(e) = setup::routes_for(c, name, entry) {
            r.line(Level::Fail, &format!("{e}: {name}'s logins are refused"));
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
    if c.unenrolled == Unenrolled::Deny && !services.is_empty() {
        r.line(
            Level::Info,
            &format!(
                "users not listed here cannot log in through {} (unenrolled = \"deny\")",
                services.join(", ")
            ),
        );
    }
}
