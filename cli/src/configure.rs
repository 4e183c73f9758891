//! `pam-gateway configure GATEWAY`: a gateway's settings into
//! gateway.toml, checked first, secrets never echoed or printed.
//!
//! Telegram is here; the other gateways (one file each below
//! `configure/`) describe their section as a [`Plan`] and share
//! [`write_section`].

pub mod command;
pub mod signal;
pub mod sms;
pub mod webhook;

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use toml_edit::Value;
use zeroize::Zeroizing;

use super::gateway_check;
use super::terminal::{Input, InputError};
use super::{CliError, Exit, OWNER, explain};
use crate::toml_edits::{self, SectionEdit};
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::telegram::{
    DEFAULT_TELEGRAM_API, TelegramClient, TelegramConfig, is_valid_bot_token,
};
use pam_gateway_core::gateway::{GatewayKind, Health};
use pam_gateway_core::http::HttpSettings;
use pam_gateway_core::secret::Secret;
use pam_gateway_core::section::check_service_url;
use pam_gateway_core::secure_file::{FileError, Secrecy, read_secure};
use pam_gateway_core::setup;
use pam_gateway_core::toml_errors::ParseError;

pub fn telegram(path: &Path, args: &super::ConfigureTelegramArgs) -> Result<(), CliError> {
    let api_url = match &args.api_url {
        Some(url) => Some(
            check_service_url(url)
                .map_err(|m| CliError::new(Exit::Usage, format!("--api-url {url}: {m}")))?,
        ),
        None => None,
    };
    create_dir(path)?;

    // The current file decides the API server and timeouts for the check;
    // a broken one is reported before anything is asked.
    let current = match read_secure(path, Secrecy::Secret, OWNER) {
        Ok(text) => Some(parse_but_the_token(path, &text)?),
        Err(FileError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let current_tg = current.as_ref().and_then(|c| c.section::<TelegramConfig>());
    let http = current_tg.map(|t| t.http.clone()).unwrap_or(HttpSettings {
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        proxy: None,
    });
    let check_url = api_url
        .clone()
        .or_else(|| current_tg.map(|t| t.api_url.clone()))
        .unwrap_or_else(|| DEFAULT_TELEGRAM_API.to_string());

    let mut input = Input::new();
    let prompt = if input.is_terminal() {
        "Bot token from @BotFather (input hidden): "
    } else {
        "Bot token (from standard input): "
    };
    let token = input
        .line(prompt, true)
        .map_err(input_error)?
        .ok_or_else(|| CliError::new(Exit::Usage, "no token given; nothing was changed"))?;
    if token.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            "no token given; nothing was changed",
        ));
    }
    if !is_valid_bot_token(&token) {
        return Err(CliError::new(
            Exit::Usage,
            "that is not a bot token: BotFather's token is digits, a colon, then at least 30 \
             letters, digits, - or _ (e.g. 123456789:AAE...). Copy the whole token from \
             @BotFather (/mybots, API Token). Nothing was changed.",
        ));
    }
    let token = Secret::new(token.to_string());

    let check = TelegramConfig {
        bot_token: token.clone(),
        api_url: check_url.clone(),
        http,
    };
    let client = TelegramClient::new(&check).map_err(|e| explain::gateway(&e))?;
    let bot = client.get_me().map_err(|e| {
        let mut err = explain::gateway(&e);
        err.message.push_str(". Nothing was changed.");
        err
    })?;
    println!(
        "Telegram accepts the token: the bot is @{} ({}).",
        bot.username, bot.first_name
    );

    setup::update_config(path, OWNER, |text| -> Result<String, CliError> {
        Ok(toml_edits::set_telegram(
            path,
            text,
            token.expose(),
            api_url.as_deref(),
        )?)
    })?;
    println!(
        "Wrote {} (root:root, mode 0600){}.",
        path.display(),
        if api_url.is_some() {
            format!(" with api_url = \"{check_url}\"")
        } else {
            String::new()
        }
    );
    println!("Next: pam-gateway enroll USER");
    Ok(())
}

/// A well-formed token that stands in for a missing or malformed one.
const PLACEHOLDER_TOKEN: &str = "1:placeholder-placeholder-placeholder";

