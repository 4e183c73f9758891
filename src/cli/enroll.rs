//! `pam-gateway enroll USER`: find USER's Telegram chat with a deep link
//! (or take the recipient given for any gateway), prove it with a code,
//! and only then write it into the users file.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::terminal::Input;
use super::{CliError, EnrollArgs, Exit, OWNER, explain, load_config, qr, system, telegram_config};
use crate::code;
use crate::config::{Config, TelegramConfig};
use crate::gateway::telegram::{BotInfo, TelegramClient};
use crate::gateway::{GatewayKind, redact};
use crate::pam_module::hostname;
use crate::secure_file::FileLock;
use crate::setup;
use crate::toml_edits;
use crate::users::{ChatId, PhoneNumber, check_address, mask};

/// Longest single getUpdates long poll (Telegram allows 50).
const POLL_SECS: u64 = 25;
/// Answers to the code prompt before giving up.
const TRIES: u32 = 3;

/// The chat that pressed Start (or was given), and who it said it was.
struct Found {
    chat: ChatId,
    name: Option<String>,
}

pub fn run(config_path: &Path, args: &EnrollArgs) -> Result<(), CliError> {
    let user = args.user.as_str();
    match system::user_exists(user) {
        Ok(true) => {}
        Ok(false) => {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "there is no account {user:?} on this system (`getent passwd {user}` finds \
                     nothing): create it first, or check the spelling"
                ),
            ));
        }
        Err(m) => return Err(CliError::new(Exit::Usage, m)),
    }
    let config = load_config(config_path)?;
    if let Some((kind, recipient)) = other_gateway(args) {
        return enroll_other(&config, args, kind, recipient);
    }
    if config.telegram.is_none() && args.telegram.is_none() && !config.gateways.is_empty() {
        let ids: Vec<&str> = config.gateways.iter().map(|k| k.id()).collect();
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{} has no [telegram] section, and the link to press Start is Telegram's. \
                 Give the recipient on a configured gateway ({}): e.g. `pam-gateway enroll \
                 {user} --{} RECIPIENT`",
                config.path.display(),
                ids.join(", "),
                ids.first().copied().unwrap_or("signal")
            ),
        ));
    }
    let tg = telegram_config(&config)?;
    let users = setup::load_users_or_empty(&config, OWNER)?;
    let client = TelegramClient::new(tg).map_err(|e| explain::gateway(&e))?;
    let bot = client.get_me().map_err(|e| explain::gateway(&e))?;

    let found = match &args.telegram {
        Some(id) => given_chat(id, &bot)?,
        None => wait_for_start(config_path, tg, &bot, args)?,
    };
    let chat = found.chat.clone();
    for (other, entry) in &users.users {
        if other != user && entry.telegram.as_ref() == Some(&chat) {
            println!(
                "Warning: chat {} is already enrolled for {other}: both users' codes will go \
                 to the same chat, and whoever reads it can log in as either.",
                mask(chat.as_str())
            );
        }
    }
    if let Some(old) = users.get(user).and_then(|e| e.telegram.as_ref())
        && old != &chat
    {
        println!(
            "{user} is enrolled at chat {} now; this replaces it.",
            mask(old.as_str())
        );
    }
    if args.no_verify {
        println!("Not checked with a code (--no-verify).");
    } else {
        let to = format!(
            "to {}chat {}",
            found
                .name
                .as_deref()
                .map(|n| format!("{n}'s "))
                .unwrap_or_default(),
            mask(found.chat.as_str())
        );
        confirm_code(&config, user, &to, "chat", |text| {
            client
                .send_message(found.chat.as_str(), text)
                .map_err(|e| explain::delivery(&e, user, Some(&bot.username)))
        })?;
    }
    setup::update_users(
        &config,
        OWNER,
        |_, text| -> Result<Option<String>, CliError> {
            Ok(Some(toml_edits::set_user_recipient(
                &config.users_file,
                text,
                user,
                "telegram",
                chat.as_str(),
            )?))
        },
    )?;
    println!(
        "Enrolled {user}: login codes go via Telegram (@{}) to chat {}. Wrote {}.",
        bot.username,
        mask(chat.as_str()),
        config.users_file.display()
    );
    println!("Try it: pam-gateway test {user}");
    Ok(())
}

