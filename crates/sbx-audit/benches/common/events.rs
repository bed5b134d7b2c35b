//! The event mix shared by the criterion bench (`benches/audit.rs`) and the `throughput` example, so both measure
//! the same events.

use sbx_audit::{Decision, Event, Proxy};

/// A realistic mix: mostly network decisions and HTTP requests, some secrets and execs, 10 sandboxes.
pub(crate) fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let sandbox = format!("sandbox-{}", i % 10);
            match i % 4 {
                0 => Event::network(
                    &sandbox,
                    "api.github.com",
                    443,
                    Proxy::Forward,
                    Decision::Allow,
                )
                .explained(Some("*.github.com"), Some("team"), "matched-allow"),
                1 => Event::http(
                    &sandbox,
                    "POST",
                    "api.anthropic.com",
                    443,
                    "/v1/messages",
                    Decision::Allow,
                )
                .http_result(Some(200), 2048, 16384, 950)
                .agent("claude"),
                2 => Event::network(
                    &sandbox,
                    "evil.example",
                    443,
                    Proxy::Transparent,
                    Decision::Deny,
                )
                .explained(None, None, "default-deny"),
                _ => {
                    Event::secret_injected(&sandbox, "anthropic", "api.anthropic.com").user("alice")
                }
            }
        })
        .collect()
}
