//! `pam-gateway enroll USER`: find USER's Telegram chat with a deep link
//! (or take the recipient given for any gateway), prove it with a code,
//! and only then write it into the users file.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::terminal::{EchoOff, Input, InputError};
use super::{
    CliError, EnrollArgs, Exit, OWNER, directory, explain, load_config, qr, system, telegram_config,
};
use crate::toml_edits;
use pam_gateway_core::code;
use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::gateway::telegram::{
    BotInfo, ChatId, TelegramClient, TelegramConfig, TelegramError, Update,
};
use pam_gateway_core::network::{Direct, Network};
use pam_gateway_core::redact::{mask, redact};
use pam_gateway_core::secure_file::FileLock;
use pam_gateway_core::setup;
use pam_gateway_core::system::hostname;
use pam_gateway_core::users::Users;

/// Longest single getUpdates long poll (Telegram allows 50).
const POLL_SECS: u64 = 25;
/// The getUpdates long poll while the code is awaited: short, because a
/// typed code is only looked at between two polls.
const WATCH_POLL_SECS: u64 = 1;
/// Batches the last look at the bot's messages before writing reads at
/// most (100 updates each) before it gives up.
const FINAL_BATCHES: u32 = 20;
/// Answers to the code prompt before giving up.
const TRIES: u32 = 3;

/// A typed line, `None` at the end of input.
type Answer = Option<Zeroizing<String>>;

/// The chat that pressed Start (or was given), and who pressed it.
struct Found {
    chat: ChatId,
    /// Who pressed Start; `None` for a chat given with `--telegram`.
    starter: Option<Starter>,
}

/// Who pressed Start with the link: the chat, and the account that sent
/// `/start` as `message.from` describes it. The id (and the @username, when
/// the account has one) identify the account; the names are self-chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Starter {
    chat_id: i64,
    chat_type: String,
    user_id: Option<i64>,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
}

impl Starter {
    fn of(update: &Update, chat_id: i64) -> Starter {
        Starter {
            chat_id,
            chat_type: printable(update.chat_type.as_deref().unwrap_or("unknown")),
            user_id: update.from_id,
            username: update.from_username.as_deref().map(printable),
            first_name: update.from_name.as_deref().map(printable),
            last_name: update.from_last_name.as_deref().map(printable),
        }
    }

    /// The same chat and the same account: pressing Start again is harmless.
    fn same_as(&self, other: &Starter) -> bool {
        self.chat_id == other.chat_id && self.user_id == other.user_id
    }

    fn user_id(&self) -> String {
        self.user_id
            .map_or_else(|| "unknown".to_string(), |id| id.to_string())
    }

    fn handle(&self) -> String {
        self.username
            .as_deref()
            .map_or_else(|| "no username".to_string(), |u| format!("@{u}"))
    }

    /// First and last name, as the account's owner chose them.
    fn name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| !p.trim().is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// "user id 123, @name": what identifies the account.
    fn who(&self) -> String {
        format!("user id {}, {}", self.user_id(), self.handle())
    }

    /// "chat ***977" (with the chat type unless private).
    fn chat(&self) -> String {
        let masked = mask(&self.chat_id.to_string());
        if self.chat_type == "private" {
            format!("chat {masked}")
        } else {
            format!("{} chat {masked}", self.chat_type)
        }
    }
}

