//! Secret values and the keys they are stored under.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::KeyError;

/// A secret value (an API key, a token, AWS credentials).
///
/// The bytes are zeroized when the value is dropped, and neither `Debug` nor `Display` ever
/// prints them: both print `[redacted]`. Call [`SecretValue::expose`] at the one place that
/// needs the real value (writing it into an outgoing request or an encrypted store).
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Wraps a value. The `String` is moved in, so no unzeroized copy stays behind.
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }

    /// The real value. Do not log it, print it or put it in an error.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl Clone for SecretValue {
    fn clone(&self) -> Self {
        Self::from(self.expose())
    }
}

impl PartialEq for SecretValue {
    /// Compares in time independent of where the values first differ.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretValue {}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every sandbox created after the secret was set.
    Global,
    /// One sandbox (by name); overrides a global secret of the same service, and applies at once.
    Sandbox(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Sandbox(name) => write!(f, "sandbox:{name}"),
        }
    }
}

impl Scope {
    /// Parses `global` or `sandbox:NAME` (the form [`Display`](fmt::Display) prints).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text == "global" {
            return Ok(Scope::Global);
        }
        match text.strip_prefix("sandbox:") {
            Some(name) => {
                validate_name("sandbox name", name)?;
                Ok(Scope::Sandbox(name.to_owned()))
            }
            None => Err(KeyError::BadScope {
                value: text.to_owned(),
            }),
        }
    }
}

/// The key a secret is stored under: its scope and its service (a catalog provider name such
/// as `anthropic`, or the name of a custom secret).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKey {
    /// Global or one sandbox.
    pub scope: Scope,
    /// Provider or custom-secret name: `[a-z0-9][a-z0-9._-]*`, at most 64 characters.
    pub service: String,
}

impl SecretKey {
    /// A global key, validated.
    pub fn global(service: &str) -> Result<Self, KeyError> {
        Self::new(Scope::Global, service)
    }

    /// A sandbox-scoped key, validated.
    pub fn sandbox(sandbox: &str, service: &str) -> Result<Self, KeyError> {
        validate_name("sandbox name", sandbox)?;
        Self::new(Scope::Sandbox(sandbox.to_owned()), service)
    }

    /// A key, validated.
    pub fn new(scope: Scope, service: &str) -> Result<Self, KeyError> {
        if let Scope::Sandbox(name) = &scope {
            validate_name("sandbox name", name)?;
        }
        validate_service(service)?;
        Ok(Self {
            scope,
            service: service.to_owned(),
        })
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scope, self.service)
    }
}

/// Service names end up in placeholders, env var lookups and keychain entry names, so they are
/// kept to a small, unambiguous alphabet.
pub(crate) fn validate_service(service: &str) -> Result<(), KeyError> {
    let ok = !service.is_empty()
        && service.len() <= 64
        && service.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadService {
            value: service.to_owned(),
        })
    }
}

fn validate_name(what: &'static str, name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadName {
            what,
            value: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let v = SecretValue::from("sk-live-very-secret");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(v.expose(), "sk-live-very-secret");
    }

    #[test]
    fn scope_round_trips_through_text() {
        for s in [Scope::Global, Scope::Sandbox("dev-1".into())] {
            assert_eq!(Scope::parse(&s.to_string()).unwrap(), s);
        }
        assert!(Scope::parse("sandbox:").is_err());
        assert!(Scope::parse("sandbox:a b").is_err());
        assert!(Scope::parse("local").is_err());
    }

    #[test]
    fn service_names_are_restricted() {
        assert!(SecretKey::global("anthropic").is_ok());
        assert!(SecretKey::global("my-api.v2_x").is_ok());
        for bad in ["", "Anthropic", "a b", "a/b", "-x", "é", &"x".repeat(65)] {
            let err = SecretKey::global(bad).unwrap_err();
            assert!(err.to_string().contains("service"), "{err}");
        }
    }
}