fn given_chat(id: &str, bot: &BotInfo) -> Result<Found, CliError> {
    let chat = ChatId::parse(id)
        .map_err(|m| CliError::new(Exit::Usage, format!("--telegram {id}: {m}")))?;
    if id.starts_with('-') {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "--telegram {id} is a group or channel (negative id): everyone in it would \
                 read the codes. Use the user's private chat with @{}; leave out --telegram \
                 to find it with a link.",
                bot.username
            ),
        ));
    }
    Ok(Found { chat, name: None })
}

/// A random deep-link payload: 128 bits as 32 hex digits (Telegram allows
/// up to 64 of `[A-Za-z0-9_-]`).
fn new_nonce() -> Result<String, CliError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| CliError::new(Exit::Failed, format!("the OS random source failed: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The payload of `/start PAYLOAD` (or `/start@bot PAYLOAD`), if that is
/// what `text` is.
fn start_payload(text: Option<&str>) -> Option<&str> {
    let mut words = text?.split_whitespace();
    let command = words.next()?;
    if command != "/start" && !command.starts_with("/start@") {
        return None;
    }
    let payload = words.next()?;
    words.next().is_none().then_some(payload)
}

/// A name from Telegram, safe to print on a terminal.
fn printable(name: &str) -> String {
    redact(name, &[]).chars().take(64).collect()
}

/// Waits until no other enrolment reads the bot's updates: two readers
/// would take each other's messages (and Telegram answers 409 to one).
fn wait_for_turn(lock_path: &Path, deadline: Instant) -> Result<FileLock, CliError> {
    let mut told = false;
    loop {
        if let Some(lock) = FileLock::try_acquire(lock_path)? {
            return Ok(lock);
        }
        if !told {
            println!(
                "Another `pam-gateway enroll` is waiting for its Start (only one can read the \
                 bot's messages at a time); waiting for it to finish ..."
            );
            told = true;
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                Exit::Failed,
                "the other enrolment did not finish within --timeout: try again when it is done",
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_for_start(
    config_path: &Path,
    tg: &TelegramConfig,
    bot: &BotInfo,
    args: &EnrollArgs,
) -> Result<Found, CliError> {
    let user = args.user.as_str();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut lock_path = config_path.as_os_str().to_owned();
    lock_path.push(".enroll");
    let _turn = wait_for_turn(&PathBuf::from(lock_path), deadline)?;

    let nonce = new_nonce()?;
    let link = format!("https://t.me/{}?start={nonce}", bot.username);
    println!(
        "Ask {user} to open this link with the Telegram app (or scan the code) and press \
         Start:\n\n    {link}\n"
    );
    if !args.no_qr {
        let colour = std::io::stdout().is_terminal();
        match qr::render(&link, colour) {
            Ok(rows) => {
                for row in rows {
                    println!("    {row}");
                }
                println!();
            }
            Err(m) => println!("({m}; use the link)"),
        }
    }
    println!(
        "Waiting up to {} s for {user} to press Start in @{} ...",
        args.timeout, bot.username
    );
    let _ = std::io::stdout().flush();

    let poller = TelegramClient::with_timeout(tg, Duration::from_secs(POLL_SECS) + tg.http.timeout)
        .map_err(|e| explain::gateway(&e))?;
    let mut offset: Option<i64> = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            if let Some(o) = offset {
                let _ = poller.confirm_updates(o);
            }
            return Err(CliError::new(
                Exit::Failed,
                format!(
                    "timed out: nobody pressed Start with this link within {} s. Ask {user} \
                     to open the link (or scan the code) and press Start, then run \
                     `pam-gateway enroll {user}` again (--timeout SECONDS waits longer). \
                     Nothing was written.",
                    args.timeout
                ),
            ));
        }
        let wait = remaining.as_secs().clamp(1, POLL_SECS);
        let updates = poller
            .get_updates(offset, wait)
            .map_err(|e| explain::gateway(&e))?;
        let mut found = None;
        for update in &updates {
            let next = update.update_id + 1;
            offset = Some(offset.map_or(next, |o| o.max(next)));
            // Other chats' messages, and other Starts, are not ours.
            if found.is_some() || start_payload(update.text.as_deref()) != Some(nonce.as_str()) {
                continue;
            }
            let Some(chat_id) = update.chat_id else {
                continue;
            };
            if update.chat_type.as_deref() != Some("private") {
                println!(
                    "Refused: the Start came from a {} chat ({}), where everyone would read \
                     the codes. Ask {user} to open the link in their own chat with @{} \
                     (not in a group). Still waiting ...",
                    printable(update.chat_type.as_deref().unwrap_or("non-private")),
                    mask(&chat_id.to_string()),
                    bot.username
                );
                continue;
            }
            let chat = ChatId::parse(&chat_id.to_string()).map_err(|m| {
                CliError::new(
                    Exit::Gateway,
                    format!("Telegram sent chat id {chat_id}: {m}"),
                )
            })?;
            found = Some(Found {
                chat,
                name: update.from_name.as_deref().map(printable),
            });
        }
        if let Some(found) = found {
            // Confirm what was read, so the next enrolment starts clean.
            if let Some(o) = offset
                && let Err(e) = poller.confirm_updates(o)
            {
                println!("(could not confirm the bot's messages to Telegram: {e})");
            }
            println!(
                "{} pressed Start (chat {}).",
                found.name.as_deref().unwrap_or("Someone"),
                mask(found.chat.as_str())
            );
            return Ok(found);
        }
    }
}

/// The gateway and recipient given with `--signal`, `--sms`, `--webhook`
/// or `--command`.
fn other_gateway(args: &EnrollArgs) -> Option<(GatewayKind, &str)> {
    [
        (GatewayKind::Signal, &args.signal),
        (GatewayKind::Sms, &args.sms),
        (GatewayKind::Webhook, &args.webhook),
        (GatewayKind::Command, &args.command),
    ]
    .into_iter()
    .find_map(|(kind, value)| value.as_deref().map(|v| (kind, v)))
}

/// What a recipient on `kind` is called: "chat", "number", "recipient".
fn noun(kind: GatewayKind) -> &'static str {
    match kind {
        GatewayKind::Telegram => "chat",
        GatewayKind::Signal | GatewayKind::Sms => "number",
        GatewayKind::Webhook | GatewayKind::Command => "recipient",
    }
}

/// `enroll USER --signal NUMBER` and its siblings: the recipient is given,
/// checked with a code through that gateway, then written.
fn enroll_other(
    config: &Config,
    args: &EnrollArgs,
    kind: GatewayKind,
    recipient: &str,
) -> Result<(), CliError> {
    let user = args.user.as_str();
    let id = kind.id();
    let option = format!("--{id} {recipient}");
    let valid = match kind {
        GatewayKind::Signal | GatewayKind::Sms => PhoneNumber::parse(recipient).map(|_| ()),
        _ => check_address(recipient),
    };
    valid.map_err(|m| CliError::new(Exit::Usage, format!("{option}: {m}")))?;
    let Some(gateway) = setup::gateway_for(config, kind) else {
        return Err(CliError::new(
            Exit::Files,
            format!(
                "{} has no [{id}] section: run `pam-gateway configure {id}` first",
                config.path.display()
            ),
        ));
    };
    let users = setup::load_users_or_empty(config, OWNER)?;
    let masked = mask(recipient);
    let noun = noun(kind);
    for (other, entry) in &users.users {
        if other != user && entry.recipient(kind) == Some(recipient) {
            println!(
                "Warning: {noun} {masked} is already enrolled for {other} on {id}: both \
                 users' codes will go there, and whoever reads it can log in as either."
            );
        }
    }
    let old = users.get(user);
    if let Some(previous) = old.and_then(|e| e.recipient(kind))
        && previous != recipient
    {
        println!(
            "{user} is enrolled at {id} {} now; this replaces it.",
            mask(previous)
        );
    }
    let name = gateway.display_name().to_string();
    if args.no_verify {
        println!("Not checked with a code (--no-verify).");
    } else {
        confirm_code(
            config,
            user,
            &format!("via {name} to {masked}"),
            noun,
            |text| {
                gateway
                    .send(recipient, text)
                    .map_err(|e| explain::delivery_failure(&e, kind, &name, user))
            },
        )?;
    }
    setup::update_users(
        config,
        OWNER,
        |_, text| -> Result<Option<String>, CliError> {
            Ok(Some(toml_edits::set_user_recipient(
                &config.users_file,
                text,
                user,
                id,
                recipient,
            )?))
        },
    )?;
    println!(
        "Enrolled {user}: login codes go via {name} to {masked}. Wrote {}.",
        config.users_file.display()
    );
    // The other gateways stay: say in which order a login tries them.
    let others: Vec<(GatewayKind, &str)> = config
        .gateways
        .iter()
        .filter_map(|k| {
            if *k == kind {
                Some((*k, recipient))
            } else {
                old.and_then(|e| e.recipient(*k)).map(|r| (*k, r))
            }
        })
        .collect();
    if others.len() > 1 {
        let order: Vec<String> = others
            .iter()
            .map(|(k, r)| format!("{} {}", k.id(), mask(r)))
            .collect();
        println!(
            "{user}'s gateways, in the order a login tries them: {}.",
            order.join(", then ")
        );
    }
    println!("Try it: pam-gateway test {user}");
    Ok(())
}

/// Sends a code through `send` and asks for it here: whoever enrols must
/// be in touch with whoever reads that `noun` (`to` says where it went).
fn confirm_code(
    config: &Config,
    user: &str,
    to: &str,
    noun: &str,
    send: impl FnOnce(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let code = code::generate(config.code.digits).map_err(|m| CliError::new(Exit::Failed, m))?;
    let text = format!(
        "{} is the pam_gateway enrolment code for {user}@{}. Tell it to the admin who is \
         enrolling you: it makes this {noun} receive your login codes. If you did not ask for \
         this, do not share it.",
        code.expose(),
        hostname()
    );
    send(&text)?;
    let sent = Instant::now();
    println!(
        "Sent a {}-digit code {to}. Type it here to confirm the {noun}.",
        config.code.digits
    );
    let mut input = Input::new();
    for attempt in 1..=TRIES {
        let answer = input
            .line("Code: ", true)
            .map_err(|m| CliError::new(Exit::Failed, m))?;
        let Some(answer) = answer else {
            return Err(CliError::new(
                Exit::Failed,
                "no code entered: nothing was written; run the command again",
            ));
        };
        if sent.elapsed() > config.code.ttl {
            return Err(CliError::new(
                Exit::Failed,
                format!(
                    "the code expired ({} s): nothing was written; run the command again",
                    config.code.ttl.as_secs()
                ),
            ));
        }
        if code.matches(answer.as_bytes()) {
            println!("Code confirmed.");
            return Ok(());
        }
        let left = TRIES - attempt;
        if left > 0 {
            eprintln!("That is not the code sent to the {noun}; {left} tries left.");
        }
    }
    Err(CliError::new(
        Exit::Failed,
        format!(
            "wrong code {TRIES} times: nothing was written. Check that the {noun} is {user}'s \
             and run the command again"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_payloads() {
        assert_eq!(start_payload(Some("/start abc")), Some("abc"));
        assert_eq!(start_payload(Some("  /start   abc \n")), Some("abc"));
        assert_eq!(start_payload(Some("/start@my_bot abc")), Some("abc"));
        assert_eq!(start_payload(Some("/start")), None);
        assert_eq!(start_payload(Some("/start abc def")), None);
        assert_eq!(start_payload(Some("/started abc")), None);
        assert_eq!(start_payload(Some("hello")), None);
        assert_eq!(start_payload(None), None);
    }

    #[test]
    fn nonces_are_long_random_and_link_safe() {
        let a = new_nonce().expect("nonce");
        let b = new_nonce().expect("nonce");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn names_cannot_drive_the_terminal() {
        assert_eq!(printable("Al\x1b[2Jice\n"), "Al [2Jice ");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
