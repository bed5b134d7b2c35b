//! The provider catalog: which env vars an agent reads, which hosts a secret is bound to, and
//! how it is applied to a request. Data-driven: a built-in TOML file (embedded at build time)
//! plus an optional user file that adds providers or replaces built-in ones by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::CatalogError;
use crate::host::HostPattern;
use crate::value::validate_service;

const BUILTIN: &str = include_str!("../catalog/providers.toml");

/// How a secret goes into a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Apply {
    /// The header `name` carries the secret, after `scheme` and a space if a scheme is given
    /// (`Authorization: Bearer <secret>`).
    Header {
        /// Header name (matched case-insensitively).
        name: String,
        /// Auth scheme (matched case-insensitively), e.g. `Bearer`.
        #[serde(default)]
        scheme: Option<String>,
    },
    /// `Authorization: Basic base64(user:secret)`, as git sends over smart HTTP; a token given
    /// as the user name with an empty password is accepted too.
    BasicAuth,
    /// The query parameter `name` carries the secret (`?key=<secret>`).
    Query {
        /// Parameter name (exact).
        name: String,
    },
    /// AWS Signature Version 4: the proxy re-signs with the real credentials.
    Sigv4,
    /// Custom secrets: the placeholder is replaced wherever it appears in request headers,
    /// and in the body when `body` is true.
    Anywhere {
        /// Also replace in request bodies.
        #[serde(default)]
        body: bool,
    },
}

/// One provider (or custom secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The service name secrets are stored under.
    pub name: String,
    /// Human description.
    pub description: String,
    /// Env vars the agent reads; each gets the placeholder in the sandbox.
    pub env: Vec<String>,
    /// Hosts the secret is bound to.
    pub hosts: Vec<HostPattern>,
    /// Ways the secret is applied, tried in order.
    pub apply: Vec<Apply>,
}

impl Provider {
    /// A custom secret: `env` gets the placeholder, which is replaced wherever it appears in
    /// headers (and the body if `body`) of requests to `hosts` only.
    pub fn custom(name: &str, env: &str, hosts: &[&str], body: bool) -> Result<Self, CatalogError> {
        let raw = RawProvider {
            name: name.to_owned(),
            description: format!("custom secret {name}"),
            env: vec![env.to_owned()],
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            apply: vec![Apply::Anywhere { body }],
        };
        raw.validate("custom")
    }

    /// Whether `host` (normalised) is one this provider's secret is bound to.
    pub fn is_bound_to(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| p.matches(host))
    }

    /// Whether the secret is applied by SigV4 re-signing.
    pub fn is_sigv4(&self) -> bool {
        self.apply.iter().any(|a| matches!(a, Apply::Sigv4))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    provider: Vec<RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    #[serde(default)]
    description: String,
    env: Vec<String>,
    hosts: Vec<String>,
    apply: Vec<Apply>,
}

impl RawProvider {
    fn validate(self, source_name: &str) -> Result<Provider, CatalogError> {
        let invalid = |message: String| CatalogError::Invalid {
            source_name: source_name.to_owned(),
            provider: self.name.clone(),
            message,
        };
        validate_service(&self.name).map_err(|e| invalid(e.to_string()))?;
        if self.env.is_empty() {
            return Err(invalid(
                "`env` is empty: name the env var(s) the agent reads".into(),
            ));
        }
        if let Some(bad) = self.env.iter().find(|v| !is_env_name(v)) {
            return Err(invalid(format!(
                "env var {bad:?} is not a valid name ([A-Z_][A-Z0-9_]*)"
            )));
        }
        if self.hosts.is_empty() {
            return Err(invalid(
                "`hosts` is empty: a secret must be bound to at least one host".into(),
            ));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(&invalid))
            .collect::<Result<Vec<_>, _>>()?;
        if self.apply.is_empty() {
            return Err(invalid(
                "`apply` is empty: say how the secret is applied".into(),
            ));
        }
        for apply in &self.apply {
            validate_apply(apply).map_err(&invalid)?;
        }
        if self.apply.iter().any(|a| matches!(a, Apply::Sigv4)) && self.apply.len() > 1 {
            return Err(invalid(
                "`sigv4` cannot be combined with other apply kinds".into(),
            ));
        }
        Ok(Provider {
            name: self.name.clone(),
            description: self.description.clone(),
            env: self.env.clone(),
            hosts,
            apply: self.apply.clone(),
        })
    }
}

fn validate_apply(apply: &Apply) -> Result<(), String> {
    match apply {
        Apply::Header { name, scheme } => {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
            if let Some(s) = scheme
                && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            {
                return Err(format!("scheme {s:?} must be a single word like `Bearer`"));
            }
            Ok(())
        }
        Apply::Query { name } if name.is_empty() || name.contains(['&', '=', '#', ' ']) => {
            Err(format!("query parameter name {name:?} is not usable"))
        }
        _ => Ok(()),
    }
}

fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The set of known providers, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        // The built-in file is tested to parse; an empty catalog is the safe fallback.
        Self::from_toml("built-in", BUILTIN).unwrap_or_else(|_| Self::empty())
    }

    /// A catalog with no providers.
    pub fn empty() -> Self {
        Self {
            providers: BTreeMap::new(),
        }
    }

    /// Parses a catalog in the built-in file's format; `source_name` appears in errors.
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            source_name: source_name.to_owned(),
            message: e.to_string(),
        })?;
        let mut catalog = Self::empty();
        for provider in raw.provider {
            let name = provider.name.clone();
            let provider = provider.validate(source_name)?;
            if catalog.providers.insert(name.clone(), provider).is_some() {
                return Err(CatalogError::Invalid {
                    source_name: source_name.to_owned(),
                    provider: name,
                    message: "defined twice".into(),
                });
            }
        }
        Ok(catalog)
    }

    /// The built-in catalog extended (and overridden, by provider name) by the user file at
    /// `path`; a missing file is no error.
    pub fn builtin_with_user_file(path: &Path) -> Result<Self, CatalogError> {
        let mut catalog = Self::builtin();
        match std::fs::read_to_string(path) {
            Ok(text) => catalog.extend(Self::from_toml(&path.display().to_string(), &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CatalogError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        Ok(catalog)
    }

    /// Adds every provider of `other`, replacing same-named ones.
    pub fn extend(&mut self, other: Catalog) {
        self.providers.extend(other.providers);
    }

    /// Adds or replaces one provider (e.g. a [`Provider::custom`] secret).
    pub fn add(&mut self, provider: Provider) {
        self.providers.insert(provider.name.clone(), provider);
    }

    /// The provider named `name`.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    /// Every provider, by name.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_the_required_providers() {
        let catalog = Catalog::from_toml("built-in", BUILTIN).unwrap();
        for name in [
            "anthropic",
            "anthropic-oauth",
            "openai",
            "github",
            "gemini",
            "groq",
            "mistral",
            "xai",
            "openrouter",
            "aws",
        ] {
            assert!(catalog.get(name).is_some(), "missing {name}");
        }
        let anthropic = catalog.get("anthropic").unwrap();
        assert_eq!(anthropic.env, ["ANTHROPIC_API_KEY"]);
        assert!(anthropic.is_bound_to("api.anthropic.com"));
        let gh = catalog.get("github").unwrap();
        assert!(gh.env.contains(&"GH_TOKEN".into()) && gh.env.contains(&"GITHUB_TOKEN".into()));
        assert!(gh.apply.contains(&Apply::BasicAuth));
        assert!(gh.is_bound_to("github.com") && gh.is_bound_to("api.github.com"));
        assert!(
            catalog
                .get("aws")
                .unwrap()
                .is_bound_to("s3.us-east-1.amazonaws.com")
        );
        assert!(
            !catalog
                .get("aws")
                .unwrap()
                .is_bound_to("amazonaws.com.evil.net")
        );
    }

    #[test]
    fn user_file_adds_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.toml");
        std::fs::write(
            &path,
            r#"
[[provider]]
name = "openai"
env = ["OPENAI_API_KEY"]
hosts = ["openai.internal.example"]
apply = [{ kind = "header", name = "authorization", scheme = "Bearer" }]

[[provider]]
name = "internal"
env = ["INTERNAL_TOKEN"]
hosts = ["*.corp.example"]
apply = [{ kind = "anywhere", body = true }]
"#,
        )
        .unwrap();
        let catalog = Catalog::builtin_with_user_file(&path).unwrap();
        assert!(
            catalog
                .get("openai")
                .unwrap()
                .is_bound_to("openai.internal.example")
        );
        assert!(!catalog.get("openai").unwrap().is_bound_to("api.openai.com"));
        assert!(
            catalog
                .get("internal")
                .unwrap()
                .is_bound_to("git.corp.example")
        );
        assert!(catalog.get("anthropic").is_some());
        let missing = Catalog::builtin_with_user_file(&dir.path().join("none.toml")).unwrap();
        assert_eq!(missing, Catalog::builtin());
    }

    #[test]
    fn bad_entries_get_errors_naming_file_provider_and_field() {
        let cases = [
            (
                "[[provider]]\nname = \"x\"\nenv = []\nhosts = [\"a.b\"]\napply = [{ kind = \"basic-auth\" }]",
                "env",
            ),
            (
                "[[provider]]\nname = \"x\"\nenv = [\"lower\"]\nhosts = [\"a.b\"]\napply = [{ kind = \"basic-auth\" }]",
                "lower",
            ),
            (
                "[[provider]]\nname = \"x\"\nenv = [\"X\"]\nhosts = []\napply = [{ kind = \"basic-auth\" }]",
                "hosts",
            ),
            (
                "[[provider]]\nname = \"x\"\nenv = [\"X\"]\nhosts = [\"a.*.b\"]\napply = [{ kind = \"basic-auth\" }]",
                "a.*.b",
            ),
            (
                "[[provider]]\nname = \"x\"\nenv = [\"X\"]\nhosts = [\"a.b\"]\napply = [{ kind = \"header\", name = \"bad header\" }]",
                "bad header",
            ),
            (
                "[[provider]]\nname = \"x\"\nenv = [\"X\"]\nhosts = [\"a.b\"]\napply = [{ kind = \"telepathy\" }]",
                "telepathy",
            ),
            (
                "[[provider]]\nname = \"X!\"\nenv = [\"X\"]\nhosts = [\"a.b\"]\napply = [{ kind = \"sigv4\" }]",
                "service name",
            ),
        ];
        for (text, needle) in cases {
            let err = Catalog::from_toml("user.toml", text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("user.toml") && err.contains(needle),
                "{err} lacks {needle}"
            );
        }
    }

    #[test]
    fn custom_secret_is_anywhere_on_named_hosts() {
        let p = Provider::custom("jira", "JIRA_TOKEN", &["Jira.Example.COM."], true).unwrap();
        assert!(p.is_bound_to("jira.example.com"));
        assert_eq!(p.apply, [Apply::Anywhere { body: true }]);
        assert!(Provider::custom("jira", "jira", &["x.y"], false).is_err());
    }
}
