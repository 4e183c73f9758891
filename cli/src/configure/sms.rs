//! `pam-gateway configure sms`: `[sms]` for one provider; its token,
//! password or auth token read as a secret.

use std::path::Path;

use super::{Ask, Plan, number, text, write_section};
use crate::{CliError, ConfigureSmsArgs, Exit, SmsProviderArg};
use pam_gateway_core::gateway::GatewayKind;

pub fn run(path: &Path, args: &ConfigureSmsArgs) -> Result<(), CliError> {
    let provider = match args.provider {
        SmsProviderArg::Playsms => "playsms",
        SmsProviderArg::Websms => "websms",
        SmsProviderArg::Twilio => "twilio",
    };
    // Options another provider takes, before any secret is asked for.
    let given = [
        (
            "--username",
            args.username.is_some(),
            &["playsms", "websms"][..],
        ),
        ("--from", args.from.is_some(), &["playsms", "twilio"][..]),
        ("--account-sid", args.account_sid.is_some(), &["twilio"][..]),
        ("--max-parts", args.max_parts.is_some(), &["websms"][..]),
    ];
    for (option, is_set, providers) in given {
        if is_set && !providers.contains(&provider) {
            return Err(CliError::new(
                Exit::Usage,
                format!(
                    "{option} is not a setting of --provider {provider} (only of {})",
                    providers.join(", ")
                ),
            ));
        }
    }
    let required: &[(&str, bool)] = match args.provider {
        SmsProviderArg::Playsms => &[
            (
                "--url (the webservices address, e.g. https://sms.example.org/index.php)",
                args.url.is_some(),
            ),
            ("--username (the playSMS user)", args.username.is_some()),
        ],
        SmsProviderArg::Websms => &[],
        SmsProviderArg::Twilio => &[
            (
                "--account-sid (AC and 32 hex digits)",
                args.account_sid.is_some(),
            ),
            (
                "--from (your Twilio number, a sender id or an MG... SID)",
                args.from.is_some(),
            ),
        ],
    };
    if let Some((option, _)) = required.iter().find(|(_, set)| !set) {
        return Err(CliError::new(
            Exit::Usage,
            format!("--provider {provider} needs {option}"),
        ));
    }

    let mut values = vec![("provider", text(provider))];
    let mut sources = vec![
        ("provider", "--provider".to_string()),
        ("url", "--url".to_string()),
        ("username", "--username".to_string()),
        ("from", "--from".to_string()),
        ("account_sid", "--account-sid".to_string()),
        ("max_parts", "--max-parts".to_string()),
    ];
    for (key, value) in [
        ("url", &args.url),
        ("username", &args.username),
        ("account_sid", &args.account_sid),
        ("from", &args.from),
    ] {
        if let Some(v) = value {
            values.push((key, text(v)));
        }
    }
    if let Some(n) = args.max_parts {
        values.push(("max_parts", number(u64::from(n))));
    }
    if let Some(t) = args.timeout {
        values.push(("timeout", number(t)));
        sources.push(("timeout", "--timeout".to_string()));
    }
    let (secret_key, what): (&'static str, String) = match args.provider {
        SmsProviderArg::Playsms => (
            "token",
            format!(
                "playSMS webservices token of {}",
                args.username.as_deref().unwrap_or("the user")
            ),
        ),
        SmsProviderArg::Websms => match &args.username {
            Some(user) => ("password", format!("websms password of {user}")),
            None => ("token", "websms API token".to_string()),
        },
        SmsProviderArg::Twilio => ("auth_token", "Twilio auth token".to_string()),
    };
    sources.push((secret_key, format!("the {}", what)));
    write_section(
        path,
        Plan {
            kind: GatewayKind::Sms,
            managed: &[
                "provider",
                "url",
                "username",
                "password",
                "token",
                "account_sid",
                "auth_token",
                "from",
                "max_parts",
            ],
            values,
            asks: vec![Ask {
                what,
                stand_in: "stand-in-secret",
                optional: false,
            }],
            place: Box::new(move |answers| match answers.first() {
                Some(Some(secret)) => vec![(secret_key, text(secret))],
                _ => Vec::new(),
            }),
            sources,
            next: "pam-gateway enroll USER --sms +4915112345678 (the user's phone number)"
                .to_string(),
        },
    )
}
