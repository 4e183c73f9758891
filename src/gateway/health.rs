//! Is a configured gateway usable? The outcome of the harmless check each
//! service offers ([`super::GatewayAdmin::health`]), as `pam-gateway
//! status` and `configure` report it.

use super::delivery::DeliveryError;

/// Why a gateway cannot deliver, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong (`the bot token is refused (401/404)`).
    pub what: String,
    /// What to do (`Copy the current token from @BotFather ...`).
    pub fix: String,
}

/// The outcome of a gateway's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The service answered and accepts our settings: what it said.
    Ok(String),
    /// Settings valid; the service has nothing harmless to ask.
    Unchecked(String),
    /// The service cannot be reached now (with `failmode = "safe"` logins
    /// may skip the code while this lasts).
    Unreachable(Problem),
    /// The service refuses our settings, or they cannot work: every code
    /// through this gateway fails.
    Refused(Problem),
}

impl Health {
    pub fn is_usable(&self) -> bool {
        matches!(self, Health::Ok(_) | Health::Unchecked(_))
    }

    /// A delivery error as health; `at` (a URL, a provider) says where an
    /// unreachable service was looked for.
    pub fn from_delivery(
        e: DeliveryError,
        at: &str,
        unreachable_fix: &str,
        refused_fix: &str,
    ) -> Health {
        match e {
            DeliveryError::Unreachable(what)
            | DeliveryError::Refused(what)
            | DeliveryError::ServiceFailed(what)
            | DeliveryError::Local(what) => Health::Unreachable(Problem {
                what: format!("{at}: {what}"),
                fix: unreachable_fix.to_string(),
            }),
            DeliveryError::Rejected { reason, .. } => Health::Refused(Problem {
                what: reason,
                fix: refused_fix.to_string(),
            }),
            DeliveryError::Misconfigured(what) => Health::Refused(Problem {
                what,
                fix: refused_fix.to_string(),
            }),
        }
    }
}
