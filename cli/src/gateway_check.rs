//! Is a configured gateway usable? The harmless check each service offers,
//! shared by `configure` (before writing) and `status`: Telegram `getMe`,
//! signal-cli's `/v1/about` or `version`, playSMS's credit query, Twilio's
//! account lookup, the command gateway's program checks. Webhooks and
//! websms have nothing to ask that sends nothing: only their settings are
//! checked (by parsing them). Each gateway's file says how
//! ([`pam_gateway_core::gateway::GatewayAdmin::health`]).

use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::{GatewayKind, Health, Problem};
use pam_gateway_core::secure_file::Owner;

/// How the gateway is called in messages: `signal`, `webhook (ntfy)`.
pub fn label(config: &Config, kind: GatewayKind) -> String {
    let name = config.gateway_section(kind).and_then(|s| s.name());
    match name {
        Some(n) if n != kind.id() => format!("{} ({n})", kind.id()),
        _ => kind.id().to_string(),
    }
}

/// Checks the gateway `kind` as `config` sets it up. Only harmless
/// requests: nothing is sent to anyone.
pub fn check(config: &Config, kind: GatewayKind, owner: Owner) -> Health {
    config
        .gateway_section(kind)
        .and_then(|section| kind.admin().health(section, owner))
        .unwrap_or_else(|| {
            Health::Refused(Problem {
                what: format!("gateway.toml has no [{}] section", kind.id()),
                fix: format!("run `pam-gateway configure {}`", kind.id()),
            })
        })
}
