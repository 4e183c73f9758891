//! The example files in conf/ are what the README documents: they must parse.

use std::path::Path;

use pam_gateway_core::config::{Config, FailMode, Unenrolled};
use pam_gateway_core::gateway::GatewayKind;
use pam_gateway_core::network::Direct;
use pam_gateway_core::setup::routes_for;
use pam_gateway_core::users::Users;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn example_gateway_toml_parses_to_the_documented_defaults() {
    let c = Config::parse(
        Path::new("/etc/pam_gateway/gateway.toml"),
        &read("gateway.toml"),
    )
    .expect("conf/gateway.toml");
    assert_eq!(c.code.digits, 6);
    assert_eq!(c.code.attempts, 3);
    assert_eq!(c.code.ttl.as_secs(), 300);
    assert_eq!(c.unenrolled, Unenrolled::Deny);
    assert_eq!(c.failmode, FailMode::Secure);
    assert!(c.has(GatewayKind::Telegram));
    assert_eq!(c.state_dir, std::path::Path::new("/var/lib/pam_gateway"));
    assert_eq!(c.limits, pam_gateway_core::limits::Limits::default());
    assert_eq!(c.access, pam_gateway_core::policy::AccessPolicy::default());
    assert!(c.directory.is_none(), "[directory] is off by default");
}

#[test]
fn example_users_toml_parses() {
    let u = Users::parse(
        Path::new("/etc/pam_gateway/users.toml"),
        &read("users.toml"),
    )
    .expect("conf/users.toml");
    assert!(u.get("alice").is_some());
}

/// Enables every example setting: lines `#key = ...` and `#[section]` lose
/// their `#`; explanations (`# ...`) stay comments.
fn enable_examples(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c == '[' || c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_commented_example_is_valid() {
    let gateway = enable_examples(&read("gateway.toml"));
    let c = Config::parse(Path::new("/etc/pam_gateway/gateway.toml"), &gateway)
        .unwrap_or_else(|e| panic!("conf/gateway.toml with the examples enabled: {e}"));
    assert_eq!(c.gateways, GatewayKind::ALL);
    let directory = c.directory.as_ref().expect("[directory]");
    assert_eq!(directory.attributes.len(), 3);
    assert_eq!(directory.cache_max_age, Some(86_400));
    let users = enable_examples(&read("users.toml"));
    let u = Users::parse(Path::new("/etc/pam_gateway/users.toml"), &users)
        .unwrap_or_else(|e| panic!("conf/users.toml with the examples enabled: {e}"));
    let bob = u.get("bob").expect("bob");
    let routes = routes_for(&Direct, &c, "bob", bob).expect("routes");
    assert_eq!(routes.len(), 5);
}
