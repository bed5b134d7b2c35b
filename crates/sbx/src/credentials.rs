//! A running sandbox's credentials, kept in step with the secret store.
//!
//! The supervisor's proxy injects through a [`LiveCredentials`]: one layer per secret (an sbx-netproxy
//! [`SecretsInjector`] over sbx-secrets credentials for that one service), swapped when the store or the provider
//! catalog changes (`sbx secret set`/`set-custom`/`rm`/`import` ask every running supervisor to [`reload`]; the
//! supervisor also notices changed store files by itself within a second, for a message it missed). A secret
//! added while the sandbox runs gets a layer of its own, so the next command started inside sees its placeholder
//! and the proxy injects it; the layers of secrets that did not change are kept as they are, so placeholders already
//! handed to running processes stay valid for the life of the supervisor. A secret whose value or binding changed
//! gets a fresh placeholder (the old one stops injecting: it stood for the old value); a removed secret stops
//! injecting at once. Placeholders are not persisted: a restarted sandbox gets new ones, as it always did.
//!
//! [`reload`]: LiveCredentials::reload

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use sbx_netproxy::{
    BodyPlan, CredentialInjector, Destination, InjectionReport, Resign, SecretsInjector,
};
use sbx_secrets::{Catalog, Provider, SandboxCredentials, SecretValue};

use crate::home::Home;

/// One secret's credentials and what they were made from (to tell whether a reload changes them).
struct Layer {
    service: String,
    provider: Provider,
    value: SecretValue,
    injector: SecretsInjector,
}

/// What a reload changed, by service name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) added: Vec<String>,
    pub(crate) changed: Vec<String>,
    pub(crate) removed: Vec<String>,
}

impl Changes {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        for (what, list) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", list.join(", ")));
            }
        }
        f.write_str(&parts.join("; "))
    }
}

/// The credentials of one running sandbox (see the module docs).
pub(crate) struct LiveCredentials {
    sandbox: String,
    layers: RwLock<Arc<Vec<Arc<Layer>>>>,
}

