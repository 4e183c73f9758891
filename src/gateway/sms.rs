//! SMS through a provider's HTTP API. One `[sms]` section names the
//! provider and its keys; each provider's request and answer live in its
//! own file:
//!
//! - [`playsms`]: a playSMS server's webservices (`op=pv`);
//! - [`websms`]: websms.com / LINK Mobility REST (`/rest/smsmessaging/text`);
//! - [`twilio`]: Twilio's `Messages.json`.

mod error;
pub mod playsms;
pub mod twilio;
pub mod websms;

pub use error::SmsError;
pub use playsms::PlaySmsConfig;
pub use twilio::{TwilioConfig, TwilioSender};
pub use websms::{WebSmsAuth, WebSmsConfig};

use super::delivery::{DeliveryError, Gateway};
use super::health::Health;
use super::spec::{
    GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec, SectionCheck, read_section_as,
    section_as,
};
use crate::http::{self, HttpSettings, LazyClient};
use crate::recipient::{PhoneNumber, check_phone, read_phone};
use crate::secret::Secret;
use crate::section::{SectionError, check_range, check_service_url};
use crate::secure_file::Owner;
use crate::toml_errors::{ParseError, TomlItem, toml_struct};

/// SMS in the list of gateways: `[sms]`; its recipients are phone numbers.
pub struct SmsSpec;

impl GatewaySpec for SmsSpec {
    fn id(&self) -> &'static str {
        "sms"
    }

    fn display_name(&self) -> &'static str {
        "SMS"
    }

    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError> {
        read_section_as(section, RawSms::read, parse_section)
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        check_phone(recipient)
    }

    fn read_recipient(&self, value: TomlItem<'_>) -> Result<Result<String, String>, ParseError> {
        read_phone(value)
    }
}

impl GatewayAdmin for SmsSpec {
    fn recipient_noun(&self) -> &'static str {
        "number"
    }

    /// playSMS's credit query, Twilio's account lookup; websms has none.
    fn health(&self, section: &dyn GatewaySection, _owner: Owner) -> Option<Health> {
        let cfg = section_as::<SmsConfig>(section)?;
        let provider = cfg.provider.name();
        Some(match SmsGateway::new(cfg).check() {
            Ok(Some(found)) => Health::Ok(found),
            Ok(None) => Health::Unchecked(format!(
                "{provider} settings valid; {provider} offers no check that sends \
                 nothing (`pam-gateway test USER` sends a real SMS)"
            )),
            Err(e) => Health::from_delivery(
                DeliveryError::from(e),
                provider,
                &format!(
                    "Check that {provider} can be reached from this host ([sms] url, \
                     proxy, firewall)"
                ),
                "Fix with `pam-gateway configure sms`",
            ),
        })
    }
}

pub const DEFAULT_WEBSMS_URL: &str = "https://api.websms.com";
pub const DEFAULT_TWILIO_URL: &str = "https://api.twilio.com";

toml_struct! {
    #[derive(Debug)]
    pub struct RawSms {
        provider: String,
        url: Option<String>,
        username: Option<String>,
        password: Option<String>,
        token: Option<String>,
        account_sid: Option<String>,
        auth_token: Option<String>,
        from: Option<String>,
        max_parts: Option<u32>,
        timeout: Option<u64>,
        connect_timeout: Option<u64>,
        proxy: Option<String>,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsProvider {
    PlaySms(PlaySmsConfig),
    WebSms(WebSmsConfig),
    Twilio(TwilioConfig),
}

impl SmsProvider {
    /// The provider's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            SmsProvider::PlaySms(_) => "playSMS",
            SmsProvider::WebSms(_) => "websms",
            SmsProvider::Twilio(_) => "Twilio",
        }
    }
}

/// `[sms]` of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsConfig {
    pub provider: SmsProvider,
    pub http: HttpSettings,
}

const PROVIDERS: &[(&str, &[&str])] = &[
    ("playsms", &["url", "username", "token", "from"]),
    (
        "websms",
        &["url", "username", "password", "token", "max_parts"],
    ),
    ("twilio", &["url", "account_sid", "auth_token", "from"]),
];