pub fn run(config_path: &Path, args: &EnrollArgs) -> Result<(), CliError> {
    let user = args.user.as_str();
    // Into the directory, USER is an entry there, maybe no account here.
    let local = args.directory_bind_dn.is_none();
    match system::user_exists(user) {
        Ok(_) if !local => {}
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
        Err(m) => return Err(CliError::new(Exit::Failed, m)),
    }
    let config = load_config(config_path)?;
    if let Some((kind, recipient)) = other_gateway(args) {
        return enroll_other(&config, args, kind, recipient);
    }
    if !config.has(GatewayKind::Telegram) && args.telegram.is_none() && !config.gateways.is_empty()
    {
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
    // The directory entry and the bind are checked before USER is asked
    // to do anything.
    let target = match &args.directory_bind_dn {
        Some(dn) => Some(directory::Target::prepare(&config, args, dn)?),
        None => None,
    };
    let client = TelegramClient::new(tg).map_err(|e| explain::gateway(&e))?;
    let bot = client.get_me().map_err(|e| explain::gateway(&e))?;

    let (found, mut watch) = match &args.telegram {
        Some(id) => (given_chat(id, &bot)?, None),
        None => {
            let watch = wait_for_start(config_path, &config, tg, &bot, args)?;
            (watch.found()?, Some(watch))
        }
    };
    let result = check_and_write(
        &config,
        args,
        &users,
        Chat {
            client: &client,
            bot: &bot,
            found: &found,
        },
        watch.as_mut(),
        target.as_ref(),
    );
    if let Some(w) = &mut watch {
        // Confirm what was read, so the next enrolment starts clean.
        w.confirm_read();
    }
    result
}

/// The chat found, the bot and its client.
struct Chat<'a> {
    client: &'a TelegramClient,
    bot: &'a BotInfo,
    found: &'a Found,
}

