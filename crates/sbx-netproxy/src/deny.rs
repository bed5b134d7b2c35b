//! The bodies of refusals: what was blocked, by which rule and layer, why, and the command that would allow it.

use http::{Response, StatusCode};

use crate::body::{ProxyBody, full};
use crate::seam::Verdict;

/// What a refusal is about, for the `sbx policy allow ...` hint.
pub(crate) enum Subject<'a> {
    /// A host:port (network rule).
    Network {
        host: &'a str,
        port: u16,
        default_port: bool,
    },
    /// A model (model rule).
    Model(&'a str),
    /// A proxy-level refusal no rule can lift (host mismatch, smuggling, ...).
    Fixed,
}

/// The command that would allow the request, if one exists.
pub(crate) fn allow_command(subject: &Subject<'_>) -> Option<String> {
    match subject {
        Subject::Network {
            host,
            default_port: true,
            ..
        } => Some(format!("sbx policy allow network {host}")),
        Subject::Network { host, port, .. } => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                (*host).to_owned()
            };
            Some(format!("sbx policy allow network {host}:{port}"))
        }
        Subject::Model(m) => Some(format!("sbx policy allow model {m}")),
        Subject::Fixed => None,
    }
}

/// The text body of a 403.
pub(crate) fn body_text(what: &str, verdict: &Verdict, subject: &Subject<'_>) -> String {
    let mut text = format!(
        "sbx: request blocked by the sandbox egress policy\nrequest: {what}\nrule: {}\nlayer: {}\nreason: {}\n",
        verdict.rule.as_deref().unwrap_or("(none)"),
        verdict.layer.as_deref().unwrap_or("(none)"),
        verdict.reason
    );
    match allow_command(subject) {
        Some(cmd) => text.push_str(&format!("to allow it: {cmd}\n")),
        None => text.push_str("this is refused by the proxy itself; no policy rule can allow it\n"),
    }
    text
}

/// A refusal response with `status`.
pub(crate) fn response(
    status: StatusCode,
    what: &str,
    verdict: &Verdict,
    subject: &Subject<'_>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body_text(what, verdict, subject)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&verdict.reason) {
        headers.insert("x-sbx-deny-reason", v);
    }
    resp
}

/// A plain error response (bad request, bad gateway, ...).
pub(crate) fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("sbx proxy: {message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_rule_layer_reason_and_command() {
        let v = Verdict::deny(
            Some("**.evil.test".into()),
            Some("team-payments".into()),
            "matched-deny",
        );
        let text = body_text(
            "GET https://a.evil.test/",
            &v,
            &Subject::Network {
                host: "a.evil.test",
                port: 443,
                default_port: true,
            },
        );
        for want in [
            "rule: **.evil.test",
            "layer: team-payments",
            "reason: matched-deny",
            "sbx policy allow network a.evil.test\n",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        let text = body_text(
            "x",
            &v,
            &Subject::Network {
                host: "::1",
                port: 8080,
                default_port: false,
            },
        );
        assert!(
            text.contains("sbx policy allow network [::1]:8080"),
            "{text}"
        );
    }
}
