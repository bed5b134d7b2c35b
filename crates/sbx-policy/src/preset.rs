//! Built-in presets: `open`, `balanced` (with the embedded baseline allowlist) and `locked-down`.

use crate::layer::{Action, NetworkRule, PolicyLayer, Preset, SETTINGS, SettingRule, SettingValue};
use crate::target::Target;

/// The balanced preset's allowlist, as Docker Sandboxes ships it (see the file's header).
const BALANCED_HOSTS: &str = include_str!("../data/balanced-hosts.txt");

/// One host line of the balanced list that does not parse (only ever seen by the unit test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadEntry {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// The balanced allowlist: one allow rule per group, plus any lines that failed to parse.
pub(crate) fn balanced_rules() -> (Vec<(String, NetworkRule)>, Vec<BadEntry>) {
    let mut groups: Vec<(String, NetworkRule)> = Vec::new();
    let mut bad = Vec::new();
    for (index, raw) in BALANCED_HOSTS.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            groups.push((group.to_owned(), empty_allow()));
            continue;
        }
        let Some((group, rule)) = groups.last_mut() else {
            bad.push(BadEntry {
                line: index + 1,
                message: "host before the first [group]".into(),
            });
            continue;
        };
        match parse_entry(line) {
            Ok(targets) => {
                let origin = format!("preset balanced, group {group}");
                rule.targets
                    .extend(targets.into_iter().map(|t| (t, origin.clone())));
            }
            Err(message) => bad.push(BadEntry {
                line: index + 1,
                message,
            }),
        }
    }
    (groups, bad)
}

fn empty_allow() -> NetworkRule {
    NetworkRule {
        action: Action::Allow,
        targets: Vec::new(),
        methods: None,
        paths: None,
    }
}

/// `host:port[,port...]` → one target per port.
fn parse_entry(line: &str) -> Result<Vec<Target>, String> {
    let (host, ports) = line
        .rsplit_once(':')
        .ok_or_else(|| format!("`{line}` has no `:port`"))?;
    ports
        .split(',')
        .map(|port| Target::parse(&format!("{host}:{port}")))
        .collect()
}

/// Adds a preset's rules, default and settings to `layer`. Settings the layer already has win.
pub(crate) fn apply(layer: &mut PolicyLayer, preset: Preset) {
    layer.preset = Some(preset);
    let origin = format!("preset {preset}");
    let allow_settings: Vec<&str> = match preset {
        Preset::Open => SETTINGS.iter().map(|(name, _)| *name).collect(),
        Preset::Balanced => vec!["mount.paths"],
        Preset::LockedDown => vec!["mount.paths"],
    };
    for name in allow_settings {
        layer
            .settings
            .entry(name.to_owned())
            .or_insert_with(|| SettingRule {
                value: SettingValue::Allow,
                origin: origin.clone(),
            });
    }
    if preset == Preset::Balanced {
        let (groups, _bad) = balanced_rules();
        layer
            .network
            .extend(groups.into_iter().map(|(_, rule)| rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_balanced_host_parses() {
        let (groups, bad) = balanced_rules();
        assert_eq!(
            bad,
            Vec::new(),
            "unparsable lines in data/balanced-hosts.txt"
        );
        let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(
            names,
            [
                "ai-services",
                "package-managers",
                "code-and-containers",
                "cloud-infrastructure",
                "os-packages",
                "cert-validation"
            ]
        );
        let host_lines = BALANCED_HOSTS
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with('['))
            .count();
        let targets: usize = groups.iter().map(|(_, r)| r.targets.len()).sum();
        assert!(
            host_lines > 180,
            "the list has its ~190 hosts: {host_lines}"
        );
        assert!(
            targets >= host_lines,
            "every host line yields at least one target"
        );
    }

    #[test]
    fn balanced_layer_has_groups_and_settings() {
        let layer = PolicyLayer::preset(Preset::Balanced);
        assert_eq!(layer.network.len(), 6);
        assert_eq!(layer.settings["mount.paths"].value, SettingValue::Allow);
        assert!(!layer.settings.contains_key("docker"));
        let open = PolicyLayer::preset(Preset::Open);
        assert_eq!(open.settings.len(), SETTINGS.len());
        assert!(PolicyLayer::preset(Preset::LockedDown).network.is_empty());
    }
}
