//! Placeholder generation: random per sandbox and service, recognisable, never reused.

use crate::error::CredentialsError;

/// Every placeholder of a secret value starts with this.
pub const PREFIX: &str = "sbx-ph-";
/// Placeholder AWS access key ids start with this (AKIA-shaped, 20 characters in all).
pub const AWS_KEY_ID_PREFIX: &str = "AKIASBXPH";

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn random_base32(len: usize) -> Result<String, CredentialsError> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| CredentialsError::Random(e.to_string()))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(BASE32[usize::from(b & 31)]))
        .collect())
}

/// `sbx-ph-<service>-<32 random base32 chars>` (160 bits of randomness).
pub fn generate(service: &str) -> Result<String, CredentialsError> {
    Ok(format!("{PREFIX}{service}-{}", random_base32(32)?))
}

/// `AKIASBXPH` + 11 random characters of the access key alphabet: looks like a long-term key
/// id to SDKs that check the shape.
pub fn generate_aws_key_id() -> Result<String, CredentialsError> {
    Ok(format!(
        "{AWS_KEY_ID_PREFIX}{}",
        random_base32(11)?.to_ascii_uppercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_uniqueness() {
        let a = generate("anthropic").unwrap();
        let b = generate("anthropic").unwrap();
        assert!(a.starts_with("sbx-ph-anthropic-") && a.len() == "sbx-ph-anthropic-".len() + 32);
        assert_ne!(a, b);
        let k = generate_aws_key_id().unwrap();
        assert_eq!(k.len(), 20);
        assert!(
            k.starts_with("AKIA")
                && k.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
    }
}