fn is_hex_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn required<'a>(
    value: &'a Option<String>,
    key: &str,
    e: SectionError,
) -> Result<&'a str, ParseError> {
    match value.as_deref() {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(e(key, "must not be empty".to_string())),
        None => Err(e(key, "is required for this provider".to_string())),
    }
}

impl GatewayConnect for SmsSpec {
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>> {
        section_as::<SmsConfig>(section).map(|c| Box::new(SmsGateway::new(c)) as Box<dyn Gateway>)
    }
}

impl GatewaySection for SmsConfig {}

/// Validates `[sms]`: a known provider, only its keys, each checked.
pub(crate) fn parse_section(raw: RawSms, e: SectionError) -> Result<SmsConfig, ParseError> {
    let Some((provider, allowed)) = PROVIDERS.iter().find(|(p, _)| *p == raw.provider) else {
        return Err(e(
            "provider",
            format!(
                "unknown provider {:?}; known: playsms, websms, twilio",
                raw.provider.chars().take(40).collect::<String>()
            ),
        ));
    };
    let present = [
        ("url", raw.url.is_some()),
        ("username", raw.username.is_some()),
        ("password", raw.password.is_some()),
        ("token", raw.token.is_some()),
        ("account_sid", raw.account_sid.is_some()),
        ("auth_token", raw.auth_token.is_some()),
        ("from", raw.from.is_some()),
        ("max_parts", raw.max_parts.is_some()),
    ];
    for (key, is_set) in present {
        if is_set && !allowed.contains(&key) {
            let owners: Vec<&str> = PROVIDERS
                .iter()
                .filter(|(_, keys)| keys.contains(&key))
                .map(|(p, _)| *p)
                .collect();
            return Err(e(
                key,
                format!(
                    "is not a key of provider {provider:?} (it belongs to {}); keys of \
                     {provider:?}: {}",
                    owners.join(", "),
                    allowed.join(", ")
                ),
            ));
        }
    }
    let url = |default: Option<&str>| -> Result<String, ParseError> {
        match (raw.url.as_deref(), default) {
            (Some(u), _) | (None, Some(u)) => check_service_url(u).map_err(|m| e("url", m)),
            (None, None) => Err(e(
                "url",
                "is required for playsms: the webservices address, e.g. \
                 \"https://sms.example.org/index.php\""
                    .to_string(),
            )),
        }
    };
    let provider = match *provider {
        "playsms" => {
            let username = required(&raw.username, "username", e)?.to_string();
            let token = required(&raw.token, "token", e)?;
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(e(
                    "token",
                    "must not contain spaces (value not shown)".to_string(),
                ));
            }
            if let Some(from) = &raw.from
                && (from.is_empty() || from.len() > 20 || from.chars().any(char::is_control))
            {
                return Err(e(
                    "from",
                    "must be a sender id of 1 to 20 characters".to_string(),
                ));
            }
            SmsProvider::PlaySms(PlaySmsConfig {
                url: url(None)?,
                username,
                token: Secret::new(token.to_string()),
                from: raw.from.clone(),
            })
        }
        "websms" => {
            let auth = match (&raw.username, &raw.password, &raw.token) {
                (Some(_), Some(_), None) => WebSmsAuth::Basic {
                    username: required(&raw.username, "username", e)?.to_string(),
                    password: Secret::new(required(&raw.password, "password", e)?.to_string()),
                },
                (None, None, Some(_)) => {
                    WebSmsAuth::Bearer(Secret::new(required(&raw.token, "token", e)?.to_string()))
                }
                (_, _, Some(_)) => {
                    return Err(e(
                        "token",
                        "use either token or username and password, not both".to_string(),
                    ));
                }
                (Some(_), None, None) => {
                    return Err(e("username", "is set but password is not".to_string()));
                }
                (None, Some(_), None) => {
                    return Err(e("password", "is set but username is not".to_string()));
                }
                (None, None, None) => {
                    return Err(e(
                        "provider",
                        "websms needs token = \"…\" or username and password".to_string(),
                    ));
                }
            };
            if let WebSmsAuth::Basic { username, .. } = &auth
                && username.contains(':')
            {
                return Err(e("username", "must not contain `:`".to_string()));
            }
            let max_parts = check_range(raw.max_parts.unwrap_or(3), 1, 10, &|m| e("max_parts", m))?;
            SmsProvider::WebSms(WebSmsConfig {
                url: url(Some(DEFAULT_WEBSMS_URL))?,
                auth,
                max_parts,
            })
        }
        _ => {
            let account_sid = required(&raw.account_sid, "account_sid", e)?;
            if !is_hex_sid(account_sid, "AC") {
                return Err(e(
                    "account_sid",
                    "is not a Twilio Account SID (\"AC\" and 32 hex digits)".to_string(),
                ));
            }
            let auth_token = required(&raw.auth_token, "auth_token", e)?;
            let from = required(&raw.from, "from", e)?;
            let sender = if is_hex_sid(from, "MG") {
                TwilioSender::MessagingService(from.to_string())
            } else if PhoneNumber::parse(from).is_ok()
                || (from.len() <= 11
                    && from.bytes().any(|b| b.is_ascii_alphabetic())
                    && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' '))
            {
                TwilioSender::From(from.to_string())
            } else {
                return Err(e(
                    "from",
                    "must be a Twilio number in E.164 form (\"+15005550006\"), an alphanumeric \
                     sender id (up to 11 letters and digits) or a Messaging Service SID (\"MG…\")"
                        .to_string(),
                ));
            };
            SmsProvider::Twilio(TwilioConfig {
                url: url(Some(DEFAULT_TWILIO_URL))?,
                account_sid: account_sid.to_string(),
                auth_token: Secret::new(auth_token.to_string()),
                sender,
            })
        }
    };
    let http =
        HttpSettings::from_keys(raw.timeout, raw.connect_timeout, raw.proxy.as_ref(), 10, e)?;
    Ok(SmsConfig { provider, http })
}

