//! The [`AuditSink`] adapter for sbx-audit: proxy events become tamper-evident sbx-audit events.

use crate::seam::{AuditAction, AuditDecision, AuditEvent, AuditSink};

fn proxy_kind(kind: &str) -> sbx_audit::Proxy {
    if kind.ends_with("raw") {
        sbx_audit::Proxy::Raw
    } else if kind == "transparent" {
        sbx_audit::Proxy::Transparent
    } else {
        sbx_audit::Proxy::Forward
    }
}

/// Convert one proxy event into an sbx-audit event.
#[must_use]
pub fn to_audit_event(event: AuditEvent) -> sbx_audit::Event {
    let action = match event.action {
        AuditAction::NetworkEgress { host, port, proxy } => sbx_audit::Action::NetworkEgress {
            host,
            port,
            proxy: proxy_kind(&proxy),
        },
        AuditAction::HttpRequest {
            method,
            host,
            port,
            path,
            status,
            bytes_up,
            bytes_down,
            duration_ms,
        } => sbx_audit::Action::HttpRequest {
            method,
            host,
            port,
            path,
            status: (status != 0).then_some(status),
            bytes_up,
            bytes_down,
            duration_ms,
        },
        AuditAction::SecretInjected { service, host } => {
            sbx_audit::Action::SecretInjected { service, host }
        }
        AuditAction::PlaceholderBlocked { service, host } => {
            sbx_audit::Action::PlaceholderBlocked { service, host }
        }
    };
    let mut out = sbx_audit::Event::new(action).sandbox(&event.sandbox);
    if let Some(d) = event.decision {
        out = out.decision(match d {
            AuditDecision::Allow => sbx_audit::Decision::Allow,
            AuditDecision::Deny => sbx_audit::Decision::Deny,
        });
    }
    if let Some(reason) = &event.reason {
        out = out.explained(event.rule.as_deref(), event.layer.as_deref(), reason);
    }
    out
}

impl AuditSink for sbx_audit::AuditHandle {
    fn record(&self, event: AuditEvent) {
        // `record` never blocks on disk; a full queue is handled by the writer's own policy (and audited by it).
        if let Err(e) = sbx_audit::AuditHandle::record(self, to_audit_event(event)) {
            tracing::warn!(error = %e, "audit event not recorded");
        }
    }
}
