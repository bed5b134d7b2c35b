//! Where sbx keeps its configuration and state.
//!
//! With `SBX_HOME` set, everything lives below it (`config/`, `state/`). Otherwise the XDG base directories are used:
//! `$XDG_CONFIG_HOME/sbx` (default `~/.config/sbx`) and `$XDG_STATE_HOME/sbx` (default `~/.local/state/sbx`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::env_vars;

/// The directories of one sbx installation.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    /// User-editable configuration: policy layer files, agent table, provider catalog extensions.
    pub(crate) config: PathBuf,
    /// Machine-managed state: sandboxes, secret store, CA, audit trail, sockets.
    pub(crate) state: PathBuf,
}

impl Home {
    /// Resolves the directories from the environment (without creating them).
    pub(crate) fn from_env() -> Result<Home> {
        Self::resolve(|name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// The audit trail directory.
    pub(crate) fn audit_dir(&self) -> PathBuf {
        self.state.join("audit")
    }

    /// The secret store directory (encrypted file store or keychain marker).
    pub(crate) fn secrets_dir(&self) -> PathBuf {
        self.state.join("secrets")
    }

    /// The user provider catalog: custom secrets and provider overrides (no values).
    pub(crate) fn providers_file(&self) -> PathBuf {
        self.config.join("providers.toml")
    }

    fn resolve(var: impl Fn(&str) -> Option<PathBuf>) -> Result<Home> {
        if let Some(root) = var(env_vars::SBX_HOME) {
            if !root.is_absolute() {
                bail!(
                    "{} must be an absolute path, got {}",
                    env_vars::SBX_HOME,
                    root.display()
                );
            }
            return Ok(Home {
                config: root.join("config"),
                state: root.join("state"),
            });
        }
        let home = var(env_vars::HOME)
            .context("neither SBX_HOME nor HOME is set; set SBX_HOME=/some/dir")?;
        let config = var(env_vars::XDG_CONFIG_HOME)
            .unwrap_or_else(|| home.join(".config"))
            .join("sbx");
        let state = var(env_vars::XDG_STATE_HOME)
            .unwrap_or_else(|| home.join(".local/state"))
            .join("sbx");
        Ok(Home { config, state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<PathBuf> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| PathBuf::from(v))
        }
    }

    #[test]
    fn sbx_home_overrides_everything() {
        let h = Home::resolve(env(&[("SBX_HOME", "/tmp/x"), ("HOME", "/home/u")])).unwrap();
        assert_eq!(h.config, Path::new("/tmp/x/config"));
        assert_eq!(h.state, Path::new("/tmp/x/state"));
    }

    #[test]
    fn xdg_defaults_follow_home() {
        let h = Home::resolve(env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(h.config, Path::new("/home/u/.config/sbx"));
        assert_eq!(h.state, Path::new("/home/u/.local/state/sbx"));
        let h = Home::resolve(env(&[("HOME", "/home/u"), ("XDG_STATE_HOME", "/s")])).unwrap();
        assert_eq!(h.state, Path::new("/s/sbx"));
    }

    #[test]
    fn relative_sbx_home_is_refused_with_the_variable_named() {
        let err = Home::resolve(env(&[("SBX_HOME", "rel")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("SBX_HOME must be an absolute path"),
            "{err}"
        );
    }
}
