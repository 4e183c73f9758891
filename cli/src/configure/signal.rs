//! `pam-gateway configure signal`: `[signal]` from options; the proxy
//! password (with `--username`) read as a secret.

use std::path::Path;

use super::{Ask, Plan, number, text, write_section};
use crate::{CliError, ConfigureSignalArgs, Exit, SignalModeArg};
use pam_gateway_core::gateway::GatewayKind;

pub fn run(path: &Path, args: &ConfigureSignalArgs) -> Result<(), CliError> {
    let jsonrpc = args.mode == Some(SignalModeArg::Jsonrpc);
    if args.number.is_none() && !jsonrpc {
        return Err(CliError::new(
            Exit::Usage,
            "--number is required with --mode rest (the default): the registered Signal \
             account that sends the codes, e.g. --number +4915100000001",
        ));
    }
    let mut values = vec![("url", text(&args.url))];
    let mut sources = vec![
        ("url", "--url".to_string()),
        ("number", "--number".to_string()),
        ("mode", "--mode".to_string()),
        ("username", "--username".to_string()),
        ("password", "the password".to_string()),
    ];
    if let Some(n) = &args.number {
        values.push(("number", text(n)));
    }
    if args.mode.is_some() {
        values.push(("mode", text(if jsonrpc { "jsonrpc" } else { "rest" })));
    }
    let mut asks = Vec::new();
    if let Some(user) = &args.username {
        values.push(("username", text(user)));
        asks.push(Ask {
            what: format!("Password of {user} at the proxy in front of the Signal API"),
            stand_in: "stand-in-password",
            optional: false,
        });
    }
    if let Some(t) = args.timeout {
        values.push(("timeout", number(t)));
        sources.push(("timeout", "--timeout".to_string()));
    }
    let has_password = args.username.is_some();
    write_section(
        path,
        Plan {
            kind: GatewayKind::Signal,
            managed: &["url", "number", "mode", "username", "password"],
            values,
            asks,
            place: Box::new(move |answers| match answers.first() {
                Some(Some(password)) if has_password => vec![("password", text(password))],
                _ => Vec::new(),
            }),
            sources,
            next: "pam-gateway enroll USER --signal +4915112345678 (the user's Signal number)"
                .to_string(),
        },
    )
}
