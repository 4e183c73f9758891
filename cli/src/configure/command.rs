//! `pam-gateway configure command`: `[command]` from options. No secrets;
//! the program is checked exactly as a login checks it.

use std::path::Path;

use toml_edit::{Array, Value};

use super::{Plan, number, text, write_section};
use crate::{CliError, ConfigureCommandArgs};
use pam_gateway_core::gateway::GatewayKind;

pub fn run(path: &Path, args: &ConfigureCommandArgs) -> Result<(), CliError> {
    let mut values = vec![];
    if let Some(name) = &args.name {
        values.push(("name", text(name)));
    }
    values.push(("path", text(&args.path)));
    if !args.args.is_empty() {
        let list: Array = args.args.iter().map(String::as_str).collect();
        values.push(("args", Value::Array(list)));
    }
    let mut sources = vec![
        ("name", "--name".to_string()),
        ("path", "--path".to_string()),
        ("args", "--arg".to_string()),
    ];
    if let Some(t) = args.timeout {
        values.push(("timeout", number(t)));
        sources.push(("timeout", "--timeout".to_string()));
    }
    write_section(
        path,
        Plan {
            kind: GatewayKind::Command,
            managed: &["name", "path", "args"],
            values,
            asks: Vec::new(),
            place: Box::new(|_| Vec::new()),
            sources,
            next: "pam-gateway enroll USER --command RECIPIENT ($PAM_GATEWAY_RECIPIENT of the program: \
                   a phone number, a mail address)"
                .to_string(),
        },
    )
}
