//! Model rules: which AI models the proxy lets an agent call, per API host.

use crate::decision::{Decision, Reason};
use crate::host::{CanonicalHost, canonical_host};
use crate::layer::Action;
use crate::policy::Policy;

impl Policy {
    /// Decides whether `model` may be requested from `api_host`.
    ///
    /// A matching `[[model]]` deny wins. Otherwise a matching allow (from a layer that counts)
    /// grants. When allow rules exist for this host but none matches, the model is denied: allow
    /// rules make an allowlist. With no model rules for the host, every model is allowed.
    /// Model names compare case-insensitively.
    pub fn check_model(&self, api_host: &str, model: &str) -> Decision {
        let name = match canonical_host(api_host) {
            Ok(CanonicalHost::Name(name)) => Some(name),
            _ => None,
        };
        let labels: Vec<&str> = name
            .as_deref()
            .map_or_else(Vec::new, |n| n.split('.').collect());
        let model_lower = model.to_lowercase();
        let mut allow = None;
        let mut blocked = None;
        let mut allowlist_here = false;
        for (layer, rule) in &self.models {
            let host_applies = match &rule.hosts {
                None => true,
                Some(hosts) => name.is_some() && hosts.iter().any(|h| h.matches_labels(&labels)),
            };
            if !host_applies {
                continue;
            }
            let matched = rule
                .models
                .iter()
                .find(|(glob, _)| glob.matches(&model_lower));
            let written = |text: &str| format!("{} model {text} ({})", rule.action, rule.origin);
            match (rule.action, matched) {
                (Action::Deny, Some((_, text))) => {
                    return Decision::new(false, Reason::MatchedDeny)
                        .with_rule(written(text), self.layer_name(*layer));
                }
                (Action::Deny, None) => {}
                (Action::Allow, found) if self.counts(*layer) => {
                    allowlist_here = true;
                    if let (None, Some((_, text))) = (&allow, found) {
                        allow = Some((*layer, written(text)));
                    }
                }
                (Action::Allow, Some((_, text))) => {
                    blocked.get_or_insert((*layer, written(text)));
                }
                (Action::Allow, None) => {}
            }
        }
        if let Some((layer, rule)) = allow {
            return Decision::new(true, Reason::MatchedAllow)
                .with_rule(rule, self.layer_name(layer));
        }
        if let Some((layer, rule)) = blocked {
            return self.enforced_deny(layer, rule);
        }
        if allowlist_here {
            return Decision::new(false, Reason::DefaultDeny).with_note(format!(
                "model `{model}` is not in the allowed models for `{api_host}`"
            ));
        }
        Decision::new(true, Reason::DefaultAllow).with_note("no model rule applies")
    }

    pub(crate) fn layer_name(&self, index: usize) -> &str {
        self.layers.get(index).map_or("", |l| l.name.as_str())
    }
}
