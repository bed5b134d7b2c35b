//! The [`EgressPolicy`] adapter for sbx-policy's compiled [`sbx_policy::Policy`].

use std::net::IpAddr;

use crate::seam::{EgressPolicy, NetworkRequest, Protocol, Verdict};

fn verdict(decision: sbx_policy::Decision) -> Verdict {
    let e = decision.explanation;
    Verdict {
        allowed: decision.allowed,
        rule: e.rule,
        layer: e.layer,
        reason: e.reason.to_string(),
    }
}

fn protocol(p: Protocol) -> sbx_policy::Protocol {
    match p {
        Protocol::Http => sbx_policy::Protocol::Http,
        Protocol::Https => sbx_policy::Protocol::Https,
        Protocol::Tcp => sbx_policy::Protocol::Tcp,
    }
}

impl EgressPolicy for sbx_policy::Policy {
    fn check_network(&self, request: &NetworkRequest<'_>) -> Verdict {
        // A connection-level allow that only holds for some methods/paths (`Decision::conditional`) is fine here:
        // the proxy checks every request inside the connection again with its own method and path.
        let mut req =
            sbx_policy::NetworkRequest::new(request.host, request.port, protocol(request.protocol));
        if let Some(method) = request.method {
            req = req.with_method(method);
        }
        if let Some(path) = request.path {
            req = req.with_path(path);
        }
        verdict(sbx_policy::Policy::check_network(self, &req))
    }

    fn allows_address(&self, ip: IpAddr, port: u16, host: &str) -> Verdict {
        verdict(sbx_policy::Policy::allows_address(self, ip, port, host))
    }

    fn check_model(&self, api_host: &str, model: &str) -> Verdict {
        verdict(sbx_policy::Policy::check_model(self, api_host, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbx_policy::{LayerLevel, Policy, PolicyLayer};

    fn policy(text: &str) -> Policy {
        Policy::new(vec![(
            LayerLevel::User,
            PolicyLayer::parse("user.toml", text).unwrap(),
        )])
    }

    fn req<'a>(
        host: &'a str,
        method: Option<&'a str>,
        path: Option<&'a str>,
    ) -> NetworkRequest<'a> {
        NetworkRequest {
            host,
            port: 443,
            protocol: Protocol::Https,
            method,
            path,
        }
    }

    #[test]
    fn decisions_carry_rule_layer_and_reason() {
        let p = policy(
            "name = \"mine\"\n[[network]]\naction = \"allow\"\nhosts = [\"api.example.com\"]\n\
             [[network]]\naction = \"deny\"\nhosts = [\"api.example.com\"]\npaths = [\"/admin/**\"]\n",
        );
        let v = EgressPolicy::check_network(&p, &req("api.example.com", Some("GET"), Some("/v1")));
        assert!(v.allowed);
        assert_eq!(
            (v.layer.as_deref(), v.reason.as_str()),
            (Some("mine"), "matched-allow")
        );
        // Dot segments cannot dodge the deny: the policy normalises the raw path.
        let v = EgressPolicy::check_network(
            &p,
            &req("api.example.com", Some("GET"), Some("/x/../admin/users")),
        );
        assert!(!v.allowed);
        assert_eq!(v.reason, "matched-deny");
        assert!(
            v.rule
                .as_deref()
                .is_some_and(|r| r.contains("api.example.com")),
            "{v:?}"
        );
        let v = EgressPolicy::check_network(&p, &req("other.example.com", None, None));
        assert_eq!((v.allowed, v.reason.as_str()), (false, "default-deny"));
    }

    #[test]
    fn private_addresses_need_a_rule_naming_them() {
        let p = policy("[[network]]\naction = \"allow\"\nhosts = [\"localhost:8080\"]\n");
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(EgressPolicy::allows_address(&p, loopback, 8080, "localhost").allowed);
        let v = EgressPolicy::allows_address(&p, loopback, 9090, "localhost");
        assert_eq!((v.allowed, v.reason.as_str()), (false, "private-address"));
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(!EgressPolicy::allows_address(&p, metadata, 80, "metadata.evil.com").allowed);
    }

    #[test]
    fn model_rules_apply() {
        let p = policy("[[model]]\naction = \"deny\"\nmodels = [\"claude-*-opus-*\"]\n");
        assert!(
            !EgressPolicy::check_model(&p, "api.anthropic.com", "claude-3-opus-20240229").allowed
        );
        assert!(
            EgressPolicy::check_model(&p, "api.anthropic.com", "claude-3-5-sonnet-20241022")
                .allowed
        );
    }
}
