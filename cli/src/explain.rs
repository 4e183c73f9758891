//! Gateways' answers in words an admin can act on.

use super::{CliError, Exit};
use pam_gateway_core::gateway::telegram::TelegramError;
use pam_gateway_core::gateway::{DeliveryError, GatewayKind};

/// Why a message to `user`'s chat was not delivered, and what to do.
/// `bot` is the bot's @username when known.
pub fn delivery(err: &TelegramError, user: &str, bot: Option<&str>) -> CliError {
    let bot_name = bot
        .map(|b| format!("@{b}"))
        .unwrap_or_else(|| "the bot".to_string());
    let open = bot
        .map(|b| format!(" (https://t.me/{b})"))
        .unwrap_or_default();
    match err {
        TelegramError::ChatNotFound => CliError::new(
            Exit::Failed,
            format!(
                "chat not found: ask {user} to press Start in {bot_name}{open}, then try again \
                 (a bot cannot write to someone who never started it)"
            ),
        ),
        TelegramError::Blocked(_) => CliError::new(
            Exit::Failed,
            format!(
                "{user} blocked {bot_name}: ask them to open the chat{open} and unblock it \
                 (Restart), then try again"
            ),
        ),
        TelegramError::RateLimited { retry_after } => CliError::new(
            Exit::Failed,
            match retry_after {
                Some(s) => format!("Telegram rate-limits {bot_name}: try again in {s} s"),
                None => format!("Telegram rate-limits {bot_name}: try again in a minute"),
            },
        ),
        TelegramError::BadRequest { description, .. } => CliError::new(
            Exit::Failed,
            format!("Telegram refused the message to {user}: {description}"),
        ),
        other => gateway(other),
    }
}

/// The bot itself cannot be used: unreachable, or its token refused.
pub fn gateway(err: &TelegramError) -> CliError {
    let message = match err {
        TelegramError::Unauthorized => "Telegram refused the bot token (401/404): copy the \
            current token from @BotFather (/mybots, API Token) and run \
            `pam-gateway configure telegram`"
            .to_string(),
        TelegramError::WebhookActive => "this bot has a webhook set, so Telegram will not \
            hand its messages to pam-gateway (409 Conflict on getUpdates). Either remove the \
            webhook (Bot API deleteWebhook; it stops whatever receives the bot's messages \
            there), or create a separate bot for pam_gateway with @BotFather, or enrol with \
            `--telegram CHAT_ID` if you know the chat id"
            .to_string(),
        TelegramError::PollConflict => "something else is reading this bot's messages \
            (409 Conflict: terminated by other getUpdates request): stop the other program \
            using this bot token, or give pam_gateway a bot of its own, and try again"
            .to_string(),
        TelegramError::ConnectionRefused(_)
        | TelegramError::Timeout
        | TelegramError::Transport(_)
        | TelegramError::Server { .. }
        | TelegramError::Malformed(_) => format!(
            "Telegram cannot be reached from this host ({err}): check the network, DNS and \
             firewall, or [telegram] api_url and proxy in gateway.toml"
        ),
        other => format!("Telegram: {other}"),
    };
    // This machine could not send (no client, descriptor, memory, thread):
    // not done, like any local failure; the gateway is not to blame.
    let exit = match err {
        TelegramError::Local(_) => Exit::Failed,
        _ => Exit::Gateway,
    };
    CliError::new(exit, message)
}

/// Why a message to `user` through a gateway other than Telegram was not
/// delivered, and what to do. `name` is the gateway's display name.
pub fn delivery_failure(
    err: &DeliveryError,
    kind: GatewayKind,
    name: &str,
    user: &str,
) -> CliError {
    let id = kind.id();
    match err {
        DeliveryError::Rejected {
            reason,
            retry_after,
        } => CliError::new(
            Exit::Failed,
            format!(
                "{name} refused the message to {user}: {reason}{}",
                match retry_after {
                    Some(s) if !reason.contains("retry after") => format!(" (retry after {s} s)"),
                    _ => String::new(),
                }
            ),
        ),
        DeliveryError::Misconfigured(reason) => CliError::new(
            Exit::Gateway,
            format!(
                "{name} is not set up right: {reason}. Fix [{id}] in gateway.toml \
                 (`pam-gateway configure {id}`), then check with `pam-gateway status`"
            ),
        ),
        DeliveryError::Local(reason) => CliError::new(
            Exit::Failed,
            format!(
                "{name}: this machine could not send: {reason}. Check memory, open-file and process limits, then try again"
            ),
        ),
        DeliveryError::Unreachable(reason)
        | DeliveryError::Refused(reason)
        | DeliveryError::ServiceFailed(reason) => {
            CliError::new(Exit::Gateway, kind.admin().unreachable_advice(name, reason))
        }
    }
}
