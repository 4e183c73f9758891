//! `pam-gateway test USER`: a message through each of USER's routes, the
//! same routes a login uses, and what happened in words.

use std::path::Path;

use super::{CliError, Exit, OWNER, explain, load_config, telegram_config};
use crate::gateway::DeliveryError;
use crate::gateway::telegram::TelegramClient;
use crate::pam_module::hostname;
use crate::setup;
use crate::users::mask;

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
    let routes = setup::routes_for(&config, user, entry)?;
    let text = format!(
        "pam_gateway test message for {user}@{}: your login codes will arrive in this chat. \
         Nothing to do.",
        hostname()
    );
    let mut first_error = None;
    for route in &routes {
        let result = if route.gateway.id() == "telegram" {
            // The client under the gateway, for answers precise enough to
            // say what to do ("press Start in @bot").
            let tg = telegram_config(&config)?;
            let client = TelegramClient::new(tg).map_err(|e| explain::gateway(&e))?;
            match client.get_me() {
                Err(e) => Err(explain::gateway(&e)),
                Ok(bot) => client
                    .send_message(&route.recipient, &text)
                    .map(|()| format!(" (@{})", bot.username))
                    .map_err(|e| explain::delivery(&e, user, Some(&bot.username))),
            }
        } else {
            route
                .gateway
                .send(&route.recipient, &text)
                .map(|()| String::new())
                .map_err(|e| {
                    let exit = match e {
                        DeliveryError::Rejected { .. } => Exit::Failed,
                        _ => Exit::Gateway,
                    };
                    CliError::new(exit, e.to_string())
                })
        };
        match result {
            Ok(via) => println!(
                "Delivered: a test message went via {}{via} to {user}'s {}. Ask {user} \
                 whether it arrived.",
                route.gateway.display_name(),
                recipient_name(route.gateway.id(), &route.recipient)
            ),
            Err(e) => {
                println!(
                    "Not delivered via {} to {user}'s {}.",
                    route.gateway.display_name(),
                    recipient_name(route.gateway.id(), &route.recipient)
                );
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn recipient_name(gateway: &str, recipient: &str) -> String {
    match gateway {
        "telegram" => format!("chat {}", mask(recipient)),
        _ => mask(recipient),
    }
}