/// Parses the current config. A missing or malformed `bot_token` is what
/// this command fixes, so then the rest is read as if it were valid.
fn parse_but_the_token(path: &Path, text: &str) -> Result<Config, CliError> {
    let fix_first = |e: pam_gateway_core::toml_errors::ParseError| {
        CliError::new(
            Exit::Files,
            format!("{e}\nFix that first; nothing was changed."),
        )
    };
    match Config::parse(path, text) {
        Ok(c) => Ok(c),
        Err(e)
            if e.key.as_deref() == Some("telegram.bot_token")
                || e.message.contains("`bot_token`") =>
        {
            let stand_in = toml_edits::set_telegram(path, text, PLACEHOLDER_TOKEN, None)?;
            Config::parse(path, &stand_in).map_err(fix_first)
        }
        Err(e) => Err(fix_first(e)),
    }
}

/// Creates the config directory (0700) when it is missing.
fn create_dir(path: &Path) -> Result<(), CliError> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::new(Exit::Files, format!("cannot create {}: {e}", dir.display())))?;
    println!("Created {} (mode 0700).", dir.display());
    Ok(())
}

/// A secret `configure` reads without echo.
pub struct Ask {
    /// What it is: `Password for pam at the proxy`.
    pub what: String,
    /// Stands in for it while the other settings are checked (before
    /// anything is asked); must pass the section's checks.
    pub stand_in: &'static str,
    /// An empty answer means "none" rather than a mistake.
    pub optional: bool,
}

/// Turns the answers (in the order of [`Plan::asks`]; `None` for an
/// optional one left empty) into the section's secret keys.
pub type Place<'a> = Box<dyn Fn(&[Option<&str>]) -> Vec<(&'static str, Value)> + 'a>;

/// One gateway's `[section]`, as its `configure` command describes it.
pub struct Plan<'a> {
    pub kind: GatewayKind,
    /// Every key this command sets; those not set now are removed. Keys
    /// it does not manage (timeout unless given, connect_timeout, proxy)
    /// stay as they are.
    pub managed: &'static [&'static str],
    /// The keys the options set.
    pub values: Vec<(&'static str, Value)>,
    /// Secrets to read, in this order.
    pub asks: Vec<Ask>,
    pub place: Place<'a>,
    /// Which option (or answer) each key comes from, for messages.
    pub sources: Vec<(&'static str, String)>,
    /// The enrolment command to suggest afterwards.
    pub next: String,
}

impl Plan<'_> {
    /// Every key this plan sets, in the order of [`Plan::managed`] (keys
    /// it does not manage, such as timeout, last).
    fn keys(&self, answers: &[Option<&str>]) -> Vec<(&'static str, Value)> {
        let mut keys = self.values.clone();
        keys.extend((self.place)(answers));
        keys.sort_by_key(|(k, _)| {
            self.managed
                .iter()
                .position(|m| m == k)
                .unwrap_or(self.managed.len())
        });
        keys
    }

    /// The new text of gateway.toml: `current` with this section.
    fn edit(
        &self,
        path: &Path,
        current: &str,
        answers: &[Option<&str>],
    ) -> Result<SectionEdit, ParseError> {
        let keys = self.keys(answers);
        toml_edits::set_gateway_section(path, current, self.kind.id(), self.managed, &keys)
    }

    /// A validation error in words: an option of this command is wrong
    /// (usage), or something else in the file is (fix that first).
    fn explain(&self, e: ParseError) -> CliError {
        let section = self.kind.id();
        let key = e.key.as_deref().unwrap_or("");
        let own = key
            .strip_prefix(section)
            .and_then(|rest| rest.strip_prefix('.'));
        let source = own.and_then(|k| {
            self.sources
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, s)| s.as_str())
        });
        match source {
            Some(option) => CliError::new(
                Exit::Usage,
                format!("{option}: {}. Nothing was changed.", e.message),
            ),
            None if key == section => CliError::new(
                Exit::Usage,
                format!("[{section}]: {}. Nothing was changed.", e.message),
            ),
            None => CliError::new(
                Exit::Files,
                format!("{e}\nFix that first; nothing was changed."),
            ),
        }
    }
}

