//! From gateway.toml and users.toml to the routes a login tries: the order
//! of `gateways`, the names shown in the prompt, and the error for a
//! recipient whose gateway has no section.

use std::path::Path;

use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{Enrolment, prompt_for};
use pam_gateway_core::network::Direct;
use pam_gateway_core::setup::{SetupError, enrolment, routes_for};
use pam_gateway_core::users::Users;

const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";

fn config(head: &str) -> Config {
    let text = format!(
        "{head}\n[telegram]\nbot_token = \"{TOKEN}\"\n\
         [signal]\nurl = \"https://signal.example.org\"\nnumber = \"+4915100000001\"\n\
         [sms]\nprovider = \"websms\"\ntoken = \"t\"\n\
         [webhook]\nname = \"Matrix\"\nurl = \"https://m.example.org/r/{{recipient}}/{{txn}}\"\n\
         method = \"PUT\"\nbody = '{{\"body\":\"{{message}}\"}}'\n\
         [command]\nname = \"GSM modem\"\npath = \"/usr/bin/gammu\"\n"
    );
    Config::parse(Path::new("/t/gateway.toml"), &text).expect("config")
}

fn users(text: &str) -> Users {
    Users::parse(Path::new("/t/users.toml"), text).expect("users")
}

const BOB: &str = "[users.bob]\ncommand = \"+4915112345670\"\nwebhook = \"!room:example.org\"\n\
                   sms = \"+4915112345671\"\nsignal = \"+4915112345672\"\ntelegram = \"123456977\"\n";

#[test]
fn routes_follow_the_default_order() {
    let c = config("");
    let u = users(BOB);
    let routes = routes_for(&Direct, &c, "bob", u.get("bob").expect("bob")).expect("routes");
    let got: Vec<(&str, &str, &str)> = routes
        .iter()
        .map(|r| {
            (
                r.gateway.id(),
                r.gateway.display_name(),
                r.recipient.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("telegram", "Telegram", "123456977"),
            ("signal", "Signal", "+4915112345672"),
            ("sms", "SMS", "+4915112345671"),
            ("webhook", "Matrix", "!room:example.org"),
            ("command", "GSM modem", "+4915112345670"),
        ]
    );
    assert_eq!(
        prompt_for(&routes[3]),
        "Code sent via Matrix to ***org. Verification code: "
    );
}

#[test]
fn routes_follow_the_configured_order_and_skip_what_the_user_lacks() {
    let c = config("gateways = [\"command\", \"sms\", \"webhook\", \"signal\", \"telegram\"]");
    let u = users(&format!(
        "{BOB}[users.carol]\nsignal = \"+4915112345673\"\ncommand = \"carol@example.org\"\n"
    ));
    let ids = |user: &str| -> Vec<&'static str> {
        routes_for(&Direct, &c, user, u.get(user).expect("user"))
            .expect("routes")
            .iter()
            .map(|r| r.gateway.id())
            .collect()
    };
    assert_eq!(
        ids("bob"),
        ["command", "sms", "webhook", "signal", "telegram"]
    );
    assert_eq!(ids("carol"), ["command", "signal"]);
    assert!(matches!(
        enrolment(&Direct, &c, &u, "nobody").expect("enrolment"),
        Enrolment::NotEnrolled
    ));
}

#[test]
fn a_recipient_without_its_section_is_an_error() {
    let c = Config::parse(
        Path::new("/t/gateway.toml"),
        &format!("[telegram]\nbot_token = \"{TOKEN}\"\n"),
    )
    .expect("config");
    let u = users("[users.dave]\ntelegram = \"1\"\nwebhook = \"dave\"\n");
    let err = match enrolment(&Direct, &c, &u, "dave") {
        Err(e) => e,
        Ok(_) => panic!("dave's webhook has no [webhook] section"),
    };
    assert!(matches!(
        err,
        SetupError::GatewayNotConfigured {
            gateway: "webhook",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "user dave has a webhook recipient but gateway.toml has no [webhook] section"
    );
}
