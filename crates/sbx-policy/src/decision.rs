//! Decisions and their explanations: what was decided, by which rule, in which layer, and why.

use std::fmt;

use crate::layer::LayerLevel;

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request, mount or setting is allowed.
    pub allowed: bool,
    /// Why: the deciding rule, its layer and a reason code.
    pub explanation: Explanation,
    /// The allow holds for the connection only because some rules are limited to methods or paths:
    /// the caller must check every request inside it again (with method and path).
    pub conditional: bool,
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The deciding rule as the user wrote it, with its source location (`allow *.npmjs.org (team.toml:6:11)`).
    pub rule: Option<String>,
    /// The name of the layer the rule came from.
    pub layer: Option<String>,
    /// A stable reason code.
    pub reason: Reason,
    /// Extra context for a human (e.g. which allow an enforced layer overrode).
    pub note: Option<String>,
}

/// Stable reason codes; `Display` gives the kebab-case code used in logs and 403 bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A deny rule matched (deny beats every allow).
    MatchedDeny,
    /// An allow rule matched and no deny did.
    MatchedAllow,
    /// Nothing matched and the policy denies by default.
    DefaultDeny,
    /// Nothing matched and the policy allows by default (`open` preset, unrestricted models).
    DefaultAllow,
    /// An allow matched, but in a layer below an `enforced = true` layer of this level.
    EnforcedBy(LayerLevel),
    /// A private or loopback address that no allow rule names explicitly.
    PrivateAddress,
    /// A protected path (home directory, `~/.ssh`, ...) or a path containing one.
    ProtectedPath,
    /// A mount outside the paths the user named.
    NotNamed,
    /// The request could not be understood (bad host, relative mount path, ...).
    InvalidRequest,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MatchedDeny => f.write_str("matched-deny"),
            Reason::MatchedAllow => f.write_str("matched-allow"),
            Reason::DefaultDeny => f.write_str("default-deny"),
            Reason::DefaultAllow => f.write_str("default-allow"),
            Reason::EnforcedBy(level) => write!(f, "enforced-by-{level}"),
            Reason::PrivateAddress => f.write_str("private-address"),
            Reason::ProtectedPath => f.write_str("protected-path"),
            Reason::NotNamed => f.write_str("not-named"),
            Reason::InvalidRequest => f.write_str("invalid-request"),
        }
    }
}

impl fmt::Display for Explanation {
    /// `matched-deny rule="deny **.evil.com (company.toml:4:10)" layer="acme"; note`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(rule) = &self.rule {
            write!(f, " rule={rule:?}")?;
        }
        if let Some(layer) = &self.layer {
            write!(f, " layer={layer:?}")?;
        }
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

impl Decision {
    pub(crate) fn new(allowed: bool, reason: Reason) -> Self {
        Decision {
            allowed,
            explanation: Explanation {
                rule: None,
                layer: None,
                reason,
                note: None,
            },
            conditional: false,
        }
    }

    pub(crate) fn with_rule(mut self, rule: impl Into<String>, layer: impl Into<String>) -> Self {
        self.explanation.rule = Some(rule.into());
        self.explanation.layer = Some(layer.into());
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.explanation.note = Some(note.into());
        self
    }

    /// The reason code of this decision.
    pub fn reason(&self) -> Reason {
        self.explanation.reason
    }

    /// The CLI command that would allow `host` (`sbx policy allow network HOST`), for 403 bodies and
    /// error messages. Use [`Decision::hint`] to get it only when allowing would actually help.
    pub fn allow_command(&self, host: &str) -> String {
        format!("sbx policy allow network {host}")
    }

    /// `Some(command)` when a new allow rule would change this deny: the request was denied by
    /// default. `None` for allows and for denies that an allow cannot lift (a matching deny rule, an
    /// enforced layer). `port` is added when it is not 80/443.
    pub fn hint(&self, host: &str, port: u16) -> Option<String> {
        if self.allowed
            || !matches!(
                self.explanation.reason,
                Reason::DefaultDeny | Reason::PrivateAddress
            )
        {
            return None;
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Some(match port {
            80 | 443 => self.allow_command(&host),
            other => self.allow_command(&format!("{host}:{other}")),
        })
    }
}

impl fmt::Display for Decision {
    /// `allow` or `deny`, a tab, then the explanation: the `policy_check` line format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allow" } else { "deny" };
        write!(f, "{verdict}\t{}", self.explanation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes() {
        assert_eq!(Reason::MatchedDeny.to_string(), "matched-deny");
        assert_eq!(
            Reason::EnforcedBy(LayerLevel::Company).to_string(),
            "enforced-by-company"
        );
        assert_eq!(Reason::PrivateAddress.to_string(), "private-address");
    }

    #[test]
    fn display_and_hint() {
        let d = Decision::new(false, Reason::DefaultDeny);
        assert_eq!(d.to_string(), "deny\tdefault-deny");
        assert_eq!(
            d.hint("example.com", 443).as_deref(),
            Some("sbx policy allow network example.com")
        );
        assert_eq!(
            d.hint("db.local", 5432).as_deref(),
            Some("sbx policy allow network db.local:5432")
        );
        assert_eq!(
            d.hint("::1", 8080).as_deref(),
            Some("sbx policy allow network [::1]:8080")
        );
        let d =
            Decision::new(false, Reason::MatchedDeny).with_rule("deny x.com (a.toml:3:10)", "acme");
        assert_eq!(d.hint("x.com", 443), None);
        assert_eq!(
            d.to_string(),
            "deny\tmatched-deny rule=\"deny x.com (a.toml:3:10)\" layer=\"acme\""
        );
    }
}
