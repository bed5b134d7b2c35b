//! Named settings (tri-state, most restrictive wins) and mount decisions.

use std::path::Path;

use crate::decision::{Decision, Reason};
use crate::layer::{Action, SettingValue};
use crate::mount::{PROTECTED_HOME_DIRS, is_strict_ancestor, is_within, path_segments};
use crate::policy::Policy;

impl Policy {
    /// Decides a named setting (`mount.home`, `docker`, ... see [`crate::SETTINGS`]).
    ///
    /// A deny in any layer is final. Otherwise an allow from a layer that counts (not below an
    /// enforced layer) grants. Unset everywhere means denied.
    pub fn check_setting(&self, name: &str) -> Decision {
        let mut allow = None;
        let mut blocked = None;
        for (index, settings) in self.settings.iter().enumerate() {
            let Some(rule) = settings.get(name) else {
                continue;
            };
            let written = format!(
                "\"{name}\" = \"{}\" ({})",
                setting_text(rule.value),
                rule.origin
            );
            match rule.value {
                SettingValue::Deny => {
                    return Decision::new(false, Reason::MatchedDeny)
                        .with_rule(written, self.layer_name(index));
                }
                SettingValue::Allow if self.counts(index) => {
                    allow.get_or_insert((index, written));
                }
                SettingValue::Allow => {
                    blocked.get_or_insert((index, written));
                }
            }
        }
        if let Some((index, rule)) = allow {
            return Decision::new(true, Reason::MatchedAllow)
                .with_rule(rule, self.layer_name(index));
        }
        if let Some((index, rule)) = blocked {
            return self.enforced_deny(index, rule);
        }
        let known = crate::SETTINGS.iter().any(|(k, _)| *k == name);
        let note = if known {
            format!("setting `{name}` is not set to allow in any layer")
        } else {
            format!("`{name}` is not a known setting")
        };
        Decision::new(false, Reason::DefaultDeny).with_note(note)
    }

    /// Decides whether the sandbox may mount `path`, a path the user named (`home` is the user's
    /// home directory). Both should be canonical (symlinks resolved); `.` and `..` are applied
    /// lexically.
    ///
    /// Denied: anything a `[[mount]]` deny covers (inside it or containing it); everything when
    /// `mount.paths` is not allowed; the home directory or a directory containing it unless
    /// `mount.home` is allowed; `~/.ssh`, `~/.aws`,
    /// `~/.gnupg`, `~/.config/gcloud`, `~/.kube`, `~/.docker` (or a directory containing one)
    /// unless a `[[mount]]` allow names the path; and, when `[[mount]]` allows exist, anything none of them matches.
    pub fn check_mount(&self, path: &Path, home: &Path) -> Decision {
        let (Some(path), Some(home)) = (path_segments(path), path_segments(home)) else {
            return Decision::new(false, Reason::InvalidRequest)
                .with_note("mount path and home directory must be absolute");
        };
        if let Some(denied) = self.mount_deny(&path, &home) {
            return denied;
        }
        let paths_setting = self.check_setting("mount.paths");
        if !paths_setting.allowed {
            return paths_setting;
        }
        if is_within(&home, &path) {
            return self.home_mount();
        }
        if let Some(protected) = self.protected_dir(&path, &home) {
            return protected;
        }
        self.mount_allowlist(&path, &home).unwrap_or(paths_setting)
    }

    /// Like [`Policy::check_mount`], and first requires `path` to lie within one of `named` (the
    /// paths the user named on the command line): nothing outside them is ever mounted.
    pub fn check_mount_within(&self, path: &Path, home: &Path, named: &[&Path]) -> Decision {
        let Some(segments) = path_segments(path) else {
            return Decision::new(false, Reason::InvalidRequest)
                .with_note("mount path must be absolute");
        };
        let inside = named
            .iter()
            .filter_map(|n| path_segments(n))
            .any(|root| is_within(&segments, &root));
        if !inside {
            return Decision::new(false, Reason::NotNamed).with_note(format!(
                "`{}` is outside the paths the user named",
                path.display()
            ));
        }
        self.check_mount(path, home)
    }

    fn mount_deny(&self, path: &[String], home: &[String]) -> Option<Decision> {
        self.mounts
            .iter()
            .filter(|(_, rule)| rule.action == Action::Deny)
            .find_map(|(layer, rule)| {
                let (_, text) = rule.paths.iter().find(|(p, _)| p.overlaps(path, home))?;
                Some(Decision::new(false, Reason::MatchedDeny).with_rule(
                    format!("deny mount {text} ({})", rule.origin),
                    self.layer_name(*layer),
                ))
            })
    }

    fn home_mount(&self) -> Decision {
        let setting = self.check_setting("mount.home");
        match setting.explanation.reason {
            _ if setting.allowed => setting,
            Reason::MatchedDeny | Reason::EnforcedBy(_) => setting,
            _ => Decision::new(false, Reason::ProtectedPath)
                .with_rule("built-in: the home directory", "built-in")
                .with_note("the home directory (or a directory containing it) needs \"mount.home\" = \"allow\""),
        }
    }

    fn protected_dir(&self, path: &[String], home: &[String]) -> Option<Decision> {
        let hit = PROTECTED_HOME_DIRS.iter().find(|dir| {
            let full: Vec<String> = home
                .iter()
                .cloned()
                .chain(dir.split('/').map(str::to_owned))
                .collect();
            is_within(path, &full) || is_strict_ancestor(path, &full)
        })?;
        if let Some(allowed) = self.explicit_mount_allow(path, home) {
            return Some(allowed);
        }
        Some(
            Decision::new(false, Reason::ProtectedPath)
                .with_rule(format!("built-in: ~/{hit}"), "built-in")
                .with_note(format!(
                    "~/{hit} holds credentials; a [[mount]] allow rule naming the path is needed"
                )),
        )
    }

    /// A counted `[[mount]]` allow matching the path itself.
    fn explicit_mount_allow(&self, path: &[String], home: &[String]) -> Option<Decision> {
        self.mounts
            .iter()
            .filter(|(layer, rule)| rule.action == Action::Allow && self.counts(*layer))
            .find_map(|(layer, rule)| {
                let (_, text) = rule.paths.iter().find(|(p, _)| p.matches(path, home))?;
                Some(Decision::new(true, Reason::MatchedAllow).with_rule(
                    format!("allow mount {text} ({})", rule.origin),
                    self.layer_name(*layer),
                ))
            })
    }

    /// With `[[mount]]` allows present, the path must match one (`None` when there are none).
    fn mount_allowlist(&self, path: &[String], home: &[String]) -> Option<Decision> {
        let mut any_allow = false;
        for (layer, rule) in self
            .mounts
            .iter()
            .filter(|(_, r)| r.action == Action::Allow)
        {
            let matched = rule.paths.iter().find(|(p, _)| p.matches(path, home));
            match matched {
                Some((_, text)) if self.counts(*layer) => {
                    return Some(Decision::new(true, Reason::MatchedAllow).with_rule(
                        format!("allow mount {text} ({})", rule.origin),
                        self.layer_name(*layer),
                    ));
                }
                Some((_, text)) => {
                    return Some(
                        self.enforced_deny(*layer, format!("allow mount {text} ({})", rule.origin)),
                    );
                }
                None => any_allow |= self.counts(*layer),
            }
        }
        any_allow.then(|| {
            Decision::new(false, Reason::DefaultDeny)
                .with_note("the path matches none of the [[mount]] allow rules")
        })
    }
}

fn setting_text(value: SettingValue) -> &'static str {
    match value {
        SettingValue::Allow => "allow",
        SettingValue::Deny => "deny",
    }
}
