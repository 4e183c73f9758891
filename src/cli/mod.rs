//! `pam-gateway`, the admin CLI: a second front end over the same library
//! the module uses (same file checks, same parsers, same Telegram client).
//!
//! One file per command; [`Cli`] is the whole command line (clap derive,
//! so a man page can be generated from it). Every command returns a
//! [`CliError`] whose [`Exit`] is the documented exit status.

mod configure;
mod enroll;
mod explain;
mod pam_stacks;
mod qr;
mod sshd;
mod status;
mod system;
mod terminal;
mod test_message;
mod users;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH, TelegramConfig};
use crate::secure_file::Owner;
use crate::setup::{self, SetupError};

/// The exit statuses, documented in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit status:
  0  done; for status: nothing found that would stop logins
  1  not done: status found something that would stop logins, the test
     message was refused, or the enrolment did not complete (time-out,
     wrong code, refused chat)
  2  usage: bad arguments, no such system user, user not enrolled
  3  files: gateway.toml or the users file is missing, unsafe or invalid,
     or cannot be written
  4  gateway: Telegram cannot be reached or refuses the bot (token, webhook)
  5  needs root";

const ABOUT: &str = "Set up pam_gateway: the bot, enrolments and checks";

const LONG_ABOUT: &str = "\
Set up pam_gateway, the PAM module that sends a one-time login code over
Telegram after the password (or SSH key).

A first setup, as root:
  pam-gateway configure telegram     store the bot token from @BotFather
  pam-gateway enroll alice           link alice's Telegram chat (deep link + code)
  pam-gateway test alice             send alice a test message
  pam-gateway status                 check files, bot, PAM stacks and sshd

Every command needs root: gateway.toml holds the bot token and is readable by
root only.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "pam-gateway",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// The gateway.toml to use; the users file is the one it names
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a gateway's credentials after checking them with the service
    #[command(subcommand)]
    Configure(ConfigureGateway),
    /// Link USER's Telegram chat: deep link, Start, code check, users file
    #[command(long_about = ENROLL_LONG, after_help = EXIT_CODES)]
    Enroll(EnrollArgs),
    /// Send USER a test message and say in words what happened
    #[command(after_help = EXIT_CODES)]
    Test {
        /// The enrolled user to message
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Check everything a login needs; exit 1 when something would stop logins
    #[command(long_about = STATUS_LONG, after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// List enrolled users and their gateways (recipients masked)
    Users,
    /// Remove USER's enrolment from the users file
    #[command(after_help = EXIT_CODES)]
    Remove {
        /// The user whose entry to remove
        #[arg(value_name = "USER")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigureGateway {
    /// Store the Telegram bot token (read without echo, checked with getMe)
    #[command(long_about = CONFIGURE_TELEGRAM_LONG, after_help = EXIT_CODES)]
    Telegram(ConfigureTelegramArgs),
}

const CONFIGURE_TELEGRAM_LONG: &str = "\
Store the Telegram bot token in gateway.toml.

The token is read without echo from the terminal, or from standard input when
that is not a terminal (`pam-gateway configure telegram < token-file`). It is
checked with Telegram's getMe, which names the bot; only then is gateway.toml
written: atomically, root:root 0600, keeping its comments and other keys. The
directory is created (0700) when missing. The token is never printed.";

#[derive(Debug, Args)]
pub struct ConfigureTelegramArgs {
    /// Bot API server to store and use, e.g. a self-hosted telegram-bot-api
    /// (default: the one in gateway.toml, else https://api.telegram.org)
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
}

const ENROLL_LONG: &str = "\
Link USER (an account on this system) to a Telegram chat.

Without --telegram: prints a link https://t.me/<bot>?start=<nonce> (and its
QR code) for USER to open; waits until USER presses Start (at most --timeout
seconds); refuses group chats; warns when the chat is already enrolled for
another user. Then sends a code to that chat and asks for it here (three
tries): read from the terminal, or from standard input when that is not a
terminal. Only a right code writes [users.USER] telegram = \"CHAT_ID\" into the
users file (atomically, under a lock, keeping comments and other users).

With --telegram CHAT_ID: uses that chat, still checked with a code unless
--no-verify.