impl LiveCredentials {
    /// No credentials yet; [`reload`](Self::reload) or [`update`](Self::update) fills them.
    pub(crate) fn empty(sandbox: &str) -> LiveCredentials {
        LiveCredentials {
            sandbox: sandbox.to_owned(),
            layers: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Re-reads the secret store (global and this sandbox's scope) and the provider catalog and applies the
    /// difference. On an error the credentials in force stay.
    pub(crate) fn reload(&self, home: &Home) -> Result<Changes> {
        let catalog = crate::custom_secrets::load_catalog(&home.providers_file())?;
        let secrets = if home.secrets_dir().exists() {
            let (store, _) = crate::commands::secret::open_store(home)?;
            store
                .effective_for(&self.sandbox)
                .context("cannot read the secret store")?
        } else {
            BTreeMap::new()
        };
        let mut known = Vec::new();
        for (service, value) in secrets {
            if catalog.get(&service).is_some() {
                known.push((service, value));
            } else {
                eprintln!(
                    "sbx supervisor: secret {service} has no provider in the catalog (removed from {}?); not injected",
                    home.providers_file().display()
                );
            }
        }
        self.update(&catalog, known)
    }

    /// Makes the sandbox's credentials exactly `secrets`, keeping the layer (and placeholder) of every secret whose
    /// provider and value are unchanged.
    pub(crate) fn update(
        &self,
        catalog: &Catalog,
        secrets: Vec<(String, SecretValue)>,
    ) -> Result<Changes> {
        let current = self.snapshot();
        let mut changes = Changes::default();
        let mut next: Vec<Arc<Layer>> = Vec::with_capacity(secrets.len());
        for (service, value) in secrets {
            let Some(provider) = catalog.get(&service).cloned() else {
                continue;
            };
            let old = current.iter().find(|l| l.service == service);
            if let Some(layer) = old
                && layer.provider == provider
                && layer.value == value
            {
                next.push(layer.clone());
                continue;
            }
            let creds =
                SandboxCredentials::new(&self.sandbox, catalog, [(service.clone(), value.clone())])
                    .with_context(|| format!("cannot make credentials for secret {service}"))?;
            match old {
                Some(_) => changes.changed.push(service.clone()),
                None => changes.added.push(service.clone()),
            }
            next.push(Arc::new(Layer {
                service,
                provider,
                value,
                injector: SecretsInjector::new(creds, catalog),
            }));
        }
        changes.removed = current
            .iter()
            .filter(|l| !next.iter().any(|n| n.service == l.service))
            .map(|l| l.service.clone())
            .collect();
        if !changes.is_empty() {
            let Ok(mut slot) = self.layers.write() else {
                anyhow::bail!("credential state poisoned");
            };
            *slot = Arc::new(next);
        }
        Ok(changes)
    }

    /// Env var → placeholder over every secret of the sandbox (never a real value).
    pub(crate) fn placeholders_env(&self) -> Vec<(String, String)> {
        let mut env = BTreeMap::new();
        for layer in self.snapshot().iter() {
            env.extend(layer.injector.credentials().placeholders_env());
        }
        env.into_iter().collect()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Layer>>> {
        self.layers
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|_| Arc::new(Vec::new()))
    }
}

fn merge(into: &mut InjectionReport, from: InjectionReport) {
    into.injected.extend(from.injected);
    into.blocked.extend(from.blocked);
}

impl CredentialInjector for LiveCredentials {
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport {
        let mut report = InjectionReport::default();
        for layer in self.snapshot().iter() {
            merge(&mut report, layer.injector.inject(dest, head));
        }
        report
    }

    fn body_plan(&self, dest: &Destination<'_>, head: &http::request::Parts) -> BodyPlan {
        let mut watch = Vec::new();
        for layer in self.snapshot().iter() {
            match layer.injector.body_plan(dest, head) {
                BodyPlan::Buffer => return BodyPlan::Buffer,
                BodyPlan::Watch(pairs) => watch.extend(pairs),
                _ => {}
            }
        }
        if watch.is_empty() {
            BodyPlan::Stream
        } else {
            BodyPlan::Watch(watch)
        }
    }

    fn inject_body(&self, dest: &Destination<'_>, body: &mut Vec<u8>) -> InjectionReport {
        let mut report = InjectionReport::default();
        for layer in self.snapshot().iter() {
            merge(&mut report, layer.injector.inject_body(dest, body));
        }
        report
    }

    fn needs_payload_hash(&self, dest: &Destination<'_>, head: &http::request::Parts) -> bool {
        self.snapshot()
            .iter()
            .any(|l| l.injector.needs_payload_hash(dest, head))
    }

    fn resign(
        &self,
        dest: &Destination<'_>,
        head: &mut http::request::Parts,
        payload_sha256: Option<&str>,
    ) -> Resign {
        for layer in self.snapshot().iter() {
            match layer.injector.resign(dest, head, payload_sha256) {
                Resign::NotApplicable => {}
                other => return other,
            }
        }
        Resign::NotApplicable
    }
}

impl std::fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services: Vec<String> = self.snapshot().iter().map(|l| l.service.clone()).collect();
        f.debug_struct("LiveCredentials")
            .field("sandbox", &self.sandbox)
            .field("services", &services)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut catalog = Catalog::builtin();
        for (name, env, host) in [
            ("alpha", "ALPHA_TOKEN", "alpha.example"),
            ("beta", "BETA_TOKEN", "beta.example"),
        ] {
            catalog.add(Provider::custom(name, env, &[host], false).unwrap());
        }
        catalog
    }

    fn secret(service: &str, value: &str) -> (String, SecretValue) {
        (service.to_owned(), SecretValue::from(value))
    }

    fn env_of(live: &LiveCredentials, var: &str) -> Option<String> {
        live.placeholders_env()
            .into_iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v)
    }

