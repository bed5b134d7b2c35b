//! Policy layers: the parsed content of one policy file (or preset), before compilation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{LoadError, ParseError};
use crate::glob::Wildcard;
use crate::host::HostPattern;
use crate::mount::MountPattern;
use crate::path::PathPattern;
use crate::target::Target;

/// Largest policy file [`PolicyLayer::load`] reads.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// Who a layer speaks for, highest authority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerLevel {
    /// Company-wide policy.
    Company,
    /// Organisation policy.
    Org,
    /// Team policy.
    Team,
    /// The user's global policy.
    User,
    /// One sandbox's policy.
    Sandbox,
}

impl LayerLevel {
    /// All levels, highest authority first.
    pub const ALL: [LayerLevel; 5] = [
        LayerLevel::Company,
        LayerLevel::Org,
        LayerLevel::Team,
        LayerLevel::User,
        LayerLevel::Sandbox,
    ];

    /// The lower-case name (`company`, `org`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LayerLevel::Company => "company",
            LayerLevel::Org => "org",
            LayerLevel::Team => "team",
            LayerLevel::User => "user",
            LayerLevel::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for LayerLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LayerLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LayerLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown layer level `{s}`: expected company, org, team, user or sandbox")
            })
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Grant (unless a deny matches, or an enforced layer above makes it grant nothing).
    Allow,
    /// Refuse; beats every allow.
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// Built-in starting points for a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Everything allowed.
    Open,
    /// Deny by default plus Docker Sandboxes' baseline allowlist (AI services, package managers, ...).
    Balanced,
    /// Everything denied, AI providers included; only explicit allow rules grant.
    LockedDown,
}

impl Preset {
    /// The name used in files (`open`, `balanced`, `locked-down`).
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Open => "open",
            Preset::Balanced => "balanced",
            Preset::LockedDown => "locked-down",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Preset::Open, Preset::Balanced, Preset::LockedDown]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown preset `{s}`: expected open, balanced or locked-down"))
    }
}

/// The value of a named setting in one layer (absent = unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingValue {
    /// Permit (if no layer denies and no enforced layer above blocks it).
    Allow,
    /// Refuse; final.
    Deny,
}

/// Named settings a layer may set, with what each one governs.
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "mount.home",
        "mount the home directory itself (or a directory containing it)",
    ),
    (
        "mount.paths",
        "mount the paths the user names (the workspace, extra directories)",
    ),
    ("docker", "run a Docker engine inside the sandbox"),
    (
        "isolation.namespaces",
        "use the namespace jail instead of a microVM",
    ),
    ("secrets.custom", "inject user-defined custom secrets"),
];

/// A network rule: one `[[network]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkRule {
    pub(crate) action: Action,
    /// Each host entry with its source location.
    pub(crate) targets: Vec<(Target, String)>,
    /// Upper-case methods; `None` = any.
    pub(crate) methods: Option<Vec<String>>,
    /// Path globs with their text; `None` = `/**`.
    pub(crate) paths: Option<Vec<(PathPattern, String)>>,
}

/// A model rule: one `[[model]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelRule {
    pub(crate) action: Action,
    /// Lower-case model globs with their text.
    pub(crate) models: Vec<(Wildcard, String)>,
    /// API hosts the rule is limited to; `None` = every host.
    pub(crate) hosts: Option<Vec<HostPattern>>,
    /// Source location.
    pub(crate) origin: String,
}

/// A mount rule: one `[[mount]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountRule {
    pub(crate) action: Action,
    pub(crate) paths: Vec<(MountPattern, String)>,
    pub(crate) origin: String,
}

/// A setting's value in one layer, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingRule {
    pub(crate) value: SettingValue,
    pub(crate) origin: String,
}

/// One layer of policy: the rules of one file (or a preset), not yet combined with other layers.
///
/// Build one with [`PolicyLayer::parse`], [`PolicyLayer::load`] or [`PolicyLayer::preset`], then
/// combine layers with [`crate::Policy::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLayer {
    pub(crate) name: String,
    pub(crate) preset: Option<Preset>,
    pub(crate) enforced: bool,
    pub(crate) network: Vec<NetworkRule>,
    pub(crate) models: Vec<ModelRule>,
    pub(crate) mounts: Vec<MountRule>,
    pub(crate) settings: BTreeMap<String, SettingRule>,
}

impl PolicyLayer {
    /// A layer with no rules, no preset and no settings.
    pub fn empty(name: impl Into<String>) -> Self {
        PolicyLayer {
            name: name.into(),
            preset: None,
            enforced: false,
            network: Vec::new(),
            models: Vec::new(),
            mounts: Vec::new(),
            settings: BTreeMap::new(),
        }
    }

    /// Parses a layer from TOML text. `source_name` (usually the file path) appears in errors and
    /// explanations, and is the layer's name when the file has no `name`.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, ParseError> {
        crate::file::parse_layer(source_name, text)
    }

    /// Reads and parses a layer file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_FILE_SIZE {
            return Err(LoadError::TooLarge {
                path: path.to_owned(),
                size,
                limit: MAX_FILE_SIZE,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Ok(Self::parse(&path.display().to_string(), &text)?)
    }

    /// A layer holding just a preset (named after it).
    pub fn preset(preset: Preset) -> Self {
        let mut layer = PolicyLayer::empty(preset.as_str());
        crate::preset::apply(&mut layer, preset);
        layer
    }

    /// The layer's name, as shown in explanations.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The preset this layer starts from, if any.
    pub fn preset_kind(&self) -> Option<Preset> {
        self.preset
    }

    /// Whether allows from lower layers grant nothing.
    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    /// Returns the layer with `enforced` set as given.
    pub fn with_enforced(mut self, enforced: bool) -> Self {
        self.enforced = enforced;
        self
    }

    /// Returns the layer under a new name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Number of `[[network]]` rules (preset rules included).
    pub fn network_rule_count(&self) -> usize {
        self.network.len()
    }
}
