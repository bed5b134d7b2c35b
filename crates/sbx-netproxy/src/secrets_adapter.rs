//! The [`CredentialInjector`] adapter for sbx-secrets' per-sandbox credentials.

use crate::seam::{CredentialInjector, Destination, InjectionReport};

impl CredentialInjector for sbx_secrets::SandboxCredentials {
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport {
        let dest = sbx_secrets::Destination {
            connect_host: Some(dest.connect_host),
            sni: dest.sni,
            authority: Some(dest.authority),
        };
        let report = sbx_secrets::SandboxCredentials::inject(self, &dest, head);
        InjectionReport {
            injected: report.injected,
            blocked: report.blocked,
        }
    }
}