/// The rest of a Telegram enrolment once the chat is known: warnings, the
/// code check, a last look for a second Start (deep link only), the write
/// (into the users file, or into the directory entry of `target`).
fn check_and_write(
    config: &Config,
    args: &EnrollArgs,
    users: &Users,
    chat_found: Chat<'_>,
    mut watch: Option<&mut StartWatch>,
    target: Option<&directory::Target>,
) -> Result<(), CliError> {
    let Chat { client, bot, found } = chat_found;
    let user = args.user.as_str();
    let chat = found.chat.clone();
    for (other, entry) in &users.users {
        if other != user && entry.recipient(GatewayKind::Telegram) == Some(chat.as_str()) {
            println!(
                "Warning: chat {} is already enrolled for {other}: both users' codes will go \
                 to the same chat, and whoever reads it can log in as either.",
                mask(chat.as_str())
            );
        }
    }
    if target.is_some() && users.get(user).is_some() {
        println!(
            "Note: {} has an entry for {user}: on this host it overrides the directory              (pam-gateway remove {user} to use the directory here too).",
            config.users_file.display()
        );
    } else if let Some(old) = users
        .get(user)
        .and_then(|e| e.recipient(GatewayKind::Telegram))
        && old != chat.as_str()
    {
        println!(
            "{user} is enrolled at chat {} now; this replaces it.",
            mask(old)
        );
    }
    if args.no_verify {
        println!("Not checked with a code (--no-verify).");
    } else {
        let to = match &found.starter {
            Some(s) => format!("to {} ({})", s.chat(), s.who()),
            None => format!("to chat {}", mask(found.chat.as_str())),
        };
        let send = |text: &str| {
            client
                .send_message(found.chat.as_str(), text)
                .map_err(|e| explain::delivery(&e, user, Some(&bot.username)))
        };
        match watch.as_deref_mut() {
            // While the code is awaited, the bot's messages are read on: a
            // second Start with the link ends the enrolment.
            Some(w) => {
                let mut answers = WatchedAnswers {
                    watch: w,
                    reader: None,
                };
                confirm_code(config, user, &to, "chat", send, &mut answers)?;
            }
            None => {
                let mut input = Input::new();
                let mut answers = || {
                    input
                        .line("Code: ", true)
                        .map_err(|m| CliError::new(Exit::Failed, m.to_string()))
                };
                confirm_code(config, user, &to, "chat", send, &mut answers)?;
            }
        }
    }
    if let Some(w) = watch {
        w.last_look()?;
    }
    if let Some(target) = target {
        let wrote = target.write(config, chat.as_str())?;
        println!(
            "Enrolled {user} in the directory: login codes go via Telegram (@{}) to chat {}; {wrote}.",
            bot.username,
            mask(chat.as_str()),
        );
        println!("Every host with this [directory] uses it. Try it: pam-gateway test {user}");
        return Ok(());
    }
    setup::update_users(
        config,
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
    Ok(Found {
        chat,
        starter: None,
    })
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

/// Prints the deep link, then reads the bot's messages until a private
/// chat sends `/start NONCE`. The returned watch holds the enrolment's turn
/// to read the bot's messages until it is dropped, and goes on reading them.
fn wait_for_start(
    config_path: &Path,
    config: &Config,
    tg: &TelegramConfig,
    bot: &BotInfo,
    args: &EnrollArgs,
) -> Result<StartWatch, CliError> {
    let user = args.user.as_str();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut lock_path = config_path.as_os_str().to_owned();
    lock_path.push(".enroll");
    let turn = wait_for_turn(&PathBuf::from(lock_path), deadline)?;

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

    let poller = Reader::for_config(config, tg)?;
    let mut watch = StartWatch {
        _turn: turn,
        poller,
        nonce,
        user: user.to_string(),
        bot: bot.username.clone(),
        offset: None,
        confirmed: None,
        first: None,
    };
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            watch.confirm_read();
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
        let updates = watch.fetch(wait).map_err(|e| explain::gateway(&e))?;
        // The whole batch is judged: a second Start right behind the first
        // ends the enrolment before any code is sent.
        watch.judge(&updates)?;
        if let Some(first) = &watch.first {
            print_starter(first, user);
            // Confirm what was read, so the next enrolment starts clean.
            watch.confirm_read();
            return Ok(watch);
        }
    }
}

/// What the admin sees before the code goes out: who pressed Start, by the
/// marks that identify a Telegram account (id, @username), and the chat.
fn print_starter(first: &Starter, user: &str) {
    let name = first.name().map_or_else(
        || "none given".to_string(),
        |n| format!("{n} (self-chosen: anyone can use any name)"),
    );
    println!(
        "Start was pressed with the link. Check with {user} that this is their Telegram \
         account before you type the code:\n\
         \x20   user id   {}\n\
         \x20   username  {}\n\
         \x20   name      {name}\n\
         \x20   chat      {} ({})",
        first.user_id(),
        first.handle(),
        mask(&first.chat_id.to_string()),
        first.chat_type,
    );
}

/// One deep-link enrolment's reading of the bot's messages, from the link
/// until the users file is written.
///
/// The rule against a link seen by someone else: from the first private
/// `/start NONCE` on, every further `/start NONCE` is judged, and one from
/// another chat or another account (`message.from.id`) ends the enrolment
/// with nothing written; the same chat and account pressing Start again is
/// harmless. The reading goes on while the code is awaited (short polls
/// between looks at what was typed), and ends with a last look just before
/// writing: getUpdates without waiting, repeated until it returns nothing.
///
/// Why that window suffices: Telegram keeps every update until a getUpdates
/// `offset` confirms it, and the offset only ever moves past updates that
/// were judged. So any Start that reached Telegram before the last look is
/// seen, whether or not a poll failed on the way. Two Starts within the same
/// instant come in one batch and are judged together, before any code goes
/// out. Someone who saw the link and pressed Start first makes the real
/// user's own Start (pressed while the admin waits for the code) the second
/// one; someone pressing it just after the user is caught for as long as the
/// code takes to read back, seconds at the least, so no extra waiting time
/// is added. A Start after the write comes too late to matter: the nonce is
/// used up, and the next enrolment waits for a new one. What no watch can
/// catch, a Start by someone else while the real user never presses it, the
/// summary shows: the account's user id and @username, not just a name.
struct StartWatch {
    /// Only one enrolment reads the bot's messages at a time; this is held
    /// until the users file is written.
    _turn: FileLock,
    poller: Reader,
    nonce: String,
    user: String,
    bot: String,
    /// The next update_id to read: everything below it was judged.
    offset: Option<i64>,
    /// The offset Telegram was last told, which confirmed everything below.
    confirmed: Option<i64>,
    first: Option<Starter>,
}

impl StartWatch {
    fn found(&self) -> Result<Found, CliError> {
        let Some(first) = &self.first else {
            return Err(CliError::new(Exit::Failed, "no Start was found"));
        };
        let chat = ChatId::parse(&first.chat_id.to_string()).map_err(|m| {
            CliError::new(
                Exit::Gateway,
                format!("Telegram sent chat id {}: {m}", first.chat_id),
            )
        })?;
        Ok(Found {
            chat,
            starter: Some(first.clone()),
        })
    }

    /// One getUpdates from `offset` (which confirms everything below it),
    /// waiting up to `wait` seconds.
    fn fetch(&mut self, wait: u64) -> Result<Vec<Update>, TelegramError> {
        let updates = self.poller.get_updates(self.offset, wait)?;
        if self.offset.is_some() {
            self.confirmed = self.offset;
        }
        Ok(updates)
    }

    /// Looks at every update of a batch: the first private Start with the
    /// nonce is the one; any later one from another chat or account ends
    /// the enrolment.
    fn judge(&mut self, updates: &[Update]) -> Result<(), CliError> {
        for update in updates {
            let next = update.update_id + 1;
            self.offset = Some(self.offset.map_or(next, |o| o.max(next)));
            // Other chats' messages, and other Starts, are not ours.
            if start_payload(update.text.as_deref()) != Some(self.nonce.as_str()) {
                continue;
            }
            let Some(chat_id) = update.chat_id else {
                continue;
            };
            let starter = Starter::of(update, chat_id);
            match &self.first {
                Some(first) if first.same_as(&starter) => {}
                Some(first) => {
                    let first = first.clone();
                    return Err(self.second_start(&first, &starter));
                }
                None if update.chat_type.as_deref() != Some("private") => {
                    println!(
                        "Refused: the Start came from a {} chat ({}), where everyone would \
                         read the codes. Ask {} to open the link in their own chat with @{} \
                         (not in a group). Still waiting ...",
                        printable(update.chat_type.as_deref().unwrap_or("non-private")),
                        mask(&chat_id.to_string()),
                        self.user,
                        self.bot
                    );
                }
                None => self.first = Some(starter),
            }
        }
        Ok(())
    }

    /// The error that ends the enrolment when `second` pressed Start after
    /// `first`; what was read is confirmed.
    fn second_start(&mut self, first: &Starter, second: &Starter) -> CliError {
        self.confirm_read();
        let who = if first.user_id == second.user_id {
            format!(
                "the same Telegram account ({}) pressed Start with this link again, in \
                 another chat ({}, the first was {})",
                second.who(),
                second.chat(),
                first.chat()
            )
        } else {
            format!(
                "a second Telegram account ({}, in {}) pressed Start with this link after \
                 {} did",
                second.who(),
                second.chat(),
                first.who()
            )
        };
        CliError::new(
            Exit::Failed,
            format!(
                "{who}: it was seen by someone else. Nothing was written; run `pam-gateway \
                 enroll {}` again and keep the link private (no shared screen, do not \
                 forward it).",
                self.user
            ),
        )
    }

    /// A short poll while the code is awaited. A failed read is retried
    /// at the next poll: the updates stay with Telegram until an offset
    /// confirms them, and the last look before writing must succeed.
    fn watch(&mut self) -> Result<(), CliError> {
        match self.fetch(WATCH_POLL_SECS) {
            Ok(updates) => self.judge(&updates),
            Err(_) => {
                // A refused connection fails at once: do not spin.
                std::thread::sleep(Duration::from_secs(WATCH_POLL_SECS));
                Ok(())
            }
        }
    }

    /// The last look before writing: reads without waiting until nothing is
    /// left, judging all of it (and so confirming it).
    fn last_look(&mut self) -> Result<(), CliError> {
        for _ in 0..FINAL_BATCHES {
            let updates = self.fetch(0).map_err(|e| {
                CliError::new(
                    Exit::Gateway,
                    format!(
                        "could not read the bot's messages one last time to make sure nobody \
                         else pressed Start with the link ({e}). Nothing was written; run \
                         `pam-gateway enroll {}` again",
                        self.user
                    ),
                )
            })?;
            if updates.is_empty() {
                return Ok(());
            }
            self.judge(&updates)?;
        }
        Err(CliError::new(
            Exit::Gateway,
            format!(
                "the bot receives messages faster than they can be checked for a second \
                 Start with the link (still more after {FINAL_BATCHES} batches). Nothing was \
                 written; try again when the bot is quieter"
            ),
        ))
    }

    /// Confirms every update read so far, unless Telegram was told already.
    fn confirm_read(&mut self) {
        let Some(o) = self.offset else { return };
        if self.confirmed == Some(o) {
            return;
        }
        match self.poller.confirm_updates(o) {
            Ok(()) => self.confirmed = Some(o),
            Err(e) => println!("(could not confirm the bot's messages to Telegram: {e})"),
        }
    }
}

/// Who reads the bot's messages for the enrolment: the CLI itself
/// (getUpdates), or `pam-gatewayd` when it runs, because a bot has one
/// reader and a second getUpdates would end the daemon's (409).
enum Reader {
    Bot(TelegramClient),
    /// The daemon's socket: it keeps the recent text messages it read.
    Daemon(PathBuf),
}

impl Reader {
    fn for_config(config: &Config, tg: &TelegramConfig) -> Result<Reader, CliError> {
        if config.approve.enabled {
            match super::daemon::status(&config.approve.socket) {
                Ok(_) => {
                    println!("(reading the bot's messages through pam-gatewayd)");
                    return Ok(Reader::Daemon(config.approve.socket.clone()));
                }
                Err(why) => println!(
                    "(pam-gatewayd does not answer ({why}); reading the bot's messages \
                     directly)"
                ),
            }
        }
        TelegramClient::with_timeout(tg, Duration::from_secs(POLL_SECS) + tg.http.timeout)
            .map(Reader::Bot)
            .map_err(|e| explain::gateway(&e))
    }

    fn get_updates(&self, offset: Option<i64>, wait: u64) -> Result<Vec<Update>, TelegramError> {
        match self {
            Reader::Bot(c) => c.get_updates(offset, wait),
            Reader::Daemon(socket) => super::daemon::updates(
                socket,
                offset.map_or(0, |o| o.saturating_sub(1)),
                Duration::from_secs(wait),
            )
            .map_err(|m| TelegramError::Transport(format!("pam-gatewayd: {m}"))),
        }
    }

    /// The daemon confirms what it reads itself.
    fn confirm_updates(&self, offset: i64) -> Result<(), TelegramError> {
        match self {
            Reader::Bot(c) => c.confirm_updates(offset),
            Reader::Daemon(_) => Ok(()),
        }
    }
}

/// Where typed codes come from: one line per call ("Code: " prompt), `None`
/// at the end of input.
trait Answers {
    fn next(&mut self) -> Result<Answer, CliError>;
}

impl<F: FnMut() -> Result<Answer, CliError>> Answers for F {
    fn next(&mut self) -> Result<Answer, CliError> {
        self()
    }
}

/// Typed codes during a deep-link enrolment: a thread reads standard
/// input while this one watches the bot's messages.
struct WatchedAnswers<'a> {
    watch: &'a mut StartWatch,
    /// Started at the first prompt, after the code went out.
    reader: Option<LineReader>,
}