/// Checks and writes one gateway's section: the options first (secrets
/// stand in), then the secrets, then the service, then the file.
pub fn write_section(path: &Path, plan: Plan) -> Result<(), CliError> {
    create_dir(path)?;
    let current = match read_secure(path, Secrecy::Secret, OWNER) {
        Ok(text) => text,
        Err(FileError::NotFound(_)) => setup::NEW_CONFIG_FILE.to_string(),
        Err(e) => return Err(e.into()),
    };
    let fix_first = |e: ParseError| {
        CliError::new(
            Exit::Files,
            format!("{e}\nFix that first; nothing was changed."),
        )
    };
    // Everything but the secrets, before anyone types one.
    let stand_ins: Vec<Option<&str>> = plan.asks.iter().map(|a| Some(a.stand_in)).collect();
    let edit = plan.edit(path, &current, &stand_ins).map_err(fix_first)?;
    Config::parse(path, &edit.text).map_err(|e| plan.explain(e))?;

    let answers = read_secrets(&plan.asks)?;
    let answers: Vec<Option<&str>> = answers
        .iter()
        .map(|a| a.as_ref().map(|s| s.as_str()))
        .collect();
    let edit = plan.edit(path, &current, &answers).map_err(fix_first)?;
    let config = Config::parse(path, &edit.text).map_err(|e| plan.explain(e))?;

    let label = gateway_check::label(&config, plan.kind);
    match gateway_check::check(&config, plan.kind, OWNER) {
        Health::Ok(found) | Health::Unchecked(found) => println!("{label}: {found}."),
        Health::Unreachable(p) | Health::Refused(p) => {
            return Err(CliError::new(
                Exit::Gateway,
                format!("{label}: {}. {}. Nothing was changed.", p.what, p.fix),
            ));
        }
    }

    let mut added = None;
    setup::update_config(path, OWNER, |text| -> Result<String, CliError> {
        let edit = plan.edit(path, text, &answers).map_err(fix_first)?;
        added = edit.added_to_order;
        Ok(edit.text)
    })?;
    let keys: Vec<&str> = plan.keys(&answers).iter().map(|(k, _)| *k).collect();
    println!(
        "Wrote {} (root:root, mode 0600): [{}] {}.",
        path.display(),
        plan.kind.id(),
        keys.join(", ")
    );
    if let Some(order) = added {
        println!(
            "Added {} to `gateways`: a user's gateways are tried in this order: {}.",
            plan.kind.id(),
            order.join(", ")
        );
    }
    println!("Next: {}", plan.next);
    Ok(())
}

/// A token or secret that could not be read: standard input failing is
/// this machine's problem (1); a line too long or not text is bad input
/// (2), like a value that is not a token.
pub(super) fn input_error(e: InputError) -> CliError {
    let exit = match e {
        InputError::Read(_) => Exit::Failed,
        InputError::TooLong | InputError::NotUtf8 => Exit::Usage,
    };
    CliError::new(exit, e.to_string())
}

/// Reads each secret of `asks`: without echo from a terminal, else one
/// line each from standard input.
fn read_secrets(asks: &[Ask]) -> Result<Vec<Option<Zeroizing<String>>>, CliError> {
    if asks.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Input::new();
    let how = if input.is_terminal() {
        "input hidden"
    } else {
        "from standard input"
    };
    let mut answers = Vec::new();
    for ask in asks {
        let empty = if ask.optional { "; empty: none" } else { "" };
        let answer = input
            .line(&format!("{} ({how}{empty}): ", ask.what), true)
            .map_err(input_error)?;
        match answer {
            None => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!("no answer for \"{}\"; nothing was changed", ask.what),
                ));
            }
            Some(a) if a.is_empty() && ask.optional => answers.push(None),
            Some(a) if a.is_empty() => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!("empty answer for \"{}\"; nothing was changed", ask.what),
                ));
            }
            Some(a) => answers.push(Some(a)),
        }
    }
    Ok(answers)
}

/// A string value for the section.
pub fn text(s: &str) -> Value {
    Value::from(s)
}

/// A number value (timeouts, max_parts).
pub fn number(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}
