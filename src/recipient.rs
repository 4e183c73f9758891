//! Recipient formats several gateways share: phone numbers in E.164 form
//! (Signal, SMS) and free-form addresses (webhook, command).

/// A phone number in E.164 form: `+`, the country code, the subscriber
/// number; 8 to 15 digits in all, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<PhoneNumber, String> {
        let digits = s.strip_prefix('+').unwrap_or("");
        if digits.len() < 8
            || digits.len() > 15
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(
                "is not a phone number in international (E.164) form: a string with `+`, \
                 the country code and the number, no spaces or leading 0 (e.g. \"+4915112345678\")"
                    .to_string(),
            );
        }
        Ok(PhoneNumber(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+` (websms wants the number as an integer).
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

/// A free-form recipient (webhook, command): 1 to 256 characters, no
/// control characters, and not starting with `-` (a command would read it
/// as an option).
pub fn check_address(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 256 {
        return Err("must be 1 to 256 bytes long".to_string());
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".to_string());
    }
    if s.starts_with('-') {
        return Err("must not start with `-` (a command would take it for an option)".to_string());
    }
    Ok(())
}

/// Reads a phone number that must be a TOML string (an integer would have
/// lost its `+`).
pub fn phone_from(value: toml::Value) -> Result<PhoneNumber, String> {
    match value {
        toml::Value::String(s) => PhoneNumber::parse(&s),
        toml::Value::Integer(i) => Err(format!(
            "must be a string with the leading `+`: write \"+{i}\""
        )),
        _ => Err("must be a phone number as a string, e.g. \"+4915112345678\"".to_string()),
    }
}

/// [`crate::gateway::GatewaySpec::check_recipient`] for the gateways whose
/// recipients are phone numbers (Signal, SMS).
pub fn check_phone(recipient: &str) -> Result<(), String> {
    PhoneNumber::parse(recipient).map(|_| ())
}

/// [`crate::gateway::GatewaySpec::read_recipient`] for the gateways whose
/// recipients are phone numbers: a TOML string (an integer would have lost
/// its `+`).
pub fn read_phone(
    value: crate::toml_errors::TomlItem<'_>,
) -> Result<Result<String, String>, crate::toml_errors::ParseError> {
    let value: toml::Value = value.deserialize()?;
    Ok(phone_from(value).map(|n| n.as_str().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        let n = PhoneNumber::parse("+4915112345679").expect("number");
        assert_eq!(n.digits(), "4915112345679");
        for bad in ["4915112345679", "+49 151", "+0151123456", "+1234567"] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
        assert!(phone_from(toml::Value::Integer(4915112345679)).is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address("!room:example.org").is_ok());
        for bad in ["", "-rf", "a\nb"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
