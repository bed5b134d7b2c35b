//! Where policy layer files live, how they are loaded into one [`Policy`], and how the CLI edits the
//! user and sandbox layers.
//!
//! - company, org, team: `/etc/sbx/policy.d/{company,org,team}.toml` (or `$SBX_SYSTEM_POLICY_DIR`), read only;
//! - user (global): `$CONFIG/policy.toml`, created with `preset = "balanced"` on first edit;
//! - sandbox: `$CONFIG/sandboxes/<name>/policy.toml`.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sbx_policy::{LayerLevel, Policy, PolicyLayer, Preset};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::env_vars;
use crate::fsutil::{FileLock, atomic_write};
use crate::home::Home;

/// Where the administrator's layers live unless `SBX_SYSTEM_POLICY_DIR` says otherwise.
pub(crate) const SYSTEM_POLICY_DIR: &str = "/etc/sbx/policy.d";

/// One layer file and the authority it speaks with.
#[derive(Debug, Clone)]
pub(crate) struct LayerFile {
    pub(crate) level: LayerLevel,
    pub(crate) path: PathBuf,
}

fn system_dir() -> PathBuf {
    std::env::var_os(env_vars::SBX_SYSTEM_POLICY_DIR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(SYSTEM_POLICY_DIR), PathBuf::from)
}

/// The user's global layer file.
pub(crate) fn user_file(home: &Home) -> PathBuf {
    home.config.join("policy.toml")
}

/// A sandbox's own layer file.
pub(crate) fn sandbox_file(home: &Home, sandbox: &str) -> PathBuf {
    home.config
        .join("sandboxes")
        .join(sandbox)
        .join("policy.toml")
}

/// Every layer file that applies to `sandbox` (or to new sandboxes when `None`), highest authority first.
/// Files that do not exist are left out, except the user layer, which is always there (a default when absent).
pub(crate) fn layer_files(home: &Home, sandbox: Option<&str>) -> Vec<LayerFile> {
    let sys = system_dir();
    let mut files: Vec<LayerFile> = [LayerLevel::Company, LayerLevel::Org, LayerLevel::Team]
        .into_iter()
        .map(|level| LayerFile {
            level,
            path: sys.join(format!("{level}.toml")),
        })
        .filter(|f| f.path.exists())
        .collect();
    files.push(LayerFile {
        level: LayerLevel::User,
        path: user_file(home),
    });
    if let Some(name) = sandbox {
        let path = sandbox_file(home, name);
        if path.exists() {
            files.push(LayerFile {
                level: LayerLevel::Sandbox,
                path,
            });
        }
    }
    files
}

/// Every path a layer of `sandbox` could be read from, whether or not it exists: what a running sandbox's proxy
/// watches for changes.
pub(crate) fn candidate_files(home: &Home, sandbox: Option<&str>) -> Vec<PathBuf> {
    let sys = system_dir();
    let mut files: Vec<PathBuf> = [LayerLevel::Company, LayerLevel::Org, LayerLevel::Team]
        .into_iter()
        .map(|level| sys.join(format!("{level}.toml")))
        .collect();
    files.push(user_file(home));
    if let Some(name) = sandbox {
        files.push(sandbox_file(home, name));
    }
    files
}

/// The user layer used while the user has not written one: the balanced preset.
fn default_user_text() -> String {
    "# sbx user policy (global layer). Edit with `sbx policy allow|deny|rm|set-default`, or by hand.\nname = \"user\"\npreset = \"balanced\"\n".to_string()
}

fn read_layer(file: &LayerFile) -> Result<PolicyLayer> {
    if file.level == LayerLevel::User && !file.path.exists() {
        return Ok(PolicyLayer::parse(
            &file.path.display().to_string(),
            &default_user_text(),
        )?);
    }
    Ok(PolicyLayer::load(&file.path)?)
}

/// The compiled policy for `sandbox` (or for a new sandbox).
pub(crate) fn load_policy(home: &Home, sandbox: Option<&str>) -> Result<Policy> {
    let mut layers = Vec::new();
    for file in layer_files(home, sandbox) {
        layers.push((file.level, read_layer(&file)?));
    }
    Ok(Policy::new(layers))
}

/// A layer file opened for editing under its lock; [`LayerEditor::save`] validates and writes it atomically.
pub(crate) struct LayerEditor {
    path: PathBuf,
    doc: DocumentMut,
    _lock: FileLock,
}

impl LayerEditor {
    /// Opens (or starts) the layer file at `path`; a new file gets `name = default_name` and, for the user
    /// layer, the balanced preset.
    pub(crate) fn open(path: &Path, level: LayerLevel, default_name: &str) -> Result<LayerEditor> {
        let lock = FileLock::acquire(path)?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match level {
                LayerLevel::User => default_user_text(),
                _ => format!("name = {}\n", value(default_name)),
            },
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let doc: DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        Ok(LayerEditor {
            path: path.to_path_buf(),
            doc,
            _lock: lock,
        })
    }