Only one enrolment reads the bot's messages at a time; a second one waits
for its turn before it prints its link.";

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The system user to enrol
    #[arg(value_name = "USER")]
    pub user: String,
    /// Use this Telegram chat id instead of waiting for Start
    #[arg(long, value_name = "CHAT_ID", allow_hyphen_values = true)]
    pub telegram: Option<String>,
    /// Do not send a code to check the chat (only with --telegram)
    #[arg(long, requires = "telegram")]
    pub no_verify: bool,
    /// Seconds to wait for USER to press Start
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Do not print the QR code of the link
    #[arg(long)]
    pub no_qr: bool,
}

const STATUS_LONG: &str = "\
Check everything a login through pam_gateway needs, and say what to fix:
  - gateway.toml and the users file: found, valid, owner and mode right;
  - each configured gateway: reachable, credentials accepted (Telegram getMe);
  - the PAM stacks in /etc/pam.d that load pam_gateway.so: module installed,
    arguments valid, placed after the password check, control flag;
  - sshd (from `sshd -T`, when sshd is installed): UsePAM,
    KbdInteractiveAuthentication and AuthenticationMethods let the module be
    asked at all;
  - who is enrolled, and whether those accounts exist.
Lines start with ok, info, warn or FAIL. FAIL means logins would be refused;
then the exit status is 1.";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The PAM stack directory to inspect
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
    pub pam_dir: PathBuf,
}

/// Exit statuses; see [`EXIT_CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    Files = 3,
    Gateway = 4,
    NotRoot = 5,
}

/// A command that did not complete: what happened and what to do next.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<SetupError> for CliError {
    fn from(e: SetupError) -> CliError {
        CliError::new(Exit::Files, e.to_string())
    }
}

impl From<crate::secure_file::FileError> for CliError {
    fn from(e: crate::secure_file::FileError) -> CliError {
        CliError::new(Exit::Files, e.to_string())
    }
}

impl From<crate::toml_errors::ParseError> for CliError {
    fn from(e: crate::toml_errors::ParseError) -> CliError {
        CliError::new(Exit::Files, e.to_string())
    }
}

/// Runs the CLI on this process's arguments; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0, usage errors 2 (clap's own codes).
        Err(e) => e.exit(),
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pam-gateway: {}", e.message);
            ExitCode::from(e.exit as u8)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: &Cli) -> Result<(), CliError> {
    let config = cli.config.as_path();
    if !config.is_absolute() {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "--config {}: give an absolute path (the module only reads absolute paths)",
                config.display()
            ),
        ));
    }
    match &cli.command {
        Command::Configure(ConfigureGateway::Telegram(args)) => {
            require_root("configure telegram", "it writes gateway.toml")?;
            configure::telegram(config, args)
        }
        Command::Enroll(args) => {
            require_root("enroll", "it reads the bot token and writes the users file")?;
            enroll::run(config, args)
        }
        Command::Test { user } => {
            require_root("test", "it reads the bot token from gateway.toml")?;
            test_message::run(config, user)
        }
        Command::Status(args) => {
            require_root("status", "it reads gateway.toml, which only root may read")?;
            status::run(config, args)
        }
        Command::Users => {
            require_root("users", "it reads gateway.toml to find the users file")?;
            users::list(config)
        }
        Command::Remove { user } => {
            require_root("remove", "it writes the users file")?;
            users::remove(config, user)
        }
    }
}

fn require_root(command: &str, why: &str) -> Result<(), CliError> {
    if system::is_root() {
        return Ok(());
    }
    Err(CliError::new(
        Exit::NotRoot,
        format!("`pam-gateway {command}` needs root: {why}. Run it with sudo."),
    ))
}

/// The owner the module insists on for its files.
const OWNER: Owner = Owner::ROOT;

/// gateway.toml, checked and parsed as a login does.
fn load_config(path: &Path) -> Result<Config, CliError> {
    setup::load_config(path, OWNER).map_err(|e| {
        let hint = match &e {
            SetupError::File(crate::secure_file::FileError::NotFound(_)) => {
                "; create it with `pam-gateway configure telegram`"
            }
            _ => "",
        };
        CliError::new(Exit::Files, format!("{e}{hint}"))
    })
}

/// The `[telegram]` section, or what to do when there is none.
fn telegram_config(config: &Config) -> Result<&TelegramConfig, CliError> {
    config.telegram.as_ref().ok_or_else(|| {
        CliError::new(
            Exit::Files,
            format!(
                "{} has no [telegram] section: run `pam-gateway configure telegram` first",
                config.path.display()
            ),
        )
    })
}
