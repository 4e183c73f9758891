//! Is a configured gateway usable? The harmless check each service offers,
//! shared by `configure` (before writing) and `status`: Telegram `getMe`,
//! signal-cli's `/v1/about` or `version`, playSMS's credit query, Twilio's
//! account lookup, the command gateway's program checks. Webhooks and
//! websms have nothing to ask that sends nothing: only their settings are
//! checked (by parsing them).

use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::command::check_program;
use pam_gateway_core::gateway::signal::SignalGateway;
use pam_gateway_core::gateway::sms::SmsGateway;
use pam_gateway_core::gateway::telegram::{TelegramClient, TelegramError};
use pam_gateway_core::gateway::{DeliveryError, GatewayKind};
use pam_gateway_core::secure_file::Owner;

/// Why a gateway cannot deliver, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong (`the bot token is refused (401/404)`).
    pub what: String,
    /// What to do (`Copy the current token from @BotFather ...`).
    pub fix: String,
}

/// The outcome of a gateway's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The service answered and accepts our settings: what it said.
    Ok(String),
    /// Settings valid; the service has nothing harmless to ask.
    Unchecked(String),
    /// The service cannot be reached now (with `failmode = "safe"` logins
    /// may skip the code while this lasts).
    Unreachable(Problem),
    /// The service refuses our settings, or they cannot work: every code
    /// through this gateway fails.
    Refused(Problem),
}

impl Health {
    pub fn is_usable(&self) -> bool {
        matches!(self, Health::Ok(_) | Health::Unchecked(_))
    }
}

/// How the gateway is called in messages: `signal`, `webhook (ntfy)`.
pub fn label(config: &Config, kind: GatewayKind) -> String {
    let name = match kind {
        GatewayKind::Webhook => config.webhook.as_ref().map(|w| w.name.as_str()),
        GatewayKind::Command => config.command.as_ref().map(|c| c.name.as_str()),
        _ => None,
    };
    match name {
        Some(n) if n != kind.id() => format!("{} ({n})", kind.id()),
        _ => kind.id().to_string(),
    }
}

/// Checks the gateway `kind` as `config` sets it up. Only harmless
/// requests: nothing is sent to anyone.
pub fn check(config: &Config, kind: GatewayKind, owner: Owner) -> Health {
    let not_configured = || {
        Health::Refused(Problem {
            what: format!("gateway.toml has no [{}] section", kind.id()),
            fix: format!("run `pam-gateway configure {}`", kind.id()),
        })
    };
    match kind {
        GatewayKind::Telegram => match &config.telegram {
            None => not_configured(),
            Some(tg) => match TelegramClient::new(tg).and_then(|c| c.get_me()) {
                Ok(bot) => Health::Ok(format!("bot @{} answers at {}", bot.username, tg.api_url)),
                Err(TelegramError::Unauthorized) => Health::Refused(Problem {
                    what: "the bot token is refused (401/404)".to_string(),
                    fix: "Copy the current token from @BotFather and run `pam-gateway \
                          configure telegram`"
                        .to_string(),
                }),
                Err(e) => Health::Unreachable(Problem {
                    what: format!("{} cannot be used ({e})", tg.api_url),
                    fix: "Check the network, DNS, firewall, or api_url and proxy in gateway.toml"
                        .to_string(),
                }),
            },
        },
        GatewayKind::Signal => match &config.signal {
            None => not_configured(),
            Some(cfg) => match SignalGateway::new(cfg).check() {
                Ok(found) => Health::Ok(found),
                Err(e) => from_delivery(
                    DeliveryError::from(e),
                    &cfg.url,
                    "Check that signal-cli-rest-api (or `signal-cli daemon --http`) runs and \
                     listens at [signal] url, and the network in between",
                    "Fix with `pam-gateway configure signal`",
                ),
            },
        },
        GatewayKind::Sms => match &config.sms {
            None => not_configured(),
            Some(cfg) => {
                let provider = cfg.provider.name();
                match SmsGateway::new(cfg).check() {
                    Ok(Some(found)) => Health::Ok(found),
                    Ok(None) => Health::Unchecked(format!(
                        "{provider} settings valid; {provider} offers no check that sends \
                         nothing (`pam-gateway test USER` sends a real SMS)"
                    )),
                    Err(e) => from_delivery(
                        DeliveryError::from(e),
                        provider,
                        &format!(
                            "Check that {provider} can be reached from this host ([sms] url, \
                             proxy, firewall)"
                        ),
                        "Fix with `pam-gateway configure sms`",
                    ),
                }
            }
        },
        GatewayKind::Webhook => match &config.webhook {
            None => not_configured(),
            Some(cfg) => {
                // The URL is a secret; its scheme and host are not.
                let origin = reqwest::Url::parse(cfg.url.expose())
                    .ok()
                    .map(|u| u.origin().ascii_serialization())
                    .filter(|o| o != "null")
                    .unwrap_or_else(|| "its URL".to_string());
                Health::Unchecked(format!(
                    "settings valid, posts to {origin} (rest of the URL not shown); a webhook \
                     has no check that sends nothing (`pam-gateway test USER` sends a real \
                     message)"
                ))
            }
        },
        GatewayKind::Command => match &config.command {
            None => not_configured(),
            Some(cfg) => match check_program(&cfg.path, owner) {
                Ok(real) => {
                    let resolved = if real == cfg.path {
                        String::new()
                    } else {
                        format!(" (it is {})", real.display())
                    };
                    Health::Ok(format!(
                        "{}{resolved} passes the checks a login makes: owned by root, not \
                         writable by group or others, executable",
                        cfg.path.display()
                    ))
                }
                Err(m) => Health::Refused(Problem {
                    what: m,
                    fix: "Every login checks the program the same way and refuses to run it \
                          until this is fixed"
                        .to_string(),
                }),
            },
        },
    }
}

/// A delivery error as health; `at` (a URL, a provider) says where an
/// unreachable service was looked for.
fn from_delivery(e: DeliveryError, at: &str, unreachable_fix: &str, refused_fix: &str) -> Health {
    match e {
        DeliveryError::Unreachable(what)
        | DeliveryError::Refused(what)
        | DeliveryError::ServiceFailed(what)
        | DeliveryError::Local(what) => Health::Unreachable(Problem {
            what: format!("{at}: {what}"),
            fix: unreachable_fix.to_string(),
        }),
        DeliveryError::Rejected { reason, .. } => Health::Refused(Problem {
            what: reason,
            fix: refused_fix.to_string(),
        }),
        DeliveryError::Misconfigured(what) => Health::Refused(Problem {
            what,
            fix: refused_fix.to_string(),
        }),
    }
}
