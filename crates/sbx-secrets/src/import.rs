//! Importing secrets from the host environment.

use crate::catalog::Catalog;
use crate::placeholder;
use crate::value::SecretValue;

/// A secret found in the environment.
#[derive(Debug)]
pub struct Imported {
    /// The provider it belongs to.
    pub service: String,
    /// The env var(s) it was read from.
    pub from: Vec<String>,
    /// The value.
    pub value: SecretValue,
}

/// Finds a value for each catalog provider among `vars` (e.g. `std::env::vars()`): the first
/// of its env vars that is set and non-empty. AWS needs both `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (and takes `AWS_SESSION_TOKEN` when set). Values that are sbx
/// placeholders are skipped, so importing inside a sandbox never stores a placeholder.
pub fn from_env(
    catalog: &Catalog,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<Imported> {
    let vars: std::collections::BTreeMap<String, SecretValue> = vars
        .into_iter()
        .filter(|(_, v)| !v.is_empty() && !is_placeholder(v))
        .map(|(k, v)| (k, SecretValue::new(v)))
        .collect();
    let mut found = Vec::new();
    for provider in catalog.providers() {
        if provider.is_sigv4() {
            found.extend(aws_from(&provider.name, &vars));
            continue;
        }
        let first = provider
            .env
            .iter()
            .find_map(|var| vars.get(var).map(|value| (var, value)));
        if let Some((var, value)) = first {
            found.push(Imported {
                service: provider.name.clone(),
                from: vec![var.clone()],
                value: value.clone(),
            });
        }
    }
    found
}

fn aws_from(
    service: &str,
    vars: &std::collections::BTreeMap<String, SecretValue>,
) -> Option<Imported> {
    let id = vars.get("AWS_ACCESS_KEY_ID")?;
    let secret = vars.get("AWS_SECRET_ACCESS_KEY")?;
    let mut from = vec![
        "AWS_ACCESS_KEY_ID".to_owned(),
        "AWS_SECRET_ACCESS_KEY".to_owned(),
    ];
    let mut combined = format!("{}:{}", id.expose(), secret.expose());
    if let Some(token) = vars.get("AWS_SESSION_TOKEN") {
        combined.push(':');
        combined.push_str(token.expose());
        from.push("AWS_SESSION_TOKEN".into());
    }
    Some(Imported {
        service: service.to_owned(),
        from,
        value: SecretValue::new(combined),
    })
}

fn is_placeholder(value: &str) -> bool {
    value.starts_with(placeholder::PREFIX) || value.starts_with(placeholder::AWS_KEY_ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_up_known_vars_and_skips_placeholders() {
        let env = [
            ("ANTHROPIC_API_KEY", "sk-ant-1"),
            ("GITHUB_TOKEN", "ghp_2"),
            ("OPENAI_API_KEY", "sbx-ph-openai-abc"),
            ("GROQ_API_KEY", ""),
            ("AWS_ACCESS_KEY_ID", "AKIDX"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let found = from_env(&Catalog::builtin(), env);
        let by: std::collections::BTreeMap<_, _> = found
            .iter()
            .map(|i| (i.service.as_str(), i.value.expose()))
            .collect();
        assert_eq!(by.get("anthropic"), Some(&"sk-ant-1"));
        assert_eq!(by.get("github"), Some(&"ghp_2"));
        assert_eq!(by.get("aws"), Some(&"AKIDX:s3cr3t:tok"));
        assert!(!by.contains_key("openai") && !by.contains_key("groq"));
        assert_eq!(found.len(), 3);
    }
}
