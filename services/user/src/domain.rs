//! Validated input values: each is parsed once at the edge, so the rest of the service only ever
//! sees well-formed data.

use std::fmt;

use shop_platform::grpc::error::ServiceError;

/// The longest email address (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest and longest passwords, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;
/// The largest quantity of one wishlist item or cart line.
pub const MAX_QUANTITY: u32 = 1_000;

/// An email address, trimmed and in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address: at most 254 characters, one `@`, a local part and a domain that an
    /// SMTP server accepts (checked with lettre's parser, which builds the mail later).
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let email = raw.trim().to_lowercase();
        let invalid = |why: &str| ServiceError::invalid(format!("email: {why}"));
        if email.is_empty() {
            return Err(invalid("required"));
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err(invalid("longer than 254 characters"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("not a valid address"));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(invalid("not a valid address"));
        };
        // A dotless domain is only deliverable inside one network: refuse it for real users.
        if local.is_empty() || local.len() > 64 || !domain.contains('.') || domain.ends_with('.') {
            return Err(invalid("not a valid address"));
        }
        email
            .parse::<lettre::Address>()
            .map_err(|_| invalid("not a valid address"))?;
        Ok(Self(email))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short fingerprint of the address for cache keys, so the cache never holds addresses.
    pub fn key(&self) -> String {
        crate::secrets::digest_hex(self.0.as_bytes())[..32].to_owned()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that follows the rule: 8 to 128 characters with a letter, a digit and a symbol.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// Checks a new password against the rule (`weak_password` when it breaks it).
    pub fn new(raw: &str) -> Result<Self, ServiceError> {
        Self::check_rule(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// The rule alone, for settings checked at start.
    pub fn check_rule(raw: &str) -> Result<(), ServiceError> {
        let weak = |why: &str| ServiceError::InvalidArgument {
            code: "weak_password",
            message: format!("password: {why}"),
        };
        let length = raw.chars().count();
        if !PASSWORD_CHARS.contains(&length) {
            return Err(weak("must be 8 to 128 characters"));
        }
        let letter = raw.chars().any(char::is_alphabetic);
        let digit = raw.chars().any(|c| c.is_ascii_digit());
        let symbol = raw.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace());
        if !(letter && digit && symbol) {
            return Err(weak("needs at least a letter, a digit and a symbol"));
        }
        Ok(())
    }

    /// The password text, for hashing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password given to be checked (sign-in, confirmations): not held to the rule, since older
/// rules may have allowed it, but bounded so no one makes the server hash megabytes.
pub fn presented_password(raw: &str) -> Result<&str, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid("password: required"));
    }
    if raw.chars().count() > *PASSWORD_CHARS.end() {
        return Err(ServiceError::invalid("password: longer than 128 characters"));
    }
    Ok(raw)
}

/// A profile field (name, phone, address): trimmed, not empty, at most `max` characters.
pub fn profile_field(field: &str, raw: &str, max: usize) -> Result<String, ServiceError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(ServiceError::invalid(format!("{field}: required")));
    }
    if value.chars().count() > max {
        return Err(ServiceError::invalid(format!("{field}: longer than {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::invalid(format!("{field}: contains control characters")));
    }
    Ok(value.to_owned())
}

/// Longest display name.
pub const MAX_NAME: usize = 100;
/// Longest phone number.
pub const MAX_PHONE: usize = 32;
/// Longest shipping address.
pub const MAX_ADDRESS: usize = 500;

/// A wishlist or cart quantity: 1 to [`MAX_QUANTITY`].
pub fn quantity(raw: u32) -> Result<i32, ServiceError> {
    if raw == 0 {
        return Err(ServiceError::invalid("quantity: must be at least 1"));
    }
    if raw > MAX_QUANTITY {
        return Err(ServiceError::invalid(format!("quantity: at most {MAX_QUANTITY}")));
    }
    i32::try_from(raw).map_err(|_| ServiceError::invalid("quantity: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").ok();
        assert_eq!(email.map(|e| e.0), Some("ada.lovelace@example.com".to_owned()));
    }

    #[test]
    fn malformed_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for raw in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@@example.com",
            "a@example.com.",
            "a\n@example.com",
            long.as_str(),
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn the_password_rule_is_enforced() {
        for weak in ["short1!", "onlyletters!!", "12345678!", "letters123", &"a1!".repeat(43)] {
            let error = Password::new(weak).err().map(|e| e.machine_code());
            assert_eq!(error, Some("weak_password"), "{weak:?}");
        }
        for strong in ["abc123!?", "pässwort-1", &format!("a1!{}", "x".repeat(125))] {
            assert!(Password::new(strong).is_ok(), "{strong:?}");
        }
    }

    #[test]
    fn profile_fields_are_bounded() {
        assert_eq!(profile_field("name", "  Ada ", MAX_NAME).ok().as_deref(), Some("Ada"));
        assert!(profile_field("name", "   ", MAX_NAME).is_err());
        assert!(profile_field("name", &"x".repeat(101), MAX_NAME).is_err());
        assert!(profile_field("name", &"é".repeat(100), MAX_NAME).is_ok());
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(quantity(0).is_err());
        assert_eq!(quantity(1).ok(), Some(1));
        assert_eq!(quantity(MAX_QUANTITY).ok(), Some(1_000));
        assert!(quantity(MAX_QUANTITY + 1).is_err());
        assert!(quantity(u32::MAX).is_err());
    }
}
