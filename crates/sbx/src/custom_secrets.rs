//! Custom secret definitions (name, env var, hosts; never values) kept in the user provider catalog file,
//! which `sbx_secrets::Catalog::builtin_with_user_file` reads back.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sbx_secrets::{Catalog, Provider};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

use crate::fsutil::{FileLock, atomic_write};

/// The catalog in force: built-in providers plus the user file.
pub(crate) fn load_catalog(providers_file: &Path) -> Result<Catalog> {
    Catalog::builtin_with_user_file(providers_file)
        .with_context(|| format!("fix or remove {}", providers_file.display()))
}

/// The default name of a custom secret read from `env`: `INTERNAL_TOKEN` → `internal-token`.
pub(crate) fn default_name(env: &str) -> String {
    env.to_ascii_lowercase().replace('_', "-")
}

/// Adds (or replaces) the custom secret `provider` in `providers_file`, keeping everything else in the file.
pub(crate) fn save(providers_file: &Path, provider: &Provider, body: bool) -> Result<()> {
    if Catalog::builtin().get(&provider.name).is_some() {
        bail!(
            "`{}` is a built-in provider; give the custom secret another --name",
            provider.name
        );
    }
    let _lock = FileLock::acquire(providers_file)?;
    let text = match std::fs::read_to_string(providers_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", providers_file.display()));
        }
    };
    let mut doc: DocumentMut = text.parse().with_context(|| {
        format!(
            "{} is not valid TOML; fix or remove it",
            providers_file.display()
        )
    })?;
    let entry = entry_table(provider, body);
    let providers = doc
        .entry("provider")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .with_context(|| {
            format!(
                "`provider` in {} must be [[provider]] tables",
                providers_file.display()
            )
        })?;
    providers.retain(|t| t.get("name").and_then(Item::as_str) != Some(provider.name.as_str()));
    providers.push(entry);
    let new_text = doc.to_string();
    // Never write a file the catalog would then refuse to load.
    Catalog::from_toml(&providers_file.display().to_string(), &new_text)?;
    atomic_write(providers_file, new_text.as_bytes())
}

fn entry_table(provider: &Provider, body: bool) -> Table {
    let mut t = Table::new();
    t["name"] = value(provider.name.as_str());
    t["description"] = value(provider.description.as_str());
    t["env"] = value(provider.env.iter().map(String::as_str).collect::<Array>());
    t["hosts"] = value(
        provider
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Array>(),
    );
    let mut apply = InlineTable::new();
    apply.insert("kind", "anywhere".into());
    apply.insert("body", body.into());
    let mut applies = Array::new();
    applies.push(apply);
    t["apply"] = value(applies);
    t
}
