//! Every environment variable sbx reads, in one place.

/// Overrides every sbx directory (config, state, runtime); tests point it at a temp dir.
pub(crate) const SBX_HOME: &str = "SBX_HOME";
/// Disables colour output when set to anything (<https://no-color.org>).
pub(crate) const NO_COLOR: &str = "NO_COLOR";
/// XDG base directories, used when `SBX_HOME` is not set.
pub(crate) const XDG_CONFIG_HOME: &str = "XDG_CONFIG_HOME";
/// See [`XDG_CONFIG_HOME`].
pub(crate) const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// The user's home directory.
pub(crate) const HOME: &str = "HOME";
