//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use sbx_policy::{Decision, LayerLevel, NetworkRequest, Policy, PolicyLayer, Protocol};

/// A policy made of one user layer parsed from `toml`.
pub fn user_policy(toml: &str) -> Policy {
    let layer = PolicyLayer::parse("user.toml", toml).expect("test policy parses");
    Policy::new(vec![(LayerLevel::User, layer)])
}

/// Policy from `(level, toml)` pairs; each layer is named after its level.
pub fn layered(layers: &[(LayerLevel, &str)]) -> Policy {
    Policy::new(
        layers
            .iter()
            .map(|(level, text)| {
                let file = format!("{level}.toml");
                (
                    *level,
                    PolicyLayer::parse(&file, text).expect("test policy parses"),
                )
            })
            .collect(),
    )
}

/// Connection-level HTTPS check on 443.
pub fn https(policy: &Policy, host: &str) -> Decision {
    policy.check_network(&NetworkRequest::new(host, 443, Protocol::Https))
}

/// Full request check.
pub fn request(
    policy: &Policy,
    host: &str,
    port: u16,
    protocol: Protocol,
    method: &str,
    path: &str,
) -> Decision {
    policy.check_network(&NetworkRequest {
        host,
        port,
        protocol,
        method: Some(method),
        path: Some(path),
    })
}

/// `[[network]]` table text.
pub fn rule(action: &str, hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "[[network]]\naction = \"{action}\"\nhosts = [{}]\n",
        hosts.join(", ")
    )
}
