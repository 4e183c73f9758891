//! `pam-gateway`, the admin CLI: a second front end over the same library
//! the module uses (same file checks, same parsers, same Telegram client).
//!
//! One file per command; [`Cli`] is the whole command line (clap derive,
//! so a man page can be generated from it). Every command returns a
//! [`CliError`] whose [`Exit`] is the documented exit status.

// System calls go through pam_gateway_core::system, which documents each.
#![forbid(unsafe_code)]

mod backup_codes;
mod configure;
mod daemon;
mod enroll;
#[cfg(test)]
mod exit_tests;
mod explain;
mod finding;
mod forget;
mod gateway_check;
mod man;
mod pam_stacks;
mod qr;
mod sshd;
mod status;
mod system;
mod terminal;
mod test_message;
pub mod toml_edits;
mod totp;
mod unlock;
mod users;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use pam_gateway_core::config::{Config, DEFAULT_CONFIG_PATH};
use pam_gateway_core::gateway::telegram::TelegramConfig;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::setup::{self, SetupError};

/// The exit statuses, documented in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit status:
  0  done; for status: nothing found that would stop logins
  1  not done: status found something that would stop logins, the test
     message was refused, the enrolment did not complete (time-out,
     wrong code, refused chat, a second Start with the link), the
     authenticator code was wrong, or this machine failed (random
     source, account lookup, reading standard input, no resources to
     reach a gateway)
  2  usage: bad arguments, no such system user, user not enrolled, user
     already has an authenticator (totp without --replace)
  3  files: gateway.toml, the users file or the state directory is
     missing, unsafe or invalid, or cannot be written
  4  gateway: a gateway cannot be reached, refuses our credentials (bot
     token, webhook, API password), or its program fails its checks
  5  needs root";

const ABOUT: &str = "Set up pam_gateway: the bot, enrolments and checks";

const LONG_ABOUT: &str = "\
Set up pam_gateway, the PAM module that sends a one-time login code over
Telegram (or Signal, SMS, a webhook, a local command) after the password (or
SSH key).

A first setup, as root:
  pam-gateway configure telegram     store the bot token from @BotFather
  pam-gateway enroll alice           link alice's Telegram chat (deep link + code)
  pam-gateway test alice             send alice a test message
  pam-gateway status                 check files, gateways, PAM stacks and sshd

Other gateways: `pam-gateway configure signal|sms|webhook|command --help`,
then `pam-gateway enroll alice --signal +4915112345678` (or --sms, --webhook,
--command).

For the day no code can be delivered:
  pam-gateway totp alice             an authenticator app (QR code), checked first
  pam-gateway backup-codes alice     ten one-time codes for paper
  pam-gateway unlock alice           lift a lockout after wrong codes
  pam-gateway forget alice           end alice's remembered sources ([remember])

Every command needs root: gateway.toml holds the bot token and other secrets
and is readable by root only.";

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
    /// Link USER's Telegram chat (deep link), or another gateway's recipient, after a code check
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
    /// List enrolled users, their gateways (recipients masked), fallbacks and lockouts
    Users,
    /// Remove USER's enrolment from the users file
    #[command(after_help = EXIT_CODES)]
    Remove {
        /// The user whose entry to remove
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Give USER an authenticator app (QR code), checked with a code, then stored
    #[command(long_about = TOTP_LONG, after_help = EXIT_CODES)]
    Totp(TotpArgs),
    /// Print ten new one-time backup codes for USER; the previous set stops working
    #[command(long_about = BACKUP_CODES_LONG, after_help = EXIT_CODES)]
    BackupCodes {
        /// The enrolled user to give the codes to
        #[arg(value_name = "USER")]
        user: String,
    },
    /// Lift USER's lockout and clear the code limits (backup codes and
    /// the authenticator stay)
    #[command(long_about = UNLOCK_LONG, after_help = EXIT_CODES)]
    Unlock {
        /// The user to unlock
        #[arg(value_name = "USER")]
        user: String,
    },
    /// End every remembered source of USER ([remember]): the next login asks for a code
    #[command(long_about = FORGET_LONG, after_help = EXIT_CODES)]
    Forget {
        /// The user whose remembered sources to end
        #[arg(value_name = "USER")]
        user: String,
    },

    /// Print what is generated from these definitions: `generate man` is
    /// pam-gateway(8) in roff (`make man`). Hidden from --help; needs no root
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

/// What `pam-gateway generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// pam-gateway(8), roff
    Man,
}

