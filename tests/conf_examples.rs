//! The example files in conf/ are what the README documents: they must parse.

use std::path::Path;

use pam_gateway::config::{Config, FailMode, Unenrolled};
use pam_gateway::users::Users;

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
    assert!(c.telegram.is_some());
    assert_eq!(c.state_dir, std::path::Path::new("/var/lib/pam_gateway"));
    assert_eq!(c.limits, pam_gateway::limits::Limits::default());
    assert_eq!(c.access, pam_gateway::policy::AccessPolicy::default());
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