impl Answers for WatchedAnswers<'_> {
    fn next(&mut self) -> Result<Answer, CliError> {
        let reader = match &mut self.reader {
            Some(r) => r,
            None => self.reader.insert(LineReader::start()?),
        };
        reader.ask()?;
        loop {
            if let Some(line) = reader.answer()? {
                return Ok(line);
            }
            if let Err(e) = self.watch.watch() {
                // End the "Code: " prompt's line before the error.
                eprintln!();
                return Err(e);
            }
        }
    }
}

/// Reads one line of standard input per request, on a thread of its own,
/// with terminal echo off for as long as it lives. A line asked for but
/// never typed leaves the thread blocked in read(2); it ends with the
/// process, and dropping this restores the echo meanwhile.
struct LineReader {
    ask: mpsc::Sender<()>,
    lines: mpsc::Receiver<Result<Answer, InputError>>,
    _echo: Option<EchoOff>,
}

impl LineReader {
    fn start() -> Result<LineReader, CliError> {
        let echo = EchoOff::new();
        let (ask, asks) = mpsc::channel::<()>();
        let (tell, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("enroll-input".to_string())
            .spawn(move || {
                let mut input = Input::new();
                while asks.recv().is_ok() {
                    // Echo is off already (on a terminal).
                    if tell.send(input.line("Code: ", false)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| {
                CliError::new(
                    Exit::Failed,
                    format!("cannot start a thread to read input: {e}"),
                )
            })?;
        Ok(LineReader {
            ask,
            lines,
            _echo: echo,
        })
    }

    fn ask(&self) -> Result<(), CliError> {
        self.ask.send(()).map_err(|_| Self::gone())
    }

    /// The line asked for, if it was typed.
    fn answer(&self) -> Result<Option<Answer>, CliError> {
        match self.lines.try_recv() {
            Ok(line) => line
                .map(Some)
                .map_err(|m| CliError::new(Exit::Failed, m.to_string())),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(Self::gone()),
        }
    }

    fn gone() -> CliError {
        CliError::new(Exit::Failed, "the thread reading standard input stopped")
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
    kind.spec()
        .check_recipient(recipient)
        .map_err(|m| CliError::new(Exit::Usage, format!("{option}: {m}")))?;
    let Some(gateway) = Direct.gateway(config, kind) else {
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
    let noun = kind.admin().recipient_noun();
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
        let mut input = Input::new();
        let mut answers = || {
            input
                .line("Code: ", true)
                .map_err(|m| CliError::new(Exit::Failed, m.to_string()))
        };
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
            &mut answers,
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

/// Sends a code through `send` and asks for it here (each try one line
/// from `answers`): whoever enrols must be in touch with whoever reads that
/// `noun` (`to` says where it went).
fn confirm_code(
    config: &Config,
    user: &str,
    to: &str,
    noun: &str,
    send: impl FnOnce(&str) -> Result<(), CliError>,
    answers: &mut dyn Answers,
) -> Result<(), CliError> {
    let code = code::generate(config.code.digits)?;
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
    for attempt in 1..=TRIES {
        let Some(answer) = answers.next()? else {
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

    fn update(chat: i64, chat_type: &str, from: i64, username: Option<&str>) -> Update {
        Update {
            update_id: 1,
            chat_id: Some(chat),
            chat_type: Some(chat_type.to_string()),
            text: Some("/start abc".to_string()),
            from_id: Some(from),
            from_username: username.map(str::to_string),
            from_name: Some("Al\x1b[2Jice".to_string()),
            from_last_name: Some(" ".to_string()),
        }
    }

    #[test]
    fn starters_are_the_same_only_with_the_same_chat_and_account() {
        let first = Starter::of(&update(5, "private", 5, Some("al")), 5);
        assert!(first.same_as(&Starter::of(&update(5, "private", 5, None), 5)));
        assert!(!first.same_as(&Starter::of(&update(6, "private", 6, Some("al")), 6)));
        assert!(!first.same_as(&Starter::of(&update(5, "private", 7, Some("al")), 5)));
        assert!(!first.same_as(&Starter::of(&update(-9, "group", 5, Some("al")), -9)));
    }

    #[test]
    fn starters_are_described_by_id_and_username() {
        let s = Starter::of(
            &update(123_456_977, "private", 123_456_977, Some("al")),
            123_456_977,
        );
        assert_eq!(s.who(), "user id 123456977, @al");
        assert_eq!(s.chat(), "chat ***977");
        // Names are printable and a blank last name is left out.
        assert_eq!(s.name().as_deref(), Some("Al [2Jice"));
        let g = Starter::of(&update(-100_123_456, "group", 5, None), -100_123_456);
        assert_eq!(g.who(), "user id 5, no username");
        assert_eq!(g.chat(), "group chat ***456");
    }

    #[test]
    fn names_cannot_drive_the_terminal() {
        assert_eq!(printable("Al\x1b[2Jice\n"), "Al [2Jice ");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
    }
}