    /// Appends a network rule and returns its new id.
    pub(crate) fn add_network_rule(
        &mut self,
        allow: bool,
        hosts: &[String],
        methods: &[String],
        paths: &[String],
    ) -> String {
        let id = self.fresh_id();
        let mut rule = Table::new();
        rule.insert("id", value(id.as_str()));
        rule.insert("action", value(if allow { "allow" } else { "deny" }));
        rule.insert("hosts", value(string_array(hosts)));
        if !methods.is_empty() {
            rule.insert("methods", value(string_array(methods)));
        }
        if !paths.is_empty() {
            rule.insert("paths", value(string_array(paths)));
        }
        self.network_rules().push(rule);
        id
    }

    /// Removes the network rule with `id`; false when there is none.
    pub(crate) fn remove_network_rule(&mut self, id: &str) -> bool {
        let rules = self.network_rules();
        let before = rules.len();
        rules.retain(|t| t.get("id").and_then(Item::as_str) != Some(id));
        before != rules.len()
    }

    /// Sets the layer's baseline preset.
    pub(crate) fn set_preset(&mut self, preset: Preset) {
        self.doc.insert("preset", value(preset.as_str()));
    }

    fn network_rules(&mut self) -> &mut ArrayOfTables {
        let item = self
            .doc
            .entry("network")
            .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
        if !item.is_array_of_tables() {
            *item = Item::ArrayOfTables(ArrayOfTables::new());
        }
        match item {
            Item::ArrayOfTables(rules) => rules,
            // Unreachable: replaced just above.
            _ => unreachable!("network is an array of tables"),
        }
    }

    fn fresh_id(&mut self) -> String {
        let taken: Vec<String> = self
            .network_rules()
            .iter()
            .filter_map(|t| t.get("id").and_then(Item::as_str).map(str::to_owned))
            .collect();
        loop {
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            let id = format!("r{:07x}", h.finish() & 0xfff_ffff);
            if !taken.contains(&id) {
                return id;
            }
        }
    }

    /// Checks the edited layer with the policy parser, then replaces the file atomically.
    pub(crate) fn save(self) -> Result<()> {
        let text = self.doc.to_string();
        PolicyLayer::parse(&self.path.display().to_string(), &text)?;
        atomic_write(&self.path, text.as_bytes())
    }
}

fn string_array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// A rule as listed by `sbx policy ls`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ListedRule {
    pub(crate) id: Option<String>,
    pub(crate) action: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) methods: Vec<String>,
    pub(crate) paths: Vec<String>,
}

/// A layer as listed by `sbx policy ls`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ListedLayer {
    pub(crate) level: String,
    pub(crate) name: String,
    pub(crate) file: String,
    pub(crate) sandbox: Option<String>,
    pub(crate) preset: Option<String>,
    pub(crate) enforced: bool,
    pub(crate) network: Vec<ListedRule>,
}

/// Reads a layer file for listing; the file is validated with the policy parser first, so what is listed is
/// what is enforced.
pub(crate) fn list_layer(file: &LayerFile, sandbox: Option<&str>) -> Result<ListedLayer> {
    let text = if file.level == LayerLevel::User && !file.path.exists() {
        default_user_text()
    } else {
        std::fs::read_to_string(&file.path)
            .with_context(|| format!("cannot read {}", file.path.display()))?
    };
    let layer = PolicyLayer::parse(&file.path.display().to_string(), &text)?;
    let doc: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is not valid TOML", file.path.display()))?;
    let strings = |t: &toml::Table, key: &str| -> Vec<String> {
        t.get(key)
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let network = doc
        .get("network")
        .and_then(toml::Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(toml::Value::as_table)
                .map(|t| ListedRule {
                    id: t.get("id").and_then(toml::Value::as_str).map(str::to_owned),
                    action: t
                        .get("action")
                        .and_then(toml::Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    hosts: strings(t, "hosts"),
                    methods: strings(t, "methods"),
                    paths: strings(t, "paths"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ListedLayer {
        level: file.level.to_string(),
        name: layer.name().to_owned(),
        file: file.path.display().to_string(),
        sandbox: sandbox.map(str::to_owned),
        preset: layer.preset_kind().map(|p| p.as_str().to_owned()),
        enforced: layer.is_enforced(),
        network,
    })
}

/// Every sandbox that has a layer file of its own.
pub(crate) fn sandboxes_with_layers(home: &Home) -> Result<Vec<String>> {
    let dir = home.config.join("sandboxes");
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        if entry.path().join("policy.toml").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}
