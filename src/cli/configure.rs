//! `pam-gateway configure telegram`: the bot token into gateway.toml,
//! checked first, never echoed or printed.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Duration;

use super::terminal::Input;
use super::{CliError, Exit, OWNER, explain};
use crate::config::{
    Config, DEFAULT_TELEGRAM_API, HttpSettings, Secret, TelegramConfig, check_service_url,
    is_valid_bot_token,
};
use crate::gateway::telegram::TelegramClient;
use crate::secure_file::{FileError, Secrecy, read_secure};
use crate::setup;
use crate::toml_edits;

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
    let current_tg = current.as_ref().and_then(|c| c.telegram.as_ref());
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
        .map_err(|m| CliError::new(Exit::Usage, m))?
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
    let fix_first = |e: crate::toml_errors::ParseError| {
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