const FORGET_LONG: &str = "\
End every remembered source of USER: with [remember] in gateway.toml, a
login whose second factor succeeded lets later logins of the same user from
the same remote host through the same service skip the code for `duration`
seconds. After `forget`, USER's next login from anywhere asks for a code
again. Done under USER's lock in state_dir. A wrong code and `pam-gateway
unlock USER` end them too; `pam-gateway users` lists them.";

const TOTP_LONG: &str = "\
Give USER (an account on this system) an authenticator app: a new secret
(160 bits), shown once as an otpauth:// URI, its QR code and the key for
typing in by hand. Any authenticator app reads it (SHA-1, 6 digits, 30 s).

Then the app's current code is asked for here (three tries): read from the
terminal, or from standard input when that is not a terminal. Only a right
code writes [users.USER] totp_secret = \"...\" into the users file (atomically,
under a lock, keeping comments, other users and USER's other keys) and makes
the file mode 0600: the module refuses a users file holding a secret that
others can read. The code typed here is not accepted again at a login.

A login then accepts an authenticator code at any pam_gateway prompt, and
asks for one when no code can be delivered (gateway down, send limit
reached), whatever failmode says. USER may have no gateway at all: then
every login asks for the authenticator code.

A user who already has a secret keeps it unless --replace is given (their
app's old entry then stops working).";

#[derive(Debug, Args)]
pub struct TotpArgs {
    /// The system user to give an authenticator
    #[arg(value_name = "USER")]
    pub user: String,
    /// Replace the secret USER already has (the old app entry stops working)
    #[arg(long)]
    pub replace: bool,
    /// Store the secret without asking for a code first
    #[arg(long)]
    pub no_verify: bool,
    /// Do not print the QR code (the URI and the key are still shown)
    #[arg(long)]
    pub no_qr: bool,
}

const BACKUP_CODES_LONG: &str = "\
Make ten new one-time backup codes for USER (enrolled in the users file)
and print them on standard output, one per line and nothing else, so they
can go straight to a file or a printer:
  pam-gateway backup-codes alice > alice-codes.txt
Each code works once, at any pam_gateway prompt, and when no code can be
delivered. Only salted hashes are stored (in USER's file in state_dir,
created root 0700 if missing): the codes cannot be shown again. The
previous set, if any, stops working; standard error says how many of its
codes were still unused.";

const UNLOCK_LONG: &str = "\
Lift USER's lockout after too many wrong codes, and clear what the limits
count for USER: wrong answers, earlier lockouts (each makes the next one
longer) and the codes sent in the current window. Done under USER's lock
in state_dir, so a login running at the same moment is counted correctly.
It also ends USER's remembered sources ([remember]). The authenticator's
replay guard and the unused backup codes stay.

`pam-gateway users` shows who is locked out.";

#[derive(Debug, Subcommand)]
pub enum ConfigureGateway {
    /// Store the Telegram bot token (read without echo, checked with getMe)
    #[command(long_about = CONFIGURE_TELEGRAM_LONG, after_help = EXIT_CODES)]
    Telegram(ConfigureTelegramArgs),
    /// Store the Signal API (signal-cli-rest-api or signal-cli's daemon), checked first
    #[command(long_about = CONFIGURE_SIGNAL_LONG, after_help = EXIT_CODES)]
    Signal(ConfigureSignalArgs),
    /// Store the SMS provider (playSMS, websms, Twilio); secrets read without echo
    #[command(long_about = CONFIGURE_SMS_LONG, after_help = EXIT_CODES)]
    Sms(ConfigureSmsArgs),
    /// Store a webhook (ntfy, Gotify, Matrix, Slack, ...); URL and header values read without echo
    #[command(long_about = CONFIGURE_WEBHOOK_LONG, after_help = EXIT_CODES)]
    Webhook(ConfigureWebhookArgs),
    /// Store a local program that delivers the code (gammu, signal-cli, mail)
    #[command(long_about = CONFIGURE_COMMAND_LONG, after_help = EXIT_CODES)]
    Command(ConfigureCommandArgs),
}

/// What every `configure` of a gateway other than Telegram does: the end
/// of each one's help.
macro_rules! configure_common {
    () => {
        "\n\n\
The options describe the whole [section]: a key this command manages and
you leave out is removed from it; timeout (unless given), connect_timeout,
proxy and all comments stay. Secrets are read without echo from the
terminal, or one line each from standard input when that is not a terminal;
they are never printed. Nothing is written unless the result is a valid
gateway.toml and the service accepted the settings (where it offers a check
that sends nothing). Then gateway.toml is written atomically, root:root
0600, keeping comments and other sections; a new section goes after the
last gateway section, and when the file lists `gateways = [...]`, the
gateway is appended to that list (tried last)."
    };
}

const CONFIGURE_SIGNAL_LONG: &str = concat!(
    "\
Store how to reach Signal: signal-cli-rest-api (--mode rest, the default:
POST /v2/send) or signal-cli's own daemon (`signal-cli -a NUMBER daemon
--http 127.0.0.1:8080`, --mode jsonrpc). The account must be registered or
linked in signal-cli first.

Checked before writing, sending nothing: signal-cli-rest-api's GET /v1/about
and GET /v1/accounts (is --number one of its accounts?); the daemon's
JSON-RPC `version` and, for a multi-account daemon, `listAccounts`.

With --username (HTTP Basic for a reverse proxy in front of the API, which
has no authentication of its own) the password is read as a secret.

Example:
  pam-gateway configure signal --url http://127.0.0.1:8080 --number +4915100000001",
    configure_common!()
);

const CONFIGURE_SMS_LONG: &str = concat!(
    "\
Store the SMS provider and its credentials.

  playsms  --url (the webservices address, .../index.php), --username,
           optional --from; reads the webservices token. Checked with the
           credit query (op=cr), which sends nothing.
  websms   optional --url (default https://api.websms.com), optional
           --max-parts; reads the API token, or with --username the
           password. websms has no check that sends nothing: only the
           settings are checked.
  twilio   --account-sid AC..., --from (your Twilio number, an alphanumeric
           sender id, or a Messaging Service SID MG...), optional --url;
           reads the auth token. Checked with the account lookup (GET
           Accounts/SID.json), which sends nothing.

No SMS is sent: `pam-gateway test USER` sends a real one.

Example:
  pam-gateway configure sms --provider twilio --account-sid AC0123... --from +15005550006",
    configure_common!()
);

const CONFIGURE_WEBHOOK_LONG: &str = concat!(
    "\
Store a webhook: an HTTP request per code, for ntfy, Gotify, Matrix and the
incoming webhooks of Slack, Discord and Mattermost.

--recipe NAME fills in name, method, content type, body and header names
from the tested recipes (docs/gateways.md: Webhook;
/usr/share/doc/pam-gateway/examples/webhook/); options given as well
override them. Without a recipe, --body is required.

The URL is read first (without echo: incoming-webhook URLs are secrets),
then the value of each header, in the order of --header (a recipe's own
headers first; for a recipe, an empty answer leaves its header out, and
where the recipe's header is `Authorization: Bearer ...` the token alone
is enough). Placeholders: {recipient} (the user's webhook entry) and {txn}
in the URL path; {message}, {recipient} and {txn} in the body.

There is no check that sends nothing: only the settings are checked.
`pam-gateway test USER` sends a real message.

Example:
  pam-gateway configure webhook --recipe ntfy",
    configure_common!()
);

const CONFIGURE_COMMAND_LONG: &str = concat!(
    "\
Store a local program that delivers the code: it runs as
`PATH ARG... RECIPIENT` with the message on standard input, no shell, an
empty environment, working directory /.

Checked before writing exactly as every login checks it: the program (with
symlinks resolved) and every directory above it owned by root and not
writable by group or others, a regular executable file. Nothing is run.

Example (gammu and a USB modem; users.toml: command = \"+4915112345678\"):
  pam-gateway configure command --name SMS --path /usr/bin/gammu --arg sendsms --arg TEXT",
    configure_common!()
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalModeArg {
    /// signal-cli-rest-api (POST /v2/send)
    Rest,
    /// signal-cli's JSON-RPC daemon (`signal-cli daemon --http`)
    Jsonrpc,
}

#[derive(Debug, Args)]
pub struct ConfigureSignalArgs {
    /// Base URL of the API, e.g. http://127.0.0.1:8080 (https, or http to a loopback address)
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The registered Signal account that sends the codes, E.164 (+4915100000001);
    /// required with --mode rest
    #[arg(long, value_name = "NUMBER")]
    pub number: Option<String>,
    /// Which signal-cli front end answers at --url [default: rest]
    #[arg(long, value_enum)]
    pub mode: Option<SignalModeArg>,
    /// HTTP Basic user of a reverse proxy in front of the API; its password
    /// is then read without echo
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// Seconds for the whole request, 1-120 (default: the file's, else 10)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmsProviderArg {
    /// a playSMS server's webservices
    Playsms,
    /// websms.com / LINK Mobility REST
    Websms,
    /// Twilio Messages API
    Twilio,
}

#[derive(Debug, Args)]
pub struct ConfigureSmsArgs {
    /// Which provider sends the SMS
    #[arg(long, value_enum)]
    pub provider: SmsProviderArg,
    /// API address; required for playsms (https://sms.example.org/index.php)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// playsms: the playSMS user; websms: HTTP Basic user (the password is
    /// then read instead of a token)
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// playsms: sender id (optional); twilio: number, sender id or MG... SID
    #[arg(long, value_name = "SENDER")]
    pub from: Option<String>,
    /// twilio: the Account SID (AC and 32 hex digits)
    #[arg(long, value_name = "SID")]
    pub account_sid: Option<String>,
    /// websms: SMS one code may take, 1-10 (default 3)
    #[arg(long, value_name = "N")]
    pub max_parts: Option<u32>,
    /// Seconds for the whole request, 1-120 (default: the file's, else 10)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookRecipe {
    Ntfy,
    Gotify,
    Matrix,
    Slack,
    Discord,
    Mattermost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookMethodArg {
    Post,
    Put,
}

#[derive(Debug, Args)]
pub struct ConfigureWebhookArgs {
    /// Start from a tested recipe (name, method, content type, body, headers)
    #[arg(long, value_enum)]
    pub recipe: Option<WebhookRecipe>,
    /// Shown in the prompt: "Code sent via NAME to ***xyz" (default: the
    /// recipe's, else "webhook")
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// HTTP method (default: the recipe's, else POST)
    #[arg(long, value_enum)]
    pub method: Option<WebhookMethodArg>,
    /// Content-Type of the body (default: the recipe's, else application/json)
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Body template with {message} (required without --recipe), e.g.
    /// '{"topic":"{recipient}","message":"{message}"}'
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,
    /// A header to send; its value is read without echo (repeatable)
    #[arg(long = "header", value_name = "NAME")]
    pub headers: Vec<String>,
    /// Seconds for the whole request, 1-120 (default: the file's, else 10)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ConfigureCommandArgs {
    /// Absolute path of the program (no shell, no PATH lookup)
    #[arg(long, visible_alias = "program", value_name = "PATH")]
    pub path: String,
    /// An argument before the recipient (repeatable, in order)
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Shown in the prompt: "Code sent via NAME to ***678" (default "command")
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seconds before the program is killed, 1-120 (default: the file's, else 20)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=120))]
    pub timeout: Option<u64>,
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
Link USER (an account on this system) to a Telegram chat, or to a recipient
on another gateway.

Without --telegram: prints a link https://t.me/<bot>?start=<nonce> (and its
QR code) for USER to open; waits until USER presses Start (at most --timeout
seconds); refuses group chats; shows who pressed Start: the Telegram user
id, @username (or \"no username\"), the self-chosen name and the chat (masked);
warns when the chat is already enrolled for another user. Then sends a code
to that chat and asks for it here (three tries): read from the terminal, or
from standard input when that is not a terminal. Only a right code writes
[users.USER] telegram = \"CHAT_ID\" into the users file (atomically, under a
lock, keeping comments and other users).

The bot's messages are read on until the file is written (while the code is
awaited, and once more just before writing): a second Start with the same
link from another chat or another Telegram account means the link was seen
by someone else, and ends the enrolment with nothing written (exit 1). The
same chat pressing Start again is harmless.

With --telegram CHAT_ID: uses that chat, still checked with a code unless
--no-verify.

With --signal NUMBER, --sms NUMBER (E.164: +4915112345678), --webhook
RECIPIENT (what {recipient} stands for: ntfy topic, Matrix room id, ...) or
--command RECIPIENT (given to the program as $PAM_GATEWAY_RECIPIENT): sends a code through that
gateway (configure it first) and asks for it here, as above, unless
--no-verify; then writes [users.USER] signal = \"NUMBER\" (or sms, webhook,
command). The user's other gateways stay: a login tries them in the order of
`gateways` in gateway.toml.

Only one enrolment reads the bot's messages at a time; a second one waits
for its turn before it prints its link.";

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("recipient").multiple(false)))]
pub struct EnrollArgs {
    /// The system user to enrol
    #[arg(value_name = "USER")]
    pub user: String,
    /// Use this Telegram chat id instead of waiting for Start
    #[arg(
        long,
        value_name = "CHAT_ID",
        allow_hyphen_values = true,
        group = "recipient"
    )]
    pub telegram: Option<String>,
    /// Enrol this Signal number (E.164) for USER
    #[arg(long, value_name = "NUMBER", group = "recipient")]
    pub signal: Option<String>,
    /// Enrol this phone number (E.164) for USER's SMS
    #[arg(long, value_name = "NUMBER", group = "recipient")]
    pub sms: Option<String>,
    /// Enrol this webhook recipient ({recipient}: ntfy topic, Matrix room id, ...)
    #[arg(
        long,
        value_name = "RECIPIENT",
        group = "recipient",
        allow_hyphen_values = true
    )]
    pub webhook: Option<String>,
    /// Enrol this command recipient ($PAM_GATEWAY_RECIPIENT of the program)
    #[arg(
        long,
        value_name = "RECIPIENT",
        group = "recipient",
        allow_hyphen_values = true
    )]
    pub command: Option<String>,
    /// Do not send a code to check the recipient (only with --telegram,
    /// --signal, --sms, --webhook or --command)
    #[arg(long, requires = "recipient")]
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
  - each configured gateway, in the order tried: configured, and where the
    service has a check that sends nothing, reachable with our credentials
    (Telegram getMe, signal-cli /v1/about or `version`, playSMS credit,
    Twilio account); the command gateway's program passes its checks;
    webhooks and websms: settings valid;
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

/// Exit statuses; see [`EXIT_CODES`], which `--help` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Not done: a check failed, the service refused the message, the
    /// enrolment or the code check did not complete, or this machine
    /// failed (random source, account lookup, standard input, resources
    /// to reach a gateway).
    Failed = 1,
    /// The command line is wrong: bad arguments, no such account, a user
    /// not enrolled or already holding what was asked for.
    Usage = 2,
    /// gateway.toml, the users file or the state directory.
    Files = 3,
    /// A gateway cannot be reached, refuses our credentials, or its
    /// program fails its checks.
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

impl From<pam_gateway_core::secure_file::FileError> for CliError {
    fn from(e: pam_gateway_core::secure_file::FileError) -> CliError {
        CliError::new(Exit::Files, e.to_string())
    }
}

impl From<pam_gateway_core::state::StateError> for CliError {
    fn from(e: pam_gateway_core::state::StateError) -> CliError {
        match e {
            pam_gateway_core::state::StateError::BadUser(m) => CliError::new(Exit::Usage, m),
            // A store that did not run: nothing the admin's files or
            // arguments caused.
            e @ pam_gateway_core::state::StateError::Skipped => {
                CliError::new(Exit::Failed, e.to_string())
            }
            other => CliError::new(Exit::Files, other.to_string()),
        }
    }
}

impl From<pam_gateway_core::toml_errors::ParseError> for CliError {
    fn from(e: pam_gateway_core::toml_errors::ParseError) -> CliError {
        CliError::new(Exit::Files, e.to_string())
    }
}

/// This machine could not supply randomness: not done (exit 1), never a
/// usage error.
impl From<pam_gateway_core::random::RandomError> for CliError {
    fn from(e: pam_gateway_core::random::RandomError) -> CliError {
        CliError::new(Exit::Failed, e.to_string())
    }
}

impl From<pam_gateway_core::code::CodeError> for CliError {
    fn from(e: pam_gateway_core::code::CodeError) -> CliError {
        CliError::new(Exit::Failed, e.to_string())
    }
}

impl From<pam_gateway_core::backup_codes::IssueError> for CliError {
    fn from(e: pam_gateway_core::backup_codes::IssueError) -> CliError {
        use pam_gateway_core::backup_codes::IssueError;
        match e {
            IssueError::Random(e) => e.into(),
            IssueError::State(e) => e.into(),
        }
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
        Command::Configure(ConfigureGateway::Signal(args)) => {
            require_root("configure signal", "it writes gateway.toml")?;
            configure::signal::run(config, args)
        }
        Command::Configure(ConfigureGateway::Sms(args)) => {
            require_root("configure sms", "it writes gateway.toml")?;
            configure::sms::run(config, args)
        }
        Command::Configure(ConfigureGateway::Webhook(args)) => {
            require_root("configure webhook", "it writes gateway.toml")?;
            configure::webhook::run(config, args)
        }
        Command::Configure(ConfigureGateway::Command(args)) => {
            require_root("configure command", "it writes gateway.toml")?;
            configure::command::run(config, args)
        }
        Command::Enroll(args) => {
            require_root(
                "enroll",
                "it reads the gateways' secrets and writes the users file",
            )?;
            enroll::run(config, args)
        }
        Command::Test { user } => {
            require_root("test", "it reads the gateways' secrets from gateway.toml")?;
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
        Command::Totp(args) => {
            require_root(
                "totp",
                "it writes a secret into the users file, which only root may read",
            )?;
            totp::run(config, args)
        }
        Command::BackupCodes { user } => {
            require_root(
                "backup-codes",
                "it writes USER's file in the state directory",
            )?;
            backup_codes::run(config, user)
        }
        Command::Unlock { user } => {
            require_root("unlock", "it writes USER's file in the state directory")?;
            unlock::run(config, user)
        }
        Command::Forget { user } => {
            require_root("forget", "it writes USER's file in the state directory")?;
            forget::run(config, user)
        }
        Command::Generate {
            what: Generated::Man,
        } => man::print(),
    }
}

/// Refuses a USER that is not an account on this system (a typo would
/// otherwise create an entry nobody can use).
fn require_account(user: &str) -> Result<(), CliError> {
    match system::user_exists(user) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::new(
            Exit::Usage,
            format!(
                "there is no account {user:?} on this system (`getent passwd {user}` finds \
                 nothing): create it first, or check the spelling"
            ),
        )),
        // A name from the command line holds no NUL byte: an error is the
        // lookup itself failing (NSS, sssd, LDAP), this machine's problem.
        Err(m) => Err(CliError::new(Exit::Failed, m)),
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
            SetupError::File(pam_gateway_core::secure_file::FileError::NotFound(_)) => {
                "; create it with `pam-gateway configure telegram`"
            }
            _ => "",
        };
        CliError::new(Exit::Files, format!("{e}{hint}"))
    })
}

/// The `[telegram]` section, or what to do when there is none.
fn telegram_config(config: &Config) -> Result<&TelegramConfig, CliError> {
    config.section::<TelegramConfig>().ok_or_else(|| {
        CliError::new(
            Exit::Files,
            format!(
                "{} has no [telegram] section: run `pam-gateway configure telegram` first",
                config.path.display()
            ),
        )
    })
}