    /// Sends `Authorization: Bearer <placeholder>` to `host` through the injector; returns the header sent on.
    fn send(live: &LiveCredentials, host: &str, placeholder: &str) -> (String, InjectionReport) {
        let request = http::Request::builder()
            .uri(format!("https://{host}/v1"))
            .header("host", host)
            .header("authorization", format!("Bearer {placeholder}"))
            .body(())
            .unwrap();
        let (mut head, ()) = request.into_parts();
        let dest = Destination {
            connect_host: host,
            sni: Some(host),
            authority: host,
        };
        let report = live.inject(&dest, &mut head);
        let sent = head.headers["authorization"].to_str().unwrap().to_owned();
        (sent, report)
    }

    #[test]
    fn a_secret_added_later_is_injected_and_earlier_placeholders_stay() {
        let catalog = catalog();
        let live = LiveCredentials::empty("box");
        let changes = live
            .update(&catalog, vec![secret("alpha", "real-alpha")])
            .unwrap();
        assert_eq!(changes.added, vec!["alpha"]);
        let alpha = env_of(&live, "ALPHA_TOKEN").expect("alpha placeholder");
        assert!(env_of(&live, "BETA_TOKEN").is_none());

        // `sbx secret set-custom` for beta while the sandbox runs.
        let changes = live
            .update(
                &catalog,
                vec![secret("alpha", "real-alpha"), secret("beta", "real-beta")],
            )
            .unwrap();
        assert_eq!(changes.added, vec!["beta"]);
        assert!(changes.changed.is_empty() && changes.removed.is_empty());
        assert_eq!(
            env_of(&live, "ALPHA_TOKEN").as_deref(),
            Some(alpha.as_str()),
            "a running process's placeholder stays valid"
        );
        let beta = env_of(&live, "BETA_TOKEN").expect("beta placeholder");
        let (sent, report) = send(&live, "beta.example", &beta);
        assert_eq!(sent, "Bearer real-beta");
        assert_eq!(
            report.injected,
            vec![("beta".to_owned(), "beta.example".to_owned())]
        );
        let (sent, _) = send(&live, "alpha.example", &alpha);
        assert_eq!(sent, "Bearer real-alpha");
        // A placeholder headed to a host it is not bound to is left alone and reported.
        let (sent, report) = send(&live, "alpha.example", &beta);
        assert_eq!(sent, format!("Bearer {beta}"));
        assert_eq!(report.blocked.len(), 1, "{report:?}");

        // Reloading the same store changes nothing.
        let changes = live
            .update(
                &catalog,
                vec![secret("alpha", "real-alpha"), secret("beta", "real-beta")],
            )
            .unwrap();
        assert!(changes.is_empty(), "{changes}");
        assert_eq!(env_of(&live, "BETA_TOKEN").as_deref(), Some(beta.as_str()));
    }

    #[test]
    fn changed_and_removed_secrets_stop_injecting_their_old_placeholders() {
        let catalog = catalog();
        let live = LiveCredentials::empty("box");
        live.update(
            &catalog,
            vec![secret("alpha", "old-alpha"), secret("beta", "real-beta")],
        )
        .unwrap();
        let old_alpha = env_of(&live, "ALPHA_TOKEN").unwrap();
        let beta = env_of(&live, "BETA_TOKEN").unwrap();
        let changes = live
            .update(&catalog, vec![secret("alpha", "new-alpha")])
            .unwrap();
        assert_eq!(changes.changed, vec!["alpha"]);
        assert_eq!(changes.removed, vec!["beta"]);
        assert_eq!(changes.to_string(), "changed alpha; removed beta");
        let new_alpha = env_of(&live, "ALPHA_TOKEN").unwrap();
        assert_ne!(new_alpha, old_alpha);
        assert_eq!(
            send(&live, "alpha.example", &new_alpha).0,
            "Bearer new-alpha"
        );
        assert_eq!(
            send(&live, "alpha.example", &old_alpha).0,
            format!("Bearer {old_alpha}"),
            "the old value is never sent again"
        );
        assert_eq!(
            send(&live, "beta.example", &beta).0,
            format!("Bearer {beta}")
        );
        assert!(env_of(&live, "BETA_TOKEN").is_none());
    }
}