/// SMS as a [`Gateway`]: the recipient is an E.164 phone number.
pub struct SmsGateway {
    cfg: SmsConfig,
    client: LazyClient,
}

impl SmsGateway {
    pub fn new(cfg: &SmsConfig) -> SmsGateway {
        SmsGateway {
            cfg: cfg.clone(),
            client: LazyClient::new(),
        }
    }

    /// Every secret of the configured provider.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match &self.cfg.provider {
            SmsProvider::PlaySms(c) => vec![c.token.expose()],
            SmsProvider::WebSms(c) => match &c.auth {
                WebSmsAuth::Basic { password, .. } => vec![password.expose()],
                WebSmsAuth::Bearer(t) => vec![t.expose()],
            },
            SmsProvider::Twilio(c) => vec![c.auth_token.expose()],
        }
    }

    fn client(&self) -> Result<&http::Client, SmsError> {
        self.client
            .get_or_build(|| http::client(&self.cfg.http))
            .map_err(SmsError::Transport)
    }

    /// Proves the credentials with a harmless read-only request where the
    /// provider has one — playSMS's credit query (`op=cr`), Twilio's
    /// account lookup — and says what it found. websms has none that sends
    /// nothing: `Ok(None)`.
    pub fn check(&self) -> Result<Option<String>, SmsError> {
        let secrets = self.secrets();
        match &self.cfg.provider {
            SmsProvider::PlaySms(c) => playsms::credit(self.client()?, c, &secrets).map(Some),
            SmsProvider::Twilio(c) => twilio::account(self.client()?, c, &secrets).map(Some),
            SmsProvider::WebSms(_) => Ok(None),
        }
    }

    /// Sends `text` to `recipient` with the configured provider.
    pub fn send_sms(&self, recipient: &str, text: &str) -> Result<(), SmsError> {
        let phone = PhoneNumber::parse(recipient).map_err(SmsError::BadRecipient)?;
        let client = self.client()?;
        let secrets = self.secrets();
        match &self.cfg.provider {
            SmsProvider::PlaySms(c) => playsms::send(client, c, &phone, text, &secrets),
            SmsProvider::WebSms(c) => websms::send(client, c, &phone, text, &secrets),
            SmsProvider::Twilio(c) => twilio::send(client, c, &phone, text, &secrets),
        }
    }
}

impl Gateway for SmsGateway {
    fn id(&self) -> &'static str {
        SmsSpec.id()
    }

    fn display_name(&self) -> &str {
        SmsSpec.display_name()
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        self.send_sms(recipient, text).map_err(|e| {
            http::without_message(
                DeliveryError::from(e).prefixed(self.cfg.provider.name()),
                text,
            )
        })
    }
}
