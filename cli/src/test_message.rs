//! `pam-gateway test USER`: a message through each of USER's routes, the
//! same routes a login uses, and what happened in words.

use std::path::Path;

use super::{CliError, Exit, OWNER, explain, load_config, telegram_config};
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::gateway::telegram::TelegramClient;
use pam_gateway_core::network::Direct;
use pam_gateway_core::redact::mask;
use pam_gateway_core::setup;
use pam_gateway_core::system::hostname;

pub fn run(config_path: &Path, user: &str) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    let users = setup::load_users(&config, OWNER)?;
    let Some(entry) = users.get(user) else {
        return Err(CliError::new(
            Exit::Usage,
            format!(
                "{user} is not enrolled in {}: run `pam-gateway enroll {user}` first",
                config.users_file.display()
            ),
        ));
    };
    let routes = setup::routes_for(&Direct, &config, user, entry)?;
    let text = format!(
        "pam_gateway test message for {user}@{}: your login codes will arrive here. \
         Nothing to do.",
        hostname()
    );
    let mut first_error = None;
    let mut failed = Vec::new();
    for route in &routes {
        let kind = GatewayKind::from_id(route.gateway.id());
        let result = match kind {
            Some(GatewayKind::Telegram) => {
                // The client under the gateway, for answers precise enough
                // to say what to do ("press Start in @bot").
                telegram_config(&config)
                    .and_then(|tg| TelegramClient::new(tg).map_err(|e| explain::gateway(&e)))
                    .and_then(|client| {
                        let bot = client.get_me().map_err(|e| explain::gateway(&e))?;
                        client
                            .send_message(&route.recipient, &text)
                            .map(|()| format!(" (@{})", bot.username))
                            .map_err(|e| explain::delivery(&e, user, Some(&bot.username)))
                    })
            }
            Some(kind) => route
                .gateway
                .send(&route.recipient, &text)
                .map(|()| String::new())
                .map_err(|e| {
                    explain::delivery_failure(&e, kind, route.gateway.display_name(), user)
                }),
            None => Err(CliError::new(
                Exit::Failed,
                format!("unknown gateway {}", route.gateway.id()),
            )),
        };
        match result {
            Ok(via) => println!(
                "Delivered: a test message went via {}{via} to {user}'s {}. Ask {user} \
                 whether it arrived.",
                route.gateway.display_name(),
                recipient_name(kind, &route.recipient)
            ),
            Err(e) => {
                // With several routes, each failure says why here; the
                // exit status is the first one's.
                let why = if routes.len() > 1 {
                    format!(": {}", e.message)
                } else {
                    ".".to_string()
                };
                println!(
                    "Not delivered via {} to {user}'s {}{why}",
                    route.gateway.display_name(),
                    recipient_name(kind, &route.recipient)
                );
                failed.push(route.gateway.display_name().to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if routes.len() > 1 => Err(CliError::new(
            e.exit,
            format!(
                "not delivered via {} ({} of {user}'s {} gateways): see above",
                failed.join(", "),
                failed.len(),
                routes.len()
            ),
        )),
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The recipient as the gateway's messages show it (`chat ***977`).
fn recipient_name(kind: Option<GatewayKind>, recipient: &str) -> String {
    match kind {
        Some(kind) => kind.admin().show_recipient(recipient),
        None => mask(recipient),
    }
}
