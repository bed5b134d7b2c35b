//! The `isolation.namespaces` policy setting: an administrator (or the user) can forbid namespace isolation, which
//! shares the host kernel, so that sandboxes only ever run in microVMs.
//!
//! ```toml
//! # /etc/sbx/policy.d/company.toml
//! [settings]
//! "isolation.namespaces" = "deny"
//! ```
//!
//! Only an explicit `deny` refuses: unlike other settings, unset means allowed, because on hosts without hardware
//! virtualization namespaces are the only isolation there is.

use anyhow::{Result, bail};

use crate::home::Home;
use crate::policy_files;
use crate::sandboxes::Isolation;

/// The setting's name in policy files.
pub(crate) const SETTING: &str = "isolation.namespaces";

/// Refuses namespace isolation when a policy layer denies it.
pub(crate) fn check(home: &Home, isolation: Isolation) -> Result<()> {
    if isolation != Isolation::Namespaces {
        return Ok(());
    }
    let policy = policy_files::load_policy(home, None)?;
    refuse_if_denied(&policy)
}

fn refuse_if_denied(policy: &sbx_policy::Policy) -> Result<()> {
    let decision = policy.check_setting(SETTING);
    let Some(rule) = decision
        .explanation
        .rule
        .as_deref()
        .filter(|_| !decision.allowed)
    else {
        return Ok(());
    };
    let layer = decision
        .explanation
        .layer
        .as_deref()
        .unwrap_or("an unnamed layer");
    bail!(
        "namespace isolation is forbidden by the {layer} policy layer ({rule}); run on a host with hardware \
         virtualization (`sbx doctor` shows what this host has) with `--isolation microvm`, or ask whoever manages \
         the {layer} layer (`sbx policy ls` shows where it lives)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbx_policy::{LayerLevel, Policy, PolicyLayer};

    fn policy(layers: &[(LayerLevel, &str)]) -> Policy {
        Policy::new(
            layers
                .iter()
                .map(|(level, text)| (*level, PolicyLayer::parse("test.toml", text).unwrap()))
                .collect(),
        )
    }

    #[test]
    fn unset_allows_and_deny_names_the_layer() {
        refuse_if_denied(&policy(&[(LayerLevel::User, "")])).unwrap();
        let err = refuse_if_denied(&policy(&[
            (
                LayerLevel::Company,
                "name = \"acme-security\"\n[settings]\n\"isolation.namespaces\" = \"deny\"\n",
            ),
            (
                LayerLevel::User,
                "[settings]\n\"isolation.namespaces\" = \"allow\"\n",
            ),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("namespace isolation is forbidden"), "{err}");
        assert!(err.contains("acme-security"), "{err}");
        assert!(err.contains("--isolation microvm"), "{err}");
    }
}
